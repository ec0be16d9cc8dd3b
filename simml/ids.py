"""Seedable identifiers.

Run ids follow Azure's formats (``{experiment}_{unix}_{hex8}`` for submitted runs, a UUID for
interactive and child runs). An ``IdFactory`` built with a seed gives the same sequence every time,
so tests and sweeps can compare recorded ids; without one it draws from the OS.
"""

from __future__ import annotations

import os
import random
import uuid
from datetime import datetime


class IdFactory:
    """Makes ids; deterministic when seeded."""

    def __init__(self, seed: int | str | None = None) -> None:
        self._random = random.Random(seed) if seed is not None else None

    @classmethod
    def from_environment(cls) -> "IdFactory":
        """Seed from ``SIMML_SEED`` when set (for reproducible ids across processes)."""
        seed = os.environ.get("SIMML_SEED")
        return cls(seed if seed else None)

    def uuid4(self) -> str:
        if self._random is None:
            return str(uuid.uuid4())
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def hex(self, length: int = 8) -> str:
        return self.uuid4().replace("-", "")[:length]

    def script_run_id(self, experiment: str, at: datetime) -> str:
        """Azure's id for a submitted script run: ``{experiment}_{unix seconds}_{8 hex}``."""
        return f"{experiment}_{int(at.timestamp())}_{self.hex(8)}"

    def offline_run_id(self) -> str:
        """Azure's offline run id format, kept because scripts test ``run.id.startswith('OfflineRun')``."""
        return f"OfflineRun_{self.uuid4()}"
