"""Model management through `simml serve` (`simml/emulator/models.py`): the real azureml-core
client registers, lists, reads, downloads, tags and deletes models, and every one of them is a
model of simml's registry (and the reverse); plus the service's answers to bad input over plain
HTTP, each of which must change nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from simml.emulator.protocol import ARM_SCOPE
from _emulator_server import SCOPE, Emulator

MMS = "/modelmanagement/v1.0" + SCOPE
MMS_TEMPLATE = "/modelmanagement/v1.0" + ARM_SCOPE


def unique(prefix: str) -> str:
    """Model names are per test: the server (and its registry) is shared by the session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def versions(ws: Any, name: str) -> list[int]:
    from simml.core.model import Model
    return sorted(m.version for m in Model.list(ws, name=name))


def post(emulator: Emulator, path: str, doc: Any) -> tuple[int, Any]:
    return emulator.request("POST", path, body=json.dumps(doc).encode(),
                            headers={"Content-Type": "application/json"})


def simml_cli_models(emulator: Emulator, name: str) -> list[dict[str, Any]]:
    listed = subprocess.run([sys.executable, "-m", "simml.cli", "--json", "model", "list",
                             "--name", name], cwd=emulator.server_dir, capture_output=True,
                            text=True, timeout=120,
                            env={**os.environ, "SIMML_HOME": str(emulator.home)})
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def run_with_model_file(emulator: Emulator, content: bytes) -> str:
    """A completed run made through simml's API whose files hold outputs/model.joblib."""
    from simml.core.experiment import Experiment
    Path("model.joblib").write_bytes(content)
    run = Experiment(emulator.workspace(), "models-http").start_logging()
    run.upload_file("outputs/model.joblib", "model.joblib")
    run.complete()
    return run.id


def register_over_http(emulator: Emulator, name: str, prefix: str,
                       **extra: Any) -> tuple[int, Any]:
    status, asset = post(emulator, MMS + "/assets", {"name": name,
                                                     "artifacts": [{"prefix": prefix}]})
    assert status == 200, asset
    return post(emulator, MMS + "/models", {"name": name, "url": f"aml://asset/{asset['id']}",
                                            "mimeType": "application/json", "unpack": False,
                                            **extra})


# --- the real client -----------------------------------------------------------------------------

