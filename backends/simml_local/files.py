"""File-level machinery of the local backend: datastores, run files and model files as plain folders.

Everything here is a pure function over directories (no database), so the same code serves a
datastore (``<workspace>/datastores/<name>/``), a run's files and a model version's files.

Three promises, because each one is a way real users lose data or leak files:

* **Paths stay inside their root.** Every user-supplied relative path goes through
  :func:`safe_relpath` (no ``..`` escape, nothing absolute, no NUL), and every path used inside a
  root through :func:`safe_join` or the equivalent batch check, which also refuses symlinks (files
  or folders) that resolve outside the root. This guards against mistakes and hostile *names*, not
  against a concurrent local attacker swapping folders for links between check and use.
* **Nothing half-written is ever visible under a final name.** Files are written to a temporary
  ``.simml-tmp-<pid>-<hex>`` sibling and ``os.replace``-d (or, when existing files must not be
  clobbered, hard-linked) into place. Temporaries are never listed; one left behind by a killed
  process is deleted when a later call meets it (its pid is gone, or it is older than an hour).
* **Validate everything, then write.** :func:`upload_tree` and :func:`download_tree` refuse the
  whole call (unsafe target, missing source, file/folder clash) before the first byte is copied.

Speed: a copy is ``os.copy_file_range`` (in-kernel, reflinks where the filesystem can) falling back
to a large-buffer read/write loop; no fsync unless asked; large uploads copy on a few threads (the
syscalls release the GIL). A re-upload with ``overwrite=False`` reads each target folder once
(``os.scandir``) instead of stat-ing every file.

Prefixes (:func:`list_tree`, :func:`download_tree`) are *folder* prefixes by default: ``"data"``
means the file ``data`` or anything under ``data/``. ``blob_prefix=True`` gives Azure Blob's plain
string-prefix matching (``"data"`` also matches ``data2/x``), which ``Datastore.download`` uses.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path

from simml.entities import TransferResult, UploadItem
from simml.exceptions import NotFoundException, UnsafePathException, UserErrorException
from simml.progress import Progress

__all__ = [
    "TMP_PREFIX", "STALE_TMP_SECONDS", "safe_relpath", "safe_join", "atomic_copy",
    "atomic_write_bytes", "collect_upload_items", "collect_file_items", "upload_tree",
    "download_tree", "list_tree", "clean_stale_temp",
]

TMP_PREFIX = ".simml-tmp-"
"""Names starting with this are in-flight temporaries: never listed, never accepted as user paths."""

STALE_TMP_SECONDS = 3600.0
"""A temporary whose writer is alive is still removed once untouched this long (pid reuse guard)."""

_DRIVE = re.compile(r"^[A-Za-z]:")
_PARALLEL_MIN_BYTES = 32 << 20   # below this, thread start-up costs more than it saves
_MAX_WORKERS = 4
_CFR_FALLBACK_ERRNOS = frozenset(
    e for e in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.EBADF, errno.EPERM,
                errno.ETXTBSY) if e is not None)


# --- paths ----------------------------------------------------------------------------------------

def safe_relpath(path: str | os.PathLike[str], *, allow_empty: bool = False, what: str = "path") -> str:
    """Normalise a user-supplied relative POSIX path, refusing anything that could leave its root.

    Backslashes become ``/``, empty and ``.`` segments go, ``a/../b`` collapses to ``b``. Refused
    (:class:`UnsafePathException`, naming ``what`` and the value): NUL, absolute paths (``/x``,
    ``C:\\x``, ``C:x``, ``\\\\server``), a ``..`` that climbs above the start, a segment that is a
    simml temporary name, and -- unless ``allow_empty`` (prefixes, "the whole root") -- a path that
    is empty after normalisation.
    """
    if (type(path) is str and path and "\\" not in path and "\x00" not in path and "//" not in path
            and "/." not in path and path[0] not in "./" and path[-1] != "/" and not _DRIVE.match(path)):
        return path                        # already normal (the common case: keep it cheap)
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise UnsafePathException(f"{what} {path!r} must be a string.")
    if "\x00" in path:
        raise UnsafePathException(f"{what} {path!r} contains a NUL character.")
    p = path.replace("\\", "/")
    if p.startswith("/") or _DRIVE.match(p):
        raise UnsafePathException(f"{what} {path!r} is absolute; it must be relative to the root.")
    parts: list[str] = []
    for seg in p.split("/"):
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if not parts:
                raise UnsafePathException(f"{what} {path!r} escapes its root with '..'.")
            parts.pop()
            continue
        if seg.startswith(TMP_PREFIX):
            raise UnsafePathException(f"{what} {path!r} uses the reserved name prefix {TMP_PREFIX!r}.")
        parts.append(seg)
    rel = "/".join(parts)
    if not rel and not allow_empty:
        raise UnsafePathException(f"{what} {path!r} is empty; a file path is required.")
    return rel


def _inside(resolved: str, base: str) -> bool:
    return resolved == base or resolved.startswith(base if base.endswith(os.sep) else base + os.sep)


def safe_join(root: Path | str, relpath: str) -> Path:
    """``root/relpath`` after :func:`safe_relpath`, verified to stay inside ``root`` once symlinks of
    existing components are resolved (a link in the root pointing outside is refused).

    Returns the joined (unresolved) path under ``root.resolve()``; ``relpath`` may be empty (the root).
    """
    rel = safe_relpath(relpath, allow_empty=True)
    base = os.path.realpath(root)
    joined = os.path.join(base, *rel.split("/")) if rel else base
    if not _inside(os.path.realpath(joined), base):
        raise UnsafePathException(f"path {relpath!r} resolves outside its root (through a symlink).")
    return Path(joined)


# --- temporaries ----------------------------------------------------------------------------------

def _tmp_is_stale(name: str, path: str) -> bool:
    """A temporary is stale when its writer (pid in the name) is gone, or it was untouched for long."""
    pid_text = name[len(TMP_PREFIX):].split("-", 1)[0]
    try:
        old = time.time() - os.lstat(path).st_mtime > STALE_TMP_SECONDS
    except OSError:
        return False
    if old:
        return True
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False              # another thread of ours may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


def _maybe_clean_tmp(name: str, path: str) -> None:
    if _tmp_is_stale(name, path):
        try:
            os.unlink(path)
        except OSError:
            pass


def clean_stale_temp(directory: Path | str) -> int:
    """Delete stale ``.simml-tmp-*`` files directly in ``directory``; returns how many went."""
    removed = 0
    try:
        with os.scandir(directory) as it:
            for e in it:
                if e.name.startswith(TMP_PREFIX) and _tmp_is_stale(e.name, e.path):
                    try:
                        os.unlink(e.path)
                        removed += 1
                    except OSError:
                        pass
    except OSError:
        pass
    return removed


def _open_tmp(directory: str) -> tuple[str, int]:
    """Create a fresh temporary in ``directory`` (0o666 & ~umask, like a normal new file)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    prefix = f"{TMP_PREFIX}{os.getpid()}-"
    while True:
        tmp = os.path.join(directory, prefix + secrets.token_hex(6))
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            return tmp, os.open(tmp, flags, 0o666)


