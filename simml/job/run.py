"""``JobRun``: ``Run.get_context()`` inside a job started by simml (standard library only).

It has Azure's ``Run`` logging signatures but no connection to run history: every call is
validated here (the client's rules, ``simml.job.values``) and recorded as an event in the run
journal (``simml.job.journal``), which the runner ingests into the workspace's store. Behaviour that
differs from an interactive ``Run`` follows Azure's ``_SubmittedRun``:

* ``complete()`` and ``fail()`` do not set the status: the runner does when the script exits. They
  flush and record a ``complete`` / ``fail`` event, which the runner may use (a ``fail`` event's
  details become the run's error message when the script then exits non-zero).
* ``cancel()`` only warns; ``get_status()`` is ``"Running"``.
* ``register_model()`` raises ``ModelRegistrationError``: register from the client after
  ``run.wait_for_completion()``, when ``./outputs`` and uploaded files are in run history.
* ``child_run()`` records a ``child`` event (the runner creates the child as Running) and returns a
  ``JobRun`` writing to the same journal; a child's ``complete()`` / ``fail()`` do set its status.
* ``parent`` is a ``JobRun`` for the parent run (``SIMML_PARENT_RUN_ID``, else
  ``AZUREML_ROOT_RUN_ID`` when it differs from the run id), so ``run.parent.log(...)`` works.
"""

from __future__ import annotations

import os
import warnings
from time import time as _now
from typing import Any, Dict, List, Optional

from . import values as _values
from .errors import JobRunValueError, MetricValueError, ModelRegistrationError, NotInJobError
from .journal import FLUSH_EVENTS, PNG_MAGIC, JournalWriter, dumps, writer_for

RUN_ID_ENV = "AZUREML_RUN_ID"
JOURNAL_ENV = "SIMML_RUN_JOURNAL"
CLOCK_OFFSET_ENV = "SIMML_JOB_CLOCK_OFFSET"
PARENT_ENV = "SIMML_PARENT_RUN_ID"
ROOT_ENV = "AZUREML_ROOT_RUN_ID"
NUMBER_ENV = "SIMML_RUN_NUMBER"


class JobWorkspace:
    """What a job knows about its workspace (from the ``AZUREML_ARM_*`` variables)."""

    def __init__(self, name: str, subscription_id: str = "", resource_group: str = "",
                 workspace_id: str = "") -> None:
        self.name = name
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self._workspace_id = workspace_id

    def __repr__(self) -> str:
        return (f"Workspace.create(name='{self.name}', subscription_id='{self.subscription_id}', "
                f"resource_group='{self.resource_group}')")


class JobExperiment:
    """The run's experiment: ``.name`` and ``.workspace`` (``.name``)."""

    def __init__(self, name: str, workspace: JobWorkspace, experiment_id: str = "") -> None:
        self.name = name
        self.workspace = workspace
        self.id = experiment_id

    def __repr__(self) -> str:
        return f"Experiment(Name: {self.name},\nWorkspace: {self.workspace.name})"


