"""The top-level config of each job. Sub-configs live beside the code they configure."""

from __future__ import annotations

from dataclasses import dataclass, field

from stableface.audio.features import AudioFeatureConfig
from stableface.face.config import ExpressionBasis, FaceConfig
from stableface.face.erosion import ErosionConfig
from stableface.inference.config import DubConfig
from stableface.io.storage import StorageConfig
from stableface.losses.config import LossConfig
from stableface.metrics.config import MetricsConfig
from stableface.models.config import AblationConfig, LipSyncConfig, ModelConfig
from stableface.provenance.config import WatermarkConfig
from stableface.training.config import TrainConfig
from stableface.training.sync_config import SyncHoldout, SyncScheduleConfig


@dataclass
class RayConfig:
    """How a job reaches Ray: embedded local Ray by default, a cluster through ``address``."""

    address: str | None = None  # None: $RAY_ADDRESS if set (ray job submit), else start a local Ray
    num_cpus: int | None = None  # local Ray only; None = all cores
    num_gpus: int | None = None  # local Ray only
    # Local Ray only. The dashboard serves Ray's State API, which Ray Train's placement-group
    # cleaner polls every second (without it each poll logs a warning) and `ray list` uses.
    include_dashboard: bool = True
    namespace: str = "stableface"


@dataclass
class PreprocessJobConfig:
    """``stableface preprocess``: raw videos -> per-speaker datasets."""

    catalog: str = "???"  # a folder, an s3:// prefix, or a CSV/JSONL/Parquet of (video_uri, speaker)
    dataset_uri: str = "outputs/dataset"
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    speaker_from: str = "folder"  # without a speaker column: "folder" (parent folder) or "file" (file stem)
    face: FaceConfig = field(default_factory=FaceConfig)
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    speakers: list[str] = field(default_factory=list)  # only these speakers; empty = every speaker
    max_videos_per_speaker: int | None = None  # None = all of them
    max_frames_per_video: int | None = None  # None = whole videos
    overwrite: bool = False  # redo finished speakers and videos, refit the expression basis
    # packaged: every speaker's expression is coded on the basis shipped with the pretrained stage 1
    # (fitted over the 32 speakers of the shared data), so that network's predictions mean the same
    # here; fit: a basis of this dataset's own (then stage 1 trains from scratch).
    expression_basis: ExpressionBasis = ExpressionBasis.packaged
    # The crops are the renderer's training targets: CRF 16 is visually lossless (mean error < 2
    # levels), and x264's ultrafast preset encodes a 256 px crop in ~0.6 ms instead of ~2 ms for
    # 'veryfast', at ~4x the size (still ~60x smaller than raw frames).
    crop_crf: int = 16
    crop_preset: str = "ultrafast"
    concurrency: int | None = None  # videos extracted at once; None = one per CPU of the cluster


@dataclass
class AuditJobConfig:
    """``stableface audit``: a catalog of videos -> per-video MSI table + HTML report."""

    catalog: str = "???"  # a folder, an s3:// prefix, or a CSV/JSONL/Parquet table with a video column
    output_uri: str = "outputs/audit"  # audit.parquet/.csv, report.html, slices/ go here
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # A second catalog paired by video id, the reference of real speech (e.g. the dubs' sources):
    # the catalog's videos whose MSI departs from theirs by metrics.departure_factor are flagged.
    compare_with: str | None = None
    label: str = "catalog"  # how the report names each catalog
    compare_label: str = "comparison"
    title: str = "Motion stability audit"
    concurrency: int | None = None  # scoring actors; None = one per CPU of the cluster
    cpus_per_actor: float = 1.0
    save_slices: bool = True  # write each vertical-slice PNG under <output_uri>/slices/
    report_max_slices: int = 500  # slice images embedded in the report (flagged ones first)
    # Per video: the invisible watermark (with the dubs' key), C2PA credentials and mp4 tags; the
    # report lists the synthetic videos found.
    check_provenance: bool = True
    watermark: WatermarkConfig = field(default_factory=WatermarkConfig)


@dataclass
class ScalingSettings:
    """Ray Train workers: one DDP rank each (gloo on CPU, NCCL on GPU)."""

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0  # with use_gpu
    accelerator_type: str | None = None  # e.g. "A100": only nodes with that GPU
    # Ray placement group strategy of the workers: PACK fills a node first; SPREAD or
    # STRICT_SPREAD (one worker per node) put the ranks on different nodes.
    placement_strategy: str = "PACK"


