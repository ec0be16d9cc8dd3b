"""The SQLite store under real processes: kills, concurrent writers, schema versions.

``local_only`` (docs/testing.md): the store is the local backend's SQLite; Azure's run history is
the service's.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simml.core import Experiment, Run, Workspace
from simml.exceptions import StoreSchemaException

pytestmark = pytest.mark.local_only

CHILD = textwrap.dedent("""
    import os, sys
    from simml.core import Workspace, Experiment, Run
    ws = Workspace.get("test-ws")
    run = Run(Experiment(ws, "rel"), sys.argv[1])
    tag = sys.argv[2]
    for i in range(int(sys.argv[3])):
        run.log(tag, i)
        if i % 997 == 0:
            run.flush()
    run.flush()
    if len(sys.argv) > 4:
        print("flushed", flush=True)
        sys.stdin.read()   # wait to be killed
""")


def test_sigkill_right_after_flush_loses_nothing(ws, tmp_path: Path) -> None:
    run = Experiment(ws, "rel").start_logging()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), run.id, "m", "5000", "wait"],
                             stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "flushed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert Run(Experiment(ws, "rel"), run.id).get_metrics()["m"] == list(range(5000))


def test_two_processes_logging_to_one_run_interleave_without_loss(ws, tmp_path: Path) -> None:
    run = Experiment(ws, "rel").start_logging()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    children = [subprocess.Popen([sys.executable, str(script), run.id, tag, "20000"])
                for tag in ("a", "b")]
    run.log("parent", 1)
    for child in children:
        assert child.wait(timeout=120) == 0
    metrics = run.get_metrics()
    assert metrics["a"] == list(range(20000))
    assert metrics["b"] == list(range(20000))
    assert metrics["parent"] == 1


def test_newer_schema_is_refused_and_left_untouched(ws, simml_home: Path) -> None:
    db = next(simml_home.rglob("simml.db"))
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 999")
    con.close()
    with pytest.raises(StoreSchemaException, match="newer simml"):
        Workspace.get("test-ws")._history()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 999
    con.close()


def test_migration_from_an_older_schema(tmp_path: Path) -> None:
    from simml_local.store import MIGRATIONS, SqliteRunHistoryStore, migrate
    con = sqlite3.connect(tmp_path / "simml.db", isolation_level=None)
    assert migrate(con, MIGRATIONS[:1]) == 1
    extra = MIGRATIONS + ("CREATE TABLE later_feature (x INTEGER)",)
    assert migrate(con, extra) == len(MIGRATIONS) + 1
    assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    con.close()
    with pytest.raises(StoreSchemaException):
        SqliteRunHistoryStore(tmp_path)
