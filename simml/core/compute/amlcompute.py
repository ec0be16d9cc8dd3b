"""``AmlCompute``: a simulated Azure ML compute cluster (Azure's names, signatures, printed texts).

A cluster is provisioned, scales up for queued runs, keeps ``min_nodes`` and lets idle nodes go
after ``idle_seconds_before_scaledown``, all on the workspace clock (``simml.core.compute.cluster``
holds the rules). Its VM size must be one Azure knows (``vm_sizes``); a size larger than this
machine is accepted but a node gets at most the host's cores and memory, and ``create`` prints
what was cut (also kept in ``ComputeInfo.properties['warnings']``).

simml additions: ``provisioning_configuration(..., _timings=Timings(...))`` sets how long simulated
operations take (``cluster.INSTANT`` for tests); with a scaled clock ``wait_for_completion`` also
prints the simulated time it reached. Difference from Azure: ``get_status()`` returns a status
while the cluster is still ``Creating`` (Azure prints a hint and returns None).
"""

from __future__ import annotations

import logging
import re
import string
import sys
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from simml.core.compute.compute import (
    ComputeTarget,
    _parse_time,
    _SimulatedWait,
)
from simml.entities import ComputeInfo, ComputeStatus
from simml.exceptions import ComputeTargetException

if TYPE_CHECKING:
    from simml.core.compute.cluster import Timings
    from simml.core.workspace import Workspace

__all__ = ["AmlCompute", "AmlComputeProvisioningConfiguration", "AmlComputeStatus",
           "AmlComputeNodeStateCounts", "ScaleSettings"]

logger = logging.getLogger(__name__)

