"""The job side of submitted runs (``simml.job``) and the runner's ingester
(``simml_local.journal``).

Job processes run isolated: ``python -I -S`` with only a copy of ``simml/__init__.py`` and
``simml/job/`` on ``sys.path``, so numpy, pluggy and ``simml.core`` are not importable there, as in
a bare container.

``local_only`` (docs/testing.md): the journal is how the local backend's jobs log (an Azure job logs
through the SDK's run instead: ``SIMML_JOB_CONTEXT``), and the ingester is the local runner's.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import pytest

from simml.core import Experiment, Run
from simml.entities import RunCreate
from simml.job import (
    JobRun,
    JournalWriter,
    MetricTypeError,
    MetricValueError,
    ModelRegistrationError,
    NotInJobError,
)
from simml_local.journal import IngestResult, JournalReader, ingest

pytestmark = pytest.mark.local_only

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


# --- helpers ------------------------------------------------------------------------------------

def png_bytes(width: int = 2, height: int = 2) -> bytes:
    """A valid PNG made with the standard library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def job_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only ``simml/__init__.py`` and ``simml/job/`` (what a runtime gets)."""
    root = tmp_path_factory.mktemp("jobpkg")
    (root / "simml").mkdir()
    shutil.copy(ROOT / "simml" / "__init__.py", root / "simml" / "__init__.py")
    shutil.copytree(ROOT / "simml" / "job", root / "simml" / "job",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def job_command(job_path: Path, code: str) -> list[str]:
    prelude = f"import sys\nsys.path.insert(0, {str(job_path)!r})\n"
    return [PYTHON, "-I", "-S", "-c", prelude + textwrap.dedent(code)]


def job_env(run_id: str, journal: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", ""), "AZUREML_RUN_ID": run_id,
           "SIMML_RUN_JOURNAL": str(journal), "AZUREML_EXPERIMENT_NAME": "e",
           "AZUREML_ARM_WORKSPACE_NAME": "test-ws"}
    env.update(extra)
    return env


def run_job(job_path: Path, code: str, run_id: str, journal: Path, cwd: Path,
            **extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(job_command(job_path, code), env=job_env(run_id, journal, **extra),
                          cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def ingest_all(journal: Path, ws: Any, run_id: str) -> IngestResult:
    reader = JournalReader(journal)
    result = ingest(reader.read_new(), ws._history(), run_id, files_root=reader.folder)
    assert reader.read_new() == []  # nothing is returned twice
    return result


def norm_refs(metrics: dict[str, Any], run_id: str) -> dict[str, Any]:
    text = json.dumps(metrics, sort_keys=True).replace(run_id, "<run>")
    return json.loads(text)


@pytest.fixture
def fresh_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(JobRun, "_context", None)


# --- a scenario logged both on the job side and on the client side ------------------------------

SCENARIO = '''
import json

class float64:  # a numpy-like scalar (duck typing: .item() and ndim == 0); numpy is not imported
    __module__ = "numpy"
    ndim = 0
    def __init__(self, value):
        self.value = value
    def item(self):
        return self.value

def scenario(run, png, data_file):
    for i in range(5):
        run.log("loss", 1.0 / (i + 1), step=i)
    run.log("accuracy", 0.9)
    run.log("flag", True)
    run.log("flag", False)
    run.log("name", "svc")
    run.log("nothing", None)
    run.log("big", 2 ** 53 + 1)
    run.log("np", float64(0.25))
    run.log("np", float64(3))
    run.log("np_bool", float64(True))
    run.log("unicode \\u00fc", "v\\u00e4rde \\u2713")
    run.log_list("curve", [0.1, 0.2, 0.3])
    run.log_list("bools", [True, False, True])
    run.log_row("pr", precision=0.5, recall=0.25)
    run.log_row("pr", precision=0.75, recall=0.5)
    run.log_row("one_row", a=1, b="x", c=None, d=True)
    run.log_table("table", {"x": [1, 2, 3], "y": [0.5, None, "z"]})
    run.log_table("table2", {"x": 1, "y": "a"})
    run.log_confusion_matrix("cm", {"schema_type": "confusion_matrix", "schema_version": "1.0.0",
                                    "data": {"class_labels": ["a", "b"],
                                             "matrix": [[3, 1], [0, 4]]}})
    run.log_accuracy_table("acc_table", json.dumps({"schema_type": "accuracy_table",
                                                    "data": {"probability_tables": [[1, 2]]}}))
    run.log_residuals("residuals", {"schema_type": "residuals", "data": {"counts": [1, 2]}})
    run.log_predictions("predictions", {"schema_type": "predictions", "data": {"bin_counts": [3]}})
    run.log_image("roc", path=png)
    run.log_image("roc", path=png)
    run.tag("model", "svc")
    run.set_tags({"a": 1, "b": None})
    run.tag("gone", "x")
    run.remove_tags("gone")
    run.add_properties({"p": 1, "q": "two"})
    run.upload_file("outputs/data.txt", data_file)
'''


def test_job_logs_every_kind_in_a_bare_interpreter_and_ingests_like_the_client(
        ws, job_path: Path, tmp_path: Path) -> None:
    png = tmp_path / "roc.png"
    png.write_bytes(png_bytes())
    data_file = tmp_path / "data.txt"
    data_file.write_text("original")
    exp = Experiment(ws, "e")
    job_run = exp.start_logging()
    journal = tmp_path / "run" / "journal.jsonl"
    code = SCENARIO + f'''
for module in ("numpy", "pluggy", "simml.core", "simml.exceptions"):
    try:
        __import__(module)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{{module}} must not be importable in the job")
import simml
assert simml.__file__.startswith({str(job_path)!r}), simml.__file__
from simml.core import Run  # noqa: the real one is absent: this must fail
'''
    done = subprocess.run(job_command(job_path, code), env=job_env(job_run.id, journal),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "No module named 'simml.core'" in done.stderr, done.stderr

    code = SCENARIO + f'''
import sys
from simml.job import JobRun, MetricValueError
run = JobRun.get_context()
assert run.id == {job_run.id!r} and run.experiment.name == "e"
assert run.experiment.workspace.name == "test-ws" and run.parent is None
scenario(run, {str(png)!r}, {str(data_file)!r})
try:
    run.log("loss", float("nan"))
except MetricValueError as exc:
    assert "'loss'" in str(exc) and isinstance(exc, ValueError)
else:
    raise SystemExit("NaN was accepted")
with open({str(data_file)!r}, "w") as f:  # the upload was copied at call time
    f.write("changed later")
assert not [m for m in sys.modules if m.startswith(("numpy", "pluggy", "simml.core"))]
# no flush: the atexit hook writes the journal
'''
    run_job(job_path, code, job_run.id, journal, tmp_path)

    result = ingest_all(journal, ws, job_run.id)
    assert result.errors == [] and result.skipped == 0

    client = exp.start_logging()
    namespace: dict[str, Any] = {}
    exec(SCENARIO, namespace)
    data_file.write_text("original")
    namespace["scenario"](client, str(png), str(data_file))

    job_view = Run.get(ws, job_run.id)
    job_metrics = job_view.get_metrics()
    assert norm_refs(job_metrics, job_run.id) == norm_refs(client.get_metrics(), client.id)
    assert job_metrics["flag"] == [True, False] and job_metrics["np"] == [0.25, 3]
    assert job_metrics["roc"] == [f"aml://artifactId/ExperimentRun/dcid.{job_run.id}/roc.png",
                                  f"aml://artifactId/ExperimentRun/dcid.{job_run.id}/roc_2.png"]
    assert job_view.get_tags() == client.get_tags() == {"model": "svc", "a": "1", "b": ""}
    assert job_view.get_properties() == client.get_properties() == {"p": "1", "q": "two"}
    assert job_view.get_file_names() == client.get_file_names() == [
        "outputs/data.txt", "roc.png", "roc_2.png"]
    job_view.download_file("outputs/data.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "original"
    job_view.download_file("roc_2.png", tmp_path / "back.png")
    assert (tmp_path / "back.png").read_bytes() == png_bytes()
    series = ws._history().get_metrics(job_run.id, "flag")
    assert {s.kind for s in series} == {"scalar+json"} and series[0].values == ("true", "false")


# --- accept/reject agreement with the client's rules -------------------------------------------

class Fresh:
    """An argument made anew for each side (generators are consumed by the first)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


