"""Compute targets of the local backend: simulated AmlCompute clusters in SQLite.

``LocalCompute`` is a mixin of ``LocalBackend`` (it uses the backend's ``store(workspace)`` and the
clock hook ``simml_clock_get``). A cluster is one row of ``computes`` (its provisioning
configuration as JSON, with the resolved ``timings``, the VM size's figures and what this host can
really give a node) plus its events in ``cluster_events`` (``simml.core.compute.cluster`` events as
JSON, in ``seq`` order). Nothing else is stored: every reader replays the events up to the
workspace clock's now with ``cluster_state``, so all processes see the same nodes, queue and
scale log whatever clock they use. Appends run inside ``write_transaction`` (``BEGIN IMMEDIATE``),
so concurrent writers queue and no event is lost; event times come from the workspace clock read
inside that transaction. Parsed events are cached per cluster and only newer rows are read again;
a replay is reused until the model's ``next_change`` or a new event (a state cannot change in
between), so polling readers mostly pay for two indexed SQLite reads.

Deleting appends ``ClusterDeleted`` and hides the row from get and list at once (the name may be
reused: re-creating starts a fresh event stream); ``simml_compute_status`` and the job methods
below still answer for a deleted cluster, so a waiter can watch its nodes leave.

Contract for the execution engine (non-hook methods, called on the backend object itself)::

    compute_queue_job(workspace, name, job_id, nodes=1) -> None
        Append JobQueued(now, job_id, nodes). A duplicate job id is ignored by the model.
        Raises ComputeTargetException if the cluster does not exist (or was deleted).
    compute_job_state(workspace, name, job_id)
            -> tuple[ClusterState, AssignmentInfo | None]
        The cluster now and the job's assignment (None while queued). A worker must not start
        the job before ``assignment.started_at``. ``state.log`` holds the scale lines
        ("cpu-cluster: 0 -> 1 nodes"); ``job_id in state.canceled`` after a cluster delete.
    compute_job_view(workspace, name, job_id)
            -> tuple[ClusterState, AssignmentInfo | None, datetime | None, datetime]
        The same plus the next simulated change and the now they were read at (one read).
    compute_finish_job(workspace, name, job_id) -> None      Append JobFinished (any outcome).
    compute_cancel_job(workspace, name, job_id) -> None      Append JobCanceled.
    compute_next_change(workspace, name) -> datetime | None
        The next simulated moment the state changes without a new event (None: never).
    compute_effective_resources(workspace, name) -> tuple[int, float]
        Cores and memory (GB) one node may use here: the VM size clamped to this host.

Also used by the ``AmlCompute`` facade (no hook exists for them yet)::

    compute_state(workspace, name) -> ClusterState
    compute_update(workspace, name, min_nodes=None, max_nodes=None,
                   idle_seconds_before_scaledown=None) -> ComputeInfo
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Callable

from simml.clock import clock_now
from simml.core.compute.cluster import (
    AssignmentInfo,
    ClusterConfig,
    ClusterCreated,
    ClusterDeleted,
    ClusterEvent,
    ClusterState,
    ClusterUpdated,
    JobCanceled,
    JobFinished,
    JobQueued,
    ReplayCheckpoint,
    Timings,
    cluster_replay,
    cluster_state,
    event_from_dict,
    event_to_dict,
    next_change,
)
from simml.core.compute.vm_sizes import effective_resources, find_vm_size
from simml.entities import ComputeInfo, ComputeNode, ComputeStatus, WorkspaceInfo
from simml.exceptions import ComputeTargetException, UserErrorException
from simml.plugins import hookimpl
from simml_local.store import write_transaction

logger = logging.getLogger(__name__)

AML_COMPUTE = "AmlCompute"
DEFAULT_VM_SIZE = "Standard_NC6"
"""What Azure provisions when ``vm_size`` is left empty."""
COMPUTE_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,15}$")
RESERVED_NAMES = ("amlcompute", "local", "containerinstance")
_EXTRA_KEYS = ("description", "tags", "location", "admin_username", "vnet_resourcegroup_name",
               "vnet_name", "subnet_name", "remote_login_port_public_access", "identity_type",
               "identity_id", "enable_node_public_ip", "runtime")


def not_found(name: str) -> ComputeTargetException:
    return ComputeTargetException(f"ComputeTargetNotFound: Compute Target with name {name} not "
                                  "found in provided workspace")


def check_compute_name(name: Any) -> str:
    """Azure's AmlCompute name rule: 2-16 letters, digits or hyphens, starting with a letter."""
    if not isinstance(name, str) or not COMPUTE_NAME.match(name):
        raise ComputeTargetException(
            f"Invalid compute name {name!r}: an AmlCompute name must be 2 to 16 characters long, "
            "start with a letter, and contain only letters, digits and hyphens ('-').")
    return name


