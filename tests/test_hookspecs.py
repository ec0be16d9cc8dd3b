"""The backend interface stays documented, validated and honest."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest

from simml import hookspecs
from simml.exceptions import BackendCapabilityException, BackendNotFoundException
from simml.plugins import Backend, hookimpl, installed_backends, load_backend

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name, fn in vars(hookspecs).items()
               if name.startswith("simml_") and callable(fn))


def test_hook_names_follow_the_convention() -> None:
    assert len(HOOKS) >= 20
    for name in HOOKS:
        assert re.fullmatch(r"simml_[a-z]+_[a-z_]+", name), name


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_docstring_and_a_row_in_architecture_md(name: str) -> None:
    assert inspect.getdoc(getattr(hookspecs, name)), f"{name} has no docstring"
    table = (ROOT / "docs" / "architecture.md").read_text()
    assert f"`{name}`" in table, f"{name} is missing from docs/architecture.md"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_typed_facade_method(name: str) -> None:
    method = name.removeprefix("simml_")
    if method == "backend_describe":
        method = "describe"
    assert callable(getattr(Backend, method, None)), f"Backend.{method} is missing"


def test_local_backend_is_registered_through_the_entry_point() -> None:
    assert "local" in installed_backends()
    backend = load_backend("local")
    assert backend.describe().name == "local"


def test_unknown_backend_lists_installed_ones() -> None:
    with pytest.raises(BackendNotFoundException) as info:
        load_backend("does-not-exist")
    assert "local" in str(info.value)


def test_misspelled_hook_is_caught() -> None:
    class Broken:
        @hookimpl
        def simml_workspace_gett(self, ref):  # noqa: ANN001 - deliberately wrong
            return None

    with pytest.raises(pluggy.PluginValidationError):
        Backend.from_plugin(Broken(), "broken")


def test_unanswered_hook_raises_capability_error() -> None:
    class Empty:
        @hookimpl
        def simml_backend_describe(self):
            return None

    backend = Backend.from_plugin(Empty(), "empty")
    with pytest.raises(BackendCapabilityException) as info:
        backend.describe()
    assert info.value.hook == "simml_backend_describe" and info.value.backend == "empty"
    assert not backend.implements("simml_run_submit")


def test_core_never_imports_a_backend() -> None:
    for path in (ROOT / "simml").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+simml_(local|azure)", text, re.M), path
