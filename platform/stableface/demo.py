"""``make demo``: the main job end to end on the embedded local Ray, with the bundled data.

1. preprocess the bundled GRID speaker (all but the last few clips, which stay unseen);
2. train a speaker model with the ``demo`` schedule (both stages, on Ray Train);
3. bulk-dub a small catalog: the unseen clips with French and English speech and with another
   clip's own audio;
4. audit the dubs' Motion Stability Index side by side with their sources;
5. print where the videos, the report and a sample frame are.

Every step is the real job (`stableface preprocess|train|dub|audit`) called with its config;
re-running skips what is finished.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from stableface.config import compose
from stableface.config.jobs import DemoConfig
from stableface.data.catalog import VIDEO_SUFFIXES
from stableface.io.storage import Storage, join
from stableface.io.video import iter_frames
from stableface.utils.logging import configure_logging
from stableface.utils.progress import format_duration

logger = logging.getLogger("stableface.demo")

SPEAKER = "grid_s1"  # the bundled speaker's folder name, hence its speaker id
FRENCH = "speech/french_macron_12s.wav"
ENGLISH = "speech/english_21s.wav"


def _clips(data_root: Path) -> list[Path]:
    clips = sorted(p for p in (data_root / SPEAKER).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if len(clips) < 6:
        raise FileNotFoundError(
            f"{data_root / SPEAKER}: the demo needs the bundled GRID clips (found {len(clips)})"
        )
    return clips


def _ray_overrides(cfg: DemoConfig) -> list[str]:
    return [f"ray.num_cpus={cfg.ray.num_cpus}" if cfg.ray.num_cpus else "ray.num_cpus=null"]


def _write_catalogs(
    cfg: DemoConfig, data_root: Path, out: Path, train: list[Path], unseen: list[Path]
) -> tuple[Path, Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    train_catalog = out / "train_catalog.csv"
    train_catalog.write_text("video_uri,speaker\n" + "".join(f"{p.resolve()},{SPEAKER}\n" for p in train))
    speech = {
        "fr": data_root / FRENCH,  # another language, longer than the 3 s clip: frames ping-pong
        "en": data_root / ENGLISH,
        "own": unseen[-1],  # a clip's own audio on another clip: self-reenactment-like
    }
    rows = ["job_id,speaker,video_uri,audio_uri,output_uri"]
    sources = ["video_uri,speaker"]
    for (tag, audio), video in zip(speech.items(), unseen, strict=False):
        output = out / "dubs" / f"{video.stem}.mp4"  # named like its source so the audit pairs them
        rows.append(f"{tag}_{video.stem},{SPEAKER},{video.resolve()},{audio.resolve()},{output.resolve()}")
        sources.append(f"{video.resolve()},{SPEAKER}")
    dub_catalog = out / "dub_catalog.csv"
    dub_catalog.write_text("\n".join(rows) + "\n")
    sources_catalog = out / "dub_sources.csv"
    sources_catalog.write_text("\n".join(sources) + "\n")
    return train_catalog, dub_catalog, sources_catalog


def _save_sample_frame(video: Path, source: Path, png: Path) -> None:
    """A side-by-side still (source | dub) from the middle of the clip, for people and the README."""
    import cv2

    def middle(path: Path) -> np.ndarray:
        frames = list(iter_frames(path, max_frames=60))
        return frames[len(frames) // 2]

    png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(
        str(png), cv2.cvtColor(np.concatenate([middle(source), middle(video)], axis=1), cv2.COLOR_RGB2BGR)
    )


def run(cfg: DemoConfig) -> dict:
    from stableface.ray_jobs import audit, dub, preprocess, train

    started = time.monotonic()
    data_root, out = Path(cfg.data_root), Path(cfg.output_root)
    clips = _clips(data_root)
    train_clips, unseen = clips[: -cfg.unseen_clips], clips[-cfg.unseen_clips :]
    train_catalog, dub_catalog, sources_catalog = _write_catalogs(cfg, data_root, out, train_clips, unseen)
    ray_overrides = _ray_overrides(cfg)
    dataset, models = out / "dataset", out / "models"

    logger.info("demo 1/4: preprocess %d clips of %s", len(train_clips), SPEAKER)
    preprocess.run(compose("preprocess", [f"catalog={train_catalog}", f"dataset_uri={dataset}",
                                          f"face.crop_size={cfg.crop_size}", *ray_overrides]))  # fmt: skip
    model_uri = join(str(models), SPEAKER)
    if Storage().exists(join(model_uri, "speaker.json")):
        logger.info("demo 2/4: speaker model exists at %s, not retrained (delete it to retrain)", model_uri)
    else:
        logger.info("demo 2/4: train a %s model with the %s schedule", cfg.model, cfg.schedule)
        train.run(compose("train", [f"dataset_uri={dataset}", f"output_uri={models}", f"speaker={SPEAKER}",
                                    f"model={cfg.model}", f"schedule={cfg.schedule}",
                                    f"scaling.num_workers={cfg.train_workers}", *ray_overrides,
                                    *cfg.train_overrides]))  # fmt: skip
    logger.info("demo 3/4: dub %d unseen clips (French, English, another clip's audio)", len(unseen))
    dub_summary = dub.run(compose("dub", [f"catalog={dub_catalog}", f"models_uri={models}",
                                          f"output_uri={out / 'dub_run'}", *ray_overrides]))  # fmt: skip
    logger.info("demo 4/4: audit the dubs against their sources")
    audit_summary = audit.run(compose("audit", [f"catalog={out / 'dubs'}", f"compare_with={sources_catalog}",
                                                "label=dubs", "compare_label=sources", f"output_uri={out / 'audit'}",
                                                *ray_overrides]))  # fmt: skip
    sample = out / "demo_frame.png"
    first_dub = out / "dubs" / f"{unseen[0].stem}.mp4"
    if first_dub.exists():
        _save_sample_frame(first_dub, unseen[0], sample)
    summary = {
        "videos": sorted(str(p) for p in (out / "dubs").glob("*.mp4")),
        "dub_manifest": join(str(out / "dub_run"), "manifest.csv"),
        "audit_report": join(str(out / "audit"), "report.html"),
        "sample_frame": str(sample),
        "model": model_uri,
        "dubbed_ok": dub_summary["ok"],
        "dub_failed": dub_summary["failed"],
        "dub_review": dub_summary.get("review"),
        "audit": {
            k: audit_summary.get(k)
            for k in ("videos", "ok", "flagged", "too_still", "too_jittery")
            if k in audit_summary
        },
        "elapsed": format_duration(time.monotonic() - started),
    }
    lines = [
        "",
        f"StableFace demo finished in {summary['elapsed']}.",
        f"  speaker model : {model_uri}",
        *[f"  dubbed video  : {video}" for video in summary["videos"]],
        f"  dub manifest  : {summary['dub_manifest']}",
        f"  dub review    : {summary['dub_review']}",
        f"  MSI report    : {summary['audit_report']}",
        f"  sample frame  : {sample} (source | dub)",
        "",
    ]
    sys.stdout.write("\n".join(lines))
    return summary


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    run(compose("demo", list(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
