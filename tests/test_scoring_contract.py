"""One contract, two servers: simml's scoring server and azureml-inference-server-http.

Every test here runs against a service served by ``simml`` (``simml.job.scoring``) and by
``azmlinfsrv`` (``SIMML_INFERENCE_SERVER=azmlinfsrv``: gunicorn + the inference server's Flask
app). The inference server runs in an interpreter that has ``azureml-inference-server-http``: this
one when it is installed (``pip install 'simml[inference]'``), else the one named by
``SIMML_TEST_AZMLINFSRV_PYTHON`` (a user-managed environment with that ``interpreter_path``),
else a venv the tests build once and cache (``tests/_venvs.py``); its half is skipped only when
that cannot be built outside CI. Tests of ``inference_schema`` decorators need that package
(and numpy) in the service's interpreter, likewise.
"""

from __future__ import annotations

import functools
import http.client
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from simml.core import Environment, Workspace
from simml.core.model import InferenceConfig, Model
from simml.core.webservice import AciWebservice, LocalWebservice
from simml.exceptions import WebserviceException

SERVERS = ("simml", "azmlinfsrv")
RUN_FAILED = {"message": "An unexpected error occurred in scoring script. Check the logs for "
                         "more info."}

SCORE = '''
import json, os
from simml.core.model import Model

def init():
    global weight, path
    path = Model.get_model_path("weights")
    with open(path) as handle:
        weight = json.load(handle)["weight"]

def run(raw_data, request_headers):
    if raw_data.startswith("{"):
        doc = json.loads(raw_data)
        mode = doc.get("mode")
        if mode == "fail":
            raise ValueError("asked to fail")
        if mode == "string":
            return "plain"
        if mode == "header":
            return request_headers.get("X-Probe")
        if mode == "env":
            return {"model_dir": os.environ["AZUREML_MODEL_DIR"], "path": path,
                    "cwd": os.getcwd()}
        if "data" in doc:
            return {"predictions": [weight * sum(r) for r in doc["data"]]}
    return {"type": type(raw_data).__name__, "raw": raw_data}
'''

SCHEMA_SCORE = '''
import numpy as np
from inference_schema.schema_decorators import input_schema, output_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

def init():
    pass

@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0]])))
@output_schema(StandardPythonParameterType([3.0]))
def run(data):
    return [float(x) for x in np.asarray(data).sum(axis=1)]
'''

BAD_INIT = '''
def init():
    raise RuntimeError("cannot load the model: corrupt")

def run(raw_data):
    return raw_data
'''


def _has(python: str, module: str) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec(module) is not None
    done = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=120)
    return done.returncode == 0


AZMLINFSRV_REQUIREMENTS = ["azureml-inference-server-http", "scikit-learn", "joblib", "numpy"]


@functools.lru_cache(maxsize=None)
def _test_venv() -> tuple[str | None, str]:
    from _venvs import cached_venv
    return cached_venv("azmlinfsrv", AZMLINFSRV_REQUIREMENTS, "azureml_inference_server_http")


def azmlinfsrv_python() -> str | None:
    """An interpreter with azureml-inference-server-http: this one, the one named by
    ``SIMML_TEST_AZMLINFSRV_PYTHON``, else a cached venv built for the tests (tests/_venvs.py).
    None (the caller skips) only outside CI when it cannot be built."""
    if importlib.util.find_spec("azureml_inference_server_http") is not None:
        return sys.executable
    named = os.environ.get("SIMML_TEST_AZMLINFSRV_PYTHON")
    if named and os.path.isfile(named) and _has(named, "azureml_inference_server_http"):
        return named
    python, why = _test_venv()
    if python is None and os.environ.get("CI"):
        pytest.fail(f"CI is set, so the azmlinfsrv half of the contract must run, but {why}")
    return python


def schema_python() -> str | None:
    """An interpreter with inference_schema and numpy, or None."""
    if _has(sys.executable, "inference_schema"):
        return sys.executable
    other = azmlinfsrv_python()
    return other if other and _has(other, "inference_schema") else None


def environment(python: str) -> Environment | None:
    if python == sys.executable:
        return None
    env = Environment("contract-interpreter")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = python
    return env


