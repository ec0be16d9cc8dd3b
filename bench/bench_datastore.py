"""Datastore upload benchmark: simml's ``upload_tree`` against ``cp -r``, and the cost of a re-upload.

Why: uploading data is the first thing a user does, and a simulator that is slower than a plain
copy (or that re-copies an unchanged tree) gets replaced by shell scripts. Targets:

* ``upload_throughput``: first upload of ``size_mb`` in ``files`` files, MB/s, at least 0.8x ``cp -r``;
* ``reupload_speedup``: the same upload again with ``overwrite=False`` (nothing changed, so it only
  stats), at least 20x faster than the first upload.
* ``upload_throughput_1worker`` (information only): the first upload forced onto one thread.

Method: the data lives in a temp folder on the same filesystem as ``/tmp``; each timed operation
writes to a fresh destination (deleted and ``sync``-ed beforehand, untimed); cp and simml alternate
which goes first; we report medians over ``repeats``. The simml timing includes walking the source
(``collect_upload_items``), as ``cp -r`` walks it too.

Page cache: by default the source is read once first, so both sides copy from a warm cache (the
usual case right after producing data). For cold-cache figures pass ``--drop-caches``: it needs root
and runs ``sync; echo 3 > /proc/sys/vm/drop_caches`` before every timed copy (this slows every
process on the machine for a moment; it is skipped with a warning when not root or not allowed).

Usage: ``python3 bench/bench_datastore.py [--size-mb 1024] [--files 1000] [--repeats 5] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_HERE = Path(__file__).resolve().parent.parent
for _p in (str(_HERE), str(_HERE / "backends")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from simml_local.files import collect_upload_items, upload_tree  # noqa: E402


def _make_data(src: Path, size_mb: int, files: int) -> int:
    """``files`` distinct files totalling ``size_mb`` MiB, 50 per folder (a realistic tree shape)."""
    per_file = max(1, (size_mb << 20) // files)
    block = os.urandom(max(per_file, 1 << 20) + 64)
    total = 0
    for i in range(files):
        d = src / f"part{i // 50:03d}"
        d.mkdir(parents=True, exist_ok=True)
        off = i % 64
        data = i.to_bytes(8, "little") + block[off:off + per_file - 8]
        (d / f"file{i:05d}.bin").write_bytes(data)
        total += len(data)
    return total


def _warm(src: Path) -> None:
    for dirpath, _, names in os.walk(src):
        for n in names:
            with open(os.path.join(dirpath, n), "rb") as f:
                while f.read(8 << 20):
                    pass


def _drop_caches(enabled: bool) -> None:
    os.sync()
    if enabled:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(size_mb: int = 1024, files: int = 1000, repeats: int = 5, *, drop_caches: bool = False,
        workdir: str | None = None, verbose: bool = False) -> list[dict]:
    """Run the benchmark; returns rows ``{"name", "simml", "peer", "ratio", "target", "unit"}``."""
    if drop_caches and (os.geteuid() != 0 or not os.access("/proc/sys/vm/drop_caches", os.W_OK)):
        print("warning: --drop-caches needs root and a writable /proc/sys/vm/drop_caches; "
              "measuring with a warm page cache instead", file=sys.stderr)
        drop_caches = False
    tmp = Path(tempfile.mkdtemp(prefix="simml-bench-", dir=workdir))
    try:
        src = tmp / "src"
        nbytes = _make_data(src, size_mb, files)
        mb = nbytes / 1e6
        if not drop_caches:
            _warm(src)

        def fresh(name: str) -> Path:
            dst = tmp / name
            shutil.rmtree(dst, ignore_errors=True)
            _drop_caches(drop_caches)
            return dst

        def cp() -> float:
            dst = fresh("dst-cp")
            return _timed(lambda: subprocess.run(["cp", "-r", str(src), str(dst)], check=True))

        def simml(workers: int | None = None) -> float:
            dst = fresh("dst-simml")
            return _timed(lambda: upload_tree(dst, collect_upload_items(src, None), overwrite=False,
                                              workers=workers))

        def reupload() -> float:
            dst = tmp / "dst-simml"           # left complete by the simml() just before
            _drop_caches(drop_caches)
            result: list = []
            t = _timed(lambda: result.append(upload_tree(dst, collect_upload_items(src, None),
                                                         overwrite=False)))
            assert not result[0].transferred and len(result[0].skipped) == files, "re-upload copied"
            return t

        t_cp: list[float] = []
        t_simml: list[float] = []
        t_one: list[float] = []
        t_re: list[float] = []
        for r in range(repeats):
            steps: list[Callable[[], None]] = [lambda: t_cp.append(cp()),
                                               lambda: (t_simml.append(simml()), t_re.append(reupload())),
                                               lambda: t_one.append(simml(workers=1))]
            if r % 2:
                steps.reverse()
            for step in steps:
                step()
            if verbose:
                print(f"repeat {r + 1}: cp {mb / t_cp[-1]:.0f} MB/s, simml {mb / t_simml[-1]:.0f} MB/s, "
                      f"simml 1 worker {mb / t_one[-1]:.0f} MB/s, re-upload {t_re[-1] * 1e3:.1f} ms",
                      file=sys.stderr)
        cp_mbs = mb / statistics.median(t_cp)
        simml_mbs = mb / statistics.median(t_simml)
        one_mbs = mb / statistics.median(t_one)
        first_s = statistics.median(t_simml)
        re_s = statistics.median(t_re)
        return [
            {"name": "upload_throughput", "simml": round(simml_mbs, 1), "peer": round(cp_mbs, 1),
             "ratio": round(simml_mbs / cp_mbs, 3), "target": 0.8, "unit": "MB/s"},
            {"name": "reupload_speedup", "simml": round(re_s, 5), "peer": round(first_s, 5),
             "ratio": round(first_s / re_s, 1), "target": 20.0, "unit": "s"},
            {"name": "upload_throughput_1worker", "simml": round(one_mbs, 1), "peer": round(cp_mbs, 1),
             "ratio": round(one_mbs / cp_mbs, 3), "target": None, "unit": "MB/s"},
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--drop-caches", action="store_true", help="cold cache (root only)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every repeat")
    args = ap.parse_args(argv)
    rows = run(args.size_mb, args.files, args.repeats, drop_caches=args.drop_caches, verbose=args.verbose)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{args.size_mb} MiB in {args.files} files, median of {args.repeats}")
        print(f"{'name':28} {'simml':>10} {'peer':>10} {'ratio':>8} {'target':>7}  unit")
        for row in rows:
            target = "" if row["target"] is None else f">={row['target']}"
            print(f"{row['name']:28} {row['simml']:>10} {row['peer']:>10} {row['ratio']:>8} {target:>7}  "
                  f"{row['unit']}")
    ok = all(row["target"] is None or row["ratio"] >= row["target"] for row in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
