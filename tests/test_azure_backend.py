"""The azure backend (``backends/simml_azure``): simml code on Azure ML by configuration alone.

Everything here runs the real ``azureml-core`` client against the real emulator (`simml serve`,
the shared ``emulator`` fixture): simml code runs in the simml-with-azure venv
(``tests/_azure_backend.py``) as subprocesses whose config.json says ``"backend": "azure"``. No
azureml class is mocked. Tests that only real Azure can answer are marked ``azure_live`` and run
when ``SIMML_AZURE_LIVE_CONFIG`` names a config.json of a real workspace (docs/azure.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest

from _azure_backend import REPO, azure_config, azure_venv_python, client_env, run_python
from _contract import CONTRACT_FILES, EMULATOR_GAPS

SCRIPTS = Path(__file__).resolve().parent / "azure_backend"
CONTRACT_SELECTION = "contract and not local_only"


@pytest.fixture(scope="module")
def azure_python() -> Path:
    return azure_venv_python()


def _result(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout[-3000:]}\n" \
                                 f"{done.stderr[-5000:]}"
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no RESULT line:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


# --- installing and loading ----------------------------------------------------------------------

def test_missing_extra_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    """simml installed with the azure entry point but without the azure extra (this interpreter
    has no azureml): selecting the backend names the extra to install."""
    import importlib.util
    if importlib.util.find_spec("azureml") is not None:
        pytest.skip("this interpreter has azureml installed; the case needs one without it")
    # The entry point as an install of simml declares it (a dist-info on the path), so the check
    # does not depend on when this checkout was last installed.
    dist = tmp_path / "site" / "simml_azure_entry-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: simml-azure-entry\n"
                                   "Version: 0\n")
    (dist / "entry_points.txt").write_text(
        "[simml.backends]\nazure = simml_azure.plugin:AzureBackend\n")
    work = tmp_path / "work"
    (work / ".azureml").mkdir(parents=True)
    (work / ".azureml" / "config.json").write_text(json.dumps(
        {"subscription_id": "s", "resource_group": "r", "workspace_name": "ws1",
         "backend": "azure"}))
    code = ("from simml.core import Workspace\n"
            "from simml.exceptions import BackendNotFoundException\n"
            "try:\n    Workspace.from_config()\n"
            "except BackendNotFoundException as exc:\n"
            "    print(type(exc).__name__ + '|' + exc.message)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "site"), str(REPO / "backends"), str(REPO)])}
    env.pop("SIMML_BACKEND", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    name, _, message = done.stdout.strip().partition("|")
    assert name == "AzureExtraMissingException"
    assert "pip install 'simml[azure]'" in message and "azureml" in message


def test_importing_simml_imports_no_azureml(azure_python: Path, tmp_path: Path) -> None:
    """Where azureml is installed, importing simml (its API, training, the backend's plug-in
    module) still imports none of it: only opening an Azure workspace does."""
    code = ("import sys\n"
            "import simml, simml.core, simml.train.sklearn, simml.core.compute\n"
            "import simml_azure, simml_azure.plugin, simml_azure.store\n"
            "from simml.plugins import load_backend\n"
            "backend = load_backend('azure', {})\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'azureml'))\n")
    done = run_python(azure_python, ["-c", code], tmp_path,
                      {**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- bad input: each a typed simml error, Azure's message kept ------------------------------------

def test_bad_input_gives_typed_errors(emulator: Any, azure_python: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    azure_config(emulator, work)
    done = run_python(azure_python, [str(SCRIPTS / "bad_input.py")], work,
                      client_env(emulator, tmp_path / "home", **emulator.client_env))
    result = _result(done)
    assert result["azureml_after_import"] == []
    assert result["backend"] == "azure"

    def error(case: str, name: str, *texts: str) -> dict[str, Any]:
        found = result[case]
        assert found.get("error") == name, (case, found)
        for text in texts:
            assert text in found["message"], (case, text, found["message"])
        return found

    error("no_subscription", "ConfigurationException", "subscription_id")
    error("get_without_details", "ConfigurationException", "subscription", "resource group")
    # an auth failure says what to do, and keeps the emulator's own words
    wrong = error("wrong_key", "AuthenticationException", "not issued by this emulator",
                  "Set SIMML_EMULATOR_KEY to the key `simml serve` printed")
    assert wrong["inner"] is not None
    error("no_key", "AuthenticationException", "export SIMML_EMULATOR_KEY")
    error("sp_without_secret", "AuthenticationException", "export SIMML_TEST_SP_SECRET")
    error("unknown_auth", "ConfigurationException", "'password'", "service_principal")
    # Azure's errors as simml's typed errors, the service's message kept
    run = error("unknown_run", "NotFoundException", "Run no-such-run was not found")
    assert "LookupError" in run["bases"] and run["inner"] == "ServiceException"
    error("unknown_compute", "ComputeTargetException", "ComputeTargetNotFound", "no-such-cpu")
    error("bad_vm_size", "ComputeTargetException", "Unknown vm_size 'Standard_Potato'")
    assert "bad-size-cpu" not in result["compute_after_bad_size"]
    # what Azure cannot do is refused, not silently different
    error("manual_clock", "UserErrorException", "Azure's time is real")
    error("workspace_create", "UserErrorException", "az ml workspace create")
    # a sweep on 'local': Azure's HyperDrive cannot run it, so nothing is sent
    sweep = error("hyperdrive", "HyperDriveConfigException", "not on 'local'",
                  "Nothing was submitted")
    assert "UserErrorException" in sweep["bases"] and "ValueError" in sweep["bases"]
    from simml.entities import RunQuery
    assert emulator.workspace()._history().query_runs(
        RunQuery(experiment_name="bad-input-sweep", include_children=True)) == []


# --- what Azure can do that the local backend does too ------------------------------------------

def test_registered_storage_transfers_and_cancel_events(emulator: Any, azure_python: Path,
                                                        simml_workspace: Any,
                                                        tmp_path: Path) -> None:
    """A blob container registered through the azure backend (with an account key, passed to
    Azure's registration) is a datastore files go to and come from; the emulator's workspace
    holds them. A file share registers too, but its transfers are refused, saying why, and a
    folder of this machine is not registered. An
    interactive run's cancel reaches Azure as CancelRequested then Canceled, the status history
    the local backend records."""
    from _contract import unique
    from simml.core import Datastore, Experiment, Run
    suffix = unique("s").split("-")[1]
    name, container, account = f"reg_{suffix}", f"reg-{suffix}", f"simmlreg{suffix}"
    work = tmp_path / "work"
    azure_config(emulator, work)
    before = len(emulator.log())
    done = run_python(azure_python, [str(SCRIPTS / "storage.py"), name, container, account,
                                     unique("azure-cancel")], work,
                      client_env(emulator, tmp_path / "home", **emulator.client_env))
    result = _result(done)
    assert result["type"] == "AzureBlobDatastore"
    assert result["files"] == ["in/d/a.txt"] and result["stat"] == [["in/d/a.txt", 5]]
    assert result["read"] == "ell"
    assert result["downloaded"] == 1 and result["content"] == "hello"
    served = Datastore.get(emulator.workspace(), name)
    assert (served.container_name, served.account_name) == (container, account)
    assert served.list_files() == ["in/d/a.txt"]
    assert result["share_type"] == "AzureFileDatastore"
    assert "AzureFile" in result["share_refused"] and "blob" in result["share_refused"]
    # a folder of this machine is refused: Azure's jobs could not read it
    assert "register_local_folder is a local-backend feature" in result["folder_refused"]
    assert {name, f"{name}_share"} <= set(result["names"])
    assert f"{name}_folder" not in result["names"]
    assert result["status"] == "Canceled"
    # Start, CancelRequested, Canceled: one event per status the client drives
    assert len([e for e in emulator.log()[before:] if e["template"].endswith("/events")
                and e["path"].endswith(f"/runs/{result['run']}/events")]) == 3

    def statuses(run: Any) -> list[str]:
        return [h["status"] for h in run.get_details()["statusHistory"]]

    local = Experiment(simml_workspace, "cancel").start_logging()
    local.cancel()
    assert statuses(local) == ["NotStarted", "Running", "CancelRequested", "Canceled"]
    assert statuses(Run.get(emulator.workspace(), result["run"])) == statuses(local)


# --- the contract suite ---------------------------------------------------------------------------

def _junit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Outcome -> [(test id, detail)] from a JUnit XML report."""
    outcomes: dict[str, list[tuple[str, str]]] = {"passed": [], "failed": [], "skipped": []}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '').split('.')[-1]}.py::{case.get('name')}"
        failure = case.find("failure") if case.find("failure") is not None \
            else case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            outcomes["failed"].append((test_id, (failure.get("message") or "")[:800]))
        elif skipped is not None:
            outcomes["skipped"].append((test_id, skipped.get("message") or ""))
        else:
            outcomes["passed"].append((test_id, ""))
    return outcomes