def test_seed_model_step_through_the_real_client(emulator: Emulator, azureml_venv: Path,
                                                 tmp_path: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from simml.core.model import Model
    X, y = load_iris(return_X_y=True)
    model_file = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression(max_iter=300).fit(X, y), model_file)
    digest = sha(model_file.read_bytes())
    name, local_name = unique("sklearn-iris"), unique("local-model")

    before = len(emulator.log())
    result = emulator.run_client(azureml_venv, "models_run.py", str(model_file), name,
                                 local_name, str(tmp_path / "downloads"))
    entries = emulator.log()[before:]

    first, second = result["registered"]
    assert (first["id"], second["id"]) == (f"{name}:1", f"{name}:2")
    assert first["tags"] == {"round": "1"} and first["properties"] == {"accuracy": "0.97"}
    assert first["run_id"] == second["run_id"] == result["run_id"]
    assert first["experiment"] == "models-probe"
    assert result["missing_path"][0] == "ModelPathNotFoundException"
    assert "outputs/model.joblib" in result["missing_path"][1]   # it names the run's files
    assert result["latest"]["id"] == f"{name}:2"
    assert result["v1"]["id"] == f"{name}:1" and result["v1"]["tags"] == {"round": "1"}
    assert result["by_id"]["id"] == f"{name}:2"
    assert result["list"] == [f"{name}:2", f"{name}:1"]
    assert result["latest_only"] == [f"{name}:2"]
    assert result["by_run"] == [f"{name}:1", f"{name}:2"]
    assert result["download"] == ["v1/model.joblib", digest]
    assert result["model_path"][1] == digest
    assert result["model_path"][0].endswith(f"azureml-models/{name}/2/model.joblib")
    assert result["local"]["id"] == f"{local_name}:1"
    assert result["local"]["tags"] == {"source": "local"}
    assert result["local_download"] == ["local/local-model.joblib", digest]
    assert result["folder"] == [f"{local_name}:2", "folder/local-folder",
                                ["a.txt", "sub/b.txt"]]
    assert result["after_delete"] == [f"{local_name}:1"]
    assert result["latest_after_delete"] == f"{local_name}:1"

    # the client's models are simml's: versions, run, files, tags, bytes
    ws = emulator.workspace()
    assert versions(ws, name) == [1, 2] and versions(ws, local_name) == [1]
    mine = Model(ws, name, version=1)
    assert mine.run_id == result["run_id"] and mine.experiment_name == "models-probe"
    assert mine.files == ["model.joblib"] and mine.tags == {"round": "1"}
    assert mine.properties == {"accuracy": "0.97"}
    assert mine.url == first["url"]          # one asset id through both APIs
    got = Path(mine.download(str(tmp_path / "simml-side")))
    assert sha(got.read_bytes()) == digest
    assert Model(ws, local_name).description == "from the client's disk"
    listed = simml_cli_models(emulator, name)
    assert [(d["id"], d["run_id"]) for d in listed] == [(f"{name}:2", result["run_id"]),
                                                       (f"{name}:1", result["run_id"])]
    # Azure's request shape: asset, then model
    assert all(e["template"] != "unknown" for e in entries), [
        e for e in entries if e["template"] == "unknown"]
    sequence = [(e["method"], e["template"]) for e in entries]
    asset_post = sequence.index(("POST", MMS_TEMPLATE + "/assets"))
    assert sequence[asset_post + 1] == ("POST", MMS_TEMPLATE + "/models")


def test_simml_registered_models_read_through_the_real_client(
        emulator: Emulator, azureml_venv: Path, tmp_path: Path) -> None:
    from simml.core.model import Model
    ws = emulator.workspace()
    name, paged = unique("readme"), unique("paged")
    contents = [b"first version", b"second version", b"third version"]
    for number, content in enumerate(contents, 1):
        Path("model.bin").write_bytes(content)
        Model.register(ws, "model.bin", name, tags={1: {"stage": "prod"},
                                                    2: {"stage": "dev"}}.get(number),
                       properties={"n": str(number)})
    for _ in range(23):
        Model.register(ws, "model.bin", paged)

    result = emulator.run_client(azureml_venv, "models_read.py", name, paged,
                                 str(tmp_path / "downloads"))

    assert result["latest"]["id"] == f"{name}:3"
    assert result["v1"]["tags"] == {"stage": "prod"} and result["v1"]["properties"] == {"n": "1"}
    assert result["v1"]["framework"] == "Custom"
    assert result["v1"]["url"] == Model(ws, name, version=1).url
    assert result["by_id"]["id"] == f"{name}:2"
    assert result["list"] == [f"{name}:3", f"{name}:2", f"{name}:1"]
    assert result["latest_only"] == [f"{name}:3"]
    assert result["tagged"] == [f"{name}:1"]
    assert result["tag_key"] == [f"{name}:2", f"{name}:1"]
    assert result["paged"] == list(range(23, 0, -1))       # two pages of at most 20
    assert result["download"] == ["model.bin", sha(contents[1])]
    assert result["download_again"][0] == "WebserviceException"
    assert "exist_ok" in result["download_again"][1]
    assert result["model_path"][0].endswith(f"azureml-models/{name}/1/model.bin")
    assert result["model_path"][1] == sha(contents[0])
    changed = result["changed"]
    assert changed["tags"] == {"added": "yes"}
    assert changed["properties"] == {"n": "1", "checked": "true"}
    assert changed["description"] == "described through the client"
    assert result["unknown_name"][0] == "WebserviceException"
    assert result["unknown_name"][1].startswith("ModelNotFound")
    assert result["unknown_version"][0] == "WebserviceException"
    assert "ModelNotFound" in result["unknown_version"][1]
    assert result["unknown_path"][0] == "ModelNotFoundException"
    assert result["bad_name_client"][0] == "WebserviceException"
    assert result["bad_name_service"][0] == "WebserviceException"
    assert "Response Code: 400" in result["bad_name_service"][1]
    assert result["after_delete"] == [f"{name}:2", f"{name}:1"]
    assert "ModelNotFound" in result["deleted_get"][1]
    # the client's changes are simml's
    first = Model(ws, name, version=1)
    assert first.tags == {"added": "yes"}
    assert first.properties == {"n": "1", "checked": "true"}
    assert first.description == "described through the client"
    assert versions(ws, name) == [1, 2]
    assert not [m for m in Model.list(ws) if m.name == "bad name!"]