class Deployer:
    """Deploys services in a workspace of its own for one server (module-scoped)."""

    def __init__(self, server: str, home: Path, work: Path) -> None:
        self.server = server
        self.home = home
        self.work = work
        self.python = sys.executable if server == "simml" else azmlinfsrv_python()
        if self.python is None:
            pytest.skip("azureml-inference-server-http is not installed (pip install "
                        "'simml[inference]', or set SIMML_TEST_AZMLINFSRV_PYTHON)")
        self._patch = pytest.MonkeyPatch()
        self._patch.setenv("SIMML_HOME", str(home))
        self._patch.setenv("SIMML_INFERENCE_SERVER", server)
        self._patch.setenv("AZUREML_LOG_DEPRECATION_WARNING_ENABLED", "False")
        self.ws = Workspace.create(f"contract-{server}", exist_ok=True, show_output=False)
        model_dir = work / "model"
        model_dir.mkdir(parents=True)
        (model_dir / "weights.json").write_text(json.dumps({"weight": 2.0}))
        cwd = os.getcwd()
        os.chdir(model_dir)
        try:
            self.model = Model.register(self.ws, model_path="weights.json", model_name="weights")
        finally:
            os.chdir(cwd)
        self.services: list[Any] = []

    def deploy(self, name: str, script: str, python: str | None = None, auth: bool = False,
               wait: bool = True) -> Any:
        src = self.work / name
        src.mkdir()
        (src / "score.py").write_text(textwrap.dedent(script))
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SIMML_HOME", str(self.home))
            patch.setenv("SIMML_INFERENCE_SERVER", self.server)
            config = InferenceConfig(entry_script="score.py", source_directory=str(src),
                                     environment=environment(python or self.python))
            deployment = (AciWebservice.deploy_configuration(auth_enabled=True) if auth
                          else LocalWebservice.deploy_configuration())
            service = Model.deploy(self.ws, name, [self.model], config, deployment)
        self.services.append(service)
        if wait:
            service.wait_for_deployment()
        return service

    def close(self) -> None:
        for service in self.services:
            try:
                service.delete()
            except WebserviceException:
                pass
        self._patch.undo()
        from conftest import kill_processes_mentioning
        kill_processes_mentioning(str(self.home))


@pytest.fixture(scope="module", params=SERVERS)
def deployer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Deployer]:
    home = tmp_path_factory.mktemp(f"contract-home-{request.param}")
    work = tmp_path_factory.mktemp(f"contract-work-{request.param}")
    deployer = Deployer(request.param, home, work)
    try:
        yield deployer
    finally:
        deployer.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def service(deployer: Deployer) -> Any:
    return deployer.deploy("contract", SCORE)


