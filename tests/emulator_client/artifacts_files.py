"""Run by tests/test_emulator_artifacts.py with the REAL azureml-core client: an interactive run's
files (upload_file, upload_files, upload_folder, get_file_names, download_file, download_files)
through the emulator's artifact service. argv: a scratch folder."""
import json
import sys
from pathlib import Path

from azureml.core import Experiment, Workspace

from simml.emulator.client_auth import SimmlEmulatorAuthentication

scratch = Path(sys.argv[1])
(scratch / "folder" / "sub").mkdir(parents=True)
(scratch / "folder" / "a.txt").write_text("alpha\n")
(scratch / "folder" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
(scratch / "single.json").write_text('{"k": 1}')
(scratch / "one.txt").write_text("one")
(scratch / "two.txt").write_text("two")

ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
run = Experiment(ws, "artifacts").start_logging(snapshot_directory=None)
run.upload_file("outputs/model.json", str(scratch / "single.json"))
run.upload_files(names=["extra/one.txt", "extra/two.txt"],
                 paths=[str(scratch / "one.txt"), str(scratch / "two.txt")])
run.upload_folder("data", str(scratch / "folder"))
names = run.get_file_names()

down = scratch / "down"
down.mkdir()
run.download_file("outputs/model.json", str(down / "model.json"))
run.download_files(prefix="data", output_directory=str(down / "all"))
run.download_files(prefix="data", output_directory=str(down / "flat"), append_prefix=False)
conflict = None
try:
    run.upload_file("outputs/model.json", str(scratch / "single.json"))
except Exception as exc:  # noqa: BLE001 - the client's own exception, reported by name
    conflict = f"{type(exc).__name__}: {exc}"
missing = None
try:
    run.download_file("outputs/absent.txt", str(down / "absent.txt"))
except Exception as exc:  # noqa: BLE001
    missing = f"{type(exc).__name__}: {exc}"
run.complete()

# another origin (LocalUpload, as Model.register uses) through the client's artifacts client
from azureml._restclient.artifacts_client import ArtifactsClient  # noqa: E402

client = ArtifactsClient(ws.service_context)
container = "local-" + run.id[:8]
list(client.upload_files([str(scratch / "one.txt"), str(scratch / "folder" / "a.txt")],
                         "LocalUpload", container, names=["model/one.txt", "model/a.txt"]))
local_names = sorted(client.get_file_paths("LocalUpload", container))
client.download_artifact("LocalUpload", container, "model/a.txt", str(down / "local-a.txt"))


def tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes().hex() for p in sorted(root.rglob("*"))
            if p.is_file()}


print("RESULT " + json.dumps({
    "run_id": run.id, "names": names, "model": (down / "model.json").read_text(),
    "all": tree(down / "all"), "flat": tree(down / "flat"), "conflict": conflict,
    "missing": missing, "local_names": local_names, "container": container,
    "local_a": (down / "local-a.txt").read_text()}))
