"""Static checks of cluster/: the AWS launcher YAML (through Ray's own validator), the KubeRay
manifests, the image recipe, the README's cluster commands, and the local-cluster helpers.

Nothing here starts Ray or talks to a cloud. References are checked against the repo: every
entry point, config file and path a config names must exist, and every job override must
compose against that job's Hydra schema.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DIR = REPO_ROOT / "cluster"
KUBERAY_DIR = CLUSTER_DIR / "kuberay"
AWS_YAML = CLUSTER_DIR / "aws.yaml"
DOCKERFILE = CLUSTER_DIR / "Dockerfile"
DOCKERIGNORE = CLUSTER_DIR / "Dockerfile.dockerignore"
INSTALL_SCRIPT = CLUSTER_DIR / "install_package.sh"
README = REPO_ROOT / "README.md"
SERVE_CONFIG = REPO_ROOT / "serve" / "config.yaml"
CONF_DIR = REPO_ROOT / "platform" / "stableface" / "conf"
# Where the image (WORKDIR) and the launcher (file_mounts) put the repository on a node.
NODE_REPO_DIR = "/home/ray/stableface"
JOB_NAMES = ("preprocess", "train", "dub", "audit")
SERVE_IMPORT_PATH = "serve.app:app"
KUBERAY_KINDS = {
    "serviceaccount.yaml": "ServiceAccount",
    "raycluster.yaml": "RayCluster",
    "rayjob-preprocess.yaml": "RayJob",
    "rayjob-train.yaml": "RayJob",
    "rayjob-dub.yaml": "RayJob",
    "rayjob-audit.yaml": "RayJob",
    "rayservice.yaml": "RayService",
}
RAYJOB_FILES = [name for name, kind in KUBERAY_KINDS.items() if kind == "RayJob"]
SERVICE_ACCOUNT = "stableface-ray"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"

# KubeRay ray.io/v1 field names (KubeRay 1.5-1.7 API reference): a typo or a field from another
# CRD is silently dropped by a lenient API server, so unknown names fail here.
RAY_CLUSTER_SPEC_FIELDS = {
    "headGroupSpec",
    "workerGroupSpecs",
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headServiceAnnotations",
    "suspend",
    "managedBy",
    "gcsFaultToleranceOptions",
    "authOptions",
}
HEAD_GROUP_FIELDS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
WORKER_GROUP_FIELDS = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "idleTimeoutSeconds",
    "rayStartParams",
    "template",
    "scaleStrategy",
    "numOfHosts",
    "suspend",
}
AUTOSCALER_OPTION_FIELDS = {
    "resources",
    "image",
    "imagePullPolicy",
    "securityContext",
    "idleTimeoutSeconds",
    "upscalingMode",
    "version",
    "env",
    "envFrom",
    "volumeMounts",
}
AUTH_OPTION_FIELDS = {"mode", "secretName", "enableK8sTokenAuth"}
RAY_JOB_SPEC_FIELDS = {
    "activeDeadlineSeconds",
    "backoffLimit",
    "rayClusterSpec",
    "submitterPodTemplate",
    "metadata",
    "clusterSelector",
    "submitterConfig",
    "managedBy",
    "deletionStrategy",
    "entrypoint",
    "runtimeEnvYAML",
    "jobId",
    "submissionMode",
    "entrypointResources",
    "entrypointNumCpus",
    "entrypointNumGpus",
    "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes",
    "suspend",
}
RAY_SERVICE_SPEC_FIELDS = {
    "serveService",
    "upgradeStrategy",
    "serveConfigV2",
    "rayClusterConfig",
    "excludeHeadPodFromServeSvc",
}
GPU_RESOURCE = "nvidia.com/gpu"
AWS_KEY_PATTERNS = (
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"aws_secret_access_key", re.IGNORECASE),
    re.compile(r"AWS_ACCESS_KEY_ID"),
)


# ----------------------------------------------------------------------------------- helpers
def ray_pin() -> str:
    match = re.search(r"^ray==([0-9.]+)$", (REPO_ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert match, "constraints.txt has no ray== pin"
    return match.group(1)


def package_version() -> str:
    match = re.search(r'^version = "([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert match, "pyproject.toml has no version"
    return match.group(1)


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kuberay(name: str) -> dict:
    documents = load_documents(KUBERAY_DIR / name)
    assert len(documents) == 1, f"{name}: expected one document, found {len(documents)}"
    return documents[0]


def cluster_specs() -> list[tuple[str, dict]]:
    """(where, RayClusterSpec) for every cluster the manifests define."""
    specs = [("raycluster.yaml", kuberay("raycluster.yaml")["spec"])]
    specs += [(name, kuberay(name)["spec"]["rayClusterSpec"]) for name in RAYJOB_FILES]
    specs.append(("rayservice.yaml", kuberay("rayservice.yaml")["spec"]["rayClusterConfig"]))
    return specs


def pod_templates() -> list[tuple[str, dict]]:
    templates = []
    for where, spec in cluster_specs():
        templates.append((f"{where}:head", spec["headGroupSpec"]["template"]))
        templates += [
            (f"{where}:{group['groupName']}", group["template"]) for group in spec["workerGroupSpecs"]
        ]
    return templates


def repo_path_of_script(script: str) -> str:
    """A script path as a node sees it -> its path in the repo."""
    prefix = NODE_REPO_DIR + "/"
    return script[len(prefix) :] if script.startswith(prefix) else script


def parse_job_command(command: str) -> tuple[str, list[str]]:
    """``... python [/home/ray/stableface/]jobs/x.py k=v ...`` -> ("jobs/x.py", ["k=v", ...])."""
    tokens = shlex.split(command)
    start = tokens.index("python")
    script = repo_path_of_script(tokens[start + 1])
    overrides = []
    for token in tokens[start + 2 :]:
        if "=" not in token or token.startswith("-"):
            break
        overrides.append(token)
    return script, overrides


def readme_job_commands() -> list[str]:
    """Shell commands in the README's code blocks that run a job entry point."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell)?\n(.*?)```", text, re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            if re.search(r"\bpython (\S*/)?jobs/\w+\.py\b", line):
                commands.append(line)
    return commands


