"""Parameter expressions (Azure's ``azureml.train.hyperdrive.parameter_expressions``).

Each function returns Azure's serialised form, a two-item list ``[name, [arguments]]``
(``choice(1, 2) == ['choice', [[1, 2]]]``), so configurations written for Azure compare and print
the same. The semantics are hyperopt's, as Azure documents them:

==========================================  =================================================
``choice(*options)``                        one option (``choice([1, 2])`` is ``choice(1, 2)``)
``randint(upper)``                          an integer in ``[0, upper)``
``uniform(min_value, max_value)``           uniform between the two
``quniform(min_value, max_value, q)``       ``round(uniform(min, max) / q) * q``
``loguniform(min_value, max_value)``        ``exp(uniform(min, max))`` (the arguments are logs)
``qloguniform(min_value, max_value, q)``    ``round(exp(uniform(min, max)) / q) * q``
``normal(mu, sigma)``                       a normal draw
``qnormal(mu, sigma, q)``                   ``round(normal(mu, sigma) / q) * q``
``lognormal(mu, sigma)``                    ``exp(normal(mu, sigma))``
``qlognormal(mu, sigma, q)``                ``round(exp(normal(mu, sigma)) / q) * q``
==========================================  =================================================

``sample(expression, rng)`` draws one value with a ``random.Random``; it is pure (the value depends
only on the generator's state), which is what makes seeded sweeps reproducible.
"""

from __future__ import annotations

import math
import random
from typing import Any

from simml.train.hyperdrive.exceptions import HyperDriveConfigException

__all__ = ["choice", "randint", "uniform", "quniform", "loguniform", "qloguniform", "normal",
           "qnormal", "lognormal", "qlognormal", "sample", "validate_expression",
           "EXPRESSION_NAMES", "QUANTIZED"]

EXPRESSION_NAMES = ("choice", "randint", "uniform", "quniform", "loguniform", "qloguniform",
                    "normal", "qnormal", "lognormal", "qlognormal")
QUANTIZED = ("quniform", "qloguniform", "qnormal", "qlognormal")
"""Expressions whose values are multiples of ``q``; an integral value is passed to the script as
an integer (``65``, not ``65.0``), as Azure does."""


