"""Azure ML's ``azureml.train`` names, served by simml (``azureml.train.X`` is ``simml.train.X``).

* ``simml.train.estimator.Estimator``: the generic (deprecated) estimator;
* ``simml.train.sklearn.SKLearn``: the scikit-learn estimator of the seed doc.
* ``simml.train.hyperdrive``: HyperDrive sweeps (``HyperDriveConfig``, samplers, policies),
  reproducible at any concurrency (docs/hyperdrive.md).

Both submit through ``experiment.submit(estimator)`` exactly as a ``ScriptRunConfig`` does
(validate, snapshot, create the run, hand it to the backend).
"""