def job_commands() -> list[tuple[str, str]]:
    """(where, command) for every job command the configs and the README give."""
    commands = [(name, kuberay(name)["spec"]["entrypoint"]) for name in RAYJOB_FILES]
    for number, command in enumerate(readme_job_commands(), start=1):
        job = Path(parse_job_command(command)[0]).stem
        commands.append((f"README.md#{number}-{job}", command))
    return commands


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_copies() -> list[tuple[list[str], str]]:
    copies = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY":
            parts = [part for part in arguments.split() if not part.startswith("--")]
            copies.append((parts[:-1], parts[-1]))
    return copies


def load_local_cluster():
    name = "stableface_local_cluster"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CLUSTER_DIR / "local_cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


def referenced_paths() -> dict[str, set[str]]:
    """Repo-relative path -> where it is referenced, for everything the cluster configs name."""
    references: dict[str, set[str]] = {}

    def add(path: str, where: str) -> None:
        references.setdefault(path, set()).add(where)

    for job in JOB_NAMES:
        add(f"jobs/{job}.py", "cluster/ (one entry point per job)")
        add(f"platform/stableface/conf/{job}.yaml", f"Hydra config name '{job}'")
    for where, command in job_commands():
        script, _ = parse_job_command(command)
        add(script, where)
    add("serve/app.py", f"rayservice.yaml import_path {SERVE_IMPORT_PATH}")
    add("serve/config.yaml", "rayservice.yaml serveConfigV2 mirrors it")
    for sources, _ in dockerfile_copies():
        for source in sources:
            add(source, "cluster/Dockerfile COPY")
    aws = yaml.safe_load(AWS_YAML.read_text())
    for remote, local in aws["file_mounts"].items():
        add(local, f"aws.yaml file_mounts {remote}")
        for command in aws["setup_commands"]:
            for token in shlex.split(command):
                if token.startswith(remote + "/"):
                    add(token[len(remote) + 1 :], "aws.yaml setup_commands")
    return references


