"""The local backend: hook implementations over folders under ``SIMML_HOME``.

A workspace is the folder ``<home>/workspaces/<subscription>/<resource group>/<name>/`` holding
``workspace.json``, the SQLite store ``simml.db``, run files under ``artifacts/`` and datastores
under ``datastores/``. One ``LocalBackend`` instance belongs to one plugin host; it caches an open
store per workspace folder.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from simml.entities import BackendInfo, WorkspaceInfo, WorkspaceRef
from simml.exceptions import UserErrorException, WorkspaceException
from simml.plugins import hookimpl
from simml.settings import simml_home
from simml_local.clock import LocalClock
from simml_local.compute import LocalCompute
from simml_local.datastores import LocalDatastores
from simml_local.environments import LocalEnvironments
from simml_local.execution import LocalExecution
from simml_local.files import atomic_write_bytes
from simml_local.registry import LocalModelRegistry
from simml_local.runtimes import LocalRuntimes
from simml_local.services import LocalServices
from simml_local.store import SqliteRunHistoryStore

NAME = "local"
WORKSPACE_NAME = re.compile(r"^[a-zA-Z0-9][\w\-]{2,32}$")
SEGMENT = re.compile(r"^[\w\-.()]{1,90}$")


class LocalBackend(LocalModelRegistry, LocalDatastores, LocalClock, LocalExecution, LocalCompute,
                   LocalEnvironments, LocalServices, LocalRuntimes):
    """The embedded default backend."""

    def __init__(self, config: dict[str, Any] | None = None,
                 home: str | os.PathLike[str] | None = None) -> None:
        self.home = Path(home) if home is not None else simml_home(config)
        self._stores: dict[Path, SqliteRunHistoryStore] = {}
        self._roots: dict[tuple[str, str, str], Path] = {}
        self._lock = threading.Lock()

    # --- helpers -----------------------------------------------------------------------------
    def workspace_dir(self, subscription_id: str, resource_group: str, name: str) -> Path:
        for label, value in (("subscription_id", subscription_id),
                             ("resource_group", resource_group)):
            if not SEGMENT.match(value) or value in (".", ".."):
                raise UserErrorException(f"Invalid {label} {value!r}.")
        if not WORKSPACE_NAME.match(name):
            raise UserErrorException(
                f"Invalid workspace name {name!r}: it must be 3-33 characters, start with a letter "
                "or digit, and contain only letters, digits, '_' and '-'.")
        return self.home / "workspaces" / subscription_id / resource_group / name

    def root(self, workspace: WorkspaceInfo) -> Path:
        key = (workspace.subscription_id, workspace.resource_group, workspace.name)
        root = self._roots.get(key)  # asked for hundreds of times a run: validate once
        if root is None:
            root = self._roots[key] = self.workspace_dir(*key)
        return root

    def store(self, workspace: WorkspaceInfo) -> SqliteRunHistoryStore:
        root = self.root(workspace)
        store = self._stores.get(root)
        if store is not None:
            return store
        with self._lock:
            store = self._stores.get(root)
            if store is None:
                store = self._stores[root] = SqliteRunHistoryStore(root)
            return store

    @staticmethod
    def _read_info(folder: Path) -> WorkspaceInfo:
        data = json.loads((folder / "workspace.json").read_text(encoding="utf-8"))
        return WorkspaceInfo(
            name=data["name"], subscription_id=data["subscription_id"],
            resource_group=data["resource_group"], location=data["location"],
            workspace_id=data["workspace_id"], backend=NAME,
            created_time=datetime.fromisoformat(data["created_time"]),
            properties={"root": str(folder)})

    # --- hooks -------------------------------------------------------------------------------
    @hookimpl
    def simml_backend_describe(self) -> BackendInfo:
        return BackendInfo(NAME, frozenset({"workspace-auto-create", "manual-clock"}))

    @hookimpl
    def simml_workspace_get(self, ref: WorkspaceRef) -> WorkspaceInfo:
        folder = self.workspace_dir(ref.subscription_id, ref.resource_group, ref.name)
        if not (folder / "workspace.json").is_file():
            raise WorkspaceException(
                f"Workspace {ref.name!r} (subscription {ref.subscription_id}, resource group "
                f"{ref.resource_group}) was not found under {self.home}. Create it with "
                f"Workspace.create(...) or `simml workspace init`.")
        return self._read_info(folder)

    @hookimpl
    def simml_workspace_create(self, ref: WorkspaceRef, exist_ok: bool) -> WorkspaceInfo:
        folder = self.workspace_dir(ref.subscription_id, ref.resource_group, ref.name)
        marker = folder / "workspace.json"
        if marker.is_file():
            if not exist_ok:
                raise WorkspaceException(f"Workspace {ref.name!r} already exists.")
            return self._read_info(folder)
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "name": ref.name, "subscription_id": ref.subscription_id,
            "resource_group": ref.resource_group, "location": ref.location,
            "workspace_id": str(uuid.uuid4()),
            "created_time": datetime.now(timezone.utc).isoformat(),
        }
        # Two creators racing: the first rename wins; the loser reads the winner's record.
        SqliteRunHistoryStore(folder).close()
        if not marker.is_file():
            atomic_write_bytes(marker, json.dumps(record, indent=2).encode())
        return self._read_info(folder)

    @hookimpl
    def simml_workspace_list(self, subscription_id: str | None, resource_group: str | None
                             ) -> list[WorkspaceInfo]:
        base = self.home / "workspaces"
        found = []
        for marker in sorted(base.glob("*/*/*/workspace.json")):
            info = self._read_info(marker.parent)
            if subscription_id and info.subscription_id != subscription_id:
                continue
            if resource_group and info.resource_group != resource_group:
                continue
            found.append(info)
        return found

    @hookimpl
    def simml_history_open(self, workspace: WorkspaceInfo) -> SqliteRunHistoryStore:
        return self.store(workspace)
