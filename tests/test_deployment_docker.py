"""Web services in containers: the Docker runtime serves a deployment (``docs/deployment.md``).

Needs a Docker engine with simml's base image (the ``docker_client`` fixture skips otherwise).
The same entry script and checks as ``test_deployment.py``, with the service in a container.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from simml.core import Environment
from simml.core.model import InferenceConfig, Model
from simml.core.webservice import LocalWebservice, Webservice
from simml.exceptions import WebserviceException

from test_deployment import get, model, post, write_score  # noqa: F401 - model is a fixture

pytestmark = [pytest.mark.docker, pytest.mark.local_only]  # the local backend's Docker runtime


@pytest.fixture(autouse=True)
def _quiet_deprecation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_LOG_DEPRECATION_WARNING_ENABLED", "False")
    monkeypatch.delenv("SIMML_INFERENCE_SERVER", raising=False)


def docker_environment() -> Environment:
    env = Environment("service-in-docker")
    env.python.user_managed_dependencies = True     # the base image's packages
    env.docker.enabled = True                       # explicit: this service runs in a container
    return env


def containers(client, ws, name: str) -> list:
    return client.containers.list(all=True, filters={"label": [
        f"simml.service={name}", f"simml.service-workspace={ws._info.workspace_id}"]})


@pytest.mark.slow
def test_a_service_runs_in_a_container_when_docker_is_enabled(ws, model, tmp_path: Path,
                                                               docker_client) -> None:
    write_score(tmp_path / "src")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"),
                             environment=docker_environment())
    service = Model.deploy(ws, "in-docker", [model], config,
                           LocalWebservice.deploy_configuration())
    service.wait_for_deployment()
    assert service.state == "running"
    [container] = containers(docker_client, ws, "in-docker")
    assert container.status == "running"
    answer = service.run(json.dumps({"data": [[1, 2]]}))
    assert answer["predictions"] == [6.0]
    # Azure's container paths: the app at /var/azureml-app, one model's version folder
    assert answer["model_dir"] == "/var/azureml-app/azureml-models/weights/1"
    assert answer["path"] == "/var/azureml-app/azureml-models/weights/1/weights.json"
    assert answer["cwd"] == "/var/azureml-app"
    assert get(service.port, "/") == (200, b"Healthy")
    assert post(service.port, json.dumps({"fail": True}).encode())[0] == 500
    assert "ValueError: asked to fail" in service.get_logs()
    assert "init done" in service.get_logs()

    container.kill()                                  # the container dies: failed on next look
    deadline = time.monotonic() + 30
    while Webservice(ws, "in-docker").state != "failed" and time.monotonic() < deadline:
        time.sleep(0.1)
    service.update_deployment_state()
    assert service.state == "failed" and service.error["code"] == "ServiceProcessExited"

    service.reload(wait=True)                         # a fresh container
    assert service.run(json.dumps({"data": [[1]]}))["predictions"] == [2.0]
    service.delete()
    assert containers(docker_client, ws, "in-docker") == []
    assert Webservice.list(ws) == []


@pytest.mark.slow
def test_init_failure_in_a_container_fails_the_deployment(ws, model, tmp_path: Path,
                                                          docker_client) -> None:
    write_score(tmp_path / "src", body='''
        def init():
            raise RuntimeError("no model in this container")

        def run(raw_data):
            return raw_data
    ''')
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "src"),
                             environment=docker_environment())
    service = Model.deploy(ws, "docker-bad-init", [model], config,
                           LocalWebservice.deploy_configuration())
    with pytest.raises(WebserviceException, match="no model in this container"):
        service.wait_for_deployment()
    assert service.state == "failed"
    service.delete()
    assert containers(docker_client, ws, "docker-bad-init") == []
