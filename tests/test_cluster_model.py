"""The simulated AmlCompute cluster (pure replay of events) and the VM-size catalogue.

Plain datetimes only: no sleeping, no real clock.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simml.core.compute.cluster import (
    INSTANT, ClusterConfig, ClusterCreated, ClusterDeleted, ClusterState, ClusterUpdated, JobCanceled,
    JobFinished, JobQueued, Timings, cluster_replay, cluster_state, event_from_dict, event_to_dict,
    next_change)
from simml.core.compute.vm_sizes import (
    VM_SIZES, VmSize, effective_resources, find_vm_size, supported_vmsizes)
from simml.exceptions import ComputeTargetException

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
US = timedelta(microseconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def created(min_nodes: int = 0, max_nodes: int = 1, idle: int = 1800,
            timings: Timings = Timings(), name: str = "cpu-cluster") -> ClusterCreated:
    return ClusterCreated(T0, ClusterConfig("STANDARD_D2_V2", min_nodes=min_nodes, max_nodes=max_nodes,
                                            idle_seconds_before_scaledown=idle), timings, name)


def states(events: list[Any], seconds: float) -> ClusterState:
    return cluster_state(events, at(seconds))


# --------------------------------------------------------------------------------------------------
# Scenarios


def test_scale_from_zero_to_one_and_back() -> None:
    t = Timings(provision_seconds=90, node_start_seconds=150, node_leave_seconds=30)
    events: list[Any] = [created(idle=120, timings=t), JobQueued(at(100), "job-1")]

    s = states(events, 50)
    assert s.provisioning_state == "Creating" and s.nodes == () and s.queue == ()
    s = states(events, 95)
    assert s.provisioning_state == "Succeeded" and s.current_node_count == 0
    assert s.allocation_state == "Steady"

    s = states(events, 100)  # queued: a node starts preparing
    assert s.queue == ("job-1",) and s.preparing_node_count == 1 and s.target_node_count == 1
    assert s.allocation_state == "Resizing" and s.assignments == {}
    assert s.nodes[0].node_id == "tvmps_0000" and s.nodes[0].since == at(100)
    assert next_change(events, at(100)) == at(250)

    s = states(events, 250)  # ready: takes the job at once
    assert s.running_node_count == 1 and s.queue == () and s.allocation_state == "Steady"
    info = s.assignments["job-1"]
    assert (info.node_id, info.queued_at, info.started_at) == ("tvmps_0000", at(100), at(250))
    assert s.nodes[0].job_id == "job-1" and s.running_jobs == {"job-1"}
    assert next_change(events, at(250)) is None  # a running job changes nothing by itself

    events.append(JobFinished(at(400), "job-1"))
    s = states(events, 400)
    assert s.idle_node_count == 1 and s.finished == {"job-1"} and s.running_jobs == frozenset()
    assert next_change(events, at(400)) == at(520)
    s = states(events, 520)
    assert s.leaving_node_count == 1 and s.target_node_count == 0 and s.current_node_count == 1
    s = states(events, 550)
    assert s.current_node_count == 0 and s.allocation_state == "Steady"
    assert s.log == ("cpu-cluster: 0 -> 1 nodes", "cpu-cluster: 1 -> 0 nodes")
    assert [(e.at, e.from_nodes, e.to_nodes) for e in s.scale_events] == [(at(100), 0, 1), (at(520), 1, 0)]
    assert next_change(events, at(550)) is None


def test_min_nodes_start_at_provisioning_and_stay() -> None:
    t = Timings(provision_seconds=60, node_start_seconds=100, node_leave_seconds=10)
    events: list[Any] = [created(min_nodes=2, max_nodes=3, idle=300, timings=t)]
    s = states(events, 60)
    assert s.preparing_node_count == 2 and s.log == ("cpu-cluster: 0 -> 2 nodes",)
    s = states(events, 10_000)
    assert s.idle_node_count == 2 and s.current_node_count == 2
    assert next_change(events, at(10_000)) is None  # idle min nodes never time out

    events += [JobQueued(at(10_000), j) for j in ("a", "b", "c")]
    s = states(events, 10_000)
    assert s.running_node_count == 2 and s.preparing_node_count == 1 and s.queue == ("c",)
    s = states(events, 10_100)
    assert s.running_node_count == 3 and s.assignments["c"].node_id == "tvmps_0002"
    events += [JobFinished(at(11_000), j) for j in ("a", "b", "c")]
    s = states(events, 11_300)  # one of three idle nodes times out; two are kept
    assert s.leaving_node_count == 1 and s.idle_node_count == 2
    s = states(events, 20_000)
    assert s.current_node_count == 2 and s.idle_node_count == 2
    assert s.log == ("cpu-cluster: 0 -> 2 nodes", "cpu-cluster: 2 -> 3 nodes", "cpu-cluster: 3 -> 2 nodes")


def test_max_one_node_runs_jobs_fifo_one_after_another() -> None:
    t = Timings(provision_seconds=0, node_start_seconds=150, node_leave_seconds=30)
    events: list[Any] = [created(max_nodes=1, timings=t)]
    events += [JobQueued(at(10 + i), j) for i, j in enumerate(("j1", "j2", "j3"))]
    s = states(events, 20)
    assert s.queue == ("j1", "j2", "j3") and s.current_node_count == 1  # one node, not three
    s = states(events, 160)
    assert s.assignments.keys() == {"j1"} and s.queue == ("j2", "j3")
    events.append(JobFinished(at(200), "j1"))
    s = states(events, 200)
    assert s.assignments["j2"].started_at == at(200) and s.queue == ("j3",)
    events.append(JobFinished(at(300), "j2"))
    s = states(events, 300)
    assert s.assignments["j3"].started_at == at(300) and s.queue == ()
    order = sorted(s.assignments, key=lambda j: s.assignments[j].started_at)
    assert order == ["j1", "j2", "j3"]
    assert {a.node_id for a in s.assignments.values()} == {"tvmps_0000"}


def test_instant_timings_schedule_at_the_same_moment() -> None:
    events: list[Any] = [created(max_nodes=2, idle=0, timings=INSTANT), JobQueued(at(5), "a")]
    s = states(events, 5)
    assert s.assignments["a"].started_at == at(5) and s.running_node_count == 1
    events.append(JobFinished(at(6), "a"))
    s = states(events, 6)  # idle 0 s and leaving 0 s: gone at once
    assert s.nodes == () and s.log == ("cpu-cluster: 0 -> 1 nodes", "cpu-cluster: 1 -> 0 nodes")
    assert next_change(events, at(6)) is None


def test_jobs_queued_while_creating_wait_for_provisioning() -> None:
    events: list[Any] = [created(max_nodes=2, timings=Timings(90, 10, 5)), JobQueued(at(1), "a")]
    s = states(events, 89)
    assert s.provisioning_state == "Creating" and s.queue == ("a",) and s.nodes == ()
    assert next_change(events, at(1)) == at(90)
    s = states(events, 100)
    assert s.provisioning_state_transition_time == at(90)
    assert s.assignments["a"].started_at == at(100)


def test_cancel_queued_and_running_jobs() -> None:
    events: list[Any] = [created(max_nodes=1, timings=INSTANT),
                         JobQueued(at(1), "a"), JobQueued(at(2), "b"), JobQueued(at(3), "c"),
                         JobCanceled(at(4), "b")]
    s = states(events, 4)
    assert s.queue == ("c",) and s.canceled == {"b"}
    events.append(JobCanceled(at(5), "a"))
    s = states(events, 5)
    assert s.assignments["c"].started_at == at(5) and s.canceled == {"a", "b"} and "b" not in s.assignments
    events += [JobFinished(at(6), "a"), JobCanceled(at(6), "zzz")]  # late/unknown: ignored
    assert states(events, 6).finished == frozenset()


def test_delete_cancels_jobs_and_drains_nodes() -> None:
    events: list[Any] = [created(min_nodes=1, max_nodes=2, timings=Timings(0, 10, 30)),
                         JobQueued(at(20), "a"), JobQueued(at(20), "b"), JobQueued(at(20), "c")]
    assert states(events, 40).queue == ("c",)
    events += [ClusterDeleted(at(50)), JobQueued(at(60), "late"), ClusterUpdated(at(60), max_nodes=5)]
    s = states(events, 60)
    assert s.provisioning_state == "Deleting" and s.leaving_node_count == 2 and s.queue == ()
    assert s.canceled == {"a", "b", "c", "late"} and s.config.max_nodes == 2
    s = states(events, 80)
    assert s.provisioning_state == "Deleted" and s.nodes == ()
    assert s.provisioning_state_transition_time == at(80)
    assert s.log[-1] == "cpu-cluster: 2 -> 0 nodes"


def test_update_raising_min_and_lowering_max() -> None:
    events: list[Any] = [created(max_nodes=3, idle=600, timings=INSTANT),
                         JobQueued(at(1), "a"), JobQueued(at(1), "b"), JobQueued(at(1), "c"),
                         JobFinished(at(2), "a")]
    assert states(events, 2).idle_node_count == 1
    events.append(ClusterUpdated(at(3), max_nodes=1))
    s = states(events, 3)  # the spare idle node leaves now; busy ones stay until their job ends
    assert s.current_node_count == 2 and s.running_node_count == 2 and s.config.max_nodes == 1
    events.append(JobFinished(at(4), "b"))
    s = states(events, 4)
    assert s.current_node_count == 1 and s.running_jobs == {"c"}
    events.append(ClusterUpdated(at(5), min_nodes=2, max_nodes=4))
    s = states(events, 5)
    assert s.target_node_count == 2 and s.idle_node_count == 1 and s.modified_time == at(5)
    events.append(ClusterUpdated(at(6), min_nodes=0, idle_seconds_before_scaledown=0))
    assert states(events, 6).current_node_count == 1  # only c's node remains


def test_multi_node_job_waits_for_enough_idle_nodes_and_blocks_the_queue() -> None:
    events: list[Any] = [created(max_nodes=2, timings=Timings(0, 100, 10)),
                         JobQueued(at(0), "small"), JobQueued(at(1), "big", nodes=2), JobQueued(at(2), "after")]
    s = states(events, 101)  # second node ready at 1 + 100
    assert set(s.assignments) == {"small"} and s.idle_node_count == 1 and s.queue == ("big", "after")
    events.append(JobFinished(at(500), "small"))
    s = states(events, 500)
    info = s.assignments["big"]
    assert info.node_ids == ("tvmps_0000", "tvmps_0001") and info.started_at == at(500)
    assert s.queue == ("after",) and s.running_node_count == 2
    with pytest.raises(ComputeTargetException):
        JobQueued(at(0), "x", nodes=0)


def test_determinism_and_round_trip_through_dicts() -> None:
    events: list[Any] = [created(min_nodes=1, max_nodes=3, idle=60, timings=Timings(30, 45, 15))]
    events += [JobQueued(at(10 * i), f"j{i}") for i in range(8)]
    events += [JobFinished(at(200 + 5 * i), f"j{i}") for i in range(0, 8, 2)]
    events += [ClusterUpdated(at(300), max_nodes=2), JobCanceled(at(310), "j7")]
    first, second = states(events, 400), states(list(events), 400)
    assert first == second and first.log == second.log
    copied = [event_from_dict(event_to_dict(e)) for e in events]
    assert copied == events and states(copied, 400) == first
    assert next_change(events, at(400)) == next_change(copied, at(400))


def test_out_of_order_stamps_count_as_now_and_future_events_wait() -> None:
    events: list[Any] = [created(max_nodes=1, timings=INSTANT),
                         JobQueued(at(10), "a"), JobFinished(at(5), "a"), JobQueued(at(100), "b")]
    s = states(events, 50)
    assert s.finished == {"a"} and s.assignments["a"].started_at == at(10) and "b" not in s.queue
    assert next_change(events, at(50)) == at(100)


def test_invalid_inputs_raise_compute_target_exception() -> None:
    with pytest.raises(ComputeTargetException):
        cluster_state([], T0)
    with pytest.raises(ComputeTargetException):
        cluster_state([JobQueued(T0, "a")], T0)
    with pytest.raises(ComputeTargetException, match="aware"):
        cluster_state([created()], datetime(2026, 1, 1))
    with pytest.raises(ComputeTargetException, match="after now"):
        cluster_state([created()], T0 - US)
    with pytest.raises(ComputeTargetException):
        cluster_state([created(), created()], T0)
    for bad in (dict(min_nodes=2, max_nodes=1), dict(max_nodes=-1), dict(vm_priority="spot"),
                dict(idle_seconds_before_scaledown=-5)):
        with pytest.raises(ComputeTargetException):
            ClusterConfig("Standard_D2_v2", **bad)  # type: ignore[arg-type]
    with pytest.raises(ComputeTargetException):
        Timings(node_start_seconds=-1)
    with pytest.raises(ComputeTargetException):
        ClusterUpdated(T0, min_nodes=3, max_nodes=2)
    assert ClusterConfig("x", vm_priority="LowPriority").vm_priority == "lowpriority"


def _thousand_events() -> list[Any]:
    events: list[Any] = [created(min_nodes=1, max_nodes=4, idle=120, timings=Timings())]
    for i in range(500):
        events.append(JobQueued(at(60 * i), f"run-{i}"))
        events.append(JobFinished(at(60 * i + 200 + (i % 7) * 30), f"run-{i}"))
    events[1:] = sorted(events[1:], key=lambda e: e.at)  # stable: queue before finish at equal times
    return events[:1000]


def test_recompute_of_a_thousand_events_is_fast() -> None:
    events = _thousand_events()
    now = at(60 * 600)
    best = min(_timed(events, now) for _ in range(5))
    s = cluster_state(events, now)
    assert len(s.assignments) > 400 and s.current_node_count <= 4
    assert best < 0.05, f"1,000-event recompute took {best * 1000:.1f} ms"


def _timed(events: list[Any], now: datetime) -> float:
    start = time.perf_counter()
    cluster_state(events, now)
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------------
# Properties over random event sequences


def _walk(events: list[Any], start: datetime, end: datetime) -> Iterator[tuple[datetime, ClusterState]]:
    """Every distinct state in [start, end], checking next_change's promise on the way."""
    t = start
    state = cluster_state(events, t)
    yield t, state
    for _ in range(10_000):
        nxt = next_change(events, t)
        if nxt is None or nxt > end:
            return
        assert nxt > t
        assert cluster_state(events, nxt - US) == state, "state changed before next_change"
        new_state = cluster_state(events, nxt)
        assert new_state != state, "next_change promised a change that did not happen"
        t, state = nxt, new_state
        yield t, state
    raise AssertionError("no quiescence after 10,000 changes")


