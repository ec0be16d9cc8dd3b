"""The backend contract split holds (docs/testing.md): in the modules of the contract suite
(``tests/_contract.py``), every test that works in a workspace says whether every backend must
pass it (``contract``) or only the local one (``local_only``), and none says both; an unmarked
test there would silently never run on another backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _contract import CONTRACT_FILES

REPO = Path(__file__).resolve().parent.parent
WORKSPACE_FIXTURES = {"ws", "simml_workspace", "simml_manual_clock", "simml_instant_cluster"}


def test_every_workspace_test_of_the_contract_modules_is_marked(tmp_path: Path) -> None:
    probe = tmp_path / "items.jsonl"
    env = {**os.environ, "SIMML_SPLIT_PROBE": str(probe),
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    env.pop("SIMML_CONTRACT_BACKEND", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "-p", "_split_probe", *CONTRACT_FILES],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    items = [json.loads(line) for line in probe.read_text().splitlines()]
    assert len(items) > 100
    unmarked = [i["id"] for i in items if WORKSPACE_FIXTURES & set(i["fixtures"])
                and not {"contract", "local_only"} & set(i["markers"])]
    both = [i["id"] for i in items if {"contract", "local_only"} <= set(i["markers"])]
    assert not unmarked, unmarked
    assert not both, both
    assert sum("contract" in i["markers"] for i in items) > 100
