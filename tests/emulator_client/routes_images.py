"""Run by tests/test_emulator_routes.py with the REAL azureml-core client: run.log_image of a PNG
(the client uploads the file as a run file, then logs an image metric naming it), read back with
get_metrics; an image simml's API logged, read by the client.

argv: a PNG file name (relative: the client names the run file after the path it is given),
the experiment and id of a run whose image simml's API logged.
"""
import json
import sys

from azureml.core import Experiment, Run, Workspace

from simml.emulator.client_auth import SimmlEmulatorAuthentication

png, simml_experiment, simml_run = sys.argv[1:4]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
run = Experiment(ws, "routes-images").start_logging(snapshot_directory=None)
run.log("loss", 0.5)
run.log_image("curve", path=png)
run.flush()
result = {"run_id": run.id, "metrics": run.get_metrics(), "files": run.get_file_names()}
run.complete()
result["simml_made"] = Run(Experiment(ws, simml_experiment), simml_run).get_metrics()
print("RESULT " + json.dumps(result))
