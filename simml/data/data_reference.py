"""``DataReference``: a path in a datastore and how a job sees it (mounted, downloaded, uploaded).

Passing one in ``script_params`` / ``arguments`` makes the job receive a local path: ``as_mount()``
read-only, ``as_download()`` a private copy (resolved by the execution stages).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simml.exceptions import InvalidValueException
from simml.ids import IdFactory

if TYPE_CHECKING:
    from simml.core.datastore import Datastore

MODES = ("mount", "download", "upload")


class DataReference:
    def __init__(self, datastore: "Datastore", data_reference_name: str | None = None,
                 path_on_datastore: str | None = None, mode: str = "mount",
                 path_on_compute: str | None = None, overwrite: bool = False) -> None:
        if mode not in MODES:
            raise InvalidValueException(f"Data reference mode must be one of {MODES}, not {mode!r}.")
        self.datastore = datastore
        self.data_reference_name = data_reference_name or IdFactory.from_environment().hex(32)
        self.path_on_datastore = path_on_datastore
        self.mode = mode
        self.path_on_compute = path_on_compute
        self.overwrite = overwrite

    @property
    def datastore_name(self) -> str:
        return self.datastore.name

    def _copy(self, **changes: Any) -> "DataReference":
        values = dict(datastore=self.datastore, data_reference_name=self.data_reference_name,
                      path_on_datastore=self.path_on_datastore, mode=self.mode,
                      path_on_compute=self.path_on_compute, overwrite=self.overwrite)
        values.update(changes)
        return DataReference(**values)

    def path(self, path: str | None = None, data_reference_name: str | None = None
             ) -> "DataReference":
        base = (self.path_on_datastore or "").rstrip("/")
        joined = f"{base}/{path}".lstrip("/") if base and path else (path or base or None)
        return self._copy(path_on_datastore=joined,
                          data_reference_name=data_reference_name or None)

    def as_mount(self) -> "DataReference":
        return self._copy(mode="mount")

    def as_download(self, path_on_compute: str | None = None, overwrite: bool = False
                    ) -> "DataReference":
        return self._copy(mode="download", path_on_compute=path_on_compute, overwrite=overwrite)

    def as_upload(self, path_on_compute: str | None = None, overwrite: bool = False
                  ) -> "DataReference":
        return self._copy(mode="upload", path_on_compute=path_on_compute, overwrite=overwrite)

    def to_config(self) -> dict[str, Any]:
        """The serialisable form a run definition carries."""
        return {"dataStoreName": self.datastore.name, "pathOnDataStore": self.path_on_datastore,
                "mode": self.mode, "pathOnCompute": self.path_on_compute,
                "overwrite": self.overwrite, "name": self.data_reference_name}

    def __str__(self) -> str:
        return f"$AZUREML_DATAREFERENCE_{self.data_reference_name}"

    def __repr__(self) -> str:
        return (f"$AZUREML_DATAREFERENCE_{self.data_reference_name} (datastore "
                f"{self.datastore.name}, path {self.path_on_datastore!r}, mode {self.mode})")
