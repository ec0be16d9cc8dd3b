"""The runner's side of the run journal: read what a job appended and apply it to run history.

The job (``simml.job``, standard library only) appends one JSON event per line to
``journal.jsonl`` and copies uploaded files and images into ``files/`` beside it; the schema is
documented in ``simml.job.journal``. The runner polls:

    reader = JournalReader(run_dir / "journal.jsonl")
    while job_is_running:
        ingest(reader.read_new(), store, run_id, files_root=run_dir)

``JournalReader.read_new`` returns only complete lines it has not returned before (it keeps a byte
offset, leaves a partial trailing line for the next call and waits for a missing file to appear),
so ingesting what it returns is idempotent per offset. ``ingest`` writes each run's metrics as ONE
``MetricBatch`` per call, encoded exactly as the client's ``Run`` encodes them
(``simml.core._metrics``), so ``get_metrics`` folds a job's values like an interactive run's.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from simml.core import _metrics
from simml.entities import MetricBatch, RunCreate
from simml.exceptions import AzureMLException, InvalidTransition
from simml.job.journal import SIDE_FOLDER
from simml.runstate import Completed, Failed, RunStateMachine, RunStatus

logger = logging.getLogger(__name__)

READ_CHUNK = 64 << 20
# what a malformed or unappliable event raises; anything else (the database) propagates
_EVENT_ERRORS = (AzureMLException, OSError, ValueError, KeyError, TypeError, AttributeError)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid in a journal line")


class JournalReader:
    """Incremental reader of one journal file.

    ``offset`` is the byte offset of the first line not yet returned; pass a saved offset to resume
    (a restarted runner). ``malformed`` counts complete lines that were not a JSON object with an
    ``"e"`` key (skipped with a warning).
    """

    def __init__(self, path: str | os.PathLike[str], offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset
        self.malformed = 0

    @property
    def folder(self) -> Path:
        """The journal's folder: pass it to ``ingest(..., files_root=...)``."""
        return self.path.parent

    def read_new(self) -> list[dict[str, Any]]:
        """Events of the complete lines appended since the last call (none if the file is
        missing); a partial trailing line is left for a later call."""
        try:
            stream = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with stream:
            stream.seek(self.offset)
            data = stream.read(READ_CHUNK)
            end = data.rfind(b"\n")
            while end < 0 and len(data) >= READ_CHUNK:  # one line longer than a chunk
                more = stream.read(READ_CHUNK)
                if not more:
                    break
                data += more
                end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return self._parse(data[:end])

    def _parse(self, data: bytes) -> list[dict[str, Any]]:
        if not data.strip():
            return []
        try:  # the common case: one C-level parse of every line
            events = json.loads(b"[" + data.replace(b"\n", b",") + b"]",
                                parse_constant=_no_constants)
            if all(type(e) is dict and "e" in e for e in events):
                return events
        except ValueError:  # a malformed or blank line: go line by line
            pass
        events = []
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                event = json.loads(line, parse_constant=_no_constants)
            except ValueError:
                event = None
            if type(event) is dict and "e" in event:
                events.append(event)
            else:
                self.malformed += 1
                logger.warning("journal %s: skipped a malformed line: %.200r", self.path, line)
        return events


@dataclass
class IngestResult:
    """What one ``ingest`` call applied.

    ``outcomes`` maps a run id to its last ``complete`` / ``fail`` event of this call: for the
    job's own run the runner decides what to do with it (a submitted run's ``complete()`` and
    ``fail()`` don't set the status; a ``fail`` event's details may become the error message);
    child runs' statuses are set here. ``errors`` lists events that could not be applied (they
    are also logged); they do not stop the others.
    """

    run_id: str
    events: int = 0
    metrics: int = 0
    files: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> dict[str, Any] | None:
        """The job's own last ``complete`` / ``fail`` event in this call, if any."""
        return self.outcomes.get(self.run_id)


