"""The ``simml`` command line: look at (and move files in and out of) a simml workspace.

``simml [--workspace NAME] [--json] GROUP COMMAND ...``; see ``docs/cli.md`` for every command, an
example each, and the exit codes. Only ``click`` and the standard library are imported at start-up;
simml itself and ``rich`` load inside the commands that need them, so ``simml --help`` stays fast.

Exit codes: 0 success, 1 any other error (simml's typed errors, e.g. no Docker engine, print their
message; anything else is reported as unexpected), 2 usage error (click), 3 not found, 4 invalid input.
Errors print one ``error: ...`` line to stderr (and, with ``--json``, one JSON document with an
``error`` object to stdout); ``SIMML_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import json
import os
import posixpath
import sys
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

import click

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INVALID = 4

LOG_PREFIXES = ("logs/", "azureml-logs/", "user_logs/")
RUN_STATUSES = ("NotStarted", "Starting", "Preparing", "Queued", "Running", "Finalizing",
                "CancelRequested", "Completed", "Failed", "Canceled", "NotResponding")
KEY_METRICS = 4  # numeric metrics shown per run by ``run list``


# --- state and workspace resolution ------------------------------------------------------------

class State:
    """What the group options decided, and the workspace (opened once, on first use)."""

    def __init__(self, workspace_name: str | None, as_json: bool) -> None:
        self.workspace_name = workspace_name
        self.as_json = as_json
        self._workspace: Any = None

    def workspace(self, name: str | None = None) -> Any:
        if self._workspace is None or name is not None:
            self._workspace = open_workspace(name or self.workspace_name)
        return self._workspace


def _config_from_cwd(strict: bool) -> dict[str, Any] | None:
    from simml.exceptions import ConfigurationException
    from simml.settings import find_config_file, read_config
    config_file = find_config_file(".")
    if config_file is None:
        return None
    try:
        return read_config(config_file)
    except ConfigurationException:
        if strict:
            raise
        return None


def open_workspace(name: str | None) -> Any:
    """``name`` (must exist), else the workspace of the config.json found from the current
    directory, else ``default``. The last two are created on first use on the local backend, as
    ``Workspace.from_config()`` and offline runs do."""
    from simml.core.workspace import Workspace
    from simml.entities import DEFAULT_WORKSPACE, LOCAL_RESOURCE_GROUP, LOCAL_SUBSCRIPTION
    if name:
        config = _config_from_cwd(strict=False)
        if config is not None and config["workspace_name"] == name:
            return Workspace._open(config, create_if_local=True)
        return Workspace.get(name)
    config = _config_from_cwd(strict=True)
    if config is None:
        config = {"workspace_name": DEFAULT_WORKSPACE, "subscription_id": LOCAL_SUBSCRIPTION,
                  "resource_group": LOCAL_RESOURCE_GROUP}
    # not Workspace.from_config(): it prints "Found the config file in: ..." to stdout
    return Workspace._open(config, create_if_local=True)


def _state() -> State:
    return click.get_current_context().find_object(State)  # type: ignore[return-value]


# --- errors ------------------------------------------------------------------------------------

def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an exception raised by a command."""
    from simml import exceptions as ex
    if isinstance(exc, (ex.NotFoundException, ex.ModelNotFoundException, ex.WorkspaceException,
                        ex.ModelPathNotFoundException, FileNotFoundError)):
        return EXIT_NOT_FOUND
    if isinstance(exc, (ex.UserErrorException, ex.InvalidValueException, ex.UnsafePathException,
                        ex.ConfigurationException, ex.WebserviceException, FileExistsError)):
        return EXIT_INVALID
    return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not message:
        message = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        message = f"{exc.strerror}: {exc.filename}"
    return " ".join(message.split())