def run_contract_suite(python: Path, env: dict[str, str], report: Path, cwd: Path
                       ) -> dict[str, list[tuple[str, str]]]:
    done = subprocess.run(
        [str(python), "-m", "pytest", "-m", CONTRACT_SELECTION, "-p", "no:cacheprovider",
         "-q", "--junitxml", str(report), *CONTRACT_FILES],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    assert report.exists(), f"pytest wrote no report:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return _junit(report)


@pytest.mark.slow
def test_contract_suite_passes_on_azure_via_the_emulator(emulator: Any, azure_python: Path,
                                                         tmp_path: Path) -> None:
    """The backend contract tests, unchanged, on the azure backend against the emulator: none
    fails, and each skip is one of the emulator's listed gaps (``tests/_contract.py``)."""
    config = azure_config(emulator, tmp_path / "config")
    env = client_env(emulator, tmp_path / "home", **emulator.client_env,
                     SIMML_CONTRACT_BACKEND="azure", SIMML_CONTRACT_CONFIG=str(config),
                     SIMML_CONTRACT_TARGET="emulator")
    outcomes = run_contract_suite(azure_python, env, tmp_path / "azure.xml", REPO)
    summary = {k: len(v) for k, v in outcomes.items()}
    print(f"contract on azure via the emulator: {summary}")
    assert not outcomes["failed"], "\n\n".join(f"{t}: {m}" for t, m in outcomes["failed"])
    assert outcomes["passed"], outcomes
    allowed = set(EMULATOR_GAPS.values())
    unexplained = [(t, why) for t, why in outcomes["skipped"] if why not in allowed]
    assert not unexplained, unexplained


@pytest.mark.azure_live
def test_contract_suite_passes_on_real_azure(azure_python: Path, tmp_path: Path) -> None:
    """The same suite against a real workspace (``SIMML_AZURE_LIVE_CONFIG``: its config.json,
    with an ``auth`` the environment can satisfy, e.g. a service principal): no skip at all."""
    live = os.environ.get("SIMML_AZURE_LIVE_CONFIG")
    if not live:
        pytest.skip("SIMML_AZURE_LIVE_CONFIG is not set: no real Azure ML workspace to test "
                    "against (docs/azure.md, 'Tests against real Azure')")
    config = json.loads(Path(live).read_text())
    config["backend"] = "azure"
    target = tmp_path / "config" / ".azureml" / "config.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMML_CONTRACT")}
    env.update(SIMML_CONTRACT_BACKEND="azure", SIMML_CONTRACT_CONFIG=str(target),
               PYTHONWARNINGS="ignore")
    outcomes = run_contract_suite(azure_python, env, tmp_path / "live.xml", REPO)
    assert not outcomes["failed"], "\n\n".join(f"{t}: {m}" for t, m in outcomes["failed"])
    assert not [t for t, why in outcomes["skipped"] if "not a contract test" not in why]


