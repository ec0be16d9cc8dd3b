"""``Run``: one execution's record in run history, and the logging API scripts use.

Metric calls append to an in-memory buffer and are written in one transaction per batch: on
``flush()``, on ``complete()``/``fail()``, when the buffer is large or a couple of seconds old, and
at interpreter exit. ``flush()`` returning means every value is committed in SQLite (so a SIGKILL
right after loses nothing).

Outside a submitted job, ``Run.get_context()`` returns an offline run that *records* into the
workspace of the nearest config.json (else the default workspace under ``SIMML_HOME``), in an
experiment named after the script; Azure's print-only behaviour is one switch away
(``SIMML_OFFLINE_MODE=print``).
"""

from __future__ import annotations

import atexit
import io
import os
import sys
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator

from simml.core import _metrics
from simml.exceptions import (
    InvalidValueException,
    NotFoundException,
    RunEnvironmentException,
    UserErrorException,
)
from simml.ids import IdFactory
from simml.runstate import (
    TERMINAL,
    CancelRequested,
    Canceled,
    Completed,
    Failed,
    RunStateMachine,
    RunStatus,
    Started,
)

if TYPE_CHECKING:  # entities are imported where used: a job importing this module to call
    # Run.get_context() never needs them, and building their dataclasses takes ~60 ms
    from simml.core.experiment import Experiment
    from simml.core.workspace import Workspace
    from simml.entities import RunInfo