class _Ingestion:
    def __init__(self, store: Any, run_id: str, files_root: Path, result: IngestResult) -> None:
        self.store = store
        self.run_id = run_id
        self.side = (files_root / SIDE_FOLDER).resolve()
        self.result = result
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        self.allowed: dict[str, bool] = {run_id: True}
        self.run_files: dict[str, set[str]] = {}
        self.statuses: list[dict[str, Any]] = []

    def problem(self, message: str) -> None:
        self.result.errors.append(message)
        logger.warning("journal of run %s: %s", self.run_id, message)

    def may_write(self, run: str) -> bool:
        """The job may write to its own run, its parent run and descendants of its run (the
        child runs it created)."""
        allowed = self.allowed.get(run)
        if allowed is None:
            allowed = False
            try:
                if run == self.store.get_run(self.run_id).parent_id:
                    allowed = True
                else:
                    current: str | None = run
                    seen: set[str] = set()
                    while current is not None and current not in seen:
                        if current == self.run_id:
                            allowed = True
                            break
                        seen.add(current)
                        current = self.store.get_run(current).parent_id
            except AzureMLException:
                allowed = False
            self.allowed[run] = allowed
        return allowed

    def side_file(self, relative: Any) -> Path:
        if not isinstance(relative, str) or not relative:
            raise ValueError(f"bad side-file path {relative!r}")
        path = (self.side / relative).resolve()
        if self.side not in path.parents:
            raise ValueError(f"side-file path {relative!r} leaves {self.side}")
        return path

    def files_of(self, run: str) -> set[str]:
        names = self.run_files.get(run)
        if names is None:
            names = self.run_files[run] = set(self.store.list_files(run))
        return names

    def upload(self, run: str, name: str, relative: Any) -> None:
        with open(self.side_file(relative), "rb") as stream:
            self.store.upload_file(run, name, stream)
        if run in self.run_files:
            self.run_files[run].add(name)
        self.result.files.append(f"{run}/{name}")

    def image_name(self, run: str, name: str) -> str:
        """``<name>.png``, else ``<name>_2.png``, ... (the client's rule)."""
        existing = self.files_of(run)
        file_name, n = f"{name}.png", 1
        while file_name in existing:
            n += 1
            file_name = f"{name}_{n}.png"
        return file_name

    # --- events ----------------------------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("e")
        run = event.get("run", self.run_id)
        if not isinstance(run, str):
            raise ValueError(f"bad run id {run!r}")
        if kind == "child":
            self.child(event, run)
            return
        handler = _HANDLERS.get(kind)  # type: ignore[arg-type]
        if handler is None:
            self.result.skipped += 1
            logger.warning("journal of run %s: skipped an event of unknown type %r (written by "
                           "a newer simml?)", self.run_id, kind)
            return
        if not self.may_write(run):
            self.problem(f"{kind} event for run {run!r}, which this job may not write to")
            return
        handler(self, event, run)

    def metric(self, event: dict[str, Any], run: str) -> None:
        name, kind, at = event["name"], event["kind"], _time(event)
        if not isinstance(name, str) or not name:
            raise ValueError(f"bad metric name {name!r}")
        if kind == _metrics.SCALAR:
            step = event.get("step")
            if step is not None and type(step) is not int:
                raise ValueError(f"bad step {step!r}")
            value = _metrics.normalize_scalar(name, event["value"])
            new = [(name, *_metrics.encode(kind, value), step, at)]
        elif kind == _metrics.LIST:
            new = [(name, *_metrics.encode(kind, _metrics.normalize_scalar(name, item)), None, at)
                   for item in event["value"]]
        elif kind == _metrics.ROW:
            row = _metrics.validate_row(name, event["value"])
            new = [(name, *_metrics.encode_json(kind, row), None, at)]
        elif kind == _metrics.TABLE:
            table = _metrics.validate_table(name, event["value"])
            new = [(name, *_metrics.encode_json(kind, table), None, at)]
        elif kind == _metrics.IMAGE:
            file_name = self.image_name(run, name)
            self.upload(run, file_name, event["path"])
            new = [(name, kind, f"aml://artifactId/ExperimentRun/dcid.{run}/{file_name}", None,
                    at)]
        else:
            self.result.skipped += 1
            logger.warning("journal of run %s: skipped a metric of unknown kind %r",
                           self.run_id, kind)
            return
        self.rows.setdefault(run, []).extend(new)

    def tags(self, event: dict[str, Any], run: str) -> None:
        self.store.set_tags(run, {str(k): str(v) for k, v in dict(event["tags"]).items()})

    def tags_removed(self, event: dict[str, Any], run: str) -> None:
        self.store.remove_tags(run, [str(k) for k in event["keys"]])

    def properties(self, event: dict[str, Any], run: str) -> None:
        self.store.add_properties(run, {str(k): str(v)
                                        for k, v in dict(event["properties"]).items()})

    def file(self, event: dict[str, Any], run: str) -> None:
        self.upload(run, event["name"], event["path"])

    def outcome(self, event: dict[str, Any], run: str) -> None:
        self.result.outcomes[run] = event
        if run != self.run_id:
            self.statuses.append(event)

    def child(self, event: dict[str, Any], child: str) -> None:
        parent = event.get("parent", self.run_id)
        if not isinstance(parent, str) or not self.may_write(parent):
            self.problem(f"child run {child!r} of {parent!r}, which this job may not write to")
            return
        parent_info = self.store.get_run(parent)
        name = event.get("name")
        at = datetime.fromtimestamp(_time(event), timezone.utc)
        try:
            existing = self.store.get_run(child)
        except AzureMLException:
            existing = None
        if existing is not None:
            if existing.parent_id != parent:
                self.problem(f"child run id {child!r} is already used by another run")
            return
        self.store.create_run(RunCreate(
            run_id=child, experiment_name=parent_info.experiment_name,
            run_type=parent_info.run_type, status=RunStatus.Running.value, parent_id=parent,
            display_name=name if isinstance(name, str) else None, target=parent_info.target,
            created_time=at, submitted_by=parent_info.submitted_by))
        self.allowed[child] = True
        self.result.children.append(child)

    # --- end of the call -----------------------------------------------------------------------
    def finish(self) -> None:
        for run, rows in self.rows.items():
            if rows:
                self.store.log_metrics(MetricBatch(run, tuple(rows)))
                self.result.metrics += len(rows)
        for event in self.statuses:
            self.set_child_status(event)

    def set_child_status(self, event: dict[str, Any]) -> None:
        run = event["run"]
        at = datetime.fromtimestamp(_time(event), timezone.utc)
        if event["e"] == "complete":
            change: Any = Completed()
            error = None
        else:
            message = event.get("details")
            error = {"code": event.get("code") or "UserError",
                     "message": "" if message is None else str(message)}
            change = Failed(error)
        try:
            info = self.store.get_run(run)
            machine = RunStateMachine(run, RunStatus(info.status))
            for transition in machine.handle(change, at):
                self.store.set_run_status(run, transition.new.value, transition.at,
                                          {"error": error} if error else None)
        except (InvalidTransition, AzureMLException) as exc:
            self.problem(f"{event['e']} of run {run}: {exc.message}")


