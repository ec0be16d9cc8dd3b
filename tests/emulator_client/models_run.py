"""Run by tests/test_emulator_models.py with the REAL azureml-core client: the seed doc's model
step. An interactive run uploads outputs/model.joblib and completes; run.register_model twice
(versions 1 and 2); Model.list, Model(ws, name), by version and id; download; Model.register of a
local file and of a local folder; a path the run does not have; delete (the folder's
version).

argv: model file, model name, local model name, download folder.
"""
import hashlib
import json
import os
import shutil
import sys

from azureml.core import Experiment, Workspace
from azureml.core.model import Model

from simml.emulator.client_auth import SimmlEmulatorAuthentication

model_file, name, local_name, target = sys.argv[1:5]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
result = {}


def describe(model):
    return {"id": model.id, "version": model.version, "tags": model.tags,
            "properties": model.properties, "run_id": model.run_id,
            "experiment": model.experiment_name, "url": model.url}


def failure(call):
    try:
        call()
    except Exception as exc:  # the exact class is what the test asserts on
        return [type(exc).__name__, getattr(exc, "message", str(exc))]
    return None


def sha(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def tree(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/")
                  for d, _, files in os.walk(folder) for f in files)


run = Experiment(ws, "models-probe").start_logging(snapshot_directory=None)
run.upload_file("outputs/model.joblib", model_file)
run.complete()
result["run_id"] = run.id
first = run.register_model(name, model_path="outputs/model.joblib", tags={"round": "1"},
                           properties={"accuracy": "0.97"})
second = run.register_model(name, model_path="outputs/model.joblib", tags={"round": "2"})
result["registered"] = [describe(first), describe(second)]
result["missing_path"] = failure(lambda: run.register_model(name, model_path="outputs/nope.pkl"))

result["latest"] = describe(Model(ws, name))
result["v1"] = describe(Model(ws, name, version=1))
result["by_id"] = describe(Model(ws, id=f"{name}:2"))
result["list"] = [m.id for m in Model.list(ws, name=name)]
result["latest_only"] = [m.id for m in Model.list(ws, name=name, latest=True)]
result["by_run"] = sorted(m.id for m in Model.list(ws, run_id=run.id))

downloaded = Model(ws, name, version=1).download(os.path.join(target, "v1"), exist_ok=True)
result["download"] = [os.path.relpath(downloaded, target), sha(downloaded)]
cached = Model.get_model_path(name, _workspace=ws)
result["model_path"] = [cached, sha(cached)]

# Model.register of a local file and of a local folder (uploaded as artifacts first)
shutil.copyfile(model_file, "local-model.joblib")
local = Model.register(ws, model_path="local-model.joblib", model_name=local_name,
                       tags={"source": "local"}, description="from the client's disk")
result["local"] = describe(local)
got = local.download(os.path.join(target, "local"), exist_ok=True)
result["local_download"] = [os.path.relpath(got, target), sha(got)]
os.makedirs("local-folder/sub", exist_ok=True)
with open("local-folder/a.txt", "w") as handle:
    handle.write("a")
with open("local-folder/sub/b.txt", "w") as handle:
    handle.write("b")
folder = Model.register(ws, model_path="local-folder", model_name=local_name)
got = folder.download(os.path.join(target, "folder"), exist_ok=True)
result["folder"] = [folder.id, os.path.relpath(got, target), tree(got)]

folder.delete()
result["after_delete"] = [m.id for m in Model.list(ws, name=local_name)]
result["latest_after_delete"] = Model(ws, local_name).id
print("RESULT " + json.dumps(result, default=str))
