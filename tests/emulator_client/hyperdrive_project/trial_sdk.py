"""A HyperDrive trial that logs its primary metric through the REAL azureml-core SDK
(``Run.get_context()``), as a trial on Azure does; submitted by hyperdrive_sweep.py. No
scikit-learn: the score is a fixed function of the sampled arguments, so the test can recompute
it from the trial's hyperparameters."""
import argparse
import json

from azureml.core.run import Run

parser = argparse.ArgumentParser()
parser.add_argument("--kernel", type=str, default="linear")
parser.add_argument("--penalty", type=float, default=1.0)
args = parser.parse_args()

run = Run.get_context()
accuracy = round(0.95 - abs(args.penalty - 1.0) / 10 - (0.02 if args.kernel == "rbf" else 0.0), 6)
run.log("Accuracy", accuracy)
run.tag("seen_run_id", run.id)           # the run the real SDK logs to: its own child run
run.tag("seen_parent_id", run.parent.id)  # and its parent, read back through run history
print("LOGGED " + json.dumps({"run_id": run.id, "kernel": args.kernel, "penalty": args.penalty,
                              "Accuracy": accuracy}))
