"""Parameter sampling (Azure's ``azureml.train.hyperdrive.sampling``) and the pure trial samplers.

Three samplers with Azure's names and rules:

* ``RandomParameterSampling(parameter_space, properties=None)`` takes every expression;
  ``properties={'rngSeed': 42}`` seeds it (Azure's key). Without a seed one is drawn at
  ``HyperDriveConfig`` construction and recorded in the sweep's definition, so a finished sweep can
  still be re-run identically.
* ``GridParameterSampling`` takes ``choice`` only and enumerates the cartesian product, the first
  parameter varying slowest; ``max_total_runs`` beyond the grid's size runs the grid once.
* ``BayesianParameterSampling`` takes ``choice``, ``uniform`` and ``quniform`` and may not be
  combined with an early-termination policy. simml asks optuna's TPE sampler (``pip install
  simml[hyperdrive]``) for proposals.

Reproducibility (docs/hyperdrive.md): trial ``n``'s parameters are a function of the seed and ``n``
only (random, grid), or of the seed, ``n`` and the results of the completed earlier *batches*
(Bayesian: trials are proposed in fixed batches of ``batchSize`` = 4 by default, a size that does
not depend on ``max_concurrent_runs``; batch ``b`` is proposed once every trial of batches ``< b``
has ended, conditioned on their results only). So a seeded sweep samples the same trials at any
concurrency. ``TrialSampler`` is that pure function; the sweep loop calls it.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from simml.train.hyperdrive.exceptions import HyperDriveConfigException
from simml.train.hyperdrive.parameter_expressions import (
    EXPRESSION_NAMES,
    sample,
    validate_expression,
)

BAYESIAN_BATCH_SIZE = 4
SEED_KEY = "rngSeed"
BATCH_KEY = "batchSize"


class HyperParameterSampling:
    """Base of the samplers: a parameter space (``{'--kernel': choice(...)}``) and properties."""

    _name = ""
    _supported: tuple[str, ...] = EXPRESSION_NAMES

    def __init__(self, parameter_space: dict[str, Any], properties: dict[str, Any] | None = None
                 ) -> None:
        if not isinstance(parameter_space, dict) or not parameter_space:
            raise HyperDriveConfigException(
                "parameter_space must be a non-empty dict of parameter names to expressions, "
                "e.g. {'--kernel': choice('linear', 'rbf')}.")
        space: dict[str, list[Any]] = {}
        for key, expression in parameter_space.items():
            if not isinstance(key, str) or not key.strip("-"):
                raise HyperDriveConfigException(
                    f"Parameter name {key!r} must be a non-empty string such as '--kernel'.")
            expression = validate_expression(key, expression)
            if expression[0] not in self._supported:
                raise HyperDriveConfigException(
                    f"This sampling method expects only the following distributions: "
                    f"[{', '.join(self._supported)}]; parameter {key!r} is "
                    f"{expression[0]}.")
            space[key] = expression
        if properties is not None and not isinstance(properties, dict):
            raise HyperDriveConfigException("properties must be a dict (e.g. {'rngSeed': 42}).")
        properties = dict(properties or {})
        seed = properties.get(SEED_KEY)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise HyperDriveConfigException(
                f"properties['{SEED_KEY}'] must be an int, not {seed!r}.")
        self._parameter_space = space
        self._properties = properties

    @property
    def parameter_space(self) -> dict[str, list[Any]]:
        return {k: [v[0], list(v[1])] for k, v in self._parameter_space.items()}

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self._properties)

    def to_json(self) -> dict[str, Any]:
        return {"name": self._name, "parameter_space": self.parameter_space,
                "properties": self.properties}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.parameter_space)})"


class RandomParameterSampling(HyperParameterSampling):
    """Random search over every kind of expression; seed it with ``properties={'rngSeed': n}``."""

    _name = "RANDOM"


class GridParameterSampling(HyperParameterSampling):
    """Every combination of ``choice`` values, in order."""

    _name = "GRID"
    _supported = ("choice",)

    @property
    def grid_size(self) -> int:
        return math.prod(len(v[1][0]) for v in self._parameter_space.values())


class BayesianParameterSampling(HyperParameterSampling):
    """Bayesian optimisation (optuna's TPE) over ``choice``, ``uniform`` and ``quniform``."""

    _name = "BayesianOptimization"
    _supported = ("choice", "uniform", "quniform")

    def __init__(self, parameter_space: dict[str, Any], properties: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(parameter_space, properties)
        batch = self._properties.get(BATCH_KEY, BAYESIAN_BATCH_SIZE)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise HyperDriveConfigException(
                f"properties['{BATCH_KEY}'] must be an int >= 1, not {batch!r}.")


SAMPLERS = {cls._name: cls for cls in (RandomParameterSampling, GridParameterSampling,
                                       BayesianParameterSampling)}


def from_json(generator: dict[str, Any]) -> HyperParameterSampling:
    """The sampler a ``to_json()`` document describes (validated again)."""
    cls = SAMPLERS.get(generator.get("name", ""))
    if cls is None:
        raise HyperDriveConfigException(f"Unknown sampling method {generator.get('name')!r}.")
    return cls(generator["parameter_space"], generator.get("properties"))


@dataclass(frozen=True)
class FinishedTrial:
    """What the Bayesian sampler learns from an ended trial: its parameters and its best primary
    metric value (None when it logged none)."""

    number: int
    parameters: dict[str, Any]
    value: float | None


class TrialSampler:
    """Trial ``n``'s parameters, as a pure function (see the module doc)."""

    def __init__(self, generator: dict[str, Any], maximize: bool = True) -> None:
        self.sampling = from_json(generator)
        self.name = self.sampling._name
        self.space = self.sampling._parameter_space
        self.seed = self.sampling._properties.get(SEED_KEY, 0)
        self.maximize = maximize
        self.batch_size = (self.sampling._properties.get(BATCH_KEY, BAYESIAN_BATCH_SIZE)
                           if self.name == "BayesianOptimization" else None)
        self._batches: dict[int, list[dict[str, Any]]] = {}

    def total(self, max_total_runs: int) -> int:
        """How many trials a sweep of ``max_total_runs`` runs (a grid stops when exhausted)."""
        if isinstance(self.sampling, GridParameterSampling):
            return min(max_total_runs, self.sampling.grid_size)
        return max_total_runs

    def depends_on(self, n: int) -> range:
        """Trials that must have ended before trial ``n`` can be sampled."""
        if self.batch_size is None:
            return range(0)
        return range(0, (n // self.batch_size) * self.batch_size)

    def parameters(self, n: int, finished: Sequence[FinishedTrial] = ()) -> dict[str, Any]:
        """Trial ``n``'s parameters; for Bayesian, ``finished`` must hold every trial of
        ``depends_on(n)`` (others are ignored)."""
        if self.name == "RANDOM":
            rng = random.Random(f"simml-hyperdrive:{self.seed}:{n}")
            return {key: sample(expression, rng) for key, expression in self.space.items()}
        if self.name == "GRID":
            values = [expression[1][0] for expression in self.space.values()]
            sizes = [len(v) for v in values]
            index, picked = n, []
            for size in reversed(sizes):  # the first parameter varies slowest
                index, position = divmod(index, size)
                picked.append(position)
            picked.reverse()
            return {key: values[i][p] for i, (key, p) in enumerate(zip(self.space, picked))}
        assert self.batch_size is not None
        batch = n // self.batch_size
        if batch not in self._batches:
            needed = set(self.depends_on(n))
            known = [t for t in finished if t.number in needed]
            if len(known) != len(needed):
                missing = sorted(needed - {t.number for t in known})
                raise HyperDriveConfigException(
                    f"Bayesian batch {batch} needs the results of trials {missing}.")
            self._batches[batch] = propose_batch(self.space, self.seed, batch, self.batch_size,
                                                 known, self.maximize)
        return dict(self._batches[batch][n % self.batch_size])


def grid_points(space: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every point of a choice-only space in grid order (for tests and docs)."""
    keys = list(space)
    return [dict(zip(keys, combo)) for combo in
            itertools.product(*(space[k][1][0] for k in keys))]


def propose_batch(space: Mapping[str, list[Any]], seed: int, batch: int, size: int,
                  finished: Sequence[FinishedTrial], maximize: bool) -> list[dict[str, Any]]:
    """``size`` proposals of optuna's TPE sampler, seeded by (seed, batch) and told only the
    ``finished`` trials (sorted by number, so their order never depends on completion order)."""
    try:
        import optuna
    except ImportError as exc:  # the main install stays light
        raise HyperDriveConfigException(
            "BayesianParameterSampling needs optuna: pip install 'simml[hyperdrive]' "
            "(or pip install optuna).") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    distributions: dict[str, Any] = {}
    for key, (name, args) in space.items():
        if name == "choice":
            distributions[key] = CategoricalDistribution(list(args[0]))
        elif name == "uniform":
            distributions[key] = FloatDistribution(float(args[0]), float(args[1]))
        else:  # quniform: an integer number of q steps
            low, high, q = args
            distributions[key] = IntDistribution(math.ceil(low / q - 1e-9),
                                                 math.floor(high / q + 1e-9))
    derived = random.Random(f"simml-bayesian:{seed}:{batch}").randrange(2**31)
    sampler = optuna.samplers.TPESampler(seed=derived)
    study = optuna.create_study(direction="maximize" if maximize else "minimize",
                                sampler=sampler)
    for trial in sorted(finished, key=lambda t: t.number):
        if trial.value is None or not math.isfinite(trial.value):
            continue
        internal = {}
        for key, (name, args) in space.items():
            value = trial.parameters[key]
            internal[key] = int(round(value / args[2])) if name == "quniform" else value
        study.add_trial(optuna.trial.create_trial(params=internal, distributions=distributions,
                                                  value=float(trial.value)))
    proposals = []
    for _ in range(size):
        asked = study.ask(distributions)
        params = {}
        for key, (name, args) in space.items():
            value = asked.params[key]
            params[key] = float(value * args[2]) if name == "quniform" else value
        proposals.append(params)
    return proposals
