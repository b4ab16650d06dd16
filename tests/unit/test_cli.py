"""The CLI's answer to a user's mistake: one line naming the setting or input, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stableface.cli import EXIT_USAGE, main

REPO = Path(__file__).resolve().parents[2]


def _error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["dub", "catalgo=x.csv"], "catalgo: no such setting in the dub config; did you mean 'catalog'?"),
        (
            ["dub", "catalog=x.csv", "dub.inference.chunk_framez=3"],
            "did you mean 'dub.inference.chunk_frames'?",
        ),
        (["train", "dataset_uri=x", "schedule.max_epochz=1"], "schedule.max_epochz: no such setting"),
        (
            ["dub", "catalog=x.csv", "dub.inference.chunk_frames=many"],
            "dub.inference.chunk_frames: Value 'many'",
        ),
        (["train", "dataset_uri=x", "model=huge"], "model=huge: no such preset; choices: cpu, paper, tiny"),
        (["dub"], "required setting missing: catalog (give catalog=..."),
        (["train"], "required setting missing: dataset_uri"),
        (["preprocess"], "required setting missing: catalog"),
        (["audit", "catalog"], "catalog: not an override; expected key=value"),
    ],
)
def test_config_mistakes_are_one_line_with_a_hint(capsys, argv, expected):
    line = _error_line(capsys, argv)
    assert line.startswith(f"stableface {argv[0]}: error: ")
    assert expected in line


def test_catalog_mistakes_are_one_line(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    assert f"{missing}: no such file" in _error_line(capsys, ["dub", f"catalog={missing}"])
    no_ids = tmp_path / "no_ids.csv"
    no_ids.write_text("video_uri,audio_uri,speaker\na.mp4,a.wav,s1\n")
    assert "needs a job_id column" in _error_line(capsys, ["dub", f"catalog={no_ids}"])
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("job_id,video_uri,audio_uri,speaker\nx,a.mp4,a.wav,s1\nx,b.mp4,b.wav,s1\n")
    assert "job ids must be unique; repeated: x" in _error_line(capsys, ["dub", f"catalog={repeated}"])


def test_debug_shows_the_traceback():
    from stableface.errors import ConfigError

    with pytest.raises(ConfigError, match="catalgo"):
        main(["dub", "--debug", "catalgo=x"])


def test_show_prints_required_keys_as_missing(capsys):
    for job in ("dub", "preprocess", "audit", "train"):
        assert main(["show", job]) == 0
    out = capsys.readouterr().out
    assert "catalog: ???" in out
    assert "dataset_uri: ???" in out
    assert "# ??? = required: set catalog=..." in out


def test_job_script_and_env_debug():
    """`python jobs/dub.py` (what `ray job submit` runs) answers as the CLI does; STABLEFACE_DEBUG shows the traceback."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(REPO / "platform"), str(REPO)))}
    quiet = subprocess.run(
        [sys.executable, "jobs/dub.py", "catalgo=x"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert quiet.returncode == EXIT_USAGE
    assert (
        quiet.stderr.strip()
        == "stableface dub: error: catalgo: no such setting in the dub config; did you mean 'catalog'?"
    )
    loud = subprocess.run(
        [sys.executable, "jobs/dub.py", "catalgo=x"],
        cwd=REPO,
        env={**env, "STABLEFACE_DEBUG": "1"},
        capture_output=True,
        text=True,
    )
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr
