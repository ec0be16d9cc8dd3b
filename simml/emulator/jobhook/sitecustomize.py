"""Imported when a job the emulator submitted starts (this folder is first on the job's
``PYTHONPATH``): when the script ends, the real SDK's run flushes what it still holds, as Azure's
job wrapper does. The SDK uploads metrics from background threads every second or so, so a short
script would otherwise exit before its metrics leave.

The flush runs in the main thread at interpreter exit, before non-daemon threads are joined and
before ``concurrent.futures`` refuses new work (``threading._shutdown``, which the interpreter
looks up when it finalises); ``atexit`` would be too late for the SDK's thread pool. Standard
library only. The ``sitecustomize`` this one hides (a distribution's), if any, runs afterwards.
"""

import importlib.machinery
import importlib.util
import os
import sys
import threading


def flush_submitted_runs() -> None:
    """Flush every ``_SubmittedRun`` the script used (none if it never imported the SDK)."""
    module = sys.modules.get("azureml.core.run")
    if module is None:
        return
    cls = getattr(module, "_SubmittedRun", None)
    runs = getattr(cls, "_SubmittedRun__instances", None)  # Run.get_context()'s cache
    for run in list((runs or {}).values()) if isinstance(runs, dict) else ():
        try:
            run.flush()
        except Exception as exc:  # noqa: BLE001 - the job's outcome is the script's
            sys.stderr.write(f"simml emulator: flushing run {getattr(run, 'id', '?')} at exit "
                             f"failed: {exc}\n")


def _install() -> None:
    original = getattr(threading, "_shutdown", None)
    if original is None or getattr(original, "_simml_flush", False):
        return

    def _shutdown() -> None:
        try:
            flush_submitted_runs()
        finally:
            original()

    _shutdown._simml_flush = True  # type: ignore[attr-defined]
    threading._shutdown = _shutdown  # type: ignore[attr-defined]


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - as site.py does for a failing sitecustomize
        sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{exc}\n")


_install()
_chain()
