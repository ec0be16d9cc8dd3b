"""Run by tests/test_emulator.py with the REAL azureml-core client (its own venv), against
`simml serve`: Workspace.from_config, Experiment, an interactive run's metrics and status."""
import json
import sys

from azureml.core import Experiment, Run, Workspace

from simml.emulator.client_auth import SimmlEmulatorAuthentication

ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
experiment = Experiment(ws, "probe")
run = experiment.start_logging(snapshot_directory=None)
run.log("accuracy", 0.5)
run.log("accuracy", 0.75)
run.log("kernel", "linear")
run.log_list("losses", [3, 2, 1])
run.log_row("table", a=1, b=2.5)
run.tag("team", "simml")
run.flush()  # metric uploads are asynchronous in the real client
metrics = run.get_metrics()
run.complete()
status = run.get_status()
# a run the simml API made (its id on argv) read through the real client
other = Run(experiment, sys.argv[1]).get_metrics() if len(sys.argv) > 1 else None
print("RESULT " + json.dumps({"workspace": [ws.name, ws.subscription_id, ws.resource_group],
                              "run_id": run.id, "metrics": metrics, "status": status,
                              "other": other}))