class Client:
    """One kept-open HTTP/1.1 connection to a service."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        if isinstance(body, str):
            body = body.encode()
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        self.connection.request(method, path, body=body, headers=all_headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def client(service: Any) -> Iterator[Client]:
    c = Client(service.port)
    yield c
    c.close()


# --- the contract --------------------------------------------------------------------------------

def test_health_route_answers_healthy(client: Client) -> None:
    status, _, body = client.request("GET", "/")
    assert (status, body) == (200, b"Healthy")


def test_score_passes_the_body_as_text_and_returns_json(client: Client, service: Any) -> None:
    status, headers, body = client.request("POST", "/score", json.dumps({"data": [[1, 2], [3]]}))
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"predictions": [6.0, 6.0]}
    assert float(headers["x-ms-run-fn-exec-ms"]) >= 0
    assert service.run(json.dumps({"data": [[1]]})) == {"predictions": [2.0]}


def test_a_body_that_is_not_json_reaches_run_verbatim(client: Client) -> None:
    status, _, body = client.request("POST", "/score", "hello, not json",
                                     headers={"Content-Type": "text/plain"})
    assert status == 200 and json.loads(body) == {"type": "str", "raw": "hello, not json"}


def test_a_returned_string_is_json_encoded_again(client: Client) -> None:
    status, _, body = client.request("POST", "/score", json.dumps({"mode": "string"}))
    assert status == 200 and json.loads(body) == "plain" and body == b'"plain"'


def test_run_raising_is_a_500_with_azure_body_and_the_server_keeps_going(client: Client,
                                                                         service: Any) -> None:
    status, headers, body = client.request("POST", "/score", json.dumps({"mode": "fail"}))
    assert status == 500 and json.loads(body) == RUN_FAILED
    assert headers["x-ms-run-function-failed"] == "True"
    status, _, body = client.request("POST", "/score", json.dumps({"data": [[1]]}))
    assert status == 200 and json.loads(body) == {"predictions": [2.0]}
    assert "asked to fail" in service.get_logs()


def test_get_score_passes_the_query_as_a_json_object(client: Client) -> None:
    status, _, body = client.request("GET", "/score?a=1&b=x&b=%5B1%2C2%5D")
    assert status == 200
    answer = json.loads(body)
    assert answer["type"] == "str"
    assert json.loads(answer["raw"]) == {"a": 1, "b": ["x", [1, 2]]}


def test_run_gets_the_request_headers(client: Client) -> None:
    status, _, body = client.request("POST", "/score", json.dumps({"mode": "header"}),
                                     headers={"X-Probe": "42"})
    assert status == 200 and json.loads(body) == "42"


def test_request_ids_are_echoed_or_made(client: Client) -> None:
    _, headers, _ = client.request("GET", "/", headers={"x-request-id": "my-id-1"})
    assert headers["x-request-id"] == "my-id-1"
    _, headers, _ = client.request("POST", "/score", json.dumps({"data": [[1]]}))
    assert len(headers["x-request-id"]) >= 32


def test_model_dir_and_get_model_path_inside_the_service(client: Client) -> None:
    status, _, body = client.request("POST", "/score", json.dumps({"mode": "env"}))
    answer = json.loads(body)
    assert status == 200
    assert answer["model_dir"].endswith(os.path.join("azureml-models", "weights", "1"))
    assert answer["path"] == os.path.join(answer["model_dir"], "weights.json")
    assert os.path.isfile(os.path.join(answer["cwd"], "score.py"))


def test_unknown_routes_are_404_with_a_json_message(client: Client) -> None:
    status, headers, body = client.request("GET", "/nowhere")
    assert status == 404 and "message" in json.loads(body)


def test_swagger_describes_the_service(client: Client) -> None:
    status, _, body = client.request("GET", "/swagger.json")
    doc = json.loads(body)
    assert status == 200 and doc["swagger"] == "2.0"
    assert "post" in doc["paths"]["/score"]


def test_a_kept_open_connection_serves_many_requests(client: Client) -> None:
    for index in range(25):
        status, _, body = client.request("POST", "/score", json.dumps({"data": [[index]]}))
        assert status == 200 and json.loads(body) == {"predictions": [2.0 * index]}


def test_keys_are_required_when_auth_is_enabled(deployer: Deployer) -> None:
    service = deployer.deploy("contract-keys", SCORE, auth=True)
    primary, secondary = service.get_keys()
    client = Client(service.port)
    try:
        body = json.dumps({"data": [[1]]})
        assert client.request("POST", "/score", body)[0] == 401
        assert client.request("POST", "/score", body,
                              headers={"Authorization": "Bearer nope"})[0] == 401
        for key in (primary, secondary):
            assert client.request("POST", "/score", body,
                                  headers={"Authorization": f"Bearer {key}"})[0] == 200
        assert client.request("GET", "/")[0] == 200
        assert service.run(body) == {"predictions": [2.0]}
    finally:
        client.close()


def test_init_raising_fails_the_deployment_with_the_traceback(deployer: Deployer) -> None:
    service = deployer.deploy("contract-bad-init", BAD_INIT, wait=False)
    with pytest.raises(WebserviceException) as info:
        service.wait_for_deployment()
    assert "cannot load the model: corrupt" in info.value.message
    assert service.state == "failed"


def test_schema_decorated_run_gets_converted_arguments(deployer: Deployer) -> None:
    python = schema_python()
    if python is None:
        pytest.skip("no interpreter with inference_schema and numpy")
    service = deployer.deploy("contract-schema", SCHEMA_SCORE, python=python)
    client = Client(service.port)
    try:
        status, _, body = client.request("POST", "/score", json.dumps({"data": [[1, 2], [3, 4]]}))
        assert status == 200 and json.loads(body) == [3.0, 7.0]
        status, _, body = client.request("POST", "/score", json.dumps({"other": 1}))
        assert status == 400
        assert json.loads(body)["message"] == "A value is not provided for the 'data' parameter."
        status, _, body = client.request("POST", "/score", "[1, 2]")
        assert status == 400
        status, _, body = client.request("POST", "/score", json.dumps({"data": [[1, 2]]}),
                                         headers={"Content-Type": "text/plain"})
        assert status == 415
        assert json.loads(body)["message"] == "Expects Content-Type to be application/json"
        status, _, body = client.request("GET", "/swagger.json")
        doc = json.loads(body)
        assert doc["definitions"]["ServiceInput"]["properties"]["data"]["type"] == "array"
    finally:
        client.close()
