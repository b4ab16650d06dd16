"""An invisible watermark in every frame: a tiled spread-spectrum luma pattern, found by correlation.

Scheme (ours; why not a library: see the README's provenance section):

- Payload: 48 bits (:mod:`stableface.provenance.payload`: 32 data bits + CRC-16).
- Patterns: K = 49 mutually orthogonal +-1 patterns over a tile of 16 x 16 cells (key-selected,
  key-scrambled and key-permuted rows of a 256 x 256 Walsh-Hadamard matrix): one sync pattern that
  is always +1 and one per payload bit, signed by the bit. Their sum / sqrt(K) has unit RMS exactly.
- Embedding: each cell is 4 x 4 pixels (a 64-px tile), softened by a circular Gaussian blur, scaled to
  ``strength`` grey levels RMS and added to R, G and B alike (a luma change, no colour change), tiled
  over the whole frame from its top-left corner, identically in every frame. H.264 keeps a static
  pattern cheaply (skipped blocks carry it), cells of 4 px survive halving the size, and a tiling
  survives any crop: only its phase changes.
- Detection (per scale hypothesis: the video may have been shrunk): the luma of each frame is scaled
  back to the embedding scale, whitened (minus its Gaussian blur, clipped, so image content and edges
  weigh little), and folded onto one 64 x 64 tile (the sum of all its tiles). The folds of all frames
  are summed, which is soft voting over frames: correlation is linear, so the summed fold's correlation
  with a pattern is the sum of every frame's. Circular cross-correlation (FFT) with all K patterns
  gives, at every one of the 4096 phases, K correlations; their normalised energy peaks at the
  crop's phase whatever the bits. At the peak, each bit is the sign of its correlation; a payload
  counts only when the peak stands ``min_peak_z`` standard deviations above the other phases and its
  CRC-16 checks, directly or after flipping up to 3 of its 8 least reliable bits (Chase decoding).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stableface.provenance.config import WatermarkConfig
from stableface.provenance.payload import PAYLOAD_BITS, Payload

TILE_CELLS = 16  # cells per tile side: 256 cells, room for 256 orthogonal patterns
CELL_PX = 4  # pixels per cell side at the embedding scale
TILE_PX = TILE_CELLS * CELL_PX  # 64
N_PATTERNS = 1 + PAYLOAD_BITS  # the sync pattern, then one per payload bit
EMBED_BLUR_SIGMA = 0.5  # px: softens cell edges (less visible, less for the encoder to drop)
WHITEN_SIGMA = 1.5  # px: detection subtracts this Gaussian blur of the luma (image content)
RESIDUAL_CLIP = (
    0.5  # grey levels: nearly the residual's sign, so texture and edges weigh no more than flat areas
)
# Scale hypotheses at detection: the video's size / the marked size (1/2: downscaled to half).
SCALES = (1.0, 0.5, 0.75, 2 / 3, 0.8, 0.9, 0.6)
PIXEL_BUDGET = 64 * 360 * 288  # luma pixels folded per hypothesis: 64 GRID frames, fewer large ones
MIN_FRAMES = 8
CHASE_LEAST_RELIABLE = 8  # soft-decision decoding: the weakest bits it may flip...
CHASE_MAX_FLIPS = 3  # ...at most this many at once
PEAK_EXCLUSION_PX = 4  # phases within this of the peak share its cells: left out of the noise estimate
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _hadamard(order: int) -> np.ndarray:
    """(order, order) +-1 Sylvester Hadamard matrix (order a power of two)."""
    matrix = np.ones((1, 1), np.int8)
    while matrix.shape[0] < order:
        matrix = np.block([[matrix, matrix], [matrix, -matrix]])
    return matrix


def _circular_blur(tiles: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (..., P, P) periodic tiles (wrapping at the edges), by FFT."""
    frequencies = np.fft.fftfreq(tiles.shape[-1])
    gain = np.exp(-2 * (math.pi * sigma) ** 2 * (frequencies[:, None] ** 2 + frequencies[None, :] ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(tiles) * gain)).astype(np.float32)


@functools.lru_cache(maxsize=4)
def patterns(key: str) -> np.ndarray:
    """(N_PATTERNS, TILE_PX, TILE_PX) float32 templates of the key: orthogonal, unit RMS, softened."""
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    n_cells = TILE_CELLS * TILE_CELLS
    rows = rng.choice(np.arange(1, n_cells), size=N_PATTERNS, replace=False)  # row 0 is constant
    scramble = rng.choice(np.array([-1, 1], np.int8), size=n_cells)
    order = rng.permutation(n_cells)
    cells = (_hadamard(n_cells)[rows] * scramble)[:, order]  # (K, 256) +-1, still orthogonal
    cells = cells.reshape(N_PATTERNS, TILE_CELLS, TILE_CELLS).astype(np.float32)
    upsampled = np.kron(cells, np.ones((1, CELL_PX, CELL_PX), np.float32))  # (K, 64, 64)
    return _circular_blur(upsampled, EMBED_BLUR_SIGMA)


