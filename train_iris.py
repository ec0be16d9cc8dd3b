"""The seed doc's training script: an SVC on iris, logged through simml's Run.

Port of the Azure ML sample: only the import prefix differs (``azureml.core.run`` -> ``simml.core.run``).
Run it directly (an offline run that records into the nearest workspace) or submit it.
"""

import argparse
import os

import joblib
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

from simml.core.run import Run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernel", type=str, default="linear",
                        help="Kernel type to be used in the algorithm")
    parser.add_argument("--penalty", type=float, default=1.0, help="Penalty parameter of the error term")
    parser.add_argument("--data-folder", type=str, default=None,
                        help="Folder holding iris.csv (features, then the class); default: "
                             "sklearn's bundled iris")
    args = parser.parse_args()

    run = Run.get_context()
    run.log("Kernel type", str(args.kernel))
    run.log("Penalty", float(args.penalty))

    if args.data_folder:
        import numpy as np
        table = np.loadtxt(os.path.join(args.data_folder, "iris.csv"), delimiter=",", skiprows=1)
        x, y = table[:, :-1], table[:, -1].astype(int)
        print(f"Read {len(y)} rows from {os.path.join(args.data_folder, 'iris.csv')}")
    else:
        x, y = datasets.load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0)

    model = SVC(kernel=args.kernel, C=args.penalty).fit(x_train, y_train)
    accuracy = model.score(x_test, y_test)
    print("Accuracy of SVM classifier on test set: {:.2f}".format(accuracy))
    run.log("Accuracy", float(accuracy))

    os.makedirs("outputs", exist_ok=True)
    joblib.dump(model, "outputs/model.joblib")


if __name__ == "__main__":
    main()