def host_resources() -> tuple[int, float]:
    """This machine's CPU count and memory in GB (``/proc/meminfo``, else ``sysconf``)."""
    cpus = os.cpu_count() or 1
    memory_gb = 0.0
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory_gb = int(line.split()[1]) / (1024 * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if memory_gb <= 0:
        try:
            memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
        except (OSError, ValueError, AttributeError):
            memory_gb = 1.0
    return cpus, round(memory_gb, 2)


def _int_setting(config: dict[str, Any], key: str, default: int | None) -> int:
    value = config.get(key)
    if value is None:
        if default is None:
            raise ComputeTargetException(
                "Invalid provisioning configuration, max nodes count is mandatory")
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ComputeTargetException(f"Invalid provisioning configuration, {key} must be an "
                                     f"integer, not {value!r}")
    return value


def _timings(value: Any) -> Timings:
    if value is None:
        return Timings()
    if isinstance(value, Timings):
        return value
    if isinstance(value, dict):
        try:
            return Timings(**value)
        except TypeError as exc:
            raise ComputeTargetException(f"Invalid timings {value!r}: {exc}") from exc
    raise ComputeTargetException(f"Invalid timings {value!r}: expected a dict or a Timings.")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


_Memo = tuple[datetime, "datetime | None", ClusterState]
"""A replay result: computed at ``[0]``, unchanged until ``[1]`` (None: until a new event)."""
_CacheEntry = tuple[int, tuple[ClusterEvent, ...], "_Memo | None", "ReplayCheckpoint | None"]
"""Per cluster: the last event ``seq`` read, the parsed events, the last replay, and where a
replay stood after the last event (the next one resumes there)."""


class _Cluster:
    """One read of a cluster: its row and its events (a consistent snapshot)."""

    __slots__ = ("name", "compute_type", "config", "deleted", "events", "key", "last_seq", "memo",
                 "checkpoint")

    def __init__(self, name: str, compute_type: str, config: dict[str, Any], deleted: bool,
                 events: tuple[ClusterEvent, ...], key: tuple[str, str] = ("", ""),
                 last_seq: int = 0, memo: _Memo | None = None,
                 checkpoint: ReplayCheckpoint | None = None) -> None:
        self.name = name
        self.compute_type = compute_type
        self.config = config
        self.deleted = deleted
        self.events = events
        self.key = key
        self.last_seq = last_seq
        self.memo = memo
        self.checkpoint = checkpoint

    def effective_now(self, now: datetime) -> datetime:
        # Simulated time should never run backwards; if a clock switch made it, read the cluster
        # as of its creation rather than refuse to answer.
        return max(now, self.events[0].at) if self.events else now


class LocalCompute:
    """Mixin of ``LocalBackend``: the compute hooks and the cluster contract of the runner."""

    store: Any  # provided by LocalBackend
    simml_clock_get: Any  # provided by LocalClock

    # --- plumbing ------------------------------------------------------------------------------
    def _compute_now(self, workspace: WorkspaceInfo) -> datetime:
        return clock_now(self.simml_clock_get(workspace), datetime.now(timezone.utc))

    def _compute_cache(self) -> dict[tuple[str, str], _CacheEntry]:
        """Parsed events and the last replay per cluster (entries are replaced whole, never
        mutated, so threads sharing the backend need no lock)."""
        cache = self.__dict__.get("_compute_cache_entries")
        if cache is None:
            cache = self.__dict__.setdefault("_compute_cache_entries", {})
        return cache

    def _compute_read(self, con: Any, workspace: WorkspaceInfo, name: str,
                      include_deleted: bool) -> _Cluster:
        """The row and its events; call inside a transaction for a consistent snapshot."""
        row = con.execute("SELECT compute_type, config, deleted FROM computes WHERE name = ?",
                          (name,)).fetchone()
        if row is None or (row[2] and not include_deleted):
            raise not_found(name)
        config = json.loads(row[1])
        # The uid changes when a name is re-created, so a stale entry is never reused.
        key = (str(self.store(workspace).db_path), str(config.get("uid", name)))
        cache = self._compute_cache()
        last_seq, events, memo, checkpoint = cache.get(key, (0, (), None, None))
        fresh = con.execute("SELECT seq, event FROM cluster_events WHERE compute = ? AND seq > ? "
                            "ORDER BY seq", (name, last_seq)).fetchall()
        if fresh:
            events = events + tuple(event_from_dict(json.loads(text)) for _, text in fresh)
            last_seq, memo = fresh[-1][0], None
            cache[key] = (last_seq, events, None, checkpoint)
        return _Cluster(name, row[0], config, bool(row[2]), events, key, last_seq, memo,
                        checkpoint)

    def _compute_snapshot(self, workspace: WorkspaceInfo, name: str, include_deleted: bool
                          ) -> tuple[_Cluster, datetime]:
        """A cluster and the clock's now, read in one snapshot (now is read after the events, so
        no event of the snapshot is in its future)."""
        con = self.store(workspace).connection()
        own = not con.in_transaction  # a caller's open transaction is already a snapshot
        if own:
            con.execute("BEGIN")
        try:
            cluster = self._compute_read(con, workspace, name, include_deleted)
            now = self._compute_now(workspace)
        finally:
            if own:
                con.execute("COMMIT")
        return cluster, cluster.effective_now(now)

    def _compute_replay(self, cluster: _Cluster, now: datetime
                        ) -> tuple[ClusterState, datetime | None]:
        """``cluster_state`` and ``next_change`` at ``now``. A state holds unchanged until the
        next change (the model's contract), so a replay is reused until then or a new event."""
        memo = cluster.memo
        if memo is not None and memo[0] <= now and (memo[1] is None or now < memo[1]):
            return memo[2], memo[1]
        state, upcoming, checkpoint = cluster_replay(cluster.events, now, cluster.checkpoint)
        cache = self._compute_cache()
        entry = cache.get(cluster.key)
        if entry is not None and entry[0] == cluster.last_seq:
            cache[cluster.key] = (entry[0], entry[1], (now, upcoming, state), checkpoint)
        return state, upcoming

    def _compute_state_of(self, workspace: WorkspaceInfo, name: str,
                          include_deleted: bool = True) -> tuple[_Cluster, ClusterState]:
        cluster, now = self._compute_snapshot(workspace, name, include_deleted)
        return cluster, self._compute_replay(cluster, now)[0]

    def _compute_append(self, workspace: WorkspaceInfo, name: str,
                        make: Callable[[datetime, _Cluster], ClusterEvent],
                        include_deleted: bool = True) -> ClusterEvent:
        """Append one event stamped with the clock read inside the write transaction."""
        con = self.store(workspace).connection()
        with write_transaction(con):
            cluster = self._compute_read(con, workspace, name, include_deleted)
            event = make(cluster.effective_now(self._compute_now(workspace)), cluster)
            con.execute("INSERT INTO cluster_events (compute, event) VALUES (?, ?)",
                        (name, json.dumps(event_to_dict(event))))
        return event

    @staticmethod
    def _compute_info(cluster: _Cluster, state: ClusterState) -> ComputeInfo:
        config = cluster.config
        cfg = state.config
        properties: dict[str, Any] = {key: config.get(key) for key in _EXTRA_KEYS}
        properties.update({
            "vm_size_name": config["vm_size"],
            "v_cpus": config["v_cpus"], "memory_gb": config["memory_gb"], "gpus": config["gpus"],
            "effective_v_cpus": config["effective_v_cpus"],
            "effective_memory_gb": config["effective_memory_gb"],
            "effective_gpus": config["effective_gpus"],
            "warnings": list(config.get("warnings", ())),
            "timings": dict(config["timings"]),
            "modified_time": _iso(state.modified_time),
            "provisioning_state_transition_time": _iso(state.provisioning_state_transition_time),
            "allocation_state": state.allocation_state,
            "deleted": cluster.deleted,
        })
        return ComputeInfo(
            name=cluster.name, compute_type=cluster.compute_type,
            provisioning_state=state.provisioning_state, vm_size=cfg.vm_size.upper(),
            vm_priority=cfg.vm_priority, min_nodes=cfg.min_nodes, max_nodes=cfg.max_nodes,
            idle_seconds_before_scaledown=cfg.idle_seconds_before_scaledown,
            created_time=state.creation_time, properties=properties)

    @staticmethod
    def _compute_status_of(state: ClusterState, next_change: datetime | None = None
                           ) -> ComputeStatus:
        return ComputeStatus(
            provisioning_state=state.provisioning_state,
            allocation_state=state.allocation_state,
            current_node_count=state.current_node_count,
            target_node_count=state.target_node_count,
            idle_node_count=state.idle_node_count,
            running_node_count=state.running_node_count,
            preparing_node_count=state.preparing_node_count,
            leaving_node_count=state.leaving_node_count,
            queued_runs=len(state.queue),
            allocation_state_transition_time=state.allocation_state_transition_time,
            next_change_time=next_change)

    # --- hooks ---------------------------------------------------------------------------------
    @hookimpl
    def simml_compute_get(self, workspace: WorkspaceInfo, name: str) -> ComputeInfo:
        cluster, state = self._compute_state_of(workspace, name, include_deleted=False)
        return self._compute_info(cluster, state)

    @hookimpl
    def simml_compute_list(self, workspace: WorkspaceInfo) -> list[ComputeInfo]:
        con = self.store(workspace).connection()
        names = [r[0] for r in con.execute(
            "SELECT name FROM computes WHERE deleted = 0 AND compute_type != 'local' "
            "ORDER BY created_time, name")]
        found = []
        for name in names:
            try:
                found.append(self.simml_compute_get(workspace, name))
            except ComputeTargetException:  # deleted meanwhile
                continue
        return found

    @hookimpl
    def simml_compute_create(self, workspace: WorkspaceInfo, name: str, config: dict[str, Any]
                             ) -> ComputeInfo:
        check_compute_name(name)
        if name.lower() in RESERVED_NAMES:
            raise UserErrorException(
                f"Please specify a different target name. {name} is a reserved name.")
        compute_type = config.get("compute_type", AML_COMPUTE)
        if compute_type != AML_COMPUTE:
            raise ComputeTargetException(
                f"The local backend creates only AmlCompute clusters, not {compute_type!r}.")
        size = find_vm_size(config.get("vm_size") or DEFAULT_VM_SIZE)
        if config.get("runtime") is not None:  # simml: the runtime of this target's runs
            from simml_local.docker_runtime import check_runtime
            check_runtime(config["runtime"], "compute runtime")
        cluster_config = ClusterConfig(
            vm_size=size.name, vm_priority=config.get("vm_priority") or "dedicated",
            min_nodes=_int_setting(config, "min_nodes", 0),
            max_nodes=_int_setting(config, "max_nodes", None),
            idle_seconds_before_scaledown=_int_setting(
                config, "idle_seconds_before_scaledown", 1800))
        timings = _timings(config.get("timings"))
        host_cpus, host_memory = host_resources()
        effective, warnings = effective_resources(size, host_cpus, host_memory)
        record = {key: config.get(key) for key in _EXTRA_KEYS}
        record.update({
            "uid": uuid.uuid4().hex, "vm_size": size.name,
            "vm_priority": cluster_config.vm_priority,
            "min_nodes": cluster_config.min_nodes, "max_nodes": cluster_config.max_nodes,
            "idle_seconds_before_scaledown": cluster_config.idle_seconds_before_scaledown,
            "timings": asdict(timings), "v_cpus": size.v_cpus, "memory_gb": size.memory_gb,
            "gpus": size.gpus, "effective_v_cpus": effective.v_cpus,
            "effective_memory_gb": effective.memory_gb, "effective_gpus": effective.gpus,
            "warnings": warnings,
        })
        for warning in warnings:  # the facade prints them; ComputeInfo.properties keeps them
            logger.info("compute %s: %s", name, warning)
        con = self.store(workspace).connection()
        with write_transaction(con):
            row = con.execute("SELECT deleted FROM computes WHERE name = ?", (name,)).fetchone()
            if row is not None and not row[0]:
                raise ComputeTargetException(
                    f"ComputeTargetAlreadyExists: Compute Target with name {name} already exists "
                    f"in provided workspace. Get it with ComputeTarget(workspace, '{name}'), or "
                    "delete it first.")
            now = self._compute_now(workspace)
            created = ClusterCreated(now, cluster_config, timings, name)
            con.execute("DELETE FROM cluster_events WHERE compute = ?", (name,))
            con.execute("INSERT OR REPLACE INTO computes (name, compute_type, config, "
                        "created_time, deleted) VALUES (?, ?, ?, ?, 0)",
                        (name, AML_COMPUTE, json.dumps(record, default=str), now.timestamp()))
            con.execute("INSERT INTO cluster_events (compute, event) VALUES (?, ?)",
                        (name, json.dumps(event_to_dict(created))))
        cluster = _Cluster(name, AML_COMPUTE, json.loads(json.dumps(record, default=str)), False,
                           (created,))
        return self._compute_info(cluster, cluster_state(cluster.events, now))

    @hookimpl
    def simml_compute_status(self, workspace: WorkspaceInfo, name: str) -> ComputeStatus:
        cluster, now = self._compute_snapshot(workspace, name, include_deleted=True)
        return self._compute_status_of(*self._compute_replay(cluster, now))

    @hookimpl
    def simml_compute_nodes(self, workspace: WorkspaceInfo, name: str) -> list[ComputeNode]:
        return [ComputeNode(node.node_id, node.state, node.job_id)
                for node in self.compute_state(workspace, name).nodes]

    @hookimpl
    def simml_compute_update(self, workspace: WorkspaceInfo, name: str, min_nodes: int | None,
                             max_nodes: int | None, idle_seconds_before_scaledown: int | None
                             ) -> ComputeInfo:
        return self.compute_update(workspace, name, min_nodes=min_nodes, max_nodes=max_nodes,
                                   idle_seconds_before_scaledown=idle_seconds_before_scaledown)

    @hookimpl
    def simml_compute_delete(self, workspace: WorkspaceInfo, name: str) -> bool:
        con = self.store(workspace).connection()
        with write_transaction(con):
            self._compute_read(con, workspace, name, include_deleted=False)
            event = ClusterDeleted(self._compute_now(workspace))
            con.execute("INSERT INTO cluster_events (compute, event) VALUES (?, ?)",
                        (name, json.dumps(event_to_dict(event))))
            con.execute("UPDATE computes SET deleted = 1 WHERE name = ?", (name,))
        return True

    # --- the runner's contract (not hooks) -----------------------------------------------------
    def compute_queue_job(self, workspace: WorkspaceInfo, name: str, job_id: str,
                          nodes: int = 1) -> None:
        """Queue ``job_id`` on the cluster, asking for ``nodes`` nodes, at the clock's now."""
        self._compute_append(workspace, name, lambda now, _: JobQueued(now, job_id, nodes),
                     include_deleted=False)

    def compute_job_state(self, workspace: WorkspaceInfo, name: str, job_id: str
                          ) -> tuple[ClusterState, AssignmentInfo | None]:
        """The cluster now and where ``job_id`` got its nodes (None while it waits)."""
        state, assignment, _, _ = self.compute_job_view(workspace, name, job_id)
        return state, assignment

    def compute_job_view(self, workspace: WorkspaceInfo, name: str, job_id: str
                         ) -> tuple[ClusterState, AssignmentInfo | None, datetime | None, datetime]:
        """``compute_job_state`` plus the next simulated moment the cluster changes on its own
        and the clock's now, from one read (what a queued run needs to know how long to wait)."""
        cluster, now = self._compute_snapshot(workspace, name, include_deleted=True)
        state, upcoming = self._compute_replay(cluster, now)
        return state, state.assignments.get(job_id), upcoming, now

    def compute_finish_job(self, workspace: WorkspaceInfo, name: str, job_id: str) -> None:
        """The job's process ended (any outcome): its nodes are idle from now."""
        self._compute_append(workspace, name, lambda now, _: JobFinished(now, job_id))

    def compute_cancel_job(self, workspace: WorkspaceInfo, name: str, job_id: str) -> None:
        """Take the job out of the queue, or free its nodes if it had started."""
        self._compute_append(workspace, name, lambda now, _: JobCanceled(now, job_id))

    def compute_next_change(self, workspace: WorkspaceInfo, name: str) -> datetime | None:
        """The next simulated moment the cluster changes on its own (None: not before an event)."""
        cluster, now = self._compute_snapshot(workspace, name, include_deleted=True)
        return self._compute_replay(cluster, now)[1]

    def compute_effective_resources(self, workspace: WorkspaceInfo, name: str
                                    ) -> tuple[int, float]:
        """Cores and memory (GB) a node of this cluster may use on this host."""
        cluster, _ = self._compute_snapshot(workspace, name, include_deleted=True)
        return int(cluster.config["effective_v_cpus"]), float(cluster.config["effective_memory_gb"])

    def compute_state(self, workspace: WorkspaceInfo, name: str) -> ClusterState:
        """The whole simulated cluster now (nodes, queue, assignments, scale log)."""
        return self._compute_state_of(workspace, name)[1]

    def compute_update(self, workspace: WorkspaceInfo, name: str, min_nodes: int | None = None,
                       max_nodes: int | None = None,
                       idle_seconds_before_scaledown: int | None = None) -> ComputeInfo:
        """``AmlCompute.update``: change the scale settings (None keeps a setting)."""

        def make(now: datetime, cluster: _Cluster) -> ClusterEvent:
            current = cluster_state(cluster.events, now).config
            new_min = current.min_nodes if min_nodes is None else min_nodes
            new_max = current.max_nodes if max_nodes is None else max_nodes
            if new_max < new_min:
                raise ComputeTargetException(
                    "Invalid provisioning configuration, max nodes count must be greater than or "
                    f"equal to min nodes count (max_nodes {new_max}, min_nodes {new_min})")
            return ClusterUpdated(now, min_nodes, max_nodes, idle_seconds_before_scaledown)

        for label, value in (("min_nodes", min_nodes), ("max_nodes", max_nodes),
                             ("idle_seconds_before_scaledown", idle_seconds_before_scaledown)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ComputeTargetException(f"Invalid {label} {value!r}: must be an integer.")
        self._compute_append(workspace, name, make, include_deleted=False)
        return self.simml_compute_get(workspace, name)

