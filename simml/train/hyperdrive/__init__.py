"""Azure ML's ``azureml.train.hyperdrive``, served by simml: sweeps that run offline and are
reproducible at any concurrency (see ``docs/hyperdrive.md``).

Nothing here imports optuna until a Bayesian batch is proposed.
"""

from simml.train.hyperdrive.exceptions import (
    HyperDriveConfigException,
    PrimaryMetricNotFoundException,
)
from simml.train.hyperdrive.parameter_expressions import (
    choice,
    lognormal,
    loguniform,
    normal,
    qlognormal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    uniform,
)
from simml.train.hyperdrive.policy import (
    BanditPolicy,
    EarlyTerminationPolicy,
    MedianStoppingPolicy,
    NoTerminationPolicy,
    TruncationSelectionPolicy,
)
from simml.train.hyperdrive.run import HyperDriveRun, PrimaryMetricGoal
from simml.train.hyperdrive.runconfig import HyperDriveConfig
from simml.train.hyperdrive.sampling import (
    BayesianParameterSampling,
    GridParameterSampling,
    HyperParameterSampling,
    RandomParameterSampling,
)

__all__ = [
    "BanditPolicy", "BayesianParameterSampling", "EarlyTerminationPolicy", "GridParameterSampling",
    "HyperDriveConfig", "HyperDriveConfigException", "HyperDriveRun", "HyperParameterSampling",
    "MedianStoppingPolicy", "NoTerminationPolicy", "PrimaryMetricGoal",
    "PrimaryMetricNotFoundException", "RandomParameterSampling", "TruncationSelectionPolicy",
    "choice", "lognormal", "loguniform", "normal", "qlognormal", "qloguniform", "qnormal",
    "quniform", "randint", "uniform",
]
