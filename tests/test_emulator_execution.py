"""The emulator's execution routes (`simml/emulator/execution.py`): the real azureml-core /
azureml-train-core client (its own venv) submits through `snapshotrun` and `localrun` to the shared
`simml serve`, and simml's runner executes the jobs; their scripts log through the real SDK's
`Run.get_context()` (or simml's own `Run`). Bad submissions over plain HTTP get Azure's error shape
and create nothing.

The first client test builds the job environment (azureml-core, scikit-learn, joblib) with uv,
once per session: the others reuse it or run user-managed (the emulator's interpreter)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from _emulator_server import REPO, SCOPE, Emulator

PROJECT = Path(__file__).resolve().parent / "emulator_client" / "execution_project"
EXECUTION = f"/execution/v1.0{SCOPE}/experiments"
HISTORY = f"/history/v1.0{SCOPE}/experiments"
AZURE_STATUSES = ["NotStarted", "Starting", "Preparing", "Queued", "Running", "Finalizing",
                  "Completed"]


def _simml_run(emulator: Emulator, run_id: str) -> Any:
    from simml.core.run import Run
    return Run.get(emulator.workspace(), run_id)


def _logged(stdout: str) -> dict[str, Any]:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("LOGGED ")]
    assert lines, f"the job's LOGGED line was not streamed:\n{stdout[-3000:]}"
    return json.loads(lines[-1][len("LOGGED "):])


def _raw(emulator: Emulator, method: str, path: str, body: bytes,
         headers: dict[str, str]) -> tuple[int, bytes]:
    """A request whose answer is not JSON (localrun's zip)."""
    import urllib.error
    import urllib.request

    from simml.emulator.protocol import mint_token
    request = urllib.request.Request(emulator.url + path, data=body, method=method,
                                     headers={**headers, "Authorization":
                                              f"Bearer {mint_token(emulator.key)}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _runs_of(emulator: Emulator, experiment: str) -> list[str]:
    from simml.core.experiment import Experiment
    return [r.id for r in Experiment(emulator.workspace(), experiment).get_runs()]


# --- the real client -----------------------------------------------------------------------------

def test_sklearn_estimator_logs_through_the_real_sdk(emulator: Emulator,
                                                      azureml_venv: Path) -> None:
    before = len(emulator.log())
    result = emulator.run_client(azureml_venv, "execution_estimator.py",
                                 str(PROJECT / "train_sdk.py"), "sklearn-iris")
    entries = emulator.log()[before:]
    out = result["_stdout"]

    assert result["status"] == result["details_status"] == "Completed"
    assert result["run_class"] == "ScriptRun" and result["target"] == "cpu-cluster"
    # the job's script got a _SubmittedRun logging here: what it logged is what the client reads
    assert "run class: _SubmittedRun id: " + result["run_id"] in out
    assert result["metrics"] == _logged(out)
    assert result["metrics"]["Kernel type"] == "linear" and result["metrics"]["Penalty"] == 1.0
    assert f"endpoint: {emulator.url}" in out
    assert "emulator key visible: False" in out  # the job has its run token, not the key
    assert "outputs/model.joblib" in result["files"]
    # wait_for_completion(show_output=True): the streamed logs (the driver log until the job
    # starts, then the job's std_log.txt, as Azure's client does), then Azure's summary
    assert "Streaming user_logs/std_log.txt" in out or \
        "Streaming azureml-logs/70_driver_log.txt" in out
    assert "Execution Summary" in out and f"RunId: {result['run_id']}" in out
    # the client's run id, run by simml's runner through Azure's statuses on the cluster
    run = _simml_run(emulator, result["run_id"])
    driver_log = Path(emulator.root) / f"driver-{result['run_id']}.txt"
    run.download_file("azureml-logs/70_driver_log.txt", str(driver_log))
    scaling = driver_log.read_text()
    assert "cpu-cluster: 0 -> 1 nodes" in scaling or "got node" in scaling  # a node was used
    details = run.get_details()
    assert [h["status"] for h in details["statusHistory"]] == AZURE_STATUSES
    assert details["runDefinition"]["target"] == "cpu-cluster"
    assert details["runDefinition"]["arguments"] == ["--kernel", "linear", "--penalty", 1.0]
    assert run.get_metrics() == result["metrics"]
    assert run.get_properties()["ContentSnapshotId"]
    # the estimator's legacy pins were mapped, azureml-defaults became azureml-core (kept)
    pip = details["runDefinition"]["environment"]["python"]["condaDependencies"][
        "dependencies"][-1]["pip"]
    assert "azureml-core" in pip and "azureml-defaults" not in pip
    assert "scikit-learn==0.20.3" not in pip
    assert result["run_id"] in _runs_of(emulator, "sklearn-iris")
    listed = subprocess.run([sys.executable, "-m", "simml.cli", "--json", "run", "list",
                             "--experiment", "sklearn-iris"], cwd=emulator.server_dir,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "SIMML_HOME": str(emulator.home)})
    assert listed.returncode == 0, listed.stderr
    assert result["run_id"] in {doc.get("run_id", doc.get("id"))
                                for doc in json.loads(listed.stdout)}  # `simml run list`
    # the job's variables are in the run definition, its token is not shown
    status, dto = emulator.request("GET", f"{HISTORY}/sklearn-iris/runs/{result['run_id']}")
    shown = dto["runDefinition"]["environmentVariables"]
    assert status == 200 and shown["AZUREML_SERVICE_ENDPOINT"] == emulator.url
    assert "AZUREML_RUN_TOKEN" not in shown
    # Azure's sequence: snapshot, snapshotrun, the PATCH naming the snapshot, polling
    sequence = [(e["method"], e["template"]) for e in entries]
    assert all(e["template"] != "unknown" for e in entries), entries
    snapshotrun = sequence.index(("POST", "/execution/v1.0" + _scope() +
                                  "/experiments/{exp}/snapshotrun"))
    patch = ("PATCH", "/history/v1.0" + _scope() + "/experiments/{exp}/runs/{run}")
    assert patch in sequence[snapshotrun:]
    # the job's own requests carried its run token (it logged metrics: accepted)
    assert any(e["template"].endswith("/runs/{run}/batch") for e in entries)


def test_seed_train_iris_with_simmls_run_and_a_data_reference(emulator: Emulator,
                                                              azureml_venv: Path,
                                                              tmp_path: Path) -> None:
    """The seed doc's flow through the client: the repo's train_iris.py (simml's Run) reading the
    iris.csv the client uploaded, mounted as --data-folder."""
    import numpy as np
    from sklearn import datasets
    x, y = datasets.load_iris(return_X_y=True)
    data = tmp_path / "iris-data"
    data.mkdir()
    np.savetxt(data / "iris.csv", np.column_stack([x, y]), delimiter=",", fmt="%g",
               header="a,b,c,d,class", comments="")
    result = emulator.run_client(azureml_venv, "execution_estimator.py",
                                 str(REPO / "train_iris.py"), "sklearn-iris", str(data))
    assert result["status"] == "Completed"
    metrics = result["metrics"]
    assert metrics["Kernel type"] == "linear" and metrics["Penalty"] == 1.0
    assert 0.9 <= metrics["Accuracy"] <= 1.0
    out = result["_stdout"]
    assert "Read 150 rows from " in out and "Accuracy of SVM classifier on test set" in out
    assert "outputs/model.joblib" in result["files"]
    run = _simml_run(emulator, result["run_id"])
    assert run.get_metrics() == metrics
    definition = run.get_details()["runDefinition"]
    reference = definition["arguments"][-1]
    assert definition["arguments"][:-1] == ["--kernel", "linear", "--penalty", 1.0,
                                            "--data-folder"]
    assert reference.startswith("$AZUREML_DATAREFERENCE_")


def test_local_script_run_config_goes_through_localrun(emulator: Emulator,
                                                       azureml_venv: Path) -> None:
    before = len(emulator.log())
    result = emulator.run_client(azureml_venv, "execution_local.py",
                                 str(PROJECT / "train_sdk.py"), "local-runs")
    entries = emulator.log()[before:]
    assert result["status"] == "Completed" and result["target"] == "local"
    assert result["metrics"] == _logged(result["_stdout"])
    assert result["metrics"]["Kernel type"] == "rbf" and result["metrics"]["Penalty"] == 0.5
    # the Invocation.sh the client started does nothing: simml's runner ran the job
    assert result["invocation"] is not None and "exit 0" in result["invocation"]
    templates = [e["template"] for e in entries]
    assert "/execution/v1.0" + _scope() + "/experiments/{exp}/localrun" in templates
    details = _simml_run(emulator, result["run_id"]).get_details()
    assert [h["status"] for h in details["statusHistory"]] == [
        s for s in AZURE_STATUSES if s != "Queued"]  # no cluster queue on this machine


def test_failures_unknown_target_and_cancel_through_the_client(emulator: Emulator,
                                                               azureml_venv: Path) -> None:
    experiment = f"failures-{uuid.uuid4().hex[:6]}"
    result = emulator.run_client(azureml_venv, "execution_failures.py", str(PROJECT), experiment)
    # a crashing script: the client's ActivityFailedException carries the traceback
    crash = result["crash"]
    assert crash["type"] == "ActivityFailedException"
    assert "ZeroDivisionError" in crash["message"] and "divide(1, 0)" in crash["message"]
    assert result["crash_status"] == "Failed"
    assert _simml_run(emulator, result["crash_id"]).get_status() == "Failed"
    # an unknown compute target: the client's own exception, naming it; no run was made
    unknown = result["unknown_target"]
    assert unknown["type"] == "ExperimentExecutionException"
    assert "no-such-cluster" in unknown["message"]
    # cancel: simml's runner stopped the job; both runs end Canceled
    for target in ("local", "cpu-cluster"):
        canceled = result[f"cancel_{target}"]
        assert canceled["seen"] == "Running", canceled
        assert canceled["status"] == "Canceled", canceled
        history = [h["status"] for h in _simml_run(emulator, canceled["id"]).get_details()[
            "statusHistory"]]
        assert history[-2:] == ["CancelRequested", "Canceled"]
    assert len(_runs_of(emulator, experiment)) == 3  # crash + 2 canceled, none for the bad target


# --- plain HTTP: bad submissions change nothing -------------------------------------------------

def _scope() -> str:
    from simml.emulator.protocol import ARM_SCOPE
    return ARM_SCOPE


def _configuration(**changes: Any) -> dict[str, Any]:
    configuration = {"script": "train.py", "arguments": [], "target": "local",
                     "framework": "Python", "communicator": "None", "nodeCount": 1,
                     "environment": {"name": "e", "python": {"userManagedDependencies": True}},
                     "history": {"snapshotProject": True}}
    configuration.update(changes)
    return configuration


def _snapshotrun(emulator: Emulator, run_id: str, body: Any) -> tuple[int, Any]:
    return emulator.request("POST", f"{EXECUTION}/http-checks/snapshotrun?runId={run_id}",
                            json.dumps(body).encode(), headers={"Content-Type":
                                                                "application/json"})


@pytest.mark.parametrize("body, inner", [
    ({"SnapshotId": "x"}, "BadArgument"),                                    # no Configuration
    ({"Configuration": _configuration()}, "SnapshotNotFound"),               # no snapshot
    ({"Configuration": _configuration(), "SnapshotId": "no-such-snapshot"}, "SnapshotNotFound"),
    ({"Configuration": _configuration(framework="PySpark"), "SnapshotId": "s"}, "NotSupported"),
    ({"Configuration": _configuration(nodeCount=2), "SnapshotId": "s"}, "NotSupported"),
    ({"Configuration": _configuration(target="no-such-cluster"), "SnapshotId": "s"},
     "ComputeNotFound"),
    ({"Configuration": _configuration(), "SnapshotId": "s", "ParentRunId": "p"}, "NotSupported"),
    ({"Configuration": _configuration(data={"d": {"dataLocation": {}}}), "SnapshotId": "s"},
     "NotSupported"),                                                        # datasets
    ({"Configuration": _configuration(dataReferences={"d": {
        "dataStoreName": "no_such_store", "mode": "Mount", "pathOnDataStore": "x"}}),
      "SnapshotId": "s"}, "NotFound"),
    ({"Configuration": _configuration(dataReferences={"d": {
        "dataStoreName": "workspaceblobstore", "mode": "Mount", "pathOnDataStore": "../../etc"}}),
      "SnapshotId": "s"}, "BadArgument"),                                    # traversal
    ({"Configuration": _configuration(dataReferences={"d": {
        "dataStoreName": "workspaceblobstore", "mode": "Upload", "pathOnDataStore": "x"}}),
      "SnapshotId": "s"}, "NotSupported"),
])
def test_bad_snapshotrun_is_refused_in_azures_shape(emulator: Emulator, body: dict[str, Any],
                                                     inner: str) -> None:
    run_id = f"bad_{uuid.uuid4().hex[:8]}"
    status, answer = _snapshotrun(emulator, run_id, body)
    assert 400 <= status < 500, answer
    assert answer["error"]["code"] == "UserError"
    assert answer["error"]["innerError"]["code"] == inner
    status, _ = emulator.request("GET", f"{HISTORY}/http-checks/runs/{run_id}")
    assert status == 404  # nothing was created


@pytest.mark.parametrize("run_id", ["..", "a/b", "%2E%2E%2Fx", "-x", ""])
def test_unsafe_or_missing_run_ids_are_refused(emulator: Emulator, run_id: str) -> None:
    status, answer = _snapshotrun(emulator, run_id, {"Configuration": _configuration(),
                                                     "SnapshotId": "s"})
    assert status == 400, answer
    assert answer["error"]["code"] == "UserError"


def test_an_existing_run_id_is_refused(emulator: Emulator) -> None:
    from simml.core.experiment import Experiment
    existing = Experiment(emulator.workspace(), "http-checks").start_logging()
    status, answer = _snapshotrun(emulator, existing.id, {"Configuration": _configuration(),
                                                          "SnapshotId": "s"})
    assert status == 400 and "already exists" in answer["error"]["message"]
    existing.complete()


def _multipart(definition: bytes, boundary: str = "simmlboundary") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"definition.json\"\r\n\r\n").encode() + definition + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_localrun_waits_for_the_snapshot_and_refuses_a_patch_without_one(
        emulator: Emulator) -> None:
    run_id = f"local_{uuid.uuid4().hex[:8]}"
    body, ctype = _multipart(json.dumps({"Configuration": _configuration()}).encode())
    status, answer = _raw(emulator, "POST", f"{EXECUTION}/http-checks/localrun?runId="
                                          f"{run_id}", body, {"Content-Type": ctype})
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(answer)) as archive:
        script = archive.read("azureml-setup/Invocation.sh").decode()
    assert script.startswith("#!/bin/bash") and "exit 0" in script
    status, _ = emulator.request("GET", f"{HISTORY}/http-checks/runs/{run_id}")
    assert status == 404  # submitted only once the client names its snapshot
    status, answer = emulator.request("PATCH", f"{HISTORY}/http-checks/runs/{run_id}",
                                      json.dumps({"runId": run_id, "properties": {}}).encode())
    assert status == 400 and answer["error"]["innerError"]["code"] == "SnapshotNotFound"