COMPUTE_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,15}$")
PASSWORD_SPECIALS = set("`~!@#$%^&*()=+_[]{}|;:./'\",<>?")
_DURATION = re.compile(r"^P(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def _seconds_to_duration(seconds: int | None) -> str:
    return f"PT{int(seconds)}S" if seconds else ""


def _duration_to_seconds(text: str | None) -> int:
    match = _DURATION.match(text or "")
    if not text or match is None:
        return 0
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return int(hours * 3600 + minutes * 60 + seconds)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class ScaleSettings:
    """A cluster's minimum and maximum node counts and idle time before scale-down."""

    def __init__(self, minimum_node_count: int, maximum_node_count: int | None,
                 idle_seconds_before_scaledown: int) -> None:
        self.minimum_node_count = minimum_node_count
        self.maximum_node_count = maximum_node_count
        self.idle_seconds_before_scaledown = idle_seconds_before_scaledown

    def serialize(self) -> dict[str, Any]:
        return {"minNodeCount": self.minimum_node_count, "maxNodeCount": self.maximum_node_count,
                "nodeIdleTimeBeforeScaleDown":
                    _seconds_to_duration(self.idle_seconds_before_scaledown)}

    @staticmethod
    def deserialize(object_dict: dict[str, Any] | None) -> "ScaleSettings | None":
        if not object_dict:
            return None
        for key in ("minNodeCount", "maxNodeCount", "nodeIdleTimeBeforeScaleDown"):
            if key not in object_dict:
                raise ComputeTargetException(
                    f'Invalid scale settings payload, missing "{key}":\n{object_dict}')
        return ScaleSettings(object_dict["minNodeCount"], object_dict["maxNodeCount"],
                             _duration_to_seconds(object_dict["nodeIdleTimeBeforeScaleDown"]))

    def __repr__(self) -> str:
        return (f"ScaleSettings(minimum_node_count={self.minimum_node_count}, "
                f"maximum_node_count={self.maximum_node_count}, "
                f"idle_seconds_before_scaledown={self.idle_seconds_before_scaledown})")


class AmlComputeNodeStateCounts:
    """How many nodes are in each state."""

    def __init__(self, idle_node_count: int, leaving_node_count: int, preempted_node_count: int,
                 preparing_node_count: int, running_node_count: int,
                 unusable_node_count: int) -> None:
        self.idle_node_count = idle_node_count
        self.leaving_node_count = leaving_node_count
        self.preempted_node_count = preempted_node_count
        self.preparing_node_count = preparing_node_count
        self.running_node_count = running_node_count
        self.unusable_node_count = unusable_node_count

    def serialize(self) -> dict[str, int]:
        return {"preparingNodeCount": self.preparing_node_count,
                "runningNodeCount": self.running_node_count,
                "idleNodeCount": self.idle_node_count,
                "unusableNodeCount": self.unusable_node_count,
                "leavingNodeCount": self.leaving_node_count,
                "preemptedNodeCount": self.preempted_node_count}

    @staticmethod
    def deserialize(object_dict: dict[str, Any] | None) -> "AmlComputeNodeStateCounts | None":
        if not object_dict:
            return None
        get = object_dict.get
        return AmlComputeNodeStateCounts(get("idleNodeCount"), get("leavingNodeCount"),
                                         get("preemptedNodeCount"), get("preparingNodeCount"),
                                         get("runningNodeCount"), get("unusableNodeCount"))


class AmlComputeStatus:
    """A cluster's detailed status at one moment (``AmlCompute.get_status()``)."""

    def __init__(self, allocation_state: str | None,
                 allocation_state_transition_time: datetime | None,
                 creation_time: datetime | None, current_node_count: int | None,
                 errors: list[Any] | None, modified_time: datetime | None,
                 node_state_counts: AmlComputeNodeStateCounts | None,
                 provisioning_state: str | None,
                 provisioning_state_transition_time: datetime | None,
                 scale_settings: ScaleSettings | None, target_node_count: int | None,
                 vm_priority: str | None, vm_size: str | None) -> None:
        self.allocation_state = allocation_state
        self.allocation_state_transition_time = allocation_state_transition_time
        self.creation_time = creation_time
        self.current_node_count = current_node_count
        self.errors = errors
        self.modified_time = modified_time
        self.node_state_counts = node_state_counts
        self.provisioning_state = provisioning_state
        self.provisioning_state_transition_time = provisioning_state_transition_time
        self.scale_settings = scale_settings
        self.target_node_count = target_node_count
        self.vm_priority = vm_priority
        self.vm_size = vm_size

    @staticmethod
    def _from(info: ComputeInfo, status: ComputeStatus) -> "AmlComputeStatus":
        props = info.properties
        return AmlComputeStatus(
            allocation_state=status.allocation_state,
            allocation_state_transition_time=status.allocation_state_transition_time,
            creation_time=info.created_time, current_node_count=status.current_node_count,
            errors=list(status.errors) or None,
            modified_time=_parse_time(props.get("modified_time")) or info.created_time,
            node_state_counts=AmlComputeNodeStateCounts(
                status.idle_node_count, status.leaving_node_count, status.preempted_node_count,
                status.preparing_node_count, status.running_node_count,
                status.unusable_node_count),
            provisioning_state=status.provisioning_state,
            provisioning_state_transition_time=_parse_time(
                props.get("provisioning_state_transition_time")),
            scale_settings=ScaleSettings(info.min_nodes, info.max_nodes,
                                         info.idle_seconds_before_scaledown),
            target_node_count=status.target_node_count, vm_priority=info.vm_priority,
            vm_size=info.vm_size)

    @property
    def _ready_node_count(self) -> int:
        counts = self.node_state_counts
        if counts is None:
            return 0
        return (counts.idle_node_count or 0) + (counts.running_node_count or 0)

    def serialize(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None
        return {
            "currentNodeCount": self.current_node_count,
            "targetNodeCount": self.target_node_count,
            "nodeStateCounts": self.node_state_counts.serialize()
            if self.node_state_counts else None,
            "allocationState": self.allocation_state,
            "allocationStateTransitionTime": iso(self.allocation_state_transition_time),
            "errors": self.errors,
            "creationTime": iso(self.creation_time),
            "modifiedTime": iso(self.modified_time),
            "provisioningState": self.provisioning_state,
            "provisioningStateTransitionTime": iso(self.provisioning_state_transition_time),
            "scaleSettings": self.scale_settings.serialize() if self.scale_settings else None,
            "vmPriority": self.vm_priority,
            "vmSize": self.vm_size,
        }

    @staticmethod
    def deserialize(object_dict: dict[str, Any] | None) -> "AmlComputeStatus | None":
        """The inverse of ``serialize`` (flat keys)."""
        if not object_dict:
            return None
        get = object_dict.get
        return AmlComputeStatus(
            get("allocationState"), _parse_time(get("allocationStateTransitionTime")),
            _parse_time(get("creationTime")), get("currentNodeCount"), get("errors"),
            _parse_time(get("modifiedTime")),
            AmlComputeNodeStateCounts.deserialize(get("nodeStateCounts")),
            get("provisioningState"), _parse_time(get("provisioningStateTransitionTime")),
            ScaleSettings.deserialize(get("scaleSettings")), get("targetNodeCount"),
            get("vmPriority"), get("vmSize"))

    def __repr__(self) -> str:
        return f"AmlComputeStatus({self.serialize()!r})"


class AmlComputeProvisioningConfiguration:
    """What ``AmlCompute.provisioning_configuration`` returns; validated on construction."""

    def __init__(self, vm_size: str = "", vm_priority: str = "dedicated", min_nodes: int = 0,
                 max_nodes: int | None = None, idle_seconds_before_scaledown: int = 1800,
                 admin_username: str | None = None, admin_user_password: str | None = None,
                 admin_user_ssh_key: str | None = None,
                 vnet_resourcegroup_name: str | None = None, vnet_name: str | None = None,
                 subnet_name: str | None = None, tags: dict[str, str] | None = None,
                 description: str | None = None,
                 remote_login_port_public_access: str = "NotSpecified",
                 identity_type: str | None = None, identity_id: list[str] | None = None,
                 compute_location: str | None = None, enable_node_public_ip: bool = True, *,
                 _timings: "Timings | dict[str, float] | None" = None,
                 runtime: str | None = None) -> None:
        self._compute_type = AmlCompute
        self.location = None
        self.vm_size = vm_size
        self.vm_priority = vm_priority
        self.scale_settings = ScaleSettings(0 if not min_nodes else min_nodes, max_nodes,
                                            idle_seconds_before_scaledown)
        self.admin_username = admin_username
        self.admin_user_password = admin_user_password
        self.admin_user_ssh_key = admin_user_ssh_key
        self.vnet_resourcegroup_name = vnet_resourcegroup_name
        self.vnet_name = vnet_name
        self.subnet_name = subnet_name
        self.tags = tags
        self.description = description
        self.remote_login_port_public_access = remote_login_port_public_access
        self.identity_type = identity_type
        self.identity_id = identity_id
        self.compute_location = compute_location
        self.enable_node_public_ip = enable_node_public_ip
        self._timings = _timings
        self.runtime = runtime
        self.validate_configuration()

    def _password_is_strong(self) -> bool:
        chars = set(self.admin_user_password or "")
        classes = (set(string.ascii_lowercase), set(string.ascii_uppercase), set(string.digits),
                   PASSWORD_SPECIALS)
        return sum(1 for c in classes if chars & c) >= 3

    def validate_configuration(self) -> None:
        """Raise ``ComputeTargetException`` if the configuration is invalid (Azure's checks, plus
        priority, negative and non-integer counts, which Azure leaves to the service)."""
        if (self.admin_user_password or self.admin_user_ssh_key) and not self.admin_username:
            raise ComputeTargetException(
                "Invalid user credentials, admin username must be provided along with either a "
                "password or SSH key information.")
        if self.admin_username:
            if not self.admin_user_password and not self.admin_user_ssh_key:
                raise ComputeTargetException(
                    "Invalid user credentials, no password or key information provided. Please "
                    "provide either a password or SSH key information.")
            if self.admin_user_password and not self._password_is_strong():
                raise ComputeTargetException(
                    "Invalid admin user password provided. The admin user password must have 3 of "
                    "the following: 1 lowercase character, 1 uppercase character, 1 number, and 1 "
                    "special character `~!@#$%^&*()=+_[]{}|;:./'\",<>?")
        vnet = (self.vnet_name, self.vnet_resourcegroup_name, self.subnet_name)
        if any(vnet) and not all(vnet):
            raise ComputeTargetException(
                "Invalid configuration, not all virtual net information provided. To use a custom "
                "virtual net, please provide vnet name, vnet resource group and subnet name")
        scale = self.scale_settings
        for label, value in (("max nodes count", scale.maximum_node_count),
                             ("min nodes count", scale.minimum_node_count),
                             ("idle_seconds_before_scaledown",
                              scale.idle_seconds_before_scaledown)):
            if value is not None and not _is_int(value):
                raise ComputeTargetException(
                    f"Invalid provisioning configuration, {label} must be an integer, not "
                    f"{value!r}")
        if scale.maximum_node_count is None:
            raise ComputeTargetException(
                "Invalid provisioning configuration, max nodes count is mandatory")
        if scale.maximum_node_count < 0:
            raise ComputeTargetException(
                "Invalid provisioning configuration, max nodes count must be greater than or "
                "equal to 0")
        if scale.minimum_node_count < 0:
            raise ComputeTargetException(
                "Invalid provisioning configuration, min nodes count must be greater than or "
                "equal to 0")
        if scale.maximum_node_count < scale.minimum_node_count:
            raise ComputeTargetException(
                "Invalid provisioning configuration, max nodes count must be greater than or "
                "equal to min nodes count")
        if scale.idle_seconds_before_scaledown is not None \
                and scale.idle_seconds_before_scaledown < 0:
            raise ComputeTargetException(
                "Invalid provisioning configuration, idle_seconds_before_scaledown must be greater "
                "than or equal to 0")
        if self.identity_type:
            if self.identity_type not in ("UserAssigned", "SystemAssigned"):
                raise ComputeTargetException(
                    "Invalid configuration, identity_type must be set to 'UserAssigned' or "
                    "'SystemAssigned'.")
            if self.identity_type == "UserAssigned" and (
                    not isinstance(self.identity_id, list) or not self.identity_id):
                raise ComputeTargetException(
                    "Invalid configuration, please pass the identity_id of the user assigned "
                    "identity as a list (eg. ['resource_ID1','resourceID2',...])")
            if self.identity_type != "UserAssigned" and self.identity_id:
                raise ComputeTargetException(
                    "Invalid configuration, identity_id cannot be set when identity type is not "
                    "user assigned.")
        elif self.identity_id:
            raise ComputeTargetException(
                "Invalid configuration, identity_id cannot be set when identity type is not user "
                "assigned.")
        if self.runtime not in (None, "process", "docker"):
            raise ComputeTargetException(
                f"Invalid runtime {self.runtime!r}: expected 'process' or 'docker' (or None: the "
                "workspace's runtime).")
        if str(self.vm_priority or "").lower() not in ("dedicated", "lowpriority"):
            raise ComputeTargetException(
                f"Invalid vm_priority {self.vm_priority!r}: expected 'dedicated' or "
                "'lowpriority'.")

    def _to_request(self) -> dict[str, Any]:
        """The backend's create request (secrets stay on the client: only their presence)."""
        timings = self._timings
        if timings is not None and not isinstance(timings, dict):
            timings = asdict(timings)
        scale = self.scale_settings
        request: dict[str, Any] = {
            "compute_type": "AmlCompute", "vm_size": self.vm_size,
            "vm_priority": str(self.vm_priority).lower(),
            "min_nodes": scale.minimum_node_count, "max_nodes": scale.maximum_node_count,
            "idle_seconds_before_scaledown": scale.idle_seconds_before_scaledown,
            "admin_username": self.admin_username,
            "vnet_resourcegroup_name": self.vnet_resourcegroup_name,
            "vnet_name": self.vnet_name, "subnet_name": self.subnet_name,
            "tags": dict(self.tags) if self.tags else None, "description": self.description,
            "remote_login_port_public_access": self.remote_login_port_public_access,
            "identity_type": self.identity_type,
            "identity_id": list(self.identity_id) if self.identity_id else None,
            "location": self.compute_location,
            "enable_node_public_ip": self.enable_node_public_ip,
        }
        if timings is not None:
            request["timings"] = dict(timings)
        if self.runtime is not None:
            request["runtime"] = self.runtime
        return request


class AmlCompute(ComputeTarget):
    """A (simulated) Azure Machine Learning compute cluster."""

    _compute_type = "AmlCompute"

    def _bind(self, workspace: "Workspace", info: ComputeInfo) -> None:
        super()._bind(workspace, info)
        props = info.properties
        self.vm_size = info.vm_size
        self.vm_priority = info.vm_priority
        self.scale_settings = ScaleSettings(info.min_nodes, info.max_nodes,
                                            info.idle_seconds_before_scaledown)
        self.admin_username = props.get("admin_username")
        self.admin_user_password = None  # never stored
        self.admin_user_ssh_key = None
        self.vnet_resourcegroup_name = props.get("vnet_resourcegroup_name")
        self.vnet_name = props.get("vnet_name")
        self.subnet_name = props.get("subnet_name")
        self.remote_login_port_public_access = props.get("remote_login_port_public_access")
        self.identity_type = props.get("identity_type")
        self.identity_id = props.get("identity_id")
        self.runtime = props.get("runtime")  # simml: "docker", "process" or None
        self._status: AmlComputeStatus | None = None

    @property
    def status(self) -> AmlComputeStatus:
        """The status read by the last ``refresh_state`` (read once on first use)."""
        if self._status is None:
            self.refresh_state()
        return self._status  # type: ignore[return-value]

    @status.setter
    def status(self, value: AmlComputeStatus | None) -> None:
        self._status = value

    # --- creation ------------------------------------------------------------------------------
    @staticmethod
    def provisioning_configuration(
            vm_size: str = "", vm_priority: str = "dedicated", min_nodes: int = 0,
            max_nodes: int | None = None, idle_seconds_before_scaledown: int = 1800,
            admin_username: str | None = None, admin_user_password: str | None = None,
            admin_user_ssh_key: str | None = None, vnet_resourcegroup_name: str | None = None,
            vnet_name: str | None = None, subnet_name: str | None = None,
            tags: dict[str, str] | None = None, description: str | None = None,
            remote_login_port_public_access: str = "NotSpecified",
            identity_type: str | None = None, identity_id: list[str] | None = None,
            location: str | None = None, enable_node_public_ip: bool = True, *,
            _timings: "Timings | dict[str, float] | None" = None,
            runtime: str | None = None,
    ) -> AmlComputeProvisioningConfiguration:
        """A validated configuration for ``ComputeTarget.create`` (``max_nodes`` is required).

        ``_timings`` (simml only) sets the simulated durations (``cluster.Timings``).
        ``runtime`` (simml only): ``"docker"`` or ``"process"`` runs this target's jobs in
        containers or processes unless a run says otherwise (None: the workspace's runtime).
        """
        return AmlComputeProvisioningConfiguration(
            vm_size, vm_priority, min_nodes, max_nodes, idle_seconds_before_scaledown,
            admin_username, admin_user_password, admin_user_ssh_key, vnet_resourcegroup_name,
            vnet_name, subnet_name, tags, description, remote_login_port_public_access,
            identity_type, identity_id, location, enable_node_public_ip, _timings=_timings,
            runtime=runtime)

    @staticmethod
    def _create(workspace: "Workspace", name: str,
                provisioning_configuration: AmlComputeProvisioningConfiguration) -> "AmlCompute":
        if not isinstance(name, str) or not COMPUTE_NAME.match(name):
            raise ComputeTargetException(
                f"Invalid compute name {name!r}: an AmlCompute name must be 2 to 16 characters "
                "long, start with a letter, and contain only letters, digits and hyphens ('-').")
        info = workspace._backend.compute_create(workspace._info, name,
                                                 provisioning_configuration._to_request())
        for warning in info.properties.get("warnings") or ():
            logger.info("AmlCompute %s: %s", name, warning)
            print(f"Warning: {warning}")
        target = ComputeTarget._from_info(workspace, info)
        target._operation_endpoint = f"simml://computes/{name}/create"
        return target  # type: ignore[return-value]

    # --- state ---------------------------------------------------------------------------------
    def refresh_state(self) -> None:
        backend, ws = self.workspace._backend, self.workspace._info
        info = backend.compute_get(ws, self.name)
        status = backend.compute_status(ws, self.name)
        self._bind(self.workspace, info)
        self.provisioning_state = status.provisioning_state
        self._status = AmlComputeStatus._from(info, status)

    def get_status(self) -> AmlComputeStatus:
        """The cluster's detailed status now (on the workspace clock)."""
        self.refresh_state()
        return self.status

    def update(self, min_nodes: int | None = None, max_nodes: int | None = None,
               idle_seconds_before_scaledown: int | None = None) -> None:
        """Change the scale settings (None keeps a setting)."""
        if min_nodes is None and max_nodes is None and idle_seconds_before_scaledown is None:
            return
        for label, value in (("min_nodes", min_nodes), ("max_nodes", max_nodes),
                             ("idle_seconds_before_scaledown", idle_seconds_before_scaledown)):
            if value is not None and (not _is_int(value) or value < 0):
                raise ComputeTargetException(
                    f"Invalid {label} {value!r}: must be an integer >= 0.")
        self.workspace._backend.compute_update(
            self.workspace._info, self.name, min_nodes=min_nodes, max_nodes=max_nodes,
            idle_seconds_before_scaledown=idle_seconds_before_scaledown)
        self.refresh_state()
        self._operation_endpoint = f"simml://computes/{self.name}/update"

    def list_nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes: id, state, the run on it, and a (simulated) address."""
        nodes = self.workspace._backend.compute_nodes(self.workspace._info, self.name)
        return [{"nodeId": node.node_id, "privateIpAddress": "127.0.0.1",
                 "publicIpAddress": None, "port": 50000 + index,
                 "nodeState": node.state, "runId": node.run_id}
                for index, node in enumerate(nodes)]

    def get_active_runs(self, type: str | None = None, tags: Any = None, properties: Any = None,
                        status: str | None = None) -> list[Any]:
        return []

    @staticmethod
    def supported_vmsizes(workspace: "Workspace", location: str | None = None
                          ) -> list[dict[str, Any]]:
        """Azure's VM-size catalogue as simml knows it (no simml-only test sizes)."""
        from simml.core.compute.vm_sizes import supported_vmsizes
        return supported_vmsizes()

    def detach(self) -> None:
        raise ComputeTargetException(
            "Detach is not supported for AmlCompute object. Try to use delete instead.")

    # --- waiting -------------------------------------------------------------------------------
    def wait_for_completion(self, show_output: bool = False, min_node_count: int | None = None,
                            timeout_in_minutes: float = 25,
                            is_delete_operation: bool = False) -> None:
        """Wait (in simulated time) for provisioning and then for ``min_node_count`` ready nodes
        (default: the cluster's ``min_nodes``), at most ``timeout_in_minutes`` simulated minutes."""
        waiter = _SimulatedWait(self, timeout_in_minutes, show_output)
        if is_delete_operation and self._operation_endpoint is None:
            return
        if self._operation_endpoint:
            state, timed_out = self._wait_for_operation(waiter, show_output, is_delete_operation)
            if timed_out:
                if show_output:
                    print("AmlCompute wait for completion finished\n")
                    self._print_timeout()
                waiter.report_time()
                return
            self._finish_operation(state, is_delete_operation)
        if is_delete_operation:
            waiter.report_time()
            return
        reached, timeout, terminal, errors = self._wait_for_nodes(waiter, min_node_count,
                                                                  show_output)
        if show_output:
            print("AmlCompute wait for completion finished\n")
            if reached:
                print("Minimum number of nodes requested have been provisioned")
            elif timeout:
                self._print_timeout()
            elif terminal:
                print(f'Terminal state of "{self.status.provisioning_state.capitalize()}" has '
                      "been reached\n")
            elif errors:
                print(f"There were errors reported from AmlCompute:\n{self.status.errors}")
        waiter.report_time()

    def _print_timeout(self) -> None:
        status = self._status
        print("Wait timeout has been reached")
        if status is not None:
            print(f'Current provisioning state of AmlCompute is '
                  f'"{str(status.provisioning_state).capitalize()}" and current node count is '
                  f'"{status.current_node_count}"')
        else:
            print(f'Current provisioning state of AmlCompute is '
                  f'"{str(self.provisioning_state).capitalize()}"')

    def _wait_for_nodes(self, waiter: _SimulatedWait, min_node_count: int | None,
                        show_output: bool) -> tuple[bool, bool, bool, bool]:
        self.refresh_state()
        status = self.status
        current = status.provisioning_state
        if show_output and current:
            sys.stdout.write(current)
            sys.stdout.flush()
        wanted = min_node_count if min_node_count else (
            status.scale_settings.minimum_node_count if status.scale_settings else 0)
        reported_ready = 0
        while True:
            reached = status.provisioning_state == "Succeeded" \
                and status._ready_node_count >= (wanted or 0)
            terminal = str(status.provisioning_state).capitalize() in ("Failed", "Canceled")
            errors = bool(status.errors) or bool(self.provisioning_errors)
            now = waiter.now()
            timeout = not reached and waiter.timed_out(now)
            if reached or timeout or terminal or errors:
                break
            ready = status._ready_node_count
            if show_output and ready and ready != reported_ready:
                sys.stdout.write(f"\nWaiting for cluster to scale. {ready} out of {wanted} nodes "
                                 "ready.\n")
                reported_ready = ready
            waiter.sleep(now)
            self.refresh_state()
            status = self.status
            if show_output:
                sys.stdout.write(waiter.dots(waiter.now()))
                if status.provisioning_state != current:
                    sys.stdout.write(f"\n{status.provisioning_state}")
                    current = status.provisioning_state
                sys.stdout.flush()
        if show_output:
            sys.stdout.write("\n")
            sys.stdout.flush()
        return reached, timeout, terminal, errors

    # --- (de)serialisation ---------------------------------------------------------------------
    def serialize(self) -> dict[str, Any]:
        subnet_id = None
        if self.vnet_resourcegroup_name and self.vnet_name and self.subnet_name:
            subnet_id = (f"/subscriptions/{self.workspace.subscription_id}/resourceGroups/"
                         f"{self.vnet_resourcegroup_name}/providers/Microsoft.Network/"
                         f"virtualNetworks/{self.vnet_name}/subnets/{self.subnet_name}")
        identity = ({"type": self.identity_type, "userAssignedIdentities": self.identity_id}
                    if self.identity_type else None)
        return {
            "id": self.id, "name": self.name, "location": self.location, "tags": self.tags,
            "identity": identity,
            "properties": {
                "description": self.description, "resourceId": self.cluster_resource_id,
                "computeType": self.type, "computeLocation": self.cluster_location,
                "provisioningState": self.provisioning_state,
                "provisioningErrors": self.provisioning_errors,
                "properties": {
                    "vmSize": self.vm_size, "vmPriority": self.vm_priority,
                    "scaleSettings": self.scale_settings.serialize()
                    if self.scale_settings else None,
                    "userAccountCredentials": {"adminUserName": self.admin_username,
                                               "adminUserPassword": None,
                                               "adminUserSshPublicKey": None},
                    "subnet": {"id": subnet_id},
                    "remoteLoginPortPublicAccess": self.remote_login_port_public_access,
                },
                "status": self._status.serialize() if self._status else None,
            },
        }

    @staticmethod
    def deserialize(workspace: "Workspace", object_dict: dict[str, Any]) -> "AmlCompute":
        """An ``AmlCompute`` from ``serialize()``'s output (no backend call)."""
        props = object_dict.get("properties") or {}
        if props.get("computeType") != "AmlCompute":
            raise ComputeTargetException(
                f'Invalid cluster payload, not "AmlCompute":\n{object_dict}')
        aml = props.get("properties") or {}
        scale = ScaleSettings.deserialize(aml.get("scaleSettings")) or ScaleSettings(0, 0, 1800)
        status = AmlComputeStatus.deserialize(props.get("status"))
        identity = object_dict.get("identity") or {}
        vnet = re.search(r"/resourceGroups/([^/]+)/providers/Microsoft\.Network/virtualNetworks/"
                         r"([^/]+)/subnets/([^/]+)$", (aml.get("subnet") or {}).get("id") or "")
        vnet_parts = vnet.groups() if vnet else (None, None, None)
        info = ComputeInfo(
            name=object_dict["name"], compute_type="AmlCompute",
            provisioning_state=props.get("provisioningState") or "Unknown",
            vm_size=aml.get("vmSize"), vm_priority=aml.get("vmPriority"),
            min_nodes=scale.minimum_node_count, max_nodes=scale.maximum_node_count or 0,
            idle_seconds_before_scaledown=scale.idle_seconds_before_scaledown,
            created_time=status.creation_time if status else None,
            properties={
                "tags": object_dict.get("tags"), "description": props.get("description"),
                "location": object_dict.get("location"),
                "admin_username": (aml.get("userAccountCredentials") or {}).get("adminUserName"),
                "remote_login_port_public_access": aml.get("remoteLoginPortPublicAccess"),
                "vnet_resourcegroup_name": vnet_parts[0], "vnet_name": vnet_parts[1],
                "subnet_name": vnet_parts[2],
                "identity_type": identity.get("type"),
                "identity_id": identity.get("userAssignedIdentities"),
                "modified_time": status.modified_time.isoformat()
                if status and status.modified_time else None,
            })
        target = ComputeTarget._from_info(workspace, info)
        target._status = status  # type: ignore[attr-defined]
        return target  # type: ignore[return-value]