FLUSH_ROWS = 20_000
FLUSH_SECONDS = 2.0
OFFLINE_MODE_ENV = "SIMML_OFFLINE_MODE"
JOB_CONTEXT_ENV = "SIMML_JOB_CONTEXT"
"""Set by a remote backend in its jobs: ``module:function`` returning the job's context run
where simml's journal is absent (``simml_azure.azureml_api:job_context_run``)."""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Run:
    """A run in run history (Azure's ``Run`` / ``ScriptRun``)."""

    _context: "Run | None" = None  # the process's context run, as Azure caches it

    def __init__(self, experiment: "Experiment", run_id: str, outputs: str | None = None,
                 **kwargs: Any) -> None:
        info = kwargs.pop("_info", None) or experiment.workspace._history().get_run(run_id)
        self._experiment = experiment
        self._workspace = experiment.workspace
        self._store = self._workspace._history()
        self._clock = self._workspace._clock
        self._time = self._clock.time
        self._info: RunInfo = info
        self._outputs = outputs
        self._buffer: list[tuple[Any, ...]] = []
        self._buffer_started = 0.0
        self._name_kinds: dict[str, tuple[str, str]] = {}
        self._exit_hook = False

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def _from_info(cls, experiment: "Experiment", info: RunInfo) -> "Run":
        return _run_class(cls, info)(experiment, info.id, _info=info)

    @classmethod
    def _from_id(cls, workspace: "Workspace", run_id: str) -> "Run":
        from simml.core.experiment import Experiment
        info = workspace._history().get_run(run_id)
        experiment = Experiment(workspace, info.experiment_name, _skip_name_validation=True)
        return _run_class(cls, info)(experiment, run_id, _info=info)

    @classmethod
    def _start_interactive(cls, experiment: "Experiment", outputs: str | None = "outputs",
                           display_name: str | None = None, run_id: str | None = None,
                           parent_id: str | None = None, run_type: str = "azureml.scriptrun",
                           ) -> "Run":
        from simml.entities import RunCreate
        ids = IdFactory.from_environment()
        clock = experiment.workspace._clock
        request = RunCreate(run_id=run_id or ids.uuid4(), experiment_name=experiment.name,
                            run_type=run_type, status="NotStarted", parent_id=parent_id,
                            display_name=display_name, target="local",
                            created_time=clock.now(), submitted_by=_user())
        store = experiment.workspace._history()
        info = store.create_run(request)
        run = cls(experiment, info.id, outputs=outputs, _info=info)
        run._apply(Started())
        return run

    @staticmethod
    def get(workspace: "Workspace", run_id: str) -> "Run":
        return Run._from_id(workspace, run_id)

    @staticmethod
    def list(experiment: "Experiment", type: str | None = None, tags: Any = None,
             properties: Any = None, status: str | None = None,
             include_children: bool = False) -> Iterator["Run"]:
        return experiment.get_runs(type=type, tags=tags, properties=properties,
                                   include_children=include_children, status=status)

    @classmethod
    def get_context(cls, allow_offline: bool = True, used_for_context_manager: bool = False,
                    **kwargs: Any) -> Any:
        """The run this process belongs to.

        Inside a job started by simml: the job-side run (journal-backed, standard library only);
        in a job a remote backend submitted (``SIMML_JOB_CONTEXT``), that backend's run.
        Outside: an offline run that records (or prints only, with ``SIMML_OFFLINE_MODE=print``);
        ``allow_offline=False`` raises ``RunEnvironmentException`` there, as Azure does.
        """
        if os.environ.get("SIMML_RUN_JOURNAL") and os.environ.get("AZUREML_RUN_ID"):
            from simml.job import JobRun
            return JobRun.get_context()
        job_context = os.environ.get(JOB_CONTEXT_ENV)
        if job_context and os.environ.get("AZUREML_RUN_ID"):
            # a job a remote backend submitted (azure: the SDK's run of the job)
            import importlib
            module, _, name = job_context.partition(":")
            return getattr(importlib.import_module(module), name)()
        if not allow_offline:
            raise RunEnvironmentException(
                "Run.get_context(allow_offline=False) was called outside a submitted run "
                "(AZUREML_RUN_ID is not set).")
        if os.environ.get(OFFLINE_MODE_ENV, "").lower() == "print":
            return _PrintOnlyOfflineRun()
        if cls._context is None or cls._context._info.status in TERMINAL:
            cls._context = _start_offline_run()
        return cls._context

    # --- properties ----------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._info.id

    @property
    def name(self) -> str:
        return self._info.display_name or self._info.id

    @property
    def display_name(self) -> str:
        return self._info.display_name or self._info.id

    @property
    def number(self) -> int:
        return self._info.number

    @property
    def type(self) -> str:
        return self._info.run_type

    @property
    def status(self) -> str:
        return self._info.status

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._info.tags)

    @property
    def properties(self) -> dict[str, str]:
        return dict(self._info.properties)

    @property
    def experiment(self) -> "Experiment":
        return self._experiment

    @property
    def parent(self) -> "Run | None":
        if self._info.parent_id is None:
            return None
        return Run._from_id(self._workspace, self._info.parent_id)

    def _refresh(self) -> RunInfo:
        self._info = self._store.get_run(self.id)
        return self._info

    # --- status --------------------------------------------------------------------------------
    def _apply(self, event: Any, error: dict[str, Any] | None = None) -> None:
        info = self._refresh()
        machine = RunStateMachine(self.id, RunStatus(info.status))
        for transition in machine.handle(event, self._clock.now()):
            self._info = self._store.set_run_status(self.id, transition.new.value, transition.at,
                                                    error)

    def get_status(self) -> str:
        return self._refresh().status

    def get_detailed_status(self) -> dict[str, Any]:
        return {"status": self.get_status(), "details": None}

    def start(self) -> None:
        self._apply(Started())

    def complete(self, _set_status: bool = True) -> None:
        """Flush metrics, upload ``outputs`` (interactive runs) and mark the run Completed."""
        self.flush()
        self._upload_outputs()
        if _set_status:
            self._apply(Completed())

    def fail(self, error_details: Any = None, error_code: str | None = None,
             _set_status: bool = True) -> None:
        self.flush()
        self._upload_outputs()
        if _set_status:
            error = {"code": error_code or "UserError",
                     "message": str(error_details) if error_details is not None else ""}
            self._apply(Failed(error), error={"error": error})

    def cancel(self) -> None:
        """Cancel the run. A submitted run is stopped by its runner (process tree included) and
        ends Canceled; this returns once the request is recorded, as Azure's does."""
        info = self._refresh()
        if info.status in TERMINAL:
            raise UserErrorException(
                f"Run {self.id} is already {info.status}; only an active run can be canceled.")
        if info.definition is not None:
            self._workspace._backend.run_cancel(self._workspace._info, self.id)
            return
        self.flush()
        self._apply(CancelRequested())
        self._apply(Canceled())

    def wait_for_completion(self, show_output: bool = False, wait_post_processing: bool = False,
                            raise_on_error: bool = True) -> dict[str, Any]:
        """Wait until the run ends; with ``show_output`` stream its driver log live.

        Unlike Azure, this returns only once the run is terminal (Finalizing included), so
        ``./outputs`` is already in the run's files and ``register_model`` on the next line works.
        A Failed run raises ``ActivityFailedException`` (``raise_on_error``).
        """
        import json
        import time
        from simml.exceptions import ActivityFailedException, ExperimentExecutionException
        workspace = self._workspace
        submitted = self._info.definition is not None
        if show_output:
            print(f"RunId: {self.id}")
            print(f"Web View: {self.get_portal_url()}", flush=True)
        cursor, streaming, delay = 0, False, 0.02
        try:
            while True:
                if submitted:
                    look = workspace._backend.run_observe(workspace._info, self.id, cursor)
                    status, cursor = look.status, look.cursor
                    if show_output and look.log_lines:
                        if not streaming:
                            name = "azureml-logs/70_driver_log.txt"
                            print(f"\nStreaming {name}\n{'=' * (len(name) + 10)}\n")
                            streaming = True
                        print("\n".join(look.log_lines), flush=True)
                else:
                    status = self.get_status()
                if status in TERMINAL:
                    break
                time.sleep(delay)
                delay = min(delay * 1.5, 0.1)
        except KeyboardInterrupt as exc:
            raise ExperimentExecutionException(
                "The output streaming for the run interrupted.\nBut the run is still executing "
                "on the compute target.") from exc
        details = self.get_details()
        if show_output:
            print("\nExecution Summary\n=================")
            print(f"RunId: {self.id}\nWeb View: {self.get_portal_url()}\n", flush=True)
        if details["status"] == "Failed":
            error = json.dumps(details.get("error", {}), indent=4)
            if raise_on_error:
                raise ActivityFailedException(error_details=error)
            if show_output:
                print(f"Error:\n{error}")
        return details

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None or (exc_type is SystemExit and not exc.code):
            self.complete()
        else:
            self.fail(error_details=repr(exc))
        return False

    def _upload_outputs(self) -> None:
        if self._outputs and Path(self._outputs).is_dir() and self._info.status not in TERMINAL:
            self.upload_folder(self._outputs, self._outputs)

    # --- metrics -------------------------------------------------------------------------------
    def _pin(self, name: str, kind: str, value: Any) -> None:
        """A metric name keeps the logging method and value type of its first value."""
        family = _metrics.value_class(value)
        known = self._name_kinds.get(name)
        if known is None:
            stored = self._store.get_metrics(self.id, name)[:1]
            if stored:
                stored_kind, stored_values = _metrics.decode_series(stored[0])
                known = (stored_kind, _metrics.value_class(stored_values[0]))
            else:
                known = (kind, family)
            self._name_kinds[name] = known
        if known[1] == "none" and family != "none":
            known = self._name_kinds[name] = (known[0], family)
        if known[0] != kind:
            raise InvalidValueException(
                f"Metric {name!r} was logged with log_{known[0]}; it cannot also be logged with "
                f"log_{kind}.")
        if family != known[1] and "none" not in (family, known[1]) and kind in ("scalar", "list"):
            raise InvalidValueException(
                f"Metric {name!r} holds {known[1]} values; {value!r} is a {family}. Log a "
                f"{known[1]} or use another metric name.")

    def _start_buffer(self, now: float) -> None:
        self._buffer_started = now
        if not self._exit_hook:
            _at_exit(self.flush)
            self._exit_hook = True

    def _append(self, name: str, kind: str, value: Any, step: int | None) -> None:
        buffer = self._buffer
        now = self._time()
        if not buffer:
            self._start_buffer(now)
        buffer.append((name, kind, value, step, now))
        if len(buffer) >= FLUSH_ROWS or now - self._buffer_started > FLUSH_SECONDS:
            self.flush()

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        """Log a scalar; logging a name again appends (``get_metrics`` then gives a list)."""
        # Hot path (100k calls/s): finite floats, ints and strings of an already pinned name.
        cls = type(value)
        if cls is float and value - value == 0.0 or cls is int:
            family = "number"
        elif cls is str:
            family = "string"
        else:
            value = _metrics.normalize_scalar(name, value)
            family = _metrics.value_class(value)
        if step is not None and (type(step) is not int):
            raise InvalidValueException(f"Metric {name!r}: step must be an int, not {step!r}.")
        known = self._name_kinds.get(name)
        if known is None or known[0] != "scalar" or known[1] != family:
            self._pin(name, "scalar", value)
        if family == "bool":
            self._append(name, *_metrics.encode("scalar", value), step)
            return
        buffer = self._buffer
        now = self._time()
        if not buffer:
            self._start_buffer(now)
        buffer.append((name, "scalar", value, step, now))
        if len(buffer) >= FLUSH_ROWS or now - self._buffer_started > FLUSH_SECONDS:
            self.flush()

    def log_list(self, name: str, value: Any, description: str = "") -> None:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise InvalidValueException(f"Metric {name!r}: log_list needs a list of values.")
        values = [_metrics.normalize_scalar(name, v) for v in
                  (value.tolist() if hasattr(value, "tolist") else value)]
        families = {_metrics.value_class(v) for v in values} - {"none"}
        if len(families) > 1:
            raise InvalidValueException(
                f"Metric {name!r}: log_list values must all be of one type, got {sorted(families)}.")
        for item in values:  # validated whole: nothing is stored from a refused list
            self._pin(name, "list", item)
        for item in values:
            kind, stored = _metrics.encode("list", item)
            self._append(name, kind, stored, None)

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        row = _metrics.validate_row(name, kwargs)
        self._pin(name, "row", None)
        kind, stored = _metrics.encode_json("row", row)
        self._append(name, kind, stored, None)

    def log_table(self, name: str, value: dict[str, Any], description: str = "") -> None:
        table = _metrics.validate_table(name, value)
        self._pin(name, "table", None)
        kind, stored = _metrics.encode_json("table", table)
        self._append(name, kind, stored, None)

    def log_image(self, name: str, path: str | os.PathLike[str] | None = None, plot: Any = None,
                  description: str = "") -> None:
        """Log a PNG from ``path`` or a matplotlib figure/pyplot (``plot``) as an image metric."""
        if (path is None) == (plot is None):
            raise InvalidValueException(f"log_image({name!r}) needs exactly one of path or plot.")
        if path is not None:
            data = Path(path).read_bytes()
            if not data.startswith(PNG_MAGIC):
                raise InvalidValueException(f"log_image({name!r}): {path} is not a PNG file.")
        else:
            buffer = io.BytesIO()
            plot.savefig(buffer, format="png")
            data = buffer.getvalue()
        self._pin(name, "image", None)
        existing = set(self._store.list_files(self.id))
        file_name, n = f"{name}.png", 1
        while file_name in existing:
            n += 1
            file_name = f"{name}_{n}.png"
        self._store.upload_file(self.id, file_name, io.BytesIO(data))
        self._append(name, "image", f"aml://artifactId/ExperimentRun/dcid.{self.id}/{file_name}",
                     None)

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
        self._pin(name, "row", None)
        kind, stored = _metrics.encode_json("row", {"data": json.dumps(data)})
        self._append(name, kind, stored, None)

    def flush(self, timeout_seconds: int = 300) -> None:
        """Write every buffered metric value in one transaction; on return they are committed."""
        if not self._buffer:
            return
        from simml.entities import MetricBatch
        rows, self._buffer = tuple(self._buffer), []
        self._store.log_metrics(MetricBatch(self.id, rows))

    def get_metrics(self, name: str | None = None, recursive: bool = False,
                    run_type: str | None = None, populate: bool = False) -> dict[str, Any]:
        self.flush()
        if recursive:
            result = {self.id: _metrics.fold(self._store.get_metrics(self.id, name))}
            for child in self.get_children(recursive=True, type=run_type):
                result[child.id] = _metrics.fold(self._store.get_metrics(child.id, name))
            return result
        return _metrics.fold(self._store.get_metrics(self.id, name))

    # --- tags and properties -------------------------------------------------------------------
    def tag(self, key: str, value: Any = None) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: dict[str, Any]) -> None:
        if not isinstance(tags, dict):
            raise InvalidValueException("Tags must be a dict.")
        self._store.set_tags(self.id, {str(k): ("" if v is None else str(v))
                                       for k, v in tags.items()})
        self._refresh()

    def get_tags(self) -> dict[str, str]:
        return dict(self._refresh().tags)

    def remove_tags(self, tags: Any) -> None:
        keys = [tags] if isinstance(tags, str) else list(tags)
        self._store.remove_tags(self.id, keys)
        self._refresh()

    def add_properties(self, properties: dict[str, Any]) -> None:
        if not isinstance(properties, dict):
            raise InvalidValueException("Properties must be a dict.")
        self._store.add_properties(self.id, {str(k): str(v) for k, v in properties.items()})
        self._refresh()

    def get_properties(self) -> dict[str, str]:
        return dict(self._refresh().properties)

    # --- details -------------------------------------------------------------------------------
    def get_details(self) -> dict[str, Any]:
        info = self._refresh()
        details: dict[str, Any] = {
            "runId": info.id,
            "target": info.target,
            "status": info.status,
            "startTimeUtc": _iso(info.start_time),
            "properties": dict(info.properties),
            "inputDatasets": [],
            "outputDatasets": [],
            "runDefinition": info.definition or {},
            "logFiles": {name: name for name in self._store.list_files(info.id)
                         if name.startswith(("logs/", "azureml-logs/", "user_logs/"))},
            "submittedBy": info.submitted_by,
            "statusHistory": [{"status": c.status, "time": _iso(c.time)}
                              for c in info.status_history],
        }
        if info.end_time is not None:
            details["endTimeUtc"] = _iso(info.end_time)
        if info.error is not None:
            details["error"] = info.error
        return details

    def get_environment(self) -> Any:
        """The ``Environment`` the run was submitted with (Azure's ``Run.get_environment``): the
        seed flow deploys its model in the environment it was trained in.

        :raises RunConfigurationException: the run has no recorded environment (not submitted).
        """
        from simml.core.environment import Environment
        from simml.exceptions import RunConfigurationException
        definition = (self._refresh().definition or {}).get("environment")
        if not definition:
            raise RunConfigurationException(f"Run {self.id} has no environment definition (only "
                                            "submitted runs have one).")
        return Environment._from_definition(definition)

    def get_portal_url(self) -> str:
        return f"simml://{self._workspace.name}/runs/{self.id}"

    # --- files ---------------------------------------------------------------------------------
    def get_file_names(self) -> list[str]:
        return self._store.list_files(self.id)

    def upload_file(self, name: str, path_or_stream: Any, datastore_name: str | None = None
                    ) -> None:
        if hasattr(path_or_stream, "read"):
            self._store.upload_file(self.id, name, path_or_stream)
            return
        source = Path(path_or_stream)
        if not source.is_file():
            raise NotFoundException(f"upload_file({name!r}): {source} is not a file.")
        with open(source, "rb") as stream:
            self._store.upload_file(self.id, name, stream)

    def upload_files(self, names: list[str], paths: list[Any], return_artifacts: bool = False,
                     timeout_seconds: int | None = None, datastore_name: str | None = None
                     ) -> None:
        if len(names) != len(paths):
            raise InvalidValueException("upload_files needs as many names as paths.")
        missing = [str(p) for p in paths if not Path(p).is_file()]
        if missing:
            raise NotFoundException(f"upload_files: not files: {', '.join(missing)}.")
        for name, path in zip(names, paths):
            self.upload_file(name, path)

    def upload_folder(self, name: str, path: str | os.PathLike[str],
                      datastore_name: str | None = None) -> None:
        root = Path(path)
        if not root.is_dir():
            raise NotFoundException(f"upload_folder({name!r}): {root} is not a folder.")
        prefix = PurePosixPath(name.replace("\\", "/"))
        files = sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            self.upload_file(str(prefix / file.relative_to(root).as_posix()), file)

    def download_file(self, name: str, output_file_path: str | os.PathLike[str] | None = None,
                      _validate_checksum: bool = False) -> None:
        target = Path(output_file_path) if output_file_path else Path(PurePosixPath(name).name)
        if target.is_dir():
            target = target / PurePosixPath(name).name
        _copy_stream_atomic(self._store.open_file(self.id, name), target)

    def download_files(self, prefix: str | None = None, output_directory: Any = None,
                       output_paths: list[str] | None = None, batch_size: int = 100,
                       append_prefix: bool = True, timeout_seconds: int | None = None) -> None:
        names = [n for n in self.get_file_names() if not prefix or n.startswith(prefix)]
        base = Path(output_directory or ".")
        for index, name in enumerate(names):
            if output_paths is not None:
                target = Path(output_paths[index])
            else:
                relative = name if append_prefix or not prefix else name[len(prefix):].lstrip("/")
                target = base / relative
            _copy_stream_atomic(self._store.open_file(self.id, name), target)

    # --- models --------------------------------------------------------------------------------
    def register_model(self, model_name: str, model_path: str | None = None,
                       tags: dict[str, Any] | None = None,
                       properties: dict[str, Any] | None = None,
                       model_framework: str | None = None,
                       model_framework_version: str | None = None,
                       description: str | None = None, datasets: Any = None,
                       sample_input_dataset: Any = None, sample_output_dataset: Any = None,
                       resource_configuration: Any = None, **kwargs: Any) -> Any:
        """Register a file or folder among this run's uploaded files as a model version
        (``model_path`` defaults to ``model_name``); raises ``ModelPathNotFoundException`` listing
        the run's files when it is not one of them."""
        from simml.core.model import register_model_from_run
        self.flush()
        return register_model_from_run(
            self, model_name, model_path=model_path, tags=tags, properties=properties,
            model_framework=model_framework, model_framework_version=model_framework_version,
            description=description, datasets=datasets, sample_input_dataset=sample_input_dataset,
            sample_output_dataset=sample_output_dataset,
            resource_configuration=resource_configuration, **kwargs)

    # --- children ------------------------------------------------------------------------------
    def child_run(self, name: str | None = None, run_id: str | None = None,
                  outputs: str | None = None) -> "Run":
        return Run._start_interactive(self._experiment, outputs=outputs, display_name=name,
                                      run_id=run_id, parent_id=self.id, run_type=self.type)

    def get_children(self, recursive: bool = False, tags: Any = None, properties: Any = None,
                     type: str | None = None, status: str | None = None,
                     _rehydrate_runs: bool = True) -> Iterator["Run"]:
        from simml.core.experiment import _filters
        from simml.entities import RunQuery
        query = RunQuery(parent_id=self.id, run_type=type, status=status, tags=_filters(tags),
                         properties=_filters(properties), include_children=True)
        for info in reversed(self._store.query_runs(query)):
            child = Run._from_info(self._experiment, info)
            yield child
            if recursive:
                yield from child.get_children(recursive=True, tags=tags, properties=properties,
                                              type=type, status=status)

    def __repr__(self) -> str:
        return (f"Run(Experiment: {self._experiment.name},\nId: {self.id},\nType: {self.type},\n"
                f"Status: {self._info.status})")


