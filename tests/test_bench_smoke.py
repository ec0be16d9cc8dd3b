"""Smoke test of the benchmark runner: ``bench/run.py --quick`` works end to end.

Only the shape of the output is checked (a table with numeric values): timings on a shared machine
are far too noisy to assert on.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("×"))


@pytest.mark.slow
def test_quick_run_prints_a_table_with_numbers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "logging,import",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # The markdown table: one row per result, simml's value numeric in every row.
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| benchmark | measure"))
    cells = [line.strip("|").split("|") for line in lines[header + 2:] if line.startswith("|")]
    rows = [[c.strip() for c in r] for r in cells if len(r) >= 10]
    assert {r[0] for r in rows} == {"logging", "import"}, proc.stdout
    for r in rows:
        assert _number(r[2]) > 0, r
    assert "machine:" in proc.stdout and "load average" in proc.stdout

    # The JSON copy: same rows, numeric values, the machine description.
    data = json.loads(out.read_text())
    assert data["meta"]["cores"] and data["meta"]["python"] and data["meta"]["sqlite"]
    results = {b["bench"]: b for b in data["results"]}
    assert set(results) == {"logging", "import"}
    for bench in results.values():
        assert bench["status"] == "ok"
        assert bench["rows"]
        for r in bench["rows"]:
            assert isinstance(r["simml"], (int, float)) and math.isfinite(r["simml"]) and r["simml"] > 0
            if r["peer"] is not None:                       # absent when mlflow is not installed
                assert isinstance(r["peer"], (int, float)) and r["peer"] > 0
                assert isinstance(r["ratio"], (int, float)) and r["ratio"] > 0
            assert r["ok"] in (True, False, None)
    logging_rows = results["logging"]["rows"]
    assert all(r["unit"] == "values/s" for r in logging_rows)
