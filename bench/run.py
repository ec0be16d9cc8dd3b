"""Run simml's benchmarks and print one markdown table (medians, with the peer measured beside).

Usage: ``python3 bench/run.py [--only NAME[,NAME]] [--quick] [--json PATH] [--list]``

Every ``bench/bench_<name>.py`` whose ``run`` takes a ``quick`` argument is a benchmark (a module
may set ``NAME`` to be listed under another name); ``run(quick)`` returns rows
``{"name", "simml", "peer", "peer_name", "ratio", "target", "unit", "ok", "note"}``. A benchmark that
raises is reported as an error row and the others still run; the exit code is then 1. Targets that
are missed do not change the exit code (timings on a shared machine are too noisy to gate on).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from _common import ROOT, fmt  # noqa: E402

COLUMNS = ("name", "simml", "peer", "peer_name", "ratio", "target", "unit", "ok", "note")


# --- discovery -------------------------------------------------------------------------------------
_RUN_WITH_QUICK = re.compile(r"^def run\([^)]*\bquick\b", re.MULTILINE)
_NAME = re.compile(r"^NAME\s*=\s*[\"']([\w-]+)[\"']", re.MULTILINE)


def discover() -> dict[str, Path]:
    """Benchmark files by name, found by reading the source (nothing is imported yet).

    A ``bench_*.py`` is a benchmark when it defines ``run(quick...)`` at top level; others (such
    as a standalone script another module wraps) are left alone.
    """
    found: dict[str, Path] = {}
    for path in sorted(BENCH_DIR.glob("bench_*.py")):
        source = path.read_text(encoding="utf-8", errors="replace")
        if not _RUN_WITH_QUICK.search(source):
            continue
        named = _NAME.search(source)
        found[named.group(1) if named else path.stem[len("bench_"):]] = path
    return found


def _first_doc_line(path: Path) -> str:
    match = re.search(r'^"""(.*)$', path.read_text(encoding="utf-8", errors="replace"),
                      re.MULTILINE)
    return match.group(1).strip() if match else ""


# --- environment -----------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git() -> str | None:
    """The checkout's commit (read-only git calls), with "+dirty" when files are modified."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               text=True, capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def environment() -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "simml": _version("simml"),
        "simml_git": _git(),
        "mlflow": _version("mlflow"),
        "sqlite": sqlite3.sqlite_version,
    }


# --- output ----------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(meta: dict[str, Any], results: list[dict[str, Any]]) -> str:
    mode = "quick (smoke sizes)" if meta["quick"] else "full"
    lines = [
        f"## simml benchmarks, {meta['date']}, {mode}",
        "",
        f"- machine: {meta['cpu_model']}, {meta['cores']} cores, {meta['memory_gib']} GiB RAM "
        f"({meta['platform']})",
        f"- versions: python {meta['python']}, simml {meta['simml']} (git {meta['simml_git']}), "
        f"mlflow {meta['mlflow'] or 'not installed'}, sqlite {meta['sqlite']}",
        f"- load average (1/5/15 min): before {' '.join(map(str, meta['load_before']))}, "
        f"after {' '.join(map(str, meta['load_after']))}; total {meta['seconds']:.0f} s",
        "- figures are medians; ratio = how many times better simml is than the peer "
        "(> 1: simml better; rates simml/peer, times peer/simml)",
        "",
        "| benchmark | measure | simml | peer | peer value | ratio | unit | target | ok | note |",
        "|---|---|--:|---|--:|--:|---|---|---|---|",
    ]
    for bench in results:
        for r in bench["rows"]:
            ok = {True: "yes", False: "**NO**", None: "–"}[r.get("ok")]
            ratio = "–" if r.get("ratio") is None else f"{r['ratio']:.2f}×" if r["ratio"] < 100 \
                else f"{r['ratio']:,.0f}×"
            lines.append("| " + " | ".join(_cell(c) for c in (
                bench["bench"], r["name"], fmt(r.get("simml")), r.get("peer_name") or "–",
                fmt(r.get("peer")), ratio, r.get("unit", ""), r.get("target") or "–", ok,
                r.get("note", ""))) + " |")
    lines += ["", "| benchmark | seconds | load before | load after | status |",
              "|---|--:|---|---|---|"]
    for bench in results:
        lines.append(f"| {bench['bench']} | {bench['seconds']:.1f} | "
                     f"{' '.join(map(str, bench['load_before']))} | "
                     f"{' '.join(map(str, bench['load_after']))} | {bench['status']} |")
    return "\n".join(lines)


def _normalise(r: dict[str, Any]) -> dict[str, Any]:
    out = {k: r.get(k) for k in COLUMNS}
    out["note"] = out["note"] or ""
    out["peer_name"] = out["peer_name"] or ""
    out.update({k: v for k, v in r.items() if k not in out})   # extras, e.g. raw samples
    return out


# --- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated benchmark names (see --list)")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args(argv)

    found = discover()
    names = sorted(found)
    if args.list:
        for name in names:
            print(f"{name:16} {found[name].name}: {_first_doc_line(found[name])}")
        return 0
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            ap.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
        names = wanted

    meta = environment()
    meta["quick"] = args.quick
    meta["load_before"] = _load()
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    failed = False
    for name in names:
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        entry: dict[str, Any] = {"bench": name, "load_before": _load()}
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(found[name].stem)
            rows = module.run(quick=args.quick)
            entry["status"] = "ok"
        except Exception as exc:
            detail = traceback.format_exc()
            print(detail, file=sys.stderr)
            last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            rows = [{"name": "benchmark failed", "note": f"error: {type(exc).__name__}: {last}"}]
            entry["status"] = "error"
            entry["traceback"] = detail
            failed = True
        entry["seconds"] = time.perf_counter() - t0
        entry["load_after"] = _load()
        entry["rows"] = [_normalise(r) for r in rows]
        results.append(entry)
    meta["seconds"] = time.perf_counter() - started
    meta["load_after"] = _load()

    print(render(meta, results))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
