"""Metric values: validation at log time, encoding for the store, and Azure's folding on read.

Azure accepts ``int``, ``float``, ``str``, ``bool`` and ``None`` (and numpy scalars), refuses lists
in ``log``, requires equal-length columns in ``log_table``, and folds what ``get_metrics`` returns:
one value gives a scalar, several a list in logging order, rows and tables a dict of columns. simml
keeps those rules and is stricter where Azure silently stores garbage: NaN and infinities are
refused (they are not JSON), numpy integers are stored as numbers (Azure stores ``np.int64(3)`` as
a string), and a metric name keeps the type of its first value (a number, a string or a bool).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from simml.exceptions import InvalidValueException, UserErrorException

if TYPE_CHECKING:  # not at run time: a job importing simml.core.run need not build every entity
    from simml.entities import MetricSeries

SCALAR = "scalar"
LIST = "list"
ROW = "row"
TABLE = "table"
IMAGE = "image"
JSON_SUFFIX = "+json"


def value_class(value: Any) -> str:
    """The type family a metric name is pinned to: ``number``, ``string``, ``bool`` or ``none``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "none"


def normalize_scalar(name: str, value: Any) -> Any:
    """Return a store-ready scalar or raise a typed error that names the metric."""
    kind = type(value)
    if kind is float:
        if value != value or value in (math.inf, -math.inf):
            raise InvalidValueException(
                f"Metric {name!r}: {value!r} is not a finite number; NaN and infinities cannot "
                "be logged (they have no JSON representation).")
        return value
    if kind is int or kind is str or value is None or kind is bool:
        return value
    if isinstance(value, (list, tuple, range, dict, set)) or hasattr(value, "__next__"):
        raise UserErrorException(
            f"run.log does not support {kind.__name__} type (metric {name!r}). "
            "Use run.log_list for lists and run.log_row or run.log_table for tables.")
    module = getattr(kind, "__module__", "")
    if module == "numpy" and hasattr(value, "item"):
        if getattr(value, "ndim", 0) != 0:
            raise UserErrorException(
                f"run.log does not support arrays (metric {name!r}). Use run.log_list instead.")
        item = value.item()
        if type(item) is kind:  # e.g. longdouble: item() gives itself back
            item = float(item) if hasattr(value, "is_integer") else str(item)
        return normalize_scalar(name, item)
    if isinstance(value, (int, float, str)):  # subclasses such as IntEnum, numpy float64
        base = bool if isinstance(value, bool) else int if isinstance(value, int) else \
            float if isinstance(value, float) else str
        return normalize_scalar(name, base(value))
    raise InvalidValueException(
        f"Metric {name!r}: values of type {kind.__name__} cannot be logged; log an int, float, "
        "str, bool or None.")


def encode(kind: str, value: Any) -> tuple[str, Any]:
    """(kind, value) as stored: bools go through JSON so they come back as bools."""
    if type(value) is bool:
        return kind + JSON_SUFFIX, "true" if value else "false"
    return kind, value


def encode_json(kind: str, value: Any) -> tuple[str, Any]:
    return kind + JSON_SUFFIX, json.dumps(value, allow_nan=False)


def validate_row(name: str, row: Mapping[str, Any]) -> dict[str, Any]:
    if not row:
        raise InvalidValueException(f"Metric {name!r}: log_row needs at least one column.")
    out = {}
    for column, value in row.items():
        if isinstance(value, (list, tuple, dict)):
            raise UserErrorException(
                f"Metric {name!r}: column {column!r} of log_row must be a scalar, not "
                f"{type(value).__name__}.")
        out[str(column)] = normalize_scalar(f"{name}.{column}", value)
    return out


def validate_table(name: str, table: Mapping[str, Any]) -> dict[str, list[Any]]:
    if not isinstance(table, Mapping) or not table:
        raise InvalidValueException(
            f"Metric {name!r}: log_table needs a non-empty dict of column name to list of values.")
    columns: dict[str, list[Any]] = {}
    for column, values in table.items():
        if isinstance(values, (list, tuple)):
            values = list(values)
        elif hasattr(values, "tolist") and getattr(values, "ndim", 0) != 0:
            values = list(values.tolist())
        else:
            values = [values]
        columns[str(column)] = [normalize_scalar(f"{name}.{column}", v) for v in values]
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        detail = ", ".join(f"{c}={len(v)}" for c, v in columns.items())
        raise InvalidValueException(
            f"InvalidColumnLength: metric {name!r}: every column of a table must have the same "
            f"number of values ({detail}).")
    return columns


def decode_series(series: MetricSeries) -> tuple[str, list[Any]]:
    if series.kind.endswith(JSON_SUFFIX):
        return series.kind[: -len(JSON_SUFFIX)], [json.loads(v) for v in series.values]
    return series.kind, list(series.values)


def fold(stored: Iterable[MetricSeries]) -> dict[str, Any]:
    """Azure's ``get_metrics`` shapes from stored series in logging order."""
    grouped: dict[str, tuple[str, list[Any]]] = {}
    for series in stored:
        kind, values = decode_series(series)
        entry = grouped.get(series.name)
        if entry is None:
            grouped[series.name] = (kind, values)
        else:
            entry[1].extend(values)
    result: dict[str, Any] = {}
    for name, (kind, values) in grouped.items():
        if kind == SCALAR:
            result[name] = values[0] if len(values) == 1 else values
        elif kind == LIST:
            result[name] = values
        elif kind in (ROW, TABLE):
            columns: dict[str, list[Any]] = {}
            rows = 0
            for chunk in values:
                # a row is {col: scalar}; a table is {col: [values]}
                chunk_columns = {c: (v if isinstance(v, list) else [v]) for c, v in chunk.items()}
                length = len(next(iter(chunk_columns.values()))) if chunk_columns else 0
                for column, column_values in chunk_columns.items():
                    columns.setdefault(column, [None] * rows).extend(column_values)
                rows += length
                for column_values in columns.values():
                    column_values.extend([None] * (rows - len(column_values)))
            if kind == ROW and rows == 1:
                result[name] = {c: v[0] for c, v in columns.items()}
            else:
                result[name] = columns
        else:  # images: their run-file reference (aml://artifactId/...)
            result[name] = values[0] if len(values) == 1 else values
    return result
