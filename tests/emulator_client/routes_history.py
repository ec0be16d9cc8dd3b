"""Run by tests/test_emulator_routes.py with the REAL azureml-core client: listing experiments
(Experiment.list with its filters and view types, ws.experiments), archive and reactivate, the
runs of an experiment (Experiment.get_runs / Run.list with tags, properties, type, status,
include_children; ExperimentClient paging), remove_tags, and the cancel events.

argv: a new experiment name, an experiment simml's API made (one run tagged source=simml).
"""
import json
import sys

from azureml._restclient.experiment_client import ExperimentClient
from azureml.core import Experiment, Run, Workspace
from azureml.core.experiment import ViewType

from simml.emulator.client_auth import SimmlEmulatorAuthentication

name, simml_made = sys.argv[1:3]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
result = {}


def listed(**kwargs):
    return [e.name for e in Experiment.list(ws, **kwargs) if e.name == name]


# --- experiments -------------------------------------------------------------------------------
experiment = Experiment(ws, name)
result["listed"] = listed()
result["by_name"] = [e.name for e in Experiment.list(ws, experiment_name=name)]
result["in_workspace"] = [name in ws.experiments, simml_made in ws.experiments]
experiment.archive()
result["archived"] = [listed(), listed(view_type=ViewType.All),
                      listed(view_type=ViewType.ArchivedOnly)]
experiment.reactivate()
result["reactivated"] = [listed(), listed(view_type=ViewType.ArchivedOnly)]

# --- runs: the contract test's tree ------------------------------------------------------------
parent = experiment.start_logging(snapshot_directory=None)
a = parent.child_run("a")
b = parent.child_run("b")
a.tag("kind", "x")
a.add_properties({"stage": "train"})
grandchild = a.child_run("g")
b.complete()
result["ids"] = {"parent": parent.id, "a": a.id, "b": b.id, "g": grandchild.id}
result["top_level"] = [r.id for r in experiment.get_runs()]
result["everything"] = [r.id for r in experiment.get_runs(include_children=True)]
result["tag_value"] = [r.id for r in experiment.get_runs(include_children=True,
                                                         tags={"kind": "x"})]
result["tag_key"] = [r.id for r in experiment.get_runs(include_children=True, tags="kind")]
result["property"] = [r.id for r in experiment.get_runs(include_children=True,
                                                        properties={"stage": "train"})]
result["type"] = sorted(r.id for r in experiment.get_runs(type="azureml.scriptrun",
                                                          include_children=True))
result["status"] = [r.id for r in Run.list(experiment, status="Completed",
                                           include_children=True)]
# the client's own pager: two runs a page
client = ExperimentClient(ws.service_context, name, experiment.id)
result["paged"] = sorted(d.run_id for d in client.get_runs(page_size=2, include_children=True))
result["by_ids"] = sorted(d.run_id for d in client.get_runs_by_run_ids([a.id, b.id]))

# --- remove_tags --------------------------------------------------------------------------------
parent.set_tags({"quick": "", "team": "a"})
parent.remove_tags(["quick", "never-set"])
result["tags_after_remove"] = Run(experiment, parent.id).get_tags()

# --- cancel: CancelRequested then Canceled (as a job's SDK and the plug-in post them) -------------
events = experiment.start_logging(snapshot_directory=None)
events._client.run.post_event_cancel_requested()
first = Run(experiment, events.id).get_status()
events._client.run.post_event_canceled()
result["cancel_sequence"] = [first, Run(experiment, events.id).get_status()]
alone = experiment.start_logging(snapshot_directory=None)
alone.cancel()  # the SDK's Run.cancel(): one Canceled event
result["cancel_alone"] = Run(experiment, alone.id).get_status()

for run in (grandchild, a, parent):
    run.complete()

# --- what simml's API made, read by the client ---------------------------------------------------
other = Experiment(ws, simml_made)
result["simml_runs"] = [[r.id, r.get_tags()] for r in other.get_runs(tags={"source": "simml"})]
print("RESULT " + json.dumps(result))