@pytest.mark.parametrize("body, ctype", [
    (b"{}", "application/json"),                                    # not multipart
    (_multipart(b"{not json")[0], _multipart(b"")[1]),              # definition.json not JSON
    (_multipart(json.dumps({"Configuration": _configuration(
        history={"snapshotProject": False})}).encode())[0], _multipart(b"")[1]),
])
def test_bad_localrun_is_refused(emulator: Emulator, body: bytes, ctype: str) -> None:
    run_id = f"badlocal_{uuid.uuid4().hex[:8]}"
    status, answer = _raw(emulator, "POST", f"{EXECUTION}/http-checks/localrun?runId="
                                          f"{run_id}", body, {"Content-Type": ctype})
    assert status == 400
    assert json.loads(answer)["error"]["code"] == "UserError"


def test_zip_execution_is_refused_naming_the_way_out(emulator: Emulator) -> None:
    status, answer = emulator.request("POST", f"{EXECUTION}/http-checks/startrun?runId=x1",
                                      b"{}")
    assert status == 400 and answer["error"]["innerError"]["code"] == "NotSupported"
    assert "AML_FORCE_EXECUTE_WITH_ZIP" in answer["error"]["message"]


def test_run_token_refresh_is_a_token_for_the_run(emulator: Emulator) -> None:
    from simml.core.experiment import Experiment
    from simml.emulator.protocol import verify_token
    run = Experiment(emulator.workspace(), "http-checks").start_logging()
    status, answer = emulator.request("GET", f"{HISTORY}/http-checks/runs/{run.id}/token")
    assert status == 200
    claims = verify_token(emulator.key, answer["token"])
    assert claims["scope"] == run.id
    assert re.match(r"\d{4}-\d\d-\d\dT", answer["expiryTimeUtc"])
    status, _ = emulator.request("GET", f"{HISTORY}/http-checks/runs/no-such-run/token")
    assert status == 404
    run.complete()