class SimmlGroup(click.Group):
    """The root group: turns exceptions from commands into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the CLI's one error boundary
            code = exit_code_for(exc)
            if os.environ.get("SIMML_DEBUG") == "1":
                import traceback
                traceback.print_exc(file=sys.stderr)
            line = _one_line(exc)
            from simml.exceptions import AzureMLException
            if code == EXIT_ERROR and not isinstance(exc, AzureMLException):
                line = (f"unexpected {type(exc).__name__}: {line} "
                        "(set SIMML_DEBUG=1 for the traceback)")
            state = ctx.find_object(State)
            if state is not None and state.as_json:
                click.echo(_dumps({"error": {"type": type(exc).__name__, "message": line,
                                             "exit_code": code}}))
            click.echo(f"error: {line}", err=True)
            ctx.exit(code)


# --- output helpers ----------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses
        return dataclasses.asdict(value)
    return str(value)


def _dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, default=_json_default, ensure_ascii=False)


def emit_json(doc: Any) -> None:
    click.echo(_dumps(doc))


def _is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _duration_seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    if end is None:
        end = datetime.now(start.tzinfo or timezone.utc)
    return max(0.0, (end - start).total_seconds())


def _duration(seconds: float | None, running: bool = False) -> str:
    if seconds is None:
        return "-"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        text = f"{hours}h {minutes:02d}m {secs:02d}s"
    elif minutes:
        text = f"{minutes}m {secs:02d}s"
    elif seconds < 10:
        text = f"{seconds:.1f}s"
    else:
        text = f"{secs}s"
    return text + (" (running)" if running else "")


def _short(value: Any, width: int = 60) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, (int, str)):
        text = str(value)
    elif isinstance(value, list):
        shown = ", ".join(_short(v, 20) for v in value[:8])
        text = f"[{shown}{', ...' if len(value) > 8 else ''}] ({len(value)} values)"
    elif isinstance(value, dict):
        columns = list(value)
        lengths = {len(v) for v in value.values() if isinstance(v, list)}
        rows = f", {max(lengths)} rows" if lengths else ""
        text = f"table: {', '.join(map(str, columns))}{rows}"
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def emit_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> None:
    """A table: rich on a terminal, plain aligned columns otherwise (pipes, tests)."""
    rows = [["-" if c is None else str(c) for c in row] for row in rows]
    if not rows:
        click.echo(empty)
        return
    if _is_tty():
        from rich.console import Console
        from rich.table import Table
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in [list(headers), *rows]:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())


def emit_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """``Label:  value`` lines, labels aligned; multi-line values are indented."""
    width = max(len(label) for label, _ in fields) + 2
    for label, value in fields:
        text = "-" if value is None or value == "" else str(value)
        lines = text.splitlines() or [""]
        click.echo(f"{(label + ':').ljust(width)}{lines[0]}")
        for line in lines[1:]:
            click.echo(" " * width + line)


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in mapping.items()) if mapping else "-"


# --- input validation --------------------------------------------------------------------------

def safe_prefix(value: str | None, what: str) -> str | None:
    """A relative POSIX path prefix, or ``UnsafePathException`` (exit 4) for ``..``, absolute
    paths, drive letters and NUL; nothing is read or written before this check."""
    from simml.exceptions import UnsafePathException
    if value is None or value == "":
        return None
    text = value.replace("\\", "/")
    if "\x00" in text:
        raise UnsafePathException(f"{what} {value!r} contains a NUL character.")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise UnsafePathException(f"{what} {value!r} is absolute; it must be relative.")
    if ".." in text.split("/"):
        raise UnsafePathException(f"{what} {value!r} escapes its root with '..'.")
    return text


def _inside(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _parse_tags(ctx: click.Context, param: click.Parameter, values: Sequence[str]
                ) -> dict[str, str]:
    tags: dict[str, str] = {}
    for value in values:
        key, sep, tag_value = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE.", ctx=ctx, param=param)
        tags[key] = tag_value
    return tags


def _parse_model_ref(ctx: click.Context, param: click.Parameter, value: str
                     ) -> tuple[str, int | None]:
    name, sep, version = value.partition(":")
    if not name:
        raise click.BadParameter(f"{value!r} has no model name (NAME or NAME:VERSION).",
                                 ctx=ctx, param=param)
    if not sep:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise click.BadParameter(f"version {version!r} is not a positive integer "
                                 "(NAME or NAME:VERSION).", ctx=ctx, param=param)
    return name, int(version)


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        state = ctx.find_object(State)
        if state is not None:
            state.as_json = True


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` after the command name too (``simml run list --json``)."""
    return click.option("--json", "as_json", is_flag=True, expose_value=False,
                        callback=_set_json, help="Print one JSON document.")(func)


# --- the root group ----------------------------------------------------------------------------

@click.group(cls=SimmlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--workspace", "-w", "workspace_name", metavar="NAME",
              help="Workspace to use (default: the config.json found from the current "
                   "directory, else 'default').")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output: every command prints one JSON document.")
@click.version_option(package_name="simml", prog_name="simml", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, workspace_name: str | None, as_json: bool) -> None:
    """simml: inspect local simml workspaces (runs, metrics, logs, models, datastores).

    Exit codes: 0 ok, 1 other error, 2 usage error, 3 not found, 4 invalid input.
    """
    ctx.obj = State(workspace_name, as_json)


# --- workspace ---------------------------------------------------------------------------------

@cli.group()
def workspace() -> None:
    """Create, show and list workspaces."""


def _workspace_doc(ws: Any) -> dict[str, Any]:
    info = ws._info
    return {"name": ws.name, "subscription_id": ws.subscription_id,
            "resource_group": ws.resource_group, "workspace_id": info.workspace_id,
            "backend": ws.backend, "location": ws.location, "created": info.created_time,
            "root": info.properties.get("root")}


@workspace.command("init")
@click.option("--name", help="Workspace name (default: --workspace, else 'default').")
@click.option("--subscription-id", help="Subscription id (default: the local one).")
@click.option("--resource-group", help="Resource group (default: simml).")
@click.option("--path", "path", default=".", show_default=True,
              type=click.Path(file_okay=False, dir_okay=True),
              help="Folder to write .azureml/config.json into.")
@json_option
def workspace_init(name: str | None, subscription_id: str | None, resource_group: str | None,
                   path: str) -> None:
    """Create the workspace (if needed) and write DIR/.azureml/config.json.

    Example: simml workspace init --name my-ws --path .
    """
    from simml.core.workspace import Workspace
    from simml.entities import DEFAULT_WORKSPACE
    state = _state()
    name = name or state.workspace_name or DEFAULT_WORKSPACE
    ws = Workspace.create(name, subscription_id=subscription_id, resource_group=resource_group,
                          exist_ok=True, show_output=False)
    config_file = ws.write_config(path)
    if state.as_json:
        emit_json({**_workspace_doc(ws), "config_file": os.path.abspath(config_file)})
        return
    click.echo(f"Workspace {ws.name!r} is ready ({ws.backend} backend).")
    click.echo(f"Wrote {config_file}")


def _counts(ws: Any) -> dict[str, int | None]:
    from simml.entities import RunQuery
    from simml.exceptions import BackendCapabilityException
    store = ws._history()
    counts: dict[str, int | None] = {
        "experiments": len(store.list_experiments(include_archived=True)),
        "runs": len(store.query_runs(RunQuery(include_children=True))),
    }
    try:
        models = ws.models
        counts["models"] = len(models)
        counts["model_versions"] = sum(len(v) for v in models.values())
    except (ImportError, BackendCapabilityException):
        counts["models"] = counts["model_versions"] = None
    try:
        counts["datastores"] = len(ws.datastores)
    except (ImportError, BackendCapabilityException):
        counts["datastores"] = None
    return counts