def _number(name: str, label: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HyperDriveConfigException(
            f"{name}(): {label} must be a finite number, not {value!r}.")
    return value


def _positive(name: str, label: str, value: Any) -> float:
    if _number(name, label, value) <= 0:
        raise HyperDriveConfigException(f"{name}(): {label} must be greater than 0, not {value!r}.")
    return value


def _range(name: str, low: Any, high: Any) -> None:
    _number(name, "min_value", low)
    _number(name, "max_value", high)
    if not low < high:
        raise HyperDriveConfigException(
            f"{name}(): min_value ({low!r}) must be less than max_value ({high!r}).")


def choice(*options: Any) -> list[Any]:
    """One of ``options`` (numbers or strings, not mixed); ``choice([a, b])`` == ``choice(a, b)``.
    """
    single = len(options) == 1 and isinstance(options[0], (list, tuple, range))
    values = list(options[0]) if single else list(options)
    if not values:
        raise HyperDriveConfigException("choice() needs at least one option.")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise HyperDriveConfigException(
                f"choice(): options must be int, float or str, not {value!r} "
                f"({type(value).__name__}).")
        if isinstance(value, float) and not math.isfinite(value):
            raise HyperDriveConfigException(f"choice(): option {value!r} is not a finite number.")
    strings = [isinstance(v, str) for v in values]
    if any(strings) and not all(strings):
        raise HyperDriveConfigException(
            f"choice(): options must be all strings or all numbers, not a mix: {values!r}.")
    return ["choice", [values]]


def randint(upper: int) -> list[Any]:
    """An integer in ``[0, upper)``."""
    if isinstance(upper, bool) or not isinstance(upper, int) or upper < 1:
        raise HyperDriveConfigException(f"randint(): upper must be an int >= 1, not {upper!r}.")
    return ["randint", [upper]]


def uniform(min_value: float, max_value: float) -> list[Any]:
    _range("uniform", min_value, max_value)
    return ["uniform", [min_value, max_value]]


def quniform(min_value: float, max_value: float, q: float) -> list[Any]:
    _range("quniform", min_value, max_value)
    _positive("quniform", "q", q)
    return ["quniform", [min_value, max_value, q]]


def loguniform(min_value: float, max_value: float) -> list[Any]:
    _range("loguniform", min_value, max_value)
    return ["loguniform", [min_value, max_value]]


def qloguniform(min_value: float, max_value: float, q: float) -> list[Any]:
    _range("qloguniform", min_value, max_value)
    _positive("qloguniform", "q", q)
    return ["qloguniform", [min_value, max_value, q]]


def normal(mu: float, sigma: float) -> list[Any]:
    _number("normal", "mu", mu)
    _positive("normal", "sigma", sigma)
    return ["normal", [mu, sigma]]


def qnormal(mu: float, sigma: float, q: float) -> list[Any]:
    _number("qnormal", "mu", mu)
    _positive("qnormal", "sigma", sigma)
    _positive("qnormal", "q", q)
    return ["qnormal", [mu, sigma, q]]


def lognormal(mu: float, sigma: float) -> list[Any]:
    _number("lognormal", "mu", mu)
    _positive("lognormal", "sigma", sigma)
    return ["lognormal", [mu, sigma]]


def qlognormal(mu: float, sigma: float, q: float) -> list[Any]:
    _number("qlognormal", "mu", mu)
    _positive("qlognormal", "sigma", sigma)
    _positive("qlognormal", "q", q)
    return ["qlognormal", [mu, sigma, q]]


_BUILDERS = {"choice": lambda args: choice(*args), "randint": lambda args: randint(*args),
             "uniform": lambda args: uniform(*args), "quniform": lambda args: quniform(*args),
             "loguniform": lambda args: loguniform(*args),
             "qloguniform": lambda args: qloguniform(*args),
             "normal": lambda args: normal(*args), "qnormal": lambda args: qnormal(*args),
             "lognormal": lambda args: lognormal(*args),
             "qlognormal": lambda args: qlognormal(*args)}


def validate_expression(key: str, expression: Any) -> list[Any]:
    """Check a (possibly hand-written or deserialised) expression; return it normalised."""
    if (not isinstance(expression, (list, tuple)) or len(expression) != 2
            or expression[0] not in _BUILDERS or not isinstance(expression[1], (list, tuple))):
        raise HyperDriveConfigException(
            f"Parameter {key!r}: {expression!r} is not a parameter expression; build it with "
            "choice(), uniform(), ... from simml.train.hyperdrive.")
    try:
        return _BUILDERS[expression[0]](list(expression[1]))
    except TypeError as exc:
        raise HyperDriveConfigException(
            f"Parameter {key!r}: {expression[0]} was given the wrong arguments "
            f"{list(expression[1])!r}.") from exc


def _quantize(value: float, q: float) -> float:
    return float(round(value / q) * q)


def sample(expression: list[Any], rng: random.Random) -> Any:
    """Draw one value of ``expression`` with ``rng`` (pure: depends only on the rng's state)."""
    name, args = expression
    if name == "choice":
        options = args[0]
        return options[rng.randrange(len(options))]
    if name == "randint":
        return rng.randrange(args[0])
    if name == "uniform":
        return rng.uniform(args[0], args[1])
    if name == "quniform":
        return _quantize(rng.uniform(args[0], args[1]), args[2])
    if name == "loguniform":
        return math.exp(rng.uniform(args[0], args[1]))
    if name == "qloguniform":
        return _quantize(math.exp(rng.uniform(args[0], args[1])), args[2])
    if name == "normal":
        return rng.gauss(args[0], args[1])
    if name == "qnormal":
        return _quantize(rng.gauss(args[0], args[1]), args[2])
    if name == "lognormal":
        return math.exp(rng.gauss(args[0], args[1]))
    if name == "qlognormal":
        return _quantize(math.exp(rng.gauss(args[0], args[1])), args[2])
    raise HyperDriveConfigException(f"Unknown parameter expression {name!r}.")
