"""Metric validation on the job side: the client's rules (``simml.core._metrics``), stdlib only.

Accepted scalars: ``int``, ``float``, ``str``, ``bool``, ``None``, their subclasses (converted to
the base type) and numpy-like scalars, recognised by duck typing (an ``.item()`` method and
``ndim == 0``; numpy itself is never imported). Refused: NaN and infinities, containers in
``log``, arrays, other objects, ragged tables, non-int steps. A metric name keeps the logging
method and the value family (number, string, bool) of its first value within the process.
``tests/test_job_journal.py`` checks that this module and the client agree on a table of values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Tuple

from .errors import MetricTypeError, MetricValueError

SCALAR = "scalar"
LIST = "list"
ROW = "row"
TABLE = "table"
IMAGE = "image"

_INF = float("inf")
_NINF = float("-inf")


def value_class(value: Any) -> str:
    """The family a metric name is pinned to: ``number``, ``string``, ``bool`` or ``none``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "none"


def normalize_scalar(name: str, value: Any) -> Any:
    """Return a JSON-ready scalar (int, float, str, bool or None) or raise naming the metric."""
    kind = type(value)
    if kind is float:
        if value != value or value == _INF or value == _NINF:
            raise MetricValueError(
                f"Metric {name!r}: {value!r} is not a finite number; NaN and infinities cannot "
                "be logged (they have no JSON representation).", name)
        return value
    if kind is int or kind is str or value is None or kind is bool:
        return value
    if isinstance(value, (list, tuple, range, dict, set, frozenset)) or hasattr(value, "__next__"):
        raise MetricTypeError(
            f"run.log does not support {kind.__name__} type (metric {name!r}). "
            "Use run.log_list for lists and run.log_row or run.log_table for tables.", name)
    item = getattr(value, "item", None)
    if item is not None and callable(item) and hasattr(value, "ndim"):  # numpy-like scalar
        if value.ndim != 0:
            raise MetricTypeError(
                f"run.log does not support arrays (metric {name!r}). Use run.log_list instead.",
                name)
        plain = item()
        if type(plain) is kind:  # e.g. numpy.longdouble: no Python equivalent
            raise MetricTypeError(
                f"Metric {name!r}: values of type {kind.__name__} cannot be logged; convert them "
                "with float() first.", name)
        return normalize_scalar(name, plain)
    if isinstance(value, (int, float, str)):  # subclasses such as IntEnum
        base = int if isinstance(value, int) else float if isinstance(value, float) else str
        return normalize_scalar(name, base(value))
    raise MetricTypeError(
        f"Metric {name!r}: values of type {kind.__name__} cannot be logged; log an int, float, "
        "str, bool or None.", name)


def validate_step(name: str, step: Any) -> None:
    if step is not None and type(step) is not int:
        raise MetricValueError(f"Metric {name!r}: step must be an int, not {step!r}.", name)


def validate_list(name: str, value: Any) -> List[Any]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise MetricValueError(f"Metric {name!r}: log_list needs a list of values.", name)
    if hasattr(value, "tolist"):
        value = value.tolist()
    return [normalize_scalar(name, v) for v in value]


def validate_row(name: str, row: Mapping) -> Dict[str, Any]:
    if not row:
        raise MetricValueError(f"Metric {name!r}: log_row needs at least one column.", name)
    out = {}
    for column, value in row.items():
        if isinstance(value, (list, tuple, dict)):
            raise MetricTypeError(
                f"Metric {name!r}: column {column!r} of log_row must be a scalar, not "
                f"{type(value).__name__}.", name)
        out[str(column)] = normalize_scalar(f"{name}.{column}", value)
    return out


def validate_table(name: str, table: Any) -> Dict[str, List[Any]]:
    if not isinstance(table, Mapping) or not table:
        raise MetricValueError(
            f"Metric {name!r}: log_table needs a non-empty dict of column name to list of "
            "values.", name)
    columns: Dict[str, List[Any]] = {}
    for column, values in table.items():
        if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):
            values = values.tolist()  # numpy arrays; a numpy scalar gives a scalar
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        columns[str(column)] = [normalize_scalar(f"{name}.{column}", v) for v in values]
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        detail = ", ".join(f"{c}={len(v)}" for c, v in columns.items())
        raise MetricValueError(
            f"InvalidColumnLength: metric {name!r}: every column of a table must have the same "
            f"number of values ({detail}).", name)
    return columns


class Pins:
    """Remembers each metric name's logging method and value family (per run, per process)."""

    __slots__ = ("known",)

    def __init__(self) -> None:
        self.known: Dict[str, Tuple[str, str]] = {}

    def check(self, name: str, kind: str, value: Any) -> None:
        family = value_class(value)
        known = self.known.get(name)
        if known is None:
            if type(name) is not str or not name:
                raise MetricTypeError(f"A metric name must be a non-empty str, not {name!r}.",
                                      None)
            known = self.known[name] = (kind, family)
        if known[1] == "none" and family != "none":
            known = self.known[name] = (known[0], family)
        if known[0] != kind:
            raise MetricValueError(
                f"Metric {name!r} was logged with log_{known[0]}; it cannot also be logged with "
                f"log_{kind}.", name)
        if family != known[1] and "none" not in (family, known[1]) and kind in (SCALAR, LIST):
            raise MetricValueError(
                f"Metric {name!r} holds {known[1]} values; {value!r} is a {family}. Log a "
                f"{known[1]} or use another metric name.", name)
