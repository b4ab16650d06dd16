"""Held-out figures and mouth-opening curves of a stage-1 checkpoint (default: the packaged one).

The same evaluation as training's (stableface.training.evaluate_stage1) on the pretrain job's
held-out clips (held-out speakers + held-out grid/s1 clips); with ``--smoothing <speaker model>``
also the lip MSI after that model's adaptive smoothing weights are applied to the mesh trajectory.
Writes ``<out>.json`` and ``<out>.png`` (predicted vs real inner-lip gap per clip).

    .venv/bin/python docs/stage1/heldout_report.py outputs/datasets/all docs/stage1/heldout \
        [--checkpoint outputs/.../audio2expression.pt] [--smoothing outputs/demo/models/s1]
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from stableface.config import compose
from stableface.data.layout import DatasetLayout
from stableface.io.storage import Storage
from stableface.models.checkpoint import read_checkpoint
from stableface.pretrained import packaged_stage1_uri
from stableface.training.data import load_face_model
from stableface.training.evaluate_stage1 import evaluate_stage1
from stableface.training.pipeline import load_audio2expression, plan_run, stage1_heldout_clips

KEYS = ("clips", "mesh_open_corr", "ungated_open_corr", "mesh_open_amp", "mesh_lip_msi", "real_lip_msi",
        "lip_msi_ratio", "smoothed_lip_msi", "smoothed_open_corr", "silent_frames")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("out")
    parser.add_argument("--checkpoint", default=packaged_stage1_uri())
    parser.add_argument("--smoothing", default=None, help="a speaker model whose smoothing network to apply")
    args = parser.parse_args()
    storage, layout = Storage(), DatasetLayout(args.dataset)
    cfg = compose("pretrain", [f"dataset_uri={args.dataset}"])
    config = read_checkpoint(args.checkpoint, storage).config
    network, _ = load_audio2expression(args.checkpoint, config, storage)
    smoothing = None
    if args.smoothing:
        from stableface.speaker_model import SpeakerModel

        smoothing = SpeakerModel.load(args.smoothing, storage).networks.smoothing
    clips = stage1_heldout_clips(cfg, plan_run(cfg, storage), storage)
    summary, curves = evaluate_stage1(network, clips, load_face_model(storage, layout, config), storage, layout,
                                      smoothing=smoothing)  # fmt: skip
    with open(f"{args.out}.json", "w") as handle:
        json.dump(summary, handle, indent=1)
    for group, means in summary["groups"].items():
        print(group, {k: round(means[k], 3) for k in KEYS if k in means})  # noqa: T201
    fig, axes = plt.subplots(len(curves), 1, figsize=(10, 1.6 * len(curves)), squeeze=False)
    for axis, row, (key, curve) in zip(axes[:, 0], summary["per_clip"], curves.items(), strict=True):
        axis.plot(curve["real"], color="black", label="real (tracked)")
        axis.plot(curve["predicted"], color="tab:red", label="predicted from audio")
        if "smoothed" in curve:
            axis.plot(curve["smoothed"], color="tab:blue", alpha=0.6, label="predicted, smoothed")
        axis.set_title(f"{key}  corr {row['mesh_open_corr']:.2f}  amp {row['mesh_open_amp']:.2f}  "
                       f"lip MSI pred/real {row['lip_msi_ratio']:.2f}", fontsize=8, loc="left")  # fmt: skip
        axis.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6, loc="upper right")
    axes[-1, 0].set_xlabel("frame (25 fps); inner-lip gap in crop pixels", fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{args.out}.png", dpi=80)


if __name__ == "__main__":
    main()
