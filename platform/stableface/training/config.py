"""Training schedules: the two stages' epochs, learning rates, batch sizes and sequence lengths.

Presets live in ``stableface/conf/schedule/<name>.yaml`` (keys are :class:`TrainConfig` fields):
``paper`` (the paper's schedule, for GPUs), ``cpu`` (the under-an-hour CPU run), ``demo`` (about
ten minutes on a laptop-class CPU) and ``tiny`` (tests).

Stage 1 trains audio2expression; stage 2 trains the renderer alone for ``renderer_epochs``, then
the renderer and the adaptive smoothing jointly for ``joint_epochs`` (paper: 100 + 20, Adam,
lr 1e-4 for the renderer and 1e-6 for the smoothing). The discriminator trains throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from stableface.errors import InputError


class TrainStage(StrEnum):
    """One of the two training stages; the value names its run folder, logs and checkpoints."""

    STAGE1 = "stage1"  # audio2expression, over every stage-1 speaker
    STAGE2 = "stage2"  # a speaker's renderer and adaptive smoothing


class StageSelection(StrEnum):
    """Which stages a train job runs: the job config's ``stage`` (``stage=1`` on the command line)."""

    STAGE1 = "1"
    STAGE2 = "2"
    ALL = "all"

    @classmethod
    def parse(cls, value: object) -> StageSelection:
        """``value`` (an int or a string, as Hydra gives it) as a selection, or an error naming it."""
        try:
            return cls(str(value))
        except ValueError:
            raise InputError("stage", f"'{value}' is not one of {', '.join(cls)}") from None

    @property
    def stages(self) -> tuple[TrainStage, ...]:
        if self is StageSelection.ALL:
            return (TrainStage.STAGE1, TrainStage.STAGE2)
        return (TrainStage.STAGE1,) if self is StageSelection.STAGE1 else (TrainStage.STAGE2,)


class Stage1Init(StrEnum):
    """Where stage 1 starts (see :mod:`stableface.training.pretrained`)."""

    scratch = "scratch"  # random weights
    finetune = "finetune"  # the packaged pretrained audio2expression, trained further on this dataset
    reuse = "reuse"  # the packaged weights as they are: stage 1 does not train


@dataclass
class Stage1Config:
    """audio2expression: audio windows -> mouth coefficients, over every speaker of the dataset."""

    epochs: int = 40
    batch_size: int = 16  # sequences per worker and step
    sequence_length: int = 32  # L, frames per training sequence
    stride: int = 8  # frames between consecutive sequence starts in a video
    lr: float = 1e-4
    weight_decay: float = 1e-4
    # Weight of the L1 on frame-to-frame differences: matching the motion, not only the poses,
    # keeps the predicted mouth from jittering around a correct mean.
    velocity_weight: float = 1.0
    # Articulation terms (stableface.training.stage1_losses); 0 switches a term off. Second
    # differences of the coefficients (the trajectory's lip MSI is an acceleration variance):
    acceleration_weight: float = 0.0
    # L1 on the inner-lip gaps of the decoded mesh (canonical units, 1 = outer eye-corner distance):
    opening_weight: float = 0.0
    # |std over time of the predicted inner-lip gaps - the real ones'| per sequence: pays for the
    # mean-regressed, barely moving mouth that L1 alone converges to.
    amplitude_weight: float = 0.0
    # |std over time of the predicted lip-vertex accelerations - the real ones'|: lip MSI matching.
    lip_motion_weight: float = 0.0
    grad_clip: float | None = 1.0  # max global gradient norm; None = no clipping
    max_steps: int | None = None  # stop early (tests, benchmarks); None = run every epoch
    # Stop after this much training time (over all attempts, setup excluded): a run on a shared
    # or slow machine still ends in time, with fewer steps. None = no limit.
    max_minutes: float | None = None
    # Weight of the frozen lip-sync expert's loss on the predicted mouth (stableface.losses.sync,
    # Wav2Lip's expert idea on the face model's lips); 0 = off (and off in every preset).
    sync_weight: float = 0.0
    sync_expert: str | None = None  # the expert's checkpoint URI; None = the weights shipped in the package
    # Repeat the windows of speakers with little footage (sqrt of the size ratio to the largest).
    balance_speakers: bool = False
    # Speakers kept out of stage 1 entirely (leave-speakers-out validation, evaluated after it).
    heldout_speakers: list[str] = field(default_factory=list)
    # Where stage 1 starts: random weights, or the packaged pretrained ones (fine-tuned or reused).
    init: Stage1Init = Stage1Init.scratch


@dataclass
class Stage2Config:
    """Per speaker: the renderer alone, then the renderer + adaptive smoothing jointly."""

    renderer_epochs: int = 100
    joint_epochs: int = 20
    batch_size: int = 2  # sequences per worker and step
    sequence_length: int | None = None  # T; None = the model's renderer.sequence_length (its maximum)
    stride: int = 4  # frames between consecutive sequence starts in a video
    lr_renderer: float = 1e-4
    lr_smoothing: float = 1e-6
    lr_discriminator: float = 1e-4
    beta1: float = 0.5  # Adam betas of all three optimisers (pix2pix-style GAN training)
    beta2: float = 0.999
    grad_clip: float | None = None  # max gradient norm of each network; None = no clipping
    max_steps: int | None = None  # stop early (tests, benchmarks); None = run every epoch
    # As stage 1's; the joint phase then starts once renderer_epochs / epochs of it is used.
    max_minutes: float | None = None

    @property
    def epochs(self) -> int:
        return self.renderer_epochs + self.joint_epochs


@dataclass
class TrainConfig:
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    seed: int = 0
    holdout: int = 2  # videos per speaker kept out of both stages, for the held-out metrics
    eval_videos: int | None = None  # held-out videos to evaluate (None = all held out)
    log_every: int = 10  # steps between metric rows (TensorBoard, metrics.csv)
    sample_every: int = 200  # steps between sample images (generated | real); 0 = never
    checkpoint_every: int = 200  # steps between checkpoints (the end always checkpoints)
    keep_checkpoints: int = 2  # Ray Train keeps this many most recent checkpoints per stage
    # Mixed precision where the hardware has it (stableface.utils.precision): bf16 autocast on CPUs
    # with AMX or AVX512-BF16, bf16 (else fp16 with loss scaling) on CUDA; false forces fp32.
    amp: bool = True
    torch_threads: int | None = None  # intra-op threads per worker; None = CPUs reserved per worker
    record_sample_ids: bool = False  # each rank writes the sample ids it trained on, per epoch

    def __post_init__(self) -> None:
        for name in ("log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"schedule.{name}", f"must be at least 1, got {getattr(self, name)}")
        if self.sample_every < 0:
            raise InputError("schedule.sample_every", f"must be >= 0, got {self.sample_every}")
        if self.holdout < 0:
            raise InputError("schedule.holdout", f"must be >= 0, got {self.holdout}")


def stage2_length(config: TrainConfig, model_sequence_length: int) -> int:
    """T for stage 2: the schedule's, checked against the renderer's learned temporal positions."""
    length = config.stage2.sequence_length or model_sequence_length
    if not 2 <= length <= model_sequence_length:
        raise InputError(
            "schedule.stage2.sequence_length",
            f"{length} frames; the renderer takes 2..{model_sequence_length} (model.renderer.sequence_length)",
        )
    return length
