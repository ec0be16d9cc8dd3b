"""Run by tests/test_azure_backend.py in the simml-with-azure venv against `simml serve`: register
a blob container and a file share through the azure backend with a credential, transfer files
through the registered container (the blob client the SDK builds from Azure's answer), read them
with the stat and read hooks, try to register a folder of this machine, and cancel an
interactive run. Prints ``RESULT {json}``."""
import json
import sys
from pathlib import Path

from simml.core import Datastore, Experiment, Workspace
from simml.exceptions import UserErrorException

name, container, account, experiment = sys.argv[1:5]
ws = Workspace.from_config()
ds = Datastore.register_azure_blob_container(ws, name, container, account,
                                             account_key="bWFkZS11cC1rZXk=",
                                             create_if_not_exists=True)
source = Path("src")
(source / "d").mkdir(parents=True)
(source / "d" / "a.txt").write_text("hello")
ds.upload(str(source), target_path="in", show_progress=False)
stat = ws._backend.datastore_stat(ws._info, name, "in/")
downloaded = ds.download("dl", prefix="in", show_progress=False)

share = Datastore.register_azure_file_share(ws, f"{name}_share", container, account,
                                            sas_token="sv=made-up")
try:
    share.upload(str(source), target_path="in", show_progress=False)
    refused = None
except UserErrorException as exc:
    refused = exc.message

try:
    Datastore.register_local_folder(ws, f"{name}_folder", str(source))
    folder_refused = None
except UserErrorException as exc:
    folder_refused = exc.message

run = Experiment(ws, experiment).start_logging()
run.cancel()
print("RESULT " + json.dumps({
    "type": type(ds).__name__, "files": ds.list_files("in"),
    "stat": [(f.path, f.size) for f in stat],
    "read": ws._backend.datastore_read(ws._info, name, "in/d/a.txt", 1, 3).decode(),
    "downloaded": downloaded, "content": Path("dl/in/d/a.txt").read_text(),
    "share_type": type(share).__name__, "share_refused": refused,
    "folder_refused": folder_refused, "names": sorted(ws.datastores),
    "run": run.id, "status": run.get_status()}))
