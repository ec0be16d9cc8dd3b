"""Errors raised inside a submitted job (standard library only).

They mirror the client's rules (``simml.core._metrics``) but cannot subclass
``simml.exceptions`` classes: the job side runs where only ``simml/job`` is importable. Each one
subclasses the builtin a caller would naturally catch (``ValueError`` for refused values,
``TypeError`` too for unsupported types, ``RuntimeError`` for operations that cannot happen inside
a job).
"""

from __future__ import annotations

from typing import Optional


class JobRunError(Exception):
    """Base of every error the job-side run raises."""


class JobRunValueError(JobRunError, ValueError):
    """An argument was refused (a file name, tags that are not a dict, a changed property...)."""


class MetricValueError(JobRunValueError):
    """A metric value was refused: NaN or infinity, a ragged table, a bad step, or a value whose
    family (number, string, bool) or logging method differs from the metric's first value.
    ``.metric`` names the metric."""

    def __init__(self, message: str, metric: Optional[str] = None) -> None:
        super().__init__(message)
        self.metric = metric


class MetricTypeError(MetricValueError, TypeError):
    """A metric value has a type that cannot be logged this way (a list given to ``log``, an
    array, an arbitrary object)."""


class ModelRegistrationError(JobRunError, RuntimeError):
    """``run.register_model`` was called inside a submitted job. Models are registered from the
    client after the run: the job's files reach run history only when the runner ingests them
    (Azure's classic ``ModelPathNotFoundException`` pitfall)."""


class NotInJobError(JobRunError, RuntimeError):
    """``JobRun.get_context()`` was called outside a job started by simml (``AZUREML_RUN_ID`` or
    ``SIMML_RUN_JOURNAL`` is not set)."""


__all__ = ["JobRunError", "JobRunValueError", "MetricValueError", "MetricTypeError",
           "ModelRegistrationError", "NotInJobError"]