@workspace.command("show")
@click.option("--name", help="Workspace name (default: --workspace, else config.json, else "
                             "'default').")
@json_option
def workspace_show(name: str | None) -> None:
    """Details and contents of the workspace.

    Example: simml workspace show
    """
    ws = _state().workspace(name)
    doc = {**_workspace_doc(ws), "counts": _counts(ws)}
    if _state().as_json:
        emit_json(doc)
        return
    counts = doc["counts"]
    na = "n/a (not available on this backend yet)"
    models = (na if counts["models"] is None else
              f"{counts['models']} ({counts['model_versions']} versions)")
    emit_fields([
        ("Name", doc["name"]), ("Subscription", doc["subscription_id"]),
        ("Resource group", doc["resource_group"]), ("Workspace id", doc["workspace_id"]),
        ("Backend", doc["backend"]), ("Location", doc["location"]),
        ("Created", _when(doc["created"])), ("Root", doc["root"]),
        ("Experiments", counts["experiments"]), ("Runs", counts["runs"]),
        ("Models", models),
        ("Datastores", na if counts["datastores"] is None else counts["datastores"]),
    ])


@workspace.command("list")
@json_option
def workspace_list() -> None:
    """Every workspace of the backend.

    Example: simml workspace list
    """
    from simml.core.workspace import Workspace
    found = [w for group in Workspace.list().values() for w in group]
    found.sort(key=lambda w: (w.name, w.subscription_id, w.resource_group))
    if _state().as_json:
        emit_json([_workspace_doc(w) for w in found])
        return
    emit_table(["NAME", "SUBSCRIPTION", "RESOURCE GROUP", "BACKEND", "LOCATION", "CREATED"],
               [[w.name, w.subscription_id, w.resource_group, w.backend, w.location,
                 _when(w._info.created_time)] for w in found],
               "No workspaces. Create one with `simml workspace init`.")


# --- experiment --------------------------------------------------------------------------------

@cli.group()
def experiment() -> None:
    """List experiments."""


@experiment.command("list")
@click.option("--all", "include_archived", is_flag=True, help="Include archived experiments.")
@json_option
def experiment_list(include_archived: bool) -> None:
    """Experiments of the workspace, oldest first, with their run counts.

    Example: simml experiment list
    """
    from simml.entities import RunQuery
    store = _state().workspace()._history()
    docs = []
    for info in store.list_experiments(include_archived=include_archived):
        runs = store.query_runs(RunQuery(experiment_name=info.name, include_children=True))
        docs.append({"name": info.name, "id": info.id, "created": info.created_time,
                     "archived": info.archived_time, "runs": len(runs),
                     "last_run": runs[0].created_time if runs else None,
                     "tags": dict(info.tags)})
    if _state().as_json:
        emit_json(docs)
        return
    emit_table(["NAME", "RUNS", "CREATED", "LAST RUN", "ARCHIVED"],
               [[d["name"], d["runs"], _when(d["created"]), _when(d["last_run"]),
                 _when(d["archived"]) if d["archived"] else ""] for d in docs],
               "No experiments.")


# --- run ---------------------------------------------------------------------------------------

@cli.group()
def run() -> None:
    """List and inspect runs; read their metrics and logs; download their files."""


def _key_metrics(folded: dict[str, Any]) -> dict[str, float | int]:
    """Numeric metrics, one value each (the last one logged)."""
    result: dict[str, float | int] = {}
    for name, value in folded.items():
        if isinstance(value, list) and value:
            value = value[-1]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            result[name] = value
    return result


def _run_doc(info: Any) -> dict[str, Any]:
    from simml.runstate import TERMINAL
    terminal = {getattr(s, "value", s) for s in TERMINAL}
    running = info.status not in terminal
    return {"id": info.id, "experiment": info.experiment_name, "number": info.number,
            "display_name": info.display_name, "type": info.run_type, "status": info.status,
            "created": info.created_time, "started": info.start_time, "ended": info.end_time,
            "duration_seconds": _duration_seconds(info.start_time,
                                                  None if running else info.end_time),
            "running": running and info.start_time is not None,
            "parent_id": info.parent_id, "tags": dict(info.tags)}


@run.command("list")
@click.option("--experiment", "-e", "experiment_name", metavar="NAME",
              help="Only runs of this experiment.")
@click.option("--status", "-s", type=click.Choice(RUN_STATUSES, case_sensitive=False),
              help="Only runs in this status.")
@click.option("--tag", "tags", multiple=True, callback=_parse_tags, metavar="KEY=VALUE",
              help="Only runs with this tag (repeatable; all must match).")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=None,
              help="Show at most N runs.")
