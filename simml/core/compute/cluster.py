"""The simulated AmlCompute cluster, as a pure function of its events and the time.

Several processes (the SDK client, a scheduler, job workers) look at the same cluster, so nothing
here keeps state. The store persists a few facts (created, updated, job queued/finished/canceled,
deleted), and ``cluster_state(events, now)`` replays them. It simulates forward through the event
times and the timer times those events imply (node ready, idle timeout, leave complete). Every
reader then sees the same nodes, queue and scale history, whatever clock it uses. ``next_change``
gives the next moment the picture changes without a new event. A scheduler can advance a manual
clock or sleep exactly until then, instead of polling.

Rules (Azure's behaviour, simplified):

* The cluster is ``Creating`` for ``provision_seconds``, then ``Succeeded``; ``min_nodes`` nodes
  start then and are kept.
* Jobs wait in one FIFO queue (event order). A ready idle node takes the oldest queued job at once;
  a job asking for ``nodes=k`` waits until ``k`` nodes are idle and blocks the jobs behind it.
* If queued jobs need more nodes than exist, nodes start (scale-up), ``node_start_seconds`` each.
  The total, counting leaving nodes, never goes above ``max_nodes``.
* A node idle for ``idle_seconds_before_scaledown`` leaves (``node_leave_seconds``) unless that
  would drop below ``min_nodes`` or below what queued jobs need. If ``max_nodes`` is lowered, extra
  idle nodes leave at once and busy ones leave when their job ends.
* Deleting the cluster cancels queued and running jobs and makes every node leave.

Low-priority preemption is not simulated. Pure: no I/O, no clock, stdlib only.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Mapping, Optional, Sequence, Union

from simml.exceptions import ComputeTargetException

__all__ = [
    "ClusterConfig", "Timings", "INSTANT",
    "ClusterCreated", "ClusterUpdated", "JobQueued", "JobFinished", "JobCanceled", "ClusterDeleted",
    "ClusterEvent", "Node", "AssignmentInfo", "ScaleEvent", "ClusterState",
    "cluster_state", "next_change", "cluster_replay", "ReplayCheckpoint",
    "event_to_dict", "event_from_dict",
    "NODE_STATES", "VM_PRIORITIES",
]

NODE_STATES = ("preparing", "idle", "running", "leaving")
VM_PRIORITIES = ("dedicated", "lowpriority")


# --------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class ClusterConfig:
    """What ``AmlCompute.provisioning_configuration`` fixes about scaling (validated like Azure)."""

    vm_size: str
    vm_priority: str = "dedicated"
    min_nodes: int = 0
    max_nodes: int = 1
    idle_seconds_before_scaledown: int = 1800

    def __post_init__(self) -> None:
        priority = str(self.vm_priority).lower()
        if priority not in VM_PRIORITIES:
            raise ComputeTargetException(
                f"Invalid vm_priority {self.vm_priority!r}: expected 'dedicated' or 'lowpriority'.")
        object.__setattr__(self, "vm_priority", priority)
        if self.min_nodes < 0:
            raise ComputeTargetException(f"Invalid min_nodes {self.min_nodes}: must be >= 0.")
        if self.max_nodes < 0:
            raise ComputeTargetException(f"Invalid max_nodes {self.max_nodes}: must be >= 0.")
        if self.max_nodes < self.min_nodes:
            raise ComputeTargetException(
                f"Invalid configuration: max_nodes ({self.max_nodes}) is below min_nodes ({self.min_nodes}).")
        if self.idle_seconds_before_scaledown < 0:
            raise ComputeTargetException(
                f"Invalid idle_seconds_before_scaledown {self.idle_seconds_before_scaledown}: must be >= 0.")


@dataclass(frozen=True)
class Timings:
    """How long simulated cloud operations take, in simulated seconds (Azure-like defaults)."""

    provision_seconds: float = 90.0
    """From ``ComputeTarget.create`` until provisioning ``Succeeded``."""
    node_start_seconds: float = 150.0
    """A node's allocation and boot, before it is idle and can take a job."""
    node_leave_seconds: float = 30.0
    """From a node starting to leave until it is gone (and its slot under max_nodes is free)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ComputeTargetException(f"Invalid timing {f.name}={getattr(self, f.name)}: must be >= 0.")


INSTANT = Timings(0.0, 0.0, 0.0)
"""Everything happens at once: for tests that care about scheduling, not waiting."""


# --------------------------------------------------------------------------------------------------
# Events (what the store persists)


@dataclass(frozen=True)
class ClusterCreated:
    """``ComputeTarget.create`` was called; must be the first event of a cluster."""

    at: datetime
    config: ClusterConfig
    timings: Timings = Timings()
    name: str = "cluster"


@dataclass(frozen=True)
class ClusterUpdated:
    """``AmlCompute.update``: ``None`` leaves a setting as it was."""

    at: datetime
    min_nodes: Optional[int] = None
    max_nodes: Optional[int] = None
    idle_seconds_before_scaledown: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("min_nodes", "max_nodes", "idle_seconds_before_scaledown"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ComputeTargetException(f"Invalid {name} {value}: must be >= 0.")
        if self.min_nodes is not None and self.max_nodes is not None and self.max_nodes < self.min_nodes:
            raise ComputeTargetException(
                f"Invalid update: max_nodes ({self.max_nodes}) is below min_nodes ({self.min_nodes}).")


@dataclass(frozen=True)
class JobQueued:
    """A run was submitted to this cluster and waits for ``nodes`` nodes (``node_count``)."""

    at: datetime
    job_id: str
    nodes: int = 1

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ComputeTargetException(f"Job {self.job_id}: node count must be >= 1, got {self.nodes}.")


@dataclass(frozen=True)
class JobFinished:
    """The job's process ended (any outcome); its nodes are idle from ``at``."""

    at: datetime
    job_id: str