# --- HyperDrive: simml's sweep through Azure's HyperDrive service ---------------------------------

def _accuracy(parameters: dict[str, Any]) -> float:
    """What the sweep's trial script logs for its arguments."""
    return round(0.95 - abs(float(parameters["--penalty"]) - 1.0) / 10
                 - (0.02 if parameters.get("--kernel", "linear") == "rbf" else 0.0), 6)


def test_sweep_settings_become_the_sdks_hyperdrive_objects(azure_python: Path,
                                                           tmp_path: Path) -> None:
    """Every sampling, expression and policy simml has reaches Azure's HyperDrive service as
    simml serialises it (the SDK's own objects, built with its functions and checks); simml's
    Bayesian ``batchSize`` is left out; a setting the SDK refuses is a typed error."""
    done = run_python(azure_python, [str(SCRIPTS / "sweep_mapping.py")], tmp_path,
                      {**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)
    result = _result(done)
    for name in ("random", "grid"):
        pair = result["sampling"][name]
        assert pair["sdk"]["parameter_space"] == pair["simml"]["parameter_space"], name
        assert pair["sdk"]["name"] == pair["simml"]["name"]
    assert result["sampling"]["random"]["sdk"]["properties"] == {"rngSeed": 3}
    bayesian = result["sampling"]["bayesian"]
    assert bayesian["sdk"]["parameter_space"] == bayesian["simml"]["parameter_space"]
    assert bayesian["sdk"]["properties"] == {"rngSeed": 1}   # batchSize is simml's own
    for name, pair in result["policy"].items():
        assert pair["sdk"] == pair["simml"], name
    refused = result["fractional_q"]
    assert refused["error"] == "HyperDriveConfigException", refused
    assert "qnormal expects q to be an int" in refused["message"]
    assert "UserErrorException" in refused["bases"]


def test_sweep_settings_are_read_back_from_azures_parent_tags() -> None:
    """On Azure a sweep parent carries its settings in ``_aml_system_*`` tags, not in a run
    definition: they become simml's sweep definition (what ``HyperDriveRun`` reads)."""
    from simml_azure.azureml_api import sweep_definition, without_options
    tags = {"_aml_system_generator_config": json.dumps(
                {"name": "RANDOM", "parameter_space": {"--penalty": ["uniform", [0.5, 2.0]]},
                 "properties": {"rngSeed": 7}}),
            "_aml_system_primary_metric_config": '{"name": "Accuracy", "goal": "minimize"}',
            "_aml_system_policy_config": '{"name": "Default"}',
            "_aml_system_max_total_jobs": "4", "_aml_system_max_concurrent_jobs": "2",
            "max_duration_minutes": "30"}   # an older sweep: no prefix
    definition = sweep_definition(tags, "cpu")
    assert definition == {"target": "cpu", "hyperdrive": {
        "generator": json.loads(tags["_aml_system_generator_config"]),
        "policy": {"name": "Default"}, "primaryMetricName": "Accuracy",
        "primaryMetricGoal": "minimize", "maxTotalRuns": 4, "maxConcurrentRuns": 2,
        "maxDurationMinutes": 30.0}}
    assert sweep_definition({"_aml_system_max_total_jobs": "4"}, "cpu") is None
    assert sweep_definition({**tags, "_aml_system_generator_config": "{not json"}, "c") is None
    # the child's own value of a swept option is left out (Azure appends the sampled one)
    assert without_options(["--kernel", "linear", "--penalty", 1.0, "-v"],
                           {"penalty": ["uniform", [0, 1]]}) == ["--kernel", "linear", "-v"]


@pytest.mark.slow
def test_sweep_runs_through_azures_hyperdrive_service(emulator: Any, azure_python: Path,
                                                      tmp_path: Path) -> None:
    """A sweep written against simml (Random sampling, a Bandit policy, 4 trials 2 at a time on
    an AmlCompute cluster) submitted on the azure backend becomes the SDK's HyperDriveConfig,
    submitted through Azure's HyperDrive service with simml's parent id; simml's HyperDriveRun
    observes it, lists its trials, finds the best one and cancels a second sweep, all through
    the backend's hooks. The emulator's own simml workspace holds the same sweep."""
    from _contract import unique
    from _emulator_server import SCOPE
    from simml.core.run import Run
    from simml.train.hyperdrive import HyperDriveRun
    experiment, cluster = unique("azure-sweep"), unique("hd")[:16]
    work = tmp_path / "work"
    azure_config(emulator, work)
    before = len(emulator.log())
    done = run_python(azure_python, [str(SCRIPTS / "hyperdrive.py"), experiment, cluster], work,
                      client_env(emulator, tmp_path / "home", **emulator.client_env,
                                 SIMML_HOME=str(tmp_path / "client-home")), timeout=900)
    result = _result(done)
    entries = emulator.log()[before:]
    assert result["backend"] == "azure"
    parent = result["id"]
    # both sweeps went to the HyperDrive service with simml's parent id, the cancel too
    assert [e["status"] for e in entries
            if e["template"] == "/hyperdrive/v1.0/{scope}/hdruns/{run}"] == [201, 201]
    assert [e["status"] for e in entries
            if e["template"] == "/hyperdrive/v1.0/{scope}/runs/{run}/cancel"] == [200]
    assert result["class"] == "HyperDriveRun" and parent.startswith("HD_")
    assert result["status"] == "Completed", done.stdout[-3000:]
    assert result["primary_metric"] == "Accuracy"   # read back from Azure's run by id
    # four trials, each its own child whose simml Run.get_context() logged to it
    children = result["children"]
    assert sorted(children) == [f"{parent}_{n}" for n in range(4)]
    for child_id, child in children.items():
        assert child["status"] == "Completed", child   # slack 0.2 never stops these scores
        assert child["parent"] == parent
        assert child["tags"]["seen_run_id"] == child_id
        assert child["tags"]["seen_job_context"] == "simml_azure.azureml_api:job_context_run"
    hyperparameters = {k: json.loads(v) for k, v in result["hyperparameters"].items()}
    assert sorted(hyperparameters) == sorted(children)
    for child_id, parameters in hyperparameters.items():
        assert 0.5 <= parameters["--penalty"] <= 2.0 and parameters["--kernel"] in ("linear",
                                                                                    "rbf")
        assert result["metrics"][child_id] == {"Accuracy": _accuracy(parameters)}
    # the best run is the child with the best logged metric
    logged = {child_id: metrics["Accuracy"] for child_id, metrics in result["metrics"].items()}
    best = max(logged, key=lambda child_id: (logged[child_id], -int(child_id.rsplit("_", 1)[1])))
    assert result["best_id"] == best and result["best_metrics"] == {"Accuracy": logged[best]}
    assert result["sorted"][0]["run_id"] == best
    assert [row["best_primary_metric"] for row in result["sorted"]] == sorted(
        logged.values(), reverse=True)
    assert [t[0] for t in result["trials"]] == [0, 1, 2, 3]
    # the sweep's log was streamed while waiting
    assert "[hyperdrive]" in done.stdout and f"RunId: {parent}" in done.stdout

    # the same sweep in the emulator's simml workspace: simml's engine ran what Azure's
    # HyperDrive service was asked for
    served = Run.get(emulator.workspace(), parent)
    assert isinstance(served, HyperDriveRun) and served.get_status() == "Completed"
    settings = served.get_details()["runDefinition"]["hyperdrive"]
    assert settings["maxTotalRuns"] == 4 and settings["maxConcurrentRuns"] == 2
    assert settings["primaryMetricName"] == "Accuracy" and settings["primaryMetricGoal"] == \
        "maximize"
    assert settings["generator"] == {
        "name": "RANDOM", "properties": {"rngSeed": 7},
        "parameter_space": {"--penalty": ["uniform", [0.5, 2.0]],
                            "--kernel": ["choice", [["linear", "rbf"]]]}}
    assert settings["policy"] == {"name": "Bandit", "properties": {
        "evaluation_interval": 1, "delay_evaluation": 0, "slack_factor": 0.2}}
    assert served.get_best_run_by_primary_metric().id == best
    # what the azure backend reads on real Azure (the parent's tags) gives the same settings
    from simml_azure.azureml_api import sweep_definition
    status, dto = emulator.request(
        "GET", f"/history/v1.0{SCOPE}/experiments/{experiment}/runs/{parent}")
    assert status == 200, dto
    assert sweep_definition(dto["tags"], cluster)["hyperdrive"] == {
        **settings, "maxDurationMinutes": float(settings["maxDurationMinutes"])}
    assert {t.run_id: t.hyperparameters for t in served.trials()} == hyperparameters
    for trial in served.trials():
        definition = Run.get(emulator.workspace(), trial.run_id).get_details()["runDefinition"]
        assert definition["target"] == cluster
        # the child's own --penalty was left out: Azure appends the sampled one
        assert definition["arguments"].count("--penalty") == 1

    # cancel(): through the backend's cancel hook to the HyperDrive service
    canceled = result["cancel"]
    assert "Running" in canceled["seen"].values(), canceled
    assert canceled["status"] == "Canceled"
    assert canceled["children"] and set(canceled["children"].values()) == {"Canceled"}
    assert sorted(canceled["children"]) == [f"{canceled['id']}_{n}" for n in range(2)]
    assert Run.get(emulator.workspace(), canceled["id"]).get_status() == "Canceled"


# --- the seed flow: the same file on both backends ------------------------------------------------

SEED = REPO / "examples" / "seed.py"


def _seed_figures(output: str) -> dict[str, Any]:
    """What the seed flow produced: its metrics, model version and scored classes."""
    import ast
    import re
    metrics = re.search(r"^(\{'Kernel type'.*\})$", output, re.M)
    version = re.search(r"^Registered model sklearn-iris version (\d+)$", output, re.M)
    scored = re.search(r"Scored 2 rows at http://localhost:\d+/score: (\[.*?\])", output)
    assert metrics and version and scored, output[-4000:]
    return {"metrics": ast.literal_eval(metrics.group(1)), "version": int(version.group(1)),
            "scored": json.loads(scored.group(1))}


@pytest.mark.slow
def test_seed_flow_gives_the_same_results_on_local_and_on_azure(tmp_path: Path,
                                                                 azure_python: Path) -> None:
    """``examples/seed.py``, the same file, once on the local backend and once on the azure
    backend against a fresh emulator (the real client): equal metrics, model version and
    predictions. The wall times are reported, not asserted."""
    import time

    from _emulator_server import Emulator
    # local: the seed's own config.json (clock scaled:60), a fresh SIMML_HOME
    local_home = tmp_path / "local-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMML_")}
    env.update(SIMML_HOME=str(local_home), PYTHONWARNINGS="ignore")
    started = time.monotonic()
    local = subprocess.run([sys.executable, str(SEED), "--workdir", str(tmp_path / "local")],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    local_seconds = time.monotonic() - started
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]

    # azure: a fresh emulator (its own workspace: model versions start at 1), config.json says
    # "backend": "azure"; nothing else changes
    server = Emulator(tmp_path / "emulator")
    server.start()
    try:
        workdir = tmp_path / "azure"
        azure_config(server, workdir)
        started = time.monotonic()
        azure = run_python(azure_python, [str(SEED), "--workdir", str(workdir)], tmp_path,
                           client_env(server, tmp_path / "azure-home", **server.client_env,
                                      SIMML_HOME=str(tmp_path / "azure-client-home")),
                           timeout=900)
        azure_seconds = time.monotonic() - started
    finally:
        server.stop()
    assert azure.returncode == 0, azure.stdout[-3000:] + azure.stderr[-3000:]

    mine, theirs = _seed_figures(local.stdout), _seed_figures(azure.stdout)
    assert mine == theirs
    assert mine["version"] == 1 and mine["scored"] == [0, 2]
    assert mine["metrics"]["Accuracy"] > 0.9
    assert "Streaming azureml-logs/70_driver_log.txt" in azure.stdout  # logs streamed live
    assert "Deleted service sklearn-iris-svc" in azure.stdout
    print(f"seed wall time: local {local_seconds:.1f} s, azure via the emulator "
          f"{azure_seconds:.1f} s (ratio {azure_seconds / local_seconds:.2f})")