@click.option("--include-children", is_flag=True, help="Also list child runs.")
@json_option
def run_list(experiment_name: str | None, status: str | None, tags: dict[str, str],
             limit: int | None, include_children: bool) -> None:
    """Runs, newest first, with their key metrics.

    Example: simml run list --experiment train --status Completed --tag team=ml --limit 5
    """
    from simml.core import _metrics
    from simml.entities import RunQuery
    store = _state().workspace()._history()
    if experiment_name is not None:
        store.get_experiment(experiment_name)  # NotFoundException (exit 3) for a typo
    query = RunQuery(experiment_name=experiment_name, status=status, tags=tags or None,
                     include_children=include_children, limit=limit)
    infos = store.query_runs(query)
    if limit is not None:
        infos = infos[:limit]
    docs = []
    for info in infos:
        doc = _run_doc(info)
        doc["metrics"] = _key_metrics(_metrics.fold(store.get_metrics(info.id)))
        docs.append(doc)
    if _state().as_json:
        emit_json(docs)
        return

    def metrics_text(metrics: dict[str, Any]) -> str:
        shown = [f"{k}={_short(v)}" for k, v in list(metrics.items())[:KEY_METRICS]]
        more = len(metrics) - KEY_METRICS
        return ", ".join(shown) + (f", +{more} more" if more > 0 else "")

    emit_table(["RUN ID", "EXPERIMENT", "STATUS", "CREATED", "DURATION", "METRICS"],
               [[d["id"], d["experiment"], d["status"], _when(d["created"]),
                 _duration(d["duration_seconds"], d["running"]), metrics_text(d["metrics"])]
                for d in docs],
               "No runs found.")


def _get_run(run_id: str) -> Any:
    return _state().workspace().get_run(run_id)


@run.command("show")
@click.argument("run_id")
@json_option
def run_show(run_id: str) -> None:
    """Details of a run: status history, tags, properties, files, error.

    Example: simml run show 5d0c7c1e-...
    """
    r = _get_run(run_id)
    info = r._refresh()
    files = r.get_file_names()
    doc = {**_run_doc(info), "target": info.target, "submitted_by": info.submitted_by,
           "properties": dict(info.properties),
           "status_history": [{"status": c.status, "time": c.time} for c in info.status_history],
           "error": info.error, "files": files,
           "log_files": [f for f in files if f.startswith(LOG_PREFIXES)]}
    if _state().as_json:
        emit_json(doc)
        return
    fields: list[tuple[str, Any]] = [
        ("Run", doc["id"]),
        ("Display name", doc["display_name"] if doc["display_name"] != doc["id"] else None),
        ("Experiment", f"{doc['experiment']} (run #{doc['number']})"), ("Type", doc["type"]),
        ("Status", doc["status"]), ("Target", doc["target"]),
        ("Submitted by", doc["submitted_by"]), ("Created", _when(doc["created"])),
        ("Started", _when(doc["started"])), ("Ended", _when(doc["ended"])),
        ("Duration", _duration(doc["duration_seconds"], doc["running"])),
        ("Parent", doc["parent_id"]), ("Tags", _pairs(doc["tags"])),
        ("Properties", _pairs(doc["properties"])),
        ("Status history", "\n".join(f"{_when(c['time'])}  {c['status']}"
                                     for c in doc["status_history"])),
        ("Files", f"{len(files)} ({len(doc['log_files'])} log files)"),
    ]
    if info.error:
        error = info.error.get("error", info.error) if isinstance(info.error, dict) else {}
        if isinstance(error, dict) and ("code" in error or "message" in error):
            text = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
        else:
            text = json.dumps(info.error, default=str)
        fields.append(("Error", text))
    emit_fields(fields)


@run.command("metrics")
@click.argument("run_id")
@click.option("--name", help="Only this metric.")
@json_option
def run_metrics(run_id: str, name: str | None) -> None:
    """The run's metrics as Run.get_metrics() folds them.

    Example: simml run metrics 5d0c7c1e-...
    """
    metrics = _get_run(run_id).get_metrics(name)
    if _state().as_json:
        emit_json(metrics)
        return
    emit_table(["NAME", "VALUE"], [[k, _short(v, 100)] for k, v in metrics.items()],
               f"Run {run_id} has no metrics" + (f" named {name!r}." if name else "."))


@run.command("logs")
@click.argument("run_id")
@json_option
def run_logs(run_id: str) -> None:
    """Print the run's log files (under logs/, azureml-logs/, user_logs/), in name order.

    Example: simml run logs 5d0c7c1e-...
    """
    r = _get_run(run_id)
    names = [n for n in r.get_file_names() if n.startswith(LOG_PREFIXES)]
    contents = []
    for name in names:
        with r._store.open_file(r.id, name) as stream:
            contents.append((name, stream.read().decode("utf-8", errors="replace")))
    if _state().as_json:
        emit_json({"run_id": r.id, "logs": [{"name": n, "content": c} for n, c in contents]})
        return
    if not contents:
        click.echo(f"Run {r.id} has no log files (nothing under "
                   f"{', '.join(LOG_PREFIXES)}).")
        return
    for index, (name, content) in enumerate(contents):
        if index:
            click.echo()
        click.echo(f"==> {name} <==")
        click.echo(content, nl=not content.endswith("\n"))