@dataclass(frozen=True)
class JobCanceled:
    """The job was canceled: it leaves the queue, or frees its nodes if it had started."""

    at: datetime
    job_id: str


@dataclass(frozen=True)
class ClusterDeleted:
    """``ComputeTarget.delete``: jobs are canceled and every node leaves."""

    at: datetime


ClusterEvent = Union[ClusterCreated, ClusterUpdated, JobQueued, JobFinished, JobCanceled, ClusterDeleted]


# --------------------------------------------------------------------------------------------------
# State (what readers get)


@dataclass(frozen=True)
class Node:
    """One node; ``since`` is when it entered ``state`` (started, became ready, took a job, left)."""

    node_id: str
    state: str
    job_id: Optional[str]
    since: datetime


@dataclass(frozen=True)
class AssignmentInfo:
    """Where and when a job got its nodes: a worker must not start the job before ``started_at``."""

    node_id: str
    queued_at: datetime
    started_at: datetime
    node_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScaleEvent:
    """The cluster's target size changed at ``at`` (the source of ``ClusterState.log``)."""

    at: datetime
    from_nodes: int
    to_nodes: int


@dataclass(frozen=True)
class ClusterState:
    """Everything a reader may ask about the cluster at one moment (no ``now`` in it, on purpose:
    two moments with nothing in between have equal states)."""

    name: str
    config: ClusterConfig
    """The configuration in effect (after updates)."""
    timings: Timings
    provisioning_state: str
    """``Creating``, ``Succeeded``, ``Deleting`` or ``Deleted``."""
    provisioning_state_transition_time: datetime
    allocation_state: str
    """``Resizing`` while any node is preparing or leaving, else ``Steady``."""
    allocation_state_transition_time: datetime
    creation_time: datetime
    modified_time: datetime
    nodes: tuple[Node, ...]
    """In start order, which is node-id order."""
    queue: tuple[str, ...]
    """Jobs waiting for nodes, oldest first."""
    assignments: Mapping[str, AssignmentInfo] = field(hash=False)
    """Every job that has started (including since finished or canceled)."""
    finished: frozenset[str]
    canceled: frozenset[str]
    """Canceled by ``JobCanceled`` or by deleting the cluster (before or after starting)."""
    scale_events: tuple[ScaleEvent, ...]
    log: tuple[str, ...]
    """``"<name>: 0 -> 1 nodes"`` per target-size change, oldest first."""

    def _count(self, state: str) -> int:
        return sum(1 for node in self.nodes if node.state == state)

    @property
    def idle_node_count(self) -> int:
        return self._count("idle")

    @property
    def running_node_count(self) -> int:
        return self._count("running")

    @property
    def preparing_node_count(self) -> int:
        return self._count("preparing")

    @property
    def leaving_node_count(self) -> int:
        return self._count("leaving")

    @property
    def current_node_count(self) -> int:
        """Every allocated node, leaving ones included (they still count against max_nodes)."""
        return len(self.nodes)

    @property
    def target_node_count(self) -> int:
        """The size the cluster is heading to: every node that is not leaving."""
        return len(self.nodes) - self.leaving_node_count

    @property
    def running_jobs(self) -> frozenset[str]:
        """Jobs holding nodes right now."""
        return frozenset(node.job_id for node in self.nodes if node.job_id is not None)

    @property
    def node_state_counts(self) -> dict[str, int]:
        """Azure's ``nodeStateCounts`` (unusable/preempted are never simulated)."""
        return {"preparingNodeCount": self.preparing_node_count, "runningNodeCount": self.running_node_count,
                "idleNodeCount": self.idle_node_count, "unusableNodeCount": 0,
                "leavingNodeCount": self.leaving_node_count, "preemptedNodeCount": 0}

    def node_of(self, job_id: str) -> Optional[Node]:
        """The (first) node running ``job_id``, if it is running."""
        for node in self.nodes:
            if node.job_id == job_id:
                return node
        return None


