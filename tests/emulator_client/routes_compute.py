"""Run by tests/test_emulator_routes.py with the REAL azureml-core client: an AmlCompute cluster
created with tags and a description (read back), AmlCompute.update of its scale settings,
list_nodes while idle and once a node is up (min_nodes=1), an update simml refuses, delete.

argv: a cluster name.
"""
import json
import sys
import time

from azureml.core import Workspace
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException

from simml.emulator.client_auth import SimmlEmulatorAuthentication

name = sys.argv[1]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
result = {}

config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", min_nodes=0,
                                               max_nodes=2, tags={"team": "ml"},
                                               description="demo cluster")
target = ComputeTarget.create(ws, name, config)
target.wait_for_completion(show_output=False, timeout_in_minutes=20)
again = ComputeTarget(workspace=ws, name=name)
result["kept"] = [again.tags, again.description]
result["nodes_idle"] = target.list_nodes()

target.update(max_nodes=3, idle_seconds_before_scaledown=600)
again = ComputeTarget(workspace=ws, name=name)
scale = again.scale_settings
result["updated"] = [scale.minimum_node_count, scale.maximum_node_count,
                     scale.idle_seconds_before_scaledown]

target.update(min_nodes=1)  # a node is allocated (in simulated time) and stays
nodes, deadline = [], time.monotonic() + 120
while time.monotonic() < deadline:
    nodes = target.list_nodes()
    if nodes and all(n["nodeState"] == "idle" for n in nodes):
        break
    time.sleep(0.5)
result["nodes_up"] = nodes

try:
    target.update(min_nodes=5)  # more than max_nodes (3)
    result["too_many"] = None
except ComputeTargetException as exc:
    result["too_many"] = ["ComputeTargetException", str(exc)[:600]]
scale = ComputeTarget(workspace=ws, name=name).scale_settings
result["after_refusal"] = [scale.minimum_node_count, scale.maximum_node_count]
print("RESULT " + json.dumps(result))