class Color(enum.IntEnum):
    RED = 1


class Label(str):
    pass


def _cases() -> list[tuple[str, list[tuple[str, tuple[Any, ...], dict[str, Any]]], bool]]:
    """(label, calls on one metric name, compare folded values too)."""
    nan, inf = math.nan, math.inf

    def log(*args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        return ("log", args, kwargs)

    def call(method: str, *args: Any, **kwargs: Any
             ) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        return (method, args, kwargs)

    cases = [
        ("int", [log(1)], True), ("float", [log(1.5)], True), ("str", [log("s")], True),
        ("bool", [log(True)], True), ("none", [log(None)], True),
        ("bigint", [log(2**53 + 1)], True),
        ("intenum", [log(Color.RED)], True), ("str subclass", [log(Label("x"))], True),
        ("nan", [log(nan)], True), ("inf", [log(inf)], True), ("-inf", [log(-inf)], True),
        ("list", [log([1, 2])], True), ("tuple", [log((1,))], True),
        ("dict", [log({"a": 1})], True),
        ("set", [log({1})], True), ("range", [log(range(3))], True),
        ("generator", [log(Fresh(lambda: (x for x in [1])))], True),
        ("object", [log(object())], True),
        ("bytes", [log(b"x")], True), ("complex", [log(1j)], True),
        ("number then str", [log(1), log("a")], True),
        ("str then number", [log("a"), log(1)], True),
        ("bool then number", [log(True), log(1)], True),
        ("number then bool", [log(1.0), log(False)], True),
        ("none then number", [log(None), log(1), log(None), log("x")], True),
        ("step int", [log(1.0, step=1)], True), ("step float", [log(1.0, step=1.0)], True),
        ("step bool", [log(1.0, step=True)], True), ("step str", [log(1.0, step="1")], True),
        ("list ok", [call("log_list", [1, 2, 3])], True),
        ("list tuple", [call("log_list", (1.5, 2))], True),
        ("list empty", [call("log_list", [])], True),
        ("list generator", [call("log_list", Fresh(lambda: (x for x in [1, 2])))], True),
        ("list of dict keys", [call("log_list", {"a": 1, "b": 2})], True),
        ("list str", [call("log_list", "abc")], True),
        ("list int", [call("log_list", 5)], True),
        ("list nested", [call("log_list", [1, [2]])], True),
        ("list nan", [call("log_list", [1.0, nan])], True),
        ("list bools", [call("log_list", [True, False])], True),
        # the client appends the items before the mismatch (not atomic): accept/reject only
        ("list mixed", [call("log_list", [1, "a"])], False),
        ("log then log_list", [log(1), call("log_list", [1])], True),
        ("row ok", [call("log_row", a=1, b="x", c=None)], True),
        ("row empty", [call("log_row")], True), ("row list", [call("log_row", a=[1])], True),
        ("row nan", [call("log_row", a=nan)], True),
        ("rows", [call("log_row", a=1), call("log_row", a=2, b=3)], True),
        ("row then table", [call("log_row", a=1), call("log_table", {"a": [1]})], True),
        ("table ok", [call("log_table", {"a": [1, 2], "b": [3, 4]})], True),
        ("table ragged", [call("log_table", {"a": [1], "b": [1, 2]})], True),
        ("table empty", [call("log_table", {})], True),
        ("table not a dict", [call("log_table", [1, 2])], True),
        ("table scalars", [call("log_table", {"a": 1, "b": "s"})], True),
        ("table nan", [call("log_table", {"a": [nan]})], True),
        ("table nested", [call("log_table", {"a": [[1]]})], True),
        ("table tuple column", [call("log_table", {"a": (1, 2)})], True),
        ("confusion matrix", [call("log_confusion_matrix", {"data": [[1, 0], [0, 1]]})], True),
        ("confusion matrix json", [call("log_confusion_matrix", '{"data": [1]}')], True),
        ("confusion matrix bad json", [call("log_confusion_matrix", "{not json")], True),
    ]
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with scikit-learn
        return cases
    cases += [
        ("np float64", [log(np.float64(0.5))], True), ("np int64", [log(np.int64(3))], True),
        ("np float32", [log(np.float32(1.5))], True), ("np bool", [log(np.bool_(True))], True),
        ("np str", [log(np.str_("x"))], True), ("np 0-d array", [log(np.array(2.0))], True),
        ("np nan", [log(np.float64("nan"))], True), ("np array", [log(np.array([1, 2]))], True),
        ("np list", [call("log_list", np.array([1, 2]))], True),
        ("np table", [call("log_table", {"a": np.array([1.0, 2.0]), "b": [1, 2]})], True),
        ("np row", [call("log_row", a=np.int64(1), b=np.float32(0.5))], True),
        ("np row array", [call("log_row", a=np.array([1]))], True),
        ("np step", [log(1.0, step=np.int64(1))], True),
        # Not compared: the client raises RecursionError for np.longdouble (its .item() returns
        # a longdouble) and TypeError for a numpy scalar table column ({"a": np.float64(1)}).
    ]
    return cases


def test_job_and_client_agree_on_what_is_accepted(ws, tmp_path: Path) -> None:
    client = Experiment(ws, "agree").start_logging()
    job_id = ws._history().create_run(RunCreate(
        run_id="agree-job", experiment_name="agree", status="Running")).id
    job = JobRun(job_id, str(tmp_path / "journal.jsonl"))
    outcomes: dict[str, tuple[list[bool], list[bool]]] = {}
    compare: list[str] = []
    for index, (label, calls, fold) in enumerate(_cases()):
        name = f"m{index}"
        results = []
        for target in (client, job):
            accepted = []
            for method, args, kwargs in calls:
                args = tuple(a.make() if isinstance(a, Fresh) else a for a in args)
                call_args = (name,) if method == "log_row" else (name, *args)
                try:
                    getattr(target, method)(*call_args, **kwargs)
                except Exception as exc:
                    # the job side refuses with its typed errors (or json's ValueError) only
                    assert target is client or isinstance(exc, ValueError), (label, exc)
                    accepted.append(False)
                else:
                    accepted.append(True)
            results.append(accepted)
        outcomes[label] = (results[0], results[1])
        if fold:
            compare.append(name)
    disagreements = {k: v for k, v in outcomes.items() if v[0] != v[1]}
    assert disagreements == {}
    job.flush()
    result = ingest_all(tmp_path / "journal.jsonl", ws, job_id)
    assert result.errors == []
    client_metrics = client.get_metrics()
    job_metrics = Run.get(ws, job_id).get_metrics()
    assert {n: job_metrics.get(n) for n in compare} == {n: client_metrics.get(n) for n in compare}
    assert outcomes["nan"] == ([False], [False]) and outcomes["int"] == ([True], [True])


def test_job_side_errors_are_typed(tmp_path: Path) -> None:
    run = JobRun("r", str(tmp_path / "journal.jsonl"))
    with pytest.raises(MetricValueError, match="'acc'.*finite") as info:
        run.log("acc", math.nan)
    assert isinstance(info.value, ValueError) and info.value.metric == "acc"
    with pytest.raises(MetricTypeError, match="log_list") as type_info:
        run.log("acc", [1, 2])
    assert isinstance(type_info.value, TypeError) and isinstance(type_info.value, ValueError)
    with pytest.raises(MetricValueError, match="InvalidColumnLength"):
        run.log_table("t", {"a": [1, 2], "b": [1]})
    run.log("acc", 0.5)
    with pytest.raises(MetricValueError, match="holds number values"):
        run.log("acc", "high")
    with pytest.raises(MetricValueError, match="log_scalar"):
        run.log_list("acc", [1.0])
    with pytest.raises(ModelRegistrationError, match="from the client") as model_info:
        run.register_model("model", model_path="outputs/model.pkl")
    assert isinstance(model_info.value, RuntimeError)
    with pytest.raises(ValueError, match="escapes"):
        run.upload_file("../x", tmp_path / "journal.jsonl")
    with pytest.raises(FileNotFoundError):
        run.upload_file("x", tmp_path / "missing")
    run.add_properties({"p": 1})
    run.add_properties({"p": "1"})  # same value again is fine
    with pytest.raises(ValueError, match="cannot be changed"):
        run.add_properties({"p": 2})
    with pytest.warns(UserWarning, match="no effect"):
        run.cancel()
    assert run.get_status() == "Running"
    run.flush()
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert [json.loads(line)["e"] for line in lines] == ["metric", "properties", "properties"]


def test_get_context_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           fresh_context: None) -> None:
    for key in ("AZUREML_RUN_ID", "SIMML_RUN_JOURNAL"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(NotInJobError):
        JobRun.get_context()
    journal = tmp_path / "j" / "journal.jsonl"
    monkeypatch.setenv("AZUREML_RUN_ID", "run-1")
    monkeypatch.setenv("SIMML_RUN_JOURNAL", str(journal))
    monkeypatch.setenv("AZUREML_EXPERIMENT_NAME", "exp")
    monkeypatch.setenv("AZUREML_ARM_WORKSPACE_NAME", "wsname")
    monkeypatch.setenv("AZUREML_ROOT_RUN_ID", "run-1")  # Azure: a top-level run is its own root
    monkeypatch.setenv("SIMML_RUN_NUMBER", "7")
    monkeypatch.setenv("SIMML_JOB_CLOCK_OFFSET", "1000.5")
    run = Run.get_context()  # the client's get_context delegates inside a job
    assert isinstance(run, JobRun) and run is JobRun.get_context()
    assert (run.id, run.number, run.experiment.name, run.experiment.workspace.name) == \
        ("run-1", 7, "exp", "wsname")
    assert run.parent is None
    before = time.time()
    run.log("x", 1)
    run.flush()
    event = json.loads(journal.read_text())
    assert before + 1000.5 <= event["time"] <= time.time() + 1000.5
    monkeypatch.setattr(JobRun, "_context", None)
    monkeypatch.setenv("SIMML_PARENT_RUN_ID", "hd-parent")
    child = JobRun.get_context()
    assert child.parent is not None and child.parent.id == "hd-parent"
    child.parent.log("best", 0.9)
    child.tag("t", "v")
    assert child.tags == {"t": "v"} and child.properties == {}


# --- the ingester -------------------------------------------------------------------------------

def test_partial_trailing_line_is_not_consumed_until_complete(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    reader = JournalReader(journal)
    assert reader.read_new() == []  # missing file: wait for it
    first = b'{"e":"tags","run":"r","tags":{"a":"1"},"time":1.0}\n'
    second = b'{"e":"tags","run":"r","tags":{"b":"2"},"time":2.0}\n'
    journal.write_bytes(first + second[:20])
    assert [e["tags"] for e in reader.read_new()] == [{"a": "1"}]
    assert reader.read_new() == [] and reader.offset == len(first)
    with open(journal, "ab") as f:
        f.write(second[20:])
    assert [e["tags"] for e in reader.read_new()] == [{"b": "2"}]
    assert reader.read_new() == []
    with open(journal, "ab") as f:
        f.write(b"not json\n" + b'{"e":"metric","value":NaN}\n' + first)
    assert [e["tags"] for e in reader.read_new()] == [{"a": "1"}]
    assert reader.malformed == 2
    resumed = JournalReader(journal, offset=len(first))
    assert [e["tags"] for e in resumed.read_new()][:1] == [{"b": "2"}]


def test_ingest_children_outcomes_and_refusals(ws, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    exp = Experiment(ws, "e")
    parent = exp.start_logging()
    run = parent.child_run("job")
    other = exp.start_logging()
    journal = tmp_path / "journal.jsonl"
    job = JobRun(run.id, str(journal))
    job.log("a", 1.0)
    kid = job.child_run("fold-1")
    kid.log("acc", 0.5)
    kid.log_image("plot", plot=_FakeFigure())
    kid.complete()
    bad = job.child_run("fold-2")
    bad.fail("boom", error_code="Oops")
    job.fail("script gave up")
    JobRun(parent.id, job._writer).log("from_child", 2.0)  # the parent may be written to
    JobRun(other.id, job._writer).log("sneaky", 1.0)  # another run may not
    job.flush()
    side = tmp_path / "files"
    with open(journal, "a") as f:
        f.write(json.dumps({"e": "from_the_future", "run": run.id}) + "\n")
        f.write(json.dumps({"e": "file", "run": run.id, "name": "x.txt",
                            "path": "../journal.jsonl"}) + "\n")
    assert side.is_dir()
    caplog.set_level(logging.WARNING, logger="simml_local.journal")
    result = ingest_all(journal, ws, run.id)
    assert result.skipped == 1 and "from_the_future" in caplog.text
    assert len(result.errors) == 2, result.errors
    assert any("sneaky" in e or other.id in e for e in result.errors)
    assert any("leaves" in e for e in result.errors)
    assert result.outcome is not None and result.outcome["details"] == "script gave up"
    assert result.children == [kid.id, bad.id]
    children = {c.id: c for c in Run.get(ws, run.id).get_children()}
    assert children[kid.id].get_status() == "Completed"
    assert children[kid.id].display_name == "fold-1"
    assert children[kid.id].get_metrics() == {
        "acc": 0.5, "plot": f"aml://artifactId/ExperimentRun/dcid.{kid.id}/plot.png"}
    assert children[bad.id].get_status() == "Failed"
    assert children[bad.id].get_details()["error"]["error"]["message"] == "boom"
    assert Run.get(ws, run.id).get_status() == "Running"  # the runner decides
    assert Run.get(ws, parent.id).get_metrics() == {"from_child": 2.0}
    assert Run.get(ws, other.id).get_metrics() == {}


class _FakeFigure:
    """What log_image needs from a matplotlib figure: savefig(target, format="png")."""

    def savefig(self, target: str, format: str = "png") -> None:
        with open(target, "wb") as f:
            f.write(png_bytes())


def test_matplotlib_figure(ws, tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    run = Experiment(ws, "e").start_logging()
    job = JobRun(run.id, str(tmp_path / "journal.jsonl"))
    figure = plt.figure()
    plt.plot([1, 2], [3, 4])
    job.log_image("curve", plot=figure)
    plt.close(figure)
    job.flush()
    ingest_all(tmp_path / "journal.jsonl", ws, run.id)
    assert run.get_file_names() == ["curve.png"]
    assert run.get_metrics()["curve"].endswith("/curve.png")


# --- concurrency, crashes, throughput -----------------------------------------------------------

APPENDER = '''
import sys
from simml.job import JobRun
run = JobRun.get_context()
tag = sys.argv[1]
padding = "x" * 300
for i in range(20000):
    run.log("v", f"{tag}-{i}-{padding}")
    if i % 997 == 0:
        run.flush()
'''


def test_two_appenders_interleave_whole_lines(job_path: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    procs = []
    for tag in ("A", "B"):
        command = job_command(job_path, APPENDER) + [tag]
        procs.append(subprocess.Popen(command, env=job_env(f"run-{tag}", journal), cwd=tmp_path,
                                      stderr=subprocess.PIPE))
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    reader = JournalReader(journal)
    events = reader.read_new()
    assert reader.malformed == 0 and reader.offset == journal.stat().st_size
    for tag in ("A", "B"):
        values = [e["value"] for e in events if e["run"] == f"run-{tag}"]
        assert [v.split("-")[1] for v in values] == [str(i) for i in range(20000)]
        assert all(v.startswith(f"{tag}-") for v in values)
    runs = [e["run"] for e in events]
    switches = sum(1 for a, b in zip(runs, runs[1:]) if a != b)
    assert switches >= 1  # both wrote to the one file


def test_sigkill_after_flush_loses_nothing_flushed(ws, job_path: Path, tmp_path: Path) -> None:
    run = Experiment(ws, "e").start_logging()
    journal = tmp_path / "journal.jsonl"
    code = '''
    import sys, time
    from simml.job import JobRun
    run = JobRun.get_context()
    for i in range(500):
        run.log("m", i)
    run.upload_file("outputs/kept.txt", __import__("io").BytesIO(b"kept"))
    run.flush()
    for i in range(500, 600):
        run.log("m", i)  # buffered, never flushed
    print("flushed", flush=True)
    time.sleep(60)
    '''
    proc = subprocess.Popen(job_command(job_path, code), env=job_env(run.id, journal),
                            cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "flushed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    ingest_all(journal, ws, run.id)
    values = run.get_metrics()["m"]
    assert values[:500] == list(range(500))
    assert run.get_file_names() == ["outputs/kept.txt"]


def test_timed_flush_writes_while_the_job_runs(job_path: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    code = '''
    import time
    from simml.job import JobRun
    JobRun.get_context().log("epoch", 1)
    print("logged", flush=True)
    time.sleep(60)
    '''
    proc = subprocess.Popen(job_command(job_path, code), env=job_env("r", journal),
                            cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "logged"
        reader = JournalReader(journal)
        deadline = time.monotonic() + 20
        events: list[dict[str, Any]] = []
        while not events and time.monotonic() < deadline:
            events = reader.read_new()
            time.sleep(0.05)
        assert [(e["name"], e["value"]) for e in events] == [("epoch", 1)]
        assert proc.poll() is None  # written by the 1 s flush, not at exit
    finally:
        proc.kill()
        proc.wait()


def test_fork_does_not_duplicate_buffered_events(job_path: Path, tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    journal = tmp_path / "journal.jsonl"
    code = '''
    import os
    from simml.job import JobRun
    run = JobRun.get_context()
    for i in range(3):
        run.log("before", i)
    pid = os.fork()
    if pid == 0:
        run.log("child", 1)
        run.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    run.log("after", 1)
    '''
    run_job(job_path, code, "r", journal, tmp_path)
    names = [e["name"] for e in JournalReader(journal).read_new()]
    assert sorted(names) == ["after", "before", "before", "before", "child"]


def test_hundred_thousand_values(ws, job_path: Path, tmp_path: Path) -> None:
    """Not a timing assertion: 100k job-side values arrive, in order, after one ingest."""
    run = Experiment(ws, "e").start_logging()
    journal = tmp_path / "journal.jsonl"
    code = '''
    import time
    from simml.job import JobRun
    run = JobRun.get_context()
    t0 = time.perf_counter()
    for i in range(100000):
        run.log("m", i * 0.5)
    run.flush()
    print(f"job_seconds={time.perf_counter() - t0:.3f}")
    '''
    done = run_job(job_path, code, run.id, journal, tmp_path)
    t0 = time.perf_counter()
    result = ingest_all(journal, ws, run.id)
    seconds = time.perf_counter() - t0
    print(done.stdout.strip(), f"ingest_seconds={seconds:.3f}")
    assert result.metrics == 100_000
    values = run.get_metrics()["m"]
    assert len(values) == 100_000 and values[:3] == [0.0, 0.5, 1.0] and values[-1] == 49999.5


def test_writer_is_shared_per_journal(tmp_path: Path) -> None:
    a = JobRun("a", str(tmp_path / "j.jsonl"))
    b = JobRun("b", str(tmp_path / "sub" / ".." / "j.jsonl"))
    assert isinstance(a._writer, JournalWriter) and a._writer is b._writer


def test_files_folders_outcomes_and_context_manager(ws, tmp_path: Path) -> None:
    run = Experiment(ws, "e").start_logging()
    journal = tmp_path / "journal.jsonl"
    job = JobRun(run.id, str(journal))
    folder = tmp_path / "outputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    job.upload_folder("outs", folder)
    job.upload_files(["x/one.txt", "x/./two.txt"], [folder / "a.txt", folder / "sub" / "b.txt"])
    with pytest.raises(FileNotFoundError, match="missing"):
        job.upload_files(["y"], [tmp_path / "missing"])
    with pytest.raises(ValueError, match="as many"):
        job.upload_files(["y", "z"], [folder / "a.txt"])
    with pytest.raises(MetricTypeError, match="non-empty str"):
        job.log(1, 2)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="boom"), job:
        raise RuntimeError("boom")
    reader = JournalReader(journal)
    result = ingest(reader.read_new(), ws._history(), run.id, files_root=reader.folder)
    assert result.errors == []
    assert run.get_file_names() == ["outs/a.txt", "outs/sub/b.txt", "x/one.txt", "x/two.txt"]
    assert result.outcome is not None and result.outcome["e"] == "fail"
    assert "boom" in result.outcome["details"]
    with job:
        pass
    later = ingest(reader.read_new(), ws._history(), run.id, files_root=reader.folder)
    assert later.events == 1 and later.outcome is not None
    assert later.outcome["e"] == "complete"


def test_job_package_parses_as_python_38(tmp_path: Path) -> None:
    """The job side runs in whatever Python a runtime has; keep its syntax 3.8-compatible."""
    import ast
    for path in sorted((ROOT / "simml" / "job").glob("*.py")):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))
