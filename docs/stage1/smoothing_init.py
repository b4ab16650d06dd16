"""The picture docs/stage1/smoothing_init.png: mouth opening of two held-out s1 clips, real, predicted by the
packaged stage 1, and after the smoothing an untrained adaptive head gave before (a uniform 5-frame
average) and now (the Gaussian of sigma 0.4), with the lip MSI ratio to the real trajectory.

    .venv/bin/python docs/stage1/smoothing_init.py   # needs the dataset of all shared data at /work/cache/all_ds
"""
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
import torch
from stableface.config import compose
from stableface.data.layout import DatasetLayout
from stableface.io.storage import Storage
from stableface.models.checkpoint import read_checkpoint
from stableface.models.config import SmoothingConfig
from stableface.models.smoothing import TemporalSmoothing
from stableface.pretrained import packaged_stage1_uri
from stableface.training.data import load_face_model
from stableface.training.evaluate_stage1 import evaluate_stage1
from stableface.training.pipeline import load_audio2expression, plan_run, stage1_heldout_clips
ds = "/work/cache/all_ds"; storage, layout = Storage(), DatasetLayout(ds)
cfg = compose("pretrain", [f"dataset_uri={ds}"]); ck = packaged_stage1_uri()
config = read_checkpoint(ck, storage).config
net, _ = load_audio2expression(ck, config, storage)
clips = [c for c in stage1_heldout_clips(cfg, plan_run(cfg, storage), storage) if c.group == "s1"][:2]
fm = load_face_model(storage, layout, config)
box = TemporalSmoothing(SmoothingConfig(mode="gaussian", sigma=100.0))  # ~uniform: what the old untrained head gave
new = TemporalSmoothing(SmoothingConfig(mode="adaptive", sigma=0.4))
s_box, c_box = evaluate_stage1(net, clips, fm, storage, layout, smoothing=box)
s_new, c_new = evaluate_stage1(net, clips, fm, storage, layout, smoothing=new)
fig, axes = plt.subplots(len(clips), 1, figsize=(11, 2.4 * len(clips)), squeeze=False)
for ax, key, rb, rn in zip(axes[:, 0], c_box, s_box["per_clip"], s_new["per_clip"]):
    ax.plot(c_box[key]["real"], "k", label="real (tracked)")
    ax.plot(c_box[key]["predicted"], "C0", label="predicted (shipped stage 1)")
    ax.plot(c_box[key]["smoothed"], "C3", label=f"after old init (5-frame box): lip MSI x{rb['smoothed_lip_msi']/rb['real_lip_msi']:.1f}")
    ax.plot(c_new[key]["smoothed"], "C2--", label=f"after new init (Gaussian 0.4): lip MSI x{rn['smoothed_lip_msi']/rn['real_lip_msi']:.2f}")
    ax.set_title(f"{key}: inner-lip gap (crop px)", fontsize=9); ax.legend(fontsize=7, loc="upper right")
fig.tight_layout(); fig.savefig("docs/stage1/smoothing_init.png", dpi=90)
print(s_box["groups"]["s1"].get("smoothed_lip_msi"), s_new["groups"]["s1"].get("smoothed_lip_msi"), s_new["groups"]["s1"]["real_lip_msi"])
