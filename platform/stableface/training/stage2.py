"""Stage 2, one speaker: the renderer alone, then the renderer and the adaptive smoothing jointly.

Each step, on sequences of T consecutive frames (paper: T = 12):

1. the face-shape images are smoothed (frozen smoothing in the renderer-only phase, trained in
   the joint phase), the renderer draws the frames from the eroded background + smoothed shape
   (+ audio);
2. discriminator step: non-saturating GAN loss on real vs generated frames, both conditioned on
   the renderer input (one forward over the concatenated batch, so DDP sees one forward);
3. generator step: 20 L_rec + 1 L_adv (paper), L_rec = mouth-weighted L1 + VGG19 perceptual or,
   without VGG19 weights, discriminator feature matching.

In the generator step the discriminator runs unwrapped (no DDP): its parameter gradients from that
pass are thrown away before its next step, and the DDP reducer must not wait for them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stableface.losses.adversarial import discriminator_adversarial_loss
from stableface.losses.generator import GeneratorLoss
from stableface.training.config import Stage2Config, TrainConfig, TrainStage
from stableface.training.loop import (
    Callbacks,
    NamedStateTrainer,
    WorkerContext,
    make_loader,
    optimise,
    run_epochs,
    steps_per_epoch,
    unwrap,
)
from stableface.utils.precision import Precision

PHASE_RENDERER = "renderer"
PHASE_JOINT = "joint"
STAGE2_NETWORKS = ("renderer", "smoothing", "discriminator")


def has_parameters(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def to_uint8_frames(frames: torch.Tensor) -> np.ndarray:
    """(N, C, S, S) in [-1, 1] (or [0, 1] with C = 1) -> (N, S, S, 3) uint8."""
    frames = frames.detach().float().cpu()
    if frames.shape[1] == 1:
        frames = frames.repeat(1, 3, 1, 1) * 2 - 1  # (N, 3, S, S) shape image [0, 1] -> [-1, 1]
    pixels = ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (N, 3, S, S)
    return pixels.permute(0, 2, 3, 1).numpy()


def tile_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of (T, S, S, 3) frames -> one (len(rows) * S, T * S, 3) image, time left to right."""
    return np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)