def _check_invariants(state: ClusterState, queued_order: list[str], max_ever: int) -> None:
    cfg = state.config
    assert state.current_node_count <= max_ever
    if state.provisioning_state == "Succeeded":
        # Leaving nodes hold their max_nodes slot until gone, so after min_nodes is raised
        # while a node leaves, the floor is what max_nodes leaves room for.
        assert state.target_node_count >= min(cfg.min_nodes,
                                               cfg.max_nodes - state.leaving_node_count)
    ids = [n.node_id for n in state.nodes]
    assert ids == sorted(set(ids))
    for node in state.nodes:
        assert node.state in ("preparing", "idle", "running", "leaving")
        assert (node.job_id is not None) == (node.state == "running")
        if node.job_id is not None:
            assert node.node_id in state.assignments[node.job_id].node_ids
            assert node.job_id not in state.finished | state.canceled
    assert not set(state.queue) & set(state.assignments)
    # FIFO: among jobs that ever waited for a start, the started ones form a prefix, in order.
    candidates = [j for j in queued_order if j in state.assignments or j in state.queue]
    started = [j in state.assignments for j in candidates]
    assert started == sorted(started, reverse=True), (candidates, started)
    times = [state.assignments[j].started_at for j in candidates if j in state.assignments]
    assert times == sorted(times)
    assert list(state.queue) == [j for j in candidates if j not in state.assignments]