# --------------------------------------------------------------------------------------------------
# Simulation


class _N:
    """A node while simulating (mutable; frozen into ``Node`` at the end)."""

    __slots__ = ("node_id", "state", "job_id", "since")

    def __init__(self, node_id: str, since: datetime) -> None:
        self.node_id = node_id
        self.state = "preparing"
        self.job_id: Optional[str] = None
        self.since = since


class _Sim:
    """Mutable replay of one cluster. Node lifetimes are constant, so nodes finish preparing and
    leaving in the order they started (FIFO deques). They also become idle in time order, so an
    insertion-ordered dict keeps idle nodes longest-idle first. Every step is O(changes), not
    O(history)."""

    def __init__(self, created: ClusterCreated) -> None:
        t = created.at
        self.name = created.name
        self.config = created.config
        self.timings = created.timings
        self.start_td = timedelta(seconds=created.timings.node_start_seconds)
        self.leave_td = timedelta(seconds=created.timings.node_leave_seconds)
        self.idle_td = timedelta(seconds=created.config.idle_seconds_before_scaledown)
        self.created_at = t
        self.modified_at = t
        self.provisioned_at = t + timedelta(seconds=created.timings.provision_seconds)
        self.provisioned = False
        self.deleted = False
        self.prov_state = "Creating"
        self.prov_time = t
        self.alloc_state = "Steady"
        self.alloc_time = t
        self.nodes: dict[str, _N] = {}
        self.preparing: deque[_N] = deque()
        self.leaving: deque[_N] = deque()
        self.idle: dict[str, _N] = {}
        self.running = 0
        self.queue: deque[str] = deque()
        self.waiting: dict[str, tuple[datetime, int]] = {}
        self.demand = 0
        self.job_nodes: dict[str, list[_N]] = {}
        self.assignments: dict[str, AssignmentInfo] = {}
        self.finished: set[str] = set()
        self.canceled: set[str] = set()
        self.next_index = 0
        self.scale_events: list[ScaleEvent] = []

    def clone(self) -> "_Sim":
        """An independent copy (nodes are mutable; events, configs and assignments are not)."""
        other = copy.copy(self)
        nodes = {}
        for node_id, node in self.nodes.items():
            twin = nodes[node_id] = _N(node.node_id, node.since)
            twin.state, twin.job_id = node.state, node.job_id
        other.nodes = nodes
        other.preparing = deque(nodes[n.node_id] for n in self.preparing)
        other.leaving = deque(nodes[n.node_id] for n in self.leaving)
        other.idle = {node_id: nodes[node_id] for node_id in self.idle}
        other.queue = deque(self.queue)
        other.waiting = dict(self.waiting)
        other.job_nodes = {job: [nodes[n.node_id] for n in taken]
                           for job, taken in self.job_nodes.items()}
        other.assignments = dict(self.assignments)
        other.finished = set(self.finished)
        other.canceled = set(self.canceled)
        other.scale_events = list(self.scale_events)
        return other

    # -- derived quantities (one definition, shared by settle and next_timer) --

    def target(self) -> int:
        return len(self.nodes) - len(self.leaving)

    def keep(self) -> int:
        """Nodes the cluster must keep: min_nodes or what busy and queued jobs need, up to max."""
        cfg = self.config
        needed = min(cfg.max_nodes, self.running + self.demand)
        return max(min(cfg.min_nodes, cfg.max_nodes), needed)

    # -- transitions --

    def _leave(self, node: _N, t: datetime) -> None:
        if node.state == "idle":
            del self.idle[node.node_id]
        elif node.state == "running":
            self.running -= 1
        node.state, node.job_id, node.since = "leaving", None, t
        self.leaving.append(node)

    def _free(self, job_id: str, t: datetime) -> None:
        """The job's nodes become idle (``settle`` then decides whether they stay)."""
        for node in self.job_nodes.pop(job_id, ()):
            if node.state == "running" and node.job_id == job_id:
                self.running -= 1
                node.state, node.job_id, node.since = "idle", None, t
                self.idle[node.node_id] = node

    def fire_timers(self, t: datetime) -> None:
        if not self.provisioned and not self.deleted and self.provisioned_at <= t:
            self.provisioned = True
            self.prov_state, self.prov_time = "Succeeded", self.provisioned_at
        while self.preparing and self.preparing[0].since + self.start_td <= t:
            node = self.preparing.popleft()
            node.state, node.since = "idle", node.since + self.start_td
            self.idle[node.node_id] = node
        while self.leaving and self.leaving[0].since + self.leave_td <= t:
            del self.nodes[self.leaving.popleft().node_id]

    def apply(self, event: Any, t: datetime) -> None:
        if isinstance(event, JobQueued):
            job = event.job_id
            if job in self.waiting or job in self.assignments or job in self.finished or job in self.canceled:
                return  # a duplicate: the first submission wins
            if self.deleted:
                self.canceled.add(job)
                return
            self.queue.append(job)
            self.waiting[job] = (t, event.nodes)
            self.demand += event.nodes
        elif isinstance(event, (JobFinished, JobCanceled)):
            job = event.job_id
            if job in self.finished or job in self.canceled:
                return
            if job in self.waiting:  # lazily dropped from self.queue when it reaches the head
                self.demand -= self.waiting.pop(job)[1]
            elif job in self.job_nodes:
                self._free(job, t)
            elif job not in self.assignments:
                return  # never queued here
            (self.finished if isinstance(event, JobFinished) else self.canceled).add(job)
        elif isinstance(event, ClusterUpdated):
            if self.deleted:
                return
            cfg = self.config
            max_nodes = cfg.max_nodes if event.max_nodes is None else event.max_nodes
            min_nodes = cfg.min_nodes if event.min_nodes is None else event.min_nodes
            idle = (cfg.idle_seconds_before_scaledown if event.idle_seconds_before_scaledown is None
                    else event.idle_seconds_before_scaledown)
            self.config = replace(cfg, min_nodes=min(min_nodes, max_nodes), max_nodes=max_nodes,
                                  idle_seconds_before_scaledown=idle)
            self.idle_td = timedelta(seconds=idle)
            self.modified_at = t
        elif isinstance(event, ClusterDeleted):
            if self.deleted:
                return
            self.deleted = True
            self.prov_state, self.prov_time = "Deleting", t
            self.modified_at = t
            for job in self.waiting:
                self.canceled.add(job)
            self.waiting.clear()
            self.queue.clear()
            self.demand = 0
            self.canceled.update(self.job_nodes)
            self.job_nodes.clear()
            for node in self.nodes.values():
                if node.state != "leaving":
                    node.state, node.job_id, node.since = "leaving", None, t
                    self.leaving.append(node)
            self.preparing.clear()
            self.idle.clear()
            self.running = 0
        elif isinstance(event, ClusterCreated):
            raise ComputeTargetException(
                f"Cluster {self.name!r}: a second ClusterCreated event; a re-created cluster needs a new event stream.")
        else:
            raise ComputeTargetException(f"Unknown cluster event {event!r}.")

    def _head(self) -> Optional[str]:
        while self.queue and self.queue[0] not in self.waiting:
            self.queue.popleft()
        return self.queue[0] if self.queue else None

    def _due(self, t: datetime) -> bool:
        return bool((self.preparing and self.preparing[0].since + self.start_td <= t)
                    or (self.leaving and self.leaving[0].since + self.leave_td <= t))

    def settle(self, t: datetime) -> None:
        """Fire due timers and apply the scheduling rules until nothing more happens at ``t``
        (zero-length timings make nodes ready or gone at the very instant they start)."""
        self.fire_timers(t)
        self._rules(t)
        while self._due(t):
            self.fire_timers(t)
            self._rules(t)

    def _rules(self, t: datetime) -> None:
        if self.deleted or not self.provisioned:
            return
        # 1. Ready idle nodes take the oldest queued jobs (strict FIFO).
        while True:
            job = self._head()
            if job is None:
                break
            queued_at, count = self.waiting[job]
            if len(self.idle) < count:
                break
            self.queue.popleft()
            del self.waiting[job]
            self.demand -= count
            taken: list[_N] = []
            for node_id in list(self.idle)[:count]:
                node = self.idle.pop(node_id)
                node.state, node.job_id, node.since = "running", job, t
                taken.append(node)
            taken.sort(key=lambda n: n.node_id)  # rank 0 is the lowest id, whatever idled first
            self.running += count
            self.job_nodes[job] = taken
            self.assignments[job] = AssignmentInfo(taken[0].node_id, queued_at, t,
                                                   tuple(n.node_id for n in taken))
        cfg = self.config
        # 2. Above max_nodes (it was lowered): spare idle nodes leave now.
        while self.idle and self.target() > cfg.max_nodes:
            self._leave(next(iter(self.idle.values())), t)
        # 3. Idle timeout, longest-idle first, never below what must be kept.
        keep = self.keep()
        while self.idle and self.target() > keep:
            node = next(iter(self.idle.values()))
            if node.since + self.idle_td > t:
                break
            self._leave(node, t)
        # 4. Scale up towards what queued jobs and min_nodes need; leaving nodes hold their slots.
        grow = min(keep - self.target(), cfg.max_nodes - len(self.nodes))
        for _ in range(max(0, grow)):
            node = _N(f"tvmps_{self.next_index:04d}", t)
            self.next_index += 1
            self.nodes[node.node_id] = node
            self.preparing.append(node)

    def end_step(self, t: datetime, target_before: int) -> None:
        target = self.target()
        if target != target_before:
            self.scale_events.append(ScaleEvent(t, target_before, target))
        if self.deleted and not self.nodes and self.prov_state != "Deleted":
            self.prov_state, self.prov_time = "Deleted", t
        alloc = "Resizing" if (self.preparing or self.leaving) else "Steady"
        if alloc != self.alloc_state:
            self.alloc_state, self.alloc_time = alloc, t

    def next_timer(self) -> Optional[datetime]:
        """The earliest pending timer whose firing really changes the state."""
        times: list[datetime] = []
        if not self.provisioned and not self.deleted:
            times.append(self.provisioned_at)
        if self.preparing:
            times.append(self.preparing[0].since + self.start_td)
        if self.leaving:
            times.append(self.leaving[0].since + self.leave_td)
        if self.idle and self.provisioned and not self.deleted and self.target() > self.keep():
            times.append(next(iter(self.idle.values())).since + self.idle_td)
        return min(times) if times else None

    def freeze(self) -> ClusterState:
        return ClusterState(
            name=self.name, config=self.config, timings=self.timings,
            provisioning_state=self.prov_state, provisioning_state_transition_time=self.prov_time,
            allocation_state=self.alloc_state, allocation_state_transition_time=self.alloc_time,
            creation_time=self.created_at, modified_time=self.modified_at,
            nodes=tuple(Node(n.node_id, n.state, n.job_id, n.since) for n in self.nodes.values()),
            queue=tuple(job for job in self.queue if job in self.waiting),
            assignments=MappingProxyType(dict(self.assignments)),
            finished=frozenset(self.finished), canceled=frozenset(self.canceled),
            scale_events=tuple(self.scale_events),
            log=tuple(f"{self.name}: {e.from_nodes} -> {e.to_nodes} nodes" for e in self.scale_events),
        )


