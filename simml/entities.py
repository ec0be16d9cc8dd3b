"""Values that cross the backend interface.

Every value a hook or a store method takes or returns is a frozen dataclass defined here. None of
them carries a backend's private detail (a database handle, a path inside the workspace's storage):
a remote backend must be able to produce each from a REST response. Mapping fields are plain dicts
for cheap construction; treat them as read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
LOCAL_RESOURCE_GROUP = "simml"
DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True)
class WorkspaceRef:
    """What a user names when asking for a workspace (config.json's keys and ``auth``)."""

    name: str
    subscription_id: str = LOCAL_SUBSCRIPTION
    resource_group: str = LOCAL_RESOURCE_GROUP
    location: str = "local"
    auth: dict[str, Any] | None = None


@dataclass(frozen=True)
class WorkspaceInfo:
    """A resolved workspace as the backend knows it."""

    name: str
    subscription_id: str
    resource_group: str
    location: str
    workspace_id: str
    backend: str
    created_time: datetime
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentInfo:
    id: str
    name: str
    created_time: datetime
    archived_time: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusChange:
    """One recorded status transition of a run."""

    status: str
    time: datetime

HYPERDRIVE_RUN_TYPE = "hyperdrive"
"""The run type of a HyperDrive sweep's parent (children are ordinary script runs)."""


@dataclass(frozen=True)
class RunCreate:
    """What a client asks for when it creates a run."""

    run_id: str
    experiment_name: str
    run_type: str = "azureml.scriptrun"
    status: str = "NotStarted"
    parent_id: str | None = None
    display_name: str | None = None
    target: str = "local"
    created_time: datetime | None = None
    definition: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    submitted_by: str = ""


@dataclass(frozen=True)
class RunInfo:
    """A run's record in run history."""

    id: str
    experiment_id: str
    experiment_name: str
    number: int
    run_type: str
    status: str
    target: str
    created_time: datetime
    parent_id: str | None = None
    display_name: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    definition: dict[str, Any] | None = None
    submitted_by: str = ""
    status_history: tuple[StatusChange, ...] = ()


@dataclass(frozen=True)
class RunQuery:
    """Filters for listing runs; results are newest first."""

    experiment_name: str | None = None
    run_type: str | None = None
    status: str | None = None
    tags: dict[str, str | None] | None = None  # a None value means "has the tag, any value"
    properties: dict[str, str | None] | None = None
    parent_id: str | None = None
    include_children: bool = False
    limit: int | None = None


# A metric row: (name, kind, value, step, unix time). Kinds: "scalar", "list", "row", "table", "image".
MetricRow = tuple[str, str, Any, "int | None", float]


@dataclass(frozen=True)
class MetricBatch:
    """Metric rows of one run, written in one transaction (rows stay tuples: 100k/s matters)."""

    run_id: str
    rows: tuple[MetricRow, ...]


@dataclass(frozen=True)
class MetricSeries:
    """Consecutive stored values of one metric (a chunk), in logging order.

    A run's values of a metric are the concatenation of its series in the order returned.
    """

    name: str
    kind: str
    values: tuple[Any, ...]
    steps: tuple[int | None, ...]
    times: tuple[float, ...]


@dataclass(frozen=True)
class BestRun:
    """A run and its best value of a metric (max or min over everything it logged)."""

    run_id: str
    value: float


@dataclass(frozen=True)
class ClockState:
    """A workspace's persisted clock: ``system``, ``scaled`` (``factor`` times real time from the
    anchors) or ``manual`` (``manual_now``, moved only by ``advance``)."""

    kind: str
    factor: float = 1.0
    manual_now: datetime | None = None
    anchor_real: datetime | None = None
    anchor_sim: datetime | None = None


@dataclass(frozen=True)
class BackendInfo:
    """The loaded backend: its entry-point name and what it can do."""

    name: str
    capabilities: frozenset[str] = frozenset()


# --- models ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelRegistration:
    """A request to register a model version.

    The files come either from the client's disk (``local_path``, a file or folder given by the user)
    or from a run's files (``run_id`` plus ``run_path``, a file or a folder prefix).
    """

    name: str
    local_path: str | None = None
    run_id: str | None = None
    run_path: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    model_framework: str | None = None
    model_framework_version: str | None = None
    experiment_name: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    created_time: datetime
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    model_framework: str | None = None
    model_framework_version: str | None = None
    run_id: str | None = None
    experiment_name: str | None = None
    files: tuple[str, ...] = ()
    """Paths of the model's files relative to its root; the first segment is the registered name."""

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class ModelQuery:
    name: str | None = None
    tags: tuple[tuple[str, str | None], ...] = ()
    properties: tuple[tuple[str, str | None], ...] = ()
    run_id: str | None = None
    latest: bool = False


# --- datastores -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatastoreInfo:
    name: str
    datastore_type: str
    container_name: str
    account_name: str
    is_default: bool = False


@dataclass(frozen=True)
class StorageRegistration:
    """What ``register_azure_blob_container`` / ``register_azure_file_share`` pass beyond the
    names, as Azure's signatures have them. The credential (account key or SAS token) is handed
    to the backend and never written to disk by simml; ``repr`` leaves it out."""

    account_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    protocol: str | None = None
    endpoint: str | None = None
    create_if_not_exists: bool = False
    skip_validation: bool = False
    blob_cache_timeout: int | None = None
    grant_workspace_access: bool = False
    subscription_id: str | None = None
    resource_group: str | None = None


@dataclass(frozen=True)
class UploadItem:
    """One client file to upload: its path on the client, and where it goes in the datastore."""

    source: str
    target: str


@dataclass(frozen=True)
class TransferResult:
    transferred: tuple[str, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class DatastoreFile:
    """One file of a datastore as a blob listing shows it: path, size, modification time."""

    path: str
    size: int
    modified: datetime


# --- compute, environments, execution (the run lifecycle) -----------------------------------------

@dataclass(frozen=True)
class ComputeInfo:
    name: str
    compute_type: str
    provisioning_state: str
    vm_size: str | None = None
    vm_priority: str | None = None
    min_nodes: int = 0
    max_nodes: int = 0
    idle_seconds_before_scaledown: int = 1800
    created_time: datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ComputeStatus:
    provisioning_state: str
    allocation_state: str
    current_node_count: int
    target_node_count: int
    idle_node_count: int = 0
    running_node_count: int = 0
    preparing_node_count: int = 0
    leaving_node_count: int = 0
    unusable_node_count: int = 0
    preempted_node_count: int = 0
    queued_runs: int = 0
    errors: tuple[str, ...] = ()
    allocation_state_transition_time: datetime | None = None
    next_change_time: datetime | None = None
    """When the cluster will next change on its own (a node ready, an idle timeout), if known:
    waiters sleep until then instead of polling."""


@dataclass(frozen=True)
class ComputeNode:
    node_id: str
    state: str
    run_id: str | None = None


@dataclass(frozen=True)
class EnvironmentInfo:
    name: str
    version: str | None
    definition: dict[str, Any]


@dataclass(frozen=True)
class RunSubmission:
    """A run to execute: its id, where, and its full (serialisable) definition."""

    run_id: str
    experiment_name: str
    target: str
    definition: dict[str, Any]
    snapshot_id: str | None = None


@dataclass(frozen=True)
class StageContext:
    """What every stage hook of the local runner gets: the run and its definition."""

    workspace: WorkspaceInfo
    run_id: str
    experiment_name: str
    target: str
    definition: dict[str, Any]
    snapshot_id: str | None = None


@dataclass(frozen=True)
class PreparedEnvironment:
    """Result of the prepare stage: which runtime runs the job and in which environment."""

    runtime: str
    environment_key: str
    cached: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Allocation:
    """Result of the scale stage: the node a job got, and the resources it may use."""

    compute: str
    node_id: str
    v_cpus: int
    memory_gb: float


@dataclass(frozen=True)
class ExecutionResult:
    """Result of the execute stage."""

    exit_code: int | None
    signal: int | None = None
    out_of_memory: bool = False
    canceled: bool = False
    timed_out: bool = False
    error: dict[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not (self.canceled or self.timed_out or self.out_of_memory)


@dataclass(frozen=True)
class RunHandle:
    run_id: str
    backend: str


@dataclass(frozen=True)
class RunObservation:
    """What a client learns from one look at a running run."""

    status: str
    stage: str | None
    log_lines: tuple[str, ...] = ()
    cursor: int = 0
    compute: ComputeStatus | None = None
    error: dict[str, Any] | None = None


# --- web services (deployment) ----------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceDeployment:
    """A request to deploy (or redeploy) a web service: everything the backend needs, validated.

    ``source_items`` are the client's files of the app (the inference config's source directory,
    or the entry script alone) with their paths inside the app root; ``entry_script`` is the
    script's path inside the app root. ``models`` are ``(name, version)`` pairs of registered
    models. ``environment`` is an environment definition (``Environment._definition()``), or None
    for the interpreter simml runs on. ``server`` is ``"simml"`` (simml's own scoring server) or
    ``"azmlinfsrv"`` (``azureml-inference-server-http``). ``config`` is the deployment
    configuration as Azure serialises it (``cpu_cores``, ``memory_gb``, ...) and
    ``inference_config`` the inference configuration's (``entry_script``, ``source_directory``,
    ...), kept so that ``reload()`` and ``update()`` can redeploy.
    """

    name: str
    compute_type: str
    entry_script: str
    source_items: tuple[UploadItem, ...]
    models: tuple[tuple[str, int], ...] = ()
    environment: dict[str, Any] | None = None
    port: int | None = None
    auth_enabled: bool = False
    primary_key: str | None = None
    secondary_key: str | None = None
    server: str = "simml"
    worker_count: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    inference_config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class ServiceInfo:
    """A web service as the backend knows it after one look (its state refreshed).

    ``state`` is one of the local states ``deploying``, ``running``, ``failed``, ``deleted``
    (the ACI facade maps them to Azure's cloud states). ``error`` explains a failure
    (``{"code": ..., "message": ...}``). ``runtime`` says where the service process runs
    (``"process"``; ``"docker"`` when a container runtime serves it).
    """

    name: str
    compute_type: str
    state: str
    port: int | None
    scoring_uri: str | None
    swagger_uri: str | None
    created_time: datetime
    updated_time: datetime
    models: tuple[tuple[str, int], ...] = ()
    auth_enabled: bool = False
    server: str = "simml"
    runtime: str = "process"
    error: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    inference_config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    description: str | None = None
