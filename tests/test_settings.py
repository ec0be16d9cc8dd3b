"""config.json discovery, settings precedence and bad configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simml.core import Workspace
from simml.exceptions import (
    BackendNotFoundException,
    ConfigurationException,
    UserErrorException,
)
from simml.settings import backend_name, find_config_file, read_config, simml_home

CONFIG = {"subscription_id": "sub-1", "resource_group": "rg-1", "workspace_name": "ws-one"}


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_search_order_prefers_azureml_folder_in_any_ancestor(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    plain = write(deep / "config.json", CONFIG)
    dotted = write(tmp_path / ".azureml" / "config.json", CONFIG)
    assert find_config_file(deep) == dotted
    dotted.unlink()
    assert find_config_file(deep) == plain


def test_aml_config_before_plain_and_project_json(tmp_path: Path) -> None:
    write(tmp_path / "config.json", CONFIG)
    aml = write(tmp_path / "aml_config" / "project.json", CONFIG)
    assert find_config_file(tmp_path) == aml
    named = write(tmp_path / "custom.json", CONFIG)
    assert find_config_file(tmp_path, "custom.json") == named
    assert find_config_file(named) == named


def test_scope_supplies_the_keys(tmp_path: Path) -> None:
    scope = ("/subscriptions/s9/resourceGroups/r9/providers/"
             "Microsoft.MachineLearningServices/workspaces/w9")
    data = read_config(write(tmp_path / "config.json", {"Scope": scope}))
    assert (data["subscription_id"], data["resource_group"], data["workspace_name"]) == \
        ("s9", "r9", "w9")


@pytest.mark.parametrize("content, words", [
    ("{not json", ["not valid JSON", "line 1"]),
    ("[1, 2]", ["JSON object"]),
    ({"subscription_id": "s", "resource_group": "r"}, ["workspace_name"]),
    ({**CONFIG, "workspace_name": ""}, ["workspace_name", "non-empty"]),
    ({**CONFIG, "backend": 3}, ["backend"]),
    ({**CONFIG, "auth": "secret"}, ["auth"]),
])
def test_malformed_config_names_file_and_key(tmp_path: Path, content: object,
                                             words: list[str]) -> None:
    path = write(tmp_path / "config.json", content)
    with pytest.raises(ConfigurationException) as info:
        Workspace.from_config(path)
    assert str(path) in str(info.value)
    for word in words:
        assert word in str(info.value)
    assert isinstance(info.value, UserErrorException)


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(UserErrorException, match="could not be found"):
        Workspace.from_config(tmp_path)


def test_precedence_env_over_config_over_default(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.delenv("SIMML_BACKEND", raising=False)
    assert backend_name({}) == "local"
    assert backend_name({"backend": "azure"}) == "azure"
    monkeypatch.setenv("SIMML_BACKEND", "local")
    assert backend_name({"backend": "azure"}) == "local"
    monkeypatch.setenv("SIMML_HOME", str(tmp_path / "env"))
    assert simml_home({"simml_home": str(tmp_path / "cfg")}) == tmp_path / "env"
    monkeypatch.delenv("SIMML_HOME")
    assert simml_home({"simml_home": str(tmp_path / "cfg")}) == tmp_path / "cfg"


def test_unknown_backend_lists_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "config.json", {**CONFIG, "backend": "nope"})
    with pytest.raises(BackendNotFoundException) as info:
        Workspace.from_config(tmp_path)
    assert "nope" in str(info.value) and "local" in info.value.available
    assert not any((Path(simml_home()) / "workspaces").glob("*")), "nothing may be created"


def test_from_config_creates_local_workspace_once(tmp_path: Path, simml_home: Path) -> None:
    write(tmp_path / ".azureml" / "config.json", CONFIG)
    first = Workspace.from_config()
    second = Workspace.from_config(tmp_path)
    assert first == second
    assert first.get_details()["workspaceid"] == second.get_details()["workspaceid"]
    assert (simml_home / "workspaces" / "sub-1" / "rg-1" / "ws-one" / "simml.db").is_file()


def test_write_config_round_trip(tmp_path: Path) -> None:
    ws = Workspace.create("round-trip", show_output=False)
    target = ws.write_config(tmp_path / "proj")
    assert target == tmp_path / "proj" / ".azureml" / "config.json"
    assert Workspace.from_config(tmp_path / "proj") == ws
