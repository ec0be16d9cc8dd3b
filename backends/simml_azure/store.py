"""``AzureRunHistoryStore``: simml's ``RunHistoryStore`` over an Azure ML workspace's run history.

The rules that are simml's (paths that escape a run's folder, properties that cannot change,
filters, ordering, best-run ranking) are applied here, so they read the same as on the local
backend; every Azure call goes through ``azureml_api.AzureMLWorkspace``.

A submitted run is created by its submission on Azure (``snapshotrun`` chooses nothing but takes
the run id simml chose), not before it: ``create_run`` with a definition keeps the request until
``simml_run_submit`` hands it to Azure, and answers reads of that run from it meanwhile.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable

from simml._paths import safe_relpath
from simml.exceptions import NotFoundException, UserErrorException

if TYPE_CHECKING:
    from simml.entities import (
        BestRun,
        ExperimentInfo,
        MetricBatch,
        MetricSeries,
        RunCreate,
        RunInfo,
        RunQuery,
    )
    from simml_azure.azureml_api import AzureMLWorkspace

CLIENT_DRIVEN = ("Running", "Completed", "Failed", "Canceled")
"""Statuses a client records on Azure (interactive runs; CancelRequested too, for those); Azure
itself drives the others (and records CancelRequested when it cancels a submitted run)."""


class AzureRunHistoryStore:
    """Run history of one Azure ML workspace (``simml.store.RunHistoryStore``)."""

    def __init__(self, api: "AzureMLWorkspace") -> None:
        self.api = api
        self._pending: dict[str, tuple["RunCreate", "RunInfo"]] = {}
        self._lock = threading.Lock()

    # --- experiments -----------------------------------------------------------------------------
    def get_or_create_experiment(self, name: str) -> "ExperimentInfo":
        return self.api.get_or_create_experiment(name)

    def get_experiment(self, name: str) -> "ExperimentInfo":
        return self.api.get_experiment(name)

    def list_experiments(self, include_archived: bool = False) -> list["ExperimentInfo"]:
        found = self.api.list_experiments(include_archived)
        return sorted(found, key=lambda e: (e.created_time, e.name))

    def set_experiment_archived(self, name: str, archived_time: datetime | None
                                ) -> "ExperimentInfo":
        return self.api.set_experiment_archived(name, archived_time is not None)

    # --- runs ------------------------------------------------------------------------------------
    def create_run(self, request: "RunCreate") -> "RunInfo":
        from simml.entities import RunInfo
        if request.definition is None:
            return self.api.create_run(request)
        experiment = self.api.get_or_create_experiment(request.experiment_name)
        info = RunInfo(id=request.run_id, experiment_id=experiment.id,
                       experiment_name=request.experiment_name, number=0,
                       run_type=request.run_type, status="NotStarted", target=request.target,
                       created_time=request.created_time or datetime.now(timezone.utc),
                       parent_id=request.parent_id, display_name=request.display_name,
                       tags=dict(request.tags), properties=dict(request.properties),
                       definition=request.definition, submitted_by=request.submitted_by)
        with self._lock:
            self._pending[request.run_id] = (request, info)
        return info

    def take_pending(self, run_id: str) -> "RunCreate":
        """The creation request of a submitted run, for its submission (once)."""
        with self._lock:
            found = self._pending.get(run_id)
        if found is None:
            raise NotFoundException(f"Run {run_id} has no pending submission on this client.")
        return found[0]

    def submitted(self, run_id: str) -> None:
        """Azure has the run now: reads go to Azure."""
        with self._lock:
            self._pending.pop(run_id, None)

    def get_run(self, run_id: str) -> "RunInfo":
        with self._lock:
            pending = self._pending.get(run_id)
        if pending is not None:
            return pending[1]
        return self.api.get_run(run_id)

    def query_runs(self, query: "RunQuery") -> list["RunInfo"]:
        if query.parent_id is not None:
            runs = self.api.children(self.get_run(query.parent_id))
            if query.experiment_name is not None:
                runs = [r for r in runs if r.experiment_name == query.experiment_name]
        else:
            names = ([query.experiment_name] if query.experiment_name is not None
                     else [e.name for e in self.api.list_experiments(True)])
            runs = [r for name in names for r in self.api.experiment_runs(name)]
            if not query.include_children:
                runs = [r for r in runs if r.parent_id is None]
        runs = [r for r in runs if _matches(r, query)]
        runs.sort(key=lambda r: (r.created_time, r.number), reverse=True)
        return runs[: query.limit] if query.limit is not None else runs

    def set_run_status(self, run_id: str, status: str, at: datetime,
                       error: dict[str, Any] | None = None) -> "RunInfo":
        info = self.get_run(run_id)
        if status in CLIENT_DRIVEN or (status == "CancelRequested" and info.definition is None):
            # an interactive run's cancel is CancelRequested then Canceled, as on the local
            # backend (Azure records the request itself for a submitted run)
            self.api.post_status(info, status, error)
        return self.get_run(run_id)

    def update_run(self, run_id: str, *, display_name: str | None = None,
                   definition: dict[str, Any] | None = None) -> "RunInfo":
        if definition is not None:
            raise UserErrorException(
                f"Run {run_id}: Azure keeps the definition a run was submitted with; it cannot be "
                "changed afterwards.")
        info = self.get_run(run_id)
        if display_name is not None:
            self.api.patch_run(info, display_name=display_name)
        return self.api.get_run(run_id)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.api.patch_run(self.get_run(run_id), tags=dict(tags))

    def remove_tags(self, run_id: str, keys: Iterable[str]) -> None:
        info = self.get_run(run_id)
        present = [k for k in keys if k in info.tags]
        if present:
            self.api.remove_tags(info, present)

    def add_properties(self, run_id: str, properties: dict[str, str]) -> None:
        info = self.get_run(run_id)
        for key, value in properties.items():
            if key in info.properties and info.properties[key] != value:
                raise UserErrorException(
                    f"Property {key!r} of run {run_id} is already set to "
                    f"{info.properties[key]!r}; run properties cannot be changed once added.")
        new = {k: v for k, v in properties.items() if k not in info.properties}
        if new:
            self.api.patch_run(info, properties=new)

    # --- metrics ---------------------------------------------------------------------------------
    def log_metrics(self, batch: "MetricBatch") -> None:
        if not batch.rows:
            return
        self.api.log_rows(self.get_run(batch.run_id), batch.rows)

    def get_metrics(self, run_id: str, name: str | None = None) -> list["MetricSeries"]:
        return self.api.metric_series(self.get_run(run_id), name)

    def best_runs(self, experiment_name: str, metric: str, maximize: bool,
                  limit: int = 1) -> list["BestRun"]:
        """Azure v1 has no server-side ranking: each run's values of ``metric`` are read."""
        from simml.entities import BestRun, RunQuery
        ranked = []
        for run in self.query_runs(RunQuery(experiment_name=experiment_name,
                                            include_children=True)):
            numbers = [v for series in self.api.metric_series(run, metric)
                       for v in series.values
                       if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if numbers:
                ranked.append((run.id, float(max(numbers) if maximize else min(numbers))))
        ranked.sort(key=lambda item: ((-item[1] if maximize else item[1]), item[0]))
        return [BestRun(run_id, value) for run_id, value in ranked[: int(limit)]]

    # --- files -----------------------------------------------------------------------------------
    def upload_file(self, run_id: str, name: str, source: BinaryIO) -> None:
        relpath = safe_relpath(name)
        self.api.upload_file(self.get_run(run_id), relpath, source)

    def list_files(self, run_id: str) -> list[str]:
        return self.api.file_names(self.get_run(run_id))

    def open_file(self, run_id: str, name: str) -> BinaryIO:
        from simml_azure.azureml_api import temporary_file
        relpath = safe_relpath(name)
        info = self.get_run(run_id)
        if relpath not in self.api.file_names(info):
            raise NotFoundException(f"Run {run_id} has no file {relpath!r}.")
        target = temporary_file("simml-azure-")
        try:
            self.api.download_file(info, relpath, target)
            stream = open(target, "rb")  # noqa: SIM115 - returned to the caller
        finally:
            os.unlink(target)  # the open stream keeps the data; nothing is left behind
        return stream

    def close(self) -> None:
        """Nothing to release: the SDK's clients hold no connection simml owns."""


def _matches(run: "RunInfo", query: "RunQuery") -> bool:
    if query.run_type is not None and run.run_type != query.run_type:
        return False
    if query.status is not None and run.status != query.status:
        return False
    for values, filters in ((run.tags, query.tags), (run.properties, query.properties)):
        for key, value in (filters or {}).items():
            if key not in values or (value is not None and values[key] != value):
                return False
    return True
