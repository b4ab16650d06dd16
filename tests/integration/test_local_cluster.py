"""The local 2-node cluster (cluster/local_cluster.py): work lands on both nodes, jobs can be submitted."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(300)]

JOB_TIMEOUT_S = 120

JOB_SCRIPT = '''\
"""A trivial job: reads a file shipped in its working_dir, runs one task on each node."""
import pathlib

import ray

ray.init()
message = pathlib.Path("message.txt").read_text().strip()


@ray.remote(num_cpus=0)
def where(path):
    # The working_dir is shipped to every node the job's workers run on.
    return ray.get_runtime_context().get_node_id(), pathlib.Path(path).read_text().strip()


node_ids = []
for resource in ("stableface_node:head", "stableface_node:worker-1"):
    node_id, text = ray.get(where.options(resources={resource: 0.001}).remote("message.txt"))
    assert text == message, (text, message)
    node_ids.append(node_id)
print("JOB-NODES", " ".join(node_ids))
print("JOB-MESSAGE", message)
'''


def test_cluster_has_two_alive_nodes_with_their_own_resources(two_node_cluster):
    import ray

    alive = [node for node in ray.nodes() if node["Alive"]]
    assert len(alive) == 2
    assert {node["NodeID"] for node in alive} == set(two_node_cluster.node_ids.values())
    by_id = {node["NodeID"]: node for node in alive}
    for name, node_id in two_node_cluster.node_ids.items():
        resources = by_id[node_id]["Resources"]
        assert resources.get(f"stableface_node:{name}") == 1.0
        other = "worker-1" if name == "head" else "head"
        assert f"stableface_node:{other}" not in resources
        assert by_id[node_id]["Labels"].get("stableface/node") == name
    # Separate temp dirs: nothing on local disk is shared between the two raylets.
    session_dirs = {node["ObjectStoreSocketName"].split("/sockets/")[0] for node in alive}
    assert len(session_dirs) == 2


def test_pinned_tasks_run_on_each_node(two_node_cluster):
    import ray

    @ray.remote(num_cpus=1)
    def node_of_task() -> str:
        return ray.get_runtime_context().get_node_id()

    ran_on = {
        name: ray.get(node_of_task.options(resources=two_node_cluster.pin(name)).remote(), timeout=60)
        for name in ("head", "worker-1")
    }
    assert ran_on == two_node_cluster.node_ids
    assert len(set(ran_on.values())) == 2


def test_job_submission_with_working_dir_succeeds_and_logs(two_node_cluster, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    working_dir = tmp_path / "job"
    working_dir.mkdir()
    (working_dir / "hello_cluster.py").write_text(JOB_SCRIPT)
    (working_dir / "message.txt").write_text("shipped with the working_dir\n")

    client = JobSubmissionClient(two_node_cluster.dashboard_url)
    job_id = client.submit_job(
        entrypoint="python hello_cluster.py",
        runtime_env={"working_dir": str(working_dir)},
    )
    deadline = time.monotonic() + JOB_TIMEOUT_S
    status = client.get_job_status(job_id)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(1)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    if not status.is_terminal():
        client.stop_job(job_id)
    assert status == JobStatus.SUCCEEDED, f"job {job_id} ended {status}; logs:\n{logs}"
    assert "JOB-MESSAGE shipped with the working_dir" in logs
    node_line = next(line for line in logs.splitlines() if line.startswith("JOB-NODES"))
    assert node_line.split()[1:] == [two_node_cluster.node_ids["head"], two_node_cluster.node_ids["worker-1"]]


def test_failed_job_is_reported_failed(two_node_cluster, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    working_dir = tmp_path / "failing"
    working_dir.mkdir()
    (working_dir / "fail.py").write_text('raise SystemExit("deliberate failure for the test")\n')
    client = JobSubmissionClient(two_node_cluster.dashboard_url)
    job_id = client.submit_job(entrypoint="python fail.py", runtime_env={"working_dir": str(working_dir)})
    deadline = time.monotonic() + JOB_TIMEOUT_S
    status = client.get_job_status(job_id)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(1)
        status = client.get_job_status(job_id)
    assert status == JobStatus.FAILED
    assert "deliberate failure for the test" in client.get_job_logs(job_id)