class ReplayCheckpoint:
    """Where a replay stood just after applying the last event it knew: a private copy of the
    simulation, the event count, the step's time and the node target before that step. Handing it
    back to ``cluster_replay`` with the same events plus newer ones resumes there instead of
    replaying the whole history, with the very state a full replay reaches (events are applied
    in persisted order, and a newer event stamped before ``at`` counts as happening at ``at`` in
    both)."""

    __slots__ = ("count", "at", "target_before", "sim")

    def __init__(self, count: int, at: datetime, target_before: int, sim: "_Sim") -> None:
        self.count = count
        self.at = at
        self.target_before = target_before
        self.sim = sim


def _simulate(events: Sequence[Any], now: datetime, resume: Optional[ReplayCheckpoint] = None
              ) -> tuple[_Sim, Optional[datetime], Optional[ReplayCheckpoint]]:
    """Replay ``events`` up to ``now``; also return the next moment the state would change, and
    a checkpoint after the last event (``resume``, when given, must come from a prefix of
    ``events``; one taken later than ``now`` is ignored)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ComputeTargetException(f"now must be an aware UTC datetime, got naive {now!r}.")
    if not events or not isinstance(events[0], ClusterCreated):
        raise ComputeTargetException("A cluster's events must start with ClusterCreated.")
    created = events[0]
    if created.at > now:
        raise ComputeTargetException(
            f"Cluster {created.name!r} is created at {created.at.isoformat()}, after now ({now.isoformat()}).")
    count = len(events)
    checkpoint = None
    if resume is not None and resume.count <= count and resume.at <= now:
        sim, index, t, before = resume.sim.clone(), resume.count, resume.at, resume.target_before
        checkpoint, mid_step = resume, True
    else:
        sim, index, t, before, mid_step = _Sim(created), 1, created.at, 0, False
    while True:
        if not mid_step:
            before = sim.target()
            sim.settle(t)
        mid_step = False
        applied = False
        # Events are taken in persisted order; one stamped earlier than its predecessor counts as
        # happening at the current time, so a skewed writer cannot rewrite simulated history.
        while index < count and events[index].at <= t:
            sim.apply(events[index], t)
            sim.settle(t)  # in event order: a job queued then finished at one instant did start
            index += 1
            applied = True
        if applied and index == count:
            checkpoint = ReplayCheckpoint(count, t, before, sim.clone())
        sim.end_step(t, before)
        upcoming = sim.next_timer()
        if index < count:
            event_at = max(events[index].at, t)
            upcoming = event_at if upcoming is None else min(upcoming, event_at)
        if upcoming is None or upcoming > now:
            return sim, upcoming, checkpoint
        if upcoming <= t:  # settle() consumed everything due at t; looping here would never end
            raise RuntimeError(f"cluster simulation stalled at {t.isoformat()} (a simml bug)")
        t = upcoming


def cluster_replay(events: Sequence[ClusterEvent], now: datetime,
                   resume: Optional[ReplayCheckpoint] = None
                   ) -> tuple[ClusterState, Optional[datetime], Optional[ReplayCheckpoint]]:
    """``cluster_state`` and ``next_change`` from one replay, resumed from ``resume`` (a
    checkpoint this function returned for a prefix of ``events``) when given, and the checkpoint
    to resume from next time. Readers that poll a growing event stream stay O(new events)."""
    sim, upcoming, checkpoint = _simulate(events, now, resume)
    return sim.freeze(), upcoming, checkpoint


def cluster_state(events: Sequence[ClusterEvent], now: datetime) -> ClusterState:
    """The cluster as of ``now``, replayed from its events (deterministic: same input, same state).

    Events stamped after ``now`` have not happened yet and are ignored.
    """
    return _simulate(events, now)[0].freeze()


def next_change(events: Sequence[ClusterEvent], now: datetime) -> Optional[datetime]:
    """The first moment after ``now`` at which ``cluster_state`` differs, or ``None`` if never.

    That is the next node-ready, idle-timeout, leave-complete or provisioning-done time, or the
    time of an already-persisted future event, whichever comes first.
    """
    return _simulate(events, now)[1]


# --------------------------------------------------------------------------------------------------
# Persistence helpers (plain JSON-able dicts; the store decides where they go)

_EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    ClusterCreated, ClusterUpdated, JobQueued, JobFinished, JobCanceled, ClusterDeleted)}


def event_to_dict(event: ClusterEvent) -> dict[str, Any]:
    """A JSON-able dict for ``event`` (datetimes as ISO 8601), readable by ``event_from_dict``."""
    if _EVENT_TYPES.get(type(event).__name__) is not type(event):
        raise ComputeTargetException(f"Unknown cluster event {event!r}.")
    out: dict[str, Any] = {"type": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, (ClusterConfig, Timings)):
            value = {g.name: getattr(value, g.name) for g in fields(value)}
        out[f.name] = value
    return out


def event_from_dict(data: Mapping[str, Any]) -> ClusterEvent:
    """The event ``event_to_dict`` wrote."""
    values = dict(data)
    cls = _EVENT_TYPES.get(str(values.pop("type", "")))
    if cls is None:
        raise ComputeTargetException(f"Unknown cluster event type in {dict(data)!r}.")
    values["at"] = datetime.fromisoformat(values["at"])
    if cls is ClusterCreated:
        values["config"] = ClusterConfig(**values["config"])
        if "timings" in values:
            values["timings"] = Timings(**values["timings"])
    return cls(**values)  # type: ignore[no-any-return]

