"""The run-history store: the Protocol every backend's store implements.

The core reaches experiments, runs, metrics, tags, properties and run files only through this
Protocol, which a backend hands out from ``simml_history_open``. The local backend keeps them in
SQLite plus artifact files; the Azure backend maps each method onto run history REST calls. Method
contracts (what must be atomic, what raises) are part of the Protocol and are checked by the shared
contract suite in ``simml.testing.contract``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, BinaryIO, Iterable, Protocol, runtime_checkable

from simml.entities import (
    BestRun,
    ExperimentInfo,
    MetricBatch,
    MetricSeries,
    RunCreate,
    RunInfo,
    RunQuery,
)


@runtime_checkable
class RunHistoryStore(Protocol):
    """Run history of one workspace.

    Every write is atomic: it is visible whole or not at all, also to other processes. Unknown
    experiments and runs raise ``simml.exceptions.NotFoundException``.
    """

    # --- experiments -------------------------------------------------------------------------
    def get_or_create_experiment(self, name: str) -> ExperimentInfo:
        """Return the experiment, creating it when absent (Azure creates on first use)."""

    def get_experiment(self, name: str) -> ExperimentInfo:
        """Return the experiment or raise ``NotFoundException``."""

    def list_experiments(self, include_archived: bool = False) -> list[ExperimentInfo]:
        """All experiments, oldest first."""

    def set_experiment_archived(self, name: str, archived_time: datetime | None) -> ExperimentInfo:
        """Archive (a time) or reactivate (``None``) an experiment."""

    # --- runs ----------------------------------------------------------------------------------
    def create_run(self, request: RunCreate) -> RunInfo:
        """Create a run (its experiment too); numbers runs per experiment from 1."""

    def get_run(self, run_id: str) -> RunInfo:
        """Return the run or raise ``NotFoundException``."""

    def query_runs(self, query: RunQuery) -> list[RunInfo]:
        """Runs matching every filter, newest first."""

    def set_run_status(self, run_id: str, status: str, at: datetime,
                       error: dict[str, Any] | None = None) -> RunInfo:
        """Record a status (validated by the caller's state machine) and its time.

        Entering Running sets the start time when unset; a terminal status sets the end time.
        """

    def update_run(self, run_id: str, *, display_name: str | None = None,
                   definition: dict[str, Any] | None = None) -> RunInfo:
        """Change descriptive fields."""

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Add or overwrite tags."""

    def remove_tags(self, run_id: str, keys: Iterable[str]) -> None:
        """Remove tags; absent keys are ignored."""

    def add_properties(self, run_id: str, properties: dict[str, str]) -> None:
        """Add properties; a key that already has a different value raises ``UserErrorException``
        (properties are immutable once set, as in Azure)."""

    # --- metrics -------------------------------------------------------------------------------
    def log_metrics(self, batch: MetricBatch) -> None:
        """Append every row of ``batch`` in one transaction, keeping their order."""

    def get_metrics(self, run_id: str, name: str | None = None) -> list[MetricSeries]:
        """Stored metric values of a run, as series in logging order."""

    def best_runs(self, experiment_name: str, metric: str, maximize: bool,
                  limit: int = 1) -> list[BestRun]:
        """Runs of an experiment ranked by their best numeric value of ``metric``."""

    # --- files ---------------------------------------------------------------------------------
    def upload_file(self, run_id: str, name: str, source: BinaryIO) -> None:
        """Store ``source`` as run file ``name`` (a relative POSIX path); atomic; overwrites."""

    def list_files(self, run_id: str) -> list[str]:
        """Relative names of the run's files, sorted."""

    def open_file(self, run_id: str, name: str) -> BinaryIO:
        """Open a run file for reading or raise ``NotFoundException``."""

    def close(self) -> None:
        """Release connections; the store may be reopened later."""