# --- plain HTTP: what the service answers, and that bad input changes nothing -------------------

def test_unknown_models_are_404_in_mms_shape(emulator: Emulator) -> None:
    status, body = emulator.request("GET", MMS + "/models/no-such-model:1")
    assert status == 404
    assert body["statusCode"] == 404 and body["code"] == "ModelNotFound"
    assert "no-such-model" in body["message"]
    assert body["error"]["innerError"]["code"] == "ModelNotFound"
    for method in ("DELETE", "PATCH"):
        status, body = emulator.request(method, MMS + "/models/no-such-model:1", body=b"[]")
        assert status == 404, method
    status, body = emulator.request("GET", MMS + "/models/no-such-model:x")
    assert status == 404
    status, body = emulator.request("GET", MMS + "/assets/0123456789abcdef")
    assert status == 404 and body["code"] == "AssetNotFound"
    status, body = emulator.request("GET", MMS + "/models?name=no-such-model")
    assert status == 200 and body["value"] == []


def test_register_from_a_run_over_http_and_its_bad_inputs(emulator: Emulator) -> None:
    from simml.core.model import Model
    ws = emulator.workspace()
    run_id = run_with_model_file(emulator, b"weights")
    name = unique("http-model")
    prefix = f"ExperimentRun/dcid.{run_id}/outputs/model.joblib"

    # refused, and nothing registered: a bad name, a path the run does not have, an unknown
    # asset or run, a traversal, a packed model, a runId that is not the asset's run
    status, body = register_over_http(emulator, "bad name!", prefix)
    assert status == 400 and body["statusCode"] == 400 and "invalid" in body["message"]
    status, body = register_over_http(emulator, name, f"ExperimentRun/dcid.{run_id}/outputs/x")
    assert status == 400 and body["code"] == "ModelPathNotFound"
    assert "outputs/model.joblib" in body["message"]               # names the run's files
    status, body = post(emulator, MMS + "/models", {"name": name,
                                                    "url": "aml://asset/nope"})
    assert status == 400 and body["code"] == "AssetNotFound"
    status, body = register_over_http(emulator, name, "ExperimentRun/dcid.no-such-run/model")
    assert status == 400 and body["code"] == "RunNotFound"
    status, body = post(emulator, MMS + "/assets", {
        "name": name, "artifacts": [{"prefix": f"ExperimentRun/dcid.{run_id}/../../etc"}]})
    assert status == 400 and body["code"] == "UnsafePath"
    status, body = register_over_http(emulator, name, prefix, unpack=True)
    assert status == 400 and body["code"] == "NotSupported"
    status, body = register_over_http(emulator, name, prefix, runId="another-run")
    assert status == 400
    status, body = emulator.request("POST", MMS + "/models", body=b"{not json")
    assert status == 400
    assert versions(ws, name) == [] and not [m for m in Model.list(ws) if m.name == "bad name!"]

    status, body = register_over_http(emulator, name, prefix, kvTags={"a": "1"},
                                      properties={"p": "x"}, experimentName="models-http",
                                      runId=run_id)
    assert status == 200, body
    assert (body["id"], body["version"], body["runId"]) == (f"{name}:1", 1, run_id)
    assert body["kvTags"] == {"a": "1"} and body["url"].startswith("aml://asset/")
    model = Model(ws, name)
    assert (model.version, model.run_id, model.files) == (1, run_id, ["model.joblib"])
    # the model's own asset names its files under the SimmlModel origin
    status, asset = emulator.request("GET", MMS + "/assets/" + body["url"].rsplit("/", 1)[1])
    assert status == 200
    assert asset["artifacts"][0]["prefix"].startswith("SimmlModel/")
    assert asset["artifacts"][0]["prefix"].endswith("/model.joblib")