# ------------------------------------------------------------------------------- references
def test_every_referenced_path_exists():
    missing = {
        path: sorted(where)
        for path, where in sorted(referenced_paths().items())
        if not (REPO_ROOT / path).exists()
    }
    listing = "\n".join(f"  {path}  (referenced by: {'; '.join(where)})" for path, where in missing.items())
    assert not missing, f"{len(missing)} path(s) referenced by cluster/ and README are missing:\n{listing}"


@pytest.mark.parametrize(("where", "command"), job_commands(), ids=[where for where, _ in job_commands()])
def test_job_command_overrides_compose_against_the_job_schema(where, command):
    from stableface.config import JOB_CONFIGS, compose

    script, overrides = parse_job_command(command)
    job = Path(script).stem
    assert job in JOB_NAMES, f"{where}: runs {script}, not one of the jobs {JOB_NAMES}"
    assert job in JOB_CONFIGS, f"{where}: job '{job}' has no config schema in JOB_CONFIGS yet"
    assert overrides, f"{where}: the command passes no storage URIs"
    compose(job, overrides)  # raises on an unknown key or a badly typed value


def test_parse_job_command_reads_node_paths_and_overrides():
    script, overrides = parse_job_command(
        "ray job submit --working-dir . -- python /home/ray/stableface/jobs/train.py a=1 b.c=s3://x/y --flag"
    )
    assert script == "jobs/train.py"
    assert overrides == ["a=1", "b.c=s3://x/y"]


def test_readme_has_the_cluster_section_with_submit_commands_for_every_job():
    text = README.read_text()
    assert "## Running on a cluster" in text
    commands = readme_job_commands()
    submitted = {
        Path(parse_job_command(command)[0]).stem for command in commands if "ray job submit" in command
    }
    assert submitted >= set(JOB_NAMES), f"README lacks `ray job submit` for {set(JOB_NAMES) - submitted}"
    assert any("s3://" in command for command in commands)
    for needle in (
        "ray up cluster/aws.yaml",
        "kubectl apply -f cluster/kuberay/",
        "cluster/local_cluster.py start",
    ):
        assert needle in text, f"README does not show `{needle}`"


# --------------------------------------------------------------------------- AWS launcher
def test_launcher_yaml_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(AWS_YAML.read_text())
    # What `ray up` does before it contacts AWS: merge the provider defaults, then validate.
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


