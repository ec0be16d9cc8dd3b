"""``Workspace``: Azure's entry point, bound to one backend.

A workspace object owns its plugin host (``simml.plugins.Backend``), the resolved
``WorkspaceInfo`` and, lazily, the run-history store: there is no process-wide manager, so two
workspaces on two backends can live side by side (tests build their own).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simml.clock import WorkspaceClock
from simml.entities import (
    DEFAULT_WORKSPACE,
    LOCAL_RESOURCE_GROUP,
    LOCAL_SUBSCRIPTION,
    WorkspaceInfo,
    WorkspaceRef,
)
from simml.exceptions import UserErrorException
from simml.plugins import Backend, load_backend
from simml.settings import backend_name, find_config_file, read_config

if TYPE_CHECKING:
    from simml.core.datastore import Datastore
    from simml.core.experiment import Experiment
    from simml.store import RunHistoryStore

logger = logging.getLogger(__name__)


class Workspace:
    """A workspace on the configured backend (local by default)."""

    def __init__(self, subscription_id: str, resource_group: str, workspace_name: str,
                 auth: Any = None, _location: str | None = None,
                 _disable_service_check: bool = False, _workspace_id: str | None = None,
                 sku: str = "basic", tags: dict[str, str] | None = None,
                 _cloud: str = "AzureCloud", *, _backend: Backend | None = None,
                 _info: WorkspaceInfo | None = None,
                 _config: dict[str, Any] | None = None) -> None:
        self._config = dict(_config or {})
        self._auth = auth
        self._backend = _backend or load_backend(backend_name(self._config), self._config)
        if _info is None:
            ref = WorkspaceRef(name=workspace_name, subscription_id=subscription_id,
                               resource_group=resource_group, location=_location or "local",
                               auth=self._config.get("auth"))
            _info = self._backend.workspace_get(ref)
        self._info = _info
        self._store: RunHistoryStore | None = None
        self._clock = WorkspaceClock(lambda: self._backend.clock_get(self._info))
        self.sku = sku
        self.tags = dict(tags or {})

    # --- constructors --------------------------------------------------------------------------
    @staticmethod
    def from_config(path: str | os.PathLike[str] | None = None, auth: Any = None,
                    _logger: Any = None, _file_name: str | None = None) -> "Workspace":
        """Find config.json as Azure does and open (on the local backend: create) its workspace."""
        config_file = find_config_file(path, _file_name)
        if config_file is None:
            where = Path(path or ".").resolve()
            raise UserErrorException(
                f"The workspace configuration file config.json, could not be found in {where} or "
                "its parent directories. Please check whether it exists, or write one with "
                "Workspace.write_config() or `simml workspace init`.")
        config = read_config(config_file)
        logger.info("Found the config file in: %s", config_file)
        return Workspace._open(config, auth, create_if_local=True)

    @staticmethod
    def _open(config: dict[str, Any], auth: Any = None, create_if_local: bool = False
              ) -> "Workspace":
        backend = load_backend(backend_name(config), config)
        ref = WorkspaceRef(name=config["workspace_name"], subscription_id=config["subscription_id"],
                           resource_group=config["resource_group"],
                           location=config.get("location", "local"), auth=config.get("auth"))
        if create_if_local and "workspace-auto-create" in backend.describe().capabilities:
            info = backend.workspace_create(ref, exist_ok=True)
        else:
            info = backend.workspace_get(ref)
        return Workspace(ref.subscription_id, ref.resource_group, ref.name, auth=auth,
                         _backend=backend, _info=info, _config=config)

    @staticmethod
    def get(name: str, auth: Any = None, subscription_id: str | None = None,
            resource_group: str | None = None, location: str | None = None,
            cloud: str = "AzureCloud", id: str | None = None) -> "Workspace":
        config = {"workspace_name": name, "subscription_id": subscription_id or LOCAL_SUBSCRIPTION,
                  "resource_group": resource_group or LOCAL_RESOURCE_GROUP}
        if location:
            config["location"] = location
        return Workspace._open(config, auth)

    @staticmethod
    def create(name: str, auth: Any = None, subscription_id: str | None = None,
               resource_group: str | None = None, location: str | None = None,
               create_resource_group: bool = True, sku: str = "basic",
               tags: dict[str, str] | None = None, friendly_name: str | None = None,
               storage_account: str | None = None, key_vault: str | None = None,
               app_insights: str | None = None, container_registry: str | None = None,
               exist_ok: bool = False, show_output: bool = True, **kwargs: Any) -> "Workspace":
        config = {"workspace_name": name, "subscription_id": subscription_id or LOCAL_SUBSCRIPTION,
                  "resource_group": resource_group or LOCAL_RESOURCE_GROUP}
        backend = load_backend(backend_name(config), config)
        ref = WorkspaceRef(name=name, subscription_id=config["subscription_id"],
                           resource_group=config["resource_group"], location=location or "local")
        info = backend.workspace_create(ref, exist_ok=exist_ok)
        if show_output:
            print(f"Deployed workspace {name} ({backend.name} backend)", flush=True)
        return Workspace(ref.subscription_id, ref.resource_group, name, auth=auth, sku=sku,
                         tags=tags, _backend=backend, _info=info, _config=config)

    @staticmethod
    def list(subscription_id: str | None = None, auth: Any = None,
             resource_group: str | None = None) -> dict[str, list["Workspace"]]:
        backend = load_backend(backend_name())
        found: dict[str, list[Workspace]] = {}
        for info in backend.workspace_list(subscription_id, resource_group):
            ws = Workspace(info.subscription_id, info.resource_group, info.name, auth=auth,
                           _backend=backend, _info=info)
            found.setdefault(info.name, []).append(ws)
        return found

    @staticmethod
    def _default() -> "Workspace":
        """The workspace offline runs record into when no config.json is found."""
        config_file = find_config_file(".")
        if config_file is not None:
            return Workspace._open(read_config(config_file), create_if_local=True)
        return Workspace._open({"workspace_name": DEFAULT_WORKSPACE,
                                "subscription_id": LOCAL_SUBSCRIPTION,
                                "resource_group": LOCAL_RESOURCE_GROUP}, create_if_local=True)

    # --- properties ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._info.name

    @property
    def subscription_id(self) -> str:
        return self._info.subscription_id

    @property
    def resource_group(self) -> str:
        return self._info.resource_group

    @property
    def location(self) -> str:
        return self._info.location

    @property
    def backend(self) -> str:
        """simml addition: the name of the backend serving this workspace."""
        return self._backend.name

    @property
    def service_context(self) -> Any:
        return self._info

    @property
    def clock(self) -> WorkspaceClock:
        """simml addition: the workspace's simulated time, shared by every process."""
        return self._clock

    def set_clock(self, setting: str) -> None:
        """simml addition: ``"system"``, ``"manual"`` or ``"scaled:N"`` (N times real time)."""
        self._backend.clock_set(self._info, setting)

    def advance_clock(self, seconds: float) -> None:
        """simml addition: move a manual clock forward; runners waiting on it proceed."""
        self._backend.clock_advance(self._info, seconds)

    @property
    def runtime(self) -> str:
        """simml addition: the default runtime of this workspace's runs, ``"process"`` (a fresh
        workspace) or ``"docker"``. A run's explicit ``use_docker`` /
        ``environment.docker.enabled``, then its compute target's ``runtime``, come first."""
        return self._backend.runtime_get(self._info)

    def set_runtime(self, runtime: str) -> None:
        """simml addition: ``"process"`` or ``"docker"`` (see ``docs/docker.md``)."""
        self._backend.runtime_set(self._info, runtime)

    def _history(self) -> "RunHistoryStore":
        if self._store is None:
            self._store = self._backend.history_open(self._info)
        return self._store

    # --- operations ----------------------------------------------------------------------------
    def write_config(self, path: str | os.PathLike[str] | None = None,
                     file_name: str | None = None) -> Path:
        """Write ``<path>/.azureml/config.json`` (or ``aml_config/`` if that folder exists)."""
        base = Path(path or ".")
        folder = base / "aml_config" if (base / "aml_config").is_dir() else base / ".azureml"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (file_name or "config.json")
        data = {"subscription_id": self.subscription_id, "resource_group": self.resource_group,
                "workspace_name": self.name}
        if self._backend.name != "local" or self._config.get("backend"):
            data["backend"] = self._backend.name
        target.write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")
        return target

    def get_details(self) -> dict[str, Any]:
        info = self._info
        return {
            "id": f"/subscriptions/{info.subscription_id}/resourceGroups/{info.resource_group}"
                  f"/providers/Microsoft.MachineLearningServices/workspaces/{info.name}",
            "name": info.name, "location": info.location, "workspaceid": info.workspace_id,
            "creationTime": info.created_time.isoformat(), "sku": self.sku,
            "backend": self._backend.name, **{k: v for k, v in info.properties.items()},
        }

    @property
    def experiments(self) -> dict[str, "Experiment"]:
        from simml.core.experiment import Experiment
        return {e.name: Experiment(self, e.name, _skip_name_validation=True)
                for e in self._history().list_experiments()}

    def get_run(self, run_id: str) -> Any:
        from simml.core.run import Run
        return Run._from_id(self, run_id)

    def get_default_datastore(self) -> "Datastore":
        from simml.core.datastore import Datastore
        return Datastore._from_info(self, self._backend.datastore_get(self._info, None))

    def set_default_datastore(self, name: str) -> None:
        self._backend.datastore_set_default(self._info, name)

    @property
    def datastores(self) -> dict[str, "Datastore"]:
        from simml.core.datastore import Datastore
        return {d.name: Datastore._from_info(self, d)
                for d in self._backend.datastore_list(self._info)}

    @property
    def compute_targets(self) -> dict[str, Any]:
        from simml.core.compute import ComputeTarget
        return {c.name: c for c in ComputeTarget.list(self)}

    @property
    def models(self) -> dict[str, list[Any]]:
        from simml.core.model import Model
        grouped: dict[str, list[Any]] = {}
        for model in Model.list(self):
            grouped.setdefault(model.name, []).append(model)
        return grouped

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and (
            (self.subscription_id, self.resource_group, self.name, self.backend)
            == (other.subscription_id, other.resource_group, other.name, other.backend))

    def __hash__(self) -> int:
        return hash((self.subscription_id, self.resource_group, self.name, self.backend))

    def __repr__(self) -> str:
        return (f"Workspace.create(name='{self.name}', subscription_id='{self.subscription_id}', "
                f"resource_group='{self.resource_group}')")
