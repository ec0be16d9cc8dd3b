"""Snapshots honour .amlignore (else .gitignore) with gitignore semantics; Azure's limits (300 MB,
2000 files) count what is left after ignoring; an over-limit folder creates nothing."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from simml.core import Experiment, ScriptRunConfig
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


def work_dir(ws, run) -> Path:
    return Path(ws.get_details()["root"]) / "runs" / run.id / "wd"


def nothing_created(ws, experiment: Experiment) -> None:
    assert list(experiment.get_runs()) == []
    snapshots = Path(ws.get_details()["root"]) / "snapshots"
    assert not snapshots.exists() or not any(snapshots.iterdir())


LISTING = textwrap.dedent("""
    import os
    for folder, dirs, files in sorted(os.walk(".")):
        for name in files:
            print("FILE", os.path.join(folder, name)[2:])
""")


def test_amlignore_files_never_reach_the_run(ws, tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src", {
        "job.py": LISTING, ".amlignore": "data/\n*.log\n!keep.log\n/secret.txt\n",
        "data/big.csv": "x", "train.log": "x", "keep.log": "x", "secret.txt": "x",
        "sub/secret.txt": "kept: the pattern is anchored", "sub/run.log": "x",
    })
    run = Experiment(ws, "ignore").submit(ScriptRunConfig(str(folder), "job.py"))
    assert run.wait_for_completion()["status"] == "Completed"
    present = sorted(str(p.relative_to(work_dir(ws, run))) for p in
                     work_dir(ws, run).rglob("*") if p.is_file())
    assert present == [".amlignore", "job.py", "keep.log", "sub/secret.txt"]


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


def test_over_the_size_limit_creates_nothing(ws, tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src", {"job.py": "print('ran')\n"})
    sparse_file(folder / "model.bin", SNAPSHOT_MAX_BYTES + 1)
    experiment = Experiment(ws, "too-big")
    with pytest.raises(SnapshotException, match="300 MB.*amlignore"):
        experiment.submit(ScriptRunConfig(str(folder), "job.py"))
    nothing_created(ws, experiment)
    (folder / ".amlignore").write_text("*.bin\n")  # the limit applies after ignoring
    run = experiment.submit(ScriptRunConfig(str(folder), "job.py"))
    assert run.wait_for_completion()["status"] == "Completed"
    assert not (work_dir(ws, run) / "model.bin").exists()


def test_over_the_file_count_limit_creates_nothing(ws, tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src", {"job.py": ""})
    many = folder / "many"
    many.mkdir()
    for index in range(SNAPSHOT_MAX_FILES):
        (many / f"{index}.txt").touch()
    experiment = Experiment(ws, "too-many")
    with pytest.raises(SnapshotException, match=f"{SNAPSHOT_MAX_FILES + 1} files"):
        experiment.submit(ScriptRunConfig(str(folder), "job.py"))
    nothing_created(ws, experiment)
    (folder / ".gitignore").write_text("many/\n")
    assert names(folder) == [".gitignore", "job.py"]
