"""The backend interface: every hook a backend may implement, in one place.

A backend is a pluggy plug-in registered under the entry-point group ``simml.backends``; the core
loads exactly one per workspace (``SIMML_BACKEND`` / config.json's ``backend``) and reaches it only
through ``simml.plugins.Backend``, the typed facade over these hooks. Hooks are named
``simml_<noun>_<verb>``, are called with keyword arguments only, and take and return the frozen
dataclasses of ``simml.entities``. Most are *firstresult*: the first non-None answer wins; a hook no
plug-in answers raises ``BackendCapabilityException`` naming it.

There are two ways to execute a run:

* a **remote** backend (Azure) implements ``simml_run_submit`` and ``simml_run_observe`` only; the
  service drives the stages and simml records the statuses it observes;
* the **local** backend implements submit by starting its runner, which drives the stage hooks
  ``simml_stage_prepare`` -> ``simml_stage_scale`` -> ``simml_stage_execute`` ->
  ``simml_stage_postprocess`` through the pure run-state machine (``simml.runstate``).

``docs/architecture.md`` maps every hook to the local implementation and to the azureml-core call
the Azure plug-in makes; ``tests/test_hookspecs.py`` keeps that table complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from simml.entities import (
        BackendInfo,
        ExecutionResult,
        Allocation,
        PreparedEnvironment,
        StageContext,
        ClockState,
        ComputeInfo,
        ComputeNode,
        ComputeStatus,
        DatastoreFile,
        DatastoreInfo,
        EnvironmentInfo,
        ModelInfo,
        ModelQuery,
        ModelRegistration,
        RunHandle,
        RunObservation,
        RunSubmission,
        ServiceDeployment,
        ServiceInfo,
        StorageRegistration,
        TransferResult,
        UploadItem,
        WorkspaceInfo,
        WorkspaceRef,
    )
    from simml.progress import Progress
    from simml.store import RunHistoryStore

PROJECT = "simml"
hookspec = pluggy.HookspecMarker(PROJECT)


# --- the backend itself ------------------------------------------------------------------------

@hookspec(firstresult=True)
def simml_backend_describe() -> BackendInfo | None:
    """Name the backend and list its capabilities (e.g. ``"manual-clock"``, ``"docker"``).

    Stops at first non-None result.
    """


# --- workspaces --------------------------------------------------------------------------------

@hookspec(firstresult=True)
def simml_workspace_get(ref: WorkspaceRef) -> WorkspaceInfo | None:
    """Resolve an existing workspace.

    :param ref: the subscription, resource group and name the user gave (config.json or arguments).
    :raises WorkspaceException: when it does not exist.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_workspace_create(ref: WorkspaceRef, exist_ok: bool) -> WorkspaceInfo | None:
    """Create a workspace (``exist_ok`` returns an existing one instead of raising).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_workspace_list(subscription_id: str | None, resource_group: str | None
                         ) -> list[WorkspaceInfo] | None:
    """List workspaces, optionally within one subscription / resource group.

    Stops at first non-None result.
    """


# --- simulated time ----------------------------------------------------------------------------

@hookspec(firstresult=True)
def simml_clock_get(workspace: WorkspaceInfo) -> ClockState | None:
    """The workspace's clock setting, which every process reads (a fresh workspace: ``system``).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_clock_set(workspace: WorkspaceInfo, setting: str) -> ClockState | None:
    """Switch the clock to ``system``, ``manual`` or ``scaled:N``; simulated time continues from
    its current value (it never jumps back). A backend that cannot simulate time raises.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_clock_advance(workspace: WorkspaceInfo, seconds: float) -> ClockState | None:
    """Move a manual clock forward (``seconds`` >= 0); other kinds raise.

    Stops at first non-None result.
    """


# --- runtimes: how a run's job is executed ------------------------------------------------------

@hookspec(firstresult=True)
def simml_runtime_get(workspace: WorkspaceInfo) -> str | None:
    """The workspace's default runtime for submitted runs: ``"process"`` (a fresh workspace) or
    ``"docker"``. A run's explicit ``use_docker`` / ``environment.docker.enabled`` and its compute
    target's runtime come first (docs/docker.md).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_runtime_set(workspace: WorkspaceInfo, runtime: str) -> str | None:
    """Set the workspace's default runtime (``"process"`` or ``"docker"``; anything else raises
    ``InvalidValueException``). Does not probe for a Docker engine: a Docker run without one fails
    in Preparing, saying how to start one.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_docker_build_base(tag: str | None, method: str, log: Any) -> str | None:
    """Build simml's Docker base image (default tag ``simml-base:<simml version>``) without any
    container registry: a root filesystem (``method`` ``"hostpkg"``: the host's own Debian python3
    packages; ``"debootstrap"``: a minimal Debian) plus scikit-learn, numpy, scipy and joblib at
    the host's versions, imported into the local engine. Streams progress lines to ``log``;
    returns the image id. A backend without a Docker runtime does not answer.

    Stops at first non-None result.
    """


# --- run history -------------------------------------------------------------------------------

@hookspec(firstresult=True)
def simml_history_open(workspace: WorkspaceInfo) -> RunHistoryStore | None:
    """Return the workspace's run-history store (experiments, runs, metrics, tags, files).

    The returned object implements ``simml.store.RunHistoryStore``; the core caches it per workspace
    object, so opening may be costly but must be safe to repeat.
    Stops at first non-None result.
    """


# --- model registry ----------------------------------------------------------------------------

@hookspec(firstresult=True)
def simml_model_register(workspace: WorkspaceInfo, registration: ModelRegistration
                         ) -> ModelInfo | None:
    """Register a new version of a model: version = highest existing + 1, atomic under concurrency.

    :raises ModelPathNotFoundException: a run path that is not among the run's files.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_model_get(workspace: WorkspaceInfo, name: str, version: int | None) -> ModelInfo | None:
    """Return one model version (the latest when ``version`` is None).

    :raises ModelNotFoundException: unknown name or version.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_model_list(workspace: WorkspaceInfo, query: ModelQuery) -> list[ModelInfo] | None:
    """List model versions matching ``query``, newest first.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_model_update(workspace: WorkspaceInfo, name: str, version: int,
                       add_tags: dict[str, str] | None, remove_tags: list[str] | None,
                       add_properties: dict[str, str] | None, description: str | None
                       ) -> ModelInfo | None:
    """Change a model version's tags, properties (add-only) or description.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_model_download(workspace: WorkspaceInfo, name: str, version: int, target_dir: str,
                         exist_ok: bool) -> str | None:
    """Copy a model version's files under ``target_dir``; return the path of the model root.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_model_delete(workspace: WorkspaceInfo, name: str, version: int) -> bool | None:
    """Delete one model version. Stops at first non-None result."""