def _load_renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    """libc's renameat2 (Linux): an atomic no-clobber rename, as cheap as rename(2)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _publish(tmp: str, dst: str, overwrite: bool) -> None:
    """Move a finished temporary to its final name; without ``overwrite`` never clobber an existing
    file (renameat2 RENAME_NOREPLACE, else link(2) + unlink: both atomic, unlike check-then-rename)."""
    global _renameat2
    if overwrite:
        os.replace(tmp, dst)
        return
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        import ctypes
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "File exists", dst)
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
        # this filesystem can't do RENAME_NOREPLACE: fall through to link(2)
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise
    except OSError:                       # no hard links here: best effort check-then-rename
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "File exists", dst) from None
        os.replace(tmp, dst)
        return
    os.unlink(tmp)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- copying --------------------------------------------------------------------------------------

def _copy_fd(fd_in: int, fd_out: int, chunk: int) -> int:
    """Copy fd_in to fd_out from their current offsets: copy_file_range, else read/write."""
    total = 0
    cfr = getattr(os, "copy_file_range", None)
    if cfr is not None:
        try:
            while True:
                n = cfr(fd_in, fd_out, chunk)
                if n == 0:
                    break
                total += n
        except OSError as e:
            if e.errno not in _CFR_FALLBACK_ERRNOS:
                raise
        else:
            # 0 bytes from a non-empty file: a pseudo-file (procfs) that copy_file_range can't read.
            if total or os.fstat(fd_in).st_size == 0:
                return total
    buf = bytearray(chunk)
    view = memoryview(buf)
    while True:
        n = os.readv(fd_in, [buf])
        if n == 0:
            return total
        done = 0
        while done < n:
            done += os.write(fd_out, view[done:n])
        total += n


def atomic_copy(src: Path | str, dst: Path | str, chunk: int = 1 << 20, *, overwrite: bool = True,
                fsync: bool = False) -> int:
    """Copy ``src`` to ``dst`` so that ``dst`` is either absent/old or complete, never partial.

    Writes ``dst``'s folder/``.simml-tmp-*`` (creating the folder if needed), then renames it into
    place. ``overwrite=False`` publishes with link(2), so an existing ``dst`` -- even one created
    concurrently -- raises ``FileExistsError`` and is left untouched. ``fsync=True`` flushes file and
    folder (slower; only for crash-durability, atomicity holds without it). Returns bytes copied.
    """
    dst_s = os.fspath(dst)
    directory = os.path.dirname(dst_s) or "."
    fd_in = os.open(src, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd_in).st_mode):
            raise UserErrorException(f"Source {os.fspath(src)!r} is not a regular file.")
        tmp, fd_out = _open_tmp(directory)
        try:
            n = _copy_fd(fd_in, fd_out, chunk)
            if fsync:
                os.fsync(fd_out)
            os.close(fd_out)
            fd_out = -1
            _publish(tmp, dst_s, overwrite)
        except BaseException:
            if fd_out >= 0:
                os.close(fd_out)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    finally:
        os.close(fd_in)
    if fsync:
        _fsync_dir(directory)
    return n


def atomic_write_bytes(dst: Path | str, data: bytes | bytearray | memoryview, *, overwrite: bool = True,
                       fsync: bool = False) -> int:
    """Write ``data`` to ``dst`` atomically (same temporary/rename scheme as :func:`atomic_copy`)."""
    dst_s = os.fspath(dst)
    directory = os.path.dirname(dst_s) or "."
    tmp, fd = _open_tmp(directory)
    try:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        if fsync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        _publish(tmp, dst_s, overwrite)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync:
        _fsync_dir(directory)
    return len(view)


# --- collecting what to upload --------------------------------------------------------------------

def _join_target(target_path: str, rel: str) -> str:
    return f"{target_path}/{rel}" if target_path else rel


def collect_upload_items(src_dir: Path | str, target_path: str | None = None) -> list[UploadItem]:
    """The items of ``Datastore.upload(src_dir, target_path)``: every file under ``src_dir``, sorted,
    going to ``target_path/<path relative to src_dir>``.

    Sources keep the form the user gave (``proj/data/iris.csv``), which is what Azure prints.
    Symlink policy, chosen so a tree upload never reaches outside the tree the user named:
    symlinked *files* are followed when they resolve inside ``src_dir`` and refused
    (:class:`UnsafePathException`) when they resolve outside (name such a file explicitly with
    :func:`collect_file_items` to upload it); a dangling link is a missing source
    (:class:`NotFoundException`); symlinked *folders* are not descended (as ``os.walk`` and Azure);
    sockets/FIFOs/devices and simml temporaries are skipped.
    """
    src = os.fspath(src_dir)
    tp = safe_relpath(target_path or "", allow_empty=True, what="target_path")
    if not os.path.exists(src):
        raise NotFoundException(f"Source folder {src!r} does not exist.")
    if not os.path.isdir(src):
        raise UserErrorException(f"Source path for upload needs to be a directory. "
                                 f"Provided path for upload is {src!r}.")
    shown = src.rstrip("/\\") or src
    real_base = os.path.realpath(src)
    found: list[tuple[str, str]] = []

    def walk(directory: str, rel_dir: str) -> None:
        with os.scandir(directory) as it:
            entries = list(it)
        for e in entries:
            if e.name.startswith(TMP_PREFIX):
                continue
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if e.is_symlink():
                real = os.path.realpath(e.path)
                if not os.path.exists(real):
                    raise NotFoundException(f"Source file {e.path!r} is a dangling symlink.")
                if os.path.isdir(real):
                    continue
                if not _inside(real, real_base):
                    raise UnsafePathException(
                        f"Source file {e.path!r} is a symlink to {real!r}, outside "
                        f"the folder being uploaded; upload it with upload_files instead.")
                if os.path.isfile(real):
                    found.append((e.path, rel))
            elif e.is_dir(follow_symlinks=False):
                walk(e.path, rel)
            elif e.is_file(follow_symlinks=False):
                found.append((e.path, rel))

    walk(shown, "")
    return [UploadItem(source=s, target=safe_relpath(_join_target(tp, rel), what="target"))
            for s, rel in sorted(found, key=lambda sr: sr[1])]


def collect_file_items(files: Iterable[str | os.PathLike[str]], relative_root: str | os.PathLike[str] | None = None,
                       target_path: str | None = None) -> list[UploadItem]:
    """The items of Azure's ``upload_files(files, relative_root=None, target_path=None)``.

    Each file goes to ``target_path/<its path relative to relative_root>``; ``relative_root``
    defaults to the folder common to all files (a lone file's own folder). A file outside
    ``relative_root`` is a :class:`UserErrorException`; a missing one a :class:`NotFoundException`.
    Explicitly named files are followed through symlinks (the user chose them). Order is kept.
    """
    names = [os.fspath(f) for f in files]
    tp = safe_relpath(target_path or "", allow_empty=True, what="target_path")
    if not names:
        return []
    absolutes = [os.path.abspath(n) for n in names]
    if relative_root is None or os.fspath(relative_root) == "":
        root_abs = os.path.commonpath([os.path.dirname(a) for a in absolutes])
    else:
        root_abs = os.path.abspath(os.fspath(relative_root))
    items: list[UploadItem] = []
    for name, absolute in zip(names, absolutes):
        if not os.path.exists(name):
            raise NotFoundException(f"Source file {name!r} does not exist.")
        if not os.path.isfile(name):
            raise UserErrorException(f"{name!r} does not point to a file.")
        rel = os.path.relpath(absolute, root_abs)
        if rel == "." or rel == ".." or rel.startswith(".." + os.sep):
            raise UserErrorException(f"relative_root: {os.fspath(relative_root or root_abs)!r} is not "
                                     f"part of the file_path: {name!r}.")
        items.append(UploadItem(source=name, target=safe_relpath(_join_target(tp, rel.replace(os.sep, "/")),
                                                                  what="target")))
    return items


# --- the per-folder index used to check many targets cheaply --------------------------------------

_MISSING = "missing"
_FILE = "file"


class _DirIndex:
    """Names in each folder under a base, read once per folder (``os.scandir``) and, when
    ``confine``, verified to stay inside the base (symlinked folders/files resolving outside are
    refused). Meeting a stale temporary deletes it. Relative folder ``""`` is the base itself."""

    def __init__(self, base: str, *, confine: bool) -> None:
        self.base = base
        self.confine = confine
        self._dirs: dict[str, dict[str, os.DirEntry[str]] | None] = {}

    def _path(self, rel: str) -> str:
        return os.path.join(self.base, *rel.split("/")) if rel else self.base

    def entries(self, rel_dir: str) -> dict[str, os.DirEntry[str]] | None:
        """Entries of folder ``rel_dir`` by name, or None when the folder does not exist (yet)."""
        try:
            return self._dirs[rel_dir]
        except KeyError:
            pass
        result: dict[str, os.DirEntry[str]] | None
        if rel_dir:
            parent, _, name = rel_dir.rpartition("/")
            pents = self.entries(parent)
            e = pents.get(name) if pents is not None else None
            if e is None:
                result = None
            elif e.is_symlink():
                real = os.path.realpath(e.path)
                if self.confine and not _inside(real, self.base):
                    raise UnsafePathException(f"path {rel_dir!r} is a symlink resolving outside its root.")
                if not os.path.isdir(real):
                    raise UserErrorException(f"{rel_dir!r} exists and is not a folder.")
                result = self._scan(e.path)
            elif e.is_dir(follow_symlinks=False):
                result = self._scan(e.path)
            else:
                raise UserErrorException(f"{rel_dir!r} exists and is a file, not a folder.")
        else:
            result = self._scan(self.base) if os.path.isdir(self.base) else None
        self._dirs[rel_dir] = result
        return result

    @staticmethod
    def _scan(path: str) -> dict[str, os.DirEntry[str]]:
        out: dict[str, os.DirEntry[str]] = {}
        with os.scandir(path) as it:
            for e in it:
                if e.name.startswith(TMP_PREFIX):
                    _maybe_clean_tmp(e.name, e.path)
                else:
                    out[e.name] = e
        return out

    def file_state(self, rel: str) -> str:
        """``_MISSING`` or ``_FILE`` for a file path; raises on folder clashes and escaping links."""
        parent, _, name = rel.rpartition("/")
        ents = self.entries(parent)
        e = ents.get(name) if ents is not None else None
        if e is None:
            return _MISSING
        if e.is_symlink():
            real = os.path.realpath(e.path)
            if self.confine and not _inside(real, self.base):
                raise UnsafePathException(f"path {rel!r} is a symlink resolving outside its root.")
            if os.path.isdir(real):
                raise UserErrorException(f"{rel!r} exists and is a folder, not a file.")
            return _FILE if os.path.exists(real) else _MISSING
        if e.is_dir(follow_symlinks=False):
            raise UserErrorException(f"{rel!r} exists and is a folder, not a file.")
        return _FILE


def _check_target_shapes(rels: Iterable[str]) -> None:
    """Refuse a batch where one target is both a file and a folder (``a`` and ``a/b``)."""
    targets = set(rels)
    folders: dict[str, str] = {}
    for rel in targets:
        p = rel
        while (i := p.rfind("/")) > 0:
            p = p[:i]
            if p in folders:
                break
            folders[p] = rel
    for clash in targets.intersection(folders):
        raise UserErrorException(f"Target {clash!r} is both a file and the folder of {folders[clash]!r}.")


# --- running the copies ---------------------------------------------------------------------------

def _auto_workers(n_files: int, n_bytes: int) -> int:
    if n_files < 2 or n_bytes < _PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(_MAX_WORKERS, os.cpu_count() or 1, n_files))


def _run_jobs(jobs: Sequence[Callable[[], int]], workers: int,
              on_done: Callable[[int, int | None, BaseException | None], None]) -> None:
    """Run ``jobs`` (serially or on threads), reporting each as ``on_done(index, nbytes, error)`` in
    the calling thread. The first error that ``on_done`` re-raises stops the remaining jobs."""
    if workers <= 1 or len(jobs) < 2:
        for i, job in enumerate(jobs):
            try:
                n = job()
            except Exception as e:
                on_done(i, None, e)
            else:
                on_done(i, n, None)
        return
    ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simml-copy")
    try:
        futures: dict[Future[int], int] = {ex.submit(job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            err = fut.exception()
            on_done(futures[fut], None if err else fut.result(), err)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


# --- upload / download / list ---------------------------------------------------------------------

def upload_tree(root: Path | str, items: Sequence[UploadItem], overwrite: bool = False,
                progress: Progress | None = None, *, workers: int | None = None,
                fsync: bool = False) -> TransferResult:
    """Copy client files into ``root`` (a datastore, a run's files) with Azure's upload semantics.

    Every item is validated before anything is written: targets through :func:`safe_relpath` and
    the folder index (no escaping symlinks, no file/folder clash), sources must be existing files
    (:class:`NotFoundException` names a missing one). Duplicate identical items collapse; two
    sources for one target are a :class:`UserErrorException`. With ``overwrite=False`` existing
    targets are skipped with Azure's ``Target already exists. Skipping upload for <target>``.

    Progress follows Azure's console: ``start`` with every item (Azure's "estimated" count), the
    skip messages, then per finished file ``message("Uploading <source>")`` + ``advance``.
    ``workers=None`` picks threads for large uploads. Returns targets transferred and skipped.
    """
    base = os.path.realpath(root)
    plan: list[tuple[str, str, int]] = []
    by_target: dict[str, str] = {}
    for item in items:
        rel = safe_relpath(item.target, what="target")
        src = os.fspath(item.source)
        try:
            st = os.stat(src)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundException(f"Source file {src!r} does not exist.") from None
        if not stat.S_ISREG(st.st_mode):
            raise UserErrorException(f"Source {src!r} is not a file.")
        earlier = by_target.get(rel)
        if earlier is not None:
            if os.path.abspath(earlier) == os.path.abspath(src):
                continue
            raise UserErrorException(f"Target {rel!r} is given twice, from {earlier!r} and {src!r}.")
        by_target[rel] = src
        plan.append((rel, src, st.st_size))
    _check_target_shapes(by_target)

    index = _DirIndex(base, confine=True)
    to_copy: list[tuple[str, str, int]] = []
    skipped: list[str] = []
    for rel, src, size in plan:
        if index.file_state(rel) == _FILE and not overwrite:
            skipped.append(rel)
        else:
            to_copy.append((rel, src, size))

    results: list[str | None] = [None] * len(to_copy)
    raced: list[str] = []
    if progress is not None:
        progress.start(len(plan), sum(size for _, _, size in to_copy))
    try:
        if progress is not None:
            for rel in skipped:
                progress.message(f"Target already exists. Skipping upload for {rel}")
        made: set[str] = set()
        jobs: list[Callable[[], int]] = []
        for rel, src, _ in to_copy:
            parent = rel.rpartition("/")[0]
            if parent not in made:
                os.makedirs(os.path.join(base, *parent.split("/")) if parent else base, exist_ok=True)
                made.add(parent)
            dst = os.path.join(base, *rel.split("/"))
            jobs.append(lambda s=src, d=dst: atomic_copy(s, d, overwrite=overwrite, fsync=fsync))

        def on_done(i: int, n: int | None, err: BaseException | None) -> None:
            rel, src, _ = to_copy[i]
            if err is not None:
                if isinstance(err, FileExistsError) and not overwrite:
                    raced.append(rel)            # appeared since we looked: same as skipped
                    if progress is not None:
                        progress.message(f"Target already exists. Skipping upload for {rel}")
                    return
                if isinstance(err, FileNotFoundError) and not os.path.exists(src):
                    raise NotFoundException(f"Source file {src!r} disappeared during upload.") from err
                raise err
            results[i] = rel
            if progress is not None:
                progress.message(f"Uploading {src}")
                progress.advance(src, n or 0)

        n_workers = workers if workers is not None else _auto_workers(
            len(to_copy), sum(size for _, _, size in to_copy))
        _run_jobs(jobs, n_workers, on_done)
    finally:
        if progress is not None:
            progress.finish()
    skipped_set = set(skipped).union(raced)
    return TransferResult(transferred=tuple(r for r in results if r is not None),
                          skipped=tuple(r for r, _, _ in plan if r in skipped_set))


def _walk_files(base: str, start_rel: str, keep_top: Callable[[str], bool] | None = None) -> Iterator[str]:
    """Relative paths of files under ``base/start_rel`` (no temporaries; symlinks only when they
    resolve to a file inside ``base``; symlinked folders are not descended)."""
    stack = [start_rel]
    first = True
    while stack:
        rel_dir = stack.pop()
        path = os.path.join(base, *rel_dir.split("/")) if rel_dir else base
        try:
            it = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for e in it:
                if first and keep_top is not None and not keep_top(e.name):
                    continue
                if e.name.startswith(TMP_PREFIX):
                    _maybe_clean_tmp(e.name, e.path)
                    continue
                rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
                if e.is_symlink():
                    real = os.path.realpath(e.path)
                    if _inside(real, base) and os.path.isfile(real):
                        yield rel
                elif e.is_dir(follow_symlinks=False):
                    stack.append(rel)
                elif e.is_file(follow_symlinks=False):
                    yield rel
        first = False


def list_tree(root: Path | str, prefix: str | None = None, *, blob_prefix: bool = False) -> list[str]:
    """Sorted relative POSIX paths of the files in ``root`` (optionally under ``prefix``).

    ``.simml-tmp-*`` temporaries are never listed (stale ones are deleted on the way). Folder prefix
    by default (the file ``prefix`` itself, or files under ``prefix/``); ``blob_prefix=True``
    matches Azure Blob's ``name_starts_with`` (a trailing ``/`` still means "folder"). A missing
    root or an unmatched prefix gives ``[]``; a prefix escaping the root raises
    :class:`UnsafePathException`.
    """
    raw = "" if prefix is None else os.fspath(prefix)
    p = safe_relpath(raw, allow_empty=True, what="prefix")
    base = os.path.realpath(root)
    if not os.path.isdir(base):
        return []
    if not p:
        return sorted(_walk_files(base, ""))
    folder_only = raw.replace("\\", "/").endswith("/")
    if not blob_prefix or folder_only:
        target = safe_join(base, p)        # refuses a prefix through an escaping symlink
        if os.path.isdir(target):          # (a linked folder inside the root may be named here)
            return sorted(_walk_files(base, p))
        if not folder_only and os.path.isfile(target):
            return [p]
        return []
    parent, _, stem = p.rpartition("/")
    safe_join(base, parent)
    return sorted(_walk_files(base, parent, keep_top=lambda name: name.startswith(stem)))


def download_tree(root: Path | str, prefix: str | None, target_dir: Path | str, overwrite: bool = False,
                  progress: Progress | None = None, *, blob_prefix: bool = False,
                  workers: int | None = None, fsync: bool = False) -> TransferResult:
    """Copy files of ``root`` under ``prefix`` to ``target_dir/<path in root>`` (Azure keeps the full
    blob name under the download folder, so ``prefix='a/b'`` lands in ``target_dir/a/b/...``).

    Each file is written atomically; existing local files are skipped unless ``overwrite``
    (``Path already exists. Skipping download for <local path>``, Azure's text). All destinations
    are checked before writing (a local folder where a file must go is a
    :class:`UserErrorException`). ``target_dir`` is the user's own folder: its symlinks are honoured.
    """
    rels = list_tree(root, prefix, blob_prefix=blob_prefix)
    base = os.path.realpath(root)
    dest = os.path.abspath(os.fspath(target_dir))
    index = _DirIndex(dest, confine=False)
    to_copy: list[tuple[str, str, int]] = []
    skipped: list[str] = []
    for rel in rels:
        src = os.fspath(safe_join(base, rel))
        if index.file_state(rel) == _FILE and not overwrite:
            skipped.append(rel)
            continue
        try:
            size = os.stat(src).st_size
        except FileNotFoundError:
            continue                                      # deleted since listing
        to_copy.append((rel, src, size))

    results: list[str | None] = [None] * len(to_copy)
    raced: set[str] = set()
    if progress is not None:
        progress.start(len(rels), sum(s for _, _, s in to_copy))
    try:
        os.makedirs(dest, exist_ok=True)
        if progress is not None:
            for rel in skipped:
                progress.message(f"Path already exists. Skipping download for {os.path.join(dest, rel)}")
        made: set[str] = set()
        jobs: list[Callable[[], int]] = []
        for rel, src, _ in to_copy:
            parent = rel.rpartition("/")[0]
            if parent and parent not in made:
                os.makedirs(os.path.join(dest, *parent.split("/")), exist_ok=True)
                made.add(parent)
            jobs.append(lambda s=src, d=os.path.join(dest, *rel.split("/")):
                        atomic_copy(s, d, overwrite=overwrite, fsync=fsync))

        def on_done(i: int, n: int | None, err: BaseException | None) -> None:
            rel = to_copy[i][0]
            if err is not None:
                if isinstance(err, FileExistsError) and not overwrite:
                    raced.add(rel)
                    return
                raise err
            results[i] = rel
            if progress is not None:
                progress.message(f"Downloading {rel}")
                progress.advance(rel, n or 0)

        n_workers = workers if workers is not None else _auto_workers(
            len(to_copy), sum(s for _, _, s in to_copy))
        _run_jobs(jobs, n_workers, on_done)
    finally:
        if progress is not None:
            progress.finish()
    skipped_set = set(skipped) | raced
    return TransferResult(transferred=tuple(r for r in results if r is not None),
                          skipped=tuple(r for r in rels if r in skipped_set))
