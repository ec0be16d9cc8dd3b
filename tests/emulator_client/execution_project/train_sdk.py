"""A training script that logs through the REAL azureml-core SDK (``azureml.core.run.Run``), as a
user's script on Azure does; submitted by tests/emulator_client/execution_*.py. It prints what it
logged (``LOGGED {...}``), so the test can compare it with the client's ``get_metrics()``."""
import argparse
import json
import os

import joblib
from azureml.core.run import Run
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

parser = argparse.ArgumentParser()
parser.add_argument("--kernel", type=str, default="linear")
parser.add_argument("--penalty", type=float, default=1.0)
args = parser.parse_args()

run = Run.get_context()
print("run class:", type(run).__name__, "id:", run.id)
x, y = datasets.load_iris(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0)
model = SVC(kernel=args.kernel, C=args.penalty).fit(x_train, y_train)
logged = {"Kernel type": args.kernel, "Penalty": args.penalty,
          "Accuracy": float(model.score(x_test, y_test))}
for name, value in logged.items():
    run.log(name, value)
run.log_list("losses", [3, 2, 1])
os.makedirs("outputs", exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
print("LOGGED " + json.dumps({**logged, "losses": [3, 2, 1]}))
print("endpoint:", os.environ["AZUREML_SERVICE_ENDPOINT"])
print("emulator key visible:", "SIMML_EMULATOR_KEY" in os.environ)