@dataclass
class TrainJobConfig:
    """``stableface train``: a preprocessed dataset -> speaker models (stage 1 shared, stage 2 each).

    The model of speaker S goes to ``<output_uri>/<model_name or S>`` (dubbing finds it there as
    ``<models_uri>/<speaker>``); run state, checkpoints and logs to ``<run_uri>``.
    """

    dataset_uri: str = "???"  # a dataset written by `stableface preprocess`
    output_uri: str = "outputs/models"  # the models root
    speaker: str | None = None  # stage-2 speaker; None = every finished speaker of the dataset
    model_name: str | None = None  # the model directory's name (one speaker only); None = the speaker id
    stage1_speakers: list[str] = field(default_factory=list)  # stage-1 speakers; empty = all of the dataset's
    stage: str = "all"  # "1", "2" or "all"
    run_uri: str | None = None  # checkpoints, metrics, samples; None = <output_uri>/_training
    # Stage 2 alone: the stage-1 weights (a models checkpoint such as a run's audio2expression.pt,
    # or a speaker model directory); None = this run's stage-1 result under run_uri.
    audio2expression_uri: str | None = None
    overwrite: bool = False  # start over instead of resuming runs found under run_uri
    model_version: str | None = None  # None = "<speaker>-<UTC timestamp>"
    model: ModelConfig = field(default_factory=ModelConfig)  # group `model`: tiny | cpu | paper
    ablation: AblationConfig = field(
        default_factory=AblationConfig
    )  # group `ablation`: full | baseline | no_*
    schedule: TrainConfig = field(default_factory=TrainConfig)  # group `schedule`: paper | cpu | demo | tiny
    loss: LossConfig = field(
        default_factory=LossConfig
    )  # stage 2: 20 L_rec + 1 L_adv, VGG19 if weights given
    erosion: ErosionConfig = field(default_factory=ErosionConfig)  # `enabled` comes from the ablation
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    max_failures: int = 3  # worker failures a stage recovers from (from its last checkpoint)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)


@dataclass
class PretrainJobConfig(TrainJobConfig):
    """``stableface pretrain``: the train job's stage 1 on a many-speaker dataset (schedule
    ``pretrain``: articulation losses, speakers held out), then its weights, the dataset's
    expression basis and a model card published as the package's pretrained stage 1."""

    stage: str = "1"
    publish_dir: str | None = None  # None = the installed package's stableface/pretrained/
    # The model card's data licence line (from ../shared/data/README.md for the shared data).
    data_licences: str = (
        "GRID audio-visual corpus (Cooke, Barker, Cunningham, Shao 2006), CC BY 4.0; VoxCeleb2 "
        "(Chung, Nagrani, Zisserman 2018) as redistributed by the PC-AVS project, CC BY 4.0, video "
        "copyright with its owners (research and testing use); hd/: LatentSync demo asset (Apache-2.0) "
        "and VideoReTalking examples (Apache-2.0, video copyright with its owners: research and testing use)"
    )


AUDIO_CONTENT_TYPES = [
    "audio/wav",
    "audio/x-wav",
    "audio/wave",
    "audio/vnd.wave",
    "audio/mpeg",
    "audio/mp3",
    "audio/mp4",
    "audio/x-m4a",
    "audio/aac",
    "audio/flac",
    "audio/x-flac",
    "audio/ogg",
    "audio/webm",
]


@dataclass
class ServeLimits:
    """What one request to the serving endpoint may ask for; beyond these it gets a 4xx or 5xx."""

    max_upload_bytes: int = 20 * 1024 * 1024  # the whole request body (413 beyond)
    max_sync_seconds: float = 15.0  # audio longer than this goes through the job API (413 on /v1/dub)
    max_async_seconds: float = 600.0  # the longest audio a job accepts (413 on /v1/jobs)
    content_types: list[str] = field(default_factory=lambda: list(AUDIO_CONTENT_TYPES))  # 415 otherwise
    request_timeout_s: float = 120.0  # a synchronous dub taking longer gets 504


@dataclass
class CallbackSettings:
    """``POST /v1/jobs`` with ``callback_url``: the service POSTs the job's outcome there when it ends.

    The body is JSON (job_id, status, video_url, error), signed in the ``X-StableFace-Signature``
    header as ``sha256=<hex HMAC-SHA256 of the body under the secret>``.
    """

    # host or host:port a callback URL may name (no requests to arbitrary hosts from the cluster);
    # empty = callbacks refused (422)
    allowed_hosts: list[str] = field(default_factory=list)
    secret: str | None = None  # the signing key; None = $<secret_env>; callbacks need one
    secret_env: str = "STABLEFACE_CALLBACK_SECRET"
    attempts: int = 4  # deliveries tried (a 2xx answer ends them; other 4xx than 408/429 too)
    backoff_s: float = 1.0  # wait before the second attempt, doubled before each later one
    timeout_s: float = 10.0  # per attempt
    public_base_url: str = ""  # prefix of the video_url in the body (e.g. https://dub.example.com)