actions = st.lists(st.one_of(
    st.tuples(st.just("wait"), st.integers(0, 400)),
    st.tuples(st.just("queue"), st.integers(1, 2)),
    st.tuples(st.just("finish"), st.integers(0, 5)),
    st.tuples(st.just("cancel"), st.integers(0, 5)),
    st.tuples(st.just("update"), st.tuples(st.integers(0, 3), st.integers(-2, 2), st.integers(0, 600))),
), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(min_nodes=st.integers(0, 2), extra=st.integers(0, 2), idle=st.integers(0, 600),
       timings=st.builds(Timings, st.integers(0, 120), st.integers(0, 200), st.integers(0, 60)),
       script=actions, lowering=st.booleans(), delete_at=st.one_of(st.none(), st.integers(0, 30)))
def test_random_event_sequences_keep_the_invariants(min_nodes: int, extra: int, idle: int,
                                                    timings: Timings, script: list[Any], lowering: bool,
                                                    delete_at: Optional[int]) -> None:
    """max_nodes is never exceeded (when it is only ever raised; after lowering, the cluster never
    grows while above it), min_nodes is kept, starts are FIFO, every startable job starts once
    running jobs finish, and next_change names exactly the moments the state changes."""
    max_nodes = max(1, min_nodes + extra)
    events: list[Any] = [created(min_nodes, max_nodes, idle, timings)]
    queued_order: list[str] = []
    t = T0
    max_ever = max_nodes
    previous = T0
    last: Optional[ClusterState] = None

    def check(state: ClusterState) -> None:
        nonlocal last
        _check_invariants(state, queued_order, max_ever)
        if lowering:
            if last is not None and state.current_node_count > last.current_node_count:
                assert state.current_node_count <= state.config.max_nodes
        else:
            assert state.current_node_count <= state.config.max_nodes
        last = state

    for step, (kind, arg) in enumerate(script):
        state = cluster_state(events, t)
        if step == delete_at:
            events.append(ClusterDeleted(t))
        elif kind == "wait":
            t += timedelta(seconds=arg)
        elif kind == "queue":
            job = f"job{len(queued_order)}"
            events.append(JobQueued(t, job, min(arg, state.config.max_nodes)))
            queued_order.append(job)
        elif kind in ("finish", "cancel"):
            pool = sorted(state.running_jobs) if kind == "finish" else list(state.queue) + sorted(state.running_jobs)
            if pool:
                job = pool[arg % len(pool)]
                events.append(JobFinished(t, job) if kind == "finish" else JobCanceled(t, job))
        else:
            new_min, delta, new_idle = arg
            new_max = max(1, state.config.max_nodes + (delta if lowering else abs(delta)))
            events.append(ClusterUpdated(t, min(new_min, new_max), new_max, new_idle))
            max_ever = max(max_ever, new_max)
        for _, s in _walk(events, previous, t):
            check(s)
        previous = t

    # Drain: finish whatever runs, wait for the next change otherwise.
    for _ in range(200):
        state = cluster_state(events, t)
        check(state)
        if state.running_jobs:
            t += timedelta(seconds=1)
            events += [JobFinished(t, j) for j in sorted(state.running_jobs)]
            continue
        nxt = next_change(events, t)
        if nxt is None:
            break
        t = nxt
    else:
        raise AssertionError("the cluster never quiesced")
    state = cluster_state(events, t)
    assert cluster_state(events, t) == state  # deterministic
    if state.provisioning_state == "Deleted":
        assert state.nodes == () and state.queue == ()
        assert set(queued_order) == set(state.assignments) | state.canceled | state.finished
        return
    assert state.provisioning_state == "Succeeded"
    waiting = {e.job_id: e.nodes for e in events if isinstance(e, JobQueued)}
    if state.queue:  # only a job wider than max_nodes (lowered after it was queued) can block
        assert waiting[state.queue[0]] > state.config.max_nodes
        assert state.current_node_count == state.idle_node_count == state.config.max_nodes
    else:
        assert set(queued_order) == set(state.assignments) | state.canceled | state.finished
        assert state.current_node_count == state.idle_node_count == state.config.min_nodes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(min_nodes=st.integers(0, 2), extra=st.integers(0, 2), idle=st.integers(0, 600),
       timings=st.builds(Timings, st.integers(0, 120), st.integers(0, 200), st.integers(0, 60)),
       script=actions, skews=st.lists(st.integers(-30, 0), min_size=30, max_size=30),
       looks=st.lists(st.integers(0, 300), min_size=30, max_size=30))
def test_a_resumed_replay_equals_a_full_replay(min_nodes: int, extra: int, idle: int,
                                               timings: Timings, script: list[Any],
                                               skews: list[int], looks: list[int]) -> None:
    """A poller that hands each replay's checkpoint to the next (as the local backend does) sees
    exactly what a replay from the first event sees, including events stamped before their
    predecessor (a skewed writer) and looks at times before the newest event."""
    events: list[Any] = [created(min_nodes, max(1, min_nodes + extra), idle, timings)]
    checkpoint = None
    t = T0
    job = 0
    for step, (kind, arg) in enumerate(script):
        stamp = max(T0, t + timedelta(seconds=skews[step]))
        state = cluster_state(events, t)
        if kind == "wait":
            t += timedelta(seconds=arg)
        elif kind == "queue":
            events.append(JobQueued(stamp, f"job{job}", min(arg, state.config.max_nodes)))
            job += 1
        elif kind in ("finish", "cancel"):
            pool = sorted(state.running_jobs) + list(state.queue)
            if pool:
                chosen = pool[arg % len(pool)]
                events.append(JobFinished(stamp, chosen) if kind == "finish"
                              else JobCanceled(stamp, chosen))
        else:
            new_min, delta, new_idle = arg
            new_max = max(1, state.config.max_nodes + abs(delta))
            events.append(ClusterUpdated(stamp, min(new_min, new_max), new_max, new_idle))
        for now in (t, t + timedelta(seconds=looks[step]), max(T0, t - timedelta(seconds=looks[step]))):
            resumed, upcoming, checkpoint = cluster_replay(events, now, checkpoint)
            assert resumed == cluster_state(events, now)
            assert upcoming == next_change(events, now)


# --------------------------------------------------------------------------------------------------
# VM sizes


REQUIRED = ["STANDARD_D1_V2", "STANDARD_D2_V2", "STANDARD_D3_V2", "STANDARD_D4_V2", "STANDARD_D11_V2",
            "STANDARD_D12_V2", "STANDARD_D13_V2", "STANDARD_D14_V2", "STANDARD_DS2_V2", "STANDARD_DS3_V2",
            "STANDARD_DS12_V2", "STANDARD_D2S_V3", "STANDARD_D4S_V3", "STANDARD_D8S_V3", "STANDARD_D16S_V3",
            "STANDARD_D2_V3", "STANDARD_D4_V3", "STANDARD_E4S_V3", "STANDARD_F4S_V2", "STANDARD_NC6",
            "STANDARD_NC6S_V3", "SIMML_TINY"]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_sizes_are_known_in_any_case(name: str) -> None:
    size = find_vm_size(name)
    assert find_vm_size(name.lower()) is size and find_vm_size(f"  {name.title()} ") is size
    assert size.v_cpus >= 1 and size.memory_gb > 0


def test_real_figures_and_catalogue_shape() -> None:
    assert (find_vm_size("standard_d2_v2").v_cpus, find_vm_size("standard_d2_v2").memory_gb) == (2, 7.0)
    assert (find_vm_size("Standard_D14_v2").v_cpus, find_vm_size("Standard_D14_v2").memory_gb) == (16, 112.0)
    assert (find_vm_size("Standard_D4s_v3").v_cpus, find_vm_size("Standard_D4s_v3").memory_gb) == (4, 16.0)
    assert (find_vm_size("Standard_E4s_v3").memory_gb, find_vm_size("Standard_F4s_v2").memory_gb) == (32.0, 8.0)
    nc6 = find_vm_size("STANDARD_NC6")
    assert (nc6.v_cpus, nc6.memory_gb, nc6.gpus) == (6, 56.0, 1)
    assert find_vm_size("standard_nc6s_v3").memory_gb == 112.0
    assert len({s.name.lower() for s in VM_SIZES}) == len(VM_SIZES)
    listed = supported_vmsizes()
    assert listed[0] == {"name": "Standard_D1_v2", "vCPUs": 1, "gpus": 0, "memoryGB": 3.5,
                         "maxResourceVolumeMB": 51200}
    assert all(set(d) == {"name", "vCPUs", "gpus", "memoryGB", "maxResourceVolumeMB"} for d in listed)
    assert "SIMML_TINY" not in {d["name"] for d in listed}
    assert "SIMML_TINY" in {d["name"] for d in supported_vmsizes(include_test_sizes=True)}


def test_simml_tiny_is_a_test_only_size() -> None:
    tiny = find_vm_size("simml_tiny")
    assert tiny == VmSize("SIMML_TINY", 1, 0.25, 0, "simml-test", tiny.max_resource_volume_mb)


def test_unknown_size_names_it_and_suggests_close_names() -> None:
    with pytest.raises(ComputeTargetException) as err:
        find_vm_size("Standard_D2_v9")
    assert "'Standard_D2_v9'" in err.value.message and "Standard_D2_v2" in err.value.message
    assert "Standard_D2_v2" in err.value.details["suggestions"]
    with pytest.raises(ComputeTargetException, match="Common sizes"):
        find_vm_size("banana")
    with pytest.raises(ComputeTargetException):
        find_vm_size("")


def test_effective_resources_clamps_to_the_host_and_says_so() -> None:
    big = find_vm_size("Standard_D14_v2")
    eff, warnings = effective_resources(big, host_cpus=4, host_memory_gb=8.0)
    assert (eff.name, eff.v_cpus, eff.memory_gb) == ("Standard_D14_v2", 4, 8.0)
    assert len(warnings) == 2
    assert "16 vCPUs" in warnings[0] and "4" in warnings[0]
    assert "112 GB" in warnings[1] and "8 GB" in warnings[1]

    small = find_vm_size("Standard_D1_v2")
    assert effective_resources(small, 8, 32.0) == (small, [])

    eff, warnings = effective_resources(find_vm_size("Standard_NC6"), 16, 64.0)
    assert eff.gpus == 0 and len(warnings) == 1 and "GPU" in warnings[0]
    assert effective_resources(find_vm_size("Standard_NC6"), 16, 64.0, host_gpus=1)[1] == []
    with pytest.raises(ComputeTargetException):
        effective_resources(small, 0, 8.0)
