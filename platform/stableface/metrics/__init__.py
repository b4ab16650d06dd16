"""Evaluation metrics: MSI (motion stability), SSIM, CPBD, NLMD, the vertical slice, and video scoring.

Sync-C (:mod:`stableface.metrics.syncnet`) and LipNet WER (:mod:`stableface.metrics.lipnet`) import
torch and need weights that are placed by hand; import them from their modules.
"""

from stableface.metrics.config import MetricsConfig
from stableface.metrics.cpbd import cpbd
from stableface.metrics.msi import MSIResult, motion_stability
from stableface.metrics.nlmd import nlmd
from stableface.metrics.slice import slice_roughness, vertical_slice
from stableface.metrics.ssim import ssim, video_ssim
from stableface.metrics.video import VideoScore, is_flagged, score_video

__all__ = [
    "MSIResult",
    "MetricsConfig",
    "VideoScore",
    "cpbd",
    "is_flagged",
    "motion_stability",
    "nlmd",
    "score_video",
    "slice_roughness",
    "ssim",
    "vertical_slice",
    "video_ssim",
]
