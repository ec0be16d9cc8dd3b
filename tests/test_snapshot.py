"""Snapshots honour .amlignore (else .gitignore) with gitignore semantics; Azure's limits (300 MB,
2000 files) count what is left after ignoring; an over-limit folder creates nothing.

Tests that submit are ``contract`` (docs/testing.md): the job itself reports the files it was
given, so they hold on every backend (unique names: a shared workspace). Collecting the files
touches no backend: no marker.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from _contract import unique
from simml.core import Environment, Experiment, ScriptRunConfig
from simml.core.submission import SNAPSHOT_MAX_BYTES, SNAPSHOT_MAX_FILES, collect_snapshot_files
from simml.exceptions import SnapshotException


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def names(folder: Path) -> list[str]:
    return [item.target for item in collect_snapshot_files(str(folder))]


def nothing_created(ws, experiment: Experiment) -> None:
    assert list(experiment.get_runs()) == []
    if ws.backend == "local":  # the local backend's snapshots are folders of the workspace
        snapshots = Path(ws.get_details()["root"]) / "snapshots"
        assert not snapshots.exists() or not any(snapshots.iterdir())


LISTING = textwrap.dedent("""
    import json, os
    from simml.core.run import Run
    found = sorted(os.path.join(folder, name)[2:] for folder, dirs, files in os.walk(".")
                   for name in files)
    Run.get_context().log("files", json.dumps(found))
""")


def submit(experiment: Experiment, folder: Path) -> Any:
    """The job in a user-managed environment (the interpreter the backend gives it)."""
    environment = Environment(unique("user-managed"))
    environment.python.user_managed_dependencies = True
    return experiment.submit(ScriptRunConfig(str(folder), "job.py", environment=environment))


def files_seen(run) -> list[str]:
    """The job's files as the job listed them: what it brought (its snapshot), not what the
    platform adds around it (outputs, logs)."""
    assert run.wait_for_completion()["status"] == "Completed"
    found = json.loads(run.get_metrics()["files"])
    return [f for f in found if not f.startswith(("outputs/", "logs/", "azureml", "user_logs/"))]


@pytest.mark.contract
def test_amlignore_files_never_reach_the_run(ws, tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src", {
        "job.py": LISTING, ".amlignore": "data/\n*.log\n!keep.log\n/secret.txt\n",
        "data/big.csv": "x", "train.log": "x", "keep.log": "x", "secret.txt": "x",
        "sub/secret.txt": "kept: the pattern is anchored", "sub/run.log": "x",
    })
    run = submit(Experiment(ws, unique("ignore")), folder)
    assert files_seen(run) == [".amlignore", "job.py", "keep.log", "sub/secret.txt"]


def test_gitignore_is_used_without_amlignore(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src", {
        "job.py": "", ".gitignore": "__pycache__/\n*.pyc\n.venv\n", "a.pyc": "",
        "pkg/__pycache__/m.cpython-311.pyc": "", "pkg/m.py": "", ".venv/bin/x": "",
    })
    assert names(folder) == [".gitignore", "job.py", "pkg/m.py"]


def test_amlignore_takes_precedence_over_gitignore(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src", {
        "job.py": "", ".gitignore": "*.csv\n", ".amlignore": "*.txt\n", "a.csv": "", "b.txt": "",
    })
    assert names(folder) == [".amlignore", ".gitignore", "a.csv", "job.py"]


def test_nested_ignore_files_apply_below_their_folder(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src", {
        "job.py": "", ".gitignore": "*.tmp\n",
        "sub/.gitignore": "!important.tmp\n/local.txt\n", "sub/important.tmp": "",
        "sub/other.tmp": "", "sub/local.txt": "", "sub/deeper/local.txt": "",
        "other/important.tmp": "", "other/local.txt": "",
    })
    assert names(folder) == [".gitignore", "job.py", "other/local.txt", "sub/.gitignore",
                             "sub/deeper/local.txt", "sub/important.tmp"]


def test_an_ignored_folder_is_not_looked_into(tmp_path: Path) -> None:
    """A virtual environment links outside the folder; ignored, it must not matter."""
    folder = make_tree(tmp_path / "src", {"job.py": "", ".amlignore": ".venv/\n"})
    (folder / ".venv" / "bin").mkdir(parents=True)
    os.symlink("/usr/bin/env", folder / ".venv" / "bin" / "python")
    os.symlink(folder / "nowhere", folder / ".venv" / "dangling")
    assert names(folder) == [".amlignore", "job.py"]


def sparse_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)  # sparse: no disk blocks, no time


@pytest.mark.contract
def test_over_the_size_limit_creates_nothing(ws, tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src", {"job.py": LISTING})
    sparse_file(folder / "model.bin", SNAPSHOT_MAX_BYTES + 1)
    experiment = Experiment(ws, unique("too-big"))
    with pytest.raises(SnapshotException, match="300 MB.*amlignore"):
        submit(experiment, folder)
    nothing_created(ws, experiment)
    (folder / ".amlignore").write_text("*.bin\n")  # the limit applies after ignoring
    assert files_seen(submit(experiment, folder)) == [".amlignore", "job.py"]


@pytest.mark.contract
def test_over_the_file_count_limit_creates_nothing(ws, tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src", {"job.py": ""})
    many = folder / "many"
    many.mkdir()
    for index in range(SNAPSHOT_MAX_FILES):
        (many / f"{index}.txt").touch()
    experiment = Experiment(ws, unique("too-many"))
    with pytest.raises(SnapshotException, match=f"{SNAPSHOT_MAX_FILES + 1} files"):
        submit(experiment, folder)
    nothing_created(ws, experiment)
    (folder / ".gitignore").write_text("many/\n")
    assert names(folder) == [".gitignore", "job.py"]
