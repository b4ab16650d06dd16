"""Where a dub's lip jitter comes from: lip MSI at each step of the dub, for the demo's three dubs.

For each (source clip, speech) pair it follows the dub's own code path (``plan_dub``: speech,
tracked source, audio2expression, silence gate, ping-pong timeline, smoothing weights) and scores
the lip MSI (stableface.metrics.msi) of

(a) ``real``: the source's tracked mesh on the dub's timeline (the face-model fit, ping-ponged to
    the speech length as the dub loops the source);
(b) ``predicted``: the same mesh with the mouth replaced by audio2expression's prediction;
(c) ``smoothed``: (b) after the smoothing's per-frame weights, applied to the vertices (the dub
    applies them to the face-shape images rasterised from these meshes);
(d) ``dub`` (with ``--render``): the rendered dub, re-tracked, against the source video (unlooped),
    as the demo's audit pairs them;

each as a ratio over (a) (over the source video's for (d)). For the clip's own audio it also gives
the mouth-opening correlation and amplitude against the real mesh before and after smoothing
(speech must not be smoothed away). Writes ``<out>/jitter.json`` and, with ``--render``, the dubs
and ``<out>/<tag>.mouths.png`` / ``<tag>.slices.png`` (source above, dub below).

    PYTHONPATH=platform:. python docs/stage1/jitter_report.py <speaker model> <out> [--render]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from stableface.face.ibug import mediapipe_to_ibug68
from stableface.face.landmarks import make_backend
from stableface.inference.config import DubConfig
from stableface.inference.faces import posed_meshes
from stableface.inference.pipeline import dub_files, plan_dub
from stableface.inference.source import prepare_source
from stableface.metrics.config import MetricsConfig
from stableface.metrics.msi import motion_stability
from stableface.report.review import review_pictures
from stableface.speaker_model import SpeakerModel
from stableface.training.evaluate import opening_amplitude_ratio, opening_correlation
from stableface.training.evaluate_stage1 import smooth_trajectory

DEMO_DATA = Path(__file__).resolve().parents[2] / "examples" / "data"


@dataclass(frozen=True)
class DubCase:
    """One of the demo's dubs: a held-out grid_s1 clip and the speech it is dubbed with."""

    tag: str
    video: Path
    speech: Path


DEMO_CASES = (
    DubCase("fr", DEMO_DATA / "grid_s1" / "brwg9a.mpg", DEMO_DATA / "speech" / "french_macron_12s.wav"),
    DubCase("en", DEMO_DATA / "grid_s1" / "bwba5s.mpg", DEMO_DATA / "speech" / "english_21s.wav"),
    DubCase("own", DEMO_DATA / "grid_s1" / "bwis9s.mpg", DEMO_DATA / "grid_s1" / "bwis9s.mpg"),
)


@dataclass
class MeshFigures:
    """Lip MSI of one dub's mesh trajectories, (a) to (c), and the mouth opening against (a)."""

    frames: int
    real_lip_msi: float
    predicted_lip_msi: float
    smoothed_lip_msi: float
    predicted_ratio: float  # (b) / (a)
    smoothed_ratio: float  # (c) / (a)
    predicted_open_corr: float  # meaningful for the clip's own audio only
    smoothed_open_corr: float
    predicted_open_amp: float
    smoothed_open_amp: float


def mesh_figures(model: SpeakerModel, case: DubCase, config: DubConfig, source) -> MeshFigures:
    plan = plan_dub(model, case.video, case.speech, config, source)
    renderer = plan.renderer
    pose = source.crop_pose(renderer.source_index, model.image_size)
    real = posed_meshes(model, source.expression[renderer.source_index], pose)  # (N, 478, 3)
    predicted = posed_meshes(model, renderer.expression, pose)
    smoothed = smooth_trajectory(predicted, renderer.weights)
    lips = {name: mediapipe_to_ibug68(mesh) for name, mesh in
            (("real", real), ("predicted", predicted), ("smoothed", smoothed))}  # fmt: skip
    msi = {name: motion_stability(track).lip for name, track in lips.items()}
    return MeshFigures(
        frames=plan.n_frames,
        real_lip_msi=msi["real"],
        predicted_lip_msi=msi["predicted"],
        smoothed_lip_msi=msi["smoothed"],
        predicted_ratio=msi["predicted"] / msi["real"],
        smoothed_ratio=msi["smoothed"] / msi["real"],
        predicted_open_corr=opening_correlation(lips["predicted"], lips["real"]),
        smoothed_open_corr=opening_correlation(lips["smoothed"], lips["real"]),
        predicted_open_amp=opening_amplitude_ratio(lips["predicted"], lips["real"]),
        smoothed_open_amp=opening_amplitude_ratio(lips["smoothed"], lips["real"]),
    )


def render_figures(model: SpeakerModel, case: DubCase, config: DubConfig, source, out: Path) -> dict:
    """(d): dub the clip, re-track source and dub, and save the review's mouth strips and slices."""
    output = out / f"{case.tag}_{case.video.stem}.mp4"
    dub_files(model, case.video, case.speech, output, config, source)
    pictures = review_pictures(
        str(case.video), str(output), MetricsConfig(), make_backend("mediapipe"), str(case.video)
    )
    from stableface.metrics.video import score_video

    dubbed = score_video(output, MetricsConfig())
    for name, png in (("mouths", pictures.mouths_png), ("slices", pictures.slices_png)):
        if png is not None:
            (out / f"{case.tag}.{name}.png").write_bytes(png)
    return {
        "dub_lip_msi": dubbed.msi_lip,
        "source_lip_msi": pictures.source.msi_lip,
        "dub_ratio": dubbed.msi_lip / pictures.source.msi_lip,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a speaker model directory (grid_s1 / s1)")
    parser.add_argument("out", help="folder for jitter.json (and the dubs and pictures)")
    parser.add_argument("--render", action="store_true", help="also dub, re-track and draw (d)")
    parser.add_argument("--cases", nargs="*", default=[c.tag for c in DEMO_CASES])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = SpeakerModel.load(args.model)
    config = DubConfig()
    results = {}
    for case in (c for c in DEMO_CASES if c.tag in args.cases):
        source = prepare_source(case.video, model, config.inference)
        row = asdict(mesh_figures(model, case, config, source))
        if args.render:
            row |= render_figures(model, case, config, source, out)
        results[case.tag] = row
        print(case.tag, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})  # noqa: T201
    (out / "jitter.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
