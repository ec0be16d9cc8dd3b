"""Datastores of the local backend: folders.

``workspaceblobstore`` (the default) and ``workspacefilestore`` are folders under the workspace;
``register_azure_blob_container`` / ``register_azure_file_share`` add more such folders by name
(simulating the container), and ``register_local_folder`` points a name at an existing folder.
The registry is a small JSON file updated under an exclusive ``flock`` and replaced atomically, so
concurrent processes never lose a registration.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from simml.entities import (
    DatastoreFile,
    DatastoreInfo,
    TransferResult,
    UploadItem,
    WorkspaceInfo,
)
from simml.exceptions import NotFoundException, UserErrorException
from simml.plugins import hookimpl
from simml_local.files import (
    atomic_write_bytes,
    download_tree,
    list_tree,
    safe_join,
    upload_tree,
)

if TYPE_CHECKING:
    from simml.progress import Progress

DEFAULT_DATASTORE = "workspaceblobstore"
LOCAL_FOLDER = "LocalFolder"


class LocalDatastores:
    """Mixin of ``LocalBackend``: the datastore hooks."""

    root: Any  # provided by LocalBackend: root(workspace) -> Path

    # --- registry file -------------------------------------------------------------------------
    def _datastore_file(self, workspace: WorkspaceInfo) -> Path:
        return self.root(workspace) / "datastores.json"

    def _builtin(self, workspace: WorkspaceInfo) -> dict[str, dict[str, Any]]:
        account = "simml" + workspace.workspace_id.replace("-", "")[:16]
        container = f"azureml-blobstore-{workspace.workspace_id}"
        return {
            DEFAULT_DATASTORE: {"type": "AzureBlob", "container": container,
                                "account": account, "location": None},
            "workspacefilestore": {"type": "AzureFile",
                                   "container": f"azureml-filestore-{workspace.workspace_id}",
                                   "account": account, "location": None},
        }

    def _read(self, workspace: WorkspaceInfo) -> dict[str, Any]:
        path = self._datastore_file(workspace)
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        return {"default": DEFAULT_DATASTORE, "datastores": self._builtin(workspace)}

    @contextmanager
    def _edit(self, workspace: WorkspaceInfo) -> Iterator[dict[str, Any]]:
        lock_path = self.root(workspace) / "datastores.lock"
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read(workspace)
            yield data
            atomic_write_bytes(self._datastore_file(workspace),
                               json.dumps(data, indent=2).encode())

    def _info(self, data: dict[str, Any], name: str) -> DatastoreInfo:
        entry = data["datastores"][name]
        return DatastoreInfo(name=name, datastore_type=entry["type"],
                             container_name=entry["container"], account_name=entry["account"],
                             is_default=data["default"] == name)

    def datastore_root(self, workspace: WorkspaceInfo, name: str) -> Path:
        """The folder behind a datastore (local backend only)."""
        data = self._read(workspace)
        if name not in data["datastores"]:
            raise NotFoundException(
                f"Datastore {name!r} was not found in workspace {workspace.name}. Registered: "
                f"{', '.join(sorted(data['datastores']))}.")
        location = data["datastores"][name]["location"]
        # Not created here: a refused transfer must leave nothing behind; uploads create it.
        return Path(location) if location else self.root(workspace) / "datastores" / name

    # --- hooks ---------------------------------------------------------------------------------
    @hookimpl
    def simml_datastore_get(self, workspace: WorkspaceInfo, name: str | None) -> DatastoreInfo:
        data = self._read(workspace)
        name = name or data["default"]
        if name not in data["datastores"]:
            raise NotFoundException(
                f"Datastore {name!r} was not found in workspace {workspace.name}. Registered: "
                f"{', '.join(sorted(data['datastores']))}.")
        return self._info(data, name)

    @hookimpl
    def simml_datastore_list(self, workspace: WorkspaceInfo) -> list[DatastoreInfo]:
        data = self._read(workspace)
        return [self._info(data, name) for name in sorted(data["datastores"])]

    @hookimpl
    def simml_datastore_register(self, workspace: WorkspaceInfo, info: DatastoreInfo,
                                 location: str, overwrite: bool) -> DatastoreInfo:
        if info.datastore_type == LOCAL_FOLDER:
            folder = Path(location)
            if not folder.is_absolute() or not folder.is_dir():
                raise NotFoundException(
                    f"register_local_folder: {location!r} is not an existing absolute folder.")
            location = str(folder.resolve())
        else:
            location = ""
        with self._edit(workspace) as data:
            if info.name in data["datastores"] and not overwrite:
                existing = data["datastores"][info.name]
                same = (existing["type"], existing["container"], existing["account"],
                        existing["location"] or "") == (
                    info.datastore_type, info.container_name, info.account_name, location)
                if not same:
                    raise UserErrorException(
                        f"Datastore {info.name!r} is already registered with other settings; "
                        "pass overwrite=True to replace it.")
            data["datastores"][info.name] = {
                "type": info.datastore_type, "container": info.container_name,
                "account": info.account_name, "location": location or None}
        return self.simml_datastore_get(workspace, info.name)

    @hookimpl
    def simml_datastore_set_default(self, workspace: WorkspaceInfo, name: str) -> DatastoreInfo:
        with self._edit(workspace) as data:
            if name not in data["datastores"]:
                raise NotFoundException(f"Datastore {name!r} was not found.")
            data["default"] = name
        return self.simml_datastore_get(workspace, name)

    @hookimpl
    def simml_datastore_upload(self, workspace: WorkspaceInfo, name: str,
                               items: tuple[UploadItem, ...], overwrite: bool,
                               progress: "Progress | None") -> TransferResult:
        return upload_tree(self.datastore_root(workspace, name), items, overwrite, progress)

    @hookimpl
    def simml_datastore_download(self, workspace: WorkspaceInfo, name: str, prefix: str | None,
                                 target_path: str, overwrite: bool,
                                 progress: "Progress | None") -> TransferResult:
        return download_tree(self.datastore_root(workspace, name), prefix, Path(target_path),
                             overwrite, progress, blob_prefix=True)

    @hookimpl
    def simml_datastore_list_files(self, workspace: WorkspaceInfo, name: str,
                                   prefix: str | None) -> list[str]:
        return list_tree(self.datastore_root(workspace, name), prefix, blob_prefix=True)

    @hookimpl
    def simml_datastore_stat(self, workspace: WorkspaceInfo, name: str,
                             prefix: str | None) -> list[DatastoreFile]:
        root = self.datastore_root(workspace, name)
        found = []
        for rel in list_tree(root, prefix, blob_prefix=True):
            try:
                st = safe_join(root, rel).stat()
            except FileNotFoundError:
                continue                                   # deleted since listing
            found.append(DatastoreFile(rel, st.st_size,
                                       datetime.fromtimestamp(st.st_mtime, timezone.utc)))
        return found

    @hookimpl
    def simml_datastore_read(self, workspace: WorkspaceInfo, name: str, path: str, offset: int,
                             length: int) -> bytes:
        target = safe_join(self.datastore_root(workspace, name), path)
        try:
            with open(target, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise NotFoundException(f"{path!r} is not a file of datastore {name!r}.")
                handle.seek(max(0, offset))
                return handle.read(max(0, length))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise NotFoundException(f"File {path!r} was not found in datastore {name!r}.") from exc
