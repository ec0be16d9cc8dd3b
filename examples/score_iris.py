"""Entry script of the seed flow's web service (``examples/seed.py`` copies it next to
``train_iris.py`` as ``score.py``): the contract of Azure ML's inference server.

``init()`` runs once when the service starts and loads the registered model: with one model
deployed, ``AZUREML_MODEL_DIR`` is ``azureml-models/sklearn-iris/<version>`` and the registered file
keeps its name. ``run(raw_data)`` gets each request's body as text, here
``{"data": [[sepal length, sepal width, petal length, petal width], ...]}``, and returns the
predicted classes (0 setosa, 1 versicolor, 2 virginica).
"""

import json
import os

import joblib
import numpy as np


def init():
    global model
    model = joblib.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.joblib"))


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return model.predict(data).tolist()
