"""Shared fixtures: the bundled real data, a real S3 API server on loopback, one local Ray."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
GRID_DATASET_CLIPS = 8  # grid/s1 clips in the shared preprocessed test dataset
GRID_DATASET_CROP = 128  # its crop size (the tiny and cpu model presets train at or below it)
S3_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "stableface-test",
    "AWS_SECRET_ACCESS_KEY": "stableface-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# Ray token authentication: a process takes its mode (RAY_AUTH_MODE) when it first uses Ray, a new
# local ray.init() switches an unset mode to "token", and children inherit the variable. A test
# cluster in another mode than this process and its job subprocesses would reject their RPCs
# (seen as OwnerDiedError or dead actors on the other node), so the whole session uses one mode.
DEFAULT_TEST_AUTH_MODE = "token"


def pytest_configure(config):
    """Fix the session's Ray auth mode before anything imports Ray."""
    os.environ.setdefault("RAY_AUTH_MODE", DEFAULT_TEST_AUTH_MODE)


def pytest_collection_modifyitems(config, items):
    """Run the multi-node tests last, together, so they share one ``two_node_cluster`` (it takes the
    driver away from the embedded local Ray for as long as it is up)."""
    items.sort(key=lambda item: item.get_closest_marker("cluster") is not None)  # stable


@pytest.fixture(scope="session", autouse=True)
def aws_test_credentials():
    """Fake AWS credentials in the environment before anything starts Ray, so workers inherit them.

    They only ever reach the moto server on 127.0.0.1; no test talks to real AWS.
    """
    saved = {key: os.environ.get(key) for key in S3_TEST_CREDENTIALS}
    os.environ.update(S3_TEST_CREDENTIALS)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repo (or ``$STABLEFACE_SHARED_DATA``): real GRID/VoxCeleb2/speech."""
    root = Path(os.environ.get("STABLEFACE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (root / "grid" / "s1").is_dir():
        pytest.fail(f"real test data not found at {root}; set STABLEFACE_SHARED_DATA to ../shared/data")
    return root


@pytest.fixture(scope="session")
def grid_clips(shared_data: Path) -> list[Path]:
    """The 90 GRID speaker-s1 clips, sorted."""
    return sorted((shared_data / "grid" / "s1").glob("*.mpg"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _moto_server(log: Path, **env: str):
    """A moto server process on a free 127.0.0.1 port, up and answering; yields its endpoint URL."""
    port = _free_port()
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **S3_TEST_CREDENTIALS, **env},
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"moto server exited: {log.read_text()}")
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("moto server did not start within 30 s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> str:
    """A moto S3 server in its own process on 127.0.0.1; its URL. Credentials go to the env."""
    with _moto_server(tmp_path_factory.mktemp("moto") / "server.log") as endpoint:
        yield endpoint


@dataclasses.dataclass(frozen=True)
class LockedStore:
    """A moto server that checks credentials and IAM policies, as AWS does."""

    endpoint: str
    kept_uri: str  # s3://<bucket>/<key> of an object that exists
    no_policy_key: tuple[str, str]  # (access key id, secret) of an IAM user allowed nothing


LOCKED_OBJECT = "kept.json"
UNAUTHENTICATED_SETUP_CALLS = 4  # create_bucket, put_object, create_user, create_access_key


@pytest.fixture(scope="session")
def locked_store(tmp_path_factory) -> LockedStore:
    """A second moto server with authentication on (after the setup calls): unknown access keys,
    wrong secrets and users without a policy get the 403 answers AWS gives them."""
    import boto3

    log = tmp_path_factory.mktemp("moto_locked") / "server.log"
    with _moto_server(log, INITIAL_NO_AUTH_ACTION_COUNT=str(UNAUTHENTICATED_SETUP_CALLS)) as endpoint:
        session = boto3.session.Session(region_name="us-east-1")
        s3, iam = (session.client(name, endpoint_url=endpoint) for name in ("s3", "iam"))
        bucket = f"locked-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=LOCKED_OBJECT, Body=b"{}")
        iam.create_user(UserName="allowed-nothing")
        key = iam.create_access_key(UserName="allowed-nothing")["AccessKey"]
        yield LockedStore(
            endpoint, f"s3://{bucket}/{LOCKED_OBJECT}", (key["AccessKeyId"], key["SecretAccessKey"])
        )


@pytest.fixture
def s3_storage_config(s3_endpoint):
    from stableface.io.storage import StorageConfig

    return StorageConfig(endpoint_url=s3_endpoint, region="us-east-1")


@pytest.fixture
def s3_bucket(s3_storage_config) -> str:
    """A fresh, empty bucket on the moto server; returns ``s3://<bucket>``."""
    from stableface.io.storage import Storage

    name = f"test-{uuid.uuid4().hex[:12]}"
    Storage(s3_storage_config).s3.create_bucket(Bucket=name)
    return f"s3://{name}"


