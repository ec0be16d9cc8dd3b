"""Submitting a script run: validate, snapshot, create the run, hand it to the backend.

The order matters for "bad input changes nothing": everything that can be checked is checked
before the snapshot is taken, and the run record is created only once the snapshot exists.

The snapshot honours ignore files as Azure does: in each folder of the source directory,
``.amlignore`` if present, else ``.gitignore``, with gitignore semantics (``pathspec``); a deeper
file's patterns win over a shallower one's, and an ignored folder is not descended (so nothing
under it can be re-included, as in git). Azure's limits (300 MB, 2000 files) count only what is
left after ignoring.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from simml._paths import TMP_PREFIX, _inside, safe_relpath
from simml.entities import RunCreate, RunSubmission, UploadItem
from simml.exceptions import NotFoundException, SnapshotException, UnsafePathException
from simml.ids import IdFactory

if TYPE_CHECKING:
    from simml.core.experiment import Experiment
    from simml.core.run import Run
    from simml.core.script_run_config import ScriptRunConfig

SNAPSHOT_MAX_BYTES = 300 * 1024 * 1024
SNAPSHOT_MAX_FILES = 2000


IGNORE_FILES = (".amlignore", ".gitignore")


def _ignore_spec(directory: str) -> Any:
    """The gitignore spec of one folder: its ``.amlignore``, else its ``.gitignore``, else None."""
    import pathspec
    for name in IGNORE_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    lines = handle.read().splitlines()
            except OSError as exc:
                raise SnapshotException(f"Cannot read the ignore file {path!r}: {exc}.") from exc
            return pathspec.GitIgnoreSpec.from_lines(lines)
    return None


def _ignored(specs: list[tuple[str, Any]], rel: str, is_dir: bool) -> bool:
    """git's rule: the last matching pattern wins, deeper ignore files after shallower ones."""
    verdict = False
    for base, spec in specs:
        local = rel[len(base) + 1:] if base else rel
        result = spec.check_file(local + "/" if is_dir else local)
        if result.include is not None:
            verdict = bool(result.include)
    return verdict


def collect_snapshot_files(source_directory: str) -> list[UploadItem]:
    """The files of a source folder that a snapshot holds, sorted by relative path.

    Ignored files and folders (``.amlignore`` / ``.gitignore``, see the module doc) are skipped
    without being looked at, so an ignored ``.venv`` full of links never matters. Otherwise the
    rules of ``Datastore.upload`` apply: a symlinked file is followed when it resolves inside the
    source folder and refused (``UnsafePathException``) when it points outside; a dangling link is
    a ``NotFoundException``; symlinked folders, sockets, FIFOs and simml temporaries are skipped.
    """
    base = source_directory.rstrip("/\\") or source_directory
    real_base = os.path.realpath(base)
    found: list[tuple[str, str]] = []

    def walk(directory: str, rel_dir: str, specs: list[tuple[str, Any]]) -> None:
        spec = _ignore_spec(directory)
        if spec is not None:
            specs = [*specs, (rel_dir, spec)]
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.name.startswith(TMP_PREFIX):
                continue
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                if not (specs and _ignored(specs, rel, True)):
                    walk(entry.path, rel, specs)
                continue
            if specs and _ignored(specs, rel, False):
                continue
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if not os.path.exists(real):
                    raise NotFoundException(
                        f"Source file {entry.path!r} is a dangling symlink; remove it or list it "
                        "in .amlignore.")
                if os.path.isdir(real):
                    continue
                if not _inside(real, real_base):
                    raise UnsafePathException(
                        f"Source file {entry.path!r} is a symlink to {real!r}, outside the source "
                        "directory; copy the file in or list the link in .amlignore.")
                if os.path.isfile(real):
                    found.append((entry.path, rel))
            elif entry.is_file(follow_symlinks=False):
                found.append((entry.path, rel))

    walk(base, "", [])
    found.sort(key=lambda item: item[1])
    return [UploadItem(source=source, target=rel if "\\" not in rel
                       else safe_relpath(rel, what="target")) for source, rel in found]


def snapshot_items(source_directory: str) -> tuple:
    """The files of a source folder as upload items (ignore files honoured), within Azure's
    snapshot limits."""
    items = tuple(collect_snapshot_files(source_directory))
    if len(items) > SNAPSHOT_MAX_FILES:
        raise SnapshotException(
            f"The source directory {source_directory!r} holds {len(items)} files; a snapshot may "
            f"hold at most {SNAPSHOT_MAX_FILES}. Exclude files with .amlignore or move data to a "
            "datastore.")
    total = sum(os.path.getsize(item.source) for item in items)
    if total > SNAPSHOT_MAX_BYTES:
        raise SnapshotException(
            f"The source directory {source_directory!r} is {total / 2**20:.1f} MB; a snapshot may "
            f"be at most {SNAPSHOT_MAX_BYTES // 2**20} MB. Exclude files with .amlignore or move "
            "data to a datastore.")
    return items


def submit_script_run(experiment: "Experiment", config: "ScriptRunConfig", *,
                      run_id: str | None = None, properties: dict[str, str] | None = None,
                      submitted_by: str | None = None) -> "Run":
    """Validate, snapshot, create the run and hand it to the backend.

    ``run_id`` is the id a caller chose (the emulator: the real client picks it, Azure's
    ``snapshotrun?runId=``); a malformed or existing id is a ``UserErrorException`` before anything
    is written. ``properties`` are added at creation, over ``ContentSnapshotId`` (the emulator
    records the client's snapshot id there, as Azure does; simml's own stays in the definition's
    ``snapshotId``).
    """
    from simml.core.run import Run
    workspace = experiment.workspace
    backend, info = workspace._backend, workspace._info
    definition = config._validated(experiment)
    store = workspace._history()
    if run_id is not None:
        _check_new_run_id(store, run_id)  # before the snapshot: a clash writes nothing
    snapshot_id = backend.snapshot_create(info, snapshot_items(config.source_directory))
    definition["snapshotId"] = snapshot_id
    now = workspace.clock.now()
    if run_id is None:
        run_id = IdFactory.from_environment().script_run_id(experiment.name, now)
    run_info = store.create_run(RunCreate(
        run_id=run_id, experiment_name=experiment.name, run_type="azureml.scriptrun",
        status="NotStarted", target=definition["target"], created_time=now,
        definition=definition,
        properties={"ContentSnapshotId": snapshot_id, **(properties or {})},
        submitted_by=submitted_by or _user()))
    backend.run_submit(info, RunSubmission(run_id=run_id, experiment_name=experiment.name,
                                           target=definition["target"], definition=definition,
                                           snapshot_id=snapshot_id))
    return Run._from_info(experiment, run_info)


def _check_new_run_id(store: Any, run_id: str) -> None:
    """A caller-chosen run id must be safe as a folder name and not taken."""
    import re

    from simml.exceptions import UserErrorException
    if not isinstance(run_id, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}",
                                                        run_id):
        raise UserErrorException(
            f"Invalid run id {run_id!r}: use letters, digits, '_', '-' and '.' (up to 255 "
            "characters), starting with a letter or digit.")
    try:
        store.get_run(run_id)
    except NotFoundException:
        return
    raise UserErrorException(f"A run with id {run_id!r} already exists.")


def _user() -> str:
    from simml.core.run import _user as user
    return user()
