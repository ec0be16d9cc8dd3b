"""The emulator's artifact service, run files, live logs and content snapshots
(`simml/emulator/artifacts.py`): the real azureml-core client (its own venv) against the shared
`simml serve`, and the signed blob-ish routes over plain HTTP (traversal, bad signatures, a client
that disconnects mid-upload)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from simml.emulator.artifacts import PAGE_SIZE
from simml.emulator.protocol import ARM_SCOPE
from _emulator_server import RG, SCOPE, SUB, WS, Emulator

ARTIFACTS = f"/artifact/v2.0{SCOPE}/artifacts"
CONTENT = f"/content/v2.0{SCOPE}/snapshots"


def _simml_run(emulator: Emulator, experiment: str = "artifacts-simml") -> Any:
    from simml.core.experiment import Experiment
    return Experiment(emulator.workspace(), experiment).start_logging()


def _raw(emulator: Emulator, method: str, url: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request to the emulator (blob-ish answers are XML, not JSON)."""
    split = urlsplit(url if url.startswith("http") else emulator.url + url)
    target = split.path + (f"?{split.query}" if split.query else "")
    connection = http.client.HTTPConnection(urlsplit(emulator.url).netloc, timeout=30)
    try:
        connection.request(method, target, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _local(emulator: Emulator, uri: str) -> str:
    """A signed URL of the emulator (write URLs name the blob host; the path and signature are
    what the emulator checks)."""
    split = urlsplit(uri)
    return f"{split.path}?{split.query}"


def _create(emulator: Emulator, run_id: str, *paths: str) -> dict[str, Any]:
    status, body = emulator.request(
        "POST", f"{ARTIFACTS}/batch/metadata/ExperimentRun/dcid.{run_id}",
        json.dumps({"paths": [{"path": p} for p in paths]}).encode())
    assert status == 200, body
    return body


# --- the real client -----------------------------------------------------------------------------

def test_interactive_run_files_through_the_real_client(emulator: Emulator, azureml_venv: Path,
                                                       tmp_path: Path) -> None:
    from simml.core.run import Run
    before = len(emulator.log())
    result = emulator.run_client(azureml_venv, "artifacts_files.py", str(tmp_path / "client"))
    entries = emulator.log()[before:]
    assert not [e for e in entries if e["template"] == "unknown"]
    assert {e["template"] for e in entries} >= {
        f"/artifact/v2.0{ARM_SCOPE}/artifacts/batch/metadata/{{origin}}/{{container}}",
        "/azureml/{origin}/{container}/{path*}"}  # the uploads reached the emulator's routes
    expected = ["data/a.txt", "data/sub/b.bin", "extra/one.txt", "extra/two.txt",
                "outputs/model.json"]
    assert sorted(result["names"]) == expected
    assert result["model"] == '{"k": 1}'
    blob = (bytes(range(256)) * 40).hex()
    assert result["all"] == {"data/a.txt": b"alpha\n".hex(), "data/sub/b.bin": blob}
    assert result["flat"] == {"a.txt": b"alpha\n".hex(), "sub/b.bin": blob}
    # uploading a name twice is Azure's conflict; a missing file is the client's own error
    assert "already exists" in result["conflict"]
    assert "UserErrorException" in result["missing"] and "outputs/model.json" in result["missing"]
    # another origin, stored by the emulator beside the workspace
    assert result["local_names"] == ["model/a.txt", "model/one.txt"]
    assert result["local_a"] == "alpha\n"
    stored = (emulator.home / "workspaces" / SUB / RG / WS / "emulator" / "artifacts" /
              "LocalUpload" / result["container"])
    assert _files(stored) == {"model/a.txt": b"alpha\n", "model/one.txt": b"one"}
    # the client's files are simml's run files: `simml run show` and simml's API list them
    env = {k: v for k, v in os.environ.items() if k != "SIMML_HOME"}
    shown = subprocess.run([sys.executable, "-m", "simml.cli", "--json", "run", "show",
                            result["run_id"]], cwd=emulator.server_dir, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["files"] == expected
    run = Run.get(emulator.workspace(), result["run_id"])
    assert run.get_file_names() == expected
    target = tmp_path / "b.bin"
    run.download_file("data/sub/b.bin", str(target))
    assert target.read_bytes() == bytes(range(256)) * 40


def test_files_simml_wrote_are_read_by_the_real_client(emulator: Emulator, azureml_venv: Path,
                                                       tmp_path: Path) -> None:
    run = _simml_run(emulator)
    source = tmp_path / "src"
    (source / "deep").mkdir(parents=True)
    (source / "model.txt").write_text("weights")
    (source / "deep" / "x.csv").write_text("a,b\n1,2\n")
    run.upload_folder("outputs", str(source))
    run.upload_file("notes/readme.md", str(source / "model.txt"))
    many = tmp_path / "many"
    many.mkdir()
    for i in range(PAGE_SIZE + 10):  # more than one page of the listing
        (many / f"f{i:04d}.txt").write_text(str(i))
    run.upload_folder("many", str(many))
    run.complete()
    # the listing pages with a continuation token, as the client expects
    status, page = emulator.request("GET", f"{ARTIFACTS}/ExperimentRun/dcid.{run.id}")
    assert status == 200 and len(page["value"]) == PAGE_SIZE and page["continuationToken"]
    status, rest = emulator.request(
        "GET", f"{ARTIFACTS}/ExperimentRun/dcid.{run.id}?continuationToken="
        f"{page['continuationToken']}")
    assert [a["path"] for a in page["value"] + rest["value"]] == run.get_file_names()
    assert rest["continuationToken"] is None
    scratch = tmp_path / "client"
    scratch.mkdir()
    result = emulator.run_client(azureml_venv, "artifacts_read.py", run.id, run.experiment.name,
                                 str(scratch))
    assert result["names"] == (sorted(f"many/f{i:04d}.txt" for i in range(PAGE_SIZE + 10))
                               + ["notes/readme.md", "outputs/deep/x.csv", "outputs/model.txt"])
    assert result["model"] == "weights"
    assert result["outputs"] == ["deep/x.csv", "model.txt"]
    assert result["nested"] == "a,b\n1,2\n"


def test_snapshots_through_the_real_client(emulator: Emulator, azureml_venv: Path,
                                           tmp_path: Path) -> None:
    from simml.emulator.artifacts import Snapshots
    source = tmp_path / "project"
    (source / "pkg").mkdir(parents=True)
    (source / "train.py").write_text("print('train')\n")
    (source / "pkg" / "util.py").write_text("X = 1\n")
    (source / "data.csv").write_bytes(b"a,b\n" * 1000)
    before = len(emulator.log())
    result = emulator.run_client(azureml_venv, "artifacts_snapshot.py", str(source),
                                 str(tmp_path))
    entries = emulator.log()[before:]
    assert not [e for e in entries if e["template"] == "unknown"]
    first, second, third = result["snapshots"]
    # the unchanged folder is the same snapshot, and nothing was sent again
    assert first and second == first and third != first
    # the server's snapshot store (the emulator's folder beside the served workspace)
    store = Snapshots(emulator.home / "workspaces" / SUB / RG / WS / "emulator" / "snapshots")
    assert _files(store.source_directory(first)) == {
        "train.py": b"print('train')\n", "pkg/util.py": b"X = 1\n", "data.csv": b"a,b\n" * 1000}
    assert _files(store.source_directory(third))["train.py"] == b"print('changed')\n"
    uploads = [e for e in entries if e["method"] == "PUT" and "azureml-snapshots" in e["path"]]
    assert sorted(e["path"].rsplit("/", 1)[-1] for e in uploads) == [
        "data.csv", "train.py", "train.py", "util.py"]  # the third run sent only train.py
    # without its cache the client asked the emulator for the latest tree to diff against (the
    # second run used the cache: no snapshot request between the first upload and that one)
    first_done = max(i for i, e in enumerate(entries) if e in uploads[:3])
    later = [e["path"].rsplit("/snapshots/", 1)[-1] for e in entries[first_done:]
             if "/snapshots/" in e["path"] and e["path"].startswith("/content/")]
    assert later == [first, "latest/metadata", "getblob", third, f"{first}/zip"]
    creates = [e for e in entries if e["method"] == "POST" and e["path"].startswith(CONTENT)
               and e["path"].count("/") == CONTENT.count("/") + 1 and "getblob" not in e["path"]]
    assert len(creates) == 2
    # the run records its snapshot, and restore_snapshot zips exactly the files
    assert result["restored"] == {"train.py": "print('train')\n", "pkg/util.py": "X = 1\n",
                                  "data.csv": "a,b\n" * 1000}
    from simml.core.run import Run
    runs = [Run.get(emulator.workspace(), r) for r in result["runs"]]
    assert [r.get_properties()["ContentSnapshotId"] for r in runs] == [first, second, third]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file()}


def test_driver_log_streams_while_the_run_runs(emulator: Emulator, azureml_venv: Path,
                                               tmp_path: Path) -> None:
    """The client streams azureml-logs/70_driver_log.txt while simml's runner writes it: the job
    waits for a flag the client creates once it has printed the first line, so the second line
    can only reach the client through a later re-fetch."""
    from simml.core import Experiment, ScriptRunConfig
    flag = tmp_path / "flag"
    source = tmp_path / "job"
    source.mkdir()
    (source / "job.py").write_text(textwrap.dedent(f"""
        import os, sys, time
        print("first line", flush=True)
        deadline = time.time() + 240
        while not os.path.exists({str(flag)!r}):
            if time.time() > deadline:
                sys.exit("the client never streamed the first line")
            time.sleep(0.05)
        print("second line", flush=True)
        os.makedirs("outputs", exist_ok=True)
        with open("outputs/result.txt", "w") as handle:
            handle.write("made by the job")
    """))
    run = Experiment(emulator.workspace(), "artifacts-logs").submit(
        ScriptRunConfig(str(source), "job.py"))
    result = emulator.run_client(azureml_venv, "artifacts_stream.py", run.id,
                                 "artifacts-logs", str(flag))
    out = result["streamed"]
    assert result["status"] == "Completed"
    assert result["flag_seen_first"]  # the first line arrived while the job was still running
    # the client follows the highest-priority log (the driver log until the job starts); the job's own user_logs/std_log.txt is listed
    # from the moment the job starts, so the client follows it from the job's first line, and
    # the output is not printed a second time when the run ends
    job = out.rsplit("Streaming user_logs/std_log.txt", 1)[1]
    assert job.count("first line") == 1 and job.count("second line") == 1, out
    assert job.index("first line") < job.index("second line")
    assert out.count("second line") == 1, out
    # what simml's runner copied from ./outputs in Finalizing is the client's to list and fetch
    assert "outputs/result.txt" in result["names"]
    assert result["result"] == "made by the job"
    assert "azureml-logs/70_driver_log.txt" in result["log_files"]


# --- plain HTTP -----------------------------------------------------------------------------------

def test_a_live_log_is_served_up_to_its_last_complete_line(emulator: Emulator) -> None:
    """The client prints a re-fetched log from the line after the last it printed: a half-written
    line would be printed twice, so until the run ends only whole lines are served."""
    import io
    run = _simml_run(emulator)  # Running
    run.upload_file("azureml-logs/70_driver_log.txt", io.BytesIO(b"one\ntw"))
    url = f"{ARTIFACTS}/contentinfo/ExperimentRun/dcid.{run.id}/azureml-logs/70_driver_log.txt"
    _s, info = emulator.request("GET", url)
    assert _raw(emulator, "GET", info["contentUri"])[2] == b"one\n"
    _s, details = emulator.request(
        "GET", f"/history/v1.0{SCOPE}/experiments/{run.experiment.name}/runs/{run.id}/details")
    assert list(details["logFiles"]) == ["azureml-logs/70_driver_log.txt"]
    run.complete()
    assert _raw(emulator, "GET", info["contentUri"])[2] == b"one\ntw"

def test_traversal_in_artifact_names_is_refused_and_writes_nothing(emulator: Emulator) -> None:
    run = _simml_run(emulator)
    for name in ("../escape.txt", "/etc/passwd", "a/../../b", "a\\..\\b", "%2e%2e/x",
                 "outputs/%2E%2E%2Fx", "C:/x", ""):
        status, body = emulator.request(
            "POST", f"{ARTIFACTS}/batch/metadata/ExperimentRun/dcid.{run.id}",
            json.dumps({"paths": [{"path": "fine.txt"}, {"path": name}]}).encode())
        assert status == 400, (name, body)
        assert body["error"]["innerError"]["code"] == "InvalidPath", name
    # the blob-ish route refuses an encoded traversal before anything else
    good = _create(emulator, run.id, "fine.txt")["artifactContentInformation"]["fine.txt"]
    query = urlsplit(good["contentUri"]).query
    for path in ("%2e%2e/escape.txt", "outputs/%2E%2E/%2E%2E/escape.txt", "a%5C..%5Cb"):
        status, headers, body = _raw(
            emulator, "PUT", f"/azureml/ExperimentRun/dcid.{run.id}/{path}?{query}", b"x")
        assert status == 400 and headers["x-ms-error-code"] == "InvalidUri", (path, body)
    assert run.get_file_names() == []
    # snapshot file names: in getblob and in the tree
    for name in ("../x.py", "/abs.py", "a\\b.py", "%2e%2e/x.py"):
        status, body = emulator.request("POST", f"{CONTENT}/getblob",
                                        json.dumps({"FileNames": ["ok.py", name]}).encode())
        assert status == 400 and body["error"]["innerError"]["code"] == "InvalidPath", name
    tree = {"name": "", "type": "Directory", "hash": "0", "timestamp": "t", "children": {
        "..": {"name": "..", "type": "File", "hash": "0" * 128, "timestamp": "t",
               "children": {}}}}
    status, body = emulator.request("POST", f"{CONTENT}/9f0e4a5e-0000-4000-8000-000000000001",
                                    json.dumps({"DirTreeNode": tree}).encode())
    assert status == 400 and body["error"]["innerError"]["code"] == "InvalidPath"
    status, body = emulator.request(
        "GET", f"/content/v1.0{SCOPE}/snapshots/9f0e4a5e-0000-4000-8000-000000000001")
    assert status == 404 and body["error"]["innerError"]["code"] == "SnapshotNotFound"


def test_unsigned_forged_and_expired_urls_are_refused(emulator: Emulator) -> None:
    run = _simml_run(emulator)
    info = _create(emulator, run.id, "outputs/x.bin")["artifactContentInformation"]
    url = _local(emulator, info["outputs/x.bin"]["contentUri"])
    path, query = url.split("?", 1)
    params = dict(p.split("=", 1) for p in query.split("&"))
    cases = {
        "unsigned": path,
        "forged": path + "?" + query.replace(params["sig"], "A" * len(params["sig"])),
        "other path": path.replace("x.bin", "y.bin") + "?" + query,
        "expired": path + "?" + query.replace(params["se"], "2020-01-01T00%3A00%3A00Z"),
        "read-only": path + "?" + query.replace("sp=rw", "sp=r"),
    }
    for label, target in cases.items():
        status, headers, body = _raw(emulator, "PUT", target, b"data",
                                     {"x-ms-blob-type": "BlockBlob"})
        assert status == 403, (label, status, body)
        assert headers["x-ms-error-code"] in ("AuthenticationFailed",
                                              "AuthorizationPermissionMismatch"), label
        assert body.startswith(b"<?xml") and b"<Error><Code>" in body, label
    assert run.get_file_names() == []
    # the signed URL itself works, and a read URL cannot write
    status, _h, body = _raw(emulator, "PUT", url, b"data", {"x-ms-blob-type": "BlockBlob"})
    assert status == 201, body
    assert run.get_file_names() == ["outputs/x.bin"]
    _s, read = emulator.request(
        "GET", f"{ARTIFACTS}/contentinfo/ExperimentRun/dcid.{run.id}/outputs/x.bin")
    read_url = read["contentUri"]
    _s, by_query = emulator.request(
        "GET", f"{ARTIFACTS}/contentinfo/ExperimentRun/dcid.{run.id}?path=outputs/x.bin")
    assert by_query["path"] == "outputs/x.bin"
    assert read_url.startswith(emulator.url + "/")  # downloads are plain http to the emulator
    assert _raw(emulator, "GET", read_url)[2] == b"data"
    assert _raw(emulator, "PUT", read_url, b"evil")[0] == 403
    assert _raw(emulator, "GET", read_url)[2] == b"data"


def test_a_client_that_disconnects_mid_upload_leaves_no_file(emulator: Emulator) -> None:
    run = _simml_run(emulator)
    info = _create(emulator, run.id, "outputs/big.bin")["artifactContentInformation"]
    url = _local(emulator, info["outputs/big.bin"]["contentUri"])
    host, port = urlsplit(emulator.url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"PUT {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n"
                     "x-ms-blob-type: BlockBlob\r\n\r\n".encode() + b"x" * 300_000)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # the server closes without answering
    assert run.get_file_names() == []
    status, body = emulator.request(
        "GET", f"{ARTIFACTS}/contentinfo/ExperimentRun/dcid.{run.id}/outputs/big.bin")
    assert status == 404
    # the same URL still works for a whole upload
    status, _h, body = _raw(emulator, "PUT", url, b"y" * 1000, {"x-ms-blob-type": "BlockBlob"})
    assert status == 201, body
    assert run.get_file_names() == ["outputs/big.bin"]


def test_unknown_run_and_bad_content(emulator: Emulator) -> None:
    for path in (f"{ARTIFACTS}/ExperimentRun/dcid.no-such-run",
                 f"{ARTIFACTS}/prefix/contentinfo/ExperimentRun/dcid.no-such-run/user_logs",
                 f"{ARTIFACTS}/contentinfo/ExperimentRun/dcid.no-such-run/x.txt"):
        status, body = emulator.request("GET", path)
        assert status == 404 and body["error"]["innerError"]["code"] == "RunNotFound", path
    run = _simml_run(emulator)
    info = _create(emulator, run.id, "m.bin")["artifactContentInformation"]["m.bin"]
    # a body that does not match its Content-MD5 is refused and not stored
    status, headers, _b = _raw(emulator, "PUT", _local(emulator, info["contentUri"]), b"abc",
                               {"x-ms-blob-type": "BlockBlob",
                                "Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="})
    assert status == 400 and headers["x-ms-error-code"] == "Md5Mismatch"
    assert run.get_file_names() == []
    # a snapshot whose file never arrived (or arrived with other bytes) is refused
    digest = hashlib.sha512(b"never sent" + b"a.py" + b"File").hexdigest()
    tree = {"name": "", "type": "Directory", "hash": "0", "timestamp": "t", "children": {
        "a.py": {"name": "a.py", "type": "File", "hash": digest, "timestamp": "t",
                 "children": {}}}}
    status, body = emulator.request("POST", f"{CONTENT}/9f0e4a5e-0000-4000-8000-000000000002",
                                    json.dumps({"DirTreeNode": tree}).encode())
    assert status == 400
    assert body["error"]["innerError"]["code"] == "SnapshotFileHashMismatch"
    assert "a.py" in body["error"]["message"]


def test_blocks_are_committed_only_by_the_block_list(emulator: Emulator) -> None:
    """Large uploads arrive as staged blocks; nothing shows until Put Block List."""
    import base64
    run = _simml_run(emulator)
    info = _create(emulator, run.id, "big/parts.bin")["artifactContentInformation"]
    url = _local(emulator, info["big/parts.bin"]["contentUri"])
    ids = [base64.b64encode(f"block-{i:03d}".encode()).decode() for i in range(3)]
    for i, block in enumerate(ids):
        status, _h, body = _raw(emulator, "PUT", f"{url}&comp=block&blockid={block}",
                                bytes([65 + i]) * 10)
        assert status == 201, body
    assert run.get_file_names() == []
    listing = "<?xml version='1.0' encoding='utf-8'?><BlockList>" + "".join(
        f"<Latest>{b}</Latest>" for b in ids) + "</BlockList>"
    status, _h, body = _raw(emulator, "PUT", f"{url}&comp=blocklist", listing.encode())
    assert status == 201, body
    assert run.get_file_names() == ["big/parts.bin"]
    assert _raw(emulator, "GET", url)[2] == b"A" * 10 + b"B" * 10 + b"C" * 10
    # a block list naming a block that was never staged commits nothing
    info = _create(emulator, run.id, "big/bad.bin")["artifactContentInformation"]
    bad = _local(emulator, info["big/bad.bin"]["contentUri"])
    listing = "<BlockList><Latest>bm90LXN0YWdlZA==</Latest></BlockList>"
    status, headers, _b = _raw(emulator, "PUT", f"{bad}&comp=blocklist", listing.encode())
    assert status == 400 and headers["x-ms-error-code"] == "InvalidBlockList"
    assert run.get_file_names() == ["big/parts.bin"]


def test_append_blobs_grow_a_run_file(emulator: Emulator, tmp_path: Path) -> None:
    """The client's log uploader (AppendBlob: create, then Append Block) onto a run file."""
    run = _simml_run(emulator)
    _s, info = emulator.request(
        "GET", f"{ARTIFACTS}/write/ExperimentRun/dcid.{run.id}/logs/app.log")
    url = _local(emulator, info["contentUri"])
    assert _raw(emulator, "PUT", f"{url}&comp=appendblock", b"early")[0] == 404
    assert _raw(emulator, "PUT", url, b"", {"x-ms-blob-type": "AppendBlob"})[0] == 201
    for part in (b"one\n", b"two\n"):
        assert _raw(emulator, "PUT", f"{url}&comp=appendblock", part)[0] == 201
    run.complete()
    target = tmp_path / "app.log"
    run.download_file("logs/app.log", str(target))
    assert target.read_bytes() == b"one\ntwo\n"
