"""A pytest plugin for ``tests/test_contract_split.py``: after collection, writes each test's id,
fixtures and markers as JSON lines to the file ``SIMML_SPLIT_PROBE`` names."""

from __future__ import annotations

import json
import os
from typing import Any


def pytest_collection_finish(session: Any) -> None:
    with open(os.environ["SIMML_SPLIT_PROBE"], "w", encoding="utf-8") as out:
        for item in session.items:
            out.write(json.dumps({"id": item.nodeid,
                                  "fixtures": sorted(getattr(item, "fixturenames", ())),
                                  "markers": sorted({m.name for m in item.iter_markers()})})
                      + "\n")
