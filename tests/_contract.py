"""The backend contract suite: which backend the ``contract`` tests run against, and every test
the azure backend skips there, with why.

``pytest -m contract`` runs the clock-independent backend tests (marked ``contract``) on the
local backend. The same tests run on the azure backend with ``SIMML_CONTRACT_BACKEND=azure`` and
``SIMML_CONTRACT_CONFIG`` naming a config.json of an Azure workspace (or of ``simml serve``, the
emulator: ``SIMML_CONTRACT_TARGET=emulator``); ``tests/test_azure_backend.py`` does that in the
simml-with-azure venv against the shared emulator. Tests marked ``local_only`` need what only the
local backend has (a manual clock, simulated cluster timings, SQLite, the local runner); their
module or marker says which.

Contract tests must hold in a shared, non-empty workspace (a real Azure workspace is one): they
name their experiments and clusters uniquely and look only at what they made.
"""

from __future__ import annotations

import os
import uuid

BACKEND_ENV = "SIMML_CONTRACT_BACKEND"
CONFIG_ENV = "SIMML_CONTRACT_CONFIG"
TARGET_ENV = "SIMML_CONTRACT_TARGET"

CONTRACT_FILES = (
    "tests/test_run_tracking.py",
    "tests/test_workspace.py",
    "tests/test_compute_contract.py",
    "tests/test_model_contract.py",
    "tests/test_datastores.py",
    "tests/test_submit_contract.py",
    "tests/test_hyperdrive_contract.py",
    "tests/test_cli_contract.py",
    "tests/test_offline_run.py",
    "tests/test_sklearn_estimator.py",
    "tests/test_data_references.py",
    "tests/test_snapshot.py",
    "tests/test_environments.py",
    "tests/test_deployment.py",
)
"""The modules holding contract tests (collected in the azure venv)."""

EMULATOR_GAPS: dict[str, str] = {}
"""Contract tests the azure backend passes on Azure but the emulator cannot serve yet: the route
it lacks. Each entry is the emulator's to-do; remove it when the route lands."""


def backend() -> str:
    return os.environ.get(BACKEND_ENV, "local").strip() or "local"


def skip_reason(nodeid: str) -> str | None:
    """Why this contract test is skipped on the selected backend (None: it runs)."""
    if backend() != "azure" or os.environ.get(TARGET_ENV) != "emulator":
        return None
    key = nodeid.split("[")[0].split("/")[-1]
    return EMULATOR_GAPS.get(key)


def unique(prefix: str) -> str:
    """A name no other test (or earlier run) in a shared workspace uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
