"""Client-side path rules shared by every backend.

User-supplied names (datastore targets, run file names, prefixes) are normalised and checked here,
and the client's own files are collected for upload here, before any backend sees them; backends
re-check names against their storage roots (``simml_local.files.safe_join``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from simml.entities import UploadItem
from simml.exceptions import NotFoundException, UnsafePathException, UserErrorException

__all__ = ["TMP_PREFIX", "safe_relpath", "collect_upload_items", "collect_file_items"]

TMP_PREFIX = ".simml-tmp-"
"""Names starting with this are in-flight temporaries: never listed, never accepted as user paths."""

_DRIVE = re.compile(r"^[A-Za-z]:")


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
    found.sort(key=lambda sr: sr[1])
    # scandir names never hold "/" or NUL and are never "." or ".."; only a backslash needs work.
    head = f"{tp}/" if tp else ""
    return [UploadItem(source=s, target=head + rel if "\\" not in rel
                       else safe_relpath(head + rel, what="target")) for s, rel in found]


def collect_file_items(files: Iterable[str | os.PathLike[str]],
                       relative_root: str | os.PathLike[str] | None = None,
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
