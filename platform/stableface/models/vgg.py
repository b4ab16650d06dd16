"""VGG19 feature extractor with torchvision's state-dict layout (``features.N.weight``).

A torchvision ``vgg19`` state dict (e.g. ``vgg19-dcbb9e9d.pth``) loads into it without
torchvision; its ``classifier.*`` entries are ignored. Weights are frozen: it only measures.
"""

from __future__ import annotations

import logging
import pickle

import torch
from torch import nn

from stableface.errors import InputError
from stableface.io.storage import Storage

logger = logging.getLogger(__name__)

# torchvision's configuration "E": conv widths, "M" = 2x2 max pool.
VGG19_LAYOUT = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURES_PREFIX = "features."


def _relu_names() -> dict[str, int]:
    """``relu<block>_<conv>`` -> index of that ReLU in ``features`` (relu1_1 = 1, ..., relu5_4 = 35)."""
    names: dict[str, int] = {}
    index, block, conv = 0, 1, 0
    for item in VGG19_LAYOUT:
        if item == "M":
            index += 1
            block, conv = block + 1, 0
        else:
            conv += 1
            names[f"relu{block}_{conv}"] = index + 1
            index += 2
    return names


VGG19_RELU_INDEX = _relu_names()


class VGG19Features(nn.Module):
    """Images in [-1, 1] -> the activations of the named ReLU layers."""

    def __init__(self, layers: list[str]):
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_RELU_INDEX]
        if unknown:
            raise InputError("vgg layers", f"unknown {unknown}; known: {', '.join(VGG19_RELU_INDEX)}")
        modules: list[nn.Module] = []
        in_channels = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(in_channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                in_channels = int(item)
        self.features = nn.Sequential(*modules)  # indices match torchvision's vgg19().features
        self.layer_names = list(layers)
        self.layer_indices = [VGG19_RELU_INDEX[name] for name in layers]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # a fixed measuring network: never in training mode

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) in [-1, 1] -> [(N, C_i, H_i, W_i)] for each requested layer, in order."""
        x = ((images + 1) / 2 - self.mean) / self.std  # (N, 3, H, W) ImageNet-normalised
        wanted = set(self.layer_indices)
        outputs: dict[int, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                outputs[index] = x
                if len(outputs) == len(wanted):
                    break  # deeper layers are not needed
        return [outputs[index] for index in self.layer_indices]

    def load_torchvision_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load the ``features.*`` entries of a torchvision VGG19 state dict; ``source`` names it."""
        own = self.state_dict()
        features = {key: value for key, value in state.items() if key.startswith(FEATURES_PREFIX)}
        missing = sorted(set(own) - set(features))
        if missing:
            raise InputError(source, f"not a torchvision VGG19 state dict: missing {', '.join(missing[:4])}")
        for key, value in own.items():
            if tuple(features[key].shape) != tuple(value.shape):
                raise InputError(
                    source, f"{key} has shape {tuple(features[key].shape)}, VGG19 needs {tuple(value.shape)}"
                )
        self.load_state_dict(features, strict=False)


def load_vgg19(uri: str, layers: list[str], storage: Storage | None = None) -> VGG19Features:
    """A frozen VGG19 feature extractor with weights from a torchvision-format file (path or URI)."""
    storage = storage or Storage()
    with storage.local_copy(uri) as path:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise InputError(uri, f"not a readable torch state dict ({error})") from error
    if not isinstance(state, dict):
        raise InputError(uri, f"expected a state dict, found {type(state).__name__}")
    model = VGG19Features(layers)
    model.load_torchvision_state(state, uri)
    logger.info("loaded VGG19 weights from %s (layers %s)", uri, ", ".join(layers))
    return model
