"""Run by tests/test_emulator_models.py with the REAL azureml-core client: models that simml's API
registered, read through the client (Model(ws, name), by version and id, Model.list filters and
pages, download, get_model_path), tag and property changes, delete, and the client's own
exceptions for unknown models and a name the service refuses.

argv: model name (versions 1..3 registered by simml), paged name (23 versions), download folder.
"""
import hashlib
import json
import os
import sys

from azureml._restclient.models_client import ModelsClient
from azureml.core import Workspace
from azureml.core.model import Model

from simml.emulator.client_auth import SimmlEmulatorAuthentication

name, paged, target = sys.argv[1:4]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
result = {}


def describe(model):
    return {"id": model.id, "name": model.name, "version": model.version, "tags": model.tags,
            "properties": model.properties, "framework": model.model_framework,
            "description": model.description, "url": model.url, "run_id": model.run_id,
            "experiment": model.experiment_name}


def failure(call):
    try:
        call()
    except Exception as exc:  # the exact class is what the test asserts on
        return [type(exc).__name__, getattr(exc, "message", str(exc))]
    return None


def sha(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


result["latest"] = describe(Model(ws, name))
result["v1"] = describe(Model(ws, name, version=1))
result["by_id"] = describe(Model(ws, id=f"{name}:2"))
result["list"] = [m.id for m in Model.list(ws, name=name)]
result["latest_only"] = [m.id for m in Model.list(ws, name=name, latest=True)]
result["tagged"] = [m.id for m in Model.list(ws, name=name, tags=[["stage", "prod"]])]
result["tag_key"] = [m.id for m in Model.list(ws, name=name, tags=["stage"])]
result["paged"] = [m.version for m in Model.list(ws, name=paged, page_count=20)]

downloaded = Model(ws, name, version=2).download(target, exist_ok=True)
result["download"] = [os.path.relpath(downloaded, target), sha(downloaded)]
result["download_again"] = failure(lambda: Model(ws, name, version=2).download(target))
cached = Model.get_model_path(name, version=1, _workspace=ws)
result["model_path"] = [cached, sha(cached)]

first = Model(ws, name, version=1)
first.add_tags({"added": "yes"})
first.remove_tags(["stage"])
first.add_properties({"checked": "true"})
first.update(description="described through the client")
result["changed"] = describe(Model(ws, name, version=1))

result["unknown_name"] = failure(lambda: Model(ws, "no-such-model-anywhere"))
result["unknown_version"] = failure(lambda: Model(ws, name, version=99))
result["unknown_path"] = failure(lambda: Model.get_model_path("no-such-model-anywhere",
                                                                _workspace=ws))
result["bad_name_client"] = failure(lambda: Model.register(ws, "nothing", "bad name!"))
# the service's own check, reached through the client's REST layer
result["bad_name_service"] = failure(lambda: ModelsClient(ws.service_context).register_model(
    name="bad name!", url="aml://asset/0123"))

Model(ws, name, version=3).delete()
result["after_delete"] = [m.id for m in Model.list(ws, name=name)]
result["deleted_get"] = failure(lambda: Model(ws, name, version=3))
print("RESULT " + json.dumps(result, default=str))
