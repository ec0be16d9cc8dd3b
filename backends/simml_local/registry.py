"""The local model registry: model versions as SQLite rows plus folders under ``models/``.

``LocalModelRegistry`` is a mixin of ``LocalBackend`` (it uses the backend's ``store(workspace)``
and ``root(workspace)``). A version's files live in ``<workspace>/models/<name>/<version>/``, laid
out like Azure's model asset: the registered path's basename is kept (``<version>/model.joblib``,
or ``<version>/outputs/...`` for the folder ``outputs``); ``ModelInfo.files`` lists paths relative
to the version folder.

How a registration stays all-or-nothing, even with many processes and ``kill -9``:

1. everything is validated and the source files are collected before anything is written;
2. the files are copied into a private staging folder ``models/.simml-tmp-<pid>-<hex>/``;
3. one ``BEGIN IMMEDIATE`` transaction allocates the version (highest existing + 1 for the name;
   writers in other processes queue on SQLite's lock), renames the staging folder to
   ``models/<name>/<version>/`` (an orphan folder left there by a crash is moved aside first),
   inserts the rows and commits.

A reader sees a version only through its committed row, so a crash at any point leaves no visible
version: before the rename it leaves a staging folder (deleted by a later registration once its
process is gone), after the rename an orphan folder at a version number no row holds (replaced by
the next registration of that name). Deleting a version moves its folder aside inside the
transaction that deletes its row, and removes it after the commit.
"""

from __future__ import annotations

import json
import os
import posixpath
import secrets
import shutil
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from simml.entities import ModelInfo, ModelQuery, ModelRegistration, WorkspaceInfo
from simml.exceptions import (
    ModelNotFoundException,
    ModelPathNotFoundException,
    NotFoundException,
    UnsafePathException,
    UserErrorException,
    WebserviceException,
)
from simml.core.model import validate_model_name
from simml.plugins import hookimpl
from simml_local.files import (
    TMP_PREFIX,
    atomic_copy,
    collect_upload_items,
    safe_relpath,
)
from simml_local.store import write_transaction

MODELS_DIR = "models"
STALE_STAGING_SECONDS = 24 * 3600.0
"""A staging folder whose writer is still alive is only removed once untouched this long."""

_COLUMNS = ("id, name, version, created_time, description, framework, framework_version, "
            "run_id, experiment_name, files")


def model_not_found(name: str, version: int | None) -> ModelNotFoundException:
    what = f"name {name}" if version is None else f"name {name}, version {version}"
    return ModelNotFoundException(f"ModelNotFound: Model with {what} not found in provided "
                                  "workspace.")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True          # exists, but not ours to signal
    return True


