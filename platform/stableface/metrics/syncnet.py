"""Sync-C: audio-visual synchrony confidence from SyncNet (Chung and Zisserman, ACCV workshops 2016).

The network is the public ``syncnet_v2`` model: a 2-D CNN over 0.2 s of MFCCs and a 3-D CNN over
five 224x224 face frames, each ending in a 1024-d embedding; module names match that checkpoint so
its state dict loads as is. Sync-C is the median minus the minimum, over audio offsets of +-15
frames, of the mean distance between video and audio embeddings; the offset at the minimum is the
AV offset. The weights (``syncnet_v2.model``) cannot be downloaded here: see
:mod:`stableface.metrics.weights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stableface.metrics.weights import find_weights, load_state_dict

WEIGHTS_FILE = "syncnet_v2.model"
EMBEDDING_DIM = 1024
VIDEO_WINDOW = 5  # frames per video embedding
FACE_SIZE = 224
AUDIO_SAMPLE_RATE = 16_000
VIDEO_FPS = 25.0  # SyncNet pairs 4 MFCC steps (10 ms) with each 40 ms video frame
MFCC_PER_FRAME = 4
MFCC_WINDOW = 20  # MFCC steps per audio embedding (0.2 s)
N_MFCC = 13
MAX_OFFSET = 15  # frames searched either way
# MFCC settings of the features SyncNet was trained on (python_speech_features defaults).
MFCC_WIN_S = 0.025
MFCC_STEP_S = 0.010
MFCC_NFFT = 512
MFCC_FILTERS = 26
MFCC_PREEMPHASIS = 0.97
MFCC_LIFTER = 22
INT16_SCALE = 32768.0  # the model saw 16-bit PCM sample values
# Face crop around the landmark box, as in the SyncNet pipeline: half-size bs = half the larger
# box side, widened by CROP_MARGIN and extended downwards so the mouth sits in the lower half.
CROP_MARGIN = 0.4
CROP_PAD_GREY = 110


def _conv2d_block(c_in: int, c_out: int, kernel, padding) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size=kernel, padding=padding),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _conv3d_block(c_in: int, c_out: int, kernel, stride=(1, 1, 1), padding=0) -> list[nn.Module]:
    return [
        nn.Conv3d(c_in, c_out, kernel_size=kernel, stride=stride, padding=padding),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    ]


def _head(embedding_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding_dim))


class SyncNet(nn.Module):
    """The syncnet_v2 two-stream network; attribute names and layer order match its checkpoint."""

    def __init__(self, embedding_dim: int = EMBEDDING_DIM):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv2d_block(1, 64, (3, 3), (1, 1)),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            *_conv2d_block(64, 192, (3, 3), (1, 1)),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            *_conv2d_block(192, 384, (3, 3), (1, 1)),
            *_conv2d_block(384, 256, (3, 3), (1, 1)),
            *_conv2d_block(256, 256, (3, 3), (1, 1)),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            *_conv2d_block(256, 512, (5, 4), (0, 0)),
        )
        self.netfcaud = _head(embedding_dim)
        self.netfclip = _head(embedding_dim)
        self.netcnnlip = nn.Sequential(
            *_conv3d_block(3, 96, (5, 7, 7), stride=(1, 2, 2)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv3d_block(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv3d_block(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3d_block(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3d_block(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv3d_block(256, 512, (1, 6, 6)),
        )

    def forward_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        # mfcc: (N, 1, 13, 20)
        features = self.netcnnaud(mfcc)  # (N, 512, 1, 1)
        return self.netfcaud(features.flatten(1))  # (N, 1024)

    def forward_video(self, faces: torch.Tensor) -> torch.Tensor:
        # faces: (N, 3, 5, 224, 224) BGR in 0..255
        features = self.netcnnlip(faces)  # (N, 512, 1, 1, 1)
        return self.netfclip(features.flatten(1))  # (N, 1024)


def load_syncnet(weights: str | Path | None = None) -> SyncNet:
    """SyncNet with ``syncnet_v2.model`` weights from ``weights`` (file or directory) or $STABLEFACE_WEIGHTS_DIR."""
    path = find_weights(WEIGHTS_FILE, weights)
    model = SyncNet()
    model.load_state_dict(load_state_dict(path), strict=True)
    return model.eval()


# ------------------------------------------------------------------------------------- features
def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def _mel_filterbank(sample_rate: int) -> np.ndarray:
    """(26, 257) triangular filters on FFT bins, spaced evenly in mel from 0 Hz to Nyquist."""
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), MFCC_FILTERS + 2)
    bins = np.floor((MFCC_NFFT + 1) * _mel_to_hz(mel_points) / sample_rate).astype(int)
    bank = np.zeros((MFCC_FILTERS, MFCC_NFFT // 2 + 1))
    for j in range(MFCC_FILTERS):
        low, centre, high = bins[j], bins[j + 1], bins[j + 2]
        bank[j, low:centre] = (np.arange(low, centre) - low) / max(centre - low, 1)
        bank[j, centre:high] = (high - np.arange(centre, high)) / max(high - centre, 1)
    return bank


def syncnet_mfcc(audio: np.ndarray, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """MFCCs as SyncNet was trained on them: (13, S) at 100 Hz from mono float audio in [-1, 1].

    25 ms rectangular frames every 10 ms, pre-emphasis 0.97, 512-point power spectrum, 26 mel
    filters, log, DCT-II (orthonormal), 13 coefficients, sinusoidal lifter 22, and c0 replaced by the
    log frame energy.
    """
    from scipy.fft import dct

    signal = np.asarray(audio, dtype=np.float64).reshape(-1) * INT16_SCALE
    if signal.size == 0:
        raise ValueError("syncnet_mfcc: empty audio")
    signal = np.append(signal[0], signal[1:] - MFCC_PREEMPHASIS * signal[:-1])
    frame_len = round(MFCC_WIN_S * sample_rate)
    step = round(MFCC_STEP_S * sample_rate)
    n_frames = 1 + max(int(np.ceil((signal.size - frame_len) / step)), 0)
    padded = np.zeros((n_frames - 1) * step + frame_len)
    padded[: signal.size] = signal
    starts = np.arange(n_frames)[:, None] * step
    frames = padded[starts + np.arange(frame_len)[None, :]]  # (S, 400)
    power = np.abs(np.fft.rfft(frames, MFCC_NFFT)) ** 2 / MFCC_NFFT  # (S, 257)
    tiny = np.finfo(np.float64).eps
    energy = np.maximum(power.sum(axis=1), tiny)  # (S,)
    mel = np.maximum(power @ _mel_filterbank(sample_rate).T, tiny)  # (S, 26)
    cepstra = dct(np.log(mel), type=2, axis=1, norm="ortho")[:, :N_MFCC]  # (S, 13)
    lifter = 1 + (MFCC_LIFTER / 2.0) * np.sin(np.pi * np.arange(N_MFCC) / MFCC_LIFTER)
    cepstra = cepstra * lifter
    cepstra[:, 0] = np.log(energy)
    return cepstra.T.astype(np.float32)  # (13, S)


def face_crops(frames: np.ndarray, ibug68: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """SyncNet face crops (T, size, size, 3) RGB uint8 from frames (T, H, W, 3) and landmarks (T, 68, 2)."""
    import cv2

    crops = []
    for frame, points in zip(frames, ibug68, strict=True):
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        half = max(x1 - x0, y1 - y0) / 2
        centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
        pad = int(np.ceil(half * (1 + CROP_MARGIN))) + 1
        canvas = cv2.copyMakeBorder(
            frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(CROP_PAD_GREY,) * 3
        )
        top = round(centre_y - half + pad)
        bottom = round(centre_y + half * (1 + 2 * CROP_MARGIN) + pad)
        left = round(centre_x - half * (1 + CROP_MARGIN) + pad)
        right = round(centre_x + half * (1 + CROP_MARGIN) + pad)
        window = canvas[max(top, 0) : bottom, max(left, 0) : right]
        crops.append(cv2.resize(window, (size, size), interpolation=cv2.INTER_LINEAR))
    return np.stack(crops)


# ------------------------------------------------------------------------------------- the score
def offset_distances(
    video_emb: torch.Tensor, audio_emb: torch.Tensor, max_offset: int = MAX_OFFSET
) -> torch.Tensor:
    """Per video window, the distance to the audio embedding at each offset: (N, 2 * max_offset + 1).

    Audio embeddings beyond either end count as zero vectors, as in the reference evaluation.
    """
    # video_emb, audio_emb: (N, D)
    n_windows = video_emb.shape[0]
    padded = nn.functional.pad(audio_emb, (0, 0, max_offset, max_offset))  # (N + 2K, D)
    shifts = torch.arange(2 * max_offset + 1)
    index = torch.arange(n_windows)[:, None] + shifts[None, :]  # (N, 2K + 1)
    return torch.linalg.vector_norm(video_emb[:, None, :] - padded[index] + 1e-6, dim=-1)  # (N, 2K + 1)


@dataclass
class SyncResult:
    offset: int  # audio lead in video frames at the best match (reference sign convention)
    min_distance: float
    confidence: float  # Sync-C

    def to_dict(self) -> dict:
        return {"sync_offset": self.offset, "sync_min_dist": self.min_distance, "sync_c": self.confidence}


def sync_confidence_from_distances(mean_distances: np.ndarray | torch.Tensor) -> SyncResult:
    """Sync-C from the mean AV distance at each offset (2K + 1,): median minus minimum; offset = K - argmin."""
    distances = torch.as_tensor(mean_distances, dtype=torch.float64).reshape(-1)
    if distances.numel() % 2 == 0 or distances.numel() < 3:
        raise ValueError(f"sync: expected an odd number (2K+1 >= 3) of offsets, got {distances.numel()}")
    max_offset = distances.numel() // 2
    min_value, min_index = torch.min(distances, dim=0)
    # torch.median returns the lower middle value, which for an odd count is the median.
    confidence = torch.median(distances) - min_value
    return SyncResult(
        offset=int(max_offset - min_index.item()), min_distance=float(min_value), confidence=float(confidence)
    )


@torch.no_grad()
def sync_confidence(
    model: SyncNet,
    faces: np.ndarray,
    audio: np.ndarray,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    max_offset: int = MAX_OFFSET,
    batch_size: int = 20,
) -> SyncResult:
    """Sync-C of a 25 fps clip: face crops (T, 224, 224, 3) RGB uint8 and its mono audio."""
    mfcc = syncnet_mfcc(audio, sample_rate)  # (13, S)
    n_frames = min(len(faces), mfcc.shape[1] // MFCC_PER_FRAME)
    n_windows = n_frames - VIDEO_WINDOW
    if n_windows < 1:
        raise ValueError(f"sync: {n_frames} usable frames; SyncNet needs more than {VIDEO_WINDOW}")
    video = torch.from_numpy(np.ascontiguousarray(faces[:n_frames, ..., ::-1])).float()  # (T, H, W, 3) BGR
    video = video.permute(3, 0, 1, 2)  # (3, T, H, W)
    cepstra = torch.from_numpy(mfcc)  # (13, S)
    video_emb, audio_emb = [], []
    for start in range(0, n_windows, batch_size):
        windows = range(start, min(n_windows, start + batch_size))
        clips = torch.stack([video[:, t : t + VIDEO_WINDOW] for t in windows])  # (B, 3, 5, 224, 224)
        sounds = torch.stack(
            [cepstra[None, :, t * MFCC_PER_FRAME : t * MFCC_PER_FRAME + MFCC_WINDOW] for t in windows]
        )  # (B, 1, 13, 20)
        video_emb.append(model.forward_video(clips))
        audio_emb.append(model.forward_audio(sounds))
    distances = offset_distances(torch.cat(video_emb), torch.cat(audio_emb), max_offset)  # (N, 2K + 1)
    return sync_confidence_from_distances(distances.mean(dim=0))


def sync_score_file(model: SyncNet, path: str | Path, ibug68: np.ndarray) -> SyncResult:
    """Sync-C of a local 25 fps video file given its bridged landmark track (T, 68, 2)."""
    from stableface.io.audio import read_audio
    from stableface.io.video import probe_video, read_frames

    info = probe_video(path)
    if abs(info.fps_float - VIDEO_FPS) > 0.5:
        raise ValueError(f"{path}: SyncNet needs 25 fps video, this one is {info.fps_float:.2f} fps")
    frames = read_frames(path)[: len(ibug68)]  # (T, H, W, 3)
    faces = face_crops(frames, ibug68[: len(frames)])
    return sync_confidence(model, faces, read_audio(path, AUDIO_SAMPLE_RATE))
