"""Compute targets: the ``ComputeTarget`` / ``AmlCompute`` facade over the local backend's simulated
clusters (``backends/simml_local/compute.py``), on the workspace clock.

Tests never sleep: they use a manual clock (advanced here or from a background thread) or INSTANT
timings; only the wait functions poll for a few real milliseconds.

All ``local_only``: simulated timings, manual clocks, the host's resources and an empty
workspace. What every backend serves is in ``tests/test_compute_contract.py``, with the local
backend's extra checks of the same behaviours (lookup, create / get / list / delete, refused
names and configurations, update) guarded there by ``ws.backend == "local"``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Iterator

import pytest

from simml.core.compute import (
    AmlCompute,
    AmlComputeProvisioningConfiguration,
    AmlComputeStatus,
    ComputeTarget,
    ComputeTargetException,
)
from simml.core.compute.cluster import INSTANT, Timings
from simml.core.compute.vm_sizes import VM_SIZES
from simml.entities import ComputeInfo

pytestmark = pytest.mark.local_only

NAME = "cpu-cluster"
STATUS_KEYS = {"currentNodeCount", "targetNodeCount", "nodeStateCounts", "allocationState",
               "allocationStateTransitionTime", "errors", "creationTime", "modifiedTime",
               "provisioningState", "provisioningStateTransitionTime", "scaleSettings",
               "vmPriority", "vmSize"}
NODE_COUNT_KEYS = {"preparingNodeCount", "runningNodeCount", "idleNodeCount",
                   "unusableNodeCount", "leavingNodeCount", "preemptedNodeCount"}


def backend(ws: Any) -> Any:
    """The local backend plug-in object (its non-hook cluster methods are the runner's contract)."""
    return ws._backend.manager.get_plugin("local")


def create(ws: Any, name: str = NAME, timings: Timings | None = INSTANT, **settings: Any
           ) -> AmlCompute:
    settings.setdefault("vm_size", "STANDARD_D2_V2")
    settings.setdefault("max_nodes", 4)
    config = AmlCompute.provisioning_configuration(**settings, _timings=timings)
    return ComputeTarget.create(ws, name, config)


def names(ws: Any) -> list[str]:
    return [c.name for c in ComputeTarget.list(ws)]


def counts(ct: AmlCompute) -> dict[str, Any]:
    status = ct.get_status().serialize()
    return {"current": status["currentNodeCount"], "target": status["targetNodeCount"],
            **{k.removesuffix("NodeCount"): v for k, v in status["nodeStateCounts"].items()
               if v}, "alloc": status["allocationState"]}


@contextmanager
def advancing(ws: Any, step: float, limit: float, interval: float = 0.005) -> Iterator[None]:
    """Advance the manual clock by ``step`` seconds every ``interval`` real seconds, from a
    background thread, up to ``limit`` simulated seconds (what a scheduler or a test kit does).
    The pacing is the other party's, not the test's: the test itself only waits in
    ``wait_for_completion``."""
    stop = threading.Event()

    def run() -> None:
        moved = 0.0
        while not stop.wait(interval) and moved < limit:
            ws.advance_clock(step)
            moved += step

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


# --------------------------------------------------------------------------------------------------
# Lookup, create, list, delete


def test_two_clusters_are_listed_in_creation_order(ws: Any) -> None:
    create(ws, "zeta")
    create(ws, "alpha")
    assert names(ws) == ["zeta", "alpha"]


def test_list_never_includes_local(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    create(ws)
    real = ws._backend.compute_list
    local = ComputeInfo("local", "local", "Succeeded")
    monkeypatch.setattr(ws._backend, "compute_list", lambda info: [local, *real(info)])
    assert names(ws) == [NAME]


def test_import_paths_match_azure() -> None:
    from simml.core import ComputeTarget as from_core
    from simml.core.compute_target import ComputeTarget as from_target
    from simml.core.compute_target import ComputeTargetException as from_target_exc
    from simml.exceptions import ComputeTargetException as from_exceptions

    assert from_core is ComputeTarget is from_target
    assert from_target_exc is from_exceptions is ComputeTargetException
    assert issubclass(AmlCompute, ComputeTarget)


# --------------------------------------------------------------------------------------------------
# Validation: nothing is created


def test_create_validates_a_configuration_changed_after_construction(ws: Any) -> None:
    config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", max_nodes=4)
    assert isinstance(config, AmlComputeProvisioningConfiguration)
    config.vnet_name = "vnet-only"
    with pytest.raises(ComputeTargetException, match="virtual net"):
        ComputeTarget.create(ws, NAME, config)
    config.vnet_name = None
    config.scale_settings.maximum_node_count = None
    with pytest.raises(ComputeTargetException, match="max nodes count is mandatory"):
        ComputeTarget.create(ws, NAME, config)
    assert names(ws) == []


def test_valid_credentials_and_identity_pass() -> None:
    AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", max_nodes=1, admin_username="azureuser",
        admin_user_password="abc123!x", vnet_resourcegroup_name="rg", vnet_name="vnet",
        subnet_name="default", identity_type="UserAssigned", identity_id=["/id/1"])
    AmlCompute.provisioning_configuration(max_nodes=1, admin_username="u",
                                          admin_user_ssh_key="ssh-rsa AAAA",
                                          identity_type="SystemAssigned")


def test_unknown_vm_size_is_refused_with_a_suggestion(ws: Any) -> None:
    create(ws, "existing")
    with pytest.raises(ComputeTargetException) as info:
        create(ws, vm_size="Standard_D2_v22")
    assert "Unknown vm_size 'Standard_D2_v22'" in info.value.message
    assert "Did you mean 'Standard_D2_v2'" in info.value.message
    assert names(ws) == ["existing"]
    with pytest.raises(ComputeTargetException, match="Unknown vm_size"):
        create(ws, vm_size="Standard_Potato")
    assert names(ws) == ["existing"]


def test_vm_size_is_case_insensitive_and_reported_upper_case(ws: Any) -> None:
    ct = create(ws, vm_size="standard_ds3_v2")
    assert ct.vm_size == "STANDARD_DS3_V2"
    assert ct.get_status().vm_size == "STANDARD_DS3_V2"


def test_a_size_larger_than_the_host_is_clamped_with_warnings(
        ws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ct = create(ws, vm_size="Standard_NC24", max_nodes=1)
    printed = capsys.readouterr().out
    assert "Warning: VM size Standard_NC24 has 4 GPU(s) but this host provides 0" in printed
    props = ct._info.properties
    assert props["warnings"] and all(w in printed for w in props["warnings"])
    with open("/proc/meminfo") as meminfo:
        host_gb = int(next(l for l in meminfo if l.startswith("MemTotal:")).split()[1]) / 1024 ** 2
    host_cpus = os.cpu_count() or 1
    assert props["v_cpus"] == 24 and props["memory_gb"] == 224.0
    assert props["effective_v_cpus"] == min(24, host_cpus)
    assert props["effective_memory_gb"] <= min(224.0, host_gb + 0.01)
    assert props["effective_gpus"] == 0
    cores, memory = backend(ws).compute_effective_resources(ws._info, NAME)
    assert (cores, memory) == (props["effective_v_cpus"], props["effective_memory_gb"])
    assert cores <= host_cpus and memory <= host_gb + 0.01
    # Still kept when read back later.
    assert ComputeTarget(ws, NAME)._info.properties["warnings"] == props["warnings"]


def test_a_small_size_is_not_clamped(ws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    create(ws, vm_size="Standard_D1_v2")
    assert "Warning" not in capsys.readouterr().out
    assert backend(ws).compute_effective_resources(ws._info, NAME) == (1, 3.5)


def test_supported_vmsizes_is_the_catalogue_without_test_sizes(ws: Any) -> None:
    sizes = AmlCompute.supported_vmsizes(ws)
    assert {"name": "Standard_D2_v2", "vCPUs": 2, "gpus": 0, "memoryGB": 7.0,
            "maxResourceVolumeMB": 102400} in sizes
    assert not any(s["name"] == "SIMML_TINY" for s in sizes)
    assert len(sizes) == len(VM_SIZES) - 1


# --------------------------------------------------------------------------------------------------
# wait_for_completion


def test_wait_for_completion_prints_azures_lines(
        ws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ws.set_clock("manual")
    ct = create(ws)
    ct.wait_for_completion(show_output=True)
    assert capsys.readouterr().out == (
        'SucceededProvisioning operation finished, operation "Succeeded"\n'
        "Succeeded\n"
        "AmlCompute wait for completion finished\n"
        "\n"
        "Minimum number of nodes requested have been provisioned\n")
    # A target looked up (no operation in flight) only waits for nodes, as in Azure.
    ComputeTarget(ws, NAME).wait_for_completion(show_output=True)
    assert capsys.readouterr().out == (
        "Succeeded\nAmlCompute wait for completion finished\n\n"
        "Minimum number of nodes requested have been provisioned\n")
    ct.wait_for_completion()  # quiet: only the line Azure prints regardless
    assert capsys.readouterr().out == (
        'Provisioning operation finished, operation "Succeeded"\n')


def test_wait_for_completion_follows_a_manual_clock_advanced_elsewhere(
        ws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ws.set_clock("manual")
    ct = create(ws, timings=Timings(), min_nodes=1, max_nodes=2)  # 90 s + 150 s for the node
    assert ct.get_status().provisioning_state == "Creating"
    start = ws.clock.now()
    with advancing(ws, step=10, limit=3600):
        ct.wait_for_completion(show_output=True)
    waited = (ws.clock.now() - start).total_seconds()
    out = capsys.readouterr().out
    assert out.startswith("Creating.")
    assert '\nSucceededProvisioning operation finished, operation "Succeeded"\nSucceeded' in out
    assert out.endswith("AmlCompute wait for completion finished\n\n"
                        "Minimum number of nodes requested have been provisioned\n")
    assert waited >= 240
    status = ct.get_status()
    assert status.node_state_counts.idle_node_count == 1 and status.current_node_count == 1


def test_wait_returns_at_once_when_min_nodes_are_already_there(
        ws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ws.set_clock("manual")  # nobody advances it: waiting would hang
    ct = create(ws, min_nodes=2, max_nodes=2)
    ct.wait_for_completion(show_output=True, min_node_count=2)
    assert capsys.readouterr().out.endswith(
        "Minimum number of nodes requested have been provisioned\n")
    assert ct.status.current_node_count == 2


def test_wait_timeout_is_in_simulated_time(ws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ws.set_clock("manual")
    ct = create(ws, min_nodes=0, max_nodes=2)  # no job: nodes never come
    start = ws.clock.now()
    with advancing(ws, step=5, limit=600):
        ct.wait_for_completion(show_output=True, min_node_count=2, timeout_in_minutes=1)
    assert (ws.clock.now() - start).total_seconds() >= 60
    out = capsys.readouterr().out
    assert out.startswith('SucceededProvisioning operation finished, operation "Succeeded"\n'
                          "Succeeded")
    assert out.endswith("AmlCompute wait for completion finished\n\n"
                        "Wait timeout has been reached\n"
                        'Current provisioning state of AmlCompute is "Succeeded" and current '
                        'node count is "0"\n')


def test_wait_timeout_while_creating(ws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ws.set_clock("manual")
    ct = create(ws, timings=Timings(provision_seconds=3600))
    with advancing(ws, step=10, limit=600):
        ct.wait_for_completion(show_output=True, timeout_in_minutes=2)
    out = capsys.readouterr().out
    assert out.startswith("Creating.") and "Provisioning operation finished" not in out
    assert out.endswith("Wait timeout has been reached\n"
                        'Current provisioning state of AmlCompute is "Creating" and current '
                        'node count is "0"\n')


def test_scaled_clock_wait_reports_simulated_time(
        ws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ws.set_clock("scaled:600")
    ct = create(ws, timings=Timings(provision_seconds=30, node_start_seconds=30), min_nodes=1)
    t0 = time.perf_counter()
    ct.wait_for_completion(show_output=True)
    real = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert "Minimum number of nodes requested have been provisioned\n" in out
    assert "Simulated time reached: " in out and "clock scaled:600" in out
    assert real < 10  # 60 simulated seconds are 0.1 s real at factor 600 (generous bound)


def test_wait_for_delete(ws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ws.set_clock("manual")
    ct = create(ws, timings=Timings(0, 0, 30), min_nodes=1, max_nodes=1)
    assert counts(ct)["idle"] == 1
    ct.delete()
    state = backend(ws).compute_state(ws._info, NAME)
    assert state.provisioning_state == "Deleting" and state.leaving_node_count == 1
    with advancing(ws, step=5, limit=300):
        ct.wait_for_completion(show_output=True, is_delete_operation=True)
    out = capsys.readouterr().out
    assert out.startswith("Deleting") and out.endswith(
        '\nSucceededProvisioning operation finished, operation "Succeeded"\n')
    assert ws._backend.compute_status(ws._info, NAME).provisioning_state == "Deleted"


# --------------------------------------------------------------------------------------------------
# Status over a cluster's life


def test_status_through_a_job_on_the_manual_clock(ws: Any) -> None:
    ws.set_clock("manual")
    local = backend(ws)
    ct = create(ws, timings=Timings(provision_seconds=90, node_start_seconds=150,
                                    node_leave_seconds=30),
                min_nodes=0, max_nodes=2, idle_seconds_before_scaledown=120)
    t0 = ct.created_on

    status = ct.get_status()
    assert isinstance(status, AmlComputeStatus)
    data = status.serialize()
    assert set(data) == STATUS_KEYS and set(data["nodeStateCounts"]) == NODE_COUNT_KEYS
    assert data["provisioningState"] == "Creating" and data["currentNodeCount"] == 0
    assert data["allocationState"] == "Steady" and data["errors"] is None
    assert data["creationTime"] == t0.isoformat()
    assert data["scaleSettings"] == {"minNodeCount": 0, "maxNodeCount": 2,
                                     "nodeIdleTimeBeforeScaleDown": "PT120S"}
    assert (data["vmPriority"], data["vmSize"]) == ("dedicated", "STANDARD_D2_V2")
    assert local.compute_next_change(ws._info, NAME) == t0 + timedelta(seconds=90)

    ws.advance_clock(90)
    data = ct.get_status().serialize()
    assert data["provisioningState"] == "Succeeded"
    assert data["provisioningStateTransitionTime"] == (t0 + timedelta(seconds=90)).isoformat()
    assert counts(ct) == {"current": 0, "target": 0, "alloc": "Steady"}
    assert local.compute_next_change(ws._info, NAME) is None

    local.compute_queue_job(ws._info, NAME, "run-1")
    state, assignment = local.compute_job_state(ws._info, NAME, "run-1")
    assert assignment is None and state.queue == ("run-1",)
    assert state.log == ("cpu-cluster: 0 -> 1 nodes",)
    assert counts(ct) == {"current": 1, "target": 1, "preparing": 1, "alloc": "Resizing"}
    assert ws._backend.compute_status(ws._info, NAME).queued_runs == 1

    ws.advance_clock(150)
    state, assignment = local.compute_job_state(ws._info, NAME, "run-1")
    assert assignment is not None and assignment.node_id == "tvmps_0000"
    assert assignment.started_at == t0 + timedelta(seconds=240)
    assert counts(ct) == {"current": 1, "target": 1, "running": 1, "alloc": "Steady"}
    assert ct.list_nodes()[0]["nodeState"] == "running"
    assert ct.list_nodes()[0]["runId"] == "run-1"

    local.compute_finish_job(ws._info, NAME, "run-1")
    assert counts(ct) == {"current": 1, "target": 1, "idle": 1, "alloc": "Steady"}
    ws.advance_clock(119)
    assert counts(ct)["idle"] == 1
    ws.advance_clock(1)  # idle_seconds_before_scaledown reached: the node leaves
    assert counts(ct) == {"current": 1, "target": 0, "leaving": 1, "alloc": "Resizing"}
    ws.advance_clock(30)
    assert counts(ct) == {"current": 0, "target": 0, "alloc": "Steady"}
    state, _ = local.compute_job_state(ws._info, NAME, "run-1")
    assert state.log == ("cpu-cluster: 0 -> 1 nodes", "cpu-cluster: 1 -> 0 nodes")
    assert "run-1" in state.finished


def test_scale_down_stops_at_min_nodes(ws: Any) -> None:
    ws.set_clock("manual")
    local = backend(ws)
    ct = create(ws, "gpu", timings=Timings(60, 100, 20), min_nodes=1, max_nodes=3,
                idle_seconds_before_scaledown=300)
    ws.advance_clock(60)
    assert counts(ct) == {"current": 1, "target": 1, "preparing": 1, "alloc": "Resizing"}
    ws.advance_clock(100)
    assert counts(ct) == {"current": 1, "target": 1, "idle": 1, "alloc": "Steady"}
    local.compute_queue_job(ws._info, "gpu", "mpi-run", nodes=2)
    assert counts(ct) == {"current": 2, "target": 2, "idle": 1, "preparing": 1,
                          "alloc": "Resizing"}
    ws.advance_clock(100)
    _, assignment = local.compute_job_state(ws._info, "gpu", "mpi-run")
    assert assignment is not None and len(assignment.node_ids) == 2
    assert counts(ct) == {"current": 2, "target": 2, "running": 2, "alloc": "Steady"}
    local.compute_finish_job(ws._info, "gpu", "mpi-run")
    ws.advance_clock(300)
    assert counts(ct) == {"current": 2, "target": 1, "idle": 1, "leaving": 1,
                          "alloc": "Resizing"}
    ws.advance_clock(20)
    assert counts(ct) == {"current": 1, "target": 1, "idle": 1, "alloc": "Steady"}
    state = local.compute_state(ws._info, "gpu")
    assert state.log == ("gpu: 0 -> 1 nodes", "gpu: 1 -> 2 nodes", "gpu: 2 -> 1 nodes")


def test_cancel_and_delete_release_jobs(ws: Any) -> None:
    ws.set_clock("manual")
    local = backend(ws)
    create(ws, max_nodes=1)
    for job in ("a", "b", "c"):
        local.compute_queue_job(ws._info, NAME, job)
    state, _ = local.compute_job_state(ws._info, NAME, "a")
    assert state.running_jobs == {"a"} and state.queue == ("b", "c")
    local.compute_cancel_job(ws._info, NAME, "b")
    assert local.compute_job_state(ws._info, NAME, "b")[0].queue == ("c",)
    ComputeTarget(ws, NAME).delete()
    state, _ = local.compute_job_state(ws._info, NAME, "c")
    assert {"a", "b", "c"} <= state.canceled and state.provisioning_state == "Deleted"
    with pytest.raises(ComputeTargetException, match="ComputeTargetNotFound"):
        local.compute_queue_job(ws._info, NAME, "d")


def test_serialize_shape(ws: Any) -> None:
    ct = create(ws, tags={"k": "v"}, description="d", vnet_resourcegroup_name="rg",
                vnet_name="vn", subnet_name="sn", admin_username="azureuser",
                admin_user_password="Str0ng!Pass")
    ct.get_status()
    data = ct.serialize()
    assert set(data) == {"id", "name", "location", "tags", "identity", "properties"}
    props = data["properties"]
    assert props["computeType"] == "AmlCompute" and props["provisioningState"] == "Succeeded"
    assert props["properties"]["vmSize"] == "STANDARD_D2_V2"
    assert props["properties"]["scaleSettings"] == {"minNodeCount": 0, "maxNodeCount": 4,
                                                    "nodeIdleTimeBeforeScaleDown": "PT1800S"}
    assert props["properties"]["userAccountCredentials"] == {
        "adminUserName": "azureuser", "adminUserPassword": None, "adminUserSshPublicKey": None}
    assert props["properties"]["subnet"]["id"].endswith("/virtualNetworks/vn/subnets/sn")
    assert set(props["status"]) == STATUS_KEYS
    copy = AmlCompute.deserialize(ws, data)
    assert isinstance(copy, AmlCompute) and copy.name == NAME
    assert copy.scale_settings.idle_seconds_before_scaledown == 1800
    assert copy.status.serialize() == props["status"]
    assert ComputeTarget.deserialize(ws, data).serialize()["properties"]["properties"] == \
        props["properties"]


def test_five_simulated_minutes_of_provisioning_step_by_step(ws: Any) -> None:
    ws.set_clock("manual")
    ct = create(ws, timings=Timings(), min_nodes=1, max_nodes=2)
    seen = []
    for _ in range(60):
        ws.advance_clock(5)
        status = ct.get_status()
        seen.append((status.provisioning_state, status.current_node_count,
                     status.node_state_counts.idle_node_count))
    assert seen[16][0] == "Creating" and seen[17][0] == "Succeeded"  # 85 s, then 90 s
    assert seen[-1] == ("Succeeded", 1, 1)  # 300 s: the min node is ready (90 + 150)


# --------------------------------------------------------------------------------------------------
# Concurrency


CHILD = """
import sys
from simml.core import Workspace
ws = Workspace.get("test-ws")
backend = ws._backend.manager.get_plugin("local")
tag, count = sys.argv[1], int(sys.argv[2])
backend.compute_state(ws._info, "cpu-cluster")  # warm: connection open, schema checked
print("ready", flush=True)
sys.stdin.readline()  # start together
for i in range(count):
    backend.compute_queue_job(ws._info, "cpu-cluster", f"{tag}-{i}")
"""


def test_two_processes_queueing_at_once_lose_no_event(ws: Any, tmp_path: Any) -> None:
    create(ws, max_nodes=3)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    jobs = 150
    procs = [subprocess.Popen([sys.executable, str(script), tag, str(jobs)],
                              env=dict(os.environ), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in ("p1", "p2")]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    state = backend(ws).compute_state(ws._info, NAME)
    seen = set(state.queue) | set(state.assignments)
    assert seen == {f"{tag}-{i}" for tag in ("p1", "p2") for i in range(jobs)}
    assert len(state.queue) == 2 * jobs - 3 and len(state.running_jobs) == 3
    con = backend(ws).store(ws._info).connection()
    queued = con.execute("SELECT COUNT(*) FROM cluster_events WHERE compute = ? AND "
                         "event LIKE '%JobQueued%'", (NAME,)).fetchone()[0]
    assert queued == 2 * jobs


def test_a_second_backend_object_sees_appended_events(ws: Any) -> None:
    """The per-backend event cache picks up rows written by others."""
    from simml.core import Workspace

    create(ws, max_nodes=1)
    other = Workspace.get("test-ws")
    assert ComputeTarget(other, NAME).get_status().current_node_count == 0
    backend(ws).compute_queue_job(ws._info, NAME, "job-1")
    assert ComputeTarget(other, NAME).get_status().node_state_counts.running_node_count == 1
    assert isinstance(backend(other).compute_next_change(other._info, NAME), (datetime,
                                                                              type(None)))
