"""``AzureBackend``: simml's hooks answered by a real Azure ML workspace (SDK v1).

Registered as the entry point ``azure`` of ``simml.backends``; selected by ``SIMML_BACKEND=azure``
or config.json's ``"backend": "azure"``. The same user code runs unchanged: config.json's
``auth`` says how to sign in (``docs/azure.md``). Azure cannot do some things the local backend
does; those hooks say so with a typed error instead of differing silently:

* time is real: ``manual`` and ``scaled:N`` clocks are refused;
* jobs run in Azure's containers: the runtime is not chosen by simml, and the local runner's
  stage hooks are not implemented (Azure drives the stages; simml observes them);
* simml's Docker base image is not used;
* sweeps run on Azure's HyperDrive service, which runs trials on a cluster only: a sweep on
  ``'local'`` is refused before anything is sent.

This module imports no azureml module: every SDK call is in ``simml_azure.azureml_api``,
imported when a workspace is first opened. A missing ``azure`` extra is an
``AzureExtraMissingException`` naming it, raised when the backend is loaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simml.entities import (
    LOCAL_RESOURCE_GROUP,
    LOCAL_SUBSCRIPTION,
    BackendInfo,
    ClockState,
    RunHandle,
    RunObservation,
    TransferResult,
    WorkspaceInfo,
    WorkspaceRef,
)
from simml.exceptions import (
    BackendNotFoundException,
    ConfigurationException,
    NotFoundException,
    SnapshotException,
    UserErrorException,
)
from simml.plugins import hookimpl

if TYPE_CHECKING:
    from simml.entities import (
        ComputeInfo,
        ComputeNode,
        ComputeStatus,
        DatastoreFile,
        DatastoreInfo,
        EnvironmentInfo,
        ModelInfo,
        ModelQuery,
        ModelRegistration,
        RunSubmission,
        ServiceDeployment,
        ServiceInfo,
        StorageRegistration,
        UploadItem,
    )
    from simml.progress import Progress
    from simml_azure.azureml_api import AzureMLWorkspace
    from simml_azure.store import AzureRunHistoryStore

NAME = "azure"
INSTALL = "pip install 'simml[azure]'"
CAPABILITIES = frozenset({"remote-execution", "real-time"})
TERMINAL = ("Completed", "Failed", "Canceled")
POLL_SECONDS = 1.0
"""Least time between two looks at one run (a look is three requests to Azure)."""
JOB_CONTEXT_ENV = "SIMML_JOB_CONTEXT"
JOB_CONTEXT = "simml_azure.azureml_api:job_context_run"
"""Set in every job this backend submits: on Azure, ``Run.get_context()`` returns the SDK's run
(the emulator's jobs have simml's journal instead, which wins)."""


class AzureExtraMissingException(BackendNotFoundException):
    """The azure backend is registered but the Azure ML SDK it calls is not installed."""

    def __init__(self, module: str) -> None:
        UserErrorException.__init__(
            self, f"The azure backend needs the Azure ML SDK v1 ({module} is not installed). "
                  f"Install the azure extra: {INSTALL}")
        self.name = NAME
        self.available = [NAME]
        self.missing = module


class AzureBackend:
    """The Azure backend: one instance per plugin host (per simml ``Workspace``)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        from simml_azure.azureml_api import missing_sdk
        missing = missing_sdk()
        if missing is not None:
            raise AzureExtraMissingException(missing)
        self.config = dict(config or {})
        self._sessions: dict[tuple[str, str, str], "AzureMLWorkspace"] = {}
        self._stores: dict[tuple[str, str, str], "AzureRunHistoryStore"] = {}
        self._snapshots: dict[str, Path] = {}
        self._looks: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()
        self._services: dict[Path, Any] = {}

    # --- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _key(ref: WorkspaceRef | WorkspaceInfo) -> tuple[str, str, str]:
        return (ref.subscription_id.lower(), ref.resource_group.lower(), ref.name.lower())

    def _connect(self, ref: WorkspaceRef) -> "AzureMLWorkspace":
        if ref.subscription_id == LOCAL_SUBSCRIPTION and ref.resource_group == LOCAL_RESOURCE_GROUP:
            raise ConfigurationException(
                f"The azure backend needs the subscription and resource group of workspace "
                f"{ref.name!r}: put subscription_id and resource_group in config.json (Azure "
                "portal, the workspace's Overview page: 'Download config.json'), or pass them to "
                "Workspace.get / Workspace(...).")
        key = self._key(ref)
        with self._lock:
            found = self._sessions.get(key)
        if found is not None:
            return found
        from simml_azure.azureml_api import AzureMLWorkspace
        session = AzureMLWorkspace.connect(ref, self.config)
        with self._lock:
            return self._sessions.setdefault(key, session)

    def api(self, workspace: WorkspaceInfo) -> "AzureMLWorkspace":
        """The SDK session of a resolved workspace (reconnecting with config.json's auth when
        this backend instance has not opened it yet)."""
        session = self._sessions.get(self._key(workspace))
        if session is not None:
            return session
        return self._connect(WorkspaceRef(
            name=workspace.name, subscription_id=workspace.subscription_id,
            resource_group=workspace.resource_group, location=workspace.location,
            auth=self.config.get("auth")))

    def store(self, workspace: WorkspaceInfo) -> "AzureRunHistoryStore":
        key = self._key(workspace)
        with self._lock:
            found = self._stores.get(key)
        if found is not None:
            return found
        from simml_azure.store import AzureRunHistoryStore
        store = AzureRunHistoryStore(self.api(workspace))
        with self._lock:
            return self._stores.setdefault(key, store)

    # --- the backend -----------------------------------------------------------------------------
    @hookimpl
    def simml_backend_describe(self) -> BackendInfo:
        return BackendInfo(NAME, CAPABILITIES)

    # --- workspaces ------------------------------------------------------------------------------
    @hookimpl
    def simml_workspace_get(self, ref: WorkspaceRef) -> WorkspaceInfo:
        return self._connect(ref).info()

    @hookimpl
    def simml_workspace_create(self, ref: WorkspaceRef, exist_ok: bool) -> WorkspaceInfo:
        """Azure workspaces are created in the portal or with ``az ml workspace create`` (they
        need a resource group, storage, key vault and registry): an existing one is returned
        with ``exist_ok``; otherwise this refuses, saying how."""
        if exist_ok:
            return self.simml_workspace_get(ref=ref)
        raise UserErrorException(
            f"The azure backend does not create workspaces (it would create Azure resources): "
            f"create {ref.name!r} in the Azure portal or with `az ml workspace create`, then "
            "open it with Workspace.from_config() or Workspace.get(..., exist_ok).")

    @hookimpl
    def simml_workspace_list(self, subscription_id: str | None, resource_group: str | None
                             ) -> list[WorkspaceInfo]:
        """Only the workspace config.json names: listing a subscription's workspaces needs ARM
        rights simml does not ask for."""
        if not {"subscription_id", "resource_group", "workspace_name"} <= set(self.config):
            raise UserErrorException(
                "Workspace.list on the azure backend lists the workspace config.json names; no "
                "config.json with subscription_id, resource_group and workspace_name was given.")
        ref = WorkspaceRef(name=self.config["workspace_name"],
                           subscription_id=self.config["subscription_id"],
                           resource_group=self.config["resource_group"],
                           auth=self.config.get("auth"))
        if subscription_id and subscription_id.lower() != ref.subscription_id.lower():
            return []
        if resource_group and resource_group.lower() != ref.resource_group.lower():
            return []
        return [self.simml_workspace_get(ref=ref)]

    # --- time ------------------------------------------------------------------------------------
    @hookimpl
    def simml_clock_get(self, workspace: WorkspaceInfo) -> ClockState:
        return ClockState("system")

    @hookimpl
    def simml_clock_set(self, workspace: WorkspaceInfo, setting: str) -> ClockState:
        if str(setting).strip().lower() == "system":
            return ClockState("system")
        raise UserErrorException(
            f"The azure backend cannot set the clock to {setting!r}: Azure's time is real, so "
            "only 'system' is accepted. Simulated (manual, scaled) clocks are a local-backend "
            "feature (docs/azure.md).")

    @hookimpl
    def simml_clock_advance(self, workspace: WorkspaceInfo, seconds: float) -> ClockState:
        raise UserErrorException(
            "The azure backend cannot advance the clock: Azure's time is real (manual clocks "
            "are a local-backend feature; docs/azure.md).")

    # --- runtimes --------------------------------------------------------------------------------
    @hookimpl
    def simml_runtime_get(self, workspace: WorkspaceInfo) -> str:
        return "process"

    @hookimpl
    def simml_runtime_set(self, workspace: WorkspaceInfo, runtime: str) -> str:
        raise UserErrorException(
            f"The azure backend cannot set the runtime to {runtime!r}: Azure runs every job in "
            "its own containers (choose the image with the run's Environment).")

    # --- run history -----------------------------------------------------------------------------
    @hookimpl
    def simml_history_open(self, workspace: WorkspaceInfo) -> "AzureRunHistoryStore":
        return self.store(workspace)

    # --- compute ---------------------------------------------------------------------------------
    @hookimpl
    def simml_compute_get(self, workspace: WorkspaceInfo, name: str) -> "ComputeInfo":
        return self.api(workspace).compute_get(name)

    @hookimpl
    def simml_compute_list(self, workspace: WorkspaceInfo) -> list["ComputeInfo"]:
        return self.api(workspace).compute_list()

    @hookimpl
    def simml_compute_create(self, workspace: WorkspaceInfo, name: str, config: dict[str, Any]
                             ) -> "ComputeInfo":
        if config.get("timings") is not None:
            raise UserErrorException(
                "AmlCompute.provisioning_configuration(_timings=...) sets simulated durations, "
                "which the azure backend cannot honour (Azure's provisioning takes real time).")
        if config.get("runtime") is not None:
            raise UserErrorException(
                "AmlCompute.provisioning_configuration(runtime=...) chooses simml's local runtime; "
                "on Azure every job runs in Azure's containers.")
        return self.api(workspace).compute_create(name, config)

    @hookimpl
    def simml_compute_status(self, workspace: WorkspaceInfo, name: str) -> "ComputeStatus":
        return self.api(workspace).compute_status(name)

    @hookimpl
    def simml_compute_update(self, workspace: WorkspaceInfo, name: str, min_nodes: int | None,
                             max_nodes: int | None, idle_seconds_before_scaledown: int | None
                             ) -> "ComputeInfo":
        return self.api(workspace).compute_update(name, min_nodes, max_nodes,
                                                  idle_seconds_before_scaledown)

    @hookimpl
    def simml_compute_nodes(self, workspace: WorkspaceInfo, name: str) -> list["ComputeNode"]:
        return self.api(workspace).compute_nodes(name)

    @hookimpl
    def simml_compute_delete(self, workspace: WorkspaceInfo, name: str) -> bool:
        return self.api(workspace).compute_delete(name)

    # --- datastores ------------------------------------------------------------------------------
    @hookimpl
    def simml_datastore_get(self, workspace: WorkspaceInfo, name: str | None) -> "DatastoreInfo":
        return self.api(workspace).datastore_get(name)

    @hookimpl
    def simml_datastore_list(self, workspace: WorkspaceInfo) -> list["DatastoreInfo"]:
        return self.api(workspace).datastore_list()

    @hookimpl
    def simml_datastore_register(self, workspace: WorkspaceInfo, info: "DatastoreInfo",
                                 location: str, overwrite: bool,
                                 storage: "StorageRegistration | None") -> "DatastoreInfo":
        """Azure's registration of a blob container or file share, with the credential the
        caller passed (handed to the SDK, never written by simml); a folder of this machine
        (``register_local_folder``) is refused: Azure's jobs cannot reach it."""
        if info.datastore_type not in ("AzureBlob", "AzureFile"):
            raise UserErrorException(
                f"The azure backend cannot register {info.name!r} as a folder of this machine "
                "(register_local_folder is a local-backend feature: Azure's jobs cannot read "
                "it). Upload the folder to a datastore (Datastore.upload) or register an Azure "
                "blob container or file share.")
        from simml.entities import StorageRegistration
        return self.api(workspace).datastore_register(info, overwrite,
                                                      storage or StorageRegistration())

    @hookimpl
    def simml_datastore_set_default(self, workspace: WorkspaceInfo, name: str
                                    ) -> "DatastoreInfo":
        return self.api(workspace).datastore_set_default(name)

    @hookimpl
    def simml_datastore_upload(self, workspace: WorkspaceInfo, name: str,
                               items: tuple["UploadItem", ...], overwrite: bool,
                               progress: "Progress | None") -> TransferResult:
        from simml._paths import safe_relpath
        for item in items:  # every target checked before anything is sent
            safe_relpath(item.target)
            if not os.path.isfile(item.source):
                raise NotFoundException(f"Upload source {item.source!r} is not a file.")
        done, skipped = self.api(workspace).datastore_upload(name, items, overwrite, progress)
        return TransferResult(tuple(done), tuple(skipped))

    @staticmethod
    def _prefix(prefix: str | None) -> str | None:
        """A blob prefix, refused as the local backend refuses it when it would climb out."""
        from simml._paths import safe_relpath
        if not prefix:
            return None
        safe_relpath(prefix, allow_empty=True, what="prefix")
        return prefix

    @hookimpl
    def simml_datastore_download(self, workspace: WorkspaceInfo, name: str, prefix: str | None,
                                 target_path: str, overwrite: bool,
                                 progress: "Progress | None") -> TransferResult:
        prefix = self._prefix(prefix)
        done, skipped = self.api(workspace).datastore_download(name, prefix, Path(target_path),
                                                               overwrite, progress)
        return TransferResult(tuple(done), tuple(skipped))

    @hookimpl
    def simml_datastore_list_files(self, workspace: WorkspaceInfo, name: str,
                                   prefix: str | None) -> list[str]:
        return [f.path for f in self.api(workspace).datastore_stat(name, self._prefix(prefix))]

    @hookimpl
    def simml_datastore_stat(self, workspace: WorkspaceInfo, name: str, prefix: str | None
                             ) -> list["DatastoreFile"]:
        return self.api(workspace).datastore_stat(name, self._prefix(prefix))

    @hookimpl
    def simml_datastore_read(self, workspace: WorkspaceInfo, name: str, path: str, offset: int,
                             length: int) -> bytes:
        from simml._paths import safe_relpath
        return self.api(workspace).datastore_read(name, safe_relpath(path), offset, length)

    # --- models ----------------------------------------------------------------------------------
    @hookimpl
    def simml_model_register(self, workspace: WorkspaceInfo, registration: "ModelRegistration"
                             ) -> "ModelInfo":
        return self.api(workspace).model_register(registration)

    @hookimpl
    def simml_model_get(self, workspace: WorkspaceInfo, name: str, version: int | None
                        ) -> "ModelInfo":
        return self.api(workspace).model_get(name, version)

    @hookimpl
    def simml_model_list(self, workspace: WorkspaceInfo, query: "ModelQuery"
                         ) -> list["ModelInfo"]:
        return self.api(workspace).model_list(query)

    @hookimpl
    def simml_model_update(self, workspace: WorkspaceInfo, name: str, version: int,
                           add_tags: dict[str, str] | None, remove_tags: list[str] | None,
                           add_properties: dict[str, str] | None, description: str | None
                           ) -> "ModelInfo":
        return self.api(workspace).model_update(name, version, add_tags, remove_tags,
                                                add_properties, description)

    @hookimpl
    def simml_model_download(self, workspace: WorkspaceInfo, name: str, version: int,
                             target_dir: str, exist_ok: bool) -> str:
        return self.api(workspace).model_download(name, version, target_dir, exist_ok)

    @hookimpl
    def simml_model_delete(self, workspace: WorkspaceInfo, name: str, version: int) -> bool:
        return self.api(workspace).model_delete(name, version)

    # --- environments ----------------------------------------------------------------------------
    @hookimpl
    def simml_environment_register(self, workspace: WorkspaceInfo, name: str,
                                   definition: dict[str, Any]) -> "EnvironmentInfo":
        return self.api(workspace).environment_register(name, definition)

    @hookimpl
    def simml_environment_get(self, workspace: WorkspaceInfo, name: str, version: str | None
                              ) -> "EnvironmentInfo":
        return self.api(workspace).environment_get(name, version)

    @hookimpl
    def simml_environment_list(self, workspace: WorkspaceInfo) -> list["EnvironmentInfo"]:
        return self.api(workspace).environment_list()

    # --- execution: Azure drives the stages, simml observes ---------------------------------------
    @hookimpl
    def simml_snapshot_create(self, workspace: WorkspaceInfo, items: tuple["UploadItem", ...]
                              ) -> str:
        """A private copy of the client's files (later edits do not change it); Azure takes
        its snapshot of this copy when the run is submitted (``ContentSnapshotId``)."""
        folder = Path(tempfile.mkdtemp(prefix="simml-azure-snapshot-"))
        try:
            for item in items:
                target = folder.joinpath(*item.target.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(item.source, target)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise SnapshotException(f"Could not copy the source files for the snapshot: {exc}",
                                    exc) from exc
        snapshot = f"pending-{uuid.uuid4()}"
        with self._lock:
            self._snapshots[snapshot] = folder
        return snapshot

    @hookimpl
    def simml_run_submit(self, workspace: WorkspaceInfo, submission: "RunSubmission"
                         ) -> RunHandle:
        """Hand a created run to Azure: a script run as the SDK's ``ScriptRunConfig``, a sweep's
        parent (type ``hyperdrive``) as the SDK's ``HyperDriveConfig`` to Azure's HyperDrive
        service, which samples, submits and stops the trials itself (the local backend's sweep
        loop is not involved); either way with the run id simml chose."""
        from simml.entities import HYPERDRIVE_RUN_TYPE
        store = self.store(workspace)
        request = store.take_pending(submission.run_id)
        with self._lock:
            source = self._snapshots.pop(submission.snapshot_id or "", None)
        if source is None:
            store.submitted(submission.run_id)
            raise SnapshotException(f"Run {submission.run_id}: snapshot "
                                    f"{submission.snapshot_id!r} was not made by this client.")
        definition = dict(submission.definition)
        sweep = request.run_type == HYPERDRIVE_RUN_TYPE
        job = dict(definition["child"]) if sweep else definition
        variables = dict(job.get("environmentVariables") or {})
        variables.setdefault(JOB_CONTEXT_ENV, JOB_CONTEXT)
        job["environmentVariables"] = variables
        try:
            if sweep and str(job.get("target") or "local") == "local":
                from simml.train.hyperdrive.exceptions import HyperDriveConfigException
                raise HyperDriveConfigException(
                    f"Sweep {submission.run_id}: Azure's HyperDrive service runs trials on a "
                    "compute cluster, not on 'local' (the local backend's sweeps can): give the "
                    "ScriptRunConfig or estimator an AmlCompute compute_target. Nothing was "
                    "submitted.")
            extra_pip = self._job_packages(workspace)
            api = self.api(workspace)
            if sweep:
                api.submit_sweep(request, {**definition, "child": job}, source, extra_pip)
            else:
                api.submit(request, job, source, extra_pip)
        finally:
            shutil.rmtree(source, ignore_errors=True)
            store.submitted(submission.run_id)
        return RunHandle(submission.run_id, NAME)

    def _job_packages(self, workspace: WorkspaceInfo) -> tuple[str, ...]:
        """simml for the job: a wheel built from this checkout, uploaded to the workspace
        (``Environment.add_private_pip_wheel``). Not for the emulator, which gives every job
        simml's job side itself; config.json's ``job_wheel`` overrides."""
        auth = self.config.get("auth") or {}
        wanted = self.config.get("job_wheel", auth.get("type") != "simml_emulator")
        if not wanted:
            return ()
        from simml_azure.job_wheel import simml_wheel
        return (self.api(workspace).upload_wheel(simml_wheel()),)

    @hookimpl
    def simml_run_observe(self, workspace: WorkspaceInfo, run_id: str, cursor: int
                          ) -> RunObservation:
        """Status and the driver log's new complete lines (Azure's ``user_logs/std_log.txt``,
        else ``azureml-logs/70_driver_log.txt``): at most one look a second per run."""
        with self._lock:
            last, log_name = self._looks.get(run_id, (0.0, None))
        wait = last + float(self.config.get("poll_seconds", POLL_SECONDS)) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        api = self.api(workspace)
        info = self.store(workspace).get_run(run_id)
        found = api.log_text(info) if info.status != "NotStarted" else None
        lines: list[str] = []
        if found is not None:
            name, text = found
            if name != log_name:  # Azure switched to the job's own log: start it from the top
                cursor, log_name = 0, name
            complete = text.split("\n")
            if info.status not in TERMINAL:
                complete = complete[:-1]  # a line still being written
            elif complete and complete[-1] == "":
                complete = complete[:-1]
            lines = complete[cursor:]
            cursor += len(lines)
        with self._lock:
            self._looks[run_id] = (time.monotonic(), log_name)
        return RunObservation(status=info.status, stage=None, log_lines=tuple(lines),
                              cursor=cursor, error=info.error)

    @hookimpl
    def simml_run_cancel(self, workspace: WorkspaceInfo, run_id: str) -> bool:
        info = self.store(workspace).get_run(run_id)
        return self.api(workspace).cancel(info)

    # --- web services: LocalWebservice on this machine, models from Azure -------------------------
    def services(self) -> Any:
        """This machine's web services of the workspace, recorded under the current
        ``SIMML_HOME`` (a process that changes it finds the services made under the new one)."""
        from simml.settings import simml_home
        home = Path(simml_home(self.config))
        with self._lock:
            found = self._services.get(home)
            if found is None:
                from simml_azure.local_services import AzureLocalServices
                found = self._services[home] = AzureLocalServices(home, self.api)
        return found

    @staticmethod
    def _local_only(deployment: "ServiceDeployment") -> None:
        if str(deployment.compute_type).lower() != "local":
            raise UserErrorException(
                f"The azure backend deploys LocalWebservice only (this machine, models from the "
                f"workspace), not {deployment.compute_type} web services: SDK v1 deployment to "
                "Azure (ACI, AKS) is retired; use managed online endpoints (SDK v2).")

    @hookimpl
    def simml_service_deploy(self, workspace: WorkspaceInfo, deployment: "ServiceDeployment",
                             log: Any) -> "ServiceInfo":
        self._local_only(deployment)
        return self.services().simml_service_deploy(workspace, deployment, log)

    @hookimpl
    def simml_service_update(self, workspace: WorkspaceInfo, name: str,
                             deployment: "ServiceDeployment", log: Any) -> "ServiceInfo":
        self._local_only(deployment)
        return self.services().simml_service_update(workspace, name, deployment, log)

    @hookimpl
    def simml_service_get(self, workspace: WorkspaceInfo, name: str) -> "ServiceInfo":
        return self.services().simml_service_get(workspace, name)

    @hookimpl
    def simml_service_list(self, workspace: WorkspaceInfo) -> list["ServiceInfo"]:
        return self.services().simml_service_list(workspace)

    @hookimpl
    def simml_service_wait(self, workspace: WorkspaceInfo, name: str, timeout_seconds: float
                           ) -> "ServiceInfo":
        return self.services().simml_service_wait(workspace, name, timeout_seconds)

    @hookimpl
    def simml_service_logs(self, workspace: WorkspaceInfo, name: str, num_lines: int) -> str:
        return self.services().simml_service_logs(workspace, name, num_lines)

    @hookimpl
    def simml_service_delete(self, workspace: WorkspaceInfo, name: str) -> bool:
        return self.services().simml_service_delete(workspace, name)

    @hookimpl
    def simml_service_get_keys(self, workspace: WorkspaceInfo, name: str) -> tuple[str, str]:
        return self.services().simml_service_get_keys(workspace, name)

    @hookimpl
    def simml_service_regen_key(self, workspace: WorkspaceInfo, name: str, key: str,
                                set_key: str | None) -> tuple[str, str]:
        return self.services().simml_service_regen_key(workspace, name, key, set_key)