# --- pure parts -----------------------------------------------------------------------------------

def test_environment_mapping_for_the_estimators_definition() -> None:
    from simml.emulator.execution import environment_definition
    from simml.train.estimator import _installed_version
    azure = {"name": "default-environment", "environmentVariables": {"EXAMPLE_ENV_VAR": "x"},
             "python": {"userManagedDependencies": False, "interpreterPath": "python",
                        "condaDependencies": {"name": "project_environment", "dependencies": [
                            "python=3.6.2", {"pip": [
                                "--find-links https://pypi.python.org/simple/index.html",
                                "--extra-index-url https://pypi.python.org/simple",
                                "--extra-index-url https://my.index.example/simple",
                                "joblib", "azureml-defaults~=1.61.0", "scikit-learn==0.20.3",
                                "scipy==1.2.1"]}], "channels": ["conda-forge"]}},
             "docker": {"enabled": False, "baseImage": "mcr.microsoft.com/azureml/x"}}
    definition = environment_definition(azure)
    dependencies = definition["python"]["condaDependencies"]["dependencies"]
    pip = [d for d in dependencies if isinstance(d, dict)][0]["pip"]
    assert "python=3.6.2" not in dependencies  # the legacy pin: this interpreter instead
    assert pip == ["--extra-index-url https://my.index.example/simple", "joblib",
                   "azureml-core~=1.61.0",
                   f"scikit-learn=={_installed_version('scikit-learn')}",
                   f"scipy=={_installed_version('scipy')}"]
    assert definition["simml"] == {"installAzureml": True}
    assert definition["environmentVariables"] == {"EXAMPLE_ENV_VAR": "x"}
    assert definition["docker"]["enabledSetExplicitly"] is False  # the workspace decides
    # another environment keeps its own pins
    other = environment_definition({"name": "e", "python": {"condaDependencies": {
        "dependencies": ["python=3.10", {"pip": ["scikit-learn==1.5.0"]}]}}})
    assert other["python"]["condaDependencies"]["dependencies"] == [
        "python=3.10", {"pip": ["scikit-learn==1.5.0"]}]


