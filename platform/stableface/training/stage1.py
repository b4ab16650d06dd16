"""Stage 1: audio2expression, trained on every speaker of a dataset (one shared expression space).

Loss (the paper gives none for its Transformer-S2A stage, so it is chosen here):

    L = mean |m^ - m| + velocity_weight * mean |(m^_t+1 - m^_t) - (m_t+1 - m_t)|
        + acceleration_weight * (the same on second differences)
        + opening_weight * mean |g^ - g| + amplitude_weight * mean |std_t g^ - std_t g|
        + lip_motion_weight * mean |std_t a^ - std_t a|

over the mouth coefficients m (B, L, n_mouth), the inner-lip gaps g (B, L, 3) and the lip vertex
accelerations a (B, L-2, 20, 3) of the decoded mesh (:mod:`stableface.training.stage1_losses` has one function per term and says why each). L1 rather than L2 because L2 regresses to the
mean and damps the mouth (it opens less than the speaker's does), and landmark-tracking outliers
weigh less under L1; the coefficient space is an orthonormal basis of vertex displacements, so
errors in it are vertex errors of the lower face. The velocity term matches the motion, not only
the poses: a prediction that is right on average but jitters from frame to frame - exactly what
StableFace is about - pays for it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stableface.training.config import Stage1Config, TrainConfig, TrainStage
from stableface.training.loop import (
    Callbacks,
    NamedStateTrainer,
    WorkerContext,
    make_loader,
    optimise,
    run_epochs,
    unwrap,
)
from stableface.training.stage1_losses import (
    LipGeometry,
    acceleration_l1,
    amplitude_l1,
    coefficient_l1,
    lip_gaps,
    lip_motion_l1,
    opening_l1,
    velocity_l1,
)
from stableface.utils.precision import Precision


def mouth_loss(
    predicted: torch.Tensor,
    target: torch.Tensor,
    config: Stage1Config,
    geometry: LipGeometry | None = None,
    rest: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """(B, L, n) predicted and true mouth coefficients (and, for the mesh terms, the lip geometry
    and the (B, P, 3) identity gaps) -> each weighted term and their sum under "total"."""
    terms = {"l1": coefficient_l1(predicted, target), "velocity": velocity_l1(predicted, target)}
    weights = {"l1": 1.0, "velocity": config.velocity_weight}
    if config.acceleration_weight:
        terms["acceleration"] = acceleration_l1(predicted, target)
        weights["acceleration"] = config.acceleration_weight
    if (config.opening_weight or config.amplitude_weight or config.lip_motion_weight) and (
        geometry is None or rest is None
    ):
        raise ValueError("the mesh terms need the lip geometry and identity gaps")
    if config.opening_weight or config.amplitude_weight:
        predicted_gaps = lip_gaps(predicted, rest, geometry)  # (B, L, P)
        real_gaps = lip_gaps(target, rest, geometry)  # (B, L, P)
        terms["opening"] = opening_l1(predicted_gaps, real_gaps)
        terms["amplitude"] = amplitude_l1(predicted_gaps, real_gaps)
        weights.update(opening=config.opening_weight, amplitude=config.amplitude_weight)
    if config.lip_motion_weight:
        terms["lip_motion"] = lip_motion_l1(predicted, target, geometry)
        weights["lip_motion"] = config.lip_motion_weight
    terms["total"] = sum(weights[name] * value for name, value in terms.items())
    return terms


class Stage1Trainer(NamedStateTrainer):
    """Optimiser, counters and one training step for audio2expression (plain or DDP-wrapped)."""

    stage = TrainStage.STAGE1

    def __init__(
        self,
        model: nn.Module,
        config: Stage1Config,
        context: WorkerContext,
        amp: bool = False,
        geometry: LipGeometry | None = None,
        sync_loss: nn.Module | None = None,
    ):
        self.model = model
        self.sync_loss = sync_loss  # stableface.losses.sync.ExpressionSyncLoss when sync_weight > 0
        self.config = config
        self.context = context
        self.geometry = geometry.to(context.device) if geometry is not None else None
        self.precision = Precision(context.device, amp).announce("stage 1 training")
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.optimizers = {"audio2expression": optimizer}
        self.scalers = {"audio2expression": self.precision.make_scaler()}
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.elapsed_s = 0.0
        self.time_fraction = 0.0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        audio = batch["audio"].to(self.context.device)  # (B, L, W, M)
        mouth = batch["mouth"].to(self.context.device)  # (B, L, n_mouth)
        self.model.train()
        with self.precision.autocast():
            predicted = self.model(audio)  # (B, L, n_mouth)
        rest = batch["lip_rest"].to(self.context.device) if "lip_rest" in batch else None  # (B, P, 3)
        terms = mouth_loss(predicted.float(), mouth, self.config, self.geometry, rest)
        if self.sync_loss is not None:
            terms["sync"] = self.sync_loss(predicted.float(), audio)
            terms["total"] = terms["total"] + self.config.sync_weight * terms["sync"]
        self.optimizers["audio2expression"].zero_grad(set_to_none=True)
        norm = optimise(
            terms["total"],
            [self.optimizers["audio2expression"]],
            self.scalers["audio2expression"],
            list(self.model.parameters()),
            self.config.grad_clip,
        )
        metrics = {f"loss/{name}": float(value.detach()) for name, value in terms.items()}
        if self.config.grad_clip is not None:
            metrics["grad_norm"] = norm
        return metrics

    def sample_image(self, batch: dict[str, torch.Tensor]) -> np.ndarray | None:
        return None  # stage 1 has no frames to show

    @property
    def audio2expression(self) -> nn.Module:
        return unwrap(self.model)

    def networks(self) -> dict[str, nn.Module]:
        return {"audio2expression": self.audio2expression}


def train_stage1(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    config: TrainConfig,
    context: WorkerContext | None = None,
    callbacks: Callbacks | None = None,
    state: dict | None = None,
    geometry: LipGeometry | None = None,
    sync_loss: nn.Module | None = None,
) -> tuple[Stage1Trainer, dict]:
    """Train ``model`` (audio2expression, already on the device, DDP-wrapped or not) on
    :class:`~stableface.data.sequences.ExpressionSequences`; ``state`` resumes a trainer;
    ``geometry`` (the dataset's face model's lips) is needed by the opening and amplitude terms.

    Returns the trainer and the final metrics."""
    context = context or WorkerContext()
    trainer = Stage1Trainer(
        model, config.stage1, context, amp=config.amp, geometry=geometry, sync_loss=sync_loss
    )
    if state is not None:
        trainer.load_state_dict(state)
    loader = make_loader(dataset, config.stage1.batch_size, context, seed=config.seed)
    final = run_epochs(
        trainer,
        loader,
        config.stage1.epochs,
        config,
        context,
        callbacks,
        max_steps=config.stage1.max_steps,
        max_minutes=config.stage1.max_minutes,
    )
    return trainer, final