def _run_class(cls: type, info: RunInfo) -> type:
    """Azure rehydrates runs by type: a HyperDrive parent comes back as a ``HyperDriveRun``."""
    from simml.entities import HYPERDRIVE_RUN_TYPE
    if cls is Run and info.run_type == HYPERDRIVE_RUN_TYPE:
        from simml.train.hyperdrive.run import HyperDriveRun
        return HyperDriveRun
    return cls


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _user() -> str:
    try:
        import getpass
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())


def _copy_stream_atomic(stream: BinaryIO, target: Path) -> None:
    import shutil
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".simml-tmp-{os.getpid()}-{target.name}"
    try:
        with stream, open(tmp, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _script_stem() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else "")
    stem = Path(path).stem if path else ""
    import re
    stem = re.sub(r"[^\w\-]", "_", stem).lstrip("_-")
    return stem or "offline"


def _at_exit(flush: Any) -> None:
    """Flush at interpreter exit twice: first when threading shuts down (before ``atexit``, by
    which time ``concurrent.futures`` refuses new work, so a backend whose client sends through a
    thread pool, the Azure SDK's, can still send; registered after that pool, it runs before the
    pool stops), then at ``atexit`` for what threads still running then logged (an empty buffer
    costs nothing). A failing flush is reported as ``atexit`` reports it and stops nothing."""
    import threading

    def early() -> None:
        try:
            flush()
        except Exception:  # noqa: BLE001 - reported; threading's shutdown must go on
            import traceback
            print(f"Exception ignored in the exit flush of {flush!r}:", file=sys.stderr)
            traceback.print_exc()

    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(early)
        except RuntimeError:  # threading is shutting down already
            pass
    atexit.register(flush)


