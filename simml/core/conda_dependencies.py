"""``CondaDependencies``: an environment's packages, as Azure ML writes them (a conda env file).

Azure's ``azureml.core.conda_dependencies.CondaDependencies`` holds a conda environment
specification: a name, channels, conda packages (``python=3.10``, ``numpy=1.26``) and a ``pip:``
list. simml keeps the same structure and the same YAML (``serialize_to_string()``/``save()``
round-trip through ``CondaDependencies(path)``), parsed without a YAML library: conda env files use a
small subset of YAML (mappings, block and flow lists of strings, comments, quotes), which is what
``parse_conda_yaml`` reads; anything else is refused with the line number.

Differences from Azure, on purpose:

* ``CondaDependencies()`` and ``create(python_version=None)`` do **not** pin Python (Azure writes
  ``python=3.8.13`` / ``3.10.18``): with no pin, a run uses the interpreter simml runs on. Pin with
  ``python_version=`` or ``set_python_version``.
* ``azureml-defaults`` is added to the pip packages as Azure does (unpinned: ``pin_sdk_version`` is
  accepted and ignored), but the local backend never installs ``azureml-*`` packages: simml's own
  job side is injected into every environment instead (see ``docs/environments.md``).
* ``conda_packages`` does not list the ``python`` entry (``get_python_version()`` returns it).
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from simml.exceptions import UserErrorException

DEFAULT_NAME = "project_environment"
DEFAULT_CHANNELS = ("anaconda", "conda-forge")
SDK_PACKAGE = "azureml-defaults"

_PIP_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_CONDA_NAME = re.compile(r"\s*(?:[^\s:]+::)?([A-Za-z0-9_][A-Za-z0-9._-]*)")

_HEADER = """\
# Conda environment specification. The dependencies defined in this file will
# be automatically provisioned for runs with userManagedDependencies=False.

# Details about the Conda environment file format:
# https://conda.io/docs/user-guide/tasks/manage-environments.html#create-env-file-manually

