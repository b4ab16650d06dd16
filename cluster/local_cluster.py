"""A local multi-node Ray cluster for development: one head and N worker raylets on this machine.

    python cluster/local_cluster.py start --workers 1   # prints the address and dashboard URL
    python cluster/local_cluster.py status
    python cluster/local_cluster.py stop

Each node is its own ``ray start --block`` process in its own process group, with its own temp
dir (sessions, logs, sockets, spilled objects), its own ports and a small object store, so the
nodes share nothing on disk, as on a real cluster. Each node advertises a custom resource
(``stableface_node:head``, ``stableface_node:worker-1``, ...) and a ``stableface/node`` label so
work can be pinned to it. ``stop`` signals only the processes this script started (their ids are
kept in ``cluster.json`` in the state dir); it never runs ``ray stop``, which would take down
every Ray on the machine.

The dashboard and job server listen on 127.0.0.1 only, but Ray's GCS and raylets listen on all
interfaces, so token authentication is on by default (the user's ``~/.ray/auth_token``,
generated if missing) and clients need ``RAY_AUTH_MODE=token`` (``ClusterInfo.client_env``).

The helpers :func:`start_cluster`, :func:`stop_cluster` and :func:`cluster_status` are what the
test fixture uses (it loads this file by path with importlib).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger("stableface.cluster")

LOOPBACK = "127.0.0.1"
HEAD_NODE_NAME = "head"
NODE_RESOURCE_PREFIX = "stableface_node:"
NODE_LABEL_KEY = "stableface/node"
STATE_FILE_NAME = "cluster.json"
# Unix socket paths under a node's temp dir must stay below 108 characters, so the default
# state dir is short and fixed (one local cluster per machine user unless --state-dir is given).
DEFAULT_STATE_DIR = Path(tempfile.gettempdir()) / f"sf-cluster-{os.getuid()}"
MAX_STATE_DIR_CHARS = 40
DEFAULT_GCS_PORT = 6379
DEFAULT_DASHBOARD_PORT = 8265
MIB = 1024 * 1024
# The smallest object store Ray accepts is 75 MiB; 400 MiB per node keeps two nodes well inside
# a shared 24 GiB machine while holding a few batches of 256x256 frames.
DEFAULT_OBJECT_STORE_MB = 400
# Logical CPUs per node. Two per node lets a driver-side actor (a Train controller, a Data
# coordinator) sit beside a 1-CPU worker on each node of a 2-core machine without deadlock.
DEFAULT_CPUS_PER_NODE = 2
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 20.0
KILL_WAIT_S = 5.0
AUTH_MODES = ("token", "disabled")


class LocalClusterError(RuntimeError):
    """The local cluster could not be started, found or stopped; the message says why."""


@dataclass
class LocalNode:
    """One raylet of the local cluster and the ``ray start --block`` process that owns it."""

    name: str  # "head", "worker-1", ...
    resource: str  # custom resource only this node has, e.g. "stableface_node:worker-1"
    pid: int  # the `ray start --block` process; its process group holds the node's processes
    temp_dir: str
    log_file: str
    num_cpus: int
    node_id: str | None = None  # filled once the node has registered with the head


@dataclass
class ClusterInfo:
    """How to reach a running local cluster and what it is made of."""

    address: str  # GCS address for ray.init(address=...) and `ray start --address`
    dashboard_url: str  # job server too: RAY_ADDRESS for `ray job submit`
    state_dir: str
    auth_mode: str = "token"
    nodes: list[LocalNode] = field(default_factory=list)

    @property
    def client_env(self) -> dict[str, str]:
        """Environment a client process needs to talk to the cluster (ray.init, ray job submit).

        Empty without token auth: any client can talk to such a cluster, and forcing
        ``RAY_AUTH_MODE=disabled`` on a process that already runs in token mode would break it.
        """
        return {"RAY_AUTH_MODE": "token"} if self.auth_mode == "token" else {}

    @property
    def node_ids(self) -> dict[str, str | None]:
        """Node name -> Ray node id (hex)."""
        return {node.name: node.node_id for node in self.nodes}

    def node(self, name: str) -> LocalNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node named {name!r} in the local cluster (have {[n.name for n in self.nodes]})")

    def pin(self, name: str) -> dict[str, float]:
        """Ray ``resources=`` option that schedules a task or actor on node ``name``."""
        return {self.node(name).resource: 0.001}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClusterInfo:
        nodes = [LocalNode(**node) for node in data.get("nodes", [])]
        return cls(
            address=data["address"],
            dashboard_url=data["dashboard_url"],
            state_dir=data["state_dir"],
            auth_mode=data.get("auth_mode", "token"),
            nodes=nodes,
        )


def worker_node_name(index: int) -> str:
    return f"worker-{index}"


def node_resource(name: str) -> str:
    return f"{NODE_RESOURCE_PREFIX}{name}"


# Ports this process has handed out. A port is free once its probe socket closes, so the OS can
# return the same one to the next probe, before the node that was given it has bound it.
_handed_out_ports: set[int] = set()
MAX_PORT_PROBES = 1000


def _free_port() -> int:
    """A free port on the loopback interface that no earlier call of this process returned."""
    for _ in range(MAX_PORT_PROBES):
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise LocalClusterError(f"no new free port on {LOOPBACK} after {MAX_PORT_PROBES} tries")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _pick_port(requested: int | None, what: str) -> int:
    if requested is None or requested == 0:
        return _free_port()
    if not _port_is_free(requested):
        raise LocalClusterError(f"{what} port {requested} is already in use on {LOOPBACK}; pick another one")
    return requested


def _ray_executable() -> str:
    """The ``ray`` CLI of this interpreter's environment, so every node runs the same Ray."""
    beside_python = Path(sys.executable).parent / "ray"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("ray")
    if found is None:
        raise LocalClusterError(f"no `ray` executable beside {sys.executable} or on PATH; install ray")
    return found