def upload_artifacts(emulator: Emulator, origin: str, container: str,
                     files: dict[str, bytes]) -> None:
    """The client's artifact upload over plain HTTP: batch/metadata answers a signed blob URL per
    file; the bytes go to that URL's path on this server (no TLS proxy needed here)."""
    from urllib.parse import urlsplit
    status, answer = post(emulator, f"/artifact/v2.0{SCOPE}/artifacts/batch/metadata/{origin}/"
                          f"{container}", {"paths": [{"path": p} for p in files]})
    assert status == 200 and not answer["errors"], answer
    for path, data in files.items():
        url = urlsplit(answer["artifactContentInformation"][path]["contentUri"])
        status, _ = emulator.request("PUT", f"{url.path}?{url.query}", body=data, token=None,
                                     headers={"x-ms-blob-type": "BlockBlob"})
        assert status == 201, path


def test_register_uploaded_files_over_http(emulator: Emulator, tmp_path: Path) -> None:
    """``Model.register``'s path without the client: LocalUpload artifacts, asset, model."""
    from simml.core.model import Model
    ws = emulator.workspace()
    name, container = unique("uploaded"), unique("260101T000000")
    upload_artifacts(emulator, "LocalUpload", container,
                     {"my-model/a.txt": b"a", "my-model/sub/b.txt": b"b", "other.txt": b"o"})

    # refused, nothing registered: a prefix with no artifacts, artifacts with two top entries
    for prefix in (f"LocalUpload/{container}/nothing-here", "LocalUpload/no-such-container/x",
                   "SimmlModel/0123456789abcdef/model.bin"):
        status, body = register_over_http(emulator, name, prefix)
        assert status == 400 and body["code"] == "ArtifactNotFound", (prefix, body)
    status, asset = post(emulator, MMS + "/assets", {"name": name, "artifacts": [
        {"prefix": f"LocalUpload/{container}/my-model"},
        {"prefix": f"LocalUpload/{container}/other.txt"}]})
    assert status == 200
    status, body = post(emulator, MMS + "/models", {"name": name,
                                                    "url": f"aml://asset/{asset['id']}"})
    assert status == 400 and body["code"] == "NotSupported"
    assert versions(ws, name) == []

    status, body = register_over_http(emulator, name, f"LocalUpload/{container}/my-model",
                                      description="uploaded")
    assert status == 200, body
    model = Model(ws, name)
    assert (model.version, model.description) == (1, "uploaded")
    assert sorted(model.files) == ["my-model/a.txt", "my-model/sub/b.txt"]
    got = Path(model.download(str(tmp_path / "got")))
    assert (got / "sub" / "b.txt").read_bytes() == b"b"
    # registering the model's own asset again makes version 2 with the same files
    status, again = post(emulator, MMS + "/models", {"name": name, "url": body["url"]})
    assert status == 200 and again["version"] == 2
    assert sorted(Model(ws, name, version=2).files) == sorted(model.files)


