"""Tests of the local backend's file machinery (simml_local.files): path safety, atomic writes,
Azure's upload/download semantics, and crash safety (a SIGKILL in the middle of an upload).

``local_only`` (docs/testing.md): the local backend's own file machinery; the contract suite covers
the same semantics through datastores and run files on every backend.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent.parent
for _p in (str(_ROOT), str(_ROOT / "backends")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import simml_local.files as F  # noqa: E402
from simml.entities import TransferResult, UploadItem  # noqa: E402
from simml.exceptions import NotFoundException, UnsafePathException, UserErrorException  # noqa: E402
from simml.progress import PrintProgress  # noqa: E402
from simml_local.files import (  # noqa: E402
    TMP_PREFIX, atomic_copy, atomic_write_bytes, clean_stale_temp, collect_file_items,
    collect_upload_items, download_tree, list_tree, safe_join, safe_relpath, upload_tree)

pytestmark = pytest.mark.local_only


class Recorder:
    """A Progress that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, total_files: int, total_bytes: int) -> None:
        self.calls.append(("start", total_files, total_bytes))

    def advance(self, path: str, nbytes: int) -> None:
        self.calls.append(("advance", path, nbytes))

    def message(self, text: str) -> None:
        self.calls.append(("message", text))

    def finish(self) -> None:
        self.calls.append(("finish",))

    def messages(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "message"]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root (temporaries included) with its bytes: to prove nothing changed."""
    out: dict[str, bytes] = {}
    if root.exists():
        for dirpath, _, names in os.walk(root):
            for n in names:
                p = Path(dirpath, n)
                out[p.relative_to(root).as_posix()] = p.read_bytes() if not p.is_symlink() else b"<link>"
    return out


def temporaries(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, names in os.walk(root):
        found += [n for n in names + dirnames if n.startswith(TMP_PREFIX)]
    return found


@pytest.fixture
def src(tmp_path: Path) -> Path:
    s = tmp_path / "proj" / "data"
    (s / "sub" / "deep").mkdir(parents=True)
    (s / "iris.csv").write_text("a,b\n1,2\n")
    (s / "sub" / "x.txt").write_text("x")
    (s / "sub" / "deep" / "y.bin").write_bytes(b"\0\1\2")
    return s


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --- safe_relpath / safe_join -------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("a/b.txt", "a/b.txt"),
    ("./a/b.txt", "a/b.txt"),
    ("a//b/./c", "a/b/c"),
    ("a\\b\\c.txt", "a/b/c.txt"),
    (".\\a\\b", "a/b"),
    ("a/../b", "b"),
    ("a/b/", "a/b"),
    ("a/.hidden", "a/.hidden"),
    ("..a/b..", "..a/b.."),
])
def test_safe_relpath_normalises(raw: str, expected: str) -> None:
    assert safe_relpath(raw) == expected


BAD_PATHS = ["..", "../x", "a/../../b", "/etc/passwd", "/", "..\\x", "a\\..\\..\\b", "\\\\server\\share",
             "C:\\Windows", "C:/Windows", "c:x", "a\x00b", "", ".", "./", "a/..", f"d/{TMP_PREFIX}1-ab"]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_safe_relpath_refuses(bad: str) -> None:
    with pytest.raises(UnsafePathException) as info:
        safe_relpath(bad, what="target_path")
    assert repr(bad) in info.value.message and "target_path" in info.value.message


def test_safe_relpath_allow_empty_for_prefixes() -> None:
    assert safe_relpath("", allow_empty=True) == ""
    assert safe_relpath("./", allow_empty=True) == ""
    with pytest.raises(UnsafePathException):
        safe_relpath("..", allow_empty=True)


def test_unsafe_path_is_also_permission_error() -> None:
    with pytest.raises(PermissionError):
        safe_relpath("../x")


def test_safe_join_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "in").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("s")
    (root / "in" / "f").write_text("f")
    os.symlink(outside / "secret", root / "leak")
    os.symlink(outside, root / "leakdir")
    os.symlink(root / "in", root / "alias")
    assert safe_join(root, "in/f") == root.resolve() / "in" / "f"
    assert safe_join(root, "alias/f") == root.resolve() / "alias" / "f"   # link inside the root: fine
    assert safe_join(root, "") == root.resolve()
    for bad in ["leak", "leakdir/secret", "leakdir", "leakdir/new.txt", "../outside/secret"]:
        with pytest.raises(UnsafePathException):
            safe_join(root, bad)


# --- atomic writes ------------------------------------------------------------------------------

def test_atomic_copy_and_write(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"tail"
    (tmp_path / "s").write_bytes(data)
    assert atomic_copy(tmp_path / "s", tmp_path / "d", chunk=1 << 20) == len(data)
    assert (tmp_path / "d").read_bytes() == data
    assert atomic_write_bytes(tmp_path / "w" / "new.bin", b"hello") == 5        # folder created
    assert (tmp_path / "w" / "new.bin").read_bytes() == b"hello"
    atomic_write_bytes(tmp_path / "w" / "new.bin", b"again")                   # overwrite by default
    assert (tmp_path / "w" / "new.bin").read_bytes() == b"again"
    with pytest.raises(FileExistsError):
        atomic_write_bytes(tmp_path / "w" / "new.bin", b"no", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_copy(tmp_path / "s", tmp_path / "w" / "new.bin", overwrite=False)
    assert (tmp_path / "w" / "new.bin").read_bytes() == b"again"
    atomic_copy(tmp_path / "s", tmp_path / "fs", fsync=True)
    assert (tmp_path / "fs").read_bytes() == data
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o666 & ~umask            # not mkstemp's 0600
    assert temporaries(tmp_path) == []


def test_atomic_copy_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "s").write_bytes(b"new" * 1000)
    (tmp_path / "d").write_bytes(b"old")

    def broken(fd_in: int, fd_out: int, chunk: int) -> int:
        os.write(fd_out, b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(F, "_copy_fd", broken)
    with pytest.raises(OSError):
        atomic_copy(tmp_path / "s", tmp_path / "d")
    with pytest.raises(OSError):
        atomic_copy(tmp_path / "s", tmp_path / "e")
    assert (tmp_path / "d").read_bytes() == b"old"
    assert not (tmp_path / "e").exists()
    assert temporaries(tmp_path) == []


def test_copy_fd_fallback_without_copy_file_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(300_000)
    (tmp_path / "s").write_bytes(data)
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    assert atomic_copy(tmp_path / "s", tmp_path / "d", chunk=4096) == len(data)
    assert (tmp_path / "d").read_bytes() == data


# --- collecting items ---------------------------------------------------------------------------

def test_collect_upload_items(src: Path) -> None:
    items = collect_upload_items(src, "iris")
    assert [i.target for i in items] == ["iris/iris.csv", "iris/sub/deep/y.bin", "iris/sub/x.txt"]
    assert items[0].source == os.path.join(str(src), "iris.csv")
    assert [i.target for i in collect_upload_items(src, None)] == ["iris.csv", "sub/deep/y.bin", "sub/x.txt"]
    assert [i.target for i in collect_upload_items(str(src) + "/", "./a//b/")][0] == "a/b/iris.csv"


def test_collect_upload_items_missing_and_bad_arguments(tmp_path: Path, src: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(NotFoundException) as info:
        collect_upload_items(missing, "x")
    assert str(missing) in info.value.message
    with pytest.raises(UserErrorException):
        collect_upload_items(src / "iris.csv", "x")                     # a file, not a folder
    for bad in ["../up", "/abs", "a/../../b", "..\\up"]:
        with pytest.raises(UnsafePathException):
            collect_upload_items(src, bad)


def test_collect_upload_items_symlink_policy(tmp_path: Path, src: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.txt").write_text("o")
    os.symlink(src / "iris.csv", src / "alias.csv")                      # inside: followed
    os.symlink(outside, src / "linkdir")                                 # folder link: not descended
    (src / f"{TMP_PREFIX}123-abc").write_text("junk")                    # our temporary: skipped
    assert [i.target for i in collect_upload_items(src)] == [
        "alias.csv", "iris.csv", "sub/deep/y.bin", "sub/x.txt"]
    os.symlink(outside / "o.txt", src / "escape.txt")                    # outside: refused
    with pytest.raises(UnsafePathException) as info:
        collect_upload_items(src)
    assert "escape.txt" in info.value.message
    os.unlink(src / "escape.txt")
    os.symlink(tmp_path / "gone", src / "dangling")
    with pytest.raises(NotFoundException):
        collect_upload_items(src)


def test_collect_file_items(tmp_path: Path, src: Path) -> None:
    files = [str(src / "iris.csv"), str(src / "sub" / "x.txt")]
    assert [i.target for i in collect_file_items(files)] == ["iris.csv", "sub/x.txt"]
    assert [i.target for i in collect_file_items(files, target_path="t")] == ["t/iris.csv", "t/sub/x.txt"]
    assert [i.target for i in collect_file_items(files, relative_root=str(src.parent))] == [
        "data/iris.csv", "data/sub/x.txt"]
    assert [i.target for i in collect_file_items([str(src / "sub" / "x.txt")])] == ["x.txt"]  # own folder
    assert [i.source for i in collect_file_items(files)] == files
    assert collect_file_items([]) == []
    with pytest.raises(UserErrorException) as info:
        collect_file_items(files, relative_root=str(src / "sub"))
    assert "iris.csv" in info.value.message
    with pytest.raises(NotFoundException) as info:
        collect_file_items([str(src / "missing.csv")])
    assert "missing.csv" in info.value.message
    with pytest.raises(UserErrorException):
        collect_file_items([str(src / "sub")])
    with pytest.raises(UnsafePathException):
        collect_file_items(files, target_path="../../etc")


# --- upload_tree --------------------------------------------------------------------------------

def test_upload_then_skip_then_overwrite(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ds"
    items = collect_upload_items(src, "iris")
    rec = Recorder()
    result = upload_tree(root, items, overwrite=False, progress=rec)
    assert result == TransferResult(transferred=("iris/iris.csv", "iris/sub/deep/y.bin", "iris/sub/x.txt"),
                                    skipped=())
    assert list_tree(root) == list(result.transferred)
    assert (root / "iris" / "sub" / "deep" / "y.bin").read_bytes() == b"\0\1\2"
    assert rec.calls[0] == ("start", 3, 8 + 1 + 3) and rec.calls[-1] == ("finish",)
    assert ("advance", items[0].source, 8) in rec.calls
    assert f"Uploading {items[0].source}" in rec.messages()

    (src / "iris.csv").write_text("changed")
    rec = Recorder()
    result = upload_tree(root, items, overwrite=False, progress=rec)
    assert result.transferred == () and result.skipped == tuple(i.target for i in items)
    assert rec.messages() == [f"Target already exists. Skipping upload for {i.target}" for i in items]
    assert rec.calls[0] == ("start", 3, 0)
    assert (root / "iris" / "iris.csv").read_text() == "a,b\n1,2\n"

    result = upload_tree(root, items, overwrite=True)
    assert len(result.transferred) == 3 and result.skipped == ()
    assert (root / "iris" / "iris.csv").read_text() == "changed"
    assert temporaries(root) == []


def test_upload_prints_azure_lines(tmp_path: Path, src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = collect_upload_items(src, "iris")[:1]
    upload_tree(tmp_path / "ds", items, overwrite=False, progress=PrintProgress())
    upload_tree(tmp_path / "ds", items, overwrite=False, progress=PrintProgress())
    out = capsys.readouterr().out.splitlines()
    s = items[0].source
    assert out == ["Uploading an estimated of 1 files", f"Uploading {s}",
                   f"Uploaded {s}, 1 files out of an estimated total of 1", "Uploaded 1 files",
                   "Uploading an estimated of 1 files",
                   "Target already exists. Skipping upload for iris/iris.csv", "Uploaded 0 files"]


@pytest.mark.parametrize("bad", ["../escape.txt", "/etc/passwd", "a/../../b", "..\\x", "C:\\x", "",
                                 "x/../..", f"{TMP_PREFIX}9-x"])
def test_upload_refuses_bad_target_before_writing(tmp_path: Path, src: Path, bad: str) -> None:
    root = tmp_path / "ds"
    items = collect_upload_items(src, "ok") + [UploadItem(str(src / "iris.csv"), bad)]
    with pytest.raises(UnsafePathException) as info:
        upload_tree(root, items, overwrite=True)
    assert repr(bad) in info.value.message
    assert not root.exists()                                # nothing written, not even the root
    assert not (tmp_path / "escape.txt").exists()


def test_upload_refuses_missing_source_before_writing(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "keep.txt").write_text("k")
    before = snapshot(root)
    missing = str(src / "nope.csv")
    items = collect_upload_items(src, "ok") + [UploadItem(missing, "ok/nope.csv")]
    with pytest.raises(NotFoundException) as info:
        upload_tree(root, items, overwrite=True)
    assert missing in info.value.message
    assert snapshot(root) == before
    with pytest.raises(UserErrorException):
        upload_tree(root, [UploadItem(str(src / "sub"), "dir-as-file")])     # a folder is no file
    assert snapshot(root) == before


def test_upload_refuses_symlinks_out_of_the_datastore(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ds"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim.txt").write_text("precious")
    os.symlink(outside, root / "linkdir")
    os.symlink(outside / "victim.txt", root / "link.txt")
    before_out, before_root = snapshot(outside), snapshot(root)
    good = collect_upload_items(src, "ok")
    for target in ["linkdir/new.txt", "linkdir/victim.txt", "link.txt", "linkdir/deep/x.txt"]:
        for overwrite in (False, True):
            with pytest.raises(UnsafePathException):
                upload_tree(root, good + [UploadItem(str(src / "iris.csv"), target)], overwrite=overwrite)
    assert snapshot(outside) == before_out and snapshot(root) == before_root
    assert list_tree(root) == []                            # links leading out are not content
    with pytest.raises(UnsafePathException):
        list_tree(root, "linkdir")
    with pytest.raises(UnsafePathException):
        download_tree(root, "linkdir", tmp_path / "dl")
    assert download_tree(root, None, tmp_path / "dl") == TransferResult((), ())
    # a link that stays inside the datastore is fine
    (root / "real").mkdir()
    os.symlink(root / "real", root / "alias")
    upload_tree(root, [UploadItem(str(src / "iris.csv"), "alias/iris.csv")])
    assert (root / "real" / "iris.csv").read_text() == "a,b\n1,2\n"


def test_upload_refuses_file_folder_clashes(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ds"
    f = str(src / "iris.csv")
    with pytest.raises(UserErrorException):
        upload_tree(root, [UploadItem(f, "a"), UploadItem(f, "a/b")])
    with pytest.raises(UserErrorException):
        upload_tree(root, [UploadItem(f, "t"), UploadItem(str(src / "sub" / "x.txt"), "t")])
    assert not root.exists()
    upload_tree(root, [UploadItem(f, "t"), UploadItem(f, "./t")])      # the same item twice: once
    assert list_tree(root) == ["t"]
    with pytest.raises(UserErrorException):
        upload_tree(root, [UploadItem(f, "t/inside")])                   # t is a file
    (root / "folder").mkdir()
    with pytest.raises(UserErrorException):
        upload_tree(root, [UploadItem(f, "folder")], overwrite=True)     # folder is a folder
    assert list_tree(root) == ["t"]


def test_upload_into_existing_and_new_folders_and_threads(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ds"
    (root / "existing").mkdir(parents=True)
    items = collect_upload_items(src, "existing") + collect_upload_items(src, "new/deeper")
    result = upload_tree(root, items, workers=3)
    assert set(result.transferred) == {i.target for i in items}
    assert list(result.transferred) == [i.target for i in items]           # item order, not completion
    for i in items:
        assert (root / i.target).read_bytes() == Path(i.source).read_bytes()
    assert temporaries(root) == []


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("folder_exists", [True, False])
def test_upload_error_midway_leaves_only_complete_files(tmp_path: Path, src: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        workers: int, folder_exists: bool) -> None:
    root = tmp_path / "ds"
    if folder_exists:
        (root / "d" / "sub" / "deep").mkdir(parents=True)
    real_copy_fd = F._copy_fd

    def flaky(fd_in: int, fd_out: int, chunk: int) -> int:
        if os.fstat(fd_in).st_size == 1:                  # sub/x.txt
            os.write(fd_out, b"half")
            raise OSError(5, "Input/output error")
        return real_copy_fd(fd_in, fd_out, chunk)

    monkeypatch.setattr(F, "_copy_fd", flaky)
    with pytest.raises(OSError):
        upload_tree(root, collect_upload_items(src, "d"), workers=workers)
    listed = list_tree(root)
    assert "d/sub/x.txt" not in listed and not (root / "d" / "sub" / "x.txt").exists()
    for rel in listed:                                    # whatever is visible is complete
        assert (root / rel).read_bytes() == (src / rel[2:]).read_bytes()
    assert temporaries(root) == []
    monkeypatch.setattr(F, "_copy_fd", real_copy_fd)
    result = upload_tree(root, collect_upload_items(src, "d"), overwrite=False)  # a re-run completes it
    assert "d/sub/x.txt" in result.transferred and len(list_tree(root)) == 3


def test_upload_batched_source_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources sharing a folder are checked with one scandir: relative, nested and missing ones."""
    monkeypatch.chdir(tmp_path)
    for n in range(12):
        Path(f"f{n}.txt").write_text(str(n))
    items = [UploadItem(f"f{n}.txt", f"t/f{n}.txt") for n in range(12)]
    assert len(upload_tree(tmp_path / "ds", items).transferred) == 12
    assert (tmp_path / "ds" / "t" / "f11.txt").read_text() == "11"
    with pytest.raises(NotFoundException) as info:
        upload_tree(tmp_path / "ds2", items + [UploadItem("f99.txt", "t/f99.txt")])
    assert "f99.txt" in info.value.message and not (tmp_path / "ds2").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserErrorException):
        upload_tree(tmp_path / "afile", items)                           # the root is a file


