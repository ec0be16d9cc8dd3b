"""The local backend's run-history store: SQLite (WAL) plus artifact files.

Several processes share one workspace: every write runs in a ``BEGIN IMMEDIATE`` transaction (so
writers queue on SQLite's lock instead of failing on upgrade), readers never block writers (WAL),
and file writes go to a temporary name and are renamed into place before their row is committed.
Each thread gets its own connection. The schema is versioned with ``PRAGMA user_version`` and
migrated forward on open; a store written by a newer simml is refused rather than corrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from simml.entities import (
    BestRun,
    ExperimentInfo,
    MetricBatch,
    MetricSeries,
    RunCreate,
    RunInfo,
    RunQuery,
    StatusChange,
)
from simml.exceptions import NotFoundException, StoreSchemaException, UserErrorException
from simml_local.files import safe_join, safe_relpath

BUSY_TIMEOUT_MS = 60_000
TERMINAL = ("Completed", "Failed", "Canceled")

# Each entry upgrades the schema by one version; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE experiments (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_time REAL NOT NULL,
        archived_time REAL,
        tags TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE runs (
        key INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        experiment_id TEXT NOT NULL REFERENCES experiments(id),
        number INTEGER NOT NULL,
        parent_id TEXT,
        display_name TEXT,
        run_type TEXT NOT NULL,
        status TEXT NOT NULL,
        target TEXT NOT NULL,
        created_time REAL NOT NULL,
        start_time REAL,
        end_time REAL,
        error TEXT,
        definition TEXT,
        submitted_by TEXT NOT NULL DEFAULT '',
        UNIQUE (experiment_id, number)
    );
    CREATE INDEX runs_by_experiment ON runs (experiment_id, created_time);
    CREATE INDEX runs_by_parent ON runs (parent_id);
    CREATE TABLE run_status (
        seq INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        status TEXT NOT NULL,
        time REAL NOT NULL
    );
    CREATE INDEX run_status_by_run ON run_status (run_id, seq);
    CREATE TABLE run_tags (
        run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT,
        PRIMARY KEY (run_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE run_properties (
        run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT,
        PRIMARY KEY (run_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE metrics (
        seq INTEGER PRIMARY KEY,
        run_key INTEGER NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        count INTEGER NOT NULL,
        vals TEXT NOT NULL,
        steps TEXT,
        times TEXT NOT NULL,
        vmin REAL,
        vmax REAL
    );
    CREATE INDEX metrics_by_run ON metrics (run_key, name);
    CREATE INDEX metrics_by_name ON metrics (name, run_key);
    CREATE TABLE run_files (
        run_id TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, time REAL NOT NULL,
        PRIMARY KEY (run_id, path)
    ) WITHOUT ROWID;
    """,
    # 2: the model registry (backends/simml_local/registry.py)
    """
    CREATE TABLE models (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        created_time REAL NOT NULL,
        description TEXT,
        framework TEXT,
        framework_version TEXT,
        run_id TEXT,
        experiment_name TEXT,
        files TEXT NOT NULL,
        UNIQUE (name, version)
    );
    CREATE INDEX models_by_run ON models (run_id);
    CREATE TABLE model_tags (
        model_id INTEGER NOT NULL, key TEXT NOT NULL, value TEXT,
        PRIMARY KEY (model_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE model_properties (
        model_id INTEGER NOT NULL, key TEXT NOT NULL, value TEXT,
        PRIMARY KEY (model_id, key)
    ) WITHOUT ROWID;
    """,
    # 3: execution: the persisted clock, compute targets and their cluster events, runner
    # bookkeeping per submitted run, and scheduling leases
    """
    CREATE TABLE workspace_settings (
        key TEXT PRIMARY KEY, value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE computes (
        name TEXT PRIMARY KEY,
        compute_type TEXT NOT NULL,
        config TEXT NOT NULL,
        created_time REAL NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE cluster_events (
        seq INTEGER PRIMARY KEY,
        compute TEXT NOT NULL,
        event TEXT NOT NULL
    );
    CREATE INDEX cluster_events_by_compute ON cluster_events (compute, seq);
    CREATE TABLE run_exec (
        run_id TEXT PRIMARY KEY,
        runner_pid INTEGER,
        job_pid INTEGER,
        heartbeat REAL,
        stage TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        detail TEXT
    ) WITHOUT ROWID;
    CREATE TABLE leases (
        name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 4: registered environments, one row per version (backends/simml_local/environments.py)
    """
    CREATE TABLE environments (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        created_time REAL NOT NULL,
        digest TEXT NOT NULL,
        definition TEXT NOT NULL,
        PRIMARY KEY (name, version)
    ) WITHOUT ROWID;
    """,
    # 5: web services (backends/simml_local/services.py): one row per deployed service, its
    # process, its state and what it was deployed from
    """
    CREATE TABLE services (
        name TEXT PRIMARY KEY,
        compute_type TEXT NOT NULL,
        state TEXT NOT NULL,
        port INTEGER,
        pid INTEGER,
        process TEXT,
        runtime TEXT NOT NULL DEFAULT 'process',
        server TEXT NOT NULL DEFAULT 'simml',
        deployment TEXT NOT NULL,
        keys TEXT,
        error TEXT,
        created_time REAL NOT NULL,
        updated_time REAL NOT NULL,
        generation INTEGER NOT NULL DEFAULT 1
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


class _Connection(sqlite3.Connection):
    """A connection that knows its process's write lock (see ``write_transaction``)."""

    write_lock: "threading.RLock | None" = None


def connect(path: Path, write_lock: "threading.RLock | None" = None) -> sqlite3.Connection:
    """Open the workspace database with the settings every process must share."""
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                          check_same_thread=False, factory=_Connection)
    con.write_lock = write_lock
    con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")  # durable against process death, which is our risk
    con.execute("PRAGMA foreign_keys = ON")
    return con


