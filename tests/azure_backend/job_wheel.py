"""Run by tests/test_azure_backend.py in the simml-with-azure venv against `simml serve`: build
simml's job wheel, upload it through the real client, and make the SDK environment a run is
submitted with. Prints ``RESULT {json}``."""
import json
import zipfile

from simml.core import Workspace
from simml_azure.job_wheel import simml_wheel

ws = Workspace.from_config()
api = ws._backend.manager.get_plugin("azure").api(ws._info)
wheel = simml_wheel()
again = simml_wheel()
url = api.upload_wheel(wheel)
definition = {"name": "sk", "python": {"userManagedDependencies": False, "condaDependencies": {
    "name": "project_environment", "dependencies": [
        "python=3.11", {"pip": ["scikit-learn", "joblib"]}]}}, "docker": {
    "enabled": False, "enabledSetExplicitly": False, "baseImage": "mcr.microsoft.com/x"}}
environment = api.sdk_environment(definition, (url,))
pip = list(environment.python.conda_dependencies.pip_packages)
with zipfile.ZipFile(wheel) as archive:
    members = archive.namelist()
print("RESULT " + json.dumps({"wheel": wheel.name, "again_same": again == wheel, "url": url,
                              "pip": pip, "members": members}))
