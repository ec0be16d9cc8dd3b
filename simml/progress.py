"""Progress reporting for long work (uploads, downloads, builds, waits).

Backends report through the small ``Progress`` protocol; the client side decides how to show it
(a rich progress bar on a terminal, nothing when ``show_progress=False``). Keeping it a protocol
means a backend never imports a UI library.
"""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    def start(self, total_files: int, total_bytes: int) -> None: ...

    def advance(self, path: str, nbytes: int) -> None: ...

    def message(self, text: str) -> None: ...

    def finish(self) -> None: ...


class PrintProgress:
    """Azure's plain-text upload lines plus a rich byte progress bar on stderr when it is a tty."""

    def __init__(self, verb: str = "Uploading") -> None:
        self.verb = verb
        self._bar: Any = None
        self._task: Any = None
        self._done = 0
        self._total = 0

    def start(self, total_files: int, total_bytes: int) -> None:
        self._total = total_files
        print(f"{self.verb} an estimated of {total_files} files", flush=True)
        import sys
        if sys.stderr.isatty():
            from rich.progress import (BarColumn, DownloadColumn, Progress as RichProgress,
                                       TransferSpeedColumn)
            self._bar = RichProgress("[progress.description]{task.description}", BarColumn(),
                                     DownloadColumn(), TransferSpeedColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.verb, total=total_bytes)

    def advance(self, path: str, nbytes: int) -> None:
        self._done += 1
        past = "Uploaded" if self.verb == "Uploading" else "Downloaded"
        print(f"{past} {path}, {self._done} files out of an estimated total of {self._total}",
              flush=True)
        if self._bar is not None:
            self._bar.advance(self._task, nbytes)

    def message(self, text: str) -> None:
        print(text, flush=True)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        past = "Uploaded" if self.verb == "Uploading" else "Downloaded"
        print(f"{past} {self._done} files", flush=True)