def _write_scenery_video(path: Path, n_frames: int = 50, with_audio: bool = True) -> Path:
    """A faceless clip: a drifting sky-and-hills gradient, with speech-band noise as audio."""
    import numpy as np

    from stableface.io.video import VideoWriter

    height, width = 144, 176
    rows = np.linspace(0, 1, height)[:, None, None] * np.ones((1, width, 1))  # (H, W, 1)
    cols = np.linspace(0, 1, width)[None, :, None]  # (1, W, 1)
    audio = None
    if with_audio:
        rng = np.random.default_rng(0)
        audio = (0.1 * rng.standard_normal(int(16_000 * n_frames / 25))).astype(np.float32)
    with VideoWriter(path, fps=25, width=width, height=height, audio=audio) as writer:
        for t in range(n_frames):
            hills = (rows > 0.6 + 0.1 * np.sin(8 * cols + t / 10)).astype(float)  # (H, W, 1)
            sky = np.concatenate([0.4 + 0.3 * rows, 0.6 + 0.2 * rows, 0.9 - 0.2 * rows], axis=2)  # (H, W, 3)
            frame = sky * (1 - hills) + hills * np.array([0.2, 0.5, 0.2])
            writer.write((255 * np.clip(frame, 0, 1)).astype(np.uint8))
    return path


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory, grid_clips) -> dict[str, Path]:
    """One of each broken input a catalog meets: name -> local path (the missing one does not exist)."""
    from stableface.io.audio import read_audio
    from stableface.io.video import VideoWriter, iter_frames

    folder = tmp_path_factory.mktemp("bad_videos")
    text = folder / "notes.mp4"
    text.write_text("meeting notes, not a video\n")
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    silent_track = folder / "no_audio.mp4"
    frames = list(iter_frames(grid_clips[0], max_frames=50))
    with VideoWriter(silent_track, fps=25, width=360, height=288) as writer:
        for frame in frames:
            writer.write(frame)
    full = folder / "full.mp4"
    with VideoWriter(full, fps=25, width=360, height=288, audio=read_audio(grid_clips[0])) as writer:
        for frame in frames:
            writer.write(frame)
    truncated = folder / "truncated.mp4"
    data = full.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    full.unlink()
    scenery = _write_scenery_video(folder / "scenery.mp4")
    return {
        "text": text,
        "empty": empty,
        "no_audio": silent_track,
        "truncated": truncated,
        "no_face": scenery,
        "missing": folder / "does_not_exist.mp4",
    }


LECTURE_CLIPS = (5, 6)  # grid/s1 clips (75 frames each) the untrained model's identity did not see
LECTURE_CUTAWAY_FRAMES = 75  # 3 s of a test pattern between them, no face


