"""The ``simml`` command line: output, --json, exit codes, and path safety.

``local_only`` (docs/testing.md): the CLI's own behaviour, on local workspaces named with ``-w``
and with exact listings of a fresh workspace; ``tests/test_cli_contract.py`` runs the CLI on the
workspace of a config.json on every backend.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from simml.cli import EXIT_ERROR, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_USAGE, cli
from simml.core import Experiment

pytestmark = pytest.mark.local_only

WS = ["-w", "test-ws"]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def make_run(ws: Any, experiment: str = "e", metrics: dict[str, Any] | None = None,
             files: dict[str, bytes] | None = None, tags: dict[str, str] | None = None,
             fail: str | None = None) -> Any:
    run = Experiment(ws, experiment).start_logging()
    for name, value in (metrics or {}).items():
        for item in value if isinstance(value, list) else [value]:
            run.log(name, item)
    for name, data in (files or {}).items():
        run.upload_file(name, io.BytesIO(data))
    if tags:
        run.set_tags(tags)
    if fail is not None:
        run.fail(error_details=fail, error_code="ScriptError")
    else:
        run.complete()
    return run


def assert_one_error_line(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# --- group options ---------------------------------------------------------------------------

def test_version_and_help() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("simml ")
    result = invoke("--help")
    assert result.exit_code == 0
    for group in ("workspace", "experiment", "run", "model", "datastore", "--json", "--workspace"):
        assert group in result.stdout


def test_json_flag_works_after_the_command_too(ws) -> None:
    make_run(ws)
    assert as_json(invoke(*WS, "run", "list", "--json")) == as_json(invoke(*WS, "--json", "run",
                                                                            "list"))


# --- workspace -------------------------------------------------------------------------------

def test_workspace_init_writes_config_and_show_finds_it(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke("workspace", "init", "--name", "proj-ws", "--path", "proj")
    assert result.exit_code == 0, result.output
    assert "proj-ws" in result.stdout
    config = json.loads((tmp_path / "proj" / ".azureml" / "config.json").read_text())
    assert config["workspace_name"] == "proj-ws"
    # idempotent (exist_ok)
    assert invoke("workspace", "init", "--name", "proj-ws", "--path", "proj").exit_code == 0
    monkeypatch.chdir(tmp_path / "proj")
    result = invoke("workspace", "show")
    assert result.exit_code == 0, result.output
    assert "Name:" in result.stdout and "proj-ws" in result.stdout
    doc = as_json(invoke("--json", "workspace", "show"))
    assert doc["name"] == "proj-ws" and doc["backend"] == "local"
    assert doc["counts"]["experiments"] == 0 and doc["counts"]["runs"] == 0
    iso(doc["created"])


def test_workspace_init_json_and_custom_ids(tmp_path: Path) -> None:
    doc = as_json(invoke("--json", "workspace", "init", "--name", "other-ws",
                         "--subscription-id", "sub-1", "--resource-group", "rg-1"))
    assert doc["subscription_id"] == "sub-1" and doc["resource_group"] == "rg-1"
    assert Path(doc["config_file"]) == tmp_path / ".azureml" / "config.json"
    config = json.loads(Path(doc["config_file"]).read_text())
    assert (config["subscription_id"], config["resource_group"]) == ("sub-1", "rg-1")


def test_workspace_show_counts(ws) -> None:
    make_run(ws, "e")
    make_run(ws, "f")
    result = invoke(*WS, "workspace", "show")
    assert result.exit_code == 0, result.output
    assert "test-ws" in result.stdout and "local" in result.stdout
    doc = as_json(invoke(*WS, "--json", "workspace", "show"))
    assert doc["counts"]["experiments"] == 2 and doc["counts"]["runs"] == 2
    assert doc["workspace_id"] == ws._info.workspace_id
    assert doc["counts"]["models"] == 0


def test_workspace_show_defaults_to_default_workspace() -> None:
    doc = as_json(invoke("--json", "workspace", "show"))
    assert doc["name"] == "default"


def test_workspace_list(ws) -> None:
    result = invoke("workspace", "list")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].split()[:2] == ["NAME", "SUBSCRIPTION"]
    assert "test-ws" in result.stdout
    assert [w["name"] for w in as_json(invoke("--json", "workspace", "list"))] == ["test-ws"]


def test_invalid_workspace_name_is_invalid_input() -> None:
    result = invoke("workspace", "init", "--name", "x")
    assert_one_error_line(result, EXIT_INVALID, "Invalid workspace name")


def test_broken_config_json_is_invalid_input(tmp_path: Path) -> None:
    (tmp_path / ".azureml").mkdir()
    (tmp_path / ".azureml" / "config.json").write_text("{not json")
    assert_one_error_line(invoke("run", "list"), EXIT_INVALID, "config.json")


def test_missing_workspace_is_not_found(ws) -> None:
    assert_one_error_line(invoke("-w", "nope-ws", "run", "list"), EXIT_NOT_FOUND, "nope-ws")


# --- experiments and runs --------------------------------------------------------------------

def test_experiment_list(ws) -> None:
    make_run(ws, "e")
    make_run(ws, "e")
    make_run(ws, "f")
    result = invoke(*WS, "experiment", "list")
    assert result.exit_code == 0
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("e", "2"), ("f", "1")]
    docs = as_json(invoke(*WS, "--json", "experiment", "list"))
    assert {d["name"]: d["runs"] for d in docs} == {"e": 2, "f": 1}


def test_experiment_list_empty(ws) -> None:
    result = invoke(*WS, "experiment", "list")
    assert result.exit_code == 0 and "No experiments." in result.stdout


def test_run_list_newest_first_and_filters(ws) -> None:
    r1 = make_run(ws, "e", metrics={"acc": [0.9, 0.95], "loss": 0.1, "kernel": "rbf"})
    r2 = make_run(ws, "f", tags={"team": "ml"})
    r3 = make_run(ws, "e", fail="boom")
    result = invoke(*WS, "run", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RUN", "ID", "EXPERIMENT", "STATUS", "CREATED", "DURATION",
                                "METRICS"]
    assert [line.split()[0] for line in lines[1:]] == [r3.id, r2.id, r1.id]
    row1 = lines[3]
    assert "Completed" in row1 and "acc=0.95" in row1 and "loss=0.1" in row1
    assert "kernel" not in row1  # only numeric metrics are key metrics

    def ids(*args: str) -> list[str]:
        return [d["id"] for d in as_json(invoke(*WS, "--json", "run", "list", *args))]

    assert ids("--experiment", "e") == [r3.id, r1.id]
    assert ids("--status", "completed") == [r2.id, r1.id]
    assert ids("--status", "Failed") == [r3.id]
    assert ids("--tag", "team=ml") == [r2.id]
    assert ids("--tag", "team=other") == []
    assert ids("--limit", "1") == [r3.id]
    docs = as_json(invoke(*WS, "--json", "run", "list", "-e", "e", "-s", "Completed"))
    assert len(docs) == 1 and docs[0]["metrics"] == {"acc": 0.95, "loss": 0.1}
    assert iso(docs[0]["created"]) <= iso(docs[0]["ended"])
    assert docs[0]["duration_seconds"] >= 0


def test_run_list_empty(ws) -> None:
    result = invoke(*WS, "run", "list")
    assert result.exit_code == 0 and "No runs found." in result.stdout
    assert as_json(invoke(*WS, "--json", "run", "list")) == []


@pytest.mark.parametrize("args", [["--tag", "team"], ["--tag", "=x"], ["--limit", "0"],
                                  ["--status", "Sleeping"]])
def test_run_list_usage_errors(ws, args: list[str]) -> None:
    result = invoke(*WS, "run", "list", *args)
    assert result.exit_code == EXIT_USAGE
    assert "Traceback" not in result.output


def test_run_list_unknown_experiment(ws) -> None:
    assert_one_error_line(invoke(*WS, "run", "list", "--experiment", "nope"), EXIT_NOT_FOUND,
                          "nope")


def test_run_show(ws) -> None:
    run = make_run(ws, metrics={"acc": 0.9}, tags={"team": "ml"})
    run.add_properties({"azureml.git": "abc"})
    result = invoke(*WS, "run", "show", run.id)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert run.id in out and "Completed" in out and "team=ml" in out and "azureml.git=abc" in out
    start = out.index("Status history:")
    history = [line.split() for line in out[start:].splitlines()[:3]]
    assert [h[-1] for h in history] == ["NotStarted", "Running", "Completed"]
    doc = as_json(invoke(*WS, "--json", "run", "show", run.id))
    assert doc["status"] == "Completed" and doc["experiment"] == "e"
    assert [h["status"] for h in doc["status_history"]] == ["NotStarted", "Running", "Completed"]
    assert doc["tags"] == {"team": "ml"} and doc["properties"] == {"azureml.git": "abc"}
    assert doc["error"] is None
    for entry in doc["status_history"]:
        iso(entry["time"])


def test_run_show_failed_run_has_error(ws) -> None:
    run = make_run(ws, fail="ValueError: boom")
    result = invoke(*WS, "run", "show", run.id)
    assert result.exit_code == 0
    assert "Failed" in result.stdout
    assert "Error:" in result.stdout and "ScriptError" in result.stdout and "boom" in result.stdout
    doc = as_json(invoke(*WS, "--json", "run", "show", run.id))
    assert "boom" in json.dumps(doc["error"])


def test_run_metrics(ws) -> None:
    run = make_run(ws, metrics={"acc": [0.9, 0.95], "loss": 0.1, "kernel": "rbf"})
    result = invoke(*WS, "run", "metrics", run.id)
    assert result.exit_code == 0
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"acc", "loss", "kernel"}
    assert "0.95" in rows["acc"] and "rbf" in rows["kernel"]
    assert as_json(invoke(*WS, "--json", "run", "metrics", run.id)) == run.get_metrics()
    assert as_json(invoke(*WS, "--json", "run", "metrics", run.id, "--name", "loss")) == {
        "loss": 0.1}


def test_run_metrics_none(ws) -> None:
    run = make_run(ws)
    result = invoke(*WS, "run", "metrics", run.id)
    assert result.exit_code == 0 and "has no metrics" in result.stdout


def test_run_logs_prints_log_files_in_order(ws) -> None:
    run = make_run(ws, files={
        "user_logs/std_log.txt": b"user says hi\n",
        "logs/train.log": b"epoch 1\nepoch 2\n",
        "azureml-logs/70_driver_log.txt": b"driver line\n",
        "outputs/model.txt": b"not a log\n",
    })
    result = invoke(*WS, "run", "logs", run.id)
    assert result.exit_code == 0, result.output
    out = result.stdout
    headers = [line for line in out.splitlines() if line.startswith("==> ")]
    assert headers == ["==> azureml-logs/70_driver_log.txt <==", "==> logs/train.log <==",
                       "==> user_logs/std_log.txt <=="]
    assert "epoch 1\nepoch 2\n" in out and "driver line" in out and "user says hi" in out
    assert "not a log" not in out
    doc = as_json(invoke(*WS, "--json", "run", "logs", run.id))
    assert [entry["name"] for entry in doc["logs"]] == [h[4:-4] for h in headers]
    assert doc["logs"][1]["content"] == "epoch 1\nepoch 2\n"


def test_run_logs_says_when_there_are_none(ws) -> None:
    run = make_run(ws, files={"outputs/model.txt": b"x"})
    result = invoke(*WS, "run", "logs", run.id)
    assert result.exit_code == 0
    assert "has no log files" in result.stdout
    assert as_json(invoke(*WS, "--json", "run", "logs", run.id)) == {"run_id": run.id,
                                                                     "logs": []}


def test_run_download(ws, tmp_path: Path) -> None:
    run = make_run(ws, files={"outputs/model.txt": b"model", "outputs/sub/a.txt": b"a",
                              "logs/train.log": b"log"})
    result = invoke(*WS, "run", "download", run.id, "--prefix", "outputs/", "--output", "dl")
    assert result.exit_code == 0, result.output
    assert files_under(tmp_path / "dl") == {"outputs", "outputs/model.txt", "outputs/sub",
                                            "outputs/sub/a.txt"}
    assert (tmp_path / "dl" / "outputs" / "model.txt").read_bytes() == b"model"
    doc = as_json(invoke(*WS, "--json", "run", "download", run.id, "-o", "all"))
    assert doc["files"] == ["logs/train.log", "outputs/model.txt", "outputs/sub/a.txt"]
    assert (tmp_path / "all" / "logs" / "train.log").read_bytes() == b"log"


def test_run_download_unknown_prefix_is_not_found(ws, tmp_path: Path) -> None:
    run = make_run(ws, files={"outputs/model.txt": b"model"})
    result = invoke(*WS, "run", "download", run.id, "--prefix", "nothing/", "-o", "dl")
    assert_one_error_line(result, EXIT_NOT_FOUND, "nothing/")
    assert not (tmp_path / "dl").exists()


@pytest.mark.parametrize("prefix", ["../x", "outputs/../../x", "/etc", "..\\x"])
def test_run_download_traversal_is_refused(ws, tmp_path: Path, prefix: str) -> None:
    run = make_run(ws, files={"outputs/model.txt": b"model"})
    # This test's own folder, and where a '../x' escape would land (tmp_path.parent is shared
    # with other tests, whose leftovers may change it meanwhile).
    before = files_under(tmp_path), (tmp_path.parent / "x").exists()
    result = invoke(*WS, "run", "download", run.id, "--prefix", prefix, "--output", "dl")
    assert_one_error_line(result, EXIT_INVALID, "prefix")
    assert (files_under(tmp_path), (tmp_path.parent / "x").exists()) == before


@pytest.mark.parametrize("command", [["run", "show"], ["run", "metrics"], ["run", "logs"],
                                     ["run", "download"]])
def test_unknown_run_is_not_found(ws, command: list[str]) -> None:
    assert_one_error_line(invoke(*WS, *command, "no-such-run"), EXIT_NOT_FOUND, "no-such-run")


def test_errors_in_json_mode_are_one_json_document(ws) -> None:
    result = invoke(*WS, "--json", "run", "show", "no-such-run")
    assert result.exit_code == EXIT_NOT_FOUND
    doc = json.loads(result.stdout)
    assert doc["error"]["exit_code"] == EXIT_NOT_FOUND
    assert doc["error"]["type"] == "NotFoundException" and "no-such-run" in doc["error"]["message"]
    assert result.stderr.startswith("error: ")


def test_unexpected_error_is_exit_1_and_debug_shows_traceback(ws, monkeypatch) -> None:
    import simml.cli

    def broken(name: str | None) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(simml.cli, "open_workspace", broken)
    result = invoke(*WS, "run", "list")
    assert_one_error_line(result, EXIT_ERROR, "RuntimeError", "disk on fire", "SIMML_DEBUG")
    result = invoke(*WS, "run", "list", env={"SIMML_DEBUG": "1"})
    assert result.exit_code == EXIT_ERROR
    assert "Traceback" in result.stderr and "disk on fire" in result.stderr


def test_a_typed_simml_error_is_exit_1_with_its_own_message(ws, monkeypatch) -> None:
    """simml's own errors (here: no Docker engine) are not reported as unexpected."""
    result = invoke("docker", "build-base", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.exit_code == EXIT_ERROR
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Docker engine unreachable"), lines
    assert "unexpected" not in lines[0] and "dockerd" in lines[0]


def test_tables_use_rich_on_a_terminal(ws, monkeypatch) -> None:
    import simml.cli
    make_run(ws, metrics={"acc": 0.5})
    monkeypatch.setattr(simml.cli, "_is_tty", lambda: True)
    result = invoke(*WS, "run", "list")
    assert result.exit_code == 0
    assert "RUN ID" in result.stdout and "acc=0.5" in result.stdout


# --- models ----------------------------------------------------------------------------------

@pytest.fixture
def models(ws, tmp_path: Path) -> Any:
    from simml.core.model import Model
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.pkl").write_bytes(b"weights-1")
    Model.register(ws, "m/model.pkl", "iris", tags={"stage": "dev"})
    (tmp_path / "m" / "model.pkl").write_bytes(b"weights-2")
    Model.register(ws, "m/model.pkl", "iris", tags={"stage": "prod"}, description="second")
    Model.register(ws, "m/model.pkl", "other")
    return ws


def test_model_list(models) -> None:
    result = invoke(*WS, "model", "list")
    assert result.exit_code == 0, result.output
    rows = [line.split()[:2] for line in result.stdout.splitlines()[1:]]
    assert rows == [["iris", "2"], ["iris", "1"], ["other", "1"]]
    docs = as_json(invoke(*WS, "--json", "model", "list", "--name", "iris", "--latest"))
    assert [(d["name"], d["version"]) for d in docs] == [("iris", 2)]
    docs = as_json(invoke(*WS, "--json", "model", "list", "--tag", "stage=dev"))
    assert [d["id"] for d in docs] == ["iris:1"]
    iso(docs[0]["created"])


def test_model_list_empty(ws) -> None:
    result = invoke(*WS, "model", "list")
    assert result.exit_code == 0 and "No models registered." in result.stdout


def test_model_show(models) -> None:
    result = invoke(*WS, "model", "show", "iris")
    assert result.exit_code == 0, result.output
    assert "iris:2" in result.stdout and "second" in result.stdout and "stage=prod" in result.stdout
    doc = as_json(invoke(*WS, "--json", "model", "show", "iris:1"))
    assert doc["id"] == "iris:1" and doc["tags"] == {"stage": "dev"}
    assert doc["files"] == ["model.pkl"]


def test_model_download(models, tmp_path: Path) -> None:
    result = invoke(*WS, "model", "download", "iris:1", "--output", "dl")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dl" / "model.pkl").read_bytes() == b"weights-1"
    result = invoke(*WS, "model", "download", "iris", "--output", "dl")
    assert_one_error_line(result, EXIT_INVALID, "exist")
    assert (tmp_path / "dl" / "model.pkl").read_bytes() == b"weights-1"
    doc = as_json(invoke(*WS, "--json", "model", "download", "iris", "-o", "dl", "--exist-ok"))
    assert doc["model"] == "iris:2" and Path(doc["path"]) == tmp_path / "dl" / "model.pkl"
    assert (tmp_path / "dl" / "model.pkl").read_bytes() == b"weights-2"


@pytest.mark.parametrize("ref", ["nope", "iris:9"])
def test_unknown_model_is_not_found(models, ref: str) -> None:
    assert_one_error_line(invoke(*WS, "model", "show", ref), EXIT_NOT_FOUND)
    assert_one_error_line(invoke(*WS, "model", "download", ref, "-o", "dl"), EXIT_NOT_FOUND)


@pytest.mark.parametrize("ref", ["iris:x", "iris:0", ":3"])
def test_bad_model_reference_is_usage_error(models, ref: str) -> None:
    assert invoke(*WS, "model", "show", ref).exit_code == EXIT_USAGE


# --- datastores ------------------------------------------------------------------------------

def make_tree(base: Path) -> Path:
    (base / "data" / "sub").mkdir(parents=True)
    (base / "data" / "iris.csv").write_text("a,b\n1,2\n")
    (base / "data" / "sub" / "more.csv").write_text("x\n")
    return base / "data"


def test_datastore_list(ws) -> None:
    result = invoke(*WS, "datastore", "list")
    assert result.exit_code == 0, result.output
    assert "workspaceblobstore" in result.stdout
    docs = as_json(invoke(*WS, "--json", "datastore", "list"))
    default = [d["name"] for d in docs if d["default"]]
    assert default == ["workspaceblobstore"]


def test_datastore_upload_ls_download(ws, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    result = invoke(*WS, "datastore", "upload", "workspaceblobstore", str(src),
                    "--target-path", "iris")
    assert result.exit_code == 0, result.output
    assert "Uploaded 2 files" in result.stdout
    result = invoke(*WS, "datastore", "ls", "workspaceblobstore")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["iris/iris.csv", "iris/sub/more.csv"]
    doc = as_json(invoke(*WS, "--json", "datastore", "ls", "workspaceblobstore", "--prefix",
                         "iris/sub"))
    assert doc["files"] == ["iris/sub/more.csv"]
    # again without --overwrite: skipped; with it: replaced
    doc = as_json(invoke(*WS, "--json", "datastore", "upload", "workspaceblobstore", str(src),
                         "--target-path", "iris"))
    assert doc["uploaded"] == [] and sorted(doc["skipped"]) == ["iris/iris.csv",
                                                                "iris/sub/more.csv"]
    (src / "iris.csv").write_text("changed\n")
    doc = as_json(invoke(*WS, "--json", "datastore", "upload", "workspaceblobstore", str(src),
                         "--target-path", "iris", "--overwrite"))
    assert len(doc["uploaded"]) == 2
    result = invoke(*WS, "datastore", "download", "workspaceblobstore", "dl", "--prefix", "iris")
    assert result.exit_code == 0, result.output
    assert "Downloaded 2 files" in result.stdout
    assert (tmp_path / "dl" / "iris" / "iris.csv").read_text() == "changed\n"
    doc = as_json(invoke(*WS, "--json", "datastore", "download", "workspaceblobstore", "dl",
                         "--prefix", "iris"))
    assert doc["downloaded"] == 0  # already there, no --overwrite
    doc = as_json(invoke(*WS, "--json", "datastore", "download", "workspaceblobstore", "dl",
                         "--prefix", "iris", "--overwrite"))
    assert doc["downloaded"] == 2


@pytest.mark.parametrize("target", ["../x", "a/../../x", "/tmp/x"])
def test_datastore_upload_traversal_is_refused(ws, tmp_path: Path, simml_home: Path,
                                               target: str) -> None:
    src = make_tree(tmp_path)
    # Only this test's folders: other tests' leftovers share tmp_path.parent.
    before = files_under(tmp_path), files_under(simml_home), os.path.exists("/tmp/x")
    result = invoke(*WS, "datastore", "upload", "workspaceblobstore", str(src),
                    "--target-path", target)
    assert_one_error_line(result, EXIT_INVALID, "target path")
    assert (files_under(tmp_path), files_under(simml_home), os.path.exists("/tmp/x")) == before


def test_datastore_download_traversal_is_refused(ws, tmp_path: Path) -> None:
    result = invoke(*WS, "datastore", "download", "workspaceblobstore", "dl", "--prefix", "../x")
    assert_one_error_line(result, EXIT_INVALID, "prefix")
    assert not (tmp_path / "dl").exists()


def test_unknown_datastore_is_not_found(ws, tmp_path: Path) -> None:
    assert_one_error_line(invoke(*WS, "datastore", "ls", "nostore"), EXIT_NOT_FOUND, "nostore")
    src = make_tree(tmp_path)
    assert_one_error_line(invoke(*WS, "datastore", "upload", "nostore", str(src)),
                          EXIT_NOT_FOUND, "nostore")
    assert_one_error_line(invoke(*WS, "datastore", "download", "nostore", "dl"),
                          EXIT_NOT_FOUND, "nostore")
    assert not (tmp_path / "dl").exists()


def test_datastore_upload_missing_source_is_not_found(ws, tmp_path: Path) -> None:
    result = invoke(*WS, "datastore", "upload", "workspaceblobstore", str(tmp_path / "absent"))
    assert_one_error_line(result, EXIT_NOT_FOUND, "absent")


# --- the installed console script ------------------------------------------------------------

def _console_script() -> list[str]:
    found = shutil.which("simml") or shutil.which("simml", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("the `simml` console script is not installed (pip install -e .)")
    return [found]


def test_console_script_version_and_not_found(ws, tmp_path: Path) -> None:
    script = _console_script()
    done = subprocess.run([*script, "--version"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=dict(os.environ))
    assert done.returncode == 0 and done.stdout.startswith("simml "), done.stderr
    done = subprocess.run([*script, "-w", "test-ws", "run", "show", "no-such-run"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=dict(os.environ))
    assert done.returncode == EXIT_NOT_FOUND, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith("error: ") and "no-such-run" in done.stderr
    assert "Traceback" not in done.stderr