def _signs(payload: Payload) -> np.ndarray:
    """(N_PATTERNS,) +-1: the sync pattern's +1, then each payload bit as +-1."""
    return np.concatenate([[1.0], 2.0 * payload.to_bits() - 1.0]).astype(np.float32)


def tile_pattern(payload: Payload, config: WatermarkConfig) -> np.ndarray:
    """(TILE_PX, TILE_PX) int16 grey-level change of one tile carrying ``payload``."""
    tile = np.tensordot(_signs(payload), patterns(config.key), axes=1) / math.sqrt(N_PATTERNS)  # (64, 64)
    tile *= config.strength / float(np.sqrt(np.mean(tile**2)))
    return np.round(tile).astype(np.int16)


class Watermarker:
    """Adds one payload's pattern to frames; the full-frame planes are built once per frame size."""

    def __init__(self, payload: Payload, config: WatermarkConfig):
        self.payload = payload
        self.tile = tile_pattern(payload, config)  # (64, 64) int16
        self._planes: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _planes_for(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        planes = self._planes.get((height, width))
        if planes is None:
            reps = (math.ceil(height / TILE_PX), math.ceil(width / TILE_PX))
            full = np.tile(self.tile, reps)[:height, :width]  # (H, W) int16
            rgb = np.repeat(full[:, :, None], 3, axis=2)  # (H, W, 3)
            # Saturating uint8 add and subtract (cv2) are several times faster than int16 arithmetic.
            planes = (np.clip(rgb, 0, 255).astype(np.uint8), np.clip(-rgb, 0, 255).astype(np.uint8))
            self._planes = {(height, width): planes}  # one size per dub: keep only the latest
        return planes

    def mark(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 frame with the pattern added (a new array)."""
        raise_on, lower = self._planes_for(*frame.shape[:2])
        out = cv2.add(frame, raise_on)
        cv2.subtract(out, lower, dst=out)
        return out


@dataclass
class WatermarkFinding:
    """What :func:`detect` found in a video (or frames)."""

    present: bool
    payload: Payload | None  # the decoded payload when present
    peak_z: float  # the best hypothesis' peak, in standard deviations above the other phases
    scale: float | None  # the scale hypothesis of the peak (video size / marked size)
    frames: int  # frames read
    # Of the frames read, the fraction of payload bits each frame alone agrees with (mean): one
    # frame's hard vote against the soft vote of all.
    frame_bit_agreement: float | None = None
    reason: str = ""  # why not present, when not
    corrected_bits: int = 0  # payload bits the soft-decision decoder flipped to pass the CRC

    def to_row(self) -> dict:
        return {
            "watermark": "present" if self.present else "absent",
            "watermark_payload": self.payload.describe() if self.payload else "",
            "watermark_dub_id": f"{self.payload.dub_id:04x}" if self.payload else "",
            "watermark_model_id": f"{self.payload.model_id:03x}" if self.payload else "",
            "watermark_z": round(self.peak_z, 2),
            "watermark_scale": None if self.scale is None else round(self.scale, 3),
            "watermark_frames": self.frames,
            "watermark_corrected_bits": self.corrected_bits,
        }


@dataclass
class _Hypothesis:
    scale: float
    folds: list[np.ndarray] = field(default_factory=list)  # per frame (64, 64) float32


def _luma(frame: np.ndarray) -> np.ndarray:
    return (frame.astype(np.float32) @ LUMA).astype(np.float32)  # (H, W)


def fold(luma: np.ndarray, scale: float) -> np.ndarray:
    """(64, 64) sum of the whitened luma's tiles, after scaling (H, W) luma back by 1 / ``scale``."""
    if scale != 1.0:
        height, width = luma.shape
        size = (max(1, round(width / scale)), max(1, round(height / scale)))
        luma = cv2.resize(luma, size, interpolation=cv2.INTER_LINEAR if scale < 1 else cv2.INTER_AREA)
    residual = luma - cv2.GaussianBlur(luma, (0, 0), WHITEN_SIGMA)
    np.clip(residual, -RESIDUAL_CLIP, RESIDUAL_CLIP, out=residual)
    height, width = residual.shape
    padded = np.zeros(
        (math.ceil(height / TILE_PX) * TILE_PX, math.ceil(width / TILE_PX) * TILE_PX), np.float32
    )
    padded[:height, :width] = residual
    tiles_y, tiles_x = padded.shape[0] // TILE_PX, padded.shape[1] // TILE_PX
    return padded.reshape(tiles_y, TILE_PX, tiles_x, TILE_PX).sum(axis=(0, 2))


@functools.lru_cache(maxsize=4)
def _pattern_spectra(key: str) -> np.ndarray:
    return np.conj(np.fft.fft2(patterns(key)))  # (K, 64, 64) complex


def _correlations(folded: np.ndarray, key: str) -> np.ndarray:
    """(K, 64, 64): correlation of ``folded`` with every pattern at every circular phase (dy, dx)."""
    return np.real(np.fft.ifft2(np.fft.fft2(folded)[None] * _pattern_spectra(key))).astype(np.float32)


def _correlations_at(folded: np.ndarray, phase: tuple[int, int], key: str) -> np.ndarray:
    """(K,) correlation of ``folded`` with every pattern at one phase: sum_p folded[p + phase] P_k[p]."""
    shifted = np.roll(folded, (-phase[0], -phase[1]), axis=(0, 1))
    return patterns(key).reshape(N_PATTERNS, -1) @ shifted.reshape(-1)


def _decode(folds: list[np.ndarray], key: str) -> tuple[float, Payload | None, float | None]:
    """(peak z, payload or None, per-frame bit agreement) of one hypothesis' folds."""
    correlation = _correlations(np.sum(folds, axis=0), key)  # (K, 64, 64)
    spread = correlation.reshape(N_PATTERNS, -1).std(axis=1) + 1e-9  # (K,)
    energy = np.sum((correlation / spread[:, None, None]) ** 2, axis=0)  # (64, 64)
    peak = np.unravel_index(int(np.argmax(energy)), energy.shape)
    distance = [
        np.minimum(np.abs(np.arange(TILE_PX) - p), TILE_PX - np.abs(np.arange(TILE_PX) - p)) for p in peak
    ]
    far = (distance[0][:, None] > PEAK_EXCLUSION_PX) | (distance[1][None, :] > PEAK_EXCLUSION_PX)
    rest = energy[far]
    peak_z = float((energy[peak] - rest.mean()) / (rest.std() + 1e-9))
    at_peak = correlation[:, peak[0], peak[1]]  # (K,)
    bits = (at_peak[1:] > 0).astype(np.uint8)
    payload, flips = _chase_decode(bits, np.abs(at_peak[1:]) / spread[1:]) if at_peak[0] > 0 else (None, 0)
    # Each frame alone, at the same phase (its correlations are its share of the sum's).
    per_frame = np.stack([_correlations_at(f, peak, key)[1:] for f in folds]) > 0  # (F, K-1)
    agreement = float(np.mean(per_frame == bits[None].astype(bool)))
    return peak_z, payload, agreement, flips


def _chase_decode(bits: np.ndarray, reliability: np.ndarray) -> tuple[Payload | None, int]:
    """(payload, bits corrected): the hard decision, else it with up to CHASE_MAX_FLIPS of its
    CHASE_LEAST_RELIABLE least reliable bits flipped, fewest flips first, the first whose CRC checks.

    Soft-decision (Chase) decoding of the CRC: 1 + 8 + 28 + 56 = 93 candidates, so an unmarked video
    whose peak passed ``min_peak_z`` would pass the CRC with probability 93 / 65536; none of the real
    videos of the shared data reaches that peak at all (python -m bench provenance).
    """
    weakest = np.argsort(reliability)[:CHASE_LEAST_RELIABLE]
    for count in range(CHASE_MAX_FLIPS + 1):
        for flipped in itertools.combinations(weakest, count):
            candidate = bits.copy()
            candidate[list(flipped)] ^= 1
            payload = Payload.from_bits(candidate)
            if payload is not None:
                return payload, count
    return None, 0


def frames_to_read(height: int, width: int, config: WatermarkConfig) -> int:
    return int(min(config.max_frames, max(MIN_FRAMES, PIXEL_BUDGET // max(1, height * width))))


def detect(frames: Iterable[np.ndarray], config: WatermarkConfig) -> WatermarkFinding:
    """Look for the watermark of ``config.key`` in RGB uint8 frames (H, W, 3), at every scale hypothesis."""
    hypotheses = [_Hypothesis(scale) for scale in SCALES]
    count = 0
    for frame in frames:
        luma = _luma(frame)
        for hypothesis in hypotheses:
            hypothesis.folds.append(fold(luma, hypothesis.scale))
        count += 1
    if count == 0:
        return WatermarkFinding(False, None, 0.0, None, 0, reason="no frames")
    best = WatermarkFinding(False, None, -math.inf, None, count, reason="no peak")
    for hypothesis in hypotheses:
        peak_z, payload, agreement, flips = _decode(hypothesis.folds, config.key)
        found = payload is not None and peak_z >= config.min_peak_z
        if found and (not best.present or peak_z > best.peak_z):
            best = WatermarkFinding(
                True, payload, peak_z, hypothesis.scale, count, agreement, corrected_bits=flips
            )
        elif not best.present and peak_z > best.peak_z:
            reason = "payload check failed" if peak_z >= config.min_peak_z else "no pattern peak"
            best = WatermarkFinding(False, None, peak_z, hypothesis.scale, count, agreement, reason)
    return best


def detect_file(path: str | Path, config: WatermarkConfig) -> WatermarkFinding:
    """:func:`detect` on the first frames of a video file (how many: :func:`frames_to_read`)."""
    from stableface.io.video import iter_frames, probe_video

    info = probe_video(path)
    return detect(iter_frames(path, max_frames=frames_to_read(info.height, info.width, config)), config)


def psnr(marked: np.ndarray, original: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (inf when identical)."""
    mse = float(np.mean((marked.astype(np.float64) - original.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