def _test_pattern(t: int, height: int, width: int):
    """A no-face cutaway frame: colour bars with a sweeping bright bar (moves, so it is not a still)."""
    import numpy as np

    bars = np.array([[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0], [192, 0, 192],
                     [192, 0, 0], [0, 0, 192]], np.uint8)  # fmt: skip
    frame = bars[(np.arange(width) * len(bars)) // width][None].repeat(height, axis=0)  # (H, W, 3)
    sweep = (4 * t) % width
    frame[:, sweep : sweep + 8] = 255
    return np.ascontiguousarray(frame)


@pytest.fixture(scope="session")
def mixed_lecture(grid_clips, tmp_path_factory) -> dict:
    """A "lecture": grid/s1 clip, 3 s of a no-face test pattern, another grid/s1 clip (one mp4, 25 fps).

    Returns ``{"path", "parts": [(start, stop) of clip A, cutaway, clip B], "clips": [A, B]}``; the
    audio is the clips' own with low noise under the cutaway.
    """
    import numpy as np

    from stableface.io.audio import read_audio
    from stableface.io.video import VideoWriter, iter_frames

    clip_a, clip_b = (grid_clips[i] for i in LECTURE_CLIPS)
    frames_a, frames_b = list(iter_frames(clip_a)), list(iter_frames(clip_b))
    height, width = frames_a[0].shape[:2]
    cutaway = [_test_pattern(t, height, width) for t in range(LECTURE_CUTAWAY_FRAMES)]
    rng = np.random.default_rng(0)
    audio = np.concatenate([
        read_audio(clip_a, 16_000)[: len(frames_a) * 640],
        (0.01 * rng.standard_normal(LECTURE_CUTAWAY_FRAMES * 640)).astype(np.float32),
        read_audio(clip_b, 16_000)[: len(frames_b) * 640],
    ])  # fmt: skip
    path = tmp_path_factory.mktemp("mixed_lecture") / "lecture.mp4"
    with VideoWriter(path, fps=25, width=width, height=height, audio=audio, crf=12) as writer:
        for frame in [*frames_a, *cutaway, *frames_b]:
            writer.write(frame)
    a, c = len(frames_a), len(frames_a) + LECTURE_CUTAWAY_FRAMES
    return {"path": path, "parts": [(0, a), (a, c), (c, c + len(frames_b))], "clips": [clip_a, clip_b]}


TWO_FACES_VOX = "voxceleb2/Audio_Source_00015.mp4"  # 224x224, another person (left)
TWO_FACES_GRID_CLIP = 5  # a grid/s1 clip (360x288, 75 frames) the untrained model's identity did not see


@pytest.fixture(scope="session")
def two_faces(shared_data, grid_clips, tmp_path_factory) -> dict:
    """Two people side by side: a VoxCeleb2 speaker (left, centred vertically) and grid/s1 (right).

    584x288, 25 fps, as many frames as the GRID clip, its audio. Returns ``{"path", "grid_x0"}``:
    the GRID half starts at column ``grid_x0``.
    """
    import numpy as np

    from stableface.io.audio import read_audio
    from stableface.io.video import VideoWriter, iter_frames

    grid_clip = grid_clips[TWO_FACES_GRID_CLIP]
    right = list(iter_frames(grid_clip))
    left = list(iter_frames(shared_data / TWO_FACES_VOX, max_frames=len(right)))
    height, grid_width = right[0].shape[:2]
    vox_height, vox_width = left[0].shape[:2]
    top = (height - vox_height) // 2
    path = tmp_path_factory.mktemp("two_faces") / "two_faces.mp4"
    audio = read_audio(grid_clip, 16_000)
    with VideoWriter(
        path, fps=25, width=vox_width + grid_width, height=height, audio=audio, crf=12
    ) as writer:
        for vox, grid in zip(left, right, strict=True):
            frame = np.zeros((height, vox_width + grid_width, 3), np.uint8)
            frame[top : top + vox_height, :vox_width] = vox
            frame[:, vox_width:] = grid
            writer.write(frame)
    return {"path": path, "grid_x0": vox_width}


# ----------------------------------------------------------------------------- Ray
LOCAL_CLUSTER_SCRIPT = REPO_ROOT / "cluster" / "local_cluster.py"
LOCAL_RAY_OPTIONS = {
    "num_cpus": 2,
    "include_dashboard": True,  # as the jobs start it: Ray Train's placement-group cleaner needs it
    "namespace": "stableface-tests",
    "log_to_driver": False,
}
# True while the session's ray_local fixture is alive: a cluster fixture that had to shut that Ray
# down to connect elsewhere starts it again on teardown, so later ray_local users find it up.
_local_ray_wanted = {"active": False}


def start_local_ray():
    """(Re)start the embedded local Ray that ``ray_local`` promises."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(**LOCAL_RAY_OPTIONS)
    return ray


@pytest.fixture(scope="session")
def ray_local():
    """The embedded local Ray (2 CPUs), started once; jobs' ``ensure_ray`` reuses it."""
    ray = start_local_ray()
    _local_ray_wanted["active"] = True
    yield ray
    _local_ray_wanted["active"] = False
    ray.shutdown()


def load_local_cluster():
    """``cluster/local_cluster.py`` as a module (it is a script, not part of the package)."""
    name = "stableface_local_cluster"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, LOCAL_CLUSTER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # Registered before executing: dataclasses resolve their module through sys.modules.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def two_node_cluster():
    """A head and one worker raylet on this machine (``cluster/local_cluster.py``), this process its driver.

    Started once for the tests marked ``cluster``, which run last (``pytest_collection_modifyitems``).

    Yields the ``ClusterInfo``: ``address``, ``dashboard_url`` (job server), ``node_ids``
    ({"head": id, "worker-1": id}) and ``pin(name)`` (a ``resources=`` option that places a task
    on that node). The nodes have separate temp dirs and inherit this process's environment
    (the fake AWS credentials included). They run in the session's auth mode (token by default,
    with ``~/.ray/auth_token``), so ``JobSubmissionClient(info.dashboard_url)`` or a
    ``ray job submit --address <dashboard_url>`` subprocess reach them as they are.
    """
    import ray

    local_cluster = load_local_cluster()
    if ray.is_initialized():
        ray.shutdown()
    # Short and fresh: Ray's unix sockets live under it (107-character limit).
    state_dir = Path(tempfile.mkdtemp(prefix="sfc-", dir="/tmp"))
    info = local_cluster.start_cluster(workers=1, state_dir=state_dir, auth_mode=os.environ["RAY_AUTH_MODE"])
    saved_env = {key: os.environ.get(key) for key in info.client_env}
    try:
        os.environ.update(info.client_env)
        ray.init(address=info.address, namespace="stableface-tests", log_to_driver=False)
        yield info
    finally:
        ray.shutdown()
        local_cluster.stop_cluster(info)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(state_dir, ignore_errors=True)
        if _local_ray_wanted["active"]:
            start_local_ray()


@pytest.fixture(scope="session")
def grid_dataset(ray_local, grid_clips, tmp_path_factory) -> str:
    """A preprocessed dataset (the preprocess job on the local Ray) of the first grid/s1 clips.

    Speaker ``s1``, ``GRID_DATASET_CLIPS`` videos of 75 frames, crops of ``GRID_DATASET_CROP`` px.
    Session-scoped and read-only for tests: copy it before changing anything in it.
    """
    from stableface.config import compose
    from stableface.ray_jobs.preprocess import run

    folder = tmp_path_factory.mktemp("grid_dataset")
    catalog = folder / "catalog.csv"
    catalog.write_text(
        "video_uri,speaker\n" + "".join(f"{clip},s1\n" for clip in grid_clips[:GRID_DATASET_CLIPS])
    )
    dataset = str(folder / "dataset")
    summary = run(
        compose(
            "preprocess",
            [
                f"catalog={catalog}",
                f"dataset_uri={dataset}",
                f"face.crop_size={GRID_DATASET_CROP}",
                "face.min_fit_frames=100",
            ],
        )
    )
    assert summary["videos_ok"] == GRID_DATASET_CLIPS, summary
    return dataset


@pytest.fixture(scope="session")
def tiny_speaker_model(grid_dataset, tmp_path_factory) -> str:
    """A trained ``tiny``-preset speaker model of grid/s1 (32 px, T = 4); returns its local URI.

    Both training stages of the ``tiny`` schedule on ``grid_dataset`` (6 clips; 2 held out), in this
    process without Ray (``stableface.training.driver.train`` with ``InProcess``), about 10-20 s on one core.
    Real trained weights and the full speaker-model format (``SpeakerModel.load``), far from
    usable quality. Session-scoped and read-only for tests.
    """
    from stableface.config import compose
    from stableface.training.driver import InProcess, train

    output = tmp_path_factory.mktemp("tiny_speaker_model")
    cfg = compose(
        "train",
        [f"dataset_uri={grid_dataset}", f"output_uri={output}", "speaker=s1", "model=tiny", "schedule=tiny",
         "model_version=s1-tiny-test"],
    )  # fmt: skip
    train(cfg, InProcess(device="cpu"))
    return str(output / "s1")


# ----------------------------------------------------------------------------- dubbing (no Ray)
UNTRAINED_MODEL_CLIPS = 4  # grid/s1 clips the untrained model's face model and identity come from


def _untrained_speaker_model(grid_clips, folder, warped_texture: bool) -> str:
    """Freshly initialised ``tiny`` networks (seed 0) with a real face model and identity, saved under
    ``folder``; with ``warped_texture`` the renderer's texture frame is the first clip's first crop."""
    import cv2
    import numpy as np
    import torch

    from stableface.face.config import FaceConfig
    from stableface.face.face_model import FaceModel
    from stableface.face.landmarks import MediaPipeBackend, track_landmarks
    from stableface.face.tracking import crop_image, crop_points, stable_crop_box
    from stableface.face.warp import WarpTexture
    from stableface.io.video import iter_frames, read_frames
    from stableface.models import build_models, compose_model_config
    from stableface.speaker_model import SpeakerModel

    face_config = FaceConfig(crop_size=GRID_DATASET_CROP, min_fit_frames=100)
    base = FaceModel.from_assets(face_config)
    backend = MediaPipeBackend()
    normalised, crops = [], []
    for clip in grid_clips[:UNTRAINED_MODEL_CLIPS]:
        track = track_landmarks(iter_frames(clip), backend)
        box = stable_crop_box(track.mesh, track.present, face_config)
        crops.append((clip, box, crop_points(track.mesh, box)))
        normalised.append(base.normalise(crops[-1][2])[0])
    backend.close()
    speaker_shapes = np.concatenate(normalised)  # (T, 478, 3)
    config = compose_model_config("tiny", "full")
    config.renderer.warped_texture = warped_texture
    torch.manual_seed(0)
    networks = build_models(config).eval()
    if warped_texture:
        clip, box, mesh = crops[0]
        size, scale = config.renderer.image_size, config.renderer.image_size / GRID_DATASET_CROP
        crop = crop_image(read_frames(clip)[0], box.affines()[0], GRID_DATASET_CROP)  # (C, C, 3)
        image = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)  # (S, S, 3)
        networks.renderer.set_texture(WarpTexture(image, (mesh[0, :, :2] * scale).astype(np.float32)))
    model = SpeakerModel(
        speaker="s1",
        networks=networks,
        face_model=base.fit([speaker_shapes]),
        identity=FaceModel.identity_of(speaker_shapes),
        crop_size=GRID_DATASET_CROP,
        metadata={"model_version": "s1-untrained-test"},
    )
    uri = str(folder / "s1")
    model.save(uri)
    return uri


