"""Stage 1: audio2expression, trained on every speaker of a dataset (one shared expression space).

Loss (the paper gives none for its Transformer-S2A stage, so it is chosen here):

    L = mean |m^ - m| + velocity_weight * mean |(m^_t+1 - m^_t) - (m_t+1 - m_t)|

over the mouth coefficients m (B, L, n_mouth). L1 rather than L2 because L2 regresses to the
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

from stableface.training.config import Stage1Config, TrainConfig
from stableface.training.loop import (
    Callbacks,
    NamedStateTrainer,
    WorkerContext,
    make_loader,
    optimise,
    run_epochs,
    unwrap,
)
from stableface.utils.precision import Precision


def mouth_loss(
    predicted: torch.Tensor, target: torch.Tensor, velocity_weight: float
) -> dict[str, torch.Tensor]:
    """(B, L, n) predicted and true mouth coefficients -> {"l1", "velocity", "total"}."""
    l1 = (predicted - target).abs().mean()
    velocity = (predicted.diff(dim=1) - target.diff(dim=1)).abs().mean()  # (B, L-1, n) differences
    return {"l1": l1, "velocity": velocity, "total": l1 + velocity_weight * velocity}


class Stage1Trainer(NamedStateTrainer):
    """Optimiser, counters and one training step for audio2expression (plain or DDP-wrapped)."""

    stage = "stage1"

    def __init__(
        self, model: nn.Module, config: Stage1Config, context: WorkerContext, amp: bool = False,
        sync_loss: nn.Module | None = None,
    ):  # fmt: skip
        self.model = model
        self.sync_loss = sync_loss  # stableface.losses.sync.ExpressionSyncLoss when sync_weight > 0
        self.config = config
        self.context = context
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
        terms = mouth_loss(predicted.float(), mouth, self.config.velocity_weight)
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
    sync_loss: nn.Module | None = None,
) -> tuple[Stage1Trainer, dict]:
    """Train ``model`` (audio2expression, already on the device, DDP-wrapped or not) on
    :class:`~stableface.data.sequences.ExpressionSequences`; ``state`` resumes a trainer.

    Returns the trainer and the final metrics."""
    context = context or WorkerContext()
    trainer = Stage1Trainer(model, config.stage1, context, amp=config.amp, sync_loss=sync_loss)
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
