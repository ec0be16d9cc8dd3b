"""Data references in a job's arguments: a mount is the datastore folder itself and read-only
(writes are detected and fail the run), a download is a private copy under the run folder, and
a path missing from the datastore fails before the script starts (at submit on the local backend).

A download, a reference in an estimator's inputs and the refusals at submit are ``contract``
(docs/testing.md): each test uploads under a prefix of its own, so they hold in a shared
datastore. Mounts are ``local_only``: on the local backend a mount is the datastore's folder
itself, guarded read-only by simml (Azure mounts blob storage); so is a path removed while a run
waits for a node (a manual clock).
"""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from _contract import unique
from _waiting import eventually
from simml.core import Experiment, ScriptRunConfig
from simml.core.compute import AmlCompute, ComputeTarget
from simml.core.compute.cluster import Timings
from simml.exceptions import ActivityFailedException, NotFoundException, RunConfigurationException
from simml.train.estimator import Estimator

READ = textwrap.dedent("""
    import os, sys
    from simml.core.run import Run
    path = sys.argv[sys.argv.index("--data") + 1]
    print("PATH", path)
    print("TEXT", open(os.path.join(path, "a.txt")).read())
    Run.get_context().log("env", os.environ.get(sys.argv[-1], "unset") if len(sys.argv) > 3 else "")
""")


@pytest.fixture
def data() -> str:
    """The datastore prefix this test's files are uploaded under."""
    return unique("data")


@pytest.fixture
def datastore(ws, data: str, tmp_path: Path):
    source = tmp_path / "upload" / "data"
    source.mkdir(parents=True)
    (source / "a.txt").write_text("original")
    (source / "sub").mkdir()
    (source / "sub" / "b.txt").write_text("b")
    store = ws.get_default_datastore()
    store.upload(src_dir=str(source), target_path=data, overwrite=True, show_progress=False)
    return store


def store_folder(ws, *parts: str) -> Path:
    return Path(ws.get_details()["root"], "datastores", "workspaceblobstore", *parts)


def project(tmp_path: Path, script: str) -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / "job.py").write_text(textwrap.dedent(script))
    return folder


def driver_log(ws, run) -> str:
    return Path(ws.get_details()["root"], "artifacts", run.id, "user_logs",
                "std_log.txt").read_text()


@pytest.mark.local_only
def test_a_mount_is_the_datastore_folder(ws, datastore, data: str, tmp_path: Path) -> None:
    reference = datastore.path(data).as_mount()
    variable = f"AZUREML_DATAREFERENCE_{reference.data_reference_name}"
    run = Experiment(ws, "mount").submit(ScriptRunConfig(
        str(project(tmp_path, READ)), "job.py", arguments=["--data", reference, variable]))
    assert run.wait_for_completion()["status"] == "Completed"
    log = driver_log(ws, run)
    path = log.split("PATH ", 1)[1].splitlines()[0]
    assert os.path.realpath(path) == os.path.realpath(store_folder(ws, data))
    assert "TEXT original" in log
    assert run.get_metrics()["env"] == path  # Azure's AZUREML_DATAREFERENCE_<name>


@pytest.mark.local_only
def test_writing_into_a_mount_fails_the_run(ws, datastore, data: str, tmp_path: Path) -> None:
    folder = project(tmp_path, """
        import os, sys
        path = sys.argv[2]
        open(os.path.join(path, "new.txt"), "w").write("written by the job")
        with open(os.path.join(path, "a.txt"), "a") as handle:
            handle.write(" and more")
        os.remove(os.path.join(path, "sub", "b.txt"))
        print("wrote")
    """)
    run = Experiment(ws, "mount-write").submit(ScriptRunConfig(
        str(folder), "job.py", arguments=["--data", datastore.path(data).as_mount()]))
    with pytest.raises(ActivityFailedException, match="read-only mount"):
        run.wait_for_completion()
    error = run.get_details()["error"]["error"]
    assert error["code"] == "ReadOnlyMountWritten"
    assert error["message"].startswith(
        f"the job wrote to read-only mount workspaceblobstore/{data}: a.txt (modified), "
        "new.txt (added), sub/b.txt (removed).")
    assert "as_download()" in error["message"]


@pytest.mark.local_only
def test_a_whole_datastore_mount_is_guarded_too(ws, datastore, tmp_path: Path) -> None:
    folder = project(tmp_path, """
        import os, sys
        os.makedirs(os.path.join(sys.argv[2], "made-by-job"))
    """)
    run = Experiment(ws, "mount-root").submit(ScriptRunConfig(
        str(folder), "job.py", arguments=["--data", datastore]))  # a datastore: its root
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Failed"
    message = run.get_details()["error"]["error"]["message"]
    assert "the job wrote to read-only mount workspaceblobstore/: made-by-job/ (added)" in message