@pytest.fixture(scope="session")
def untrained_speaker_model(grid_clips, tmp_path_factory) -> str:
    """A Ray-free speaker model for the inference unit tests; returns its local URI.

    Freshly initialised ``tiny`` networks (seed 0, 32 px) with a real face model and identity: the
    expression basis and speaker ``s1``'s mean shape fitted on MediaPipe tracks of the first grid/s1
    clips at crop 128 (what the preprocessed ``grid_dataset`` uses). It renders noise in the mouth
    region, which is all the geometry, timing, compositing and error tests need.
    """
    return _untrained_speaker_model(grid_clips, tmp_path_factory.mktemp("untrained_speaker_model"), False)


@pytest.fixture(scope="session")
def textured_speaker_model(grid_clips, tmp_path_factory) -> str:
    """:func:`untrained_speaker_model` with ``model.renderer.warped_texture`` on (its texture frame:
    the first clip's first crop and mesh), for the dubbing tests of the warped-texture input."""
    return _untrained_speaker_model(grid_clips, tmp_path_factory.mktemp("textured_speaker_model"), True)


class StoreOutage:
    """A TCP forwarder on 127.0.0.1 in front of the moto server: ``stop()`` is a store outage (new
    connections refused, open ones cut), ``start()`` brings the same address back with the data intact.
    Clients reach S3 through :attr:`endpoint` exactly as they reach any other endpoint."""

    def __init__(self, target_port: int):
        import threading

        self.target_port = target_port
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()

    def start(self) -> None:
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in its thread
            listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def store_outage(s3_endpoint):
    """A :class:`StoreOutage` in front of the session's moto server, started; stopped afterwards."""
    outage = StoreOutage(int(s3_endpoint.rsplit(":", 1)[1]))
    outage.start()
    yield outage
    outage.stop()


@pytest.fixture
def closed_endpoint() -> str:
    """An http:// endpoint on 127.0.0.1 where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{_free_port()}"
