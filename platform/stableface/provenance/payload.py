"""The watermark's payload: which tool made a video, with which model version, in which dub.

48 bits: 32 data bits (tool 4, model-version id 12, dub id 16) then a CRC-16/CCITT of them, so a
payload read from an unmarked video is rejected with probability 1 - 2^-16 even when the detector's
statistic was fooled. Short on purpose: every bit shares the watermark's energy, so each bit fewer
makes the others more robust (see :mod:`stableface.provenance.watermark`). The model-version id is
the first 12 bits of the SHA-256 of the model's version string (it tells known models apart, it does
not spell the version); the dub id is random per dub (or given), written to the dub's manifest row
and content credentials so an audit finding leads back to the row (65,536 ids: with the model id and
the credentials, enough to find a dub, not a global serial number).
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass

import numpy as np

TOOL_BITS = 4
MODEL_BITS = 12
DUB_BITS = 16
DATA_BITS = TOOL_BITS + MODEL_BITS + DUB_BITS  # 32
CRC_BITS = 16
PAYLOAD_BITS = DATA_BITS + CRC_BITS  # 48
CRC_POLY = 0x1021  # CRC-16/CCITT-FALSE
CRC_INIT = 0xFFFF


class Tool(enum.IntEnum):
    """Tools that write this watermark (the payload's first byte); 0 is never written."""

    STABLEFACE = 1


def model_version_id(model_version: str) -> int:
    """The 12-bit id of a model version string (first bytes of its SHA-256)."""
    digest = hashlib.sha256(model_version.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") >> (32 - MODEL_BITS)


def new_dub_id() -> int:
    return secrets.randbits(DUB_BITS)


def crc16(data: bytes) -> int:
    crc = CRC_INIT
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


@dataclass(frozen=True)
class Payload:
    """What the watermark carries."""

    tool: Tool
    model_id: int  # 12 bits, :func:`model_version_id`
    dub_id: int  # 16 bits

    @classmethod
    def for_dub(cls, model_version: str, dub_id: int | None = None) -> Payload:
        return cls(
            Tool.STABLEFACE, model_version_id(model_version), new_dub_id() if dub_id is None else dub_id
        )

    def __post_init__(self) -> None:
        if not 0 <= self.model_id < 1 << MODEL_BITS or not 0 <= self.dub_id < 1 << DUB_BITS:
            raise ValueError(f"payload fields out of range: model id {self.model_id}, dub id {self.dub_id}")

    def _data(self) -> bytes:
        value = (int(self.tool) << (MODEL_BITS + DUB_BITS)) | (self.model_id << DUB_BITS) | self.dub_id
        return value.to_bytes(DATA_BITS // 8, "big")

    def to_bits(self) -> np.ndarray:
        """(PAYLOAD_BITS,) uint8 0/1, most significant first: the data then its CRC."""
        data = self._data()
        words = data + crc16(data).to_bytes(CRC_BITS // 8, "big")
        return np.unpackbits(np.frombuffer(words, np.uint8))

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> Payload | None:
        """The payload of (PAYLOAD_BITS,) 0/1 bits, or None when the CRC or the tool byte is wrong."""
        words = np.packbits(np.asarray(bits, np.uint8)).tobytes()
        data, crc = words[: DATA_BITS // 8], int.from_bytes(words[DATA_BITS // 8 :], "big")
        if crc16(data) != crc:
            return None
        value = int.from_bytes(data, "big")
        tool = value >> (MODEL_BITS + DUB_BITS)
        if tool not in {t.value for t in Tool}:
            return None
        model_id = (value >> DUB_BITS) & ((1 << MODEL_BITS) - 1)
        return cls(Tool(tool), model_id, value & ((1 << DUB_BITS) - 1))

    def describe(self) -> str:
        """e.g. ``stableface model 3fa dub 0a1b`` (the ids in hex)."""
        return f"{self.tool.name.lower()} model {self.model_id:03x} dub {self.dub_id:04x}"
