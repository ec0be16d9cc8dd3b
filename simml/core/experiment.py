"""``Experiment``: a named group of runs in a workspace."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator

from simml.entities import ExperimentInfo, RunQuery
from simml.exceptions import InvalidValueException

if TYPE_CHECKING:
    from simml.core.run import Run
    from simml.core.workspace import Workspace

EXPERIMENT_NAME = re.compile(r"^[a-zA-Z0-9][\w\-]{0,254}$")


def validate_experiment_name(name: Any) -> str:
    if not isinstance(name, str) or not EXPERIMENT_NAME.match(name):
        raise InvalidValueException(
            f"Invalid experiment name {name!r}: it must be 1-255 characters, start with a letter "
            "or digit, and contain only letters, digits, '_' and '-'.")
    return name


class Experiment:
    """Azure's ``Experiment``: creating the object creates the experiment, as Azure does."""

    def __init__(self, workspace: "Workspace", name: str, _skip_name_validation: bool = False,
                 _id: str | None = None, _archived_time: str | None = None,
                 _create_in_cloud: bool = True, _experiment_dto: Any = None,
                 **kwargs: Any) -> None:
        if not _skip_name_validation:
            validate_experiment_name(name)
        self._workspace = workspace
        self._name = name
        store = workspace._history()
        self._info: ExperimentInfo = (store.get_or_create_experiment(name) if _create_in_cloud
                                      else store.get_experiment(name))

    @property
    def name(self) -> str:
        return self._name

    @property
    def id(self) -> str:
        return self._info.id

    @property
    def workspace(self) -> "Workspace":
        return self._workspace

    @property
    def archived_time(self) -> str | None:
        info = self._workspace._history().get_experiment(self._name)
        return info.archived_time.isoformat() if info.archived_time else None

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._info.tags)

    @staticmethod
    def list(workspace: "Workspace", experiment_name: str | None = None,
             view_type: str = "ActiveOnly", tags: dict[str, str] | None = None
             ) -> list["Experiment"]:
        infos = workspace._history().list_experiments(include_archived=view_type != "ActiveOnly")
        if view_type == "ArchivedOnly":
            infos = [i for i in infos if i.archived_time is not None]
        if experiment_name is not None:
            infos = [i for i in infos if i.name == experiment_name]
        if tags:
            infos = [i for i in infos if all(i.tags.get(k) == v for k, v in tags.items())]
        return [Experiment(workspace, i.name, _skip_name_validation=True) for i in infos]

    def archive(self) -> None:
        self._workspace._history().set_experiment_archived(self._name, datetime.now(timezone.utc))

    def reactivate(self, new_name: str | None = None) -> None:
        self._workspace._history().set_experiment_archived(self._name, None)

    def submit(self, config: Any, tags: dict[str, str] | None = None, **kwargs: Any) -> "Run":
        """Submit a run configuration (``ScriptRunConfig``, an estimator, ``HyperDriveConfig``).

        Each configuration class knows how to submit itself (Azure's ``experiment_method``
        registry); anything else is refused with a typed error.
        """
        submit = getattr(config, "_submit_to", None)
        if submit is None:
            raise InvalidValueException(
                f"Cannot submit a {type(config).__name__}: expected a ScriptRunConfig, an "
                "estimator such as SKLearn, or a HyperDriveConfig.")
        run = submit(self, **kwargs)
        if tags:
            run.set_tags(tags)
        return run

    def start_logging(self, *args: Any, outputs: str | None = "outputs",
                      snapshot_directory: str | None = None, display_name: str | None = None,
                      **kwargs: Any) -> "Run":
        """Start an interactive run (status Running); ``outputs`` is uploaded on ``complete()``."""
        from simml.core.run import Run
        return Run._start_interactive(self, outputs=outputs, display_name=display_name)

    def get_runs(self, type: str | None = None, tags: Any = None, properties: Any = None,
                 include_children: bool = False, status: str | None = None
                 ) -> Iterator["Run"]:
        """Runs of this experiment, newest first; ``tags``/``properties`` may be a key, a list of
        keys (must be present) or a dict (must match)."""
        from simml.core.run import Run
        query = RunQuery(experiment_name=self._name, run_type=type, status=status,
                         tags=_filters(tags), properties=_filters(properties),
                         include_children=include_children)
        for info in self._workspace._history().query_runs(query):
            yield Run._from_info(self, info)

    def get_best_run(self, metric_name: str, goal: str = "maximize") -> "Run | None":
        """simml addition: the run whose best logged value of ``metric_name`` is best.

        A run's best value is its maximum (``goal="maximize"``) or minimum (``"minimize"``) over
        every numeric value it logged for the metric, as HyperDrive ranks children; runs that never
        logged it are skipped. Answered by one indexed query, not by loading every run.
        """
        ranked = self.get_runs_by_metric(metric_name, goal, top=1)
        return ranked[0][0] if ranked else None

    def get_runs_by_metric(self, metric_name: str, goal: str = "maximize", top: int = 10
                           ) -> list[tuple["Run", float]]:
        """simml addition: the ``top`` runs ranked by their best value of ``metric_name``."""
        from simml.core.run import Run
        if goal.lower() not in ("maximize", "minimize"):
            raise InvalidValueException(f"goal must be 'maximize' or 'minimize', not {goal!r}.")
        store = self._workspace._history()
        best = store.best_runs(self._name, metric_name, goal.lower() == "maximize", top)
        return [(Run._from_info(self, store.get_run(b.run_id)), b.value) for b in best]

    def __repr__(self) -> str:
        return f"Experiment(Name: {self._name},\nWorkspace: {self._workspace.name})"


def _filters(value: Any) -> dict[str, str | None] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {value: None}
    if isinstance(value, dict):
        return {str(k): (None if v is None else str(v)) for k, v in value.items()}
    return {str(k): None for k in value}