def _begin_immediate(con: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``, waiting for a writer in another process in steps of at most 2 ms.

    SQLite's own busy handler sleeps 1, 2, 5, 10, ... up to 100 ms between tries, so a runner
    whose status write meets a client's submit could sit idle for tens of milliseconds with a
    node free. So the busy timeout is zero while this loop tries (and restored after): a writer
    that finds the database locked retries within 2 ms of it being free, until the same overall
    timeout."""
    con.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.0002
        while True:
            try:
                con.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)
    finally:
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "database is locked" in text or "database is busy" in text


@contextmanager
def write_transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any error.

    Threads of one process queue on a Python lock first: SQLite's busy handler makes waiters
    sleep in growing steps (up to 100 ms), which a runner driving many runs cannot afford; only
    writers in other processes meet that handler."""
    lock = getattr(con, "write_lock", None)
    if lock is not None:
        lock.acquire()
    try:
        _begin_immediate(con)
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    finally:
        if lock is not None:
            lock.release()


def migrate(con: sqlite3.Connection, migrations: tuple[str, ...] = MIGRATIONS) -> int:
    """Bring the schema to the newest version; refuse a database from a newer simml."""
    with write_transaction(con):
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > len(migrations):
            raise StoreSchemaException(
                f"This workspace was written by a newer simml (schema version {version}; this "
                f"simml understands up to {len(migrations)}). Upgrade simml to open it.")
        for number in range(version, len(migrations)):
            for statement in migrations[number].split(";"):
                if statement.strip():
                    con.execute(statement)
            con.execute(f"PRAGMA user_version = {number + 1}")
    return len(migrations)


class SqliteRunHistoryStore:
    """``simml.store.RunHistoryStore`` over one workspace folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db_path = root / "simml.db"
        self.artifacts = root / "artifacts"
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.RLock()
        migrate(self.connection())

    # --- plumbing ------------------------------------------------------------------------------
    def connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = connect(self.db_path, self._write_lock)
            self._local.con = con
            with self._lock:
                self._all.append(con)
        return con

    def close(self) -> None:
        with self._lock:
            for con in self._all:
                con.close()
            self._all.clear()
        self._local = threading.local()

    def _run_key(self, con: sqlite3.Connection, run_id: str) -> int:
        """The run's integer key (metrics reference it: cheaper to index than the text id)."""
        row = con.execute("SELECT key FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFoundException(f"Run {run_id!r} was not found in this workspace.")
        return int(row[0])

    # --- experiments ---------------------------------------------------------------------------
    @staticmethod
    def _experiment(row: tuple[Any, ...]) -> ExperimentInfo:
        return ExperimentInfo(id=row[0], name=row[1], created_time=_dt(row[2]),  # type: ignore[arg-type]
                              archived_time=_dt(row[3]), tags=json.loads(row[4]))

    def get_or_create_experiment(self, name: str, at: datetime | None = None) -> ExperimentInfo:
        con = self.connection()
        row = con.execute("SELECT id, name, created_time, archived_time, tags FROM experiments "
                          "WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return self._experiment(row)
        created = (at or datetime.now(timezone.utc)).timestamp()
        with write_transaction(con):
            con.execute("INSERT OR IGNORE INTO experiments (id, name, created_time) VALUES (?,?,?)",
                        (_experiment_id(name), name, created))
        return self.get_experiment(name)

    def get_experiment(self, name: str) -> ExperimentInfo:
        row = self.connection().execute(
            "SELECT id, name, created_time, archived_time, tags FROM experiments WHERE name = ?",
            (name,)).fetchone()
        if row is None:
            raise NotFoundException(f"Experiment {name!r} was not found in this workspace.")
        return self._experiment(row)

    def list_experiments(self, include_archived: bool = False) -> list[ExperimentInfo]:
        sql = "SELECT id, name, created_time, archived_time, tags FROM experiments"
        if not include_archived:
            sql += " WHERE archived_time IS NULL"
        return [self._experiment(r) for r in
                self.connection().execute(sql + " ORDER BY created_time, name")]

    def set_experiment_archived(self, name: str, archived_time: datetime | None) -> ExperimentInfo:
        con = self.connection()
        with write_transaction(con):
            cur = con.execute("UPDATE experiments SET archived_time = ? WHERE name = ?",
                              (_ts(archived_time), name))
            if cur.rowcount == 0:
                raise NotFoundException(f"Experiment {name!r} was not found in this workspace.")
        return self.get_experiment(name)

    # --- runs ----------------------------------------------------------------------------------
    def create_run(self, request: RunCreate) -> RunInfo:
        created = (request.created_time or datetime.now(timezone.utc)).timestamp()
        experiment = self.get_or_create_experiment(request.experiment_name)
        con = self.connection()
        with write_transaction(con):
            if con.execute("SELECT 1 FROM runs WHERE id = ?", (request.run_id,)).fetchone():
                raise UserErrorException(f"A run with id {request.run_id!r} already exists.")
            if request.parent_id is not None:
                self._run_key(con, request.parent_id)
            number = con.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM runs "
                                 "WHERE experiment_id = ?", (experiment.id,)).fetchone()[0]
            con.execute(
                "INSERT INTO runs (id, experiment_id, number, parent_id, display_name, run_type, "
                "status, target, created_time, definition, submitted_by) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (request.run_id, experiment.id, number, request.parent_id,
                 request.display_name or request.run_id, request.run_type, request.status,
                 request.target, created,
                 json.dumps(request.definition) if request.definition is not None else None,
                 request.submitted_by))
            con.execute("INSERT INTO run_status (run_id, status, time) VALUES (?,?,?)",
                        (request.run_id, request.status, created))
            if request.status == "Running":
                con.execute("UPDATE runs SET start_time = ? WHERE id = ?", (created, request.run_id))
            con.executemany("INSERT INTO run_tags VALUES (?,?,?)",
                            [(request.run_id, k, v) for k, v in request.tags.items()])
            con.executemany("INSERT INTO run_properties VALUES (?,?,?)",
                            [(request.run_id, k, v) for k, v in request.properties.items()])
        return self.get_run(request.run_id)

    _RUN_COLUMNS = ("r.id, r.experiment_id, e.name, r.number, r.run_type, r.status, r.target, "
                    "r.created_time, r.parent_id, r.display_name, r.start_time, r.end_time, "
                    "r.error, r.definition, r.submitted_by")

    def _runs(self, con: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[RunInfo]:
        if not rows:
            return []
        ids = [r[0] for r in rows]
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        props: dict[str, dict[str, str]] = {i: {} for i in ids}
        history: dict[str, list[StatusChange]] = {i: [] for i in ids}
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start:chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            for run_id, key, value in con.execute(
                    f"SELECT run_id, key, value FROM run_tags WHERE run_id IN ({marks})", chunk):
                tags[run_id][key] = value
            for run_id, key, value in con.execute(
                    f"SELECT run_id, key, value FROM run_properties WHERE run_id IN ({marks})",
                    chunk):
                props[run_id][key] = value
            for run_id, status, at in con.execute(
                    f"SELECT run_id, status, time FROM run_status WHERE run_id IN ({marks}) "
                    "ORDER BY seq", chunk):
                history[run_id].append(StatusChange(status, _dt(at)))  # type: ignore[arg-type]
        return [RunInfo(
            id=r[0], experiment_id=r[1], experiment_name=r[2], number=r[3], run_type=r[4],
            status=r[5], target=r[6], created_time=_dt(r[7]),  # type: ignore[arg-type]
            parent_id=r[8], display_name=r[9], start_time=_dt(r[10]), end_time=_dt(r[11]),
            error=json.loads(r[12]) if r[12] else None,
            definition=json.loads(r[13]) if r[13] else None, submitted_by=r[14],
            tags=tags[r[0]], properties=props[r[0]], status_history=tuple(history[r[0]]),
        ) for r in rows]

    def get_run(self, run_id: str) -> RunInfo:
        con = self.connection()
        rows = con.execute(f"SELECT {self._RUN_COLUMNS} FROM runs r JOIN experiments e "
                           "ON e.id = r.experiment_id WHERE r.id = ?", (run_id,)).fetchall()
        if not rows:
            raise NotFoundException(f"Run {run_id!r} was not found in this workspace.")
        return self._runs(con, rows)[0]

    def run_state(self, run_id: str) -> tuple[str, str, dict[str, Any] | None]:
        """A run's status, target and error: what a client polling a run needs, without the
        tags, properties, status history and definition ``get_run`` assembles."""
        row = self.connection().execute("SELECT status, target, error FROM runs WHERE id = ?",
                                        (run_id,)).fetchone()
        if row is None:
            raise NotFoundException(f"Run {run_id!r} was not found in this workspace.")
        return row[0], row[1], json.loads(row[2]) if row[2] else None

    def query_runs(self, query: RunQuery) -> list[RunInfo]:
        where: list[str] = []
        args: list[Any] = []
        if query.experiment_name is not None:
            where.append("e.name = ?")
            args.append(query.experiment_name)
        if query.run_type is not None:
            where.append("r.run_type = ?")
            args.append(query.run_type)
        if query.status is not None:
            where.append("r.status = ?")
            args.append(query.status)
        if query.parent_id is not None:
            where.append("r.parent_id = ?")
            args.append(query.parent_id)
        elif not query.include_children:
            where.append("r.parent_id IS NULL")
        for table, filters in (("run_tags", query.tags), ("run_properties", query.properties)):
            for key, value in (filters or {}).items():
                if value is None:
                    where.append(f"EXISTS (SELECT 1 FROM {table} t WHERE t.run_id = r.id "
                                 "AND t.key = ?)")
                    args.append(key)
                else:
                    where.append(f"EXISTS (SELECT 1 FROM {table} t WHERE t.run_id = r.id "
                                 "AND t.key = ? AND t.value = ?)")
                    args.extend((key, value))
        sql = (f"SELECT {self._RUN_COLUMNS} FROM runs r JOIN experiments e "
               "ON e.id = r.experiment_id")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.created_time DESC, r.number DESC"
        if query.limit is not None:
            sql += f" LIMIT {int(query.limit)}"
        con = self.connection()
        return self._runs(con, con.execute(sql, args).fetchall())

    def set_run_status(self, run_id: str, status: str, at: datetime,
                       error: dict[str, Any] | None = None) -> RunInfo:
        self.record_run_status(run_id, status, at, error)
        return self.get_run(run_id)

    def record_run_status(self, run_id: str, status: str, at: datetime,
                          error: dict[str, Any] | None = None,
                          exec_stage: str | None = None) -> None:
        """``set_run_status`` without reading the run back: the runner writes seven statuses a
        run and needs none of them returned. ``exec_stage``: also move the run's execution row
        (``run_exec``, the local runner's bookkeeping) to that stage, in the same transaction."""
        con = self.connection()
        when = at.timestamp()
        terminal = status in TERMINAL
        with write_transaction(con):
            changed = con.execute(
                "UPDATE runs SET status = ?, "
                "start_time = CASE WHEN ? THEN COALESCE(start_time, ?) ELSE start_time END, "
                "end_time = CASE WHEN ? THEN ? ELSE end_time END, "
                "error = COALESCE(?, error) WHERE id = ?",
                (status, status == "Running", when, terminal, when,
                 None if error is None else json.dumps(error), run_id)).rowcount
            if not changed:
                self._run_key(con, run_id)  # raises the not-found error
            con.execute("INSERT INTO run_status (run_id, status, time) VALUES (?,?,?)",
                        (run_id, status, when))
            if exec_stage is not None:
                con.execute("UPDATE run_exec SET stage = ? WHERE run_id = ?", (exec_stage, run_id))

    def update_run(self, run_id: str, *, display_name: str | None = None,
                   definition: dict[str, Any] | None = None) -> RunInfo:
        con = self.connection()
        with write_transaction(con):
            self._run_key(con, run_id)
            if display_name is not None:
                con.execute("UPDATE runs SET display_name = ? WHERE id = ?", (display_name, run_id))
            if definition is not None:
                con.execute("UPDATE runs SET definition = ? WHERE id = ?",
                            (json.dumps(definition), run_id))
        return self.get_run(run_id)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        con = self.connection()
        with write_transaction(con):
            self._run_key(con, run_id)
            con.executemany("INSERT OR REPLACE INTO run_tags VALUES (?,?,?)",
                            [(run_id, k, v) for k, v in tags.items()])

    def remove_tags(self, run_id: str, keys: Iterable[str]) -> None:
        con = self.connection()
        with write_transaction(con):
            self._run_key(con, run_id)
            con.executemany("DELETE FROM run_tags WHERE run_id = ? AND key = ?",
                            [(run_id, k) for k in keys])

    def add_properties(self, run_id: str, properties: dict[str, str]) -> None:
        con = self.connection()
        with write_transaction(con):
            self._run_key(con, run_id)
            for key, value in properties.items():
                row = con.execute("SELECT value FROM run_properties WHERE run_id = ? AND key = ?",
                                  (run_id, key)).fetchone()
                if row is not None and row[0] != value:
                    raise UserErrorException(
                        f"Property {key!r} of run {run_id} is already set to {row[0]!r}; "
                        "run properties cannot be changed once added.")
            con.executemany("INSERT OR IGNORE INTO run_properties VALUES (?,?,?)",
                            [(run_id, k, v) for k, v in properties.items()])

    # --- metrics -------------------------------------------------------------------------------
    def log_metrics(self, batch: MetricBatch) -> None:
        """Store the batch as one chunk row per (name, kind): values, steps and times as JSON
        arrays, with the chunk's numeric min and max for ranking queries. Writing chunks instead
        of a row per value is what makes 100k values/s possible; order is kept by chunk sequence
        and position within the chunk."""
        chunks: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for row in batch.rows:
            key = (row[0], row[1])
            chunk = chunks.get(key)
            if chunk is None:
                chunks[key] = [row]
            else:
                chunk.append(row)
        records = []
        for (name, kind), rows in chunks.items():
            values = [r[2] for r in rows]
            steps = [r[3] for r in rows]
            numbers = [v for v in values if type(v) is float or type(v) is int]
            records.append((
                name, kind, len(rows), json.dumps(values, allow_nan=False),
                None if all(s is None for s in steps) else json.dumps(steps),
                json.dumps([r[4] for r in rows]),
                min(numbers) if numbers else None, max(numbers) if numbers else None))
        con = self.connection()
        with write_transaction(con):
            run_key = self._run_key(con, batch.run_id)
            con.executemany(
                "INSERT INTO metrics (run_key, name, kind, count, vals, steps, times, vmin, vmax) "
                "VALUES (?,?,?,?,?,?,?,?,?)", [(run_key, *r) for r in records])

    def get_metrics(self, run_id: str, name: str | None = None) -> list[MetricSeries]:
        con = self.connection()
        key = self._run_key(con, run_id)
        sql = "SELECT name, kind, vals, steps, times FROM metrics WHERE run_key = ?"
        args: tuple[Any, ...] = (key,)
        if name is not None:
            sql += " AND name = ?"
            args = (key, name)
        series: list[MetricSeries] = []
        for metric, kind, vals, steps, times in con.execute(sql + " ORDER BY seq", args):
            values = tuple(json.loads(vals))
            series.append(MetricSeries(
                metric, kind, values,
                tuple(json.loads(steps)) if steps else (None,) * len(values),
                tuple(json.loads(times))))
        return series

    def best_runs(self, experiment_name: str, metric: str, maximize: bool,
                  limit: int = 1) -> list[BestRun]:
        best, column, order = ("MAX", "vmax", "DESC") if maximize else ("MIN", "vmin", "ASC")
        rows = self.connection().execute(
            f"SELECT r.id, {best}(m.{column}) AS best FROM metrics m "
            "JOIN runs r ON r.key = m.run_key JOIN experiments e ON e.id = r.experiment_id "
            f"WHERE m.name = ? AND e.name = ? AND m.{column} IS NOT NULL "
            f"GROUP BY m.run_key ORDER BY best {order}, r.id LIMIT ?",
            (metric, experiment_name, int(limit))).fetchall()
        return [BestRun(run_id, float(value)) for run_id, value in rows]

    # --- files ---------------------------------------------------------------------------------
    def upload_file(self, run_id: str, name: str, source: BinaryIO) -> None:
        relpath = safe_relpath(name)
        con = self.connection()
        self._run_key(con, run_id)
        run_dir = self.artifacts / run_id
        target = safe_join(run_dir, relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".simml-tmp-{os.getpid()}-{threading.get_ident()}-{target.name}"
        try:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            size = tmp.stat().st_size
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        with write_transaction(con):
            con.execute("INSERT OR REPLACE INTO run_files VALUES (?,?,?,?)",
                        (run_id, relpath, size, datetime.now(timezone.utc).timestamp()))

    def register_file(self, run_id: str, name: str) -> None:
        """List a file written in place under the run's folder (live logs; local backend only)."""
        relpath = safe_relpath(name)
        path = safe_join(self.artifacts / run_id, relpath)
        size = path.stat().st_size if path.exists() else 0
        con = self.connection()
        with write_transaction(con):
            self._run_key(con, run_id)
            con.execute("INSERT OR REPLACE INTO run_files VALUES (?,?,?,?)",
                        (run_id, relpath, size, datetime.now(timezone.utc).timestamp()))

    def list_files(self, run_id: str) -> list[str]:
        con = self.connection()
        self._run_key(con, run_id)
        return [r[0] for r in con.execute(
            "SELECT path FROM run_files WHERE run_id = ? ORDER BY path", (run_id,))]

    def file_path(self, run_id: str, name: str) -> Path:
        """Where a run file lives on disk (local backend only: for copies inside the backend)."""
        relpath = safe_relpath(name)
        con = self.connection()
        if con.execute("SELECT 1 FROM run_files WHERE run_id = ? AND path = ?",
                       (run_id, relpath)).fetchone() is None:
            self._run_key(con, run_id)
            raise NotFoundException(f"Run {run_id} has no file {name!r}.")
        return safe_join(self.artifacts / run_id, relpath)

    def open_file(self, run_id: str, name: str) -> BinaryIO:
        return open(self.file_path(run_id, name), "rb")


def _experiment_id(name: str) -> str:
    """A stable id per experiment name, so concurrent creators agree without a round trip."""
    import uuid
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"simml:experiment:{name}"))