# --- datastores --------------------------------------------------------------------------------

@hookspec(firstresult=True)
def simml_datastore_get(workspace: WorkspaceInfo, name: str | None) -> DatastoreInfo | None:
    """Return a datastore by name, or the default one when ``name`` is None.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_datastore_list(workspace: WorkspaceInfo) -> list[DatastoreInfo] | None:
    """All datastores of the workspace. Stops at first non-None result."""


@hookspec(firstresult=True)
def simml_datastore_register(workspace: WorkspaceInfo, info: DatastoreInfo, location: str,
                             overwrite: bool, storage: StorageRegistration | None
                             ) -> DatastoreInfo | None:
    """Register a datastore; ``location`` is backend-specific (a folder, a container URL);
    ``storage`` is what an Azure blob container or file share is registered with (credential,
    endpoint, options; None for a local folder), never to be written to disk.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_datastore_set_default(workspace: WorkspaceInfo, name: str) -> DatastoreInfo | None:
    """Make a datastore the default. Stops at first non-None result."""


@hookspec(firstresult=True)
def simml_datastore_upload(workspace: WorkspaceInfo, name: str, items: tuple[UploadItem, ...],
                           overwrite: bool, progress: Progress | None) -> TransferResult | None:
    """Upload client files; existing targets are skipped unless ``overwrite``; no partial file is
    ever visible; targets escaping the datastore raise ``UnsafePathException``.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_datastore_download(workspace: WorkspaceInfo, name: str, prefix: str | None,
                             target_path: str, overwrite: bool, progress: Progress | None
                             ) -> TransferResult | None:
    """Download files under ``prefix`` into ``target_path`` (keeping their relative paths).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_datastore_list_files(workspace: WorkspaceInfo, name: str, prefix: str | None
                               ) -> list[str] | None:
    """Relative paths of the files under ``prefix``. Stops at first non-None result."""