def test_the_builder_keeps_azureml_packages_only_when_asked() -> None:
    from simml_local.environments import resolve_spec
    python = {"userManagedDependencies": False, "condaDependencies": {"dependencies": [
        {"pip": ["azureml-core==1.61.0", "joblib"]}]}}
    assert resolve_spec({"name": "a", "python": python}).pip == ["joblib"]
    kept = resolve_spec({"name": "a", "python": python, "simml": {"installAzureml": True}})
    assert kept.pip == ["azureml-core==1.61.0", "joblib"]


def test_job_hook_flushes_submitted_runs_at_exit_and_chains(tmp_path: Path) -> None:
    """The job hook (``jobhook/sitecustomize.py``) flushes each ``_SubmittedRun`` when the
    script ends, from the main thread before threads are joined, and runs the sitecustomize it
    hides."""
    from simml.emulator.execution import JOB_HOOK
    fake = tmp_path / "fake"
    (fake / "azureml" / "core").mkdir(parents=True)
    for package in ("azureml", "azureml/core"):
        (fake / package / "__init__.py").write_text("")
    flushed = tmp_path / "flushed.txt"
    (fake / "azureml" / "core" / "run.py").write_text(
        "import threading\n"
        "class _SubmittedRun:\n"
        "    __instances = {}\n"
        "    def __init__(self, id):\n"
        "        self.id = id\n"
        "        _SubmittedRun.__instances[id] = self\n"
        "    def flush(self):\n"
        f"        open({str(flushed)!r}, 'a').write(self.id + ' '"
        " + threading.current_thread().name + '\\n')\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text(
        f"open({str(tmp_path / 'chained.txt')!r}, 'w').write('yes')\n")
    script = tmp_path / "script.py"
    script.write_text("from azureml.core.run import _SubmittedRun\n_SubmittedRun('run-1')\n"
                      "raise SystemExit(3)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin",
                               "PYTHONPATH": f"{JOB_HOOK}:{fake}:{other}"}, timeout=60)
    assert done.returncode == 3, done.stderr
    assert flushed.read_text() == "run-1 MainThread\n"
    assert (tmp_path / "chained.txt").read_text() == "yes"
