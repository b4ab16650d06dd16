"""The arithmetic the networks run in, chosen from the hardware: bf16 autocast where it is fast.

- CUDA: bf16 where the GPU supports it, else fp16 with loss scaling (training).
- CPU: bf16 only where oneDNN has native bf16 kernels, i.e. the CPU has AMX tiles or AVX512-BF16
  (detected at run time: elsewhere oneDNN emulates bf16 and it is slower than fp32); else fp32.
- ``enabled=False`` (``schedule.amp=false``, ``dub.inference.amp=false``) forces fp32 everywhere.

Autocast lowers only the convolutions and matrix products; parameters, gradients, optimiser
state, losses, the smoothing weights and metrics are computed in fp32 by the callers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo flag -> the name used in logs, most capable first.
CPU_BF16_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16"}
_announced: set[tuple[str, str]] = set()  # (where, description) already logged by this process


def _cpuinfo_flags() -> set[str]:
    try:
        text = CPUINFO.read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


@functools.cache
def cpu_bf16_kernels() -> str | None:
    """``"AMX"`` or ``"AVX512-BF16"`` when this CPU gives oneDNN native bf16 kernels, else None.

    torch's own CPU capability probes (what oneDNN dispatches on) decide where they exist; the
    kernel's /proc/cpuinfo flags otherwise.
    """
    if not torch.backends.mkldnn.is_available():
        return None
    probes = {"AMX": getattr(torch.cpu, "_is_amx_tile_supported", None),
              "AVX512-BF16": getattr(torch.cpu, "_is_avx512_bf16_supported", None)}  # fmt: skip
    if all(probe is not None for probe in probes.values()):
        return next((name for name, probe in probes.items() if probe()), None)
    flags = _cpuinfo_flags()
    return next((name for flag, name in CPU_BF16_FLAGS.items() if flag in flags), None)


class Precision:
    """Autocast on ``device`` when ``enabled`` and the hardware makes it pay, else plain fp32."""

    def __init__(self, device: torch.device | str, enabled: bool):
        self.device = torch.device(device)
        self.dtype = torch.float32
        if not enabled:
            self.reason = "mixed precision switched off (amp=false)"
        elif self.device.type == "cuda":
            bf16 = torch.cuda.is_bf16_supported()
            self.dtype = torch.bfloat16 if bf16 else torch.float16
            self.reason = "CUDA" + ("" if bf16 else " without bf16, so fp16 with loss scaling")
        elif self.device.type == "cpu" and (kernels := cpu_bf16_kernels()) is not None:
            self.dtype = torch.bfloat16
            self.reason = f"the CPU has {kernels}"
        else:
            self.reason = f"no native bf16 kernels on {self.device.type} (needs AMX or AVX512-BF16)"
        self.enabled = self.dtype != torch.float32
        self.needs_scaling = self.dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def full_precision(self) -> contextlib.AbstractContextManager:
        """A block inside :meth:`autocast` that must run in fp32 (the smoothing weights)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, enabled=False)

    def make_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device.type, enabled=self.needs_scaling)

    def describe(self) -> str:
        name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        return f"{name} {'autocast ' if self.enabled else ''}on {self.device} ({self.reason})"

    def announce(self, where: str) -> Precision:
        """Log which precision ``where`` runs in, once per process and choice; returns self."""
        key = (where, self.describe())
        if key not in _announced:
            _announced.add(key)
            logger.info("%s: %s", where, key[1])
        return self
