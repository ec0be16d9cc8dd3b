"""``HyperDriveConfig`` (Azure's ``azureml.train.hyperdrive.runconfig``): what a sweep runs.

Everything is checked at construction or at ``experiment.submit(config)`` before anything is
written (the child configuration is validated like a plain submission); then the source folder is
snapshotted once, the parent run (``HD_<uuid>``, type ``hyperdrive``) is created and handed to the
backend, whose runner executes the sweep loop (``simml_local.sweep``). Each trial is an ordinary
child run ``HD_<uuid>_<n>`` of the same script on the same compute target, with the sampled values
as script arguments (``child_arguments``).
"""

from __future__ import annotations

import json
import logging
import random
from typing import TYPE_CHECKING, Any

from simml.entities import HYPERDRIVE_RUN_TYPE
from simml.train.hyperdrive.exceptions import HyperDriveConfigException
from simml.train.hyperdrive.parameter_expressions import QUANTIZED
from simml.train.hyperdrive.policy import EarlyTerminationPolicy, NoTerminationPolicy
from simml.train.hyperdrive.run import PrimaryMetricGoal
from simml.train.hyperdrive.sampling import (
    SEED_KEY,
    BayesianParameterSampling,
    HyperParameterSampling,
)

if TYPE_CHECKING:
    from simml.core.experiment import Experiment
    from simml.train.hyperdrive.run import HyperDriveRun

logger = logging.getLogger("simml.train.hyperdrive")

MAX_DURATION_MINUTES = 10080
RUN_TYPE = HYPERDRIVE_RUN_TYPE


