"""Settings of the invisible watermark and the content credentials (shared by dubbing and audits)."""

from __future__ import annotations

from dataclasses import dataclass

from stableface.errors import InputError

SIGNING_ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")


@dataclass
class WatermarkConfig:
    """The invisible watermark (:mod:`stableface.provenance.watermark`)."""

    enabled: bool = True  # in every output frame of a dub; only an explicit false removes it
    # Seeds the spreading patterns: a detector finds only marks made with its own key. Operators who
    # keep theirs private make the mark harder to forge or strip; audits must use the same key.
    key: str = "stableface-public-watermark-v1"
    strength: float = 2.3  # RMS of the luma change in grey levels (2.3 -> PSNR about 41 dB)
    # Detection: frames read from the start of a video (more when frames are small, see detect()).
    max_frames: int = 64
    # Peak of the pattern-energy statistic, in standard deviations over all phases, above which a
    # payload is read at all; the payload's CRC-16 must check too. Unmarked real videos peak at up to
    # about 6, marked ones (attacked) at 10-20 (python -m bench provenance).
    min_peak_z: float = 8.0

    def __post_init__(self) -> None:
        if not self.key:
            raise InputError("provenance.watermark.key", "empty; the patterns need a key")
        if not 0.0 < self.strength <= 8.0:
            raise InputError(
                "provenance.watermark.strength", f"must be in (0, 8] grey levels, got {self.strength}"
            )
        if self.max_frames < 1:
            raise InputError("provenance.watermark.max_frames", f"must be >= 1, got {self.max_frames}")


@dataclass
class CredentialsConfig:
    """C2PA content credentials (:mod:`stableface.provenance.credentials`) embedded in each dub.

    Signing needs the operator's certificate chain (PEM, leaf first) and its private key (PEM); with
    either unset the dub is written without a manifest and its row says ``unsigned``.
    """

    enabled: bool = True
    cert_uri: str = ""  # PEM certificate chain (local path or s3://)
    key_uri: str = ""  # PEM private key of the leaf certificate
    algorithm: str = "es256"  # matches the key: es256 (P-256), ps256 (RSA-PSS), ed25519, ...
    timestamp_url: str = ""  # an RFC 3161 time-stamp authority; empty = no time stamp

    def __post_init__(self) -> None:
        if self.algorithm not in SIGNING_ALGORITHMS:
            raise InputError(
                "provenance.credentials.algorithm",
                f"'{self.algorithm}' is not one of {', '.join(SIGNING_ALGORITHMS)}",
            )
        if bool(self.cert_uri) != bool(self.key_uri):
            raise InputError(
                "provenance.credentials", "cert_uri and key_uri go together: set both to sign, or neither"
            )

    @property
    def signing(self) -> bool:
        return self.enabled and bool(self.cert_uri and self.key_uri)
