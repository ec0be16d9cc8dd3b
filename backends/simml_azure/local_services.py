"""``LocalWebservice`` on the azure backend: a scoring server on this machine serving models
registered in the Azure workspace, as Azure's SDK v1 does (its ``LocalWebservice`` runs on the
client machine with the model downloaded from the workspace).

The local backend's service machinery (``simml_local.services``) runs it unchanged; only where
its records live and where models come from differ: records under
``<SIMML_HOME>/azure/<subscription>/<resource group>/<workspace>/`` (this machine's services of
that workspace), models downloaded from Azure through ``azureml_api``. No azureml import here.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from simml.entities import WorkspaceInfo
from simml.exceptions import UserErrorException
from simml_local.services import LocalServices

if TYPE_CHECKING:
    from simml.entities import ModelInfo
    from simml_local.store import SqliteRunHistoryStore

SEGMENT = re.compile(r"^[\w\-.()]{1,90}$")


class AzureLocalServices(LocalServices):
    """The local backend's web-service hooks with Azure's model registry."""

    def __init__(self, home: Path, api: Callable[[WorkspaceInfo], Any]) -> None:
        self.home = home
        self._api = api
        self._stores: dict[Path, "SqliteRunHistoryStore"] = {}
        self._lock = threading.Lock()

    def root(self, workspace: WorkspaceInfo) -> Path:
        parts = (workspace.subscription_id, workspace.resource_group, workspace.name)
        if not all(SEGMENT.match(p) and p not in (".", "..") for p in parts):
            raise UserErrorException(f"Invalid workspace reference {parts!r}.")
        return self.home / "azure" / "workspaces" / parts[0] / parts[1] / parts[2]

    def store(self, workspace: WorkspaceInfo) -> "SqliteRunHistoryStore":
        """This machine's service records of the Azure workspace (the local store's schema)."""
        from simml_local.store import SqliteRunHistoryStore
        root = self.root(workspace)
        with self._lock:
            found = self._stores.get(root)
            if found is None:
                root.mkdir(parents=True, exist_ok=True)
                found = self._stores[root] = SqliteRunHistoryStore(root)
            return found

    def simml_model_get(self, workspace: WorkspaceInfo, name: str, version: int | None
                        ) -> "ModelInfo":
        return self._api(workspace).model_get(name, version)

    def simml_model_download(self, workspace: WorkspaceInfo, name: str, version: int,
                             target_dir: str, exist_ok: bool) -> str:
        return self._api(workspace).model_download(name, version, target_dir, exist_ok)
