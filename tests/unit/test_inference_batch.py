"""Bulk dubbing without Ray: catalog rows -> entries, and one entry -> one manifest row (never an exception)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from stableface.errors import InputError
from stableface.inference import DubConfig
from stableface.inference.batch import (
    ModelCache,
    OutputScore,
    SourceCache,
    dub_entry,
    read_dub_catalog,
    record_uri,
)
from stableface.io.audio import SILENCE_DBFS, read_audio, rms_dbfs, write_audio
from stableface.io.storage import Storage


@pytest.fixture(scope="module")
def speech(shared_data, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("batch_speech") / "fr.wav"
    write_audio(path, read_audio(shared_data / "speech" / "macron_12s.wav")[: 2 * 16_000], 16_000)
    return str(path)


def test_catalog_rows_resolve_models_paths_and_outputs(tmp_path):
    rows = [
        {"job_id": "a", "speaker": "s1", "video": "clips/a.mpg", "audio": "speech/a.wav"},
        {
            "job_id": "b",
            "model_uri": "s3://models/s1-v2",
            "video_uri": "/data/b.mp4",
            "audio_uri": "s3://in/b.wav",
            "output_uri": "s3://out/b.mp4",
        },
        {"job_id": "c", "video_uri": "/data/c.mp4", "audio_uri": "/data/c.wav"},  # no speaker, no model
        {"job_id": "bad/id", "speaker": "s1", "video_uri": "/data/d.mp4", "audio_uri": "/data/d.wav"},
        {"job_id": "e", "speaker": "s1", "video_uri": "/data/e.mp4", "audio_uri": ""},
    ]
    tables = {
        "csv": tmp_path / "catalog.csv",
        "jsonl": tmp_path / "catalog.jsonl",
        "parquet": tmp_path / "catalog.parquet",
    }
    pd.DataFrame(rows).fillna("").to_csv(tables["csv"], index=False)
    tables["jsonl"].write_text("".join(json.dumps(row) + "\n" for row in rows))
    pd.DataFrame(rows).fillna("").to_parquet(tables["parquet"])
    for table in tables.values():
        entries = {
            e["job_id"]: e for e in read_dub_catalog(str(table), "s3://models", "s3://out/job", Storage())
        }
        assert entries["a"]["model_uri"] == "s3://models/s1"
        assert entries["a"]["video_uri"] == str(tmp_path / "clips" / "a.mpg")  # relative to the catalog
        assert entries["a"]["output_uri"] == "s3://out/job/videos/a.mp4"
        assert (
            entries["b"]["model_uri"] == "s3://models/s1-v2"
            and entries["b"]["output_uri"] == "s3://out/b.mp4"
        )
        assert all(not entries[job]["reason"] for job in ("a", "b"))
        assert "row 3: needs a speaker or a model_uri" in entries["c"]["reason"]
        assert "bad/id: invalid job id" in entries["bad/id"]["reason"]
        assert "row 5: audio_uri is empty" in entries["e"]["reason"]
    entries = read_dub_catalog(str(tables["csv"]), None, "out", Storage())
    assert "speaker 's1' needs models_uri" in entries[0]["reason"]


def test_catalogs_that_cannot_run_at_all_are_refused(tmp_path):
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("job_id,speaker,video_uri,audio_uri\nx,s1,a.mp4,a.wav\nx,s1,b.mp4,b.wav\n")
    with pytest.raises(InputError, match="job ids must be unique; repeated: x"):
        read_dub_catalog(str(repeated), "models", "out", Storage())
    shared = tmp_path / "shared.csv"
    shared.write_text(
        "job_id,speaker,video_uri,audio_uri,output_uri\nx,s1,a.mp4,a.wav,o.mp4\ny,s1,b.mp4,b.wav,o.mp4\n"
    )
    with pytest.raises(InputError, match="rows must not share an output_uri"):
        read_dub_catalog(str(shared), "models", "out", Storage())
    no_ids = tmp_path / "no_ids.csv"
    no_ids.write_text("speaker,video_uri,audio_uri\ns1,a.mp4,a.wav\n")
    with pytest.raises(InputError, match="needs a job_id column"):
        read_dub_catalog(str(no_ids), "models", "out", Storage())


def test_an_entry_is_dubbed_once_recorded_and_found_finished_afterwards(
    untrained_speaker_model, grid_clips, speech, tmp_path
):
    storage = Storage()
    models_root = tmp_path / "models"
    shutil.copytree(untrained_speaker_model, models_root / "s1")
    output_uri = str(tmp_path / "job")
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "job_id,speaker,video_uri,audio_uri\n"
        f"ok,s1,{grid_clips[5]},{speech}\n"
        f"wrong-speaker,s2,{grid_clips[5]},{speech}\n"
    )
    entries = read_dub_catalog(str(catalog), str(models_root), output_uri, storage)
    models = ModelCache(storage)
    sources = SourceCache(storage, f"{output_uri}/sources")
    shutil.copytree(models_root / "s1", models_root / "s2")  # a directory named s2 holding s1's model

    row = dub_entry(
        entries[0],
        DubConfig(),
        output_uri,
        storage,
        models,
        sources,
        scorer=lambda path, name, face: OutputScore(0.5, 0.7, "ok"),
    )
    assert row["status"] == "ok" and not row["resumed"] and row["output_frames"] == 50
    assert (row["msi_lip"], row["msi_jaw"]) == (0.5, 0.7)
    assert (
        storage.exists(entries[0]["output_uri"])
        and storage.read_json(record_uri(output_uri, "ok"))["status"] == "ok"
    )
    assert len(storage.list(f"{output_uri}/sources")) == 1  # the prepared source is cached

    def must_not_dub(path):
        raise AssertionError("a finished entry was dubbed again")

    again = dub_entry(entries[0], DubConfig(), output_uri, storage, models, sources, scorer=must_not_dub)
    assert again["status"] == "ok" and again["resumed"] and again["output_frames"] == 50
    assert models.loads == 1  # the model was loaded once for both calls

    wrong = dub_entry(entries[1], DubConfig(), output_uri, storage, models, sources)
    assert (
        wrong["status"] == "failed"
        and "is the model of speaker 's1', the row asks for 's2'" in wrong["reason"]
    )
    missing = dub_entry({**entries[0], "job_id": "m", "model_uri": str(tmp_path / "nope"), "output_uri": str(tmp_path / "m.mp4")},
                        DubConfig(), output_uri, storage, models)  # fmt: skip
    assert missing["status"] == "failed" and "nope: not a speaker model directory" in missing["reason"]
    assert not (tmp_path / "m.mp4").exists()


def test_rows_tell_truncated_short_and_scored_outputs_apart(
    untrained_speaker_model, grid_clips, speech, tmp_path
):
    from stableface.face.landmarks import make_backend
    from stableface.inference.batch import output_scorer
    from stableface.metrics.config import MetricsConfig

    storage = Storage()
    shutil.copytree(untrained_speaker_model, tmp_path / "models" / "s1")
    samples = read_audio(speech, 16_000)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(_wav_bytes(samples, tmp_path)[:1000])  # 28 ms of the 2 s
    short = tmp_path / "short.wav"
    write_audio(short, samples[16_000 : 16_000 + 1600], 16_000)  # 100 ms of speech
    lead_in = tmp_path / "lead_in.wav"
    write_audio(lead_in, samples[:448], 16_000)  # a whole file of 28 ms: the recording's quiet start
    assert rms_dbfs(samples[:448]) < SILENCE_DBFS  # which alone would read as silence
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "job_id,speaker,video_uri,audio_uri\n"
        f"truncated,s1,{grid_clips[5]},{truncated}\nshort,s1,{grid_clips[5]},{short}\n"
        f"lead_in,s1,{grid_clips[5]},{lead_in}\nok,s1,{grid_clips[5]},{speech}\n"
    )
    output_uri = str(tmp_path / "job")
    entries = read_dub_catalog(str(catalog), str(tmp_path / "models"), output_uri, storage)
    backend = make_backend("mediapipe")
    scorer = output_scorer(MetricsConfig(min_frames=100, slice_image=False), backend)  # 50 frames: no score
    try:
        rows = {e["job_id"]: dub_entry(e, DubConfig(), output_uri, storage, ModelCache(storage), scorer=scorer)
                for e in entries}  # fmt: skip
    finally:
        backend.close()
    assert rows["truncated"]["status"] == "failed"
    assert f"{truncated}: truncated: the file holds 1000 of the" in rows["truncated"]["reason"]
    assert rows["short"]["status"] == "failed"
    assert rows["short"]["reason"] == f"{short}: audio too short (100 ms; need at least 500 ms)"
    assert rows["lead_in"]["status"] == "failed"
    assert rows["lead_in"]["reason"] == f"{lead_in}: audio too short (28 ms; need at least 500 ms)"
    ok = rows["ok"]
    assert ok["status"] == "ok" and (ok["frames_dubbed"], ok["frames_passed_through"], ok["segments"]) == (
        50,
        0,
        1,
    )
    assert (
        ok["msi_status"] == f"no_score: {entries[3]['output_uri']}: only 50 frames (MSI needs at least 100)"
    )


def _wav_bytes(samples, folder) -> bytes:
    path = folder / "whole.wav"
    write_audio(path, samples, 16_000)
    return path.read_bytes()
