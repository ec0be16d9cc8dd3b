"""The concrete datastore classes with Azure's transfer methods.

Transfers print Azure's console lines ("Uploading an estimated of N files", ...) and show a rich
progress bar on a terminal; ``show_progress=False`` keeps them quiet.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from simml._paths import collect_file_items, collect_upload_items
from simml.core.datastore import Datastore
from simml.data.data_reference import DataReference
from simml.progress import PrintProgress


class AbstractAzureStorageDatastore(Datastore):
    """Upload and download shared by blob containers, file shares and local folders."""

    def upload(self, src_dir: str | os.PathLike[str], target_path: str | None = None,
               overwrite: bool = False, show_progress: bool = True) -> DataReference:
        """Upload every file under ``src_dir`` to ``target_path``; returns a data reference to
        ``target_path``. Existing files are skipped unless ``overwrite``."""
        items = tuple(collect_upload_items(src_dir, target_path))
        return self._upload(items, target_path, overwrite, show_progress)

    def upload_files(self, files: Iterable[str | os.PathLike[str]],
                     relative_root: str | os.PathLike[str] | None = None,
                     target_path: str | None = None, overwrite: bool = False,
                     show_progress: bool = True) -> DataReference:
        items = tuple(collect_file_items(files, relative_root, target_path))
        return self._upload(items, target_path, overwrite, show_progress)

    def _upload(self, items: tuple[Any, ...], target_path: str | None, overwrite: bool,
                show_progress: bool) -> DataReference:
        progress = PrintProgress("Uploading") if show_progress else None
        self.workspace._backend.datastore_upload(self.workspace._info, self.name, items,
                                                 overwrite, progress)
        return DataReference(self, path_on_datastore=target_path)

    def download(self, target_path: str | os.PathLike[str], prefix: str | None = None,
                 overwrite: bool = False, show_progress: bool = True) -> int:
        """Download files whose name starts with ``prefix`` under ``target_path``; returns how
        many were downloaded."""
        progress = PrintProgress("Downloading") if show_progress else None
        result = self.workspace._backend.datastore_download(
            self.workspace._info, self.name, prefix, os.fspath(target_path), overwrite, progress)
        return len(result.transferred)

    def list_files(self, prefix: str | None = None) -> list[str]:
        """simml addition: names of the files under ``prefix``."""
        return self.workspace._backend.datastore_list_files(self.workspace._info, self.name,
                                                            prefix)


class AzureBlobDatastore(AbstractAzureStorageDatastore):
    """A blob container (on the local backend, a folder of the workspace)."""


class AzureFileDatastore(AbstractAzureStorageDatastore):
    """A file share (on the local backend, a folder of the workspace)."""


class LocalFolderDatastore(AbstractAzureStorageDatastore):
    """simml addition: an existing folder of this machine registered by name."""
