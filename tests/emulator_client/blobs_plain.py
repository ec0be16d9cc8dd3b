"""Run by tests/test_emulator_blobs.py with the REAL azureml-core client: a script with NO
emulator code at all. Plain `Workspace.from_config()`: the environment `simml serve` printed
(HTTPS_PROXY, REQUESTS_CA_BUNDLE, MSI_ENDPOINT, MSI_SECRET, APPSETTING_WEBSITE_SITE_NAME) is all
that points it at the emulator."""
import json
import os
import sys

from azureml.core import Experiment, Workspace

source, prefix = sys.argv[1], sys.argv[2]
ws = Workspace.from_config()
ds = ws.get_default_datastore()
ds.upload_files([source], relative_root=os.path.dirname(source), target_path=prefix,
                overwrite=True, show_progress=True)
run = Experiment(ws, "plain-config").start_logging(snapshot_directory=None)
run.log("answer", 42)
run.complete()
print("RESULT " + json.dumps({
    "auth": type(ws._auth).__name__,
    "ambient": type(getattr(ws._auth, "_ambient_auth", None)).__name__,
    "workspace": [ws.name, ws.subscription_id, ws.resource_group],
    "datastore": ds.name, "run_id": run.id, "status": run.get_status()}))
