"""``HyperDriveRun`` (Azure's ``azureml.train.hyperdrive.run``): the parent run of a sweep.

It is a ``Run`` (status, ``wait_for_completion``, ``get_children``, ``cancel``) plus Azure's sweep
helpers. A child's *best primary metric* is the max (maximize) or min (minimize) of every numeric
value it logged for the primary metric, as Azure computes it; children are ordered by trial
number (``HD_<uuid>_<n>``).

``cancel()`` asks the runner's sweep loop to stop: it cancels every active child (their processes
are stopped) and stops sampling; the parent ends Canceled.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simml.core.run import Run
from simml.entities import HYPERDRIVE_RUN_TYPE
from simml.exceptions import NotFoundException
from simml.train.hyperdrive.exceptions import PrimaryMetricNotFoundException

if TYPE_CHECKING:
    from simml.core.experiment import Experiment
    from simml.core.workspace import Workspace
    from simml.train.hyperdrive.policy import EarlyTerminationPolicy
    from simml.train.hyperdrive.replay import WhatIfReport

TRIAL_PROPERTY = "simml.trial"
STOPPED_PROPERTY = "simml.stoppedAt"
TERMINAL = ("Completed", "Failed", "Canceled")


class PrimaryMetricGoal(enum.Enum):
    """Whether the primary metric is to be maximized or minimized."""

    MAXIMIZE = "MAXIMIZE"
    MINIMIZE = "MINIMIZE"


@dataclass(frozen=True)
class Trial:
    """One child of a sweep as ``simml sweep show`` lists it."""

    number: int
    run_id: str
    status: str
    hyperparameters: dict[str, Any]
    best_primary_metric: float | None
    intervals: int
    error: str | None


class HyperDriveRun(Run):
    """The parent run of a HyperDrive sweep."""

    RUN_TYPE = HYPERDRIVE_RUN_TYPE

    def __init__(self, experiment: "Experiment", run_id: str, hyperdrive_config: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(experiment, run_id, **kwargs)
        if self._info.run_type != self.RUN_TYPE:
            raise NotFoundException(f"Run {run_id!r} is not a HyperDrive run "
                                    f"(its type is {self._info.run_type!r}).")
        self._hyperdrive_config = hyperdrive_config

    @classmethod
    def _from_id(cls, workspace: "Workspace", run_id: str) -> "HyperDriveRun":
        run = super()._from_id(workspace, run_id)
        return run  # type: ignore[return-value]

    @property
    def hyperdrive_config(self) -> Any:
        return self._hyperdrive_config

    # --- the sweep's settings ------------------------------------------------------------------
    def _sweep(self) -> dict[str, Any]:
        return dict((self._info.definition or {}).get("hyperdrive") or {})

    @property
    def primary_metric_name(self) -> str:
        return self._sweep().get("primaryMetricName", "")

    @property
    def _maximize(self) -> bool:
        return self._sweep().get("primaryMetricGoal", "maximize") == "maximize"

    # --- children ------------------------------------------------------------------------------
    def _trials_info(self) -> list[tuple[int, Any]]:
        from simml.entities import RunQuery
        infos = self._store.query_runs(RunQuery(parent_id=self.id, include_children=True))
        numbered = []
        for info in infos:
            number = info.properties.get(TRIAL_PROPERTY)
            if number is None:
                number = info.id.rsplit("_", 1)[-1]
            numbered.append((int(number), info))
        return sorted(numbered, key=lambda item: item[0])

    def _metric_values(self, run_id: str) -> tuple[list[Any], list[float]]:
        values: list[Any] = []
        times: list[float] = []
        for series in self._store.get_metrics(run_id, self.primary_metric_name):
            if series.kind == "scalar":
                values += series.values
                times += series.times
        return values, times

    def _best_of(self, values: list[Any]) -> float | None:
        numbers = [float(v) for v in values if isinstance(v, (int, float))
                   and not isinstance(v, bool) and math.isfinite(v)]
        if not numbers:
            return None
        return max(numbers) if self._maximize else min(numbers)

    def get_hyperparameters(self) -> dict[str, str]:
        """``{child run id: its hyperparameters as a JSON string}`` (Azure's shape)."""
        return {info.id: info.properties.get("hyperparameters", "{}")
                for _, info in self._trials_info()}

    def get_metrics(self, name: str | None = None, recursive: bool = False,
                    run_type: str | None = None, populate: bool = False) -> dict[str, Any]:
        """``{child run id: its metrics}``, as Azure's ``HyperDriveRun.get_metrics``."""
        from simml.core import _metrics
        return {info.id: _metrics.fold(self._store.get_metrics(info.id, name))
                for _, info in self._trials_info()}

    def trials(self) -> list[Trial]:
        """simml addition: every trial in number order with its status and best metric."""
        out = []
        for number, info in self._trials_info():
            values, _ = self._metric_values(info.id)
            error = None
            if info.error:
                detail = info.error.get("error", info.error)
                error = detail.get("message") if isinstance(detail, dict) else str(detail)
            out.append(Trial(number, info.id, info.status,
                             json.loads(info.properties.get("hyperparameters", "{}")),
                             self._best_of(values), len(values), error))
        return out

    def get_children_sorted_by_primary_metric(self, top: int = 0, reverse: bool = False,
                                              discard_no_metric: bool = False
                                              ) -> list[dict[str, Any]]:
        """Children best first (``reverse`` flips the order), as Azure's dicts: ``run_id``,
        ``hyperparameters`` (a JSON string), ``best_primary_metric``, ``status``. Children that
        never logged the metric come last (or are left out with ``discard_no_metric``)."""
        rows = []
        for number, info in self._trials_info():
            values, _ = self._metric_values(info.id)
            rows.append((number, {"run_id": info.id,
                                  "hyperparameters": info.properties.get("hyperparameters"),
                                  "best_primary_metric": self._best_of(values),
                                  "status": info.status}))
        sign = -1 if self._maximize else 1
        with_metric = sorted((r for r in rows if r[1]["best_primary_metric"] is not None),
                             key=lambda r: (sign * r[1]["best_primary_metric"], r[0]))
        if reverse:
            with_metric.reverse()
        ordered = [r[1] for r in with_metric]
        if not discard_no_metric:
            ordered += [r[1] for r in rows if r[1]["best_primary_metric"] is None]
        return ordered[:top] if top else ordered

    def get_best_run_by_primary_metric(self, include_failed: bool = True,
                                       include_canceled: bool = True,
                                       include_resume_from_runs: bool = True) -> Run | None:
        """The child with the best primary metric (ties: the lowest trial number).

        Returns None while no child has logged the metric yet; once every child has ended
        without logging it, raises ``PrimaryMetricNotFoundException`` naming the metrics the
        children did log (the usual cause is a misspelt ``primary_metric_name``).
        """
        trials = self._trials_info()
        best: tuple[float, int, Any] | None = None
        for number, info in trials:
            if (info.status == "Failed" and not include_failed) or \
                    (info.status == "Canceled" and not include_canceled):
                continue
            value = self._best_of(self._metric_values(info.id)[0])
            if value is None:
                continue
            key = -value if self._maximize else value
            if best is None or (key, number) < (best[0], best[1]):
                best = (key, number, info)
        if best is not None:
            return Run._from_info(self._experiment, best[2])
        if trials and all(info.status in TERMINAL for _, info in trials):
            logged = sorted({s.name for _, info in trials
                             for s in self._store.get_metrics(info.id)})
            raise PrimaryMetricNotFoundException(
                f"No child run of {self.id} logged the primary metric "
                f"{self.primary_metric_name!r}; the children logged: "
                f"{', '.join(repr(n) for n in logged) or 'no metrics'}. Check "
                "primary_metric_name against the name the script passes to run.log().")
        return None

    # --- what-if -------------------------------------------------------------------------------
    def what_if(self, policy: "EarlyTerminationPolicy") -> "WhatIfReport":
        """simml addition: replay this sweep's metric histories under ``policy`` without running
        anything; see ``simml.train.hyperdrive.replay``."""
        from simml.train.hyperdrive.replay import TrialRecord, replay
        records = []
        for number, info in self._trials_info():
            values, times = self._metric_values(info.id)
            records.append(TrialRecord(number, info.id, tuple(values), tuple(times), info.status,
                                       STOPPED_PROPERTY in info.properties))
        return replay(records, policy, self._maximize)

    def __repr__(self) -> str:
        return (f"Run(Experiment: {self._experiment.name},\nId: {self.id},\nType: {self.type},\n"
                f"Status: {self._info.status})")
