"""``Datastore``: Azure's storage registrations, served by the backend's datastore hooks.

``Datastore(ws, name)`` / ``Datastore.get`` return the concrete class (``AzureBlobDatastore``,
``AzureFileDatastore`` or simml's ``LocalFolderDatastore``), as Azure's ``__new__`` does. Uploads
walk the client's files here (client side) and hand the list to the backend.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from simml.entities import DatastoreInfo, StorageRegistration
from simml.exceptions import InvalidValueException

if TYPE_CHECKING:
    from simml.core.workspace import Workspace
    from simml.data.data_reference import DataReference


class Datastore:
    """Base of the datastore classes; also the lookup entry point."""

    def __new__(cls, workspace: "Workspace" = None, name: str | None = None,  # type: ignore[assignment]
                *args: Any, **kwargs: Any) -> Any:
        if cls is Datastore and workspace is not None:
            info = workspace._backend.datastore_get(workspace._info, name)
            return Datastore._from_info(workspace, info)
        return super().__new__(cls)

    def __init__(self, workspace: "Workspace" = None, name: str | None = None,  # type: ignore[assignment]
                 *args: Any, **kwargs: Any) -> None:
        pass

    @staticmethod
    def _from_info(workspace: "Workspace", info: DatastoreInfo) -> "Datastore":
        from simml.data.azure_storage_datastore import (
            AzureBlobDatastore,
            AzureFileDatastore,
            LocalFolderDatastore,
        )
        cls = {"AzureBlob": AzureBlobDatastore, "AzureFile": AzureFileDatastore}.get(
            info.datastore_type, LocalFolderDatastore)
        store = object.__new__(cls)
        store._bind(workspace, info)
        return store

    def _bind(self, workspace: "Workspace", info: DatastoreInfo) -> None:
        self.workspace = workspace
        self._info = info
        self.name = info.name
        self.datastore_type = info.datastore_type
        self.container_name = info.container_name
        self.account_name = info.account_name

    @staticmethod
    def get(workspace: "Workspace", datastore_name: str) -> "Datastore":
        return Datastore._from_info(
            workspace, workspace._backend.datastore_get(workspace._info, datastore_name))

    @staticmethod
    def get_default(workspace: "Workspace") -> "Datastore":
        return workspace.get_default_datastore()

    @staticmethod
    def register_azure_blob_container(workspace: "Workspace", datastore_name: str,
                                      container_name: str, account_name: str,
                                      sas_token: str | None = None, account_key: str | None = None,
                                      protocol: str | None = None, endpoint: str | None = None,
                                      overwrite: bool = False, create_if_not_exists: bool = False,
                                      skip_validation: bool = False,
                                      blob_cache_timeout: int | None = None,
                                      grant_workspace_access: bool = False,
                                      subscription_id: str | None = None,
                                      resource_group: str | None = None,
                                      **kwargs: Any) -> "Datastore":
        """On the local backend the container is a folder of the workspace (the credential is
        not kept); on Azure, Azure's registration with the credential given."""
        storage = StorageRegistration(
            account_key=account_key, sas_token=sas_token, protocol=protocol, endpoint=endpoint,
            create_if_not_exists=create_if_not_exists, skip_validation=skip_validation,
            blob_cache_timeout=blob_cache_timeout, grant_workspace_access=grant_workspace_access,
            subscription_id=subscription_id, resource_group=resource_group)
        return Datastore._register(workspace, datastore_name, "AzureBlob", container_name,
                                   account_name, "", overwrite, storage)

    @staticmethod
    def register_azure_file_share(workspace: "Workspace", datastore_name: str, file_share_name: str,
                                  account_name: str, sas_token: str | None = None,
                                  account_key: str | None = None, protocol: str | None = None,
                                  endpoint: str | None = None, overwrite: bool = False,
                                  create_if_not_exists: bool = False, skip_validation: bool = False,
                                  **kwargs: Any) -> "Datastore":
        storage = StorageRegistration(
            account_key=account_key, sas_token=sas_token, protocol=protocol, endpoint=endpoint,
            create_if_not_exists=create_if_not_exists, skip_validation=skip_validation)
        return Datastore._register(workspace, datastore_name, "AzureFile", file_share_name,
                                   account_name, "", overwrite, storage)

    @staticmethod
    def register_local_folder(workspace: "Workspace", datastore_name: str,
                              folder: str | os.PathLike[str], overwrite: bool = False
                              ) -> "Datastore":
        """simml addition: name an existing folder of this machine as a datastore."""
        return Datastore._register(workspace, datastore_name, "LocalFolder", "", "",
                                   os.path.abspath(folder), overwrite)

    @staticmethod
    def _register(workspace: "Workspace", name: str, kind: str, container: str, account: str,
                  location: str, overwrite: bool, storage: StorageRegistration | None = None
                  ) -> "Datastore":
        import re
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_]{1,255}", name):
            raise InvalidValueException(
                f"Invalid datastore name {name!r}: use letters, digits and underscores only.")
        info = DatastoreInfo(name=name, datastore_type=kind, container_name=container,
                             account_name=account)
        return Datastore._from_info(workspace, workspace._backend.datastore_register(
            workspace._info, info, location, overwrite, storage))

    def set_as_default(self) -> None:
        self.workspace.set_default_datastore(self.name)

    def path(self, path: str | None = None, data_reference_name: str | None = None
             ) -> "DataReference":
        from simml.data.data_reference import DataReference
        return DataReference(self, data_reference_name, path_on_datastore=path)

    def as_mount(self) -> "DataReference":
        return self.path().as_mount()

    def as_download(self, path_on_compute: str | None = None) -> "DataReference":
        return self.path().as_download(path_on_compute)

    def as_upload(self, path_on_compute: str | None = None) -> "DataReference":
        return self.path().as_upload(path_on_compute)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, container_name="
                f"{self.container_name!r}, account_name={self.account_name!r})")