@pytest.mark.contract
def test_a_download_is_a_private_copy(ws, datastore, data: str, tmp_path: Path) -> None:
    folder = project(tmp_path, """
        import os, sys
        from simml.core.run import Run
        path = sys.argv[2]
        with open(os.path.join(path, "a.txt"), "a") as handle:
            handle.write(" changed by the job")
        open(os.path.join(path, "new.txt"), "w").write("x")
        run = Run.get_context()
        run.log("path", path)
        run.log("text", open(os.path.join(path, "a.txt")).read())
        run.log("b", open(os.path.join(path, "sub", "b.txt")).read())
    """)
    run = Experiment(ws, unique("download")).submit(ScriptRunConfig(
        str(folder), "job.py", arguments=["--data", datastore.path(data).as_download()]))
    assert run.wait_for_completion()["status"] == "Completed"
    metrics = run.get_metrics()
    assert metrics["text"] == "original changed by the job" and metrics["b"] == "b"
    # the datastore is as it was: the job changed its own copy
    datastore.download(str(tmp_path / "back"), prefix=data, show_progress=False)
    assert (tmp_path / "back" / data / "a.txt").read_text() == "original"
    assert not (tmp_path / "back" / data / "new.txt").exists()
    if ws.backend == "local":  # the copy is under the run's folder
        assert Path(ws.get_details()["root"], "runs", run.id) in Path(metrics["path"]).parents


def nothing_created(ws, experiment: Experiment) -> None:
    assert list(experiment.get_runs()) == []
    if ws.backend == "local":  # the local backend's snapshots are folders of the workspace
        snapshots = Path(ws.get_details()["root"]) / "snapshots"
        assert not snapshots.exists() or not any(snapshots.iterdir())


@pytest.mark.contract
def test_a_missing_path_is_refused_at_submit(ws, datastore, data: str, tmp_path: Path) -> None:
    folder = project(tmp_path, READ)
    experiment = Experiment(ws, unique("missing"))
    # a missing folder, a string prefix of an existing one, a path below a file
    for reference in (datastore.path(f"{data}-nope").as_mount(),
                      datastore.path(data[:-1]).as_download(),
                      datastore.path(f"{data}/a.txt/x").as_mount()):
        with pytest.raises(NotFoundException, match=r"does not exist in datastore "
                                                    r"'workspaceblobstore'"):
            experiment.submit(ScriptRunConfig(str(folder), "job.py",
                                              arguments=["--data", reference]))
    with pytest.raises(RunConfigurationException, match="as_upload"):
        experiment.submit(ScriptRunConfig(str(folder), "job.py",
                                          arguments=["--data", datastore.path(data).as_upload()]))
    nothing_created(ws, experiment)


@pytest.mark.local_only
def test_a_single_file_can_be_mounted(ws, datastore, data: str, tmp_path: Path) -> None:
    folder = project(tmp_path, """
        import sys
        print("TEXT", open(sys.argv[1]).read())
    """)
    run = Experiment(ws, "file").submit(ScriptRunConfig(
        str(folder), "job.py", arguments=[datastore.path(f"{data}/a.txt").as_mount()]))
    assert run.wait_for_completion()["status"] == "Completed"
    assert "TEXT original" in driver_log(ws, run)


@pytest.mark.contract
def test_estimator_inputs_and_references_inside_arguments(ws, datastore, data: str,
                                                           tmp_path: Path) -> None:
    reference = datastore.path(data).as_download()
    folder = project(tmp_path, f"""
        import os, sys
        from simml.core.run import Run
        path = sys.argv[1].split("=", 1)[1]
        run = Run.get_context()
        run.log("same", os.environ["AZUREML_DATAREFERENCE_{reference.data_reference_name}"] == path)
        run.log("text", open(os.path.join(path, "a.txt")).read())
    """)
    estimator = Estimator(str(folder), entry_script="job.py",
                          script_params={f"--data={reference}": None}, inputs=[reference])
    run = Experiment(ws, unique("inputs")).submit(estimator)
    assert run.wait_for_completion()["status"] == "Completed"
    assert run.get_metrics() == {"same": True, "text": "original"}


@pytest.mark.local_only
def test_a_path_gone_before_the_job_starts_fails_the_run(ws, datastore, data: str,
                                                          tmp_path: Path) -> None:
    ws.set_clock("manual")
    timings = Timings(provision_seconds=10, node_start_seconds=60, node_leave_seconds=10)
    cluster = ComputeTarget.create(ws, "cpu-cluster", AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", max_nodes=1, _timings=timings))
    ws.advance_clock(timings.provision_seconds)
    cluster.wait_for_completion()
    folder = project(tmp_path, "open('started.txt', 'w').write('the script ran')\n")
    run = Experiment(ws, "gone").submit(ScriptRunConfig(
        str(folder), "job.py", compute_target=cluster,
        arguments=["--data", datastore.path(data).as_mount()]))
    eventually(lambda: run.get_status() == "Queued", "the run to wait for a node")
    shutil.rmtree(store_folder(ws, data))
    ws.advance_clock(timings.node_start_seconds)
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    error = details["error"]["error"]
    assert error["code"] == "DataReferenceNotFound"
    assert f"workspaceblobstore/{data}" in error["message"]
    assert "The script was not started" in error["message"]
    assert not (Path(ws.get_details()["root"], "runs", run.id, "wd", "started.txt")).exists()
    assert cluster.get_status().node_state_counts.running_node_count == 0  # the node is free
