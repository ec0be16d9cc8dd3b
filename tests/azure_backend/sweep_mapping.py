"""Run by tests/test_azure_backend.py in the simml-with-azure venv (no workspace needed): every
simml sampling, parameter expression and early-termination policy becomes the SDK's object with
the same serialised configuration (what Azure's HyperDrive service receives), simml-only settings
left out; what the SDK refuses is simml's typed error with the SDK's message. Prints one
``RESULT {json}`` line."""
import json

import azureml.core  # noqa: F401 - the SDK as the backend imports it (run types registered)

from simml.exceptions import AzureMLException
from simml.train.hyperdrive import (BanditPolicy, BayesianParameterSampling,
                                    GridParameterSampling, MedianStoppingPolicy,
                                    NoTerminationPolicy, RandomParameterSampling,
                                    TruncationSelectionPolicy, choice, lognormal, loguniform,
                                    normal, qlognormal, qloguniform, qnormal, quniform, randint,
                                    uniform)
from simml_azure.azureml_api import Translator, sdk_policy, sdk_sampling

samplings = {
    "random": RandomParameterSampling(
        {"a": choice(1, 2, 3), "b": uniform(0.5, 2.0), "c": quniform(1, 10, 1),
         "d": loguniform(-2, 0), "e": qloguniform(0, 2, 1), "f": normal(0, 2),
         "g": qnormal(0, 1, 1), "h": lognormal(0, 1), "i": qlognormal(0, 1, 1),
         "j": randint(5)}, properties={"rngSeed": 3}),
    "grid": GridParameterSampling({"--kernel": choice("linear", "rbf"), "n": choice(1, 2)}),
    "bayesian": BayesianParameterSampling({"a": uniform(0, 1), "b": choice(1, 2)},
                                          properties={"rngSeed": 1, "batchSize": 2}),
}
policies = {
    "bandit_factor": BanditPolicy(evaluation_interval=2, slack_factor=0.1, delay_evaluation=3),
    "bandit_amount": BanditPolicy(slack_amount=0.05),
    "median": MedianStoppingPolicy(evaluation_interval=1, delay_evaluation=5),
    "truncation": TruncationSelectionPolicy(20, evaluation_interval=2, delay_evaluation=4),
    "none": NoTerminationPolicy(),
}
result = {"sampling": {}, "policy": {}}
for name, sampling in samplings.items():
    result["sampling"][name] = {"simml": sampling.to_json(),
                                "sdk": sdk_sampling(sampling.to_json()).to_json()}
for name, policy in policies.items():
    result["policy"][name] = {"simml": policy.to_json(),
                              "sdk": sdk_policy(policy.to_json()).to_json()}
# simml takes a fractional q for qnormal; the SDK does not: simml's typed error, SDK's words
try:
    with Translator()("preparing sweep HD_x"):
        sdk_sampling(RandomParameterSampling({"g": qnormal(0, 1, 0.5)}).to_json())
    result["fractional_q"] = "no exception"
except AzureMLException as exc:
    result["fractional_q"] = {"error": type(exc).__name__, "message": exc.message,
                              "bases": [c.__name__ for c in type(exc).__mro__]}
print("RESULT " + json.dumps(result))