"""


class CondaSpecificationException(UserErrorException, ValueError):
    """A conda environment file could not be read (``.line`` is its 1-based line, if known)."""

    def __init__(self, message: str, line: int | None = None, path: str | None = None) -> None:
        where = f"{path or 'conda specification'}" + (f", line {line}" if line else "")
        super().__init__(f"{where}: {message}")
        self.line = line
        self.path = path


def canonical_name(name: str) -> str:
    """PEP 503 normalised project name (``Scikit_Learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_requirement_name(requirement: str) -> str | None:
    """The canonical project name of a pip requirement line, or None for options, URLs and paths."""
    text = requirement.strip()
    if not text or text.startswith("-") or "://" in text.split(" ", 1)[0] or text.startswith(
            (".", "/", "~")) or text.endswith((".whl", ".tar.gz", ".zip")):
        return None
    match = _PIP_NAME.match(text)
    return canonical_name(match.group(1)) if match else None


def conda_package_name(spec: str) -> str:
    """The package name of a conda spec (``conda-forge::numpy=1.26`` -> ``numpy``)."""
    match = _CONDA_NAME.match(spec)
    return match.group(1).lower() if match else spec.strip().lower()


def is_pip_option(entry: str) -> bool:
    return entry.strip().startswith("-")


class CondaDependencies:
    """A conda environment specification (Azure's ``CondaDependencies``)."""

    DEFAULT_NAME = DEFAULT_NAME

    def __init__(self, conda_dependencies_file_path: str | os.PathLike[str] | None = None,
                 _underlying_structure: dict[str, Any] | None = None) -> None:
        self._path = os.fspath(conda_dependencies_file_path) if conda_dependencies_file_path \
            else None
        if self._path is not None:
            try:
                text = Path(self._path).read_text(encoding="utf-8")
            except OSError as exc:
                raise UserErrorException(
                    f"Cannot read the conda specification {self._path!r}: {exc}") from exc
            structure = parse_conda_yaml(text, self._path)
        elif _underlying_structure is not None:
            structure = copy.deepcopy(_underlying_structure)
        else:
            structure = {"name": DEFAULT_NAME, "dependencies": [{"pip": [SDK_PACKAGE]}],
                         "channels": list(DEFAULT_CHANNELS)}
        self._load(structure, self._path)

    def _load(self, structure: Any, path: str | None) -> None:
        if not isinstance(structure, dict):
            raise CondaSpecificationException("the top level must be a mapping", path=path)
        self._name = structure.get("name")
        channels = structure.get("channels") or []
        dependencies = structure.get("dependencies") or []
        if not isinstance(channels, list) or not isinstance(dependencies, list):
            raise CondaSpecificationException("'channels' and 'dependencies' must be lists",
                                              path=path)
        self._channels = [str(c) for c in channels]
        self._conda: list[str] = []
        self._pip: list[str] = []
        self._has_pip_section = False
        for entry in dependencies:
            if isinstance(entry, dict):
                unknown = set(entry) - {"pip"}
                if unknown:
                    raise CondaSpecificationException(
                        f"unsupported dependency section {sorted(unknown)} (only 'pip:')", path=path)
                items = entry.get("pip") or []
                if not isinstance(items, list):
                    raise CondaSpecificationException("'pip:' must be a list", path=path)
                self._has_pip_section = True
                self._pip.extend(str(i).strip() for i in items if str(i).strip())
            elif entry is not None:
                self._conda.append(str(entry).strip())
        self._extra = {k: v for k, v in structure.items()
                       if k not in ("name", "channels", "dependencies")}

    # --- construction ----------------------------------------------------------------------------
    @staticmethod
    def create(pip_indexurl: str | None = None, pip_packages: list[str] | None = None,
               conda_packages: list[str] | None = None, python_version: str | None = None,
               pin_sdk_version: bool = True) -> "CondaDependencies":
        """A specification with these packages (plus ``azureml-defaults``, as Azure adds it)."""
        cd = CondaDependencies()
        if python_version:
            cd.set_python_version(python_version)
        for package in conda_packages or []:
            cd.add_conda_package(package)
        for package in pip_packages or []:
            cd.add_pip_package(package)
        if pip_indexurl:
            cd.set_pip_index_url(pip_indexurl)
        return cd

    @staticmethod
    def _from_pip_requirements(file_path: str | os.PathLike[str]) -> list[str]:
        """The entries of a requirements file (comments and blank lines dropped)."""
        entries = []
        text = Path(file_path).read_text(encoding="utf-8")
        for raw in text.replace("\\\n", "").splitlines():
            line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
            if line:
                entries.append(line)
        return entries

    # --- packages --------------------------------------------------------------------------------
    @property
    def pip_packages(self) -> Iterator[str]:
        """The pip packages (options such as ``--index-url`` excluded)."""
        return iter([p for p in self._pip if not is_pip_option(p)])

    @property
    def pip_options(self) -> Iterator[str]:
        """The pip options (``--index-url ...``, ``--extra-index-url ...``)."""
        return iter([p for p in self._pip if is_pip_option(p)])

    @property
    def conda_packages(self) -> Iterator[str]:
        """The conda packages (the ``python`` entry excluded: see ``get_python_version``)."""
        return iter([c for c in self._conda if conda_package_name(c) != "python"])

    @property
    def conda_channels(self) -> Iterator[str]:
        return iter(list(self._channels))

    def add_pip_package(self, pip_package: str) -> None:
        """Add a pip requirement; one already listed under the same name is replaced."""
        pip_package = _require_text(pip_package, "pip_package")
        name = pip_requirement_name(pip_package)
        if name is not None:
            for index, existing in enumerate(self._pip):
                if pip_requirement_name(existing) == name:
                    self._pip[index] = pip_package
                    return
        elif pip_package in self._pip:
            return
        self._pip.append(pip_package)
        self._has_pip_section = True

    def remove_pip_package(self, pip_package: str) -> None:
        """Remove a pip requirement by name (any version spec)."""
        name = pip_requirement_name(_require_text(pip_package, "pip_package"))
        self._pip = [p for p in self._pip if p != pip_package and
                     (name is None or pip_requirement_name(p) != name)]

    def add_conda_package(self, conda_package: str) -> None:
        """Add a conda package; one already listed under the same name is replaced."""
        conda_package = _require_text(conda_package, "conda_package")
        name = conda_package_name(conda_package)
        for index, existing in enumerate(self._conda):
            if conda_package_name(existing) == name:
                self._conda[index] = conda_package
                return
        self._conda.append(conda_package)

    def remove_conda_package(self, conda_package: str) -> None:
        name = conda_package_name(_require_text(conda_package, "conda_package"))
        self._conda = [c for c in self._conda if conda_package_name(c) != name]

    def add_channel(self, channel: str) -> None:
        channel = _require_text(channel, "channel")
        if channel not in self._channels:
            self._channels.append(channel)

    def remove_channel(self, channel: str) -> None:
        self._channels = [c for c in self._channels if c != channel]

    def set_pip_option(self, option: str) -> None:
        """Add a pip option line (``--extra-index-url URL``); one with the same flag is replaced."""
        option = _require_text(option, "option")
        if not is_pip_option(option):
            raise UserErrorException(f"A pip option starts with '-': {option!r}.")
        flag = option.split()[0].split("=")[0]
        for index, existing in enumerate(self._pip):
            if is_pip_option(existing) and existing.split()[0].split("=")[0] == flag \
                    and flag not in ("--extra-index-url", "--find-links", "-f"):
                self._pip[index] = option
                return
        if option not in self._pip:
            self._pip.insert(sum(1 for p in self._pip if is_pip_option(p)), option)
        self._has_pip_section = True

    def set_pip_index_url(self, index_url: str) -> None:
        self.set_pip_option(f"--index-url {_require_text(index_url, 'index_url')}")

    def set_python_version(self, version: str) -> None:
        """Pin Python (``"3.10"``, ``"3.11.7"``); the conda entry becomes ``python=<version>``."""
        version = _require_text(str(version), "version")
        self._conda = [c for c in self._conda if conda_package_name(c) != "python"]
        self._conda.insert(0, f"python={version}")

    def get_python_version(self) -> str | None:
        for entry in self._conda:
            if conda_package_name(entry) == "python":
                spec = re.sub(r"^\s*(?:[^\s:]+::)?python\s*", "", entry)
                return spec.lstrip("=").strip() or None
        return None

    # --- serialisation ---------------------------------------------------------------------------
    def _as_dict(self) -> dict[str, Any]:
        dependencies: list[Any] = list(self._conda)
        if self._pip or self._has_pip_section:
            dependencies.append({"pip": list(self._pip)})
        out: dict[str, Any] = {}
        if self._name is not None:
            out["name"] = self._name
        out["dependencies"] = dependencies
        out["channels"] = list(self._channels)
        out.update(copy.deepcopy(self._extra))
        return out

    as_dict = _as_dict

    def serialize_to_string(self) -> str:
        """The specification as a conda environment YAML file."""
        return _HEADER + dump_conda_yaml(self._as_dict())

    def save(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write the YAML to ``path`` (default: the file it was read from); return the path."""
        target = os.fspath(path) if path is not None else self._path
        if not target:
            raise UserErrorException("CondaDependencies.save needs a path.")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(self.serialize_to_string(), encoding="utf-8")
        return target

    save_to_file = save

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CondaDependencies) and self._as_dict() == other._as_dict()

    def __repr__(self) -> str:
        return self.serialize_to_string()


def _require_text(value: Any, label: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserErrorException(f"{label} must be a non-empty string, not {value!r}.")
    return value.strip()


# --- the YAML subset of conda environment files ------------------------------------------------------
def _strip_comment(line: str) -> str:
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'" and (index == 0 or line[index - 1] in " -[,:{"):
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip()
    return line.rstrip()


def _scalar(text: str, line: int, path: str | None) -> Any:
    text = text.strip()
    if not text or text in ("~", "null", "Null", "NULL"):
        return None
    if text[0] == '"':
        try:
            value, end = json.JSONDecoder().raw_decode(text)
        except ValueError as exc:
            raise CondaSpecificationException(f"bad double-quoted string {text!r}", line,
                                              path) from exc
        if text[end:].strip():
            raise CondaSpecificationException(f"unexpected text after {text[:end]}", line, path)
        return value
    if text[0] == "'":
        if len(text) < 2 or not text.endswith("'"):
            raise CondaSpecificationException(f"bad single-quoted string {text!r}", line, path)
        return text[1:-1].replace("''", "'")
    if text[0] == "[":
        if not text.endswith("]"):
            raise CondaSpecificationException("a flow list must end on its line", line, path)
        inner = text[1:-1].strip()
        return [_scalar(part, line, path) for part in _split_flow(inner)] if inner else []
    if text[0] in "{&*!|>":
        raise CondaSpecificationException(
            f"unsupported YAML ({text[0]!r}): conda files are read as plain mappings and lists",
            line, path)
    return text


def _split_flow(text: str) -> list[str]:
    parts, current, quote = [], "", None
    for char in text:
        if quote:
            current += char
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
            current += char
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _split_key(text: str) -> tuple[str, str] | None:
    """``key: value`` -> (key, value); None when the text is not a mapping entry."""
    match = re.match(r"""^("[^"]*"|'[^']*'|[^\s"'#\[\]{},][^:]*?)\s*:(?:\s+(.*)|$)""", text)
    if not match:
        return None
    key = match.group(1)
    if key[0] in "\"'":
        key = key[1:-1]
    return key, (match.group(2) or "")


def parse_conda_yaml(text: str, path: str | None = None) -> dict[str, Any]:
    """Parse the YAML subset conda environment files use (mappings, lists, scalars, comments)."""
    lines: list[tuple[int, int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise CondaSpecificationException("tabs are not allowed for indentation", number, path)
        stripped = _strip_comment(raw)
        if not stripped.strip() or stripped.strip() in ("---", "..."):
            continue
        lines.append((number, len(stripped) - len(stripped.lstrip()), stripped.strip()))
    if not lines:
        return {}
    position = 0

    def block(indent: int) -> Any:
        first_line, first_indent, content = lines[position]
        if content == "-" or content.startswith("- "):
            return sequence(first_indent)
        return mapping(first_indent)

    def sequence(indent: int) -> list[Any]:
        nonlocal position
        items: list[Any] = []
        while position < len(lines):
            number, current, content = lines[position]
            if current != indent or not (content == "-" or content.startswith("- ")):
                if current > indent:
                    raise CondaSpecificationException("unexpected indentation", number, path)
                break
            rest = content[1:].strip()
            position += 1
            if not rest:
                items.append(block(indent + 1) if position < len(lines)
                             and lines[position][1] > indent else None)
            elif _split_key(rest) is not None and rest[0] not in "\"'[":
                # "- key: value" opens a mapping whose keys sit at the item's content column
                column = indent + 1 + len(content[1:]) - len(content[1:].lstrip())
                lines.insert(position, (number, column, rest))
                items.append(mapping(column))
            else:
                items.append(_scalar(rest, number, path))
        return items

    def mapping(indent: int) -> dict[str, Any]:
        nonlocal position
        out: dict[str, Any] = {}
        while position < len(lines):
            number, current, content = lines[position]
            if current < indent:
                break
            if current > indent:
                raise CondaSpecificationException("unexpected indentation", number, path)
            entry = _split_key(content)
            if entry is None:
                if content.startswith("-"):
                    break
                raise CondaSpecificationException(f"expected 'key: value', got {content!r}",
                                                  number, path)
            key, value = entry
            position += 1
            if value.strip():
                out[key] = _scalar(value, number, path)
            elif position < len(lines) and (lines[position][1] > indent or (
                    lines[position][1] == indent and lines[position][2].startswith("-"))):
                out[key] = block(lines[position][1])
            else:
                out[key] = None
        return out

    result = block(lines[0][1])
    if position < len(lines):
        raise CondaSpecificationException("unexpected content", lines[position][0], path)
    if not isinstance(result, dict):
        raise CondaSpecificationException("the top level must be a mapping (name, channels, "
                                          "dependencies)", path=path)
    return result


_PLAIN = re.compile(r"^[A-Za-z0-9_./=<>!~*^$@+-][^#:]*$")


def _dump_scalar(value: Any) -> str:
    if value is None:
        return "null"
    text = str(value)
    if _PLAIN.match(text) and not text.startswith(("- ", "-\t")) and text.strip() == text and \
            text.lower() not in ("null", "true", "false", "yes", "no", "~"):
        return text
    if re.match(r"^[^#]*$", text) and ": " not in text and not text.endswith(":") and \
            text.strip() == text and text[0] not in "\"'[{&*!|>%@`" and \
            text.lower() not in ("null", "true", "false", "yes", "no", "~"):
        return text
    return json.dumps(text)


def dump_conda_yaml(structure: dict[str, Any]) -> str:
    """Write a conda specification as block YAML (the layout Azure uses)."""
    out: list[str] = []

    def write(value: Any, indent: int) -> None:
        pad = " " * indent
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, (dict, list)) and item:
                    out.append(f"{pad}{_dump_scalar(key)}:")
                    write(item, indent + (2 if isinstance(item, dict) else 0))
                elif isinstance(item, list):
                    out.append(f"{pad}{_dump_scalar(key)}: []")
                else:
                    out.append(f"{pad}{_dump_scalar(key)}: {_dump_scalar(item)}")
        else:
            for item in value:
                if isinstance(item, dict):
                    first = True
                    for key, sub in item.items():
                        lead = f"{pad}- " if first else f"{pad}  "
                        first = False
                        if isinstance(sub, list) and sub:
                            out.append(f"{lead}{_dump_scalar(key)}:")
                            write(sub, indent + 2)
                        elif isinstance(sub, list):
                            out.append(f"{lead}{_dump_scalar(key)}: []")
                        else:
                            out.append(f"{lead}{_dump_scalar(key)}: {_dump_scalar(sub)}")
                else:
                    out.append(f"{pad}- {_dump_scalar(item)}")

    write(structure, 0)
    return "\n".join(out) + "\n"
