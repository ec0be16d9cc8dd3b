"""The seed doc's training script as Azure users write it: logs through the REAL azureml-core SDK
(``azureml.core.run.Run``) and reads iris.csv from the mounted datastore folder. Submitted by
tests/emulator_client/seed_flow.py; it prints what it logged (``LOGGED {...}``)."""
import argparse
import csv
import json
import os

import joblib
from azureml.core.run import Run
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

parser = argparse.ArgumentParser()
parser.add_argument("--kernel", type=str, default="linear")
parser.add_argument("--penalty", type=float, default=1.0)
parser.add_argument("--data-folder", type=str, default=None)
args = parser.parse_args()

run = Run.get_context()
print("run class:", type(run).__name__, "id:", run.id)
if args.data_folder:
    with open(os.path.join(args.data_folder, "iris.csv"), newline="") as handle:
        rows = [[float(v) for v in row] for row in list(csv.reader(handle))[1:]]  # header first
    x, y = [r[:-1] for r in rows], [int(r[-1]) for r in rows]
else:
    from sklearn import datasets
    x, y = datasets.load_iris(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0)
model = SVC(kernel=args.kernel, C=args.penalty).fit(x_train, y_train)
logged = {"Kernel type": args.kernel, "Penalty": args.penalty,
          "Accuracy": float(model.score(x_test, y_test))}
for name, value in logged.items():
    run.log(name, value)
os.makedirs("outputs", exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
print("LOGGED " + json.dumps(logged))
