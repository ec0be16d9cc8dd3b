"""Interactive runs: metrics and folding, tags, properties, files, children, statuses.

Backend contract tests (``contract``, ``tests/_contract.py``): every backend passes them, so they
name their experiment uniquely and hold in a shared workspace. ``local_only`` ones say why.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from _contract import unique
from simml.core import Experiment, Run
from simml.exceptions import (
    InvalidValueException,
    NotFoundException,
    UnsafePathException,
    UserErrorException,
)


@pytest.fixture
def exp(ws) -> Experiment:
    return Experiment(ws, unique("tracking"))


@pytest.mark.contract
def test_metric_folding(exp) -> None:
    run = exp.start_logging()
    run.log("once", 0.5)
    run.log("twice", 1)
    run.log("twice", 2)
    run.log("name", "linear")
    run.log("flag", True)
    run.log("nothing", None)
    run.log_list("curve", [0.1, 0.2, 0.3])
    run.log_row("row1", a=1, b="x")
    run.log_row("rows", epoch=1, loss=0.5)
    run.log_row("rows", epoch=2, loss=0.25)
    run.log_table("table", {"x": [1, 2], "y": [3.0, 4.0]})
    metrics = run.get_metrics()
    assert metrics == {
        "once": 0.5, "twice": [1, 2], "name": "linear", "flag": True, "nothing": None,
        "curve": [0.1, 0.2, 0.3], "row1": {"a": 1, "b": "x"},
        "rows": {"epoch": [1, 2], "loss": [0.5, 0.25]}, "table": {"x": [1, 2], "y": [3.0, 4.0]},
    }
    assert run.get_metrics(name="twice") == {"twice": [1, 2]}
    # another process (a fresh object) sees the same
    assert Run(exp, run.id).get_metrics() == metrics


@pytest.mark.contract
def test_numpy_scalars_are_numbers(exp) -> None:
    np = pytest.importorskip("numpy")
    run = exp.start_logging()
    run.log("i", np.int64(3))
    run.log("f", np.float32(0.5))
    run.log_list("arr", np.array([1, 2]))
    assert run.get_metrics() == {"i": 3, "f": 0.5, "arr": [1, 2]}


@pytest.mark.contract
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_refused(exp, value: float) -> None:
    run = exp.start_logging()
    with pytest.raises(InvalidValueException, match="finite"):
        run.log("bad", value)
    with pytest.raises(InvalidValueException):
        run.log_list("bad_list", [1.0, value])
    run.flush()
    assert run.get_metrics() == {}


@pytest.mark.contract
def test_non_numeric_where_a_number_is_needed(exp) -> None:
    run = exp.start_logging()
    run.log("acc", 0.9)
    run.flush()
    with pytest.raises(InvalidValueException, match="number"):
        run.log("acc", "high")
    # also across objects: the stored type pins the name
    with pytest.raises(InvalidValueException):
        Run(exp, run.id).log("acc", "high")
    with pytest.raises(InvalidValueException):
        run.log_list("acc", [1.0])
    with pytest.raises(InvalidValueException, match="step"):
        run.log("acc", 0.5, step="one")
    assert run.get_metrics() == {"acc": 0.9}


@pytest.mark.contract
def test_lists_and_objects_refused_by_log(exp) -> None:
    run = exp.start_logging()
    with pytest.raises(UserErrorException, match="log_list"):
        run.log("l", [1, 2])
    with pytest.raises(InvalidValueException):
        run.log("o", object())


@pytest.mark.contract
def test_ragged_table_refused(exp) -> None:
    run = exp.start_logging()
    with pytest.raises(InvalidValueException, match="InvalidColumnLength"):
        run.log_table("t", {"a": [1, 2, 3], "b": [1]})
    with pytest.raises(UserErrorException):
        run.log_row("r", a=[1, 2])
    assert run.get_metrics() == {}


@pytest.mark.contract
def test_tags_properties(exp) -> None:
    run = exp.start_logging()
    run.tag("quick")
    run.set_tags({"team": "a", "n": 3})
    assert run.get_tags() == {"quick": "", "team": "a", "n": "3"}
    assert Run(exp, run.id).get_tags() == {"quick": "", "team": "a", "n": "3"}
    run.add_properties({"k": "v"})
    run.add_properties({"k": "v"})
    with pytest.raises(UserErrorException, match="cannot be changed"):
        run.add_properties({"k": "other"})
    assert run.get_properties() == {"k": "v"}


@pytest.mark.contract
def test_remove_tags(exp) -> None:
    run = exp.start_logging()
    run.set_tags({"quick": "", "team": "a"})
    run.remove_tags(["quick", "never-set"])
    assert run.get_tags() == {"team": "a"}


@pytest.mark.contract
def test_files_round_trip_and_traversal(exp, tmp_path: Path) -> None:
    run = exp.start_logging()
    source = tmp_path / "a.txt"
    source.write_text("hello")
    run.upload_file("notes/a.txt", str(source))
    folder = tmp_path / "outdir"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "b.bin").write_bytes(b"\x00\x01")
    run.upload_folder("up", str(folder))
    assert run.get_file_names() == ["notes/a.txt", "up/sub/b.bin"]
    run.download_file("notes/a.txt", str(tmp_path / "copy.txt"))
    assert (tmp_path / "copy.txt").read_text() == "hello"
    run.download_files(prefix="up", output_directory=str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "up" / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    for bad in ("../escape.txt", "/etc/passwd", "a/../../b"):
        with pytest.raises(UnsafePathException):
            run.upload_file(bad, str(source))
    with pytest.raises(NotFoundException):
        run.download_file("missing.txt", str(tmp_path / "x"))
    assert run.get_file_names() == ["notes/a.txt", "up/sub/b.bin"]


@pytest.mark.contract
def test_outputs_uploaded_on_complete(exp, tmp_path: Path) -> None:
    run = exp.start_logging()
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "model.joblib").write_bytes(b"m")
    run.complete()
    assert run.get_file_names() == ["outputs/model.joblib"]
    assert run.get_status() == "Completed"


@pytest.mark.contract
def test_statuses_and_details(exp) -> None:
    run = exp.start_logging()
    assert run.get_status() == "Running"
    run.fail(error_details="boom", error_code="Oops")
    details = run.get_details()
    assert details["status"] == "Failed"
    assert details["error"]["error"] == {"code": "Oops", "message": "boom"}
    assert "endTimeUtc" in details and details["startTimeUtc"]
    with pytest.raises(UserErrorException, match="already Failed"):
        run.cancel()


@pytest.mark.local_only  # Azure's run details carry no status history
def test_status_history_in_details(exp) -> None:
    run = exp.start_logging()
    run.fail(error_details="boom", error_code="Oops")
    details = run.get_details()
    assert [h["status"] for h in details["statusHistory"]] == ["NotStarted", "Running", "Failed"]


@pytest.mark.contract
def test_cancel_and_context_manager(exp) -> None:
    run = exp.start_logging()
    run.cancel()
    assert run.get_status() == "Canceled"
    with exp.start_logging() as ok:
        ok.log("x", 1)
    assert ok.get_status() == "Completed"
    with pytest.raises(RuntimeError):
        with exp.start_logging() as bad:
            raise RuntimeError("no")
    assert bad.get_status() == "Failed"


@pytest.mark.contract
def test_children(exp) -> None:
    parent = exp.start_logging()
    a = parent.child_run("a")
    b = parent.child_run("b")
    a.set_tags({"kind": "x"})
    grandchild = a.child_run("g")
    assert [c.id for c in parent.get_children()] == [a.id, b.id]
    assert [c.id for c in parent.get_children(recursive=True)] == [a.id, grandchild.id, b.id]
    assert [c.id for c in parent.get_children(tags={"kind": "x"})] == [a.id]
    assert a.parent.id == parent.id and grandchild.parent.id == a.id
    assert parent.parent is None
    a.log("m", 1)
    a.flush()  # another object reads it: values reach the store on flush
    parent.log("m", 0)
    assert parent.get_metrics(recursive=True)[a.id] == {"m": 1}
    b.complete()
    assert [c.id for c in parent.get_children(status="Completed")] == [b.id]


@pytest.mark.contract
def test_get_runs_filters(exp) -> None:
    parent = exp.start_logging()
    a = parent.child_run("a")
    b = parent.child_run("b")
    a.set_tags({"kind": "x"})
    grandchild = a.child_run("g")
    b.complete()
    runs = list(exp.get_runs())
    assert [r.id for r in runs] == [parent.id]
    everything = [r.id for r in exp.get_runs(include_children=True)]
    assert set(everything) == {parent.id, a.id, b.id, grandchild.id}
    assert everything[0] == grandchild.id  # newest first
    assert [r.id for r in exp.get_runs(include_children=True, tags={"kind": "x"})] == [a.id]
    assert [r.id for r in exp.get_runs(include_children=True, status="Completed")] == [b.id]
    assert [r.id for r in exp.get_runs(include_children=True, tags="kind")] == [a.id]


@pytest.mark.contract
def test_log_image(exp, tmp_path: Path) -> None:
    """An image metric names its PNG, uploaded as a run file (Azure's ``azureml.v2.image``), and
    reads back as that reference, not as a scalar."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    run = exp.start_logging()
    figure = plt.figure()
    plt.plot([1, 2], [3, 4])
    run.log_image("curve", plot=figure)
    plt.close(figure)
    png = tmp_path / "p.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 10)
    run.log_image("curve", path=str(png))
    assert run.get_file_names() == ["curve.png", "curve_2.png"]
    assert run.get_metrics()["curve"][0].endswith(f"dcid.{run.id}/curve.png")
    (tmp_path / "not.png").write_text("text")
    with pytest.raises(InvalidValueException, match="PNG"):
        run.log_image("other", path=str(tmp_path / "not.png"))


@pytest.mark.contract
def test_best_run_query_helper(exp) -> None:
    runs = []
    for values in ([0.5, 0.9], [0.95], [0.1, 0.2], ["n/a"]):
        run = exp.start_logging()
        for v in values:
            run.log("acc" if not isinstance(v, str) else "note", v)
        run.complete()
        runs.append(run)
    assert exp.get_best_run("acc").id == runs[1].id
    assert exp.get_best_run("acc", goal="minimize").id == runs[2].id
    ranked = exp.get_runs_by_metric("acc", top=3)
    assert [(r.id, v) for r, v in ranked] == [(runs[1].id, 0.95), (runs[0].id, 0.9),
                                                (runs[2].id, 0.2)]
    assert exp.get_best_run("missing") is None
    with pytest.raises(InvalidValueException):
        exp.get_best_run("acc", goal="up")


@pytest.mark.contract
def test_log_list_is_validated_whole(exp) -> None:
    run = exp.start_logging()
    with pytest.raises(InvalidValueException):
        run.log_list("mixed", [1, "a"])
    run.flush()
    assert run.get_metrics() == {}