class Stage2Trainer(NamedStateTrainer):
    """Optimisers, counters and one GAN training step for renderer, smoothing and discriminator."""

    stage = TrainStage.STAGE2

    def __init__(
        self,
        renderer: nn.Module,
        smoothing: nn.Module,
        discriminator: nn.Module,
        generator_loss: GeneratorLoss,
        config: Stage2Config,
        context: WorkerContext,
        amp: bool = False,
    ):
        self.renderer, self.smoothing, self.discriminator = renderer, smoothing, discriminator
        self.generator_loss = generator_loss.to(context.device)
        self.config = config
        self.context = context
        self.precision = Precision(context.device, amp).announce("stage 2 training")
        betas = (config.beta1, config.beta2)
        self.optimizers = {
            "renderer": torch.optim.Adam(renderer.parameters(), lr=config.lr_renderer, betas=betas),
            "discriminator": torch.optim.Adam(
                discriminator.parameters(), lr=config.lr_discriminator, betas=betas
            ),
        }
        if has_parameters(smoothing):  # the fixed Gaussian and "none" variants have nothing to train
            self.optimizers["smoothing"] = torch.optim.Adam(
                smoothing.parameters(), lr=config.lr_smoothing, betas=betas
            )
        self.scalers = {
            "generator": self.precision.make_scaler(),
            "discriminator": self.precision.make_scaler(),
        }
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.elapsed_s = 0.0
        self.time_fraction = 0.0
        # The joint phase starts after renderer_epochs epochs, or at the same fraction of max_steps.
        self.joint_from_step = 0
        self.last_fake: torch.Tensor | None = None  # (T, 3, S, S) first generated sequence of the last step
        self.last_smoothed: torch.Tensor | None = None  # (T, 1, S, S)

    # ------------------------------------------------------------------ phases
    @property
    def phase(self) -> str:
        """Joint from ``joint_from_step`` on, or once the same share of a time budget is used."""
        joint_share = self.config.renderer_epochs / max(self.config.epochs, 1)
        if self.step >= self.joint_from_step or self.time_fraction >= joint_share:
            return PHASE_JOINT
        return PHASE_RENDERER

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def trains_smoothing(self) -> bool:
        """The joint phase trains the smoothing, if it has parameters (not the fixed variants)."""
        return self.phase == PHASE_JOINT and "smoothing" in self.optimizers

    # ------------------------------------------------------------------ one step
    def generate(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's frames (B, T, 3, S, S) and smoothed shapes (B, T, 1, S, S)."""
        device = self.context.device
        background = batch["background"].to(device)  # (B, T, 3, S, S)
        shape = batch["shape"].to(device)  # (B, T, 1, S, S)
        expression = batch["expression"].to(device)  # (B, T, E)
        audio = batch["audio"].to(device)  # (B, T, W, M)
        warped = batch["warped"].to(device) if "warped" in batch else None  # (B, T, 3, S, S)
        with (
            torch.set_grad_enabled(self.trains_smoothing and torch.is_grad_enabled()),
            self.precision.full_precision(),  # the weights are a softmax over K taps: fp32
        ):
            smoothed, _ = self.smoothing(shape, expression)  # (B, T, 1, S, S), (B, T, K)
        fake = self.renderer(background, smoothed, audio, warped)  # (B, T, 3, S, S)
        return fake, smoothed

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        device = self.context.device
        for network in (self.renderer, self.smoothing, self.discriminator):
            network.train()
        background = batch["background"].to(device)  # (B, T, 3, S, S)
        real = batch["target"].to(device)  # (B, T, 3, S, S)
        mask = batch["mask"].to(device)  # (B, T, 1, S, S)
        with self.precision.autocast():
            fake, smoothed = self.generate(batch)  # (B, T, 3, S, S), (B, T, 1, S, S)
            condition = torch.cat([background, smoothed], dim=2)  # (B, T, 4, S, S)

            # Discriminator: real and generated in one forward (DDP allows one forward per backward).
            pair_frames = torch.cat([real, fake.detach()], dim=0)  # (2B, T, 3, S, S)
            pair_condition = torch.cat([condition, condition], dim=0).detach()  # (2B, T, 4, S, S)
            logits, _ = self.discriminator(pair_frames, pair_condition)  # (2B*T, 1, h, w)
        real_logits, fake_logits = logits.float().chunk(2)
        d_loss = discriminator_adversarial_loss(
            real_logits, fake_logits, self.generator_loss.patch_weights(mask, real_logits)
        )
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        optimise(
            d_loss,
            [self.optimizers["discriminator"]],
            self.scalers["discriminator"],
            list(self.discriminator.parameters()),
            self.config.grad_clip,
        )

        with self.precision.autocast():
            plain_discriminator = unwrap(self.discriminator)
            logits, features = plain_discriminator(
                torch.cat([fake, real], dim=0), torch.cat([condition, condition.detach()], dim=0)
            )  # (2B*T, 1, h, w), [(2B*T, C_i, h_i, w_i)]
        fake_logits = logits.float().chunk(2)[0]
        fake_features = [f.float().chunk(2)[0] for f in features]
        real_features = [f.float().chunk(2)[1] for f in features]
        terms = self.generator_loss(fake.float(), real, mask, fake_logits, fake_features, real_features)
        generator_optimizers = [self.optimizers["renderer"]]
        parameters = list(self.renderer.parameters())
        if self.trains_smoothing:
            generator_optimizers.append(self.optimizers["smoothing"])
            parameters += list(self.smoothing.parameters())
        for optimizer in generator_optimizers:
            optimizer.zero_grad(set_to_none=True)
        optimise(
            terms["total"], generator_optimizers, self.scalers["generator"], parameters, self.config.grad_clip
        )

        self.last_fake = fake[0].detach()
        self.last_smoothed = smoothed[0].detach()
        metrics = {f"loss/{name}": float(value.detach()) for name, value in terms.items()}
        metrics["loss/discriminator"] = float(d_loss.detach())
        metrics["joint_phase"] = float(self.phase == PHASE_JOINT)
        return metrics

    def sample_image(self, batch: dict[str, torch.Tensor]) -> np.ndarray | None:
        """Rows: eroded background, smoothed face shape[, warped texture], generated, real; one
        column per frame."""
        if self.last_fake is None:
            return None
        warped = [to_uint8_frames(batch["warped"][0])] if "warped" in batch else []
        return tile_rows(
            [
                to_uint8_frames(batch["background"][0]),
                to_uint8_frames(self.last_smoothed),
                *warped,
                to_uint8_frames(self.last_fake),
                to_uint8_frames(batch["target"][0]),
            ]
        )

    # ------------------------------------------------------------------ state
    def networks(self) -> dict[str, nn.Module]:
        return {
            "renderer": unwrap(self.renderer),
            "smoothing": unwrap(self.smoothing),
            "discriminator": unwrap(self.discriminator),
        }


def joint_start_step(config: Stage2Config, per_epoch: int) -> int:
    """The step where the joint phase begins: after ``renderer_epochs`` epochs, scaled down with
    ``max_steps`` so a capped run still trains both phases in the paper's proportion."""
    total = config.epochs * per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return round(total * config.renderer_epochs / max(config.epochs, 1))


def train_stage2(
    renderer: nn.Module,
    smoothing: nn.Module,
    discriminator: nn.Module,
    generator_loss: GeneratorLoss,
    dataset: torch.utils.data.Dataset,
    config: TrainConfig,
    context: WorkerContext | None = None,
    callbacks: Callbacks | None = None,
    state: dict | None = None,
) -> tuple[Stage2Trainer, dict]:
    """Train on :class:`~stableface.data.sequences.RenderSequences` of one speaker; the networks are
    already on the device (DDP-wrapped or not); ``state`` resumes a trainer.

    Returns the trainer and the final metrics."""
    context = context or WorkerContext()
    trainer = Stage2Trainer(
        renderer, smoothing, discriminator, generator_loss, config.stage2, context, amp=config.amp
    )
    if state is not None:
        trainer.load_state_dict(state)
    loader = make_loader(dataset, config.stage2.batch_size, context, seed=config.seed)
    trainer.joint_from_step = joint_start_step(config.stage2, steps_per_epoch(loader))
    final = run_epochs(
        trainer,
        loader,
        config.stage2.epochs,
        config,
        context,
        callbacks,
        max_steps=config.stage2.max_steps,
        max_minutes=config.stage2.max_minutes,
    )
    return trainer, final