@hookspec(firstresult=True)
def simml_datastore_stat(workspace: WorkspaceInfo, name: str, prefix: str | None
                         ) -> list[DatastoreFile] | None:
    """The files whose path starts with ``prefix`` (Azure Blob's string prefix), sorted by path,
    with size and modification time (what a blob listing shows; the emulator's List Blobs).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_datastore_read(workspace: WorkspaceInfo, name: str, path: str, offset: int,
                         length: int) -> bytes | None:
    """Up to ``length`` bytes of one file from ``offset`` (fewer at its end; the emulator's Get
    Blob reads in chunks); ``NotFoundException`` when the file does not exist.

    Stops at first non-None result.
    """


# --- compute -----------------------------------------------------------------------------------

@hookspec(firstresult=True)
def simml_compute_get(workspace: WorkspaceInfo, name: str) -> ComputeInfo | None:
    """Return a compute target or raise ``ComputeTargetException`` (ComputeTargetNotFound).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_compute_list(workspace: WorkspaceInfo) -> list[ComputeInfo] | None:
    """All compute targets. Stops at first non-None result."""


@hookspec(firstresult=True)
def simml_compute_create(workspace: WorkspaceInfo, name: str, config: dict[str, Any]
                         ) -> ComputeInfo | None:
    """Create an AmlCompute cluster from a validated provisioning configuration.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_compute_status(workspace: WorkspaceInfo, name: str) -> ComputeStatus | None:
    """Node counts and allocation state now. Stops at first non-None result."""


@hookspec(firstresult=True)
def simml_compute_update(workspace: WorkspaceInfo, name: str, min_nodes: int | None,
                         max_nodes: int | None, idle_seconds_before_scaledown: int | None
                         ) -> ComputeInfo | None:
    """Change an AmlCompute cluster's scale settings (None keeps a setting).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_compute_nodes(workspace: WorkspaceInfo, name: str) -> list[ComputeNode] | None:
    """The cluster's nodes now: id, state, and the run on each. Stops at first non-None result."""


@hookspec(firstresult=True)
def simml_compute_delete(workspace: WorkspaceInfo, name: str) -> bool | None:
    """Delete a compute target. Stops at first non-None result."""


# --- environments ------------------------------------------------------------------------------

@hookspec(firstresult=True)
def simml_environment_register(workspace: WorkspaceInfo, name: str, definition: dict[str, Any]
                               ) -> EnvironmentInfo | None:
    """Register a new environment version (``"1"``, ``"2"``, ...). Stops at first non-None result."""


@hookspec(firstresult=True)
def simml_environment_list(workspace: WorkspaceInfo) -> list[EnvironmentInfo] | None:
    """The latest version of every registered environment. Stops at first non-None result."""


@hookspec(firstresult=True)
def simml_environment_get(workspace: WorkspaceInfo, name: str, version: str | None
                          ) -> EnvironmentInfo | None:
    """Return an environment version (latest when None). Stops at first non-None result."""


# --- execution: what every backend implements ----------------------------------------------------

