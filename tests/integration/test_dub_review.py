"""The review page of a dub run, written by the real job and opened in a real headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import requests

from stableface.config import compose
from stableface.io.audio import read_audio, write_audio
from stableface.io.video import probe_video
from stableface.ray_jobs.dub import run

pytestmark = pytest.mark.integration

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
PAGE_TIMEOUT_S = 90
VIEWPORT = {"width": 1400, "height": 1800}
# Every image and player of the page, as the browser sees them once it has loaded what it can.
MEDIA_STATE_JS = """JSON.stringify({
  images: [...document.images].map(i => ({src: i.getAttribute('src'), done: i.complete, width: i.naturalWidth})),
  videos: [...document.querySelectorAll('video')].map(v => ({src: v.getAttribute('src'), ready: v.readyState,
           error: v.error ? v.error.code : null, width: v.videoWidth})),
  height: document.documentElement.scrollHeight
})"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _devtools_session(ws_url: str, page_url: str, screenshot: Path) -> dict:
    import websockets

    async with websockets.connect(ws_url, max_size=None) as ws:
        counter = 0

        async def call(method: str, params: dict | None = None) -> dict:
            nonlocal counter
            counter += 1
            await ws.send(json.dumps({"id": counter, "method": method, "params": params or {}}))
            while True:
                message = json.loads(await ws.recv())
                if message.get("id") == counter:
                    assert "error" not in message, message
                    return message["result"]

        await call(
            "Emulation.setDeviceMetricsOverride", {**VIEWPORT, "deviceScaleFactor": 1, "mobile": False}
        )
        await call("Page.navigate", {"url": page_url})
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while True:
            result = await call("Runtime.evaluate", {"expression": MEDIA_STATE_JS, "returnByValue": True})
            state = json.loads(result["result"].get("value") or '{"images": [], "videos": []}')
            settled = all(i["done"] for i in state["images"]) and all(
                v["ready"] >= 1 or v["error"] is not None for v in state["videos"]
            )
            if (settled and state["images"]) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        shot = await call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return state


def open_in_chromium(page: Path, screenshot: Path, profile: Path) -> dict:
    """Load ``page`` in headless Chromium; returns the state of its images and players, keeps a screenshot."""
    port = _free_port()
    browser = subprocess.Popen(
        [BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio", "--no-first-run",
         f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "--remote-allow-origins=*",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                targets = requests.get(f"http://127.0.0.1:{port}/json", timeout=2).json()
                ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                break
            except (requests.RequestException, StopIteration, ValueError):
                assert time.monotonic() < deadline, "Chromium's DevTools endpoint did not come up"
                time.sleep(0.5)
        return asyncio.run(_devtools_session(ws_url, page.as_uri(), screenshot))
    finally:
        browser.terminate()
        browser.wait(timeout=30)


@pytest.fixture(scope="module")
def reviewed_run(ray_local, grid_clips, shared_data, tiny_speaker_model, tmp_path_factory):
    """A dub run of two rows that dub and one whose audio is missing; returns (output folder, summary)."""
    root = tmp_path_factory.mktemp("review")
    speech = root / "fr.wav"  # 2.8 s of French speech for a 3 s clip
    write_audio(speech, read_audio(shared_data / "speech" / "macron_12s.wav")[8_000:52_800], 16_000)
    catalog = root / "catalog.csv"
    catalog.write_text(
        "job_id,model_uri,video_uri,audio_uri\n"
        f"fr-1,{tiny_speaker_model},{grid_clips[40]},{speech}\n"
        f"fr-2,{tiny_speaker_model},{grid_clips[41]},{speech}\n"
        f"lost,{tiny_speaker_model},{grid_clips[42]},{root / 'missing.wav'}\n"
    )
    out = root / "run"
    cfg = compose("dub", [f"catalog={catalog}", f"output_uri={out}", "concurrency=2"])
    return out, cfg, run(cfg)


def test_the_run_writes_a_review_page_with_both_videos_pictures_and_scores(reviewed_run):
    out, _, summary = reviewed_run
    assert (summary["ok"], summary["failed"]) == (2, 1)
    assert summary["review"] == str(out / "review.html")
    manifest = pd.read_parquet(out / "manifest.parquet").set_index("job_id")
    page = (out / "review.html").read_text()
    for job_id in ("fr-1", "fr-2"):
        row = manifest.loc[job_id]
        assert row["source_msi_status"] == "ok" and 0.3 < row["source_msi_lip"] < 1.05  # real GRID speech
        assert row["msi_lip_ratio"] == pytest.approx(row["msi_lip"] / row["source_msi_lip"])
        assert row["departure_lip"] in ("within", "too_still", "too_jittery")
        slices, mouths = Path(row["review_slices_uri"]), Path(row["review_mouths_uri"])
        assert slices.parent == mouths.parent == out / "review"
        import cv2

        frames = probe_video(out / "videos" / f"{job_id}.mp4").n_frames
        slice_image, mouth_image = cv2.imread(str(slices)), cv2.imread(str(mouths))
        # 75 source frames, 8 px each (the widest), source and dub slices with a 4 px gap.
        assert slice_image.shape[0] == 2 * 128 + 4 and slice_image.shape[1] == 8 * max(75, frames)
        assert mouth_image.shape == (2 * 96 + 4, 8 * 96, 3)
        # Links are relative to the page, so the folder can be moved or served as it is.
        assert f'src="videos/{job_id}.mp4"' in page and f'src="review/{job_id}.slices.png"' in page
    # The failed row comes first, with its reason; the .mpg sources get a link, not a dead player.
    assert page.index("lost") < page.index("fr-1") and "missing.wav: no such file" in page
    assert "browsers do not play .mpg" in page


def test_a_rerun_reuses_the_reviews(reviewed_run):
    out, cfg, _ = reviewed_run
    pictures = {p: p.stat().st_mtime_ns for p in (out / "review").glob("*.png")}
    again = run(cfg)
    assert again["resumed"] == 2
    assert {p: p.stat().st_mtime_ns for p in (out / "review").glob("*.png")} == pictures
    manifest = pd.read_parquet(out / "manifest.parquet").set_index("job_id")
    assert manifest.loc["fr-1", "source_msi_status"] == "ok"


@pytest.mark.skipif(BROWSER is None, reason="no chromium (Debian: apt-get install chromium)")
def test_the_review_page_loads_its_players_and_pictures_in_chromium(reviewed_run, tmp_path):
    out, _, _ = reviewed_run
    screenshot = tmp_path / "review.png"
    state = open_in_chromium(out / "review.html", screenshot, tmp_path / "profile")
    assert len(state["images"]) == 4, state  # slices and mouths of both dubbed rows
    for image in state["images"]:
        assert image["done"] and image["width"] > 0, image
    assert len(state["videos"]) == 2, state  # the dubs (the GRID sources are .mpg: links)
    for video in state["videos"]:
        assert video["error"] is None and video["ready"] >= 1 and video["width"] == 360, video
    assert screenshot.stat().st_size > 20_000
    print(f"review screenshot: {screenshot}")