# --- the job side: Run.get_context() in a job on Azure --------------------------------------------

def test_train_iris_logs_to_azure_unchanged_from_a_job(emulator: Any, azure_python: Path,
                                                       tmp_path: Path) -> None:
    """``train_iris.py``, unchanged, started the way an Azure node starts a job this backend
    submitted: Azure's ``AZUREML_*`` variables and run token (minted by the emulator), the
    backend's ``SIMML_JOB_CONTEXT``, no simml journal. ``Run.get_context()`` delegates to the
    SDK's run, so the metrics reach the workspace; the emulator's job hook stands in for Azure's
    job wrapper (it flushes the SDK's run when the script ends)."""
    from _emulator_server import SCOPE
    from simml.core import Experiment, Run
    ws = emulator.workspace()
    run = Experiment(ws, "job-side").start_logging()
    status, body = emulator.request(
        "GET", f"/history/v1.0{SCOPE}/experiments/job-side/runs/{run.id}/token")
    assert status == 200, body
    info = ws._info
    job_env = client_env(emulator, tmp_path / "home", **emulator.client_env,
                         AZUREML_RUN_ID=run.id, AZUREML_ARM_SUBSCRIPTION=info.subscription_id,
                         AZUREML_ARM_RESOURCEGROUP=info.resource_group,
                         AZUREML_ARM_WORKSPACE_NAME=info.name,
                         AZUREML_ARM_PROJECT_NAME="job-side",
                         AZUREML_EXPERIMENT_ID=run.experiment.id,
                         AZUREML_WORKSPACE_ID=info.workspace_id,
                         AZUREML_SERVICE_ENDPOINT=emulator.url,
                         AZUREML_DISCOVERY_SERVICE_ENDPOINT=emulator.url + "/discovery",
                         AZUREML_RUN_TOKEN=body["token"],
                         SIMML_JOB_CONTEXT="simml_azure.azureml_api:job_context_run",
                         PYTHONPATH=str(REPO / "simml" / "emulator" / "jobhook"))
    job = tmp_path / "job"
    job.mkdir()
    done = run_python(azure_python, [str(REPO / "train_iris.py"), "--kernel", "rbf",
                                     "--penalty", "0.5"], job, job_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Accuracy of SVM classifier on test set" in done.stdout
    assert (job / "outputs" / "model.joblib").is_file()
    metrics = Run.get(ws, run.id).get_metrics()
    assert metrics["Kernel type"] == "rbf" and metrics["Penalty"] == 0.5
    assert 0.9 < metrics["Accuracy"] <= 1.0
    run.complete()


def test_job_environment_carries_the_simml_wheel(emulator: Any, azure_python: Path,
                                                 tmp_path: Path) -> None:
    """On Azure a job installs simml from a wheel of this checkout, uploaded to the workspace:
    the wheel is built (once per content, the hash in its version), uploaded through the real
    client to the emulator, and named in the environment the run is submitted with."""
    work = tmp_path / "work"
    azure_config(emulator, work)
    done = run_python(azure_python, [str(SCRIPTS / "job_wheel.py")], work,
                      client_env(emulator, tmp_path / "home", **emulator.client_env,
                                 SIMML_HOME=str(tmp_path / "simml-home")))
    result = _result(done)
    assert result["wheel"].startswith("simml-0.1.0+g") and result["wheel"].endswith(".whl")
    assert result["again_same"] is True
    assert {"simml/core/run.py", "simml/job/run.py", "simml_azure/azureml_api.py"} <= \
        set(result["members"])
    assert result["url"].startswith("https://") and result["url"].endswith(result["wheel"])
    assert result["url"] in result["pip"]
    assert "scikit-learn" in " ".join(result["pip"])
