"""Datastore upload (issue 3): wraps ``bench_datastore.run`` and converts its rows.

``bench/bench_datastore.py`` has its own author; this module only calls it and converts its rows to
the common shape.

Sizes: 1024 MiB in 1000 files, 5 repeats (``--quick``: 64 MiB in 100 files, 2 repeats). See
``bench/bench_datastore.py`` for the method (``upload_tree`` against ``cp -r``, warm page cache,
alternating order). Its targets apply to the ratio: first upload at least 0.8× ``cp -r``'s
throughput, re-upload of an unchanged tree at least 20× faster than the first upload.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from _common import row

NAME = "datastore"

# What each row of bench_datastore compares against, and how to read its ratio.
_PEERS = {
    "upload_throughput": ("cp -r", True),
    "upload_throughput_1worker": ("cp -r", True),
    "reupload_speedup": ("first upload (simml)", False),
}


def _convert(r: dict[str, Any], how: str) -> dict[str, Any]:
    if "peer_name" in r and "ok" in r:                       # already in the common shape
        return {**r, "note": r.get("note") or how}
    name = str(r.get("name"))
    peer_name, higher = _PEERS.get(name, ("peer", True))
    simml, peer, unit = r.get("simml"), r.get("peer"), r.get("unit", "")
    if unit == "s":                                          # easier to read in ms
        simml = None if simml is None else simml * 1000
        peer = None if peer is None else peer * 1000
        unit = "ms"
    out = row(name, simml, unit, peer=peer, peer_name=peer_name, higher_is_better=higher,
              note=how)
    if r.get("ratio") is not None:
        out["ratio"] = r["ratio"]                            # bench_datastore's own definition
    target = r.get("target")
    if target is not None:
        out["target"] = f"ratio ≥ {target}"
        out["ok"] = out["ratio"] is not None and out["ratio"] >= target
    return out


def run(quick: bool = False) -> list[dict]:
    size_mb, files, repeats = (64, 100, 2) if quick else (1024, 1000, 5)
    try:
        module = importlib.import_module("bench_datastore")
        params = inspect.signature(module.run).parameters
        if not {"size_mb", "files", "repeats"} <= set(params):
            raise AttributeError("bench_datastore.run has no size_mb/files/repeats parameters")
    except (ImportError, AttributeError) as exc:
        return [row("upload", None, "", note=f"not available yet: {type(exc).__name__}: {exc}")]
    rows = module.run(size_mb=size_mb, files=files, repeats=repeats)
    how = f"{size_mb} MiB in {files} files, median of {repeats}, warm page cache"
    return [_convert(r, how) for r in rows]
