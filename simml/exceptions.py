"""One exception hierarchy for everything simml raises, with Azure ML's names.

Azure ML SDK v1 users catch ``azureml.exceptions.X``; the same names live here so that porting is a
change of import prefix. simml-only conditions subclass the closest Azure class and, where a caller
would naturally catch a builtin, that builtin too (``LookupError`` for not-found, ``ValueError`` for
bad values, ``PermissionError`` for paths escaping their root).
"""

from __future__ import annotations

from typing import Any


class AzureMLException(Exception):
    """Base of every error simml raises (Azure's ``AzureMLException``)."""

    def __init__(self, exception_message: str = "", inner_exception: BaseException | None = None,
                 **details: Any) -> None:
        super().__init__(exception_message)
        self.message = exception_message
        self.inner_exception = inner_exception
        self.details = details

    def __str__(self) -> str:
        text = f"{type(self).__name__}:\n\tMessage: {self.message}"
        if self.inner_exception is not None:
            text += f"\n\tInnerException: {self.inner_exception!r}"
        return text


SimmlError = AzureMLException
"""simml's own name for the hierarchy's root."""


class UserErrorException(AzureMLException):
    """The caller passed something invalid; nothing was changed."""


class AuthenticationException(UserErrorException):
    """Credentials are missing or were refused."""


class ConfigurationException(UserErrorException, ValueError):
    """A configuration file or setting is missing, malformed or contradictory."""


class BackendNotFoundException(UserErrorException, LookupError):
    """The named backend is not installed; ``.available`` lists those that are."""

    def __init__(self, name: str, available: list[str], hint: str = "") -> None:
        message = (f"Unknown simml backend {name!r}. Installed backends: "
                   f"{', '.join(sorted(available)) or '(none)'}.{(' ' + hint) if hint else ''}")
        super().__init__(message)
        self.name = name
        self.available = sorted(available)


class BackendCapabilityException(AzureMLException, NotImplementedError):
    """The active backend does not implement an operation (``.hook``, ``.backend``)."""

    def __init__(self, hook: str, backend: str) -> None:
        super().__init__(f"The {backend!r} backend does not implement {hook}.")
        self.hook = hook
        self.backend = backend


class NotFoundException(UserErrorException, LookupError):
    """An experiment, run, datastore or file that was asked for does not exist."""


class InvalidValueException(UserErrorException, ValueError):
    """A value has the wrong type or shape (metric values, names, arguments)."""


class UnsafePathException(UserErrorException, PermissionError):
    """A user-supplied path escapes the root it must stay under (``..``, absolute, links)."""


class StoreSchemaException(AzureMLException):
    """The local store was written by a newer simml (its schema version is unknown here)."""


class WorkspaceException(AzureMLException):
    """A workspace could not be found, created or read."""


class ProjectSystemException(AzureMLException):
    """Azure's name for workspace/project resolution failures."""


class ExperimentExecutionException(AzureMLException):
    """Submitting or following a run failed on the client side."""


class ActivityFailedException(AzureMLException):
    """A run ended Failed while ``wait_for_completion(raise_on_error=True)`` was waiting."""

    def __init__(self, error_details: str = "", **details: Any) -> None:
        super().__init__(f"Activity Failed:\n{error_details}", **details)
        self.error_details = error_details


class ComputeTargetException(AzureMLException):
    """A compute target is missing, invalid or failed."""


class ModelNotFoundException(AzureMLException, LookupError):
    """A registered model or model version does not exist."""


class ModelPathNotFoundException(AzureMLException, FileNotFoundError):
    """``register_model`` was given a path that is not among the run's files."""


class RunConfigurationException(AzureMLException):
    """A run configuration (script, arguments, environment) is invalid."""


class DockerEngineException(AzureMLException):
    """The Docker runtime was asked for and no Docker engine answers, or the engine was lost while
    a run's container ran; the message says how to start one."""


class RunEnvironmentException(AzureMLException):
    """``Run.get_context(allow_offline=False)`` was called outside a submitted run."""


class SnapshotException(AzureMLException):
    """The source directory snapshot is too large or unreadable."""


class TrainingException(AzureMLException):
    """An estimator or training configuration is invalid."""


class WebserviceException(AzureMLException):
    """A model-management or web-service operation failed (Azure uses it for model names too).

    ``status_code`` is the HTTP status of a failed scoring call, else None."""

    @property
    def status_code(self) -> int | None:
        return self.details.get("status_code")


class WebserviceNotFoundException(WebserviceException, NotFoundException):
    """A web service that was asked for does not exist in the workspace."""


class InvalidTransition(AzureMLException):
    """A driven run-status transition broke the state machine; ``.history`` explains how we got here."""

    def __init__(self, run_id: str, status: str, event: str, history: tuple[Any, ...] = ()) -> None:
        lines = "\n".join(f"\t\t{h}" for h in history)
        super().__init__(f"Run {run_id}: event {event} is not allowed in status {status}."
                         + (f"\n\tHistory:\n{lines}" if lines else ""))
        self.run_id = run_id
        self.status = status
        self.event = event
        self.history = history

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id, self.status, self.event, self.history))


__all__ = [name for name, value in globals().items()
           if isinstance(value, type) and issubclass(value, BaseException)] + ["SimmlError"]
