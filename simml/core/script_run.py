"""``ScriptRun``: Azure's class for submitted script runs (simml's ``Run`` serves both)."""

from simml.core.run import Run

ScriptRun = Run

__all__ = ["ScriptRun"]