def _node_environment(auth_mode: str) -> dict[str, str]:
    # Job entrypoints run `python ...` through a shell on the head: put this interpreter first on
    # PATH so they get the environment that has Ray and stableface installed.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Explicit, because Ray's default depends on whether ~/.ray/auth_token happens to exist.
    env["RAY_AUTH_MODE"] = auth_mode
    # Nothing on a development cluster needs the 30 s drain a SIGTERM'd node waits by default.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    # A RAY_ADDRESS left in the caller's environment would make `ray start --head` join it instead.
    env.pop("RAY_ADDRESS", None)
    return env


def _ensure_auth_token(ray_cli: str, auth_mode: str) -> None:
    """Make sure the user's Ray token exists (``ray get-auth-token --generate`` keeps an existing one)."""
    if auth_mode != "token":
        return
    result = subprocess.run(
        [ray_cli, "get-auth-token", "--generate"],
        stdout=subprocess.DEVNULL,  # the token itself is printed there; keep it out of logs
        stderr=subprocess.PIPE,
        env=_node_environment(auth_mode),
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise LocalClusterError(
            f"`ray get-auth-token --generate` failed: {result.stderr.decode(errors='replace')}"
        )


def _state_file(state_dir: Path) -> Path:
    return state_dir / STATE_FILE_NAME


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _tail(path: str | Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _start_node_process(arguments: list[str], log_file: Path, auth_mode: str) -> int:
    with open(log_file, "wb") as log:
        # A new session makes the node's process group ours alone: stop signals exactly it.
        process = subprocess.Popen(
            arguments,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_node_environment(auth_mode),
            start_new_session=True,
        )
    return process.pid


def _common_node_arguments(name: str, temp_dir: Path, num_cpus: int, object_store_mb: int) -> list[str]:
    return [
        "--block",
        f"--node-ip-address={LOOPBACK}",
        f"--node-name={name}",
        f"--temp-dir={temp_dir}",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        f"--object-store-memory={object_store_mb * MIB}",
        f"--resources={json.dumps({node_resource(name): 1})}",
        f"--labels={NODE_LABEL_KEY}={name}",
        # Per-node ports: two raylets on one host cannot share the fixed defaults.
        f"--node-manager-port={_free_port()}",
        f"--object-manager-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        # 0/0: workers bind OS-assigned ports, so the nodes' worker port ranges never collide.
        "--min-worker-port=0",
        "--max-worker-port=0",
        "--disable-usage-stats",
    ]


def _list_nodes(info: ClusterInfo) -> list[dict]:
    """The head's node table, via the ``ray list nodes`` CLI.

    A subprocess rather than the in-process state API: it gets the cluster's auth settings from
    its environment and leaves the caller's process (often a test's Ray driver) untouched.
    """
    result = subprocess.run(
        [
            _ray_executable(),
            "list",
            "nodes",
            "--address",
            info.address,
            "--format",
            "json",
            "--limit",
            "1000",
        ],
        capture_output=True,
        env=_node_environment(info.auth_mode),
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise LocalClusterError(f"`ray list nodes` failed: {_last_line(result.stderr)}")
    return json.loads(result.stdout)


def _last_line(output: bytes) -> str:
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def _wait_for_nodes(info: ClusterInfo, timeout_s: float) -> None:
    """Wait until every node is ALIVE in the head's node table; record the node ids."""
    expected = {node.name for node in info.nodes}
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    alive: dict[str, str] = {}
    while time.monotonic() < deadline:
        for node in info.nodes:
            if not _pid_alive(node.pid):
                raise LocalClusterError(
                    f"node {node.name} exited while starting; its log {node.log_file} ends with:\n"
                    f"{_tail(node.log_file)}"
                )
        try:
            states = _list_nodes(info)
            last_error = None
        except (LocalClusterError, ValueError, subprocess.TimeoutExpired) as error:
            # The head's API is not up yet; retry until the deadline.
            last_error = error
            time.sleep(1.0)
            continue
        alive = {
            state["node_name"]: state["node_id"]
            for state in states
            if state.get("state") == "ALIVE" and state.get("node_name") in expected
        }
        if set(alive) == expected:
            for node in info.nodes:
                node.node_id = alive[node.name]
            return
        time.sleep(0.5)
    missing = sorted(expected - set(alive))
    detail = f" (last error: {last_error})" if last_error else ""
    raise LocalClusterError(f"nodes {missing} did not register within {timeout_s:.0f} s{detail}")


def _check_state_dir(state_dir: Path) -> None:
    if len(str(state_dir)) > MAX_STATE_DIR_CHARS:
        raise LocalClusterError(
            f"state dir {state_dir}: longer than {MAX_STATE_DIR_CHARS} characters; Ray's unix sockets "
            "under it would exceed the 107-character limit, pick a shorter path"
        )


def start_cluster(
    workers: int = 1,
    *,
    state_dir: str | Path | None = None,
    num_cpus: int = DEFAULT_CPUS_PER_NODE,
    head_num_cpus: int | None = None,
    object_store_mb: int = DEFAULT_OBJECT_STORE_MB,
    port: int | None = None,
    dashboard_port: int | None = None,
    auth_mode: str = "token",
    timeout_s: float = START_TIMEOUT_S,
) -> ClusterInfo:
    """Start a head and ``workers`` worker raylets on 127.0.0.1; return once all have registered.

    ``port``/``dashboard_port`` of None pick free ports. Raises :class:`LocalClusterError` if a
    cluster from ``state_dir`` is still running, a port is taken, or a node fails to come up
    (everything started so far is stopped again first).
    """
    if workers < 0:
        raise LocalClusterError(f"workers={workers}: must be 0 or more")
    if num_cpus < 1 or (head_num_cpus is not None and head_num_cpus < 0):
        raise LocalClusterError(
            f"num_cpus={num_cpus}, head_num_cpus={head_num_cpus}: a worker needs at least 1 CPU, the head 0 or more"
        )
    if auth_mode not in AUTH_MODES:
        raise LocalClusterError(f"auth_mode={auth_mode!r}: must be one of {AUTH_MODES}")
    if object_store_mb < 75:
        raise LocalClusterError(f"object_store_mb={object_store_mb}: Ray needs at least 75 MiB per node")
    state_path = Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR
    existing = _read_state(state_path)
    if existing is not None and any(_node_running(node) for node in existing.nodes):
        raise LocalClusterError(
            f"a local cluster from {state_path} is already running at {existing.address}; "
            "stop it first (python cluster/local_cluster.py stop)"
        )
    _check_state_dir(state_path)
    if existing is not None:
        _remove_stale_state(existing)
    state_path.mkdir(parents=True, exist_ok=True)

    gcs_port = _pick_port(port, "GCS")
    ui_port = _pick_port(dashboard_port, "dashboard")
    info = ClusterInfo(
        address=f"{LOOPBACK}:{gcs_port}",
        dashboard_url=f"http://{LOOPBACK}:{ui_port}",
        state_dir=str(state_path),
        auth_mode=auth_mode,
    )
    ray_cli = _ray_executable()
    _ensure_auth_token(ray_cli, auth_mode)
    node_specs = [(HEAD_NODE_NAME, num_cpus if head_num_cpus is None else head_num_cpus)]
    node_specs += [(worker_node_name(index), num_cpus) for index in range(1, workers + 1)]
    try:
        for name, cpus in node_specs:
            temp_dir = state_path / name
            temp_dir.mkdir(parents=True, exist_ok=True)
            log_file = state_path / f"{name}.log"
            arguments = [ray_cli, "start", *_common_node_arguments(name, temp_dir, cpus, object_store_mb)]
            if name == HEAD_NODE_NAME:
                arguments += [
                    "--head",
                    f"--port={gcs_port}",
                    "--include-dashboard=true",
                    f"--dashboard-host={LOOPBACK}",
                    f"--dashboard-port={ui_port}",
                    f"--ray-client-server-port={_free_port()}",
                ]
            else:
                arguments += [f"--address={info.address}"]
            pid = _start_node_process(arguments, log_file, auth_mode)
            info.nodes.append(
                LocalNode(
                    name=name,
                    resource=node_resource(name),
                    pid=pid,
                    temp_dir=str(temp_dir),
                    log_file=str(log_file),
                    num_cpus=cpus,
                )
            )
            _write_state(info)
            if name == HEAD_NODE_NAME:
                # Workers need the head's GCS to be up before they can join.
                _wait_for_nodes(info, timeout_s)
        _wait_for_nodes(info, timeout_s)
    except BaseException:
        stop_cluster(state_path)
        raise
    _write_state(info)
    logger.info(
        "local Ray cluster up: %s (%d nodes), dashboard %s", info.address, len(info.nodes), info.dashboard_url
    )
    return info


def _remove_stale_state(info: ClusterInfo) -> None:
    """Delete what a stopped cluster left: its nodes' temp dirs, logs and state file, nothing else."""
    logger.info("removing the leftovers of a stopped cluster in %s", info.state_dir)
    for node in info.nodes:
        shutil.rmtree(node.temp_dir, ignore_errors=True)
        Path(node.log_file).unlink(missing_ok=True)
    _state_file(Path(info.state_dir)).unlink(missing_ok=True)


def _write_state(info: ClusterInfo) -> None:
    path = _state_file(Path(info.state_dir))
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(info.to_dict(), indent=2))
    partial.replace(path)


def _read_state(state_dir: Path) -> ClusterInfo | None:
    path = _state_file(state_dir)
    if not path.exists():
        return None
    try:
        return ClusterInfo.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise LocalClusterError(f"{path}: not a local cluster state file ({error})") from error


def _signal_group(pid: int, signum: int) -> None:
    # pgid == pid because each node was started in its own session.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _started_by_us(node: LocalNode) -> bool:
    """Whether ``node.pid`` still runs this node's ``ray start`` (a pid can be reused after a reboot)."""
    try:
        arguments = Path(f"/proc/{node.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"--temp-dir={node.temp_dir}".encode() in arguments


def _node_running(node: LocalNode) -> bool:
    """Whether any process of ``node`` is left: its ``ray start`` or members of its process group.

    A live leader counts only if it is still our ``ray start``. A group whose leader has exited
    is still ours: Linux does not hand out a pid that is in use as a process group id.
    """
    if _pid_alive(node.pid):
        return _started_by_us(node)
    return _group_alive(node.pid)


def _stop_node(node: LocalNode, grace_s: float) -> None:
    if not _node_running(node):
        _reap(node.pid)
        return
    if _pid_alive(node.pid):
        # SIGTERM to `ray start --block` alone: it stops its raylet, workers and agents in order
        # (signalling the whole group at once would leave it waiting on processes already gone).
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            _reap(node.pid)
            if not _group_alive(node.pid):
                return
            time.sleep(0.2)
    logger.warning(
        "node %s (pid %d) did not stop within %.0f s; killing its process group", node.name, node.pid, grace_s
    )
    _signal_group(node.pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline:
        _reap(node.pid)
        if not _pid_alive(node.pid):
            return
        time.sleep(0.1)
    logger.warning("node %s (pid %d) survived SIGKILL for %.0f s", node.name, node.pid, KILL_WAIT_S)


def stop_cluster(state_dir: str | Path | ClusterInfo | None = None, *, grace_s: float = STOP_GRACE_S) -> bool:
    """Stop the local cluster recorded in ``state_dir`` (workers first, then the head).

    Returns False when there was nothing to stop. Only the process groups this module started
    are signalled. The nodes' temp dirs and logs stay in the state dir for inspection; the next
    ``start`` there clears them.
    """
    if isinstance(state_dir, ClusterInfo):
        state_path = Path(state_dir.state_dir)
    else:
        state_path = Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR
    info = _read_state(state_path)
    if info is None:
        return False
    running = [node for node in info.nodes if _node_running(node)]
    # Workers first so the head sees them leave rather than die.
    for node in sorted(info.nodes, key=lambda node: node.name == HEAD_NODE_NAME):
        _stop_node(node, grace_s)
    _state_file(state_path).unlink(missing_ok=True)
    logger.info("local Ray cluster at %s stopped (%d node(s) were running)", info.address, len(running))
    return bool(running)


def cluster_status(state_dir: str | Path | None = None) -> dict:
    """What is running: the recorded cluster, whether each node's process is alive, Ray's view."""
    state_path = Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR
    info = _read_state(state_path)
    if info is None:
        return {"running": False, "state_dir": str(state_path)}
    nodes = []
    try:
        ray_view = {state["node_name"]: state["state"] for state in _list_nodes(info)}
    except (LocalClusterError, ValueError, subprocess.TimeoutExpired) as error:
        # status reports an unreachable head instead of failing
        ray_view = {}
        logger.warning("could not query the head at %s: %s", info.address, error)
    for node in info.nodes:
        nodes.append(
            {
                "name": node.name,
                "node_id": node.node_id,
                "resource": node.resource,
                "pid": node.pid,
                "process_alive": _node_running(node),
                "ray_state": ray_view.get(node.name, "UNKNOWN"),
                "log_file": node.log_file,
            }
        )
    return {
        "running": any(node["process_alive"] for node in nodes),
        "address": info.address,
        "dashboard_url": info.dashboard_url,
        "state_dir": info.state_dir,
        "client_env": info.client_env,
        "nodes": nodes,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="local_cluster.py",
        description="Start, inspect and stop a local multi-node Ray cluster (head + N worker raylets).",
    )
    parser.add_argument(
        "--state-dir", default=None, help=f"where node temp dirs, logs and state go ({DEFAULT_STATE_DIR})"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a head and N worker raylets on 127.0.0.1")
    start.add_argument("--workers", type=int, default=1, help="worker raylets besides the head (default 1)")
    start.add_argument("--num-cpus", type=int, default=DEFAULT_CPUS_PER_NODE, help="logical CPUs per node")
    start.add_argument(
        "--object-store-mb", type=int, default=DEFAULT_OBJECT_STORE_MB, help="object store per node"
    )
    start.add_argument("--port", type=int, default=DEFAULT_GCS_PORT, help="GCS port (0: any free port)")
    start.add_argument(
        "--dashboard-port",
        type=int,
        default=DEFAULT_DASHBOARD_PORT,
        help="dashboard/job server port (0: any free)",
    )
    start.add_argument(
        "--auth", choices=AUTH_MODES, default="token", help="Ray token authentication (default on)"
    )
    sub.add_parser("stop", help="stop the cluster this script started")
    sub.add_parser("status", help="print the cluster's nodes as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "start":
            info = start_cluster(
                args.workers,
                state_dir=args.state_dir,
                num_cpus=args.num_cpus,
                object_store_mb=args.object_store_mb,
                port=args.port,
                dashboard_port=args.dashboard_port,
                auth_mode=args.auth,
            )
            sys.stdout.write(
                f"address: {info.address}\n"
                f"dashboard: {info.dashboard_url}\n"
                + "".join(
                    f"node {node.name}: {node.node_id} (resource {node.resource})\n" for node in info.nodes
                )
                + "clients need:"
                + "".join(f" export {key}={value};" for key, value in info.client_env.items())
                + f" export RAY_ADDRESS={info.dashboard_url}\n"
            )
        elif args.command == "stop":
            stopped = stop_cluster(args.state_dir)
            sys.stdout.write("stopped\n" if stopped else "no local cluster was running\n")
        else:
            sys.stdout.write(json.dumps(cluster_status(args.state_dir), indent=2) + "\n")
    except LocalClusterError as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
