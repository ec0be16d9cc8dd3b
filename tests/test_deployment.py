"""Local deployment (issue 10): Model.deploy, LocalWebservice, AciWebservice, the service process.

Real services only: every deployed service is a scoring-server process on 127.0.0.1 that these
tests talk to over HTTP. The entry scripts are standard-library only (a JSON "model"), so a service
starts in a fraction of a second; the iris/scikit-learn flow is covered by the seed example's test.

``LocalWebservice`` tests are ``contract`` (docs/testing.md): every backend deploys it on this
machine, with the models from its workspace (assertions follow the registered versions, so they
hold in a shared workspace). ``local_only``: ACI (simulated locally; SDK v1's ACI deployment is
retired on Azure), a service's files and process in the local workspace's folder, the CLI's
``-w`` workspace names, and environment builds. Configuration checks touch no backend: no marker.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from simml.core import Environment, Workspace
from simml.core.model import InferenceConfig, Model
from simml.core.webservice import AciWebservice, LocalWebservice, Webservice
from simml.exceptions import (
    ModelNotFoundException,
    WebserviceException,
    WebserviceNotFoundException,
)

SCORE = '''
import json, os
from simml.core.model import Model

def init():
    global model, path
    path = Model.get_model_path("{model}")
    with open(path) as handle:
        model = json.load(handle)
    print("init done, model dir", os.environ["AZUREML_MODEL_DIR"])

def run(raw_data):
    data = json.loads(raw_data)
    if data.get("fail"):
        raise ValueError("asked to fail")
    rows = data["data"]
    return {{"predictions": [model["weight"] * sum(r) for r in rows],
             "model_dir": os.environ["AZUREML_MODEL_DIR"], "path": path,
             "cwd": os.getcwd()}}
'''


def write_score(folder: Path, model: str = "weights", name: str = "score.py",
                body: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body) if body is not None else SCORE.format(model=model))
    return path


def register(ws: Workspace, name: str, weight: float, tmp: Path) -> Model:
    folder = tmp / f"model-{name}-{weight}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.json").write_text(json.dumps({"weight": weight}))
    os.chdir(folder)
    try:
        return Model.register(ws, model_path="weights.json", model_name=name)
    finally:
        os.chdir(tmp)


@pytest.fixture
def model(ws, tmp_path: Path) -> Model:
    return register(ws, "weights", 2.0, tmp_path)


@pytest.fixture(autouse=True)
def _quiet_deprecation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_LOG_DEPRECATION_WARNING_ENABLED", "False")
    monkeypatch.delenv("SIMML_INFERENCE_SERVER", raising=False)


def post(port: int, body: bytes, path: str = "/score", headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=body,
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def service_pid(ws: Workspace, name: str) -> int:
    ready = Path(ws._info.properties["root"]) / "services" / name / "run" / "ready.json"
    return int(json.loads(ready.read_text())["pid"])


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


# --- configuration -------------------------------------------------------------------------------

def test_inference_config_is_validated_as_azure_does(tmp_path: Path) -> None:
    write_score(tmp_path / "src")
    with pytest.raises(WebserviceException, match="need to specify entry_script"):
        InferenceConfig(entry_script="")
    with pytest.raises(WebserviceException, match="does not exist"):
        InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "missing"))
    with pytest.raises(WebserviceException, match="entry_script"):
        InferenceConfig(entry_script="nope.py", source_directory=str(tmp_path / "src"))
    (tmp_path / "src" / "score.R").write_text("")
    with pytest.raises(WebserviceException, match="only Python drivers"):
        InferenceConfig(entry_script="score.R", source_directory=str(tmp_path / "src"))
    with pytest.raises(WebserviceException, match="both environment and runtime"):
        InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"),
                        runtime="python", environment=Environment("e"))
    with pytest.raises(WebserviceException, match="runtime not supported"):
        InferenceConfig(entry_script="src/score.py", runtime="java")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    assert config.source_directory == os.path.realpath(tmp_path / "src")


def test_deploy_configurations_are_validated() -> None:
    for port in (0, 65536, -1, "80", True):
        with pytest.raises(WebserviceException, match=r"port must be an integer in range"):
            LocalWebservice.deploy_configuration(port=port)  # type: ignore[arg-type]
    assert LocalWebservice.deploy_configuration(8890).port == 8890
    with pytest.raises(WebserviceException, match="cpu_cores must be positive"):
        AciWebservice.deploy_configuration(cpu_cores=0)
    with pytest.raises(WebserviceException, match="memory_gb must be positive"):
        AciWebservice.deploy_configuration(memory_gb=-1)
    with pytest.raises(WebserviceException, match="SSL"):
        AciWebservice.deploy_configuration(ssl_enabled=True)
    with pytest.raises(WebserviceException, match="vnet_name and subnet_name"):
        AciWebservice.deploy_configuration(vnet_name="v")
    config = AciWebservice.deploy_configuration(auth_enabled=True)
    assert (config.cpu_cores, config.memory_gb, config.auth_enabled) == (0.1, 0.5, True)


@pytest.mark.parametrize("name", ["ab", "Upper-case", "1starts-with-digit", "ends-with-dash-",
                                  "under_score", "a" * 33, "", None])
@pytest.mark.contract
def test_an_invalid_service_name_is_refused_and_nothing_is_created(ws, model, tmp_path: Path,
                                                                    name) -> None:
    write_score(tmp_path / "src")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    with pytest.raises(WebserviceException, match="service name is invalid"):
        Model.deploy(ws, name, [model], config, LocalWebservice.deploy_configuration())
    assert Webservice.list(ws) == []


# --- the happy path ------------------------------------------------------------------------------

@pytest.mark.contract
def test_deploy_score_logs_list_and_delete_a_local_service(ws, model, tmp_path: Path) -> None:
    write_score(tmp_path / "src")
    (tmp_path / "src" / "helper.txt").write_text("shipped with the app")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    service = Model.deploy(ws, "weights-svc", [model], config,
                           LocalWebservice.deploy_configuration())
    assert isinstance(service, LocalWebservice)
    assert service.state in ("deploying", "running")
    assert service.scoring_uri == f"http://localhost:{service.port}/score"
    assert service.swagger_uri == f"http://localhost:{service.port}/swagger.json"
    service.wait_for_deployment()
    assert service.state == "running"

    answer = service.run(json.dumps({"data": [[1, 2], [3, 4]]}))
    assert answer["predictions"] == [6.0, 14.0]
    # Azure's layout: one model -> AZUREML_MODEL_DIR is azureml-models/<name>/<version>
    assert answer["model_dir"].endswith(os.path.join("azureml-models", "weights",
                                                     str(model.version)))
    assert answer["path"] == os.path.join(answer["model_dir"], "weights.json")
    assert os.path.isfile(os.path.join(answer["cwd"], "helper.txt"))  # the app root is the cwd

    assert get(service.port, "/") == (200, b"Healthy")
    status, swagger = get(service.port, "/swagger.json")
    assert status == 200 and json.loads(swagger)["swagger"] == "2.0"
    assert "/score" in json.loads(swagger)["paths"]
    assert "init done" in service.get_logs()
    assert len(service.get_logs(2).splitlines()) == 2

    again = Webservice(ws, "weights-svc")
    assert isinstance(again, LocalWebservice) and again.state == "running"
    assert [(s.name, s.state) for s in Webservice.list(ws)] == [("weights-svc", "running")]
    assert [s.name for s in LocalWebservice.list(ws)] == ["weights-svc"]
    assert AciWebservice.list(ws) == []
    assert [m.id for m in service.models] == [f"weights:{model.version}"]
    assert service.serialize()["computeType"] == "Local"
    with pytest.raises(NotImplementedError):
        service.get_keys()

    port = service.port
    service.delete()
    assert service.state == "deleted"
    assert port_is_free(port)
    with pytest.raises(WebserviceNotFoundException):
        Webservice(ws, "weights-svc")
    assert Webservice.list(ws) == []


@pytest.mark.contract
def test_several_models_share_the_models_folder(ws, tmp_path: Path) -> None:
    first = register(ws, "first", 1.0, tmp_path)
    second = register(ws, "second", 10.0, tmp_path)
    write_score(tmp_path / "src", body='''
        import json, os
        from simml.core.model import Model

        def init():
            global weights
            weights = {}
            for name in ("first", "second"):
                with open(Model.get_model_path(name)) as handle:
                    weights[name] = json.load(handle)["weight"]

        def run(raw_data):
            return {"weights": weights, "model_dir": os.environ["AZUREML_MODEL_DIR"],
                    "listing": sorted(os.listdir(os.environ["AZUREML_MODEL_DIR"]))}
    ''')
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    service = Model.deploy(ws, "two-models", [first, second], config,
                           LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    answer = service.run("{}")
    assert answer["weights"] == {"first": 1.0, "second": 10.0}
    assert answer["model_dir"].endswith("azureml-models")   # several models: the parent folder
    assert answer["listing"] == ["first", "second"]
    service.delete()


@pytest.mark.contract
def test_a_given_port_is_used_and_the_entry_script_alone_is_copied(ws, model, tmp_path: Path
                                                                   ) -> None:
    write_score(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = Model.deploy(ws, "fixed-port", [model], InferenceConfig(entry_script="score.py"),
                           LocalWebservice.deploy_configuration(port=port))
    service.wait_for_deployment()
    assert service.port == port
    answer = service.run(json.dumps({"data": [[1]]}))
    assert sorted(f for f in os.listdir(answer["cwd"]) if f.endswith(".py")) == \
        ["main.py", "score.py"]          # Azure copies a lone script as main.py too
    service.delete()


@pytest.mark.contract
def test_the_service_outlives_the_client_that_deployed_it(ws, model, contract_config: Path,
                                                          tmp_path: Path) -> None:
    write_score(tmp_path / "src")
    script = tmp_path / "deploy.py"
    script.write_text(textwrap.dedent(f'''
        from simml.core import Workspace
        from simml.core.model import InferenceConfig, Model
        from simml.core.webservice import LocalWebservice
        ws = Workspace.from_config()
        config = InferenceConfig(entry_script="score.py",
                                 source_directory={str(tmp_path / "src")!r})
        service = Model.deploy(ws, "detached", [Model(ws, "weights", version={model.version})],
                               config, LocalWebservice.deploy_configuration())
        service.wait_for_deployment()
        print(service.port)
    '''))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ), cwd=contract_config)
    assert done.returncode == 0, done.stderr
    service = Webservice(ws, "detached")
    assert service.state == "running" and service.port == int(done.stdout.split()[-1])
    assert service.run(json.dumps({"data": [[5]]}))["predictions"] == [10.0]
    service.delete()


@pytest.mark.contract
def test_reload_serves_new_code_and_update_swaps_models(ws, model, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_score(src)
    config = InferenceConfig(entry_script="score.py", source_directory=str(src))
    service = Model.deploy(ws, "reloaded", [model], config,
                           LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    port = service.port
    assert service.run(json.dumps({"data": [[1]]}))["predictions"] == [2.0]
    (src / "score.py").write_text((src / "score.py").read_text().replace(
        'model["weight"] * sum(r)', 'model["weight"] * sum(r) + 1000'))
    service.reload(wait=True)
    assert service.state == "running" and service.port == port
    assert service.run(json.dumps({"data": [[1]]}))["predictions"] == [1002.0]

    heavier = register(ws, "weights", 3.0, tmp_path)     # a new version of the same name
    assert heavier.version > model.version
    service.update(models=[heavier], wait=True)
    answer = service.run(json.dumps({"data": [[1]]}))
    assert answer["predictions"] == [1003.0]
    assert answer["model_dir"].endswith(os.path.join("weights", str(heavier.version)))
    assert [m.id for m in Webservice(ws, "reloaded").models] == [f"weights:{heavier.version}"]
    service.delete()


@pytest.mark.contract
def test_worker_count_from_the_environment_runs_init_once_per_worker(ws, model, tmp_path: Path
                                                                     ) -> None:
    write_score(tmp_path / "src", body='''
        import os

        def init():  # one write(2): both workers share the log; print() writes in pieces
            os.write(1, f"init in worker {os.getpid()}\\n".encode())

        def run(raw_data):
            return os.getpid()
    ''')
    env = Environment("two-workers")
    env.python.user_managed_dependencies = True
    env.environment_variables = {"WORKER_COUNT": "2"}
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"),
                             environment=env)
    service = Model.deploy(ws, "two-workers", [model], config,
                           LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    deadline = time.monotonic() + 60
    while service.get_logs().count("init in worker") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    inits = [line for line in service.get_logs().splitlines() if "init in worker" in line]
    assert len(inits) == 2 and len({line.split()[-1] for line in inits}) == 2
    pids = {post(service.port, b"{}")[2] for _ in range(20)}   # a new connection each time
    assert pids <= {line.split()[-1].encode() for line in inits}
    service.delete()


@pytest.mark.local_only  # builds a uv environment on this machine
@pytest.mark.slow
def test_a_built_environment_is_reused_by_reload(ws, model, tmp_path: Path) -> None:
    """A non-user-managed environment is built with uv (here: no packages, so no index is
    needed) and cached; reload() does not rebuild it."""
    from simml.core.conda_dependencies import CondaDependencies
    write_score(tmp_path / "src")
    env = Environment("bare-service-env")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=[])
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"),
                             environment=env)
    service = Model.deploy(ws, "built-env", [model], config,
                           LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    logs = service.get_logs()
    assert "Building environment bare-service-env" in logs
    answer = service.run(json.dumps({"data": [[1]]}))
    assert answer["predictions"] == [2.0]
    envs = Path(os.environ["SIMML_HOME"]) / "envs"
    built = [p for p in envs.iterdir() if (p / "simml-env.json").is_file()]
    assert len(built) == 1
    service.reload(wait=True)
    logs = service.get_logs()
    assert "is up to date (cached" in logs and "Building environment" not in logs
    assert service.run(json.dumps({"data": [[1]]}))["predictions"] == [2.0]
    service.delete()


# --- faults --------------------------------------------------------------------------------------

@pytest.mark.local_only  # looks into the local workspace's service folders
def test_a_port_already_in_use_is_refused_and_nothing_is_left(ws, model, tmp_path: Path) -> None:
    write_score(tmp_path / "src")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(WebserviceException, match=f"port {port} is already in use"):
            Model.deploy(ws, "busy-port", [model], config,
                         LocalWebservice.deploy_configuration(port=port))
    assert Webservice.list(ws) == []
    services = Path(ws._info.properties["root"]) / "services"
    assert not [p for p in services.iterdir() if not p.name.endswith(".lock")]


@pytest.mark.contract
def test_init_that_raises_fails_the_deployment_with_the_log_tail(ws, model, tmp_path: Path
                                                                  ) -> None:
    write_score(tmp_path / "src", body='''
        def init():
            raise RuntimeError("the model file is corrupt")

        def run(raw_data):
            return raw_data
    ''')
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    service = Model.deploy(ws, "bad-init", [model], config,
                           LocalWebservice.deploy_configuration())
    with pytest.raises(WebserviceException) as info:
        service.wait_for_deployment()
    message = info.value.message
    assert "Did your init method fail?" in message
    assert "RuntimeError: the model file is corrupt" in message     # the log's tail
    assert service.state == "failed"
    assert "the model file is corrupt" in service.get_logs()
    assert Webservice(ws, "bad-init").state == "failed"
    with pytest.raises(WebserviceException, match="Cannot call run\\(\\) when service is failed"):
        service.run("{}")
    service.delete()


@pytest.mark.contract
def test_run_that_raises_answers_500_and_the_service_keeps_serving(ws, model, tmp_path: Path
                                                                    ) -> None:
    write_score(tmp_path / "src")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    service = Model.deploy(ws, "run-raises", [model], config,
                           LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    status, headers, body = post(service.port, json.dumps({"fail": True}).encode())
    assert status == 500
    assert json.loads(body) == {"message": "An unexpected error occurred in scoring script. "
                                           "Check the logs for more info."}
    assert headers["x-ms-run-function-failed"] == "True"
    with pytest.raises(WebserviceException, match="Scoring was unsuccessful") as info:
        service.run(json.dumps({"fail": True}))
    assert info.value.status_code == 500
    assert "ValueError: asked to fail" in service.get_logs()
    assert service.run(json.dumps({"data": [[1]]}))["predictions"] == [2.0]   # still serving
    assert Webservice(ws, "run-raises").state == "running"
    service.delete()


@pytest.mark.contract
def test_a_body_that_is_not_json_reaches_run_as_text(ws, model, tmp_path: Path) -> None:
    write_score(tmp_path / "src")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    service = Model.deploy(ws, "not-json", [model], config,
                           LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    status, _, body = post(service.port, b"this is {not json")
    assert status == 500 and b"unexpected error occurred in scoring script" in body
    assert "JSONDecodeError" in service.get_logs(50)
    status, _, body = post(service.port, b"\xff\xfe not utf-8")
    assert status == 400 and b"UTF-8" in body
    with pytest.raises(WebserviceException, match="JSON string"):
        service.run({"data": [[1]]})                 # Azure's run() takes the body, not a dict
    assert service.run(json.dumps({"data": [[1]]}))["predictions"] == [2.0]
    service.delete()


@pytest.mark.contract
def test_a_missing_model_is_refused_before_anything_is_deployed(ws, model, tmp_path: Path
                                                                 ) -> None:
    write_score(tmp_path / "src")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    gone = register(ws, "ephemeral", 1.0, tmp_path)
    gone.delete()
    with pytest.raises(ModelNotFoundException) as info:
        Model.deploy(ws, "no-model", [model, gone], config,
                     LocalWebservice.deploy_configuration())
    assert isinstance(info.value, WebserviceException)
    assert "ephemeral" in info.value.message
    with pytest.raises(WebserviceException, match="list of Model"):
        Model.deploy(ws, "no-model", "weights", config,  # type: ignore[arg-type]
                     LocalWebservice.deploy_configuration())
    assert Webservice.list(ws) == []


@pytest.mark.local_only  # the service's process id from the local workspace's folder; ACI
def test_a_killed_service_process_is_failed_on_the_next_look(ws, model, tmp_path: Path) -> None:
    write_score(tmp_path / "src")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    local = Model.deploy(ws, "killed-local", [model], config,
                         LocalWebservice.deploy_configuration())
    aci = Model.deploy(ws, "killed-aci", [model], config, AciWebservice.deploy_configuration())
    local.wait_for_deployment()
    aci.wait_for_deployment()
    assert (local.state, aci.state) == ("running", "Healthy")
    stale = Webservice(ws, "killed-local")       # a handle that will not be refreshed
    for name in ("killed-local", "killed-aci"):
        os.kill(service_pid(ws, name), signal.SIGKILL)
    deadline = time.monotonic() + 30     # SIGKILL is delivered asynchronously
    while {s.state for s in Webservice.list(ws)} != {"failed", "Failed"} and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    local.update_deployment_state()
    assert local.state == "failed"
    assert local.error["code"] == "ServiceProcessExited"
    assert Webservice(ws, "killed-aci").state == "Failed"
    assert {s.name: s.state for s in Webservice.list(ws)} == {"killed-local": "failed",
                                                            "killed-aci": "Failed"}
    with pytest.raises(WebserviceException, match="when service is failed"):
        local.run(json.dumps({"data": [[1]]}))
    assert stale.state == "running"
    with pytest.raises(WebserviceException, match="when service is failed"):
        stale.run(json.dumps({"data": [[1]]}))  # no answer: it looks, and says why
    local.reload(wait=True)                      # a failed service can be restarted
    assert local.run(json.dumps({"data": [[1]]}))["predictions"] == [2.0]
    local.delete()
    aci.delete()


# --- ACI simulation and keys ---------------------------------------------------------------------

@pytest.mark.local_only  # ACI, simulated by the local backend
def test_aci_service_keys_protect_scoring(ws, model, tmp_path: Path) -> None:
    write_score(tmp_path / "src")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    service = Model.deploy(ws, "with-keys", [model], config,
                           AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=1,
                                                              auth_enabled=True,
                                                              tags={"team": "ml"}))
    assert isinstance(service, AciWebservice) and service.state == "Transitioning"
    service.wait_for_deployment()
    assert service.state == "Healthy" and service.tags == {"team": "ml"}
    primary, secondary = service.get_keys()
    assert primary and secondary and primary != secondary
    body = json.dumps({"data": [[1, 1]]}).encode()
    assert service.run(body.decode())["predictions"] == [4.0]       # run() sends the key

    assert post(service.port, body)[0] == 401                       # no key
    assert post(service.port, body, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert post(service.port, body, headers={"Authorization": primary})[0] == 401  # no Bearer
    assert post(service.port, body, headers={"Authorization": f"Bearer {secondary}"})[0] == 200
    assert get(service.port, "/") == (200, b"Healthy")              # health needs no key

    service.regen_key("Primary")
    new_primary, same_secondary = service.get_keys()
    assert new_primary != primary and same_secondary == secondary
    assert post(service.port, body, headers={"Authorization": f"Bearer {primary}"})[0] == 401
    assert post(service.port, body, headers={"Authorization": f"Bearer {new_primary}"})[0] == 200
    service.regen_key("Secondary", set_key="my-own-secondary-key")
    assert service.get_keys()[1] == "my-own-secondary-key"
    with pytest.raises(WebserviceException, match="Primary"):
        service.regen_key("Tertiary")
    with pytest.raises(NotImplementedError):
        service.get_token()
    assert service.run(body.decode())["predictions"] == [4.0]
    service.delete()
    assert service.state == "Deleting"


@pytest.mark.local_only  # ACI, simulated by the local backend
def test_aci_without_auth_has_no_keys_and_names_are_unique(ws, model, tmp_path: Path) -> None:
    write_score(tmp_path / "src")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    service = Model.deploy(ws, "no-auth", [model], config, AciWebservice.deploy_configuration())
    with pytest.raises(WebserviceException, match="auth is not enabled"):
        service.get_keys()
    with pytest.raises(WebserviceException, match="already a service with name no-auth"):
        Model.deploy(ws, "no-auth", [model], config, AciWebservice.deploy_configuration())
    replaced = Model.deploy(ws, "no-auth", [model], config,
                            AciWebservice.deploy_configuration(auth_enabled=True),
                            overwrite=True)
    replaced.wait_for_deployment()
    assert replaced.auth_enabled and len(replaced.get_keys()) == 2
    assert [s.name for s in Webservice.list(ws)] == ["no-auth"]
    replaced.update(auth_enabled=False, tags={"v": "2"})
    replaced.wait_for_deployment()
    assert not replaced.auth_enabled and replaced.tags == {"v": "2"}
    assert post(replaced.port, json.dumps({"data": [[1]]}).encode())[0] == 200
    replaced.delete()


# --- the CLI -------------------------------------------------------------------------------------

@pytest.mark.local_only  # the CLI opens the workspace by name (-w)
def test_cli_lists_shows_prints_logs_and_deletes_services(ws, model, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from simml.cli import cli
    write_score(tmp_path / "src")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"))
    service = Model.deploy(ws, "cli-svc", [model], config, LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    runner = CliRunner()
    listed = runner.invoke(cli, ["--workspace", ws.name, "--json", "service", "list"])
    assert listed.exit_code == 0, listed.output
    docs = json.loads(listed.output)
    assert [(d["name"], d["state"], d["models"]) for d in docs] == \
        [("cli-svc", "running", ["weights:1"])]
    table = runner.invoke(cli, ["--workspace", ws.name, "service", "list"])
    assert "cli-svc" in table.output and "running" in table.output
    logs = runner.invoke(cli, ["--workspace", ws.name, "service", "logs", "cli-svc", "-n", "50"])
    assert logs.exit_code == 0 and "init done" in logs.output
    shown = runner.invoke(cli, ["--workspace", ws.name, "service", "show", "cli-svc"])
    assert shown.exit_code == 0 and service.scoring_uri in shown.output
    missing = runner.invoke(cli, ["--workspace", ws.name, "service", "logs", "nope"])
    assert missing.exit_code == 3 and "not found" in missing.output
    deleted = runner.invoke(cli, ["--workspace", ws.name, "service", "delete", "cli-svc"])
    assert deleted.exit_code == 0 and "Deleted service cli-svc" in deleted.output
    assert Webservice.list(ws) == []
