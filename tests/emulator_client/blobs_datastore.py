"""Run by tests/test_emulator_blobs.py with the REAL azureml-core client (its own venv): the
default datastore's upload / upload_files / download through `simml serve`'s HTTPS proxy and
blob service, and a blob container registered through the client."""
import hashlib
import json
import os
import sys

from azureml.core import Datastore, Workspace

from simml.emulator.client_auth import SimmlEmulatorAuthentication

work, prefix = sys.argv[1], sys.argv[2]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
ds = ws.get_default_datastore()
# the seed doc's call
ds.upload(os.path.join(work, "data-dir"), target_path=prefix + "/iris", overwrite=True,
          show_progress=True)
# upload_files without overwrite: exists() first; the second call skips both files
extra = os.path.join(work, "extra")
files = [os.path.join(extra, name) for name in ("one.txt", "two.txt")]
for _ in range(2):
    ds.upload_files(files, relative_root=extra, target_path=prefix + "/extra", overwrite=False,
                    show_progress=True)
# everything under the prefix back (including what simml's API wrote there)
down = os.path.join(work, "down")
count = ds.download(down, prefix=prefix, overwrite=True, show_progress=True)
hashes = {}
for folder, _, names in os.walk(down):
    for name in names:
        path = os.path.join(folder, name)
        with open(path, "rb") as handle:
            hashes[os.path.relpath(path, down)] = hashlib.sha256(handle.read()).hexdigest()
# a container registered through the client is served too
other = Datastore.register_azure_blob_container(
    ws, "blobs_extra", container_name="extra-container", account_name="simmlblobsextra",
    sas_token="given-by-the-user", overwrite=True)
other.upload_files([files[0]], relative_root=extra, target_path=prefix, overwrite=True,
                   show_progress=False)
print("RESULT " + json.dumps({
    "default": [ds.name, ds.account_name, ds.container_name, ds.endpoint, ds.credential_type],
    "count": count, "hashes": hashes,
    "other": [other.name, other.account_name, other.container_name],
    "datastores": sorted(ws.datastores)}))
