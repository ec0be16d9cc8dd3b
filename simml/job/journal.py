"""The job side of the run journal: an append-only JSON Lines file the runner ingests.

One JSON object per line; the runner's reader and ingester is ``simml_local.journal``. Events::

    {"e":"metric","run":ID,"name":N,"kind":"scalar","value":V,"step":S|null,"time":T}
    {"e":"metric","run":ID,"name":N,"kind":"list","value":[V,...],"time":T}
    {"e":"metric","run":ID,"name":N,"kind":"row","value":{"col":V,...},"time":T}
    {"e":"metric","run":ID,"name":N,"kind":"table","value":{"col":[V,...],...},"time":T}
    {"e":"metric","run":ID,"name":N,"kind":"image","path":SIDE,"time":T}
    {"e":"tags","run":ID,"tags":{"k":"v",...},"time":T}
    {"e":"tags_removed","run":ID,"keys":["k",...],"time":T}
    {"e":"properties","run":ID,"properties":{"k":"v",...},"time":T}
    {"e":"file","run":ID,"name":RUN_FILE_NAME,"path":SIDE,"time":T}
    {"e":"child","run":CHILD_ID,"parent":ID,"name":DISPLAY_NAME|null,"time":T}
    {"e":"complete","run":ID,"time":T}
    {"e":"fail","run":ID,"details":TEXT|null,"code":CODE|null,"time":T}

``SIDE`` is a path relative to the side folder ``files/`` next to the journal, where the job copies
every uploaded file and image at call time (so later edits by the script do not change what is
uploaded). ``T`` is ``time.time()`` plus ``SIMML_JOB_CLOCK_OFFSET`` (seconds, default 0), which the
runner sets to shift job times into the workspace's simulated time (scalar metrics are written
with microsecond precision).

Events are buffered in memory and written on ``flush()``, one second after the first buffered
event (a daemon thread), at 10,000 buffered events, on ``complete()``/``fail()`` and at interpreter
exit -- not on SIGTERM or SIGKILL, so call ``run.flush()`` before a point you cannot afford to
lose, and in a forked worker before ``os._exit``. Every write is ONE ``os.write`` of complete
lines on an ``O_APPEND`` descriptor, so several processes may append to one journal and a reader
only ever sees whole lines plus, at most, a partial trailing line that a later write completes.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import threading
import time
import weakref
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any, List, Optional

FLUSH_EVENTS = 10_000
FLUSH_SECONDS = 1.0
SIDE_FOLDER = "files"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_OPEN_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_BINARY", 0))
_SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def side_folder(journal_path: str) -> str:
    """The folder next to the journal where the job copies files to upload (``files/``)."""
    return os.path.join(os.path.dirname(os.path.abspath(journal_path)), SIDE_FOLDER)


def dumps(event: dict) -> str:
    """One journal line (compact JSON, ASCII, no NaN) with its newline."""
    return json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n"


class JournalWriter:
    """Buffers events of one journal file and appends them as whole lines.

    Shared by every ``JobRun`` of the process that writes to the same journal (a run, its
    children, its parent). Thread-safe; after ``os.fork`` the child starts with an empty buffer
    (the parent writes what was buffered before the fork).
    """

    def __init__(self, path: str, clock_offset: float = 0.0) -> None:
        self.path = os.path.abspath(path)
        self.side = side_folder(self.path)
        self.clock_offset = float(clock_offset)
        self.lock = threading.Lock()
        self.buffer: List[Any] = []  # str: an encoded line; tuple: a scalar metric
        self._fd: Optional[int] = None
        self._prefixes: dict = {}
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._thread_pid = 0
        self._counter = 0
        _WRITERS.add(self)
        atexit.register(_flush_at_exit, weakref.ref(self))

    def now(self) -> float:
        return time.time() + self.clock_offset

    # --- buffering ---------------------------------------------------------------------------
    def first_event(self) -> None:
        """Called under ``lock`` when an event goes into an empty buffer: arm the timed flush."""
        thread = self._thread
        if thread is None or self._thread_pid != os.getpid() or not thread.is_alive():
            self._thread_pid = os.getpid()
            self._thread = threading.Thread(target=self._flush_loop, name="simml-job-journal",
                                            daemon=True)
            self._thread.start()
        self._wake.set()

    def add_line(self, line: str) -> None:
        """Buffer an encoded event (from ``dumps``)."""
        with self.lock:
            buffer = self.buffer
            if not buffer:
                self.first_event()
            buffer.append(line)
            if len(buffer) >= FLUSH_EVENTS:
                self.flush_locked()

    def add_event(self, event: dict) -> None:
        self.add_line(dumps(event))

    def flush(self) -> None:
        with self.lock:
            self.flush_locked()

    def flush_locked(self) -> None:
        buffer = self.buffer
        if not buffer:
            return
        self.buffer = []
        try:
            self._write(self._encode(buffer))
        except BaseException:
            self.buffer = buffer + self.buffer  # keep them for the next attempt
            raise

    def _flush_loop(self) -> None:
        wake = self._wake
        while True:
            wake.wait()
            time.sleep(FLUSH_SECONDS)
            with self.lock:
                wake.clear()
                try:
                    self.flush_locked()
                except Exception as exc:  # never let the thread die; the next flush retries
                    _warn(f"simml: could not write the run journal {self.path}: {exc!r}")

    # --- encoding and writing ----------------------------------------------------------------
    def _encode(self, buffer: List[Any]) -> bytes:
        prefixes = self._prefixes
        float_text = float.__repr__
        parts = []
        append = parts.append
        for item in buffer:
            if type(item) is str:
                append(item)
                continue
            run, name, value, step, at = item
            prefix = prefixes.get((run, name))
            if prefix is None:
                prefix = prefixes[(run, name)] = (
                    '{"e":"metric","run":%s,"name":%s,"kind":"scalar","value":'
                    % (_json_str(run), _json_str(name)))
            kind = type(value)
            if kind is float:
                text = float_text(value)
            elif kind is int:
                text = int.__repr__(value)
            elif kind is str:
                text = _json_str(value)
            elif value is None:
                text = "null"
            else:
                text = "true" if value else "false"
            append('%s%s,"step":%s,"time":%.6f}\n'
                   % (prefix, text, "null" if step is None else step, at))
        return "".join(parts).encode("ascii")

    def _write(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            folder = os.path.dirname(self.path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            fd = self._fd = os.open(self.path, _OPEN_FLAGS, 0o644)
        written = os.write(fd, data)
        while written < len(data):  # only on a full disk or a signal: finish what was started
            written += os.write(fd, data[written:])

    # --- side files --------------------------------------------------------------------------
    def side_name(self, source_name: str) -> str:
        """A fresh name inside the side folder for a copy of ``source_name``."""
        with self.lock:
            self._counter += 1
            counter = self._counter
        base = "".join(c if c in _SAFE_CHARS else "_" for c in os.path.basename(source_name))
        return f"{os.getpid()}-{counter}-{os.urandom(4).hex()}-{base[-80:] or 'file'}"

    def copy_in(self, source: Any, source_name: str) -> str:
        """Copy a file path or a readable stream into the side folder, atomically (temporary
        name, then rename); return its path relative to the side folder."""
        os.makedirs(self.side, exist_ok=True)
        name = self.side_name(source_name)
        tmp = os.path.join(self.side, f".tmp-{name}")
        try:
            if hasattr(source, "read"):
                with open(tmp, "wb") as out:
                    while True:
                        chunk = source.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            elif callable(source):  # a writer callback (matplotlib's savefig)
                source(tmp)
            else:
                shutil.copyfile(source, tmp)
            os.replace(tmp, os.path.join(self.side, name))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return name

    def after_fork_in_child(self) -> None:
        self.lock = threading.Lock()
        self.buffer = []
        self._wake = threading.Event()
        self._thread = None


_WRITERS: "weakref.WeakSet[JournalWriter]" = weakref.WeakSet()
_BY_PATH: dict = {}


def writer_for(path: str, clock_offset: float = 0.0) -> JournalWriter:
    """The process's writer of ``path`` (one per journal file, shared by its runs)."""
    key = os.path.abspath(path)
    writer = _BY_PATH.get(key)
    if writer is None:
        writer = _BY_PATH[key] = JournalWriter(key, clock_offset)
    return writer


def _flush_at_exit(ref: "weakref.ref[JournalWriter]") -> None:
    writer = ref()
    if writer is not None:
        try:
            writer.flush()
        except Exception as exc:
            _warn(f"simml: could not write the run journal {writer.path} at exit: {exc!r}")


def _after_fork_in_child() -> None:
    for writer in list(_WRITERS):
        writer.after_fork_in_child()


def _warn(message: str) -> None:
    try:
        sys.stderr.write(message + "\n")
    except Exception:
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