class HyperDriveConfig:
    """A sweep: sampling, primary metric and goal, budget, policy, and the child configuration
    (``estimator=`` as the seed-era notebooks pass it, or ``run_config=`` a ``ScriptRunConfig``)."""

    def __init__(self, hyperparameter_sampling: HyperParameterSampling, primary_metric_name: str,
                 primary_metric_goal: PrimaryMetricGoal, max_total_runs: int,
                 max_concurrent_runs: int | None = None,
                 max_duration_minutes: int | float = MAX_DURATION_MINUTES,
                 policy: EarlyTerminationPolicy | None = None, estimator: Any = None,
                 run_config: Any = None, resume_from: Any = None, resume_child_runs: Any = None,
                 pipeline: Any = None, debug_flag: Any = None, custom_run_id: Any = None
                 ) -> None:
        if not isinstance(hyperparameter_sampling, HyperParameterSampling):
            raise HyperDriveConfigException(
                "hyperparameter_sampling must be a RandomParameterSampling, GridParameterSampling "
                f"or BayesianParameterSampling, not {type(hyperparameter_sampling).__name__}.")
        if not isinstance(primary_metric_name, str) or not primary_metric_name:
            raise HyperDriveConfigException("primary_metric_name must be a non-empty string.")
        if isinstance(primary_metric_goal, str) and \
                primary_metric_goal.upper() in PrimaryMetricGoal.__members__:
            primary_metric_goal = PrimaryMetricGoal[primary_metric_goal.upper()]
        if not isinstance(primary_metric_goal, PrimaryMetricGoal):
            raise HyperDriveConfigException(
                "primary_metric_goal must be PrimaryMetricGoal.MAXIMIZE or MINIMIZE, not "
                f"{primary_metric_goal!r}.")
        if isinstance(max_total_runs, bool) or not isinstance(max_total_runs, int) \
                or max_total_runs < 1:
            raise HyperDriveConfigException(
                f"max_total_runs must be an int >= 1, not {max_total_runs!r}.")
        if max_concurrent_runs is None:
            max_concurrent_runs = max_total_runs
        if isinstance(max_concurrent_runs, bool) or not isinstance(max_concurrent_runs, int) \
                or max_concurrent_runs < 1:
            raise HyperDriveConfigException(
                f"max_concurrent_runs must be an int >= 1, not {max_concurrent_runs!r}.")
        if isinstance(max_duration_minutes, bool) or \
                not isinstance(max_duration_minutes, (int, float)) or not max_duration_minutes > 0:
            raise HyperDriveConfigException(
                f"max_duration_minutes must be a number > 0, not {max_duration_minutes!r}.")
        if max_duration_minutes > MAX_DURATION_MINUTES:
            logger.warning("max_duration_minutes %s is above the maximum %s; it is capped.",
                           max_duration_minutes, MAX_DURATION_MINUTES)
            max_duration_minutes = MAX_DURATION_MINUTES
        if policy is None:
            policy = NoTerminationPolicy()
        if not isinstance(policy, EarlyTerminationPolicy):
            raise HyperDriveConfigException(
                "policy must be a BanditPolicy, MedianStoppingPolicy, TruncationSelectionPolicy, "
                f"NoTerminationPolicy or None, not {type(policy).__name__}.")
        if isinstance(hyperparameter_sampling, BayesianParameterSampling):
            if policy.is_active:
                raise HyperDriveConfigException(
                    "Early termination policies are not supported with Bayesian sampling: pass "
                    "policy=None (or NoTerminationPolicy()).")
            parameters = len(hyperparameter_sampling.parameter_space)
            if max_total_runs < 20 * parameters:
                logger.warning(
                    "For best results with Bayesian sampling we recommend max_total_runs >= 20 x "
                    "the number of hyperparameters (%d); it is %d.", 20 * parameters,
                    max_total_runs)
            if max_concurrent_runs > 20:
                logger.warning("Bayesian sampling learns less with max_concurrent_runs > 20.")
        given = [name for name, value in (("estimator", estimator), ("run_config", run_config),
                                          ("pipeline", pipeline)) if value is not None]
        if len(given) != 1:
            raise HyperDriveConfigException(
                "Exactly one of estimator, run_config or pipeline must be given"
                + (f"; got {', '.join(given)}." if given else "."))
        if pipeline is not None:
            raise HyperDriveConfigException("Sweeping a pipeline is not supported by simml.")
        child = estimator if estimator is not None else run_config
        if not callable(getattr(child, "_validated", None)):
            raise HyperDriveConfigException(
                f"{given[0]} must be an estimator (SKLearn, Estimator) or a ScriptRunConfig, not "
                f"{type(child).__name__}.")
        for name, value in (("resume_from", resume_from), ("resume_child_runs", resume_child_runs),
                            ("custom_run_id", custom_run_id)):
            if value is not None:
                raise HyperDriveConfigException(f"{name} is not supported by simml yet.")
        self._sampling = hyperparameter_sampling
        self._primary_metric_name = primary_metric_name
        self._primary_metric_goal = primary_metric_goal
        self._max_total_runs = max_total_runs
        self._max_concurrent_runs = max_concurrent_runs
        self._max_duration_minutes = max_duration_minutes
        self._policy = policy
        self._child = child
        generator = hyperparameter_sampling.to_json()
        if generator["name"] != "GRID" and generator["properties"].get(SEED_KEY) is None:
            # No seed given: draw one now and record it, so the sweep can be re-run identically.
            generator["properties"][SEED_KEY] = random.SystemRandom().randrange(2**31)
        self._generator = generator

    # --- Azure's read-only properties ----------------------------------------------------------
    @property
    def estimator(self) -> Any:
        return self._child

    @property
    def run_config(self) -> Any:
        return self._child

    @property
    def hyperparameter_sampling(self) -> HyperParameterSampling:
        return self._sampling

    @property
    def primary_metric_name(self) -> str:
        return self._primary_metric_name

    @property
    def primary_metric_goal(self) -> PrimaryMetricGoal:
        return self._primary_metric_goal

    @property
    def max_total_runs(self) -> int:
        return self._max_total_runs

    @property
    def max_concurrent_runs(self) -> int:
        return self._max_concurrent_runs

    @property
    def max_duration_minutes(self) -> float:
        return self._max_duration_minutes

    @property
    def policy(self) -> EarlyTerminationPolicy:
        return self._policy

    @property
    def source_directory(self) -> str:
        return self._child.source_directory

    def _sweep_definition(self) -> dict[str, Any]:
        """The sweep's settings as the run definition carries them."""
        return {
            "generator": self._generator,
            "policy": self._policy.to_json(),
            "primaryMetricName": self._primary_metric_name,
            "primaryMetricGoal": self._primary_metric_goal.value.lower(),
            "maxTotalRuns": self._max_total_runs,
            "maxConcurrentRuns": self._max_concurrent_runs,
            "maxDurationMinutes": self._max_duration_minutes,
        }

    # --- submission ----------------------------------------------------------------------------
    def _submit_to(self, experiment: "Experiment", *, run_id: str | None = None,
                   properties: dict[str, str] | None = None, submitted_by: str | None = None,
                   **kwargs: Any) -> "HyperDriveRun":
        """Validate, snapshot, create the parent run and hand it to the backend. ``run_id``,
        ``properties`` and ``submitted_by`` are for a caller that chose them (the emulator's
        HyperDrive service: the parent id it answers with, the client's ``ContentSnapshotId``),
        as in ``submit_script_run``; a malformed or taken id is refused before any write."""
        from simml.core.submission import _check_new_run_id, _user, snapshot_items
        from simml.entities import RunCreate, RunSubmission
        from simml.ids import IdFactory
        from simml.train.hyperdrive.run import HyperDriveRun
        workspace = experiment.workspace
        backend, info = workspace._backend, workspace._info
        child = self._child._validated(experiment)  # the child's checks, before any write
        if run_id is not None:
            _check_new_run_id(workspace._history(), run_id)
        items = snapshot_items(self.source_directory)
        snapshot_id = backend.snapshot_create(info, items)
        child["snapshotId"] = snapshot_id
        definition = {"hyperdrive": self._sweep_definition(), "child": child,
                      "target": child["target"], "snapshotId": snapshot_id}
        now = workspace.clock.now()
        if run_id is None:
            run_id = f"HD_{IdFactory.from_environment().uuid4()}"
        store = workspace._history()
        run_info = store.create_run(RunCreate(
            run_id=run_id, experiment_name=experiment.name, run_type=RUN_TYPE,
            status="NotStarted", target=child["target"], created_time=now, definition=definition,
            properties={"ContentSnapshotId": snapshot_id,
                        "primary_metric_config": json.dumps({
                            "name": self._primary_metric_name,
                            "goal": self._primary_metric_goal.value.lower()}),
                        "generator_config": json.dumps(self._generator),
                        "policy_config": json.dumps(self._policy.to_json()),
                        **(properties or {})},
            submitted_by=submitted_by or _user()))
        backend.run_submit(info, RunSubmission(run_id=run_id, experiment_name=experiment.name,
                                               target=child["target"], definition=definition,
                                               snapshot_id=snapshot_id))
        return HyperDriveRun._from_info(experiment, run_info)


def _argument_value(expression_name: str, value: Any) -> Any:
    if expression_name in QUANTIZED and isinstance(value, float) and value.is_integer():
        return int(value)  # Azure passes quantized values as integers ('65', not '65.0')
    return value


def child_arguments(base: list[Any], parameters: dict[str, Any],
                    expressions: dict[str, list[Any]] | None = None) -> list[Any]:
    """The child's script arguments: ``base`` with each sampled parameter's value replacing the
    one after the same key (``script_params`` overridden), or appended as ``key value``. A key
    without a leading ``-`` becomes ``--key``, as Azure passes it."""
    arguments = list(base)
    for key, value in parameters.items():
        flag = key if key.startswith("-") else f"--{key}"
        kind = (expressions or {}).get(key, ["choice"])[0]
        value = _argument_value(kind, value)
        positions = [i for i, a in enumerate(arguments) if isinstance(a, str) and a == flag]
        if positions and positions[-1] + 1 < len(arguments):
            for position in positions:
                if position + 1 < len(arguments):
                    arguments[position + 1] = value
        else:
            arguments += [flag, value]
    return arguments
