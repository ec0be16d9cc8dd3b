"""Run by tests/test_emulator_routes.py with the REAL azureml-core client: Environment.register
(a new version only when the definition changed), Environment.get (latest, by version),
Environment.list, an environment simml's API registered read back, and the refusals (an unknown
name, a changed definition under an existing version, labels).

argv: a new environment name, the name of an environment simml's API registered.
"""
import json
import sys

from azureml.core import Environment, Workspace
from azureml.core.conda_dependencies import CondaDependencies

from simml.emulator.client_auth import SimmlEmulatorAuthentication

name, simml_made = sys.argv[1:3]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
result = {}


def failure(call):
    try:
        call()
    except Exception as exc:  # the client raises a plain Exception with status and text
        return [type(exc).__name__, str(exc)[:600]]
    return None


def pip(env):
    return sorted(env.python.conda_dependencies.pip_packages)


env = Environment(name)
env.python.conda_dependencies = CondaDependencies.create(pip_packages=["joblib"])
first = env.register(ws)
again = env.register(ws)  # unchanged: the same version
env.environment_variables["ROUTES"] = "1"
second = env.register(ws)
result["versions"] = [first.version, again.version, second.version]
latest = Environment.get(ws, name)
v1 = Environment.get(ws, name, version="1")
result["latest"] = [latest.version, latest.environment_variables.get("ROUTES"), pip(latest)]
result["v1"] = [v1.version, v1.environment_variables.get("ROUTES"), pip(v1)]
result["listed"] = Environment.list(ws)[name].version
ours = Environment.get(ws, simml_made)
result["simml_made"] = [ours.name, ours.version, pip(ours),
                        ours.environment_variables.get("FROM")]

# a version set on the object registers that version: unchanged is fine, changed is refused
result["same_version"] = latest.register(ws).version
latest.environment_variables["ROUTES"] = "changed"
result["changed_version"] = failure(lambda: latest.register(ws))
result["unknown"] = failure(lambda: Environment.get(ws, name + "-missing"))
result["label"] = failure(lambda: Environment.get(ws, name, label="prod"))
result["final"] = Environment.get(ws, name).version
print("RESULT " + json.dumps(result))
