"""Run by tests/test_emulator_artifacts.py with the REAL azureml-core client: a run simml's API
made (its files on disk came from simml) read back through the emulator. argv: run id, experiment,
scratch folder."""
import json
import sys
from pathlib import Path

from azureml.core import Experiment, Run, Workspace

from simml.emulator.client_auth import SimmlEmulatorAuthentication

run_id, experiment_name, scratch = sys.argv[1], sys.argv[2], Path(sys.argv[3])
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
run = Run(Experiment(ws, experiment_name), run_id)
names = run.get_file_names()
run.download_file("outputs/model.txt", str(scratch / "model.txt"))
run.download_files(prefix="outputs", output_directory=str(scratch / "outputs"),
                   append_prefix=False)
print("RESULT " + json.dumps({
    "names": names, "model": (scratch / "model.txt").read_text(),
    "outputs": sorted(p.relative_to(scratch / "outputs").as_posix()
                      for p in (scratch / "outputs").rglob("*") if p.is_file()),
    "nested": (scratch / "outputs" / "deep" / "x.csv").read_text()}))
