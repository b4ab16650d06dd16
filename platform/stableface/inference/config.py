"""Every knob of dubbing: the neural stages, compositing, the provenance mark and the mp4 encoding.

Pixel figures are for a 256-px face crop and scale with the model's image size (as in
:mod:`stableface.face.erosion`), so one config suits the ``tiny``, ``cpu`` and ``paper`` presets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stableface.audio.silence import SilenceGateConfig
from stableface.errors import InputError
from stableface.face.segments import DEFAULT_MAX_GAP_FRAMES
from stableface.inference.motion import MotionFilterConfig
from stableface.provenance.config import CredentialsConfig, WatermarkConfig

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


DEFAULT_OVERLAP_DIVISOR = 4  # window_overlap None = T // 4


@dataclass
class InferenceConfig:
    """The neural part: audio -> expression -> face shapes -> smoothing -> renderer windows."""

    device: str = "auto"  # auto (cuda when available, else cpu) | cpu | cuda | cuda:N
    # torch intra-op threads on CPU (torch.set_num_threads, process-wide). 1 suits the job's one dub
    # per core and shared machines, where more threads than free cores stall each other badly;
    # raise it for one large model on many free cores. None leaves torch's setting alone.
    cpu_threads: int | None = 1
    # Mixed precision where the hardware has it (stableface.utils.precision): bf16 autocast for
    # audio2expression and the renderer on CPUs with AMX or AVX512-BF16 (about 3x faster), bf16 or
    # fp16 on CUDA; the smoothing weights stay fp32. false forces fp32.
    amp: bool = True
    # Frames shared by consecutive renderer windows of T frames (the model's sequence length);
    # they are cross-faded so window boundaries leave no seam. None = T // 4 (at least 1): every
    # frame is rendered T / (T - overlap) times, 1.33 at T = 8 against 2 at T // 2, which `python -m
    # bench windows` measured 1.5x faster with the same jitter and 43 dB PSNR to the T // 2 dub.
    window_overlap: int | None = None
    # Output frames rendered, composited and encoded per streaming step (rounded to whole windows).
    # Memory holds about this many full-resolution source frames (plus one renderer window), and
    # up to as many finished frames queued for the encoder thread.
    chunk_frames: int = 32
    render_batch_windows: int = 1  # renderer windows per forward pass (CPU: 1 is fastest; raise on GPU)
    # audio2expression (and the smoothing weights) run on pieces of this many frames with this much
    # audio context each side, so memory stays flat for any audio length (the networks train on
    # sequences of seconds).
    expression_chunk_frames: int = 500
    expression_context_frames: int = 50
    # The renderer's background is the source crop blanked over the union of the source's and
    # the new mouth region, grown by this many pixels (training blanks up to +10 px, see erosion).
    mask_dilation_px: float = 4.0
    # Source preparation rejects a video whose face differs from the speaker model's identity by
    # more than this RMS vertex distance (canonical units: 1 = the outer eye-corner distance).
    # None switches the check off.
    max_identity_distance: float | None = 0.02
    # The mean face of a short clip still carries its expressions: one frame of grid/s1 lies 0.011-0.033
    # from s1's identity, one of other GRID speakers 0.018-0.057, so no limit tells them apart. With
    # fewer face frames than this the face is not checked, and the dub's row says it was not verified.
    min_identity_frames: int = 25
    # Silent stretches of the new audio close the mouth (stableface.audio.silence).
    silence_gate: SilenceGateConfig = field(default_factory=SilenceGateConfig)
    # The predicted mouth is low-passed until it is no rougher than the source's real speech
    # (stableface.inference.motion): speech unlike the training voices makes it flicker.
    motion_filter: MotionFilterConfig = field(default_factory=MotionFilterConfig)
    landmark_backend: str = "mediapipe"  # the only backend with the 3D mesh the face model needs
    # Faces tracked at once in a source (stableface.face.face_tracks); the dub paints the one that
    # matches the speaker model, or the one a row selects. More costs nothing while fewer are on
    # screen (MediaPipe's landmarks of a lone face are the same for any value).
    max_faces: int = 4
    # Only frames inside face segments are dubbed (stableface.face.segments); the others keep the
    # source's pixels. Gaps of at most this many frames without a face (a detector blink) are
    # bridged inside a segment; a longer one (a cutaway, the speaker turned away) never is.
    max_bridge_frames: int = DEFAULT_MAX_GAP_FRAMES
    # Frames over which the dub eases in and out where a face appears or leaves within a shot (at a
    # shot cut it starts and stops at once: the cut hides the change).
    fade_frames: int = 3
    # Speech shorter than this is refused (a clear failed row, not a dub of a few frames).
    min_audio_s: float = 0.5
    # A source with a face in fewer than this fraction of its frames is refused (NoFaceFound); above
    # it, a dub whose output is mostly without a face succeeds with a warning in its row.
    min_face_fraction: float = 0.1
    # Half the L1 distance of consecutive frames' colour histograms above which a new shot starts.
    shot_cut_threshold: float = 0.4

    def overlap_for(self, sequence_length: int) -> int:
        """The window overlap for a renderer of ``sequence_length`` (T) frames: as set, else T // 4, at least 1."""
        if self.window_overlap is not None:
            return self.window_overlap
        return min(sequence_length - 1, max(1, sequence_length // DEFAULT_OVERLAP_DIVISOR))

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise InputError("inference.chunk_frames", f"must be >= 1, got {self.chunk_frames}")
        if self.render_batch_windows < 1:
            raise InputError(
                "inference.render_batch_windows", f"must be >= 1, got {self.render_batch_windows}"
            )
        if self.max_faces < 1:
            raise InputError("inference.max_faces", f"must be >= 1, got {self.max_faces}")
        if self.window_overlap is not None and self.window_overlap < 0:
            raise InputError("inference.window_overlap", f"must be >= 0, got {self.window_overlap}")
        if self.max_bridge_frames < 0 or self.fade_frames < 0:
            raise InputError(
                "inference.max_bridge_frames",
                f"bridged gaps and fades must be >= 0 frames, got {self.max_bridge_frames} and {self.fade_frames}",
            )
        if self.expression_chunk_frames < 1 or self.expression_context_frames < 0:
            raise InputError(
                "inference.expression_chunk_frames",
                "chunk must be >= 1 frame and context >= 0 frames, got "
                f"{self.expression_chunk_frames} and {self.expression_context_frames}",
            )


@dataclass
class CompositeConfig:
    """Pasting the generated face crop back into the full-resolution frame."""

    # Width of the soft edge around the pasted mouth/lower-face region (crop pixels at 256 px).
    # The region is the blanked background region; the ramp lies outside it, so every pixel the
    # renderer had to invent is fully replaced and nothing beyond region + feather changes.
    feather_px: float = 12.0


@dataclass
class ProvenanceConfig:
    """The paper's ethics section: every dubbed video says it is synthetic, visibly, invisibly (a
    watermark in every frame that survives re-encoding, scaling and cropping), in signed C2PA content
    credentials and in its mp4 tags."""

    visible_mark: bool = True  # only an explicit false removes the on-screen mark
    mark_text: str = "SYNTHETIC"
    mark_corner: str = "bottom_right"  # top_left | top_right | bottom_left | bottom_right
    mark_height_fraction: float = 0.045  # text height as a fraction of the frame height
    mark_min_height_px: int = 10  # never smaller than this, so the mark stays readable
    mark_opacity: float = 0.85  # of the text; a dark plate behind it keeps it readable on any image
    tool: str = "stableface"  # the tool named in the mp4 metadata and the content credentials
    watermark: WatermarkConfig = field(default_factory=WatermarkConfig)
    credentials: CredentialsConfig = field(default_factory=CredentialsConfig)

    def __post_init__(self) -> None:
        if self.mark_corner not in CORNERS:
            raise InputError(
                "provenance.mark_corner", f"'{self.mark_corner}' is not one of {', '.join(CORNERS)}"
            )
        if self.visible_mark and not self.mark_text.strip():
            raise InputError(
                "provenance.mark_text", "empty; set provenance.visible_mark=false to drop the mark"
            )
        if not 0.0 < self.mark_opacity <= 1.0:
            raise InputError("provenance.mark_opacity", f"must be in (0, 1], got {self.mark_opacity}")


@dataclass
class EncodeConfig:
    """The H.264 + AAC mp4 written at the source's fps and size."""

    crf: int = 18  # x264 constant rate factor: 18 is visually lossless for talking heads
    preset: str = "veryfast"  # x264 speed/size trade-off; dubbing is encode-bound on small models
    audio_rate: int = 48_000  # Hz of the AAC track (the features use 16 kHz regardless)
    threads: int = 1  # x264 threads; Ray actors get one CPU each by default
    # Encode in a thread beside the rendering (a queue of up to a chunk of frames); the file is the
    # same either way.
    background: bool = True


@dataclass
class DubConfig:
    """Everything :func:`stableface.inference.dub` needs besides the model and the files."""

    inference: InferenceConfig = field(default_factory=InferenceConfig)
    composite: CompositeConfig = field(default_factory=CompositeConfig)
    provenance: ProvenanceConfig = field(default_factory=ProvenanceConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    # A dub longer than this is encoded in segments of this length, each stored as it finishes, so a
    # rerun after a killed worker resumes from the last finished one (stableface.inference.segmented).
    # None: one pass, and an interrupted dub starts over.
    segment_seconds: float | None = 60.0

    def __post_init__(self) -> None:
        if self.segment_seconds is not None and not self.segment_seconds > 0:
            raise InputError(
                "dub.segment_seconds", f"must be > 0 seconds (or null), got {self.segment_seconds}"
            )

    def segment_frames(self, fps: float) -> int | None:
        """Output frames per segment at ``fps`` (None: not segmented)."""
        if self.segment_seconds is None:
            return None
        return max(1, round(self.segment_seconds * fps))