@run.command("download")
@click.argument("run_id")
@click.option("--prefix", help="Only files whose name starts with this (e.g. outputs/).")
@click.option("--output", "-o", "output", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Folder to download into.")
@json_option
def run_download(run_id: str, prefix: str | None, output: str) -> None:
    """Download the run's files (keeping their paths) into a folder.

    Example: simml run download 5d0c7c1e-... --prefix outputs/ --output ./artifacts
    """
    from simml.exceptions import NotFoundException, UnsafePathException
    prefix = safe_prefix(prefix, "prefix")
    r = _get_run(run_id)
    names = [n for n in r.get_file_names() if not prefix or n.startswith(prefix)]
    if prefix and not names:
        raise NotFoundException(f"Run {r.id} has no files starting with {prefix!r}.")
    for name in names:
        if not _inside(os.path.join(output, name), output):
            raise UnsafePathException(f"Run file {name!r} would be written outside {output}.")
    r.download_files(prefix=prefix, output_directory=output)
    if _state().as_json:
        emit_json({"run_id": r.id, "prefix": prefix, "output": os.path.abspath(output),
                   "files": names})
        return
    for name in names:
        click.echo(os.path.join(output, name))
    click.echo(f"Downloaded {len(names)} file{'s' if len(names) != 1 else ''} of run {r.id} "
               f"to {output}")


# --- sweep -------------------------------------------------------------------------------------

@cli.group()
def sweep() -> None:
    """Look at HyperDrive sweeps: trials, parameters, early stops, the best run."""


def _sweep_run(run_id: str) -> Any:
    from simml.train.hyperdrive.run import HyperDriveRun
    ws = _state().workspace()
    return HyperDriveRun(ws.get_run(run_id).experiment, run_id)


@sweep.command("show")
@click.argument("run_id")
@json_option
def sweep_show(run_id: str) -> None:
    """A sweep's trials (parameters, status, best primary metric) and its best run.

    Example: simml sweep show HD_0b6c...
    """
    from simml.train.hyperdrive.exceptions import PrimaryMetricNotFoundException
    hd = _sweep_run(run_id)
    info = hd._refresh()
    settings = hd._sweep()
    trials = hd.trials()
    try:
        best = hd.get_best_run_by_primary_metric()
        best_id, best_problem = (best.id if best is not None else None), None
    except PrimaryMetricNotFoundException as exc:
        best_id, best_problem = None, exc.message
    best_trial = next((t for t in trials if t.run_id == best_id), None)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    doc = {"id": info.id, "experiment": info.experiment_name, "status": info.status,
           "target": info.target, "primary_metric": settings.get("primaryMetricName"),
           "goal": settings.get("primaryMetricGoal"),
           "sampling": (settings.get("generator") or {}).get("name"),
           "seed": ((settings.get("generator") or {}).get("properties") or {}).get("rngSeed"),
           "policy": (settings.get("policy") or {}),
           "max_total_runs": settings.get("maxTotalRuns"),
           "max_concurrent_runs": settings.get("maxConcurrentRuns"),
           "counts": counts, "error": info.error,
           "best_run_id": best_id,
           "best_primary_metric": best_trial.best_primary_metric if best_trial else None,
           "best_problem": best_problem,
           "trials": [{"number": t.number, "run_id": t.run_id, "status": t.status,
                       "hyperparameters": t.hyperparameters,
                       "best_primary_metric": t.best_primary_metric, "intervals": t.intervals,
                       "error": t.error} for t in trials]}
    if _state().as_json:
        emit_json(doc)
        return
    policy = doc["policy"]
    policy_text = policy.get("name", "Default") + (
        f" {_pairs(policy['properties'])}" if policy.get("properties") else "")
    fields: list[tuple[str, Any]] = [
        ("Sweep", doc["id"]), ("Experiment", doc["experiment"]), ("Status", doc["status"]),
        ("Target", doc["target"]),
        ("Primary metric", f"{doc['primary_metric']} ({doc['goal']})"),
        ("Sampling", doc["sampling"] + (f", seed {doc['seed']}" if doc["seed"] is not None
                                        else "")),
        ("Policy", policy_text),
        ("Trials", f"{len(trials)} of {doc['max_total_runs']} (at most "
                   f"{doc['max_concurrent_runs']} at a time): "
                   + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none yet")),
        ("Best run", f"{best_id} ({doc['primary_metric']} = {_short(doc['best_primary_metric'])})"
         if best_id else best_problem),
    ]
    if info.error:
        error = info.error.get("error", info.error) if isinstance(info.error, dict) else {}
        fields.append(("Error", f"{error.get('code', '')}: {error.get('message', '')}"))
    emit_fields(fields)
    click.echo("")
    emit_table(["TRIAL", "RUN ID", "STATUS", "PARAMETERS", doc["primary_metric"] or "METRIC",
                "INTERVALS", "NOTE"],
               [[t["number"], t["run_id"], t["status"],
                 " ".join(f"{k}={_short(v, 24)}" for k, v in t["hyperparameters"].items()),
                 _short(t["best_primary_metric"]), t["intervals"],
                 ("best" if t["run_id"] == best_id else "")
                 + (_short(t["error"], 70) if t["error"] else "")]
                for t in doc["trials"]],
               "No trials yet.")


@sweep.command("what-if")
@click.argument("run_id")
@click.option("--policy", "policy_name", required=True,
              type=click.Choice(["bandit", "median", "truncation", "none"], case_sensitive=False),
              help="The policy to replay the sweep under.")
@click.option("--slack-factor", type=float, help="BanditPolicy slack_factor.")
@click.option("--slack-amount", type=float, help="BanditPolicy slack_amount.")
@click.option("--truncation-percentage", type=int, help="TruncationSelectionPolicy percentage.")
@click.option("--evaluation-interval", type=int, default=1, show_default=True)
@click.option("--delay-evaluation", type=int, default=0, show_default=True)
@json_option
def sweep_what_if(run_id: str, policy_name: str, slack_factor: float | None,
                  slack_amount: float | None, truncation_percentage: int | None,
                  evaluation_interval: int, delay_evaluation: int) -> None:
    """Replay a finished sweep's metric histories under another policy (nothing is re-run).

    Example: simml sweep what-if HD_0b6c... --policy bandit --slack-factor 0.1
    """
    from simml.train.hyperdrive import policy as p
    name = policy_name.lower()
    if name == "bandit":
        chosen: Any = p.BanditPolicy(evaluation_interval, slack_factor, slack_amount,
                                     delay_evaluation)
    elif name == "median":
        chosen = p.MedianStoppingPolicy(evaluation_interval, delay_evaluation)
    elif name == "truncation":
        if truncation_percentage is None:
            raise click.UsageError("--policy truncation needs --truncation-percentage.")
        chosen = p.TruncationSelectionPolicy(truncation_percentage, evaluation_interval,
                                             delay_evaluation)
    else:
        chosen = p.NoTerminationPolicy()
    report = _sweep_run(run_id).what_if(chosen)
    if _state().as_json:
        emit_json({"policy": report.policy, "trials": [t.__dict__ for t in report.trials],
                   "stopped": [t.number for t in report.stopped],
                   "saved_intervals": report.saved_intervals,
                   "total_intervals": report.total_intervals,
                   "saved_seconds": report.saved_seconds, "truncated": list(report.truncated),
                   "best_trial_before": report.best_trial_before,
                   "best_trial_after": report.best_trial_after})
        return
    click.echo(report.summary())


# --- model -------------------------------------------------------------------------------------

@cli.group()
def model() -> None:
    """List, show and download registered models."""


def _model_doc(m: Any) -> dict[str, Any]:
    info = getattr(m, "_info", None)
    files = list(getattr(info, "files", ()) or ())

    def attr(name: str, default: Any = None) -> Any:
        value = getattr(m, name, None)
        if value is None and info is not None:
            value = getattr(info, name, None)
        return default if value is None else value

    return {"name": attr("name"), "version": attr("version"), "id": f"{attr('name')}:"
            f"{attr('version')}", "created": attr("created_time"),
            "description": attr("description"), "tags": dict(attr("tags", {})),
            "properties": dict(attr("properties", {})), "framework": attr("model_framework"),
            "framework_version": attr("model_framework_version"), "run_id": attr("run_id"),
            "experiment": attr("experiment_name"), "files": files}


def _get_model(ref: tuple[str, int | None]) -> Any:
    from simml.core.model import Model
    name, version = ref
    return Model(_state().workspace(), name, version=version)


@model.command("list")
@click.option("--name", help="Only versions of this model.")
@click.option("--tag", "tags", multiple=True, callback=_parse_tags, metavar="KEY=VALUE",
              help="Only versions with this tag (repeatable; all must match).")
@click.option("--latest", is_flag=True, help="Only the latest matching version of each model.")
@json_option
def model_list(name: str | None, tags: dict[str, str], latest: bool) -> None:
    """Registered model versions.

    Example: simml model list --name iris-model --latest
    """
    from simml.core.model import Model
    tag_filters = [f"{k}={v}" for k, v in tags.items()] or None
    docs = [_model_doc(m) for m in Model.list(_state().workspace(), name=name, tags=tag_filters,
                                               latest=latest)]
    docs.sort(key=lambda d: (d["name"] or "", -(d["version"] or 0)))
    if _state().as_json:
        emit_json(docs)
        return
    emit_table(["NAME", "VERSION", "CREATED", "RUN ID", "TAGS"],
               [[d["name"], d["version"], _when(d["created"]), d["run_id"], _pairs(d["tags"])]
                for d in docs],
               "No models registered" + (f" under the name {name!r}." if name else "."))


@model.command("show")
@click.argument("model_ref", metavar="NAME[:VERSION]", callback=_parse_model_ref)
@json_option
def model_show(model_ref: tuple[str, int | None]) -> None:
    """Details of a model version (the latest without :VERSION).

    Example: simml model show iris-model:2
    """
    doc = _model_doc(_get_model(model_ref))
    if _state().as_json:
        emit_json(doc)
        return
    emit_fields([
        ("Model", doc["id"]), ("Created", _when(doc["created"])),
        ("Description", doc["description"]), ("Framework", " ".join(
            str(x) for x in (doc["framework"], doc["framework_version"]) if x) or None),
        ("Run", doc["run_id"]), ("Experiment", doc["experiment"]),
        ("Tags", _pairs(doc["tags"])), ("Properties", _pairs(doc["properties"])),
        ("Files", "\n".join(doc["files"]) or None),
    ])


@model.command("download")
@click.argument("model_ref", metavar="NAME[:VERSION]", callback=_parse_model_ref)
@click.option("--output", "-o", "output", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Folder to download into.")
@click.option("--exist-ok", is_flag=True, help="Overwrite files that already exist.")
@json_option
def model_download(model_ref: tuple[str, int | None], output: str, exist_ok: bool) -> None:
    """Download a model version's files (the latest without :VERSION).

    Example: simml model download iris-model:1 --output ./model --exist-ok
    """
    m = _get_model(model_ref)
    path = m.download(target_dir=output, exist_ok=exist_ok)
    doc = _model_doc(m)
    if _state().as_json:
        emit_json({"model": doc["id"], "output": os.path.abspath(output),
                   "path": os.path.abspath(os.fspath(path)) if path is not None else None})
        return
    click.echo(f"Downloaded model {doc['id']} to {path if path is not None else output}")


# --- datastore ---------------------------------------------------------------------------------

@cli.group()
def datastore() -> None:
    """List datastores and move files in and out of them."""


def _get_datastore(name: str) -> Any:
    from simml.core.datastore import Datastore
    return Datastore.get(_state().workspace(), name)


@datastore.command("list")
@json_option
def datastore_list() -> None:
    """Datastores of the workspace.

    Example: simml datastore list
    """
    stores = sorted(_state().workspace().datastores.values(), key=lambda d: d.name)
    docs = [{"name": d.name, "type": d.datastore_type, "container": d.container_name or None,
             "account": d.account_name or None,
             "default": bool(getattr(getattr(d, "_info", None), "is_default", False))}
            for d in stores]
    if _state().as_json:
        emit_json(docs)
        return
    emit_table(["NAME", "TYPE", "CONTAINER", "ACCOUNT", "DEFAULT"],
               [[d["name"], d["type"], d["container"], d["account"],
                 "yes" if d["default"] else ""] for d in docs],
               "No datastores.")


@datastore.command("ls")
@click.argument("name")
@click.option("--prefix", help="Only files under this path.")
@json_option
def datastore_ls(name: str, prefix: str | None) -> None:
    """Files in a datastore, one per line.

    Example: simml datastore ls workspaceblobstore --prefix iris/
    """
    prefix = safe_prefix(prefix, "prefix")
    files = _get_datastore(name).list_files(prefix)
    if _state().as_json:
        emit_json({"datastore": name, "prefix": prefix, "files": list(files)})
        return
    if not files:
        click.echo(f"No files in datastore {name!r}" + (f" under {prefix!r}." if prefix else "."))
        return
    for file in files:
        click.echo(file)


def _local_files(src_dir: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(src_dir):
        dirs.sort()
        for file in sorted(files):
            found.append(os.path.relpath(os.path.join(root, file), src_dir).replace(os.sep, "/"))
    return found


@datastore.command("upload")
@click.argument("name")
@click.argument("src_dir", type=click.Path(file_okay=False))
@click.option("--target-path", help="Folder in the datastore (default: its root).")
@click.option("--overwrite", is_flag=True, help="Replace files that already exist.")
@json_option
def datastore_upload(name: str, src_dir: str, target_path: str | None, overwrite: bool) -> None:
    """Upload every file under SRC_DIR (keeping its paths) to the datastore.

    Example: simml datastore upload workspaceblobstore ./data --target-path iris/ --overwrite
    """
    from simml.exceptions import NotFoundException
    target_path = safe_prefix(target_path, "target path")
    if not os.path.isdir(src_dir):
        raise NotFoundException(f"{src_dir} is not a folder.")
    store = _get_datastore(name)
    targets = [posixpath.join(target_path, f) if target_path else f for f in _local_files(src_dir)]
    existing = set() if overwrite else set(store.list_files(target_path))
    state = _state()
    store.upload(src_dir, target_path=target_path, overwrite=overwrite,
                 show_progress=not state.as_json and _is_tty())
    uploaded = [t for t in targets if t not in existing]
    skipped = [t for t in targets if t in existing]
    if state.as_json:
        emit_json({"datastore": name, "source": os.path.abspath(src_dir),
                   "target_path": target_path, "uploaded": uploaded, "skipped": skipped})
        return
    where = f"{name}/{target_path}" if target_path else name
    text = f"Uploaded {len(uploaded)} file{'s' if len(uploaded) != 1 else ''} to {where}"
    if skipped:
        text += f" ({len(skipped)} already there, skipped; --overwrite replaces them)"
    click.echo(text)


@datastore.command("download")
@click.argument("name")
@click.argument("target_dir", type=click.Path(file_okay=False))
@click.option("--prefix", help="Only files under this path.")
@click.option("--overwrite", is_flag=True, help="Replace local files that already exist.")
@json_option
def datastore_download(name: str, target_dir: str, prefix: str | None, overwrite: bool) -> None:
    """Download the datastore's files (under PREFIX) into TARGET_DIR, keeping their paths.

    Example: simml datastore download workspaceblobstore ./data --prefix iris/
    """
    prefix = safe_prefix(prefix, "prefix")
    store = _get_datastore(name)
    state = _state()
    count = store.download(target_dir, prefix=prefix, overwrite=overwrite,
                           show_progress=not state.as_json and _is_tty())
    if state.as_json:
        emit_json({"datastore": name, "prefix": prefix, "target_dir": os.path.abspath(target_dir),
                   "downloaded": count})
        return
    click.echo(f"Downloaded {count} file{'s' if count != 1 else ''} from {name} to {target_dir}")


# --- runtimes: the workspace's runtime and Docker ------------------------------------------------

@workspace.command("runtime")
@click.argument("runtime", required=False, type=click.Choice(["process", "docker"]))
@json_option
def workspace_runtime(runtime: str | None) -> None:
    """Show, or set, the workspace's default runtime (process or docker).

    A run's explicit use_docker / environment.docker.enabled, then its compute target's runtime,
    come first. Setting docker does not check for an engine; a Docker run without one fails in
    Preparing, saying how to start one.

    Example: simml workspace runtime docker
    """
    ws = _state().workspace(None)
    if runtime is not None:
        ws.set_runtime(runtime)
    value = ws.runtime
    if _state().as_json:
        emit_json({"workspace": ws.name, "runtime": value})
        return
    click.echo(f"Workspace {ws.name!r} runtime: {value}")


@cli.group()
def docker() -> None:
    """The Docker runtime of the local backend (docs/docker.md)."""


@docker.command("build-base")
@click.option("--tag", default=None, metavar="NAME:TAG",
              help="Image name (default: simml-base:<simml version>, what runs use).")
@click.option("--method", type=click.Choice(["hostpkg", "debootstrap"]), default="hostpkg",
              show_default=True,
              help="hostpkg: copy the host's own Debian python3 packages (no download, ~30 s); "
                   "debootstrap: a minimal Debian from the apt mirror (~90 s).")
@json_option
def docker_build_base(tag: str | None, method: str) -> None:
    """Build simml's Docker base image without any container registry.

    A Debian root filesystem with Python 3 plus scikit-learn, numpy, scipy, joblib and
    threadpoolctl at this host's versions (models unpickle both ways), imported into the local
    Docker engine. Needs a running engine (root, or access to its socket).

    Example: simml docker build-base
    """
    from simml.plugins import load_backend
    from simml.settings import backend_name
    state = _state()
    backend = load_backend(backend_name())
    log = (lambda line: None) if state.as_json else (lambda line: click.echo(line, err=True))
    image_id = backend.docker_build_base(tag, method, log)
    if state.as_json:
        emit_json({"image_id": image_id, "tag": tag, "method": method})
        return
    click.echo(f"Built {image_id}")


# --- service -----------------------------------------------------------------------------------

@cli.group()
def service() -> None:
    """List deployed web services, read their logs, delete them."""


def _service_doc(svc: Any) -> dict[str, Any]:
    info = svc._info
    return {"name": svc.name, "compute_type": svc.compute_type, "state": svc.state,
            "scoring_uri": svc.scoring_uri, "swagger_uri": svc.swagger_uri, "port": info.port,
            "models": [f"{n}:{v}" for n, v in info.models], "auth_enabled": svc.auth_enabled,
            "server": info.server, "created": svc.created_time, "updated": svc.updated_time,
            "error": svc.error}


def _get_service(name: str) -> Any:
    from simml.core.webservice import Webservice
    return Webservice(_state().workspace(), name)


@service.command("list")
@click.option("--compute-type", type=click.Choice(["Local", "ACI"], case_sensitive=False),
              help="Only services of this type.")
@json_option
def service_list(compute_type: str | None) -> None:
    """Web services of the workspace, with their state (looked at now).

    Example: simml service list
    """
    from simml.core.webservice import Webservice
    docs = [_service_doc(s) for s in Webservice.list(_state().workspace(),
                                                      compute_type=compute_type)]
    if _state().as_json:
        emit_json(docs)
        return
    emit_table(["NAME", "TYPE", "STATE", "SCORING URI", "MODELS", "UPDATED"],
               [[d["name"], d["compute_type"], d["state"], d["scoring_uri"],
                 ", ".join(d["models"]), _when(d["updated"])] for d in docs],
               "No web services.")


@service.command("show")
@click.argument("name")
@json_option
def service_show(name: str) -> None:
    """Details of a web service.

    Example: simml service show iris-svc
    """
    doc = _service_doc(_get_service(name))
    if _state().as_json:
        emit_json(doc)
        return
    error = doc["error"] or {}
    emit_fields([
        ("Service", doc["name"]), ("Type", doc["compute_type"]), ("State", doc["state"]),
        ("Scoring URI", doc["scoring_uri"]), ("Swagger URI", doc["swagger_uri"]),
        ("Models", ", ".join(doc["models"]) or None), ("Auth", "keys" if doc["auth_enabled"]
                                                       else "none"),
        ("Server", doc["server"]), ("Created", _when(doc["created"])),
        ("Updated", _when(doc["updated"])),
        ("Error", error.get("message")),
    ])


@service.command("logs")
@click.argument("name")
@click.option("--lines", "-n", "num_lines", type=click.IntRange(min=0), default=5000,
              show_default=True, help="How many of the last lines.")
@json_option
def service_logs(name: str, num_lines: int) -> None:
    """The last lines of a web service's log (server output, init()/run() tracebacks).

    Example: simml service logs iris-svc -n 50
    """
    svc = _get_service(name)
    text = svc.get_logs(num_lines)
    if _state().as_json:
        emit_json({"name": svc.name, "state": svc.state, "logs": text})
        return
    click.echo(text, nl=False)


@service.command("delete")
@click.argument("name")
@json_option
def service_delete(name: str) -> None:
    """Stop a web service and remove it from the workspace.

    Example: simml service delete iris-svc
    """
    svc = _get_service(name)
    svc.delete()
    if _state().as_json:
        emit_json({"name": name, "deleted": True})
        return
    click.echo(f"Deleted service {name}")


# --- serve (the Azure ML emulator) --------------------------------------------------------------

@cli.command("serve")
@click.option("--port", "-p", type=click.IntRange(min=0, max=65535), default=8765,
              show_default=True, help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--workspace", "serve_workspace", metavar="NAME",
              help="Workspace to serve (same as the group's --workspace).")
@click.option("--request-log", metavar="FILE", help="Append every request (JSON lines) here.")
@click.option("--write-config", metavar="DIR",
              help="Write DIR/.azureml/config.json for the real azureml client.")
@click.option("--proxy-port", type=click.IntRange(min=0, max=65535), default=None,
              help="Port of the HTTPS CONNECT proxy (blob storage, ARM) [default: PORT+1, or any "
                   "free port when PORT is 0].")
@click.option("--no-proxy", is_flag=True, help="Serve without the HTTPS proxy.")
@click.option("--write-env", metavar="FILE",
              help="Write the client's export lines (HTTPS_PROXY, REQUESTS_CA_BUNDLE, MSI_*) to "
                   "FILE, to source before starting the client.")
def serve(port: int, host: str, serve_workspace: str | None, request_log: str | None,
          write_config: str | None, proxy_port: int | None, no_proxy: bool,
          write_env: str | None) -> None:
    """Serve the workspace over the Azure ML v1 REST protocol, for the unmodified azureml-core
    client (docs/emulator.md). The key is read from SIMML_EMULATOR_KEY, else made and printed.

    Example: simml serve --port 8765 --write-config .
    """
    from simml.emulator.server import serve as run_server
    ws = _state().workspace(serve_workspace)
    if no_proxy and write_env:
        raise click.UsageError("--write-env needs the proxy (drop --no-proxy).")
    if proxy_port is None and not no_proxy:
        proxy_port = port + 1 if 0 < port < 65535 else 0
    run_server(ws, host, port, request_log, write_config,
               echo=lambda line: click.echo(line, nl=True) or sys.stdout.flush(),
               proxy_port=None if no_proxy else proxy_port, write_env=write_env)


# --- entry point -------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> None:
    """The ``simml`` console script."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="simml")
    except BrokenPipeError:  # `simml run list | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