def test_rays_launcher_validation_rejects_broken_configs():
    """The validator the previous test relies on does catch mistakes."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(AWS_YAML.read_text())
    misspelled = copy.deepcopy(config)
    misspelled["available_node_types"]["cpu_worker"]["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(misspelled))
    wrong_head = copy.deepcopy(config)
    wrong_head["head_node_type"] = "no_such_type"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(wrong_head))


def test_launcher_node_types_cover_the_workloads_and_reach_s3_by_instance_profile():
    config = yaml.safe_load(AWS_YAML.read_text())
    node_types = config["available_node_types"]
    head = node_types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    roles: dict[str, list[str]] = {}
    for name, node_type in node_types.items():
        node_config = node_type["node_config"]
        profile = node_config.get("IamInstanceProfile", {})
        assert profile.get("Name") or profile.get("Arn"), f"{name}: no IamInstanceProfile for S3 access"
        instance_family = node_config["InstanceType"].split(".")[0]
        gpus = node_type["resources"].get("GPU", 0)
        if gpus:
            assert instance_family[0] in "gp", f"{name}: GPU resources on non-GPU instance {instance_family}"
        else:
            assert instance_family[0] not in "gp", f"{name}: GPU instance {instance_family} advertises no GPU"
        if name != config["head_node_type"]:
            assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"], name
            assert node_type["max_workers"] > 0, f"{name}: can never scale up"
        roles.setdefault(node_type["labels"]["stableface/role"], []).append(name)
    assert {"head", "cpu", "train", "render"} <= set(roles)
    for role in ("train", "render"):
        assert all(node_types[name]["resources"]["GPU"] >= 1 for name in roles[role]), role
    assert all(node_types[name]["resources"].get("GPU", 0) == 0 for name in roles["cpu"])


def test_launcher_installs_this_package_with_the_pinned_ray():
    config = yaml.safe_load(AWS_YAML.read_text())
    image = config["docker"]["image"]
    assert image.startswith(f"rayproject/ray:{ray_pin()}-py311"), image
    assert config["file_mounts"] == {NODE_REPO_DIR: "."}
    assert any(
        f"{NODE_REPO_DIR}/cluster/install_package.sh" in command and command.rstrip().endswith(NODE_REPO_DIR)
        for command in config["setup_commands"]
    ), config["setup_commands"]
    assert ".gitignore" in config["rsync_filter"]  # keeps .venv and outputs off the nodes


def test_no_credentials_in_cluster_configs():
    for path in [AWS_YAML, DOCKERFILE, INSTALL_SCRIPT, *sorted(KUBERAY_DIR.glob("*.yaml"))]:
        text = path.read_text()
        for pattern in AWS_KEY_PATTERNS:
            assert not pattern.search(text), (
                f"{path.name}: looks like it carries AWS credentials ({pattern.pattern})"
            )


# ------------------------------------------------------------------------------- the image
def test_dockerfile_builds_on_the_pinned_ray_python311_image():
    instructions = dockerfile_instructions()
    args = {}
    for keyword, arguments in instructions:
        if keyword == "ARG" and "=" in arguments:
            key, _, value = arguments.partition("=")
            args[key] = value.strip('"')
    base = next(arguments for keyword, arguments in instructions if keyword == "FROM")
    base_image = args.get(base.strip("${}"), base) if base.startswith("${") else base
    assert re.fullmatch(rf"rayproject/ray:{re.escape(ray_pin())}-py311(-gpu|-cpu|-cu12\d)", base_image), (
        base_image
    )
    assert ("WORKDIR", NODE_REPO_DIR) in instructions


def test_dockerfile_copies_existing_files_and_installs_with_the_constraints():
    instructions = dockerfile_instructions()
    copies = dockerfile_copies()
    copied = [source for sources, _ in copies for source in sources]
    for source in copied:
        assert (REPO_ROOT / source).exists(), f"Dockerfile COPY {source}: not in the repo"
    for needed in (
        "pyproject.toml",
        "constraints.txt",
        "platform",
        "jobs",
        "serve",
        "cluster/install_package.sh",
    ):
        assert needed in copied, f"the image lacks {needed}"
    install_at = next(
        index
        for index, (keyword, arguments) in enumerate(instructions)
        if keyword == "RUN" and "cluster/install_package.sh" in arguments
    )
    copied_before_install = {
        source
        for keyword, arguments in instructions[:install_at]
        if keyword == "COPY"
        for source in arguments.split()
    }
    for needed in ("constraints.txt", "pyproject.toml", "./platform", "./cluster/install_package.sh"):
        assert any(needed.lstrip("./") in item for item in copied_before_install), (
            f"{needed} copied after install"
        )
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not ignored & set(copied), f"Dockerfile.dockerignore hides copied paths {ignored & set(copied)}"


def test_install_script_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(INSTALL_SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def _fake_python(bin_dir: Path, log: Path) -> None:
    """A `python` that records its arguments (and the constraints file pip was given)."""
    script = bin_dir / "python"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{log}"\n'
        'prev=""\n'
        'for arg in "$@"; do\n'
        f'  if [[ "$prev" == "-c" && -f "$arg" ]]; then cp "$arg" "{log}.constraints"; fi\n'
        '  prev="$arg"\n'
        "done\n"
    )
    script.chmod(0o755)


@pytest.mark.parametrize("torch_index", ["", "https://download.pytorch.org/whl/cpu"])
def test_install_script_pins_torch_from_constraints_without_the_local_build_tag(tmp_path, torch_index):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (repo / "constraints.txt").write_text("numpy==2.4.6\ntorch==2.13.0+cpu\nray==2.60.0\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "python.log"
    _fake_python(bin_dir, log)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TORCH_INDEX_URL": torch_index}
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), str(repo)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    pip_call = next(line for line in log.read_text().splitlines() if line.startswith("-m pip install"))
    assert "torch==2.13.0 " in pip_call + " " and "+cpu" not in pip_call
    assert pip_call.rstrip().endswith(str(repo))
    assert ("--extra-index-url " + torch_index in pip_call) == bool(torch_index)
    assert "--extra-index-url" in pip_call or not torch_index
    constraints = (tmp_path / "python.log.constraints").read_text()
    assert "numpy==2.4.6" in constraints and "ray==2.60.0" in constraints
    assert "torch" not in constraints


def test_install_script_refuses_a_directory_that_is_not_the_repo(tmp_path):
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "is not the stableface repository" in result.stderr


# ------------------------------------------------------------------------------- KubeRay
@pytest.mark.parametrize("name", sorted(KUBERAY_KINDS))
def test_kuberay_manifest_loads_with_its_kind(name):
    document = kuberay(name)
    expected_kind = KUBERAY_KINDS[name]
    assert document["kind"] == expected_kind
    assert document["apiVersion"] == ("v1" if expected_kind == "ServiceAccount" else "ray.io/v1")
    assert document["metadata"]["name"]


def _check_cluster_spec(where: str, spec: dict) -> list[str]:
    problems = [
        f"{where}: unknown RayClusterSpec field {key!r}" for key in set(spec) - RAY_CLUSTER_SPEC_FIELDS
    ]
    problems += [
        f"{where}: unknown headGroupSpec field {key!r}"
        for key in set(spec["headGroupSpec"]) - HEAD_GROUP_FIELDS
    ]
    problems += [
        f"{where}: unknown autoscalerOptions field {key!r}"
        for key in set(spec.get("autoscalerOptions", {})) - AUTOSCALER_OPTION_FIELDS
    ]
    problems += [
        f"{where}: unknown authOptions field {key!r}"
        for key in set(spec.get("authOptions", {})) - AUTH_OPTION_FIELDS
    ]
    groups = [("head", spec["headGroupSpec"])] + [
        (group.get("groupName", "?"), group) for group in spec["workerGroupSpecs"]
    ]
    for group_name, group in groups:
        if group is not spec["headGroupSpec"]:
            problems += [
                f"{where}/{group_name}: unknown workerGroupSpec field {key!r}"
                for key in set(group) - WORKER_GROUP_FIELDS
            ]
            if not group.get("minReplicas", 0) <= group.get("replicas", 0) <= group["maxReplicas"]:
                problems.append(f"{where}/{group_name}: replicas outside [minReplicas, maxReplicas]")
        for key, value in group.get("rayStartParams", {}).items():
            if not isinstance(value, str):
                problems.append(
                    f"{where}/{group_name}: rayStartParams.{key} must be a string (KubeRay map[string]string)"
                )
    if spec.get("rayVersion") != ray_pin():
        problems.append(f"{where}: rayVersion {spec.get('rayVersion')!r} != the ray pin {ray_pin()}")
    return problems


def test_kuberay_specs_use_only_known_fields_and_the_pinned_ray():
    problems = []
    for where, spec in cluster_specs():
        problems += _check_cluster_spec(where, spec)
    for name in RAYJOB_FILES:
        problems += [
            f"{name}: unknown RayJobSpec field {key!r}"
            for key in set(kuberay(name)["spec"]) - RAY_JOB_SPEC_FIELDS
        ]
    service_spec = kuberay("rayservice.yaml")["spec"]
    problems += [
        f"rayservice.yaml: unknown RayServiceSpec field {key!r}"
        for key in set(service_spec) - RAY_SERVICE_SPEC_FIELDS
    ]
    assert not problems, "\n".join(problems)


def test_the_field_check_catches_a_misspelled_field():
    where, spec = cluster_specs()[0]
    broken = copy.deepcopy(spec)
    broken["workerGroupSpecs"][0]["maxReplica"] = broken["workerGroupSpecs"][0].pop("maxReplicas")
    broken["workerGroupSpecs"][0]["maxReplicas"] = 1
    broken["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    problems = _check_cluster_spec(where, broken)
    assert any("maxReplica'" in problem for problem in problems)
    assert any("rayStartParams.num-cpus" in problem for problem in problems)


def test_gpu_groups_request_gpus_and_use_the_gpu_image():
    image_repository = None
    for where, template in pod_templates():
        containers = template["spec"]["containers"]
        assert containers, where
        for container in containers:
            repository, _, tag = container["image"].rpartition(":")
            image_repository = image_repository or repository
            assert repository == image_repository, (
                f"{where}: image repository {repository} != {image_repository}"
            )
            limits = container.get("resources", {}).get("limits", {})
            gpus = int(limits.get(GPU_RESOURCE, 0))
            if "gpu" in where.rsplit(":", 1)[-1]:
                assert gpus >= 1, f"{where}: a GPU group without {GPU_RESOURCE} limits"
                assert tag == f"{package_version()}-gpu", f"{where}: GPU pods need the -gpu image, not {tag}"
                assert any(t.get("key") == GPU_RESOURCE for t in template["spec"].get("tolerations", [])), (
                    where
                )
            else:
                assert gpus == 0, f"{where}: a CPU group asks for GPUs"
                assert tag == f"{package_version()}-cpu", f"{where}: CPU pods use the -cpu image, not {tag}"
            assert limits.get("cpu") and limits.get("memory"), f"{where}: no cpu/memory limits"


def test_pods_reach_s3_through_an_irsa_service_account():
    account = kuberay("serviceaccount.yaml")
    assert account["metadata"]["name"] == SERVICE_ACCOUNT
    assert account["metadata"]["annotations"][IRSA_ANNOTATION].startswith("arn:aws:iam::")
    for where, template in pod_templates():
        assert template["spec"].get("serviceAccountName") == SERVICE_ACCOUNT, (
            f"{where}: not the IRSA service account"
        )
        for container in template["spec"]["containers"]:
            names = {variable["name"] for variable in container.get("env", [])}
            assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}, where


@pytest.mark.parametrize("name", RAYJOB_FILES)
def test_rayjob_runs_its_job_entry_point_with_s3_uris(name):
    spec = kuberay(name)["spec"]
    script, overrides = parse_job_command(spec["entrypoint"])
    job = name.removeprefix("rayjob-").removesuffix(".yaml")
    assert script == f"jobs/{job}.py"
    assert spec["entrypoint"].split()[1].startswith(NODE_REPO_DIR + "/"), "use the image's absolute path"
    uris = [value for _, _, value in (override.partition("=") for override in overrides) if "://" in value]
    assert uris and all(uri.startswith("s3://") for uri in uris), overrides
    assert spec["shutdownAfterJobFinishes"] is True
    yaml.safe_load(spec["runtimeEnvYAML"])


def test_training_rayjob_has_a_gpu_per_train_worker():
    spec = kuberay("rayjob-train.yaml")["spec"]
    overrides = dict(override.split("=", 1) for override in parse_job_command(spec["entrypoint"])[1])
    assert overrides["scaling.use_gpu"] == "true"
    workers = int(overrides["scaling.num_workers"])
    gpus = sum(
        group["maxReplicas"]
        * int(group["template"]["spec"]["containers"][0]["resources"]["limits"].get(GPU_RESOURCE, 0))
        for group in spec["rayClusterSpec"]["workerGroupSpecs"]
    )
    assert 1 <= workers <= gpus, f"{workers} GPU train workers on {gpus} GPUs"


def _serve_config() -> dict:
    return yaml.safe_load(kuberay("rayservice.yaml")["spec"]["serveConfigV2"])


def test_rayservice_serve_config_passes_serves_schema_with_autoscaling_everywhere():
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    config = _serve_config()
    ServeDeploySchema.model_validate(config)
    applications = config["applications"]
    assert [app["import_path"] for app in applications] == [SERVE_IMPORT_PATH]
    gpu_deployments = []
    for deployment in applications[0]["deployments"]:
        autoscaling = deployment.get("autoscaling_config")
        assert autoscaling, f"deployment {deployment['name']} has no autoscaling_config"
        assert set(autoscaling) <= set(AutoscalingConfig.model_fields), set(autoscaling) - set(
            AutoscalingConfig.model_fields
        )
        AutoscalingConfig.model_validate(autoscaling)
        if deployment.get("ray_actor_options", {}).get("num_gpus", 0) > 0:
            gpu_deployments.append(deployment["name"])
    assert gpu_deployments, "no deployment asks for a GPU (the renderer should)"
    groups = kuberay("rayservice.yaml")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert any("gpu" in group["groupName"] for group in groups)


def test_rayservice_mirrors_serve_config_yaml():
    assert SERVE_CONFIG.exists(), (
        f"{SERVE_CONFIG.relative_to(REPO_ROOT)} is missing; rayservice.yaml mirrors it"
    )
    local = yaml.safe_load(SERVE_CONFIG.read_text())
    cluster = _serve_config()

    def shape(config: dict) -> list[tuple]:
        return [
            (
                app.get("name"),
                app.get("import_path"),
                app.get("route_prefix", "/"),
                sorted(deployment["name"] for deployment in app.get("deployments", [])),
            )
            for app in config["applications"]
        ]

    assert shape(cluster) == shape(local), "rayservice.yaml serveConfigV2 and serve/config.yaml differ"


# ------------------------------------------------------------------------ local cluster helpers
def test_cluster_info_round_trips_and_pins_work_to_a_node():
    local_cluster = load_local_cluster()
    info = local_cluster.ClusterInfo(
        address="127.0.0.1:1",
        dashboard_url="http://127.0.0.1:2",
        state_dir="/tmp/x",
        nodes=[
            local_cluster.LocalNode(
                "head", "stableface_node:head", 10, "/tmp/x/head", "/tmp/x/head.log", 2, "aa"
            ),
            local_cluster.LocalNode(
                "worker-1", "stableface_node:worker-1", 11, "/tmp/x/w", "/tmp/x/w.log", 2, "bb"
            ),
        ],
    )
    again = local_cluster.ClusterInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info
    assert again.node_ids == {"head": "aa", "worker-1": "bb"}
    assert again.pin("worker-1") == {"stableface_node:worker-1": 0.001}
    assert again.client_env == {"RAY_AUTH_MODE": "token"}
    with pytest.raises(KeyError, match="worker-2"):
        again.pin("worker-2")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": -1}, "workers=-1"),
        ({"object_store_mb": 10}, "75 MiB"),
        ({"auth_mode": "none"}, "auth_mode='none'"),
        ({"num_cpus": 0}, "num_cpus=0"),
        ({"state_dir": "/tmp/" + "x" * 60}, "107-character"),
    ],
)
def test_start_cluster_rejects_bad_arguments_before_starting_anything(kwargs, message, tmp_path):
    local_cluster = load_local_cluster()
    kwargs = {"state_dir": tmp_path, **kwargs}
    with pytest.raises(local_cluster.LocalClusterError, match=re.escape(message)):
        local_cluster.start_cluster(**kwargs)
    assert not (Path(kwargs["state_dir"]) / "cluster.json").exists()


def _write_state(local_cluster, state_dir: Path, pid: int) -> None:
    node = local_cluster.LocalNode(
        "head", "stableface_node:head", pid, str(state_dir), str(state_dir / "h.log"), 1
    )
    info = local_cluster.ClusterInfo(
        address="127.0.0.1:1", dashboard_url="http://127.0.0.1:2", state_dir=str(state_dir), nodes=[node]
    )
    (state_dir / "cluster.json").write_text(json.dumps(info.to_dict()))


def _fake_node(temp_dir: Path, ignore_sigterm: bool = False) -> subprocess.Popen:
    """A stand-in for `ray start --block --temp-dir=...` in its own session (same command-line marker)."""
    code = "import signal, time\n"
    if ignore_sigterm:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(60)\n"
    process = subprocess.Popen(
        [sys.executable, "-c", code, f"--temp-dir={temp_dir}"], stdout=subprocess.PIPE, start_new_session=True
    )
    assert process.stdout.readline().strip() == b"ready"  # handlers are installed before we signal
    return process


def _end(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        if process.stdout:
            process.stdout.close()


def test_start_cluster_refuses_while_a_recorded_cluster_is_alive(tmp_path):
    local_cluster = load_local_cluster()
    node = _fake_node(tmp_path)
    try:
        _write_state(local_cluster, tmp_path, node.pid)
        with pytest.raises(local_cluster.LocalClusterError, match="already running"):
            local_cluster.start_cluster(1, state_dir=tmp_path)
        assert (tmp_path / "cluster.json").exists()  # the running cluster's record is left alone
        assert node.poll() is None
    finally:
        _end(node)


def test_stop_cluster_stops_only_the_recorded_process_group(tmp_path):
    local_cluster = load_local_cluster()
    recorded = _fake_node(tmp_path)
    bystander = _fake_node(tmp_path / "other")
    try:
        _write_state(local_cluster, tmp_path, recorded.pid)
        assert local_cluster.stop_cluster(tmp_path, grace_s=5) is True
        # stop_cluster reaps its children itself, so the pid is simply gone.
        assert not local_cluster._pid_alive(recorded.pid)
        assert bystander.poll() is None
        assert not (tmp_path / "cluster.json").exists()
        assert local_cluster.stop_cluster(tmp_path) is False
    finally:
        _end(recorded, bystander)


def test_stop_cluster_leaves_a_reused_pid_alone(tmp_path):
    """A recorded pid that now runs something else (not our `ray start`) is never signalled."""
    local_cluster = load_local_cluster()
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        _write_state(local_cluster, tmp_path, stranger.pid)
        assert local_cluster.stop_cluster(tmp_path, grace_s=1) is False
        assert stranger.poll() is None
    finally:
        _end(stranger)


def test_stop_cluster_kills_a_node_that_ignores_sigterm(tmp_path):
    local_cluster = load_local_cluster()
    stubborn = _fake_node(tmp_path, ignore_sigterm=True)
    try:
        _write_state(local_cluster, tmp_path, stubborn.pid)
        started = time.monotonic()
        assert local_cluster.stop_cluster(tmp_path, grace_s=1) is True
        assert not local_cluster._pid_alive(stubborn.pid)
        assert time.monotonic() - started < 10
    finally:
        _end(stubborn)


def test_node_arguments_give_each_raylet_its_own_ports_dir_and_resource(tmp_path):
    local_cluster = load_local_cluster()
    first = local_cluster._common_node_arguments("head", tmp_path / "head", 2, 200)
    second = local_cluster._common_node_arguments("worker-1", tmp_path / "worker-1", 2, 200)

    def ports(arguments):
        return {
            int(match.group(1)) for arg in arguments if (match := re.fullmatch(r"--[a-z-]+-port=(\d+)", arg))
        } - {0}

    assert len(ports(first)) == 6 and not ports(first) & ports(second)
    assert f"--temp-dir={tmp_path / 'head'}" in first
    assert "--block" in first
    resources = json.loads(next(arg for arg in second if arg.startswith("--resources=")).split("=", 1)[1])
    assert resources == {"stableface_node:worker-1": 1}
    assert f"--object-store-memory={200 * 1024 * 1024}" in second


def test_free_ports_are_never_handed_out_twice():
    """The OS may return a just-probed port again; two nodes' services must still never share one."""
    local_cluster = load_local_cluster()
    ports = [local_cluster._free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_node_environment_runs_this_python_with_explicit_auth(monkeypatch):
    local_cluster = load_local_cluster()
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    env = local_cluster._node_environment("token")
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["RAY_AUTH_MODE"] == "token"
    assert "RAY_ADDRESS" not in env
