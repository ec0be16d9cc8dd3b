"""Run by tests/test_emulator.py with the REAL azureml-core client: the seed doc's compute step
(ComputeTargetException, then AmlCompute create and wait), get_status and list."""
import json
import sys

from azureml.core import Workspace
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException

from simml.emulator.client_auth import SimmlEmulatorAuthentication

ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
name = sys.argv[1] if len(sys.argv) > 1 else "cpu-cluster"
result = {}
try:
    ComputeTarget(workspace=ws, name=name)
    result["first_lookup"] = "found"
except ComputeTargetException as exc:
    result["first_lookup"] = "ComputeTargetException: " + str(exc).replace("\n", " ")[:300]
config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", max_nodes=4)
target = ComputeTarget.create(ws, name, config)
target.wait_for_completion(show_output=True, min_node_count=None, timeout_in_minutes=20)
result["type"] = type(target).__name__
result["provisioning_state"] = target.provisioning_state
result["status"] = target.get_status().serialize()
result["list"] = [c.name for c in ComputeTarget.list(ws)]
again = ComputeTarget(workspace=ws, name=name)
result["again"] = [type(again).__name__, again.vm_size, again.scale_settings.maximum_node_count]
print("RESULT " + json.dumps(result))