class JobRun:
    """The job-side run: Azure's logging API over the run journal."""

    _context: "Optional[JobRun]" = None

    def __init__(self, run_id: str, journal: "str | JournalWriter", *,
                 experiment: Optional[JobExperiment] = None, parent: "Optional[JobRun]" = None,
                 number: int = 0, display_name: Optional[str] = None,
                 clock_offset: float = 0.0) -> None:
        self._writer = journal if isinstance(journal, JournalWriter) else \
            writer_for(journal, clock_offset)
        self._id = run_id
        self._experiment = experiment or JobExperiment("", JobWorkspace(""))
        self._parent = parent
        self._number = number
        self._display_name = display_name
        self._pins = _values.Pins()
        self._known = self._pins.known
        self._tags: Dict[str, str] = {}
        self._properties: Dict[str, str] = {}

    # --- context -------------------------------------------------------------------------------
    @classmethod
    def get_context(cls, allow_offline: bool = True, used_for_context_manager: bool = False,
                    **kwargs: Any) -> "JobRun":
        """The process's run (cached), built from the environment the runner sets."""
        env = os.environ
        run_id, journal = env.get(RUN_ID_ENV), env.get(JOURNAL_ENV)
        if not run_id or not journal:
            raise NotInJobError(
                f"JobRun.get_context() needs {RUN_ID_ENV} and {JOURNAL_ENV}; they are set by "
                "simml's runner for a submitted job. Outside a job use "
                "simml.core.Run.get_context().")
        cached = cls._context
        if cached is not None and cached._id == run_id and \
                cached._writer.path == os.path.abspath(journal):
            return cached
        cls._context = cls._from_environment(env)
        return cls._context

    @classmethod
    def _from_environment(cls, env: "os._Environ[str] | Dict[str, str]") -> "JobRun":
        run_id, journal = env[RUN_ID_ENV], env[JOURNAL_ENV]
        try:
            offset = float(env.get(CLOCK_OFFSET_ENV) or 0.0)
        except ValueError:
            raise JobRunValueError(
                f"{CLOCK_OFFSET_ENV}={env.get(CLOCK_OFFSET_ENV)!r} is not a number of seconds.")
        try:
            number = int(env.get(NUMBER_ENV) or 0)
        except ValueError:
            number = 0
        workspace = JobWorkspace(env.get("AZUREML_ARM_WORKSPACE_NAME", ""),
                                 env.get("AZUREML_ARM_SUBSCRIPTION", ""),
                                 env.get("AZUREML_ARM_RESOURCEGROUP", ""),
                                 env.get("AZUREML_WORKSPACE_ID", ""))
        experiment = JobExperiment(env.get("AZUREML_EXPERIMENT_NAME", "")
                                   or env.get("AZUREML_ARM_PROJECT_NAME", ""),
                                   workspace, env.get("AZUREML_EXPERIMENT_ID", ""))
        writer = writer_for(journal, offset)
        parent_id = env.get(PARENT_ENV) or env.get(ROOT_ENV)
        parent = None
        if parent_id and parent_id != run_id:
            parent = cls(parent_id, writer, experiment=experiment)
        run = cls(run_id, writer, experiment=experiment, parent=parent, number=number)
        if env.get("SIMML_SWEEP_GATE"):  # a HyperDrive trial: wait at evaluation points
            from .sweep import install
            install(run, env)
        return run

    # --- attributes ----------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._id

    @property
    def name(self) -> str:
        return self._display_name or self._id

    @property
    def display_name(self) -> str:
        return self._display_name or self._id

    @property
    def number(self) -> int:
        return self._number

    @property
    def type(self) -> str:
        return "azureml.scriptrun"

    @property
    def status(self) -> str:
        return "Running"

    @property
    def experiment(self) -> JobExperiment:
        return self._experiment

    @property
    def parent(self) -> "Optional[JobRun]":
        return self._parent

    @property
    def tags(self) -> Dict[str, str]:
        """Tags this process set (not those set elsewhere)."""
        return dict(self._tags)

    @property
    def properties(self) -> Dict[str, str]:
        """Properties this process added (not those added elsewhere)."""
        return dict(self._properties)

    @property
    def journal_path(self) -> str:
        return self._writer.path

    def get_status(self) -> str:
        return "Running"

    def get_tags(self) -> Dict[str, str]:
        return dict(self._tags)

    def get_properties(self) -> Dict[str, str]:
        return dict(self._properties)

    def __repr__(self) -> str:
        return (f"Run(Experiment: {self._experiment.name},\nId: {self._id},\n"
                f"Type: {self.type},\nStatus: Running)")

    # --- metrics -------------------------------------------------------------------------------
    def log(self, name: str, value: Any, description: str = "", step: Optional[int] = None
            ) -> None:
        """Log a scalar; logging a name again appends (``get_metrics`` then gives a list)."""
        cls = type(value)
        if cls is float and value - value == 0.0 or cls is int:
            family = "number"
        elif cls is str:
            family = "string"
        else:
            value = _values.normalize_scalar(name, value)
            family = _values.value_class(value)
        if step is not None and type(step) is not int:
            raise MetricValueError(f"Metric {name!r}: step must be an int, not {step!r}.", name)
        known = self._known.get(name)
        if known is None or known[0] != "scalar" or known[1] != family:
            self._pins.check(name, "scalar", value)
        writer = self._writer
        with writer.lock:
            buffer = writer.buffer
            if not buffer:
                writer.first_event()
            buffer.append((self._id, name, value, step, _now() + writer.clock_offset))
            if len(buffer) >= FLUSH_EVENTS:
                writer.flush_locked()

    def log_list(self, name: str, value: Any, description: str = "") -> None:
        values = _values.validate_list(name, value)
        for item in values:
            self._pins.check(name, "list", item)
        self._metric(name, "list", values)

    def log_row(self, name: str, description: Optional[str] = None, **kwargs: Any) -> None:
        row = _values.validate_row(name, kwargs)
        self._pins.check(name, "row", None)
        self._metric(name, "row", row)

    def log_table(self, name: str, value: Any, description: str = "") -> None:
        table = _values.validate_table(name, value)
        self._pins.check(name, "table", None)
        self._metric(name, "table", table)

    def log_image(self, name: str, path: Any = None, plot: Any = None, description: str = ""
                  ) -> None:
        """Log a PNG file (``path``) or a matplotlib figure or pyplot (``plot``, saved as PNG)."""
        if (path is None) == (plot is None):
            raise MetricValueError(f"log_image({name!r}) needs exactly one of path or plot.", name)
        if path is not None:
            with open(path, "rb") as stream:
                if stream.read(len(PNG_MAGIC)) != PNG_MAGIC:
                    raise MetricValueError(f"log_image({name!r}): {path} is not a PNG file.", name)
        self._pins.check(name, "image", None)
        if path is not None:
            side = self._writer.copy_in(os.fspath(path), f"{name}.png")
        else:
            side = self._writer.copy_in(lambda target: plot.savefig(target, format="png"),
                                        f"{name}.png")
        self._writer.add_event({"e": "metric", "run": self._id, "name": name, "kind": "image",
                                "path": side, "time": self._writer.now()})

    def log_confusion_matrix(self, name: str, value: Any, description: str = "") -> None:
        self._log_json_table(name, value)

    def log_accuracy_table(self, name: str, value: Any, description: str = "") -> None:
        self._log_json_table(name, value)

    def log_residuals(self, name: str, value: Any, description: str = "") -> None:
        self._log_json_table(name, value)

    def log_predictions(self, name: str, value: Any, description: str = "") -> None:
        self._log_json_table(name, value)

    def _log_json_table(self, name: str, value: Any) -> None:
        import json
        data = json.loads(value) if isinstance(value, str) else value
        text = json.dumps(data)
        self._pins.check(name, "row", None)
        self._metric(name, "row", {"data": text})

    def _metric(self, name: str, kind: str, value: Any) -> None:
        writer = self._writer
        writer.add_line(dumps({"e": "metric", "run": self._id, "name": name, "kind": kind,
                               "value": value, "time": writer.now()}))

    def flush(self, timeout_seconds: int = 300) -> None:
        """Write every buffered event to the journal; on return they are in the file."""
        self._writer.flush()

    # --- tags and properties -------------------------------------------------------------------
    def tag(self, key: str, value: Any = None) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Dict[str, Any]) -> None:
        if not isinstance(tags, dict):
            raise JobRunValueError("Tags must be a dict.")
        clean = {str(k): ("" if v is None else str(v)) for k, v in tags.items()}
        self._tags.update(clean)
        self._event({"e": "tags", "run": self._id, "tags": clean})

    def remove_tags(self, tags: Any) -> None:
        keys = [tags] if isinstance(tags, str) else [str(k) for k in tags]
        for key in keys:
            self._tags.pop(key, None)
        self._event({"e": "tags_removed", "run": self._id, "keys": keys})

    def add_properties(self, properties: Dict[str, Any]) -> None:
        """Add properties; a key this process already set to another value is refused (run
        properties are immutable, as in Azure)."""
        if not isinstance(properties, dict):
            raise JobRunValueError("Properties must be a dict.")
        clean = {str(k): str(v) for k, v in properties.items()}
        for key, value in clean.items():
            if self._properties.get(key, value) != value:
                raise JobRunValueError(
                    f"Property {key!r} of run {self._id} is already set to "
                    f"{self._properties[key]!r}; run properties cannot be changed once added.")
        self._properties.update(clean)
        self._event({"e": "properties", "run": self._id, "properties": clean})

    def _event(self, event: Dict[str, Any]) -> None:
        event["time"] = self._writer.now()
        self._writer.add_event(event)

    # --- files ---------------------------------------------------------------------------------
    def upload_file(self, name: str, path_or_stream: Any, datastore_name: Optional[str] = None
                    ) -> None:
        """Copy the file (or stream) aside now; the runner uploads it as run file ``name``."""
        name = _run_file_name(name)
        if hasattr(path_or_stream, "read"):
            side = self._writer.copy_in(path_or_stream, name)
        else:
            source = os.fspath(path_or_stream)
            if not os.path.isfile(source):
                raise FileNotFoundError(f"upload_file({name!r}): {source} is not a file.")
            side = self._writer.copy_in(source, name)
        self._event({"e": "file", "run": self._id, "name": name, "path": side})

    def upload_files(self, names: List[str], paths: List[Any], return_artifacts: bool = False,
                     timeout_seconds: Optional[int] = None, datastore_name: Optional[str] = None
                     ) -> None:
        if len(names) != len(paths):
            raise JobRunValueError("upload_files needs as many names as paths.")
        missing = [os.fspath(p) for p in paths if not os.path.isfile(os.fspath(p))]
        if missing:
            raise FileNotFoundError(f"upload_files: not files: {', '.join(missing)}.")
        for name, path in zip(names, paths):
            self.upload_file(name, path)

    def upload_folder(self, name: str, path: Any, datastore_name: Optional[str] = None) -> None:
        root = os.fspath(path)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"upload_folder({name!r}): {root} is not a folder.")
        prefix = name.replace("\\", "/").rstrip("/")
        found = []
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for file in files:
                full = os.path.join(folder, file)
                if os.path.isfile(full):
                    found.append((os.path.relpath(full, root).replace(os.sep, "/"), full))
        for relative, full in sorted(found):
            self.upload_file(f"{prefix}/{relative}" if prefix else relative, full)

    # --- status --------------------------------------------------------------------------------
    def complete(self, _set_status: bool = True) -> None:
        """Flush and record a ``complete`` event; the runner sets the status when the script
        exits (Azure's ``_SubmittedRun``). A child run's ``complete`` sets its status."""
        self._event({"e": "complete", "run": self._id})
        self.flush()

    def fail(self, error_details: Any = None, error_code: Optional[str] = None,
             _set_status: bool = True) -> None:
        """Flush and record a ``fail`` event (details and code); the runner uses it for the run's
        error when the script exits non-zero. A child run's ``fail`` sets its status."""
        self._event({"e": "fail", "run": self._id,
                     "details": None if error_details is None else str(error_details),
                     "code": None if error_code is None else str(error_code)})
        self.flush()

    def cancel(self) -> None:
        """Only warns, as Azure's ``_SubmittedRun.cancel`` does."""
        warnings.warn(f"run.cancel() has no effect inside the submitted run {self._id}; cancel it "
                      "from the client (run.cancel() on the Run that submit() returned).",
                      UserWarning, stacklevel=2)

    def __enter__(self) -> "JobRun":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None or (exc_type is SystemExit and not exc.code):
            self.complete()
        else:
            self.fail(error_details=repr(exc))
        return False

    # --- children and models -------------------------------------------------------------------
    def child_run(self, name: Optional[str] = None, run_id: Optional[str] = None,
                  outputs: Optional[str] = None) -> "JobRun":
        """Record a child run (created Running by the runner) and return it; ``outputs`` is
        ignored (a child's files are uploaded with ``upload_file``)."""
        if run_id is None:
            import uuid
            run_id = str(uuid.uuid4())
        self._event({"e": "child", "run": run_id, "parent": self._id, "name": name})
        return JobRun(run_id, self._writer, experiment=self._experiment, parent=self,
                      display_name=name)

    def register_model(self, model_name: str, model_path: Optional[str] = None,
                       *args: Any, **kwargs: Any) -> Any:
        raise ModelRegistrationError(
            f"register_model({model_name!r}) cannot run inside a submitted job: the files the "
            "script writes to ./outputs and passes to upload_file() reach run history only after "
            "the script ends (in Azure this is the classic ModelPathNotFoundException). Register "
            "the model from the client once the run is done: run.wait_for_completion(); "
            f"run.register_model(model_name={model_name!r}, "
            f"model_path={(model_path or 'outputs/<file>')!r}).")


def _run_file_name(name: Any) -> str:
    """Normalise a run file name as the store will (``simml._paths.safe_relpath``'s rules), so a
    name the store would refuse fails here, at call time, rather than at ingestion."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or "\x00" in name:
        raise JobRunValueError(f"A run file name must be a string without NUL, not {name!r}.")
    clean = name.replace("\\", "/")
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":" and clean[0].isascii()
                                                    and clean[0].isalpha()):
        raise JobRunValueError(f"Run file name {name!r} is absolute; it must be relative.")
    parts: List[str] = []
    for segment in clean.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                raise JobRunValueError(f"Run file name {name!r} escapes the run with '..'.")
            parts.pop()
            continue
        if segment.startswith(".simml-tmp-"):
            raise JobRunValueError(f"Run file name {name!r} uses the reserved prefix .simml-tmp-.")
        parts.append(segment)
    if not parts:
        raise JobRunValueError(f"Run file name {name!r} is empty; a file path is required.")
    return "/".join(parts)
