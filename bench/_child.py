"""Worker loop for ``_common.Worker``: one JSON request per stdin line, one JSON reply per line.

Requests are ``{"call": "bench_x:function", "kwargs": {...}}``; replies ``{"result": ...}`` or
``{"error": "<traceback>"}``. Library output written to stdout is redirected to stderr so it cannot
corrupt the protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent


def main() -> int:
    for path in (str(BENCH_DIR), str(ROOT), str(ROOT / "backends")):
        if path not in sys.path:
            sys.path.insert(0, path)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                      # anything printed by libraries goes to the stderr log
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            module_name, func_name = request["call"].split(":")
            func = getattr(importlib.import_module(module_name), func_name)
            reply = {"result": func(**request.get("kwargs", {}))}
        except BaseException:  # report everything, including SystemExit, to the parent
            reply = {"error": traceback.format_exc()}
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