@hookspec(firstresult=True)
def simml_snapshot_create(workspace: WorkspaceInfo, items: tuple[UploadItem, ...]) -> str | None:
    """Store a snapshot of the client's source files; return its id (Azure's
    ``ContentSnapshotId``). Later edits of the source do not change it.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_run_submit(workspace: WorkspaceInfo, submission: RunSubmission) -> RunHandle | None:
    """Start executing a run created in run history; return at once.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_run_observe(workspace: WorkspaceInfo, run_id: str, cursor: int) -> RunObservation | None:
    """One look at a run: status, stage, compute node counts and log lines after ``cursor``.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_run_cancel(workspace: WorkspaceInfo, run_id: str) -> bool | None:
    """Request cancellation; True when the request was accepted. Stops at first non-None result."""


# --- the local runner's stages (a remote backend implements none of these) ----------------------

@hookspec(firstresult=True)
def simml_stage_prepare(context: StageContext, log: Any) -> PreparedEnvironment | None:
    """Preparing: materialise the run's environment (cached by a hash of its spec).

    :param log: a callable taking one line of text, streamed to the run's driver log.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_stage_scale(context: StageContext, log: Any) -> Allocation | None:
    """Queued ("scaling"): queue on the compute target and wait for a node (simulated time).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_stage_execute(context: StageContext, environment: PreparedEnvironment,
                        allocation: Allocation, log: Any) -> ExecutionResult | None:
    """Running: run the script on the node, stream its output, ingest what it logs.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_stage_postprocess(context: StageContext, result: ExecutionResult, log: Any
                            ) -> bool | None:
    """Finalizing ("post-processing"): copy ``./outputs`` and ``./logs`` into run history and
    release the node. Runs even when execution failed, so logs are kept.

    Stops at first non-None result.
    """


# --- web services (deployment) ---------------------------------------------------------------------

@hookspec(firstresult=True)
def simml_service_deploy(workspace: WorkspaceInfo, deployment: ServiceDeployment, log: Any
                         ) -> ServiceInfo | None:
    """Deploy a web service: lay out its app and models, prepare its environment, start it.

    Returns once the service process is started (state ``deploying``); ``simml_service_wait``
    waits for its health. An existing service of the same name is replaced when
    ``deployment.overwrite`` is set or it is a local service (Azure's ``LocalWebservice`` always
    replaces), otherwise ``WebserviceException``.

    :param log: a callable taking one line of text (the environment build's output).
    :raises WebserviceException: the port is in use, the name is taken, the app cannot be laid out.
    :raises ModelNotFoundException: a model that is not registered.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_service_get(workspace: WorkspaceInfo, name: str) -> ServiceInfo | None:
    """One look at a service: its record with the state refreshed (a dead process makes it
    ``failed``; a healthy deploying one ``running``).

    :raises WebserviceException: no such service.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_service_list(workspace: WorkspaceInfo) -> list[ServiceInfo] | None:
    """Every service of the workspace (deleted ones excluded), states refreshed, by name.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_service_wait(workspace: WorkspaceInfo, name: str, timeout_seconds: float
                       ) -> ServiceInfo | None:
    """Wait until the service leaves ``deploying`` (healthy: ``running``; its process gone:
    ``failed``) or the timeout passes; return its last look.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_service_logs(workspace: WorkspaceInfo, name: str, num_lines: int) -> str | None:
    """The last ``num_lines`` lines of the service's log (server output, ``init()`` and ``run()``
    tracebacks, the environment build). Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_service_update(workspace: WorkspaceInfo, name: str, deployment: ServiceDeployment,
                         log: Any) -> ServiceInfo | None:
    """Redeploy an existing service from ``deployment`` (fresh copies of the code and models, the
    environment prepared again, which is a cache hit when it did not change), keeping its name,
    keys, port unless a new one is given, and creation time. ``reload()`` and ``update()``.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_service_delete(workspace: WorkspaceInfo, name: str) -> bool | None:
    """Stop the service's process and remove it (state ``deleted``; its folder is removed).

    :raises WebserviceException: no such service.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_service_get_keys(workspace: WorkspaceInfo, name: str) -> tuple[str, str] | None:
    """The service's ``(primary, secondary)`` keys.

    :raises WebserviceException: no such service, or its auth is not enabled.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def simml_service_regen_key(workspace: WorkspaceInfo, name: str, key: str, set_key: str | None
                            ) -> tuple[str, str] | None:
    """Replace the ``'Primary'`` or ``'Secondary'`` key (with ``set_key`` or a new random one);
    the running service accepts the new key and refuses the old one at once. Returns both keys.

    Stops at first non-None result.
    """