def test_patch_is_all_or_nothing_and_properties_are_add_only(emulator: Emulator) -> None:
    from simml.core.model import Model
    ws = emulator.workspace()
    name = unique("patched")
    Path("m.bin").write_bytes(b"m")
    Model.register(ws, "m.bin", name, tags={"keep": "1"}, properties={"p": "1"})
    path = MMS + f"/models/{name}:1"

    bad = [{"op": "replace", "path": "/kvTags", "value": {"new": "x"}},
           {"op": "add", "path": "/properties", "value": {"p": "2"}}]
    status, body = emulator.request("PATCH", path, body=json.dumps(bad).encode())
    assert status == 400 and "add-only" in body["message"]
    for wrong in ([{"op": "move", "path": "/name", "value": "x"}], {"op": "add"},
                  [{"op": "replace", "path": "/kvTags", "value": "text"}]):
        status, _ = emulator.request("PATCH", path, body=json.dumps(wrong).encode())
        assert status == 400, wrong
    model = Model(ws, name, version=1)
    assert model.tags == {"keep": "1"} and model.properties == {"p": "1"}

    good = [{"op": "replace", "path": "/kvTags", "value": {"new": "x"}},
            {"op": "add", "path": "/properties", "value": {"p": "1", "q": "2"}},
            {"op": "replace", "path": "/description", "value": "patched"},
            {"op": "add", "path": "/datasets", "value": []}]
    status, body = emulator.request("PATCH", path, body=json.dumps(good).encode())
    assert status == 200 and body["kvTags"] == {"new": "x"}
    model = Model(ws, name, version=1)
    assert model.tags == {"new": "x"} and model.properties == {"p": "1", "q": "2"}
    assert model.description == "patched"


def test_list_pages_with_a_skip_token_that_survives_new_versions(emulator: Emulator) -> None:
    from simml.core.model import Model
    ws = emulator.workspace()
    name = unique("pages")
    Path("m.bin").write_bytes(b"m")
    for _ in range(5):
        Model.register(ws, "m.bin", name)
    status, page = emulator.request("GET", MMS + f"/models?name={name}&count=2")
    assert status == 200 and [m["version"] for m in page["value"]] == [5, 4]
    assert "%24skipToken=" in page["nextLink"] or "$skipToken=" in page["nextLink"]
    Model.register(ws, "m.bin", name)               # a new version between pages shifts nothing
    seen = [m["version"] for m in page["value"]]
    while page["nextLink"]:
        link = page["nextLink"][len(emulator.url):]
        status, page = emulator.request("GET", link)
        assert status == 200
        seen += [m["version"] for m in page["value"]]
    assert seen == [5, 4, 3, 2, 1]
    status, page = emulator.request("GET", MMS + f"/models?name={name}&latestVersionOnly=true")
    assert [m["version"] for m in page["value"]] == [6]
    status, page = emulator.request("GET", MMS + f"/models?name={name}&orderBy=CreatedAtAsc"
                                    "&count=2")
    assert [m["version"] for m in page["value"]] == [1, 2]
    for query in ("count=0", "$skipToken=garbage", "orderBy=Sideways", "latestVersionOnly=maybe",
                  "offset=-1"):
        status, body = emulator.request("GET", MMS + f"/models?name={name}&{query}")
        assert status == 400 and body["statusCode"] == 400, query


def test_concurrent_registrations_get_distinct_versions(emulator: Emulator) -> None:
    run_id = run_with_model_file(emulator, b"concurrent")
    name = unique("concurrent")
    prefix = f"ExperimentRun/dcid.{run_id}/outputs/model.joblib"
    answers: list[Any] = []

    def register() -> None:
        try:
            answers.append(register_over_http(emulator, name, prefix))
        except Exception as exc:  # noqa: BLE001 - shown by the assertion below
            answers.append((None, repr(exc)))

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(status == 200 for status, _ in answers), answers
    assert sorted(body["version"] for _, body in answers) == [1, 2, 3, 4]
    assert versions(emulator.workspace(), name) == [1, 2, 3, 4]