def _remove_tree(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def clean_stale_staging(models: Path) -> None:
    """Remove ``.simml-tmp-*`` folders in ``models/`` left by processes that are gone."""
    try:
        entries = list(os.scandir(models))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(TMP_PREFIX):
            continue
        pid_text = entry.name[len(TMP_PREFIX):].split("-", 1)[0]
        if pid_text == str(os.getpid()):
            continue                      # another thread of this process may be staging it
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if (pid_text.isdigit() and _pid_alive(int(pid_text))
                and age <= STALE_STAGING_SECONDS):
            continue
        if entry.is_dir(follow_symlinks=False):
            _remove_tree(entry.path)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _new_temp_name(models: Path, label: str = "") -> Path:
    return models / f"{TMP_PREFIX}{os.getpid()}-{label}{secrets.token_hex(6)}"


def _insert_version(con: sqlite3.Connection, registration: ModelRegistration, version: int,
                    created: float, files: list[str], experiment_name: str | None) -> int:
    """Insert the rows of a new version (inside the caller's transaction); returns its row id."""
    cur = con.execute(
        "INSERT INTO models (name, version, created_time, description, framework, "
        "framework_version, run_id, experiment_name, files) VALUES (?,?,?,?,?,?,?,?,?)",
        (registration.name, version, created, registration.description,
         registration.model_framework, registration.model_framework_version,
         registration.run_id, experiment_name, json.dumps(files)))
    model_id = int(cur.lastrowid)  # type: ignore[arg-type]
    con.executemany("INSERT INTO model_tags VALUES (?,?,?)",
                    [(model_id, k, v) for k, v in registration.tags.items()])
    con.executemany("INSERT INTO model_properties VALUES (?,?,?)",
                    [(model_id, k, v) for k, v in registration.properties.items()])
    return model_id


class LocalModelRegistry:
    """Model-registry hooks of the local backend (a mixin: needs ``store()`` and ``root()``)."""

    # --- helpers -------------------------------------------------------------------------------
    def _models_dir(self, workspace: WorkspaceInfo) -> Path:
        return self.root(workspace) / MODELS_DIR  # type: ignore[attr-defined]

    def _con(self, workspace: WorkspaceInfo) -> sqlite3.Connection:
        return self.store(workspace).connection()  # type: ignore[attr-defined]

    @staticmethod
    def _infos(con: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[ModelInfo]:
        if not rows:
            return []
        ids = [r[0] for r in rows]
        tags: dict[int, dict[str, str]] = {i: {} for i in ids}
        props: dict[int, dict[str, str]] = {i: {} for i in ids}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for table, target in (("model_tags", tags), ("model_properties", props)):
                for model_id, key, value in con.execute(
                        f"SELECT model_id, key, value FROM {table} WHERE model_id IN ({marks})",
                        chunk):
                    target[model_id][key] = value
        return [ModelInfo(
            name=r[1], version=r[2],
            created_time=datetime.fromtimestamp(r[3], timezone.utc),
            tags=tags[r[0]], properties=props[r[0]], description=r[4], model_framework=r[5],
            model_framework_version=r[6], run_id=r[7], experiment_name=r[8],
            files=tuple(json.loads(r[9])),
        ) for r in rows]

    @staticmethod
    def _row(con: sqlite3.Connection, name: str, version: int | None) -> tuple[Any, ...]:
        if version is None:
            row = con.execute(f"SELECT {_COLUMNS} FROM models WHERE name = ? "
                              "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
        else:
            row = con.execute(f"SELECT {_COLUMNS} FROM models WHERE name = ? AND version = ?",
                              (name, int(version))).fetchone()
        if row is None:
            raise model_not_found(name, version)
        return row

    def _collect(self, workspace: WorkspaceInfo, registration: ModelRegistration
                 ) -> tuple[list[tuple[str, str]], str | None]:
        """(source path, path relative to the version folder) for every file, and the
        experiment name; validates everything, writes nothing."""
        if registration.run_id is not None:
            return self._collect_from_run(workspace, registration)
        if registration.local_path is None:
            raise UserErrorException("A model registration needs a local_path or a run_id.")
        source = os.path.abspath(registration.local_path)
        if not os.path.exists(source):
            raise ModelPathNotFoundException(f"Path does not exist: {registration.local_path}")
        base = os.path.basename(source.rstrip(os.sep)) or "model"
        if os.path.isdir(source):
            items = [(i.source, i.target) for i in collect_upload_items(source, base)]
        elif os.path.isfile(source):
            items = [(source, safe_relpath(base, what="model file name"))]
        else:
            raise UserErrorException(f"Model path {registration.local_path!r} is neither a file "
                                     "nor a folder.")
        if not items:
            raise WebserviceException(f"Error, provided model path {registration.local_path!r} "
                                      "is an empty folder: there are no files to register.")
        return items, registration.experiment_name

    def _collect_from_run(self, workspace: WorkspaceInfo, registration: ModelRegistration
                          ) -> tuple[list[tuple[str, str]], str | None]:
        store = self.store(workspace)  # type: ignore[attr-defined]
        run_id = registration.run_id
        assert run_id is not None
        experiment_name = registration.experiment_name
        if experiment_name is None:
            experiment_name = store.get_run(run_id).experiment_name
        run_files = store.list_files(run_id)
        asked = registration.run_path if registration.run_path is not None else registration.name
        try:
            path = safe_relpath(asked, what="model_path")
        except UnsafePathException:
            path = None
        matched = [] if path is None else [
            f for f in run_files if f == path or f.startswith(path + "/")]
        if not matched:
            raise ModelPathNotFoundException(
                f"Could not locate the provided model_path {asked} in the set of files uploaded "
                f"to the run: {run_files} See https://aka.ms/run-logging for more details. "
                "(simml: a run's files are what it uploaded -- ./outputs is uploaded when the run "
                "completes; save the model under outputs/ or call run.upload_file(name, path) "
                "before registering it.)")
        assert path is not None
        parent = posixpath.dirname(path)
        cut = len(parent) + 1 if parent else 0
        return [(str(store.file_path(run_id, f)), f[cut:]) for f in matched], experiment_name

    # --- hooks ---------------------------------------------------------------------------------
    @hookimpl
    def simml_model_register(self, workspace: WorkspaceInfo, registration: ModelRegistration
                             ) -> ModelInfo:
        name = validate_model_name(registration.name)  # it is a folder name here too
        for label, mapping in (("Tags", registration.tags),
                               ("Properties", registration.properties)):
            if not isinstance(mapping, dict):
                raise WebserviceException(f"{label} must be a dict")
        items, experiment_name = self._collect(workspace, registration)
        models = self._models_dir(workspace)
        models.mkdir(parents=True, exist_ok=True)
        clean_stale_staging(models)
        staging = _new_temp_name(models)
        staging.mkdir()
        trash: Path | None = None
        placed = False
        try:
            made: set[str] = set()
            for source, rel in items:
                parent = posixpath.dirname(rel)
                if parent and parent not in made:
                    os.makedirs(os.path.join(staging, *parent.split("/")), exist_ok=True)
                    made.add(parent)
                atomic_copy(source, os.path.join(staging, *rel.split("/")))
            files = sorted(rel for _, rel in items)
            con = self._con(workspace)
            try:
                with write_transaction(con):
                    version = con.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM models "
                                          "WHERE name = ?", (name,)).fetchone()[0]
                    created = time.time()
                    final = models / name / str(version)
                    final.parent.mkdir(exist_ok=True)
                    if os.path.lexists(final):      # an orphan of a crashed registration
                        trash = _new_temp_name(models, "orphan-")
                        os.rename(final, trash)
                    os.rename(staging, final)
                    placed = True
                    _insert_version(con, registration, version, created, files,
                                    experiment_name)
            except BaseException:
                if placed:                          # not committed: take the folder back
                    try:
                        os.rename(final, staging)
                    except OSError:
                        pass
                raise
        finally:
            if staging.exists():
                _remove_tree(staging)
            if trash is not None:
                _remove_tree(trash)
        return ModelInfo(
            name=name, version=version, created_time=datetime.fromtimestamp(created, timezone.utc),
            tags=dict(registration.tags), properties=dict(registration.properties),
            description=registration.description, model_framework=registration.model_framework,
            model_framework_version=registration.model_framework_version,
            run_id=registration.run_id, experiment_name=experiment_name, files=tuple(files))

    @hookimpl
    def simml_model_get(self, workspace: WorkspaceInfo, name: str, version: int | None
                        ) -> ModelInfo:
        con = self._con(workspace)
        return self._infos(con, [self._row(con, name, version)])[0]

    @hookimpl
    def simml_model_list(self, workspace: WorkspaceInfo, query: ModelQuery) -> list[ModelInfo]:
        def conditions(alias: str) -> tuple[list[str], list[Any]]:
            where: list[str] = []
            args: list[Any] = []
            if query.name is not None:
                where.append(f"{alias}.name = ?")
                args.append(query.name)
            if query.run_id is not None:
                where.append(f"{alias}.run_id = ?")
                args.append(query.run_id)
            for table, filters in (("model_tags", query.tags),
                                   ("model_properties", query.properties)):
                for key, value in filters:
                    if value is None:
                        where.append(f"EXISTS (SELECT 1 FROM {table} t WHERE "
                                     f"t.model_id = {alias}.id AND t.key = ?)")
                        args.append(key)
                    else:
                        where.append(f"EXISTS (SELECT 1 FROM {table} t WHERE "
                                     f"t.model_id = {alias}.id AND t.key = ? AND t.value = ?)")
                        args.extend((key, value))
            return where, args

        where, args = conditions("m")
        if query.latest:
            inner, inner_args = conditions("l")
            where.append("m.version = (SELECT MAX(l.version) FROM models l WHERE "
                         + " AND ".join(["l.name = m.name", *inner]) + ")")
            args.extend(inner_args)
        sql = f"SELECT {', '.join('m.' + c for c in _COLUMNS.split(', '))} FROM models m"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY m.id DESC"
        con = self._con(workspace)
        return self._infos(con, con.execute(sql, args).fetchall())

    @hookimpl
    def simml_model_update(self, workspace: WorkspaceInfo, name: str, version: int,
                           add_tags: dict[str, str] | None, remove_tags: list[str] | None,
                           add_properties: dict[str, str] | None, description: str | None
                           ) -> ModelInfo:
        con = self._con(workspace)
        with write_transaction(con):
            row = self._row(con, name, version)
            model_id = row[0]
            for key, value in (add_properties or {}).items():
                old = con.execute("SELECT value FROM model_properties WHERE model_id = ? AND "
                                  "key = ?", (model_id, key)).fetchone()
                if old is not None and old[0] != value:
                    raise WebserviceException(
                        f"Error, property {key!r} of model {name}:{version} is already set to "
                        f"{old[0]!r}; model properties are add-only (new keys can be added, "
                        "existing ones cannot be changed).")
            if add_tags:
                con.executemany("INSERT OR REPLACE INTO model_tags VALUES (?,?,?)",
                                [(model_id, k, v) for k, v in add_tags.items()])
            if remove_tags:
                con.executemany("DELETE FROM model_tags WHERE model_id = ? AND key = ?",
                                [(model_id, k) for k in remove_tags])
            if add_properties:
                con.executemany("INSERT OR IGNORE INTO model_properties VALUES (?,?,?)",
                                [(model_id, k, v) for k, v in add_properties.items()])
            if description is not None:
                con.execute("UPDATE models SET description = ? WHERE id = ?",
                            (description, model_id))
        return self.simml_model_get(workspace, name, version)

    @hookimpl
    def simml_model_download(self, workspace: WorkspaceInfo, name: str, version: int,
                             target_dir: str, exist_ok: bool) -> str:
        info = self.simml_model_get(workspace, name, version)
        source_root = self._models_dir(workspace) / name / str(info.version)
        targets = [(f, os.path.join(target_dir, *f.split("/"))) for f in info.files]
        if not exist_ok:
            for _, target in targets:
                if os.path.lexists(target):
                    raise WebserviceException("File already exists. To overwrite, set exist_ok to "
                                              f"True. {target}")
        for rel, target in targets:
            source = os.path.join(source_root, *rel.split("/"))
            if not os.path.isfile(source):
                raise NotFoundException(f"Model {name}:{info.version} lost its file {rel!r} "
                                        f"(expected at {source}).")
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            try:
                atomic_copy(source, target, overwrite=exist_ok)
            except FileExistsError:
                raise WebserviceException("File already exists. To overwrite, set exist_ok to "
                                          f"True. {target}") from None
        first = info.files[0].split("/", 1)[0] if info.files else ""
        return os.path.join(target_dir, first) if first else target_dir

    @hookimpl
    def simml_model_delete(self, workspace: WorkspaceInfo, name: str, version: int) -> bool:
        models = self._models_dir(workspace)
        con = self._con(workspace)
        trash: Path | None = None
        folder = models / name / str(version)
        try:
            with write_transaction(con):
                model_id = self._row(con, name, version)[0]
                con.execute("DELETE FROM model_tags WHERE model_id = ?", (model_id,))
                con.execute("DELETE FROM model_properties WHERE model_id = ?", (model_id,))
                con.execute("DELETE FROM models WHERE id = ?", (model_id,))
                if os.path.lexists(folder):
                    trash = _new_temp_name(models, "deleted-")
                    os.rename(folder, trash)
                try:
                    os.rmdir(models / name)         # the last version of the name went
                except OSError:
                    pass
        except BaseException:
            if trash is not None:                   # not committed: put the files back
                try:
                    folder.parent.mkdir(exist_ok=True)
                    os.rename(trash, folder)
                    trash = None
                except OSError:
                    pass
            raise
        if trash is not None:
            _remove_tree(trash)
        return True
