"""Run by tests/test_emulator_artifacts.py with the REAL azureml-core client: content snapshots.
argv: the source folder, a scratch folder. Three runs snapshot the folder: the second one
unchanged (the client's cache of the latest tree), the third after one file changed and with that
cache removed (so the client diffs against the emulator's latest/metadata); then the first
snapshot is restored as a zip."""
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

from azureml.core import Experiment, Workspace

from simml.emulator.client_auth import SimmlEmulatorAuthentication

source, scratch = Path(sys.argv[1]), Path(sys.argv[2])
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
experiment = Experiment(ws, "snapshots")


def snapshot() -> tuple[str, str]:
    run = experiment.start_logging(snapshot_directory=str(source))
    snapshot_id = run.get_snapshot_id()
    run.complete()
    return run.id, snapshot_id


first_run, first = snapshot()
print("MARK second", flush=True)
second_run, second = snapshot()
print("MARK third", flush=True)
(source / "train.py").write_text("print('changed')\n")
shutil.rmtree(os.path.join(os.environ["HOME"], ".azureml", ".projectcontent"))
third_run, third = snapshot()
print("MARK restore", flush=True)
restorer = experiment.start_logging(snapshot_directory=None)
zip_path = restorer.restore_snapshot(first, str(scratch))
restorer.complete()
with zipfile.ZipFile(zip_path) as archive:
    restored = {name: archive.read(name).decode() for name in archive.namelist()}
print("RESULT " + json.dumps({"runs": [first_run, second_run, third_run],
                              "snapshots": [first, second, third], "restored": restored}))