def test_reupload_only_looks(tmp_path: Path, src: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ds"
    for n in range(40):
        (src / "many").mkdir(exist_ok=True)
        (src / "many" / f"f{n}.txt").write_text(str(n))
    items = collect_upload_items(src, "d")
    upload_tree(root, items)

    def no_copy(*a: object, **k: object) -> int:
        raise AssertionError("an unchanged re-upload must not copy")

    monkeypatch.setattr(F, "atomic_copy", no_copy)
    monkeypatch.setattr(F, "_copy_new", no_copy)
    result = upload_tree(root, items, overwrite=False)
    assert len(result.skipped) == len(items) and result.transferred == ()


def test_stale_temporaries_hidden_and_cleaned(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ds"
    upload_tree(root, collect_upload_items(src, "d"))
    dead = f"{TMP_PREFIX}{dead_pid()}-deadbeef0000"
    mine = f"{TMP_PREFIX}{os.getpid()}-cafecafe0000"
    (root / "d" / dead).write_bytes(b"half")
    (root / "d" / mine).write_bytes(b"in flight")
    (root / dead).mkdir()
    (root / dead / "x").write_bytes(b"staged")
    listed = list_tree(root)
    assert listed == ["d/iris.csv", "d/sub/deep/y.bin", "d/sub/x.txt"]
    assert not (root / "d" / dead).exists() and not (root / dead).exists()   # the writer is dead
    assert (root / "d" / mine).exists()                                      # ours may be in flight
    old = time.time() - F.STALE_TMP_SECONDS - 10
    os.utime(root / "d" / mine, (old, old))
    assert clean_stale_temp(root / "d") == 0                                 # own pid: never
    other = f"{TMP_PREFIX}{dead_pid()}-0000"
    (root / "d" / other).write_bytes(b"x")
    assert clean_stale_temp(root / "d") == 1


# --- download / list ----------------------------------------------------------------------------

def test_download_with_prefix(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ds"
    upload_tree(root, collect_upload_items(src, "iris") + collect_upload_items(src, "iris2"))
    dl = tmp_path / "dl"
    rec = Recorder()
    result = download_tree(root, "iris/sub", dl, overwrite=False, progress=rec)
    assert result.transferred == ("iris/sub/deep/y.bin", "iris/sub/x.txt")
    assert (dl / "iris" / "sub" / "x.txt").read_text() == "x"                 # full path kept (Azure)
    assert sorted(p.relative_to(dl).as_posix() for p in dl.rglob("*") if p.is_file()) == [
        "iris/sub/deep/y.bin", "iris/sub/x.txt"]
    assert rec.calls[0] == ("start", 2, 4) and "Downloading iris/sub/x.txt" in rec.messages()

    (dl / "iris" / "sub" / "x.txt").write_text("local edit")
    rec = Recorder()
    result = download_tree(root, "iris/sub/", dl, overwrite=False, progress=rec)
    assert result == TransferResult((), ("iris/sub/deep/y.bin", "iris/sub/x.txt"))
    assert rec.messages()[0] == f"Path already exists. Skipping download for {dl / 'iris/sub/deep/y.bin'}"
    assert (dl / "iris" / "sub" / "x.txt").read_text() == "local edit"
    download_tree(root, "iris/sub", dl, overwrite=True)
    assert (dl / "iris" / "sub" / "x.txt").read_text() == "x"

    assert download_tree(root, "iris/iris.csv", tmp_path / "one").transferred == ("iris/iris.csv",)
    assert download_tree(root, "nothing/here", tmp_path / "none") == TransferResult((), ())
    all_files = download_tree(root, None, tmp_path / "all").transferred
    assert all_files == tuple(list_tree(root)) and len(all_files) == 6
    assert temporaries(tmp_path) == []


def test_download_refuses_bad_prefix_and_clashes(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ds"
    upload_tree(root, collect_upload_items(src, "iris"))
    for bad in ["..", "../ds", "/etc", "a/../../b", "..\\x"]:
        with pytest.raises(UnsafePathException):
            download_tree(root, bad, tmp_path / "dl")
        with pytest.raises(UnsafePathException):
            list_tree(root, bad)
    dl = tmp_path / "dl2"
    (dl / "iris" / "iris.csv").mkdir(parents=True)              # a folder where a file must go
    with pytest.raises(UserErrorException):
        download_tree(root, "iris", dl, overwrite=True)
    assert not (dl / "iris" / "sub").exists()                   # refused before writing anything


def test_list_tree_prefixes(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ds"
    upload_tree(root, collect_upload_items(src, "data") + collect_upload_items(src, "data2")
                + [UploadItem(str(src / "iris.csv"), "data.csv")])
    assert list_tree(tmp_path / "missing") == []
    assert list_tree(root, "data") == ["data/iris.csv", "data/sub/deep/y.bin", "data/sub/x.txt"]
    assert list_tree(root, "data/iris.csv") == ["data/iris.csv"]
    assert list_tree(root, "data", blob_prefix=True) == [
        "data.csv", "data/iris.csv", "data/sub/deep/y.bin", "data/sub/x.txt",
        "data2/iris.csv", "data2/sub/deep/y.bin", "data2/sub/x.txt"]
    assert list_tree(root, "data/", blob_prefix=True) == list_tree(root, "data")
    assert list_tree(root, "data2/sub/x", blob_prefix=True) == ["data2/sub/x.txt"]
    assert list_tree(root, ".\\data\\sub") == ["data/sub/deep/y.bin", "data/sub/x.txt"]
    assert list_tree(root, "") == list_tree(root, None) and len(list_tree(root)) == 7


# --- crash safety ---------------------------------------------------------------------------------

CHILD = r"""
import os, sys, time
import simml_local.files as F
from simml.entities import UploadItem
real = os.copy_file_range
def slow(fd_in, fd_out, count, *rest):
    time.sleep(0.02)                       # make the copy slow enough to be killed mid-way
    return real(fd_in, fd_out, min(count, 1 << 20), *rest)
os.copy_file_range = slow
F.upload_tree(sys.argv[1], [UploadItem(sys.argv[2], sys.argv[3])], overwrite=False)
print("finished")
"""


def _find_partial(root: Path) -> Path | None:
    for dirpath, dirnames, names in os.walk(root):
        for n in names:
            p = Path(dirpath, n)
            if TMP_PREFIX in str(p.relative_to(root)) and p.stat().st_size > 0:
                return p
    return None


@pytest.mark.skipif(not hasattr(os, "copy_file_range") or not hasattr(signal, "SIGKILL"),
                    reason="needs Linux copy_file_range and SIGKILL")
@pytest.mark.parametrize("folder_exists", [True, False], ids=["into-existing-folder", "into-new-folder"])
def test_sigkill_mid_upload_leaves_nothing_visible_and_rerun_completes(tmp_path: Path,
                                                                       folder_exists: bool) -> None:
    big = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(big, "wb") as f:
        for i in range(48):                                     # 48 MiB, every MiB different
            f.write(i.to_bytes(4, "little") + block[4:])
    root = tmp_path / "ds"
    if folder_exists:
        (root / "data").mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_ROOT), str(_ROOT / "backends")]))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(big), "data/big.bin"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        partial = None
        while partial is None and time.monotonic() < deadline and child.poll() is None:
            partial = _find_partial(root) if root.exists() else None
            time.sleep(0.002)
        assert partial is not None, f"no temporary seen; child said {child.communicate()}"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert partial.exists() and partial.stat().st_size < big.stat().st_size   # killed mid-copy
    assert list_tree(root) == []                                   # nothing under a final name
    assert not (root / "data" / "big.bin").exists()

    result = upload_tree(root, [UploadItem(str(big), "data/big.bin")], overwrite=False)
    assert result.transferred == ("data/big.bin",)
    assert list_tree(root) == ["data/big.bin"]
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    assert hashlib.sha256((root / "data" / "big.bin").read_bytes()).hexdigest() == digest
    assert temporaries(root) == []                                 # the dead child's temp was cleaned