@dataclass
class ServeConfig:
    """``serve/``: the Ray Serve endpoint (``serve run serve/config.yaml``, ``stableface serve``).

    Requests name only ids, never paths: speaker S's model is ``<models_uri>/S`` and its source
    videos are ``<sources_uri>/S/<source_id>.<video ext>``.
    """

    models_uri: str = "outputs/models"  # speaker model directories, as `stableface train` writes them
    sources_uri: str = "outputs/sources"  # preprocessed-able source videos, one folder per speaker
    jobs_uri: str = "outputs/serve_jobs"  # asynchronous jobs: <jobs_uri>/<job_id>/{status.json, video.mp4}
    cache_uri: str | None = None  # prepared sources (npz); None = a folder in the replica's temp dir
    api_key: str | None = None  # bearer token for /v1/*; None = $<api_key_env>; neither = no auth
    api_key_env: str = "STABLEFACE_API_KEY"
    max_models_per_replica: int = 3  # speaker models each replica keeps (least recently used evicted)
    max_sources_per_replica: int = 32  # prepared source tracks each compositor replica keeps in memory
    job_num_cpus: float = 0.5  # CPUs reserved for the Ray task that runs one asynchronous job
    job_resubmit_interval_s: float = 15.0  # how often queued jobs without a task (after an outage) restart
    max_job_attempts: int = 5  # a job started this often without finishing is failed, not retried forever
    host: str = "127.0.0.1"  # `stableface serve` only; serve/config.yaml has its own http_options
    port: int = 8000
    limits: ServeLimits = field(default_factory=ServeLimits)
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    dub: DubConfig = field(default_factory=DubConfig)  # the same knobs as the bulk dubbing job
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)


@dataclass
class DubJobConfig:
    """``stableface dub``: a catalog of (job_id, speaker or model_uri, video_uri, audio_uri[, output_uri])
    -> dubbed mp4s and a result manifest (see :mod:`stableface.ray_jobs.dub`)."""

    catalog: str = "???"  # a CSV, JSONL or Parquet table; relative paths resolve against its folder
    models_uri: str | None = None  # a row's speaker S dubs with the model at <models_uri>/S
    output_uri: str = "outputs/dub"  # manifest.parquet/.csv, summary.json, items/, sources/, default videos/
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    dub: DubConfig = field(default_factory=DubConfig)  # inference, composite, provenance, encode
    metrics: MetricsConfig = field(default_factory=MetricsConfig)  # how each output's MSI is scored
    score_outputs: bool = True  # lip/jaw MSI of every output in the manifest
    # review.html next to the manifest: source and dub side by side, slice and mouth pictures, the
    # source's MSI and the dub's departure from it (metrics.departure_factor); needs score_outputs
    review: bool = True
    cache_sources: bool = True  # keep prepared sources under <output_uri>/sources (one per video and model)
    overwrite: bool = False  # dub again even where an output exists
    concurrency: int | None = (
        None  # dubbing actors; None = one per cpus_per_actor CPUs (or GPU) of the cluster
    )
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0  # e.g. 1 on GPU workers (then inference.device=auto picks cuda)
    models_per_actor: int = 2  # speaker models each actor keeps loaded (least recently used dropped)
    max_restarts: int = -1  # a dead actor is restarted (-1: always) ...
    # ... and the row it was dubbing retried this many times; a row that keeps killing its actor
    # then becomes a failed row instead of stalling the job (-1: retry forever)
    max_task_retries: int = 3


@dataclass
class SyncTrainJobConfig:
    """``stableface train-sync``: a preprocessed dataset -> the lip-sync expert and its held-out figures.

    Writes ``<output_uri>/lipsync.pt`` and ``lipsync_eval.json``; with
    ``output_uri=platform/stableface/models/weights`` it regenerates the weights shipped in the package.
    """

    dataset_uri: str = "???"  # a dataset written by `stableface preprocess` (landmarks + log-mel)
    output_uri: str = "outputs/lipsync"
    speakers: list[str] = field(default_factory=list)  # empty = every finished speaker of the dataset
    model: LipSyncConfig = field(default_factory=LipSyncConfig)
    schedule: SyncScheduleConfig = field(default_factory=SyncScheduleConfig)
    holdout: SyncHoldout = field(default_factory=SyncHoldout)
    max_offset: int = 15  # offsets searched either way in the held-out evaluation (frames)
    torch_threads: int | None = None  # None = torch's default
    storage: StorageConfig = field(default_factory=StorageConfig)


@dataclass
class DemoConfig:
    """``stableface demo`` / ``make demo``."""

    data_root: str = "examples/data"  # holds grid_s1/*.mpg and speech/*.wav (see its ATTRIBUTION.md)
    output_root: str = "outputs/demo"
    unseen_clips: int = 3  # the last clips are kept out of training and become dubbing sources
    crop_size: int = 128  # dataset crops; the cpu preset renders at 128 px
    model: str = "cpu"  # model preset
    schedule: str = "demo"  # training schedule preset
    train_workers: int = 1  # Ray Train DDP workers
    train_overrides: list[str] = field(default_factory=list)  # extra `stableface train` overrides
    ray: RayConfig = field(default_factory=RayConfig)


JOB_CONFIGS: dict[str, type] = {
    "preprocess": PreprocessJobConfig,
    "audit": AuditJobConfig,
    "train": TrainJobConfig,
    "pretrain": PretrainJobConfig,
    "serve": ServeConfig,
    "dub": DubJobConfig,
    "demo": DemoConfig,
    "train-sync": SyncTrainJobConfig,
}