_HANDLERS = {
    "metric": _Ingestion.metric,
    "tags": _Ingestion.tags,
    "tags_removed": _Ingestion.tags_removed,
    "properties": _Ingestion.properties,
    "file": _Ingestion.file,
    "complete": _Ingestion.outcome,
    "fail": _Ingestion.outcome,
}


def ingest(events: Iterable[dict[str, Any]], store: Any, run_id: str, *,
           files_root: str | os.PathLike[str]) -> IngestResult:
    """Apply journal events of the job running as ``run_id`` to ``store``.

    ``files_root`` is the journal's folder (its ``files/`` holds the job's copies of uploaded
    files and images). Metrics are written as one ``MetricBatch`` per run, after child runs are
    created and files uploaded; child runs' ``complete``/``fail`` statuses are set last. An event
    that cannot be applied (a bad field, a property changed, a missing side file) is logged and
    listed in ``IngestResult.errors``; unknown event types are skipped with a warning. Events for
    runs other than the job's run, its parent and the children it created are refused.
    """
    result = IngestResult(run_id)
    if not events:
        return result
    work = _Ingestion(store, run_id, Path(files_root), result)
    allowed, rows = work.allowed, work.rows
    count = 0
    for event in events:
        count += 1
        try:
            # fast path: a finite int/float/str scalar of a run already allowed in this call
            if event.get("kind") == "scalar" and event.get("e") == "metric":
                run = event.get("run", run_id)
                value, step, at, name = (event.get("value"), event.get("step"),
                                         event.get("time"), event.get("name"))
                kind = type(value)
                if (allowed.get(run) is True and type(name) is str and name
                        and (kind is int or kind is str or kind is float and value - value == 0.0)
                        and (step is None or type(step) is int) and type(at) is float):
                    run_rows = rows.get(run)
                    if run_rows is None:
                        run_rows = rows[run] = []
                    run_rows.append((name, "scalar", value, step, at))
                    continue
            work.apply(event)
        except _EVENT_ERRORS as exc:
            work.problem(f"could not apply {_describe(event)}: {_message(exc)}")
    result.events = count
    work.finish()
    return result


def _time(event: dict[str, Any]) -> float:
    at = event.get("time")
    return float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else time.time()


def _describe(event: dict[str, Any]) -> str:
    text = json.dumps(event, default=repr)
    return text if len(text) <= 200 else text[:197] + "..."


def _message(exc: BaseException) -> str:
    return getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
