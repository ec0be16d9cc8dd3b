"""``ComputeTarget``: Azure's base class of compute targets, served by the backend's compute hooks.

``ComputeTarget(ws, name)`` fetches the target and returns the subclass for its type
(``AmlCompute``), or raises ``ComputeTargetException('ComputeTargetNotFound: ...')`` as Azure does.
``'local'`` is not a compute target here either: ``ScriptRunConfig(compute_target='local')`` runs
on this machine, and ``ComputeTarget.list`` leaves it out.

Waiting happens on the workspace clock (simulated time): a manual clock is polled every 20 ms
until someone advances it; system and scaled clocks sleep until the cluster's next change
(divided by the clock factor), never more often than every 20 ms of real time.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from simml.clock import clock_now
from simml.entities import ComputeInfo
from simml.exceptions import ComputeTargetException, UserErrorException

if TYPE_CHECKING:
    from simml.core.workspace import Workspace

RESERVED_NAMES = ("amlcompute", "local", "containerinstance")
MIN_POLL_SECONDS = 0.02
"""Never poll faster than this (real seconds)."""
MAX_POLL_SECONDS = 1.0
"""Look again at least this often (real seconds): another process may queue work or advance time."""
TICK_SECONDS = 5.0
"""Azure polls every 5 s and prints a dot each time; simml prints a dot per 5 simulated seconds."""
MAX_DOTS_PER_POLL = 20


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class _SimulatedWait:
    """Deadline, polling and dots of one ``wait_for_completion``, all in simulated time."""

    def __init__(self, target: "ComputeTarget", timeout_in_minutes: float,
                 show_output: bool) -> None:
        self.target = target
        self.clock = target.workspace.clock
        self.show_output = show_output
        self.kind = "system"
        self.factor = 1.0
        self.start = self.now()
        self.deadline = self.start + timedelta(minutes=float(timeout_in_minutes))
        self.ticks = 0

    def now(self) -> datetime:
        state = self.clock.state()
        self.kind, self.factor = state.kind, state.factor
        return clock_now(state, datetime.now(timezone.utc))

    def timed_out(self, now: datetime) -> bool:
        return now >= self.deadline

    def dots(self, now: datetime) -> str:
        due = int((now - self.start).total_seconds() // TICK_SECONDS) - self.ticks
        if due <= 0:
            return ""
        self.ticks += due
        return "." * min(due, MAX_DOTS_PER_POLL)

    def sleep(self, now: datetime) -> None:
        """Sleep until the next thing worth looking at: the cluster's next change, the deadline,
        the next dot (when printing); bounded to [20 ms, 1 s] of real time."""
        if self.kind == "manual":
            time.sleep(MIN_POLL_SECONDS)  # only another party moves this clock
            return
        wake = self.deadline
        upcoming = self.target._next_change()
        if upcoming is not None and upcoming > now:
            wake = min(wake, upcoming)
        if self.show_output:
            wake = min(wake, self.start + timedelta(seconds=TICK_SECONDS * (self.ticks + 1)))
        real = (wake - now).total_seconds() / (self.factor or 1.0) + 0.001
        time.sleep(min(max(real, MIN_POLL_SECONDS), MAX_POLL_SECONDS))

    def report_time(self) -> None:
        """With a scaled clock, say where simulated time got to."""
        if self.show_output and self.kind == "scaled":
            now = self.now()
            print(f"Simulated time reached: {now.strftime('%Y-%m-%d %H:%M:%S')} UTC "
                  f"(clock scaled:{self.factor:g}, "
                  f"{(now - self.start).total_seconds():.0f} simulated seconds waited)")


class ComputeTarget:
    """A compute target of a workspace (base class; ``ComputeTarget(ws, name)`` looks one up)."""

    _compute_type: str | None = None

    def __new__(cls, workspace: "Workspace" = None,  # type: ignore[assignment]
                name: str | None = None) -> Any:
        if workspace is not None and name:
            info = workspace._backend.compute_get(workspace._info, name)
            return ComputeTarget._from_info(workspace, info)
        return super().__new__(cls)

    def __init__(self, workspace: "Workspace" = None,  # type: ignore[assignment]
                 name: str | None = None) -> None:
        pass

    # --- construction --------------------------------------------------------------------------
    @staticmethod
    def _class_for(compute_type: str) -> type["ComputeTarget"]:
        if compute_type == "AmlCompute":
            from simml.core.compute.amlcompute import AmlCompute
            return AmlCompute
        if compute_type == "local":
            return _LocalTarget
        return ComputeTarget

    @staticmethod
    def _from_info(workspace: "Workspace", info: ComputeInfo) -> "ComputeTarget":
        target = object.__new__(ComputeTarget._class_for(info.compute_type))
        target._operation_endpoint = None
        target._bind(workspace, info)
        return target

    def _bind(self, workspace: "Workspace", info: ComputeInfo) -> None:
        props = info.properties
        self.workspace = workspace
        self._info = info
        self.name = info.name
        self.id = (f"/subscriptions/{workspace.subscription_id}/resourceGroups/"
                   f"{workspace.resource_group}/providers/Microsoft.MachineLearningServices/"
                   f"workspaces/{workspace.name}/computes/{info.name}")
        self.location = props.get("location") or workspace.location
        self.type = info.compute_type
        self.tags = props.get("tags")
        self.description = props.get("description")
        self.created_on = info.created_time
        self.modified_on = _parse_time(props.get("modified_time")) or info.created_time
        self.provisioning_state = info.provisioning_state
        self.provisioning_errors = props.get("provisioning_errors")
        self.cluster_resource_id = props.get("cluster_resource_id")
        self.cluster_location = props.get("location") or workspace.location
        self.is_attached = False

    # --- Azure's static API --------------------------------------------------------------------
    @staticmethod
    def create(workspace: "Workspace", name: str, provisioning_configuration: Any
               ) -> "ComputeTarget":
        """Provision a compute target from a provisioning configuration (returns at once; call
        ``wait_for_completion`` to wait for it)."""
        validate = getattr(provisioning_configuration, "validate_configuration", None)
        if validate is None:
            raise ComputeTargetException(
                f"Invalid provisioning configuration {provisioning_configuration!r}: build one "
                "with AmlCompute.provisioning_configuration(...).")
        validate()
        if name in RESERVED_NAMES:
            raise UserErrorException(
                f"Please specify a different target name. {name} is a reserved name.")
        target_class = provisioning_configuration._compute_type
        return target_class._create(workspace, name, provisioning_configuration)

    @staticmethod
    def attach(workspace: "Workspace", name: str, attach_configuration: Any) -> "ComputeTarget":
        raise ComputeTargetException(
            "simml cannot attach external compute; create an AmlCompute cluster with "
            "ComputeTarget.create(ws, name, AmlCompute.provisioning_configuration(...)), or run on "
            "this machine with ScriptRunConfig(compute_target='local').")

    @staticmethod
    def list(workspace: "Workspace") -> list["ComputeTarget"]:
        """Every compute target of the workspace (``'local'`` is not one)."""
        return [ComputeTarget._from_info(workspace, info)
                for info in workspace._backend.compute_list(workspace._info)
                if info.compute_type != "local"]

    @staticmethod
    def deserialize(workspace: "Workspace", object_dict: dict[str, Any]) -> "ComputeTarget":
        compute_type = (object_dict.get("properties") or {}).get("computeType")
        cls = ComputeTarget._class_for(str(compute_type))
        if "deserialize" not in vars(cls):
            raise ComputeTargetException(f"Invalid compute payload: {object_dict!r}")
        return cls.deserialize(workspace, object_dict)

    # --- instance API --------------------------------------------------------------------------
    def refresh_state(self) -> None:
        """Re-read the target from the backend."""
        self._bind(self.workspace, self.workspace._backend.compute_get(self.workspace._info,
                                                                     self.name))

    def get_status(self) -> Any:
        self.refresh_state()
        return self.provisioning_state

    def delete(self) -> None:
        self.workspace._backend.compute_delete(self.workspace._info, self.name)
        self.provisioning_state = "Deleting"
        self._operation_endpoint = f"simml://computes/{self.name}/delete"

    def detach(self) -> None:
        raise ComputeTargetException(
            f"Detach is not supported for {type(self).__name__} object. Try to use delete instead.")

    def serialize(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "location": self.location, "type": self.type,
                "tags": self.tags, "description": self.description,
                "created_on": self.created_on.isoformat() if self.created_on else None,
                "modified_on": self.modified_on.isoformat() if self.modified_on else None,
                "provisioning_state": self.provisioning_state,
                "provisioning_errors": self.provisioning_errors}

    def wait_for_completion(self, show_output: bool = False, is_delete_operation: bool = False
                            ) -> None:
        """Wait for the current provisioning (or delete) operation to finish."""
        waiter = _SimulatedWait(self, 60 * 24 * 365, show_output)
        state, timed_out = self._wait_for_operation(waiter, show_output, is_delete_operation)
        if not timed_out:
            self._finish_operation(state, is_delete_operation)

    # --- waiting (shared with AmlCompute) ------------------------------------------------------
    def _next_change(self) -> datetime | None:
        try:
            return self.workspace._backend.compute_status(self.workspace._info,
                                                          self.name).next_change_time
        except ComputeTargetException:
            return None

    def _operation_state(self, is_delete_operation: bool) -> str:
        """Azure's long-running-operation status: the provisioning state while it is in
        progress, then ``Succeeded`` / ``Failed`` / ``Canceled``."""
        if is_delete_operation:
            try:
                status = self.workspace._backend.compute_status(self.workspace._info, self.name)
            except ComputeTargetException:
                return "Succeeded"  # gone
            return "Succeeded" if status.provisioning_state == "Deleted" else "Deleting"
        self.refresh_state()
        return self.provisioning_state

    def _wait_for_operation(self, waiter: _SimulatedWait, show_output: bool,
                            is_delete_operation: bool) -> tuple[str, bool]:
        state = self._operation_state(is_delete_operation)
        current = state
        if show_output:
            sys.stdout.write(state)
            sys.stdout.flush()
        while state not in ("Succeeded", "Failed", "Canceled"):
            now = waiter.now()
            if waiter.timed_out(now):
                if show_output:
                    sys.stdout.write("\n")
                    sys.stdout.flush()
                return state, True
            waiter.sleep(now)
            state = self._operation_state(is_delete_operation)
            if show_output:
                sys.stdout.write(waiter.dots(waiter.now()))
                if state != current:
                    sys.stdout.write(f"\n{state}")
                    current = state
                sys.stdout.flush()
        return state, False

    def _finish_operation(self, state: str, is_delete_operation: bool) -> None:
        print(f'Provisioning operation finished, operation "{state}"')
        if not is_delete_operation:
            self.refresh_state()
        if state != "Succeeded":
            raise ComputeTargetException(
                "Compute object provisioning polling reached non-successful terminal state, "
                f"current provisioning state: {self.provisioning_state}")

    def __repr__(self) -> str:
        workspace = getattr(self, "workspace", None)
        return (f"{type(self).__name__}(workspace={workspace!r}, "
                f"name={getattr(self, 'name', None)}, id={getattr(self, 'id', None)}, "
                f"type={getattr(self, 'type', None)}, "
                f"provisioning_state={getattr(self, 'provisioning_state', None)}, "
                f"location={getattr(self, 'location', None)}, tags={getattr(self, 'tags', None)})")


class _LocalTarget(ComputeTarget):
    """A ``'local'`` target a backend reported: this machine (nothing to provision)."""

    _compute_type = "local"

    def refresh_state(self) -> None:
        return None

    def delete(self) -> None:
        raise ComputeTargetException("The 'local' target is this machine; it cannot be deleted.")
