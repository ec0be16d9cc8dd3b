"""The plugin host: finds a backend by name and wraps it in a typed facade.

Backends are classes named by the entry-point group ``simml.backends`` (``local =
"simml_local.plugin:LocalBackend"``). ``load_backend`` instantiates the named one into a fresh
pluggy ``PluginManager`` (no module-level manager: each workspace owns its own), validates its
hook implementations against ``simml.hookspecs`` and returns a ``Backend``, the only way the core
calls hooks. ``SIMML_TRACE_HOOKS=1`` logs every hook call through ``logging``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import pluggy

from simml import hookspecs
from simml.exceptions import BackendCapabilityException, BackendNotFoundException

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

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

ENTRY_POINT_GROUP = "simml.backends"
hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)
"""The marker backends decorate their hook implementations with."""

logger = logging.getLogger(__name__)

INSTALL_HINTS = {"azure": "Install it with: pip install 'simml[azure]'"}


def installed_backends() -> dict[str, "EntryPoint"]:
    """Backends installed in this environment, by entry-point name."""
    from importlib.metadata import entry_points  # ~25 ms of imports: only when a backend loads
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_backend(name: str, config: dict[str, Any] | None = None) -> "Backend":
    """Instantiate the backend registered under ``name`` with the config.json contents.

    :raises BackendNotFoundException: no such entry point (the message lists the installed ones),
        or its distribution's dependencies are missing (the message says which extra to install).
    """
    found = installed_backends()
    if name not in found:
        raise BackendNotFoundException(name, list(found), INSTALL_HINTS.get(name, ""))
    try:
        factory = found[name].load()
    except ImportError as exc:
        raise BackendNotFoundException(
            name, list(found), f"It failed to import ({exc}). {INSTALL_HINTS.get(name, '')}"
        ) from exc
    return Backend.from_plugin(factory(config=dict(config or {})), name)


class Backend:
    """Typed facade over one backend's plugin manager: one method per hook.

    Required hooks that no plug-in answers raise ``BackendCapabilityException`` so that a missing
    implementation never passes silently as ``None``.
    """

    def __init__(self, manager: pluggy.PluginManager, name: str) -> None:
        self.manager = manager
        self.name = name

    @classmethod
    def from_plugin(cls, plugin: object, name: str) -> "Backend":
        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        manager.register(plugin, name=name)
        manager.check_pending()
        if os.environ.get("SIMML_TRACE_HOOKS"):
            manager.add_hookcall_monitoring(
                lambda hook, impls, kw: logger.debug("hook %s(%s)", hook, sorted(kw)),
                lambda outcome, hook, impls, kw: logger.debug("hook %s done", hook),
            )
        return cls(manager, name)

    def _call(self, hook: str, **kwargs: Any) -> Any:
        result = getattr(self.manager.hook, hook)(**kwargs)
        if result is None:
            raise BackendCapabilityException(hook, self.name)
        return result

    def implements(self, hook: str) -> bool:
        return bool(getattr(self.manager.hook, hook).get_hookimpls())

    # --- backend -----------------------------------------------------------------------------
    def describe(self) -> BackendInfo:
        return self._call("simml_backend_describe")

    # --- workspaces --------------------------------------------------------------------------
    def workspace_get(self, ref: WorkspaceRef) -> WorkspaceInfo:
        return self._call("simml_workspace_get", ref=ref)

    def workspace_create(self, ref: WorkspaceRef, exist_ok: bool) -> WorkspaceInfo:
        return self._call("simml_workspace_create", ref=ref, exist_ok=exist_ok)

    def workspace_list(self, subscription_id: str | None, resource_group: str | None
                       ) -> list[WorkspaceInfo]:
        return self._call("simml_workspace_list", subscription_id=subscription_id,
                          resource_group=resource_group)

    # --- simulated time ------------------------------------------------------------------------
    def clock_get(self, workspace: WorkspaceInfo) -> ClockState:
        return self._call("simml_clock_get", workspace=workspace)

    def clock_set(self, workspace: WorkspaceInfo, setting: str) -> ClockState:
        return self._call("simml_clock_set", workspace=workspace, setting=setting)

    def clock_advance(self, workspace: WorkspaceInfo, seconds: float) -> ClockState:
        return self._call("simml_clock_advance", workspace=workspace, seconds=seconds)

    # --- runtimes ------------------------------------------------------------------------------
    def runtime_get(self, workspace: WorkspaceInfo) -> str:
        return self._call("simml_runtime_get", workspace=workspace)

    def runtime_set(self, workspace: WorkspaceInfo, runtime: str) -> str:
        return self._call("simml_runtime_set", workspace=workspace, runtime=runtime)

    def docker_build_base(self, tag: str | None, method: str, log: Any) -> str:
        return self._call("simml_docker_build_base", tag=tag, method=method, log=log)

    # --- run history -------------------------------------------------------------------------
    def history_open(self, workspace: WorkspaceInfo) -> RunHistoryStore:
        return self._call("simml_history_open", workspace=workspace)

    # --- models ------------------------------------------------------------------------------
    def model_register(self, workspace: WorkspaceInfo, registration: ModelRegistration) -> ModelInfo:
        return self._call("simml_model_register", workspace=workspace, registration=registration)

    def model_get(self, workspace: WorkspaceInfo, name: str, version: int | None) -> ModelInfo:
        return self._call("simml_model_get", workspace=workspace, name=name, version=version)

    def model_list(self, workspace: WorkspaceInfo, query: ModelQuery) -> list[ModelInfo]:
        return self._call("simml_model_list", workspace=workspace, query=query)

    def model_update(self, workspace: WorkspaceInfo, name: str, version: int, *,
                     add_tags: dict[str, str] | None = None, remove_tags: list[str] | None = None,
                     add_properties: dict[str, str] | None = None,
                     description: str | None = None) -> ModelInfo:
        return self._call("simml_model_update", workspace=workspace, name=name, version=version,
                          add_tags=add_tags, remove_tags=remove_tags,
                          add_properties=add_properties, description=description)

    def model_download(self, workspace: WorkspaceInfo, name: str, version: int, target_dir: str,
                       exist_ok: bool) -> str:
        return self._call("simml_model_download", workspace=workspace, name=name, version=version,
                          target_dir=target_dir, exist_ok=exist_ok)

    def model_delete(self, workspace: WorkspaceInfo, name: str, version: int) -> bool:
        return self._call("simml_model_delete", workspace=workspace, name=name, version=version)

    # --- datastores --------------------------------------------------------------------------
    def datastore_get(self, workspace: WorkspaceInfo, name: str | None) -> DatastoreInfo:
        return self._call("simml_datastore_get", workspace=workspace, name=name)

    def datastore_list(self, workspace: WorkspaceInfo) -> list[DatastoreInfo]:
        return self._call("simml_datastore_list", workspace=workspace)

    def datastore_register(self, workspace: WorkspaceInfo, info: DatastoreInfo, location: str,
                           overwrite: bool, storage: StorageRegistration | None = None
                           ) -> DatastoreInfo:
        return self._call("simml_datastore_register", workspace=workspace, info=info,
                          location=location, overwrite=overwrite, storage=storage)

    def datastore_set_default(self, workspace: WorkspaceInfo, name: str) -> DatastoreInfo:
        return self._call("simml_datastore_set_default", workspace=workspace, name=name)

    def datastore_upload(self, workspace: WorkspaceInfo, name: str, items: tuple[UploadItem, ...],
                         overwrite: bool, progress: Progress | None) -> TransferResult:
        return self._call("simml_datastore_upload", workspace=workspace, name=name, items=items,
                          overwrite=overwrite, progress=progress)

    def datastore_download(self, workspace: WorkspaceInfo, name: str, prefix: str | None,
                           target_path: str, overwrite: bool, progress: Progress | None
                           ) -> TransferResult:
        return self._call("simml_datastore_download", workspace=workspace, name=name,
                          prefix=prefix, target_path=target_path, overwrite=overwrite,
                          progress=progress)

    def datastore_list_files(self, workspace: WorkspaceInfo, name: str, prefix: str | None
                             ) -> list[str]:
        return self._call("simml_datastore_list_files", workspace=workspace, name=name,
                          prefix=prefix)

    def datastore_stat(self, workspace: WorkspaceInfo, name: str, prefix: str | None
                       ) -> list[DatastoreFile]:
        return self._call("simml_datastore_stat", workspace=workspace, name=name, prefix=prefix)

    def datastore_read(self, workspace: WorkspaceInfo, name: str, path: str, offset: int,
                       length: int) -> bytes:
        return self._call("simml_datastore_read", workspace=workspace, name=name, path=path,
                          offset=offset, length=length)

    # --- compute -----------------------------------------------------------------------------
    def compute_get(self, workspace: WorkspaceInfo, name: str) -> ComputeInfo:
        return self._call("simml_compute_get", workspace=workspace, name=name)

    def compute_list(self, workspace: WorkspaceInfo) -> list[ComputeInfo]:
        return self._call("simml_compute_list", workspace=workspace)

    def compute_create(self, workspace: WorkspaceInfo, name: str, config: dict[str, Any]
                       ) -> ComputeInfo:
        return self._call("simml_compute_create", workspace=workspace, name=name, config=config)

    def compute_status(self, workspace: WorkspaceInfo, name: str) -> ComputeStatus:
        return self._call("simml_compute_status", workspace=workspace, name=name)

    def compute_update(self, workspace: WorkspaceInfo, name: str, *, min_nodes: int | None = None,
                       max_nodes: int | None = None,
                       idle_seconds_before_scaledown: int | None = None) -> ComputeInfo:
        return self._call("simml_compute_update", workspace=workspace, name=name,
                          min_nodes=min_nodes, max_nodes=max_nodes,
                          idle_seconds_before_scaledown=idle_seconds_before_scaledown)

    def compute_nodes(self, workspace: WorkspaceInfo, name: str) -> list[ComputeNode]:
        return self._call("simml_compute_nodes", workspace=workspace, name=name)

    def compute_delete(self, workspace: WorkspaceInfo, name: str) -> bool:
        return self._call("simml_compute_delete", workspace=workspace, name=name)

    # --- environments ------------------------------------------------------------------------
    def environment_register(self, workspace: WorkspaceInfo, name: str, definition: dict[str, Any]
                             ) -> EnvironmentInfo:
        return self._call("simml_environment_register", workspace=workspace, name=name,
                          definition=definition)

    def environment_list(self, workspace: WorkspaceInfo) -> list[EnvironmentInfo]:
        return self._call("simml_environment_list", workspace=workspace)

    def environment_get(self, workspace: WorkspaceInfo, name: str, version: str | None
                        ) -> EnvironmentInfo:
        return self._call("simml_environment_get", workspace=workspace, name=name,
                          version=version)

    # --- execution ---------------------------------------------------------------------------
    def snapshot_create(self, workspace: WorkspaceInfo, items: tuple[UploadItem, ...]) -> str:
        return self._call("simml_snapshot_create", workspace=workspace, items=items)

    def run_submit(self, workspace: WorkspaceInfo, submission: RunSubmission) -> RunHandle:
        return self._call("simml_run_submit", workspace=workspace, submission=submission)

    def run_observe(self, workspace: WorkspaceInfo, run_id: str, cursor: int) -> RunObservation:
        return self._call("simml_run_observe", workspace=workspace, run_id=run_id, cursor=cursor)

    def run_cancel(self, workspace: WorkspaceInfo, run_id: str) -> bool:
        return self._call("simml_run_cancel", workspace=workspace, run_id=run_id)

    # --- the local runner's stages ---------------------------------------------------------------
    def stage_prepare(self, context: StageContext, log: Any) -> PreparedEnvironment:
        return self._call("simml_stage_prepare", context=context, log=log)

    def stage_scale(self, context: StageContext, log: Any) -> Allocation:
        return self._call("simml_stage_scale", context=context, log=log)

    def stage_execute(self, context: StageContext, environment: PreparedEnvironment,
                      allocation: Allocation, log: Any) -> ExecutionResult:
        return self._call("simml_stage_execute", context=context, environment=environment,
                          allocation=allocation, log=log)

    def stage_postprocess(self, context: StageContext, result: ExecutionResult, log: Any) -> bool:
        return self._call("simml_stage_postprocess", context=context, result=result, log=log)

    # --- web services ----------------------------------------------------------------------------
    def service_deploy(self, workspace: WorkspaceInfo, deployment: ServiceDeployment, log: Any
                       ) -> ServiceInfo:
        return self._call("simml_service_deploy", workspace=workspace, deployment=deployment,
                          log=log)

    def service_get(self, workspace: WorkspaceInfo, name: str) -> ServiceInfo:
        return self._call("simml_service_get", workspace=workspace, name=name)

    def service_list(self, workspace: WorkspaceInfo) -> list[ServiceInfo]:
        return self._call("simml_service_list", workspace=workspace)

    def service_wait(self, workspace: WorkspaceInfo, name: str, timeout_seconds: float
                     ) -> ServiceInfo:
        return self._call("simml_service_wait", workspace=workspace, name=name,
                          timeout_seconds=timeout_seconds)

    def service_logs(self, workspace: WorkspaceInfo, name: str, num_lines: int) -> str:
        return self._call("simml_service_logs", workspace=workspace, name=name,
                          num_lines=num_lines)

    def service_update(self, workspace: WorkspaceInfo, name: str, deployment: ServiceDeployment,
                       log: Any) -> ServiceInfo:
        return self._call("simml_service_update", workspace=workspace, name=name,
                          deployment=deployment, log=log)

    def service_delete(self, workspace: WorkspaceInfo, name: str) -> bool:
        return self._call("simml_service_delete", workspace=workspace, name=name)

    def service_get_keys(self, workspace: WorkspaceInfo, name: str) -> tuple[str, str]:
        return self._call("simml_service_get_keys", workspace=workspace, name=name)

    def service_regen_key(self, workspace: WorkspaceInfo, name: str, key: str,
                          set_key: str | None) -> tuple[str, str]:
        return self._call("simml_service_regen_key", workspace=workspace, name=name, key=key,
                          set_key=set_key)