def _start_offline_run() -> Run:
    """An interactive run that records what an offline script logs; completed at exit."""
    from simml.core.experiment import Experiment
    from simml.core.workspace import Workspace
    workspace = Workspace._default()
    experiment = Experiment(workspace, _script_stem())
    run = Run._start_interactive(experiment, outputs="outputs",
                                 run_id=IdFactory.from_environment().offline_run_id(),
                                 run_type="azureml.offlinerun")
    previous_hook = sys.excepthook

    def record_failure(exc_type: Any, exc: Any, tb: Any) -> None:
        import traceback
        if run._info.status not in TERMINAL:
            run.fail(error_details="".join(traceback.format_exception(exc_type, exc, tb)),
                     error_code="ScriptError")
        previous_hook(exc_type, exc, tb)

    def finish() -> None:
        if run._refresh().status not in TERMINAL:
            run.complete()

    sys.excepthook = record_failure
    atexit.register(finish)
    return run


class _PrintOnlyOfflineRun:
    """Azure's ``_OfflineRun``: every call only prints (``SIMML_OFFLINE_MODE=print``)."""

    def __init__(self) -> None:
        self.id = IdFactory.from_environment().offline_run_id()

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        print(f"Attempted to log scalar metric {name}:\n{value}")

    def log_list(self, name: str, value: Any, description: str = "") -> None:
        print(f"Attempted to log list metric {name}:\n{value}")

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        print(f"Attempted to log row metric {name}:\n{kwargs}")

    def log_table(self, name: str, value: Any, description: str = "") -> None:
        print(f"Attempted to log table metric {name}:\n{value}")

    def log_image(self, name: str, path: Any = None, plot: Any = None, description: str = ""
                  ) -> None:
        print(f"Attempted to log image metric {name}:\n{path or plot}")

    def tag(self, key: str, value: Any = None) -> None:
        print(f"Attempted to add tag {key} with value {value}")

    def set_tags(self, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.tag(key, value)

    def add_properties(self, properties: dict[str, Any]) -> None:
        print(f"Attempted to add properties {properties}")

    def upload_file(self, name: str, path_or_stream: Any) -> None:
        print(f"Attempted to track file {name} at {path_or_stream}")

    def upload_folder(self, name: str, path: Any) -> None:
        print(f"Attempted to track folder {name} at {path}")

    def complete(self, _set_status: bool = True) -> None:
        print("Attempted to complete run")

    def fail(self, error_details: Any = None, error_code: Any = None, _set_status: bool = True
             ) -> None:
        print(f"Run failed with error code {error_code}:\n{error_details}")

    def cancel(self) -> None:
        print("Attempted to cancel run")

    def flush(self, timeout_seconds: int = 300) -> None:
        print(f"Attempted to flush run with id {self.id}")

    def __enter__(self) -> "_PrintOnlyOfflineRun":
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False
