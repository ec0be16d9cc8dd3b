"""Run-history queries of the emulator: listing experiments (``POST .../experiments:query``),
archiving and reactivating one (``PATCH .../experimentids/{id}``), listing the runs of an
experiment (``POST .../experiments/{exp}/runs:query``) and removing run tags
(``DELETE .../experiments/{exp}/runs/{run}/tags``), through simml's run-history API.

The client sends its filters as OData-like strings built by ``azureml._restclient._odata``
(``Experiment.get_runs(tags=..., properties=..., type=..., status=..., include_children=...)``,
``Experiment.list(experiment_name=..., tags=..., view_type=...)``)::

    (Tags/team eq "ml")                       a tag with a value (quoted for runs, bare for
                                              experiments)
    (Tags/team ne null or Tags/team eq null)  the tag is present, any value
    (RunType eq azureml.scriptrun or Properties/azureml.runsource eq azureml.scriptrun)
    (Status eq Completed)   (ParentRunId eq null)   (CreatedUtc ge 2024-01-01 10:00:00+00:00)
    RunId eq a or RunId eq b                  ``get_runs_by_run_ids``

``ODataFilter`` parses that grammar (``and``/``or``/parentheses over ``field op value``
comparisons) and evaluates it on simml's entities. A comparison on a tag or property the entity
does not have is false, whatever the operator: that is what makes Azure's "ne null or eq null"
mean "present". Answers are paged (``top``, default 500) with a ``continuationToken`` that is the
last item's sort key, so items created between two pages shift nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from simml.emulator.protocol import ARM_SCOPE, bad_request, not_found

if TYPE_CHECKING:
    from simml.emulator.service import Emulator, Request
    from simml.entities import ExperimentInfo, RunInfo

HISTORY = "/history/v1.0" + ARM_SCOPE
DEFAULT_TOP = 500
MAX_TOP = 1000
MAX_FILTER = 10_000
MAX_DEPTH = 32  # nested parentheses (the client writes three at most)
VIEW_TYPES = {"default": "ActiveOnly", "activeonly": "ActiveOnly", "all": "All",
              "archivedonly": "ArchivedOnly"}
_OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le")
_KEYWORD = re.compile(r"\s+(and|or)(?=[\s(])", re.IGNORECASE)


# --- the filter language -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Comparison:
    path: tuple[str, ...]  # ("Tags", "team"), ("Status",)
    op: str
    value: str | None  # None: null


class ODataFilter:
    """A parsed filter expression; ``matches(lookup)`` evaluates it, where ``lookup(path)``
    gives the entity's value for a field path: ``MISSING`` for an absent tag or property."""

    def __init__(self, text: str, fields: dict[str, str]) -> None:
        self.text = text
        self._fields = fields  # lower-case first segment -> canonical name
        self._pos = 0
        self._depth = 0
        self.tree = self._parse_or()
        self._skip_space()
        if self._pos != len(text):
            self._fail(f"unexpected {text[self._pos:self._pos + 20]!r}")

    # --- parsing ---------------------------------------------------------------------------------
    def _fail(self, why: str) -> NoReturn:
        shown = self.text if len(self.text) <= 200 else self.text[:200] + "..."
        raise bad_request(f"Invalid filter {shown!r}: {why} (at character {self._pos}).",
                          inner="InvalidFilter")

    def _skip_space(self) -> None:
        while self._pos < len(self.text) and self.text[self._pos].isspace():
            self._pos += 1

    def _keyword(self, word: str) -> bool:
        self._skip_space()
        end = self._pos + len(word)
        if self.text[self._pos:end].lower() == word and (
                end == len(self.text) or self.text[end].isspace() or self.text[end] == "("):
            self._pos = end
            return True
        return False

    def _parse_or(self) -> Any:
        terms = [self._parse_and()]
        while self._keyword("or"):
            terms.append(self._parse_and())
        return terms[0] if len(terms) == 1 else ("or", terms)

    def _parse_and(self) -> Any:
        terms = [self._parse_atom()]
        while self._keyword("and"):
            terms.append(self._parse_atom())
        return terms[0] if len(terms) == 1 else ("and", terms)

    def _parse_atom(self) -> Any:
        self._skip_space()
        if self._pos >= len(self.text):
            self._fail("an expression was expected")
        if self.text[self._pos] == "(":
            self._depth += 1
            if self._depth > MAX_DEPTH:
                self._fail(f"more than {MAX_DEPTH} nested parentheses")
            self._pos += 1
            inner = self._parse_or()
            self._depth -= 1
            self._skip_space()
            if self._pos >= len(self.text) or self.text[self._pos] != ")":
                self._fail("')' was expected")
            self._pos += 1
            return inner
        return self._parse_comparison()

    def _word(self) -> str:
        start = self._pos
        while self._pos < len(self.text) and not self.text[self._pos].isspace() \
                and self.text[self._pos] not in "()":
            self._pos += 1
        return self.text[start:self._pos]

    def _parse_comparison(self) -> _Comparison:
        field = self._word()
        parts = tuple(field.split("/"))
        canonical = self._fields.get(parts[0].lower())
        if not field or canonical is None:
            known = ", ".join(sorted(set(self._fields.values())))
            self._fail(f"unknown field {field!r} (known: {known})")
        if canonical in ("Tags", "Properties", "RunTypeV2") and (len(parts) < 2 or
                                                                 not all(parts[1:])):
            self._fail(f"{canonical} needs a key ({canonical}/<key>)")
        if canonical not in ("Tags", "Properties", "RunTypeV2") and len(parts) > 1:
            self._fail(f"{canonical} has no keys")
        self._skip_space()
        op = self._word().lower()
        if op not in _OPERATORS:
            self._fail(f"an operator ({', '.join(_OPERATORS)}) was expected, not {op!r}")
        self._skip_space()
        return _Comparison((canonical, *parts[1:]), op, self._value())

    def _value(self) -> str | None:
        text = self.text
        if self._pos >= len(text):
            self._fail("a value was expected")
        quote = text[self._pos]
        if quote in "\"'":
            end = text.find(quote, self._pos + 1)
            if end < 0:
                self._fail("unterminated string")
            value = text[self._pos + 1:end]
            self._pos = end + 1
            return value
        # A bare value (the client quotes nothing for experiments, statuses, run types and
        # times: "2024-01-01 10:00:00+00:00" holds a space) ends at ')', at the end, or before
        # " and " / " or ".
        start = self._pos
        while self._pos < len(text):
            char = text[self._pos]
            if char == ")":
                break
            if char.isspace() and _KEYWORD.match(text, self._pos):
                break
            self._pos += 1
        value = text[start:self._pos].strip()
        if not value:
            self._fail("a value was expected")
        return None if value.lower() == "null" else value

    # --- evaluation ------------------------------------------------------------------------------
    def matches(self, lookup: Callable[[tuple[str, ...]], Any]) -> bool:
        return self._eval(self.tree, lookup)

    def _eval(self, node: Any, lookup: Callable[[tuple[str, ...]], Any]) -> bool:
        if isinstance(node, _Comparison):
            return _compare(lookup(node.path), node.op, node.value, node.path[0])
        kind, terms = node
        if kind == "and":
            return all(self._eval(t, lookup) for t in terms)
        return any(self._eval(t, lookup) for t in terms)

    def validate_values(self) -> None:
        """Refuse, before anything runs, a time comparison whose value is not a time."""
        stack = [self.tree]
        while stack:
            node = stack.pop()
            if isinstance(node, _Comparison):
                if node.path[0] in TIME_FIELDS and node.value is not None \
                        and _parse_time(node.value) is None:
                    raise bad_request(f"Invalid filter {self.text!r}: {node.value!r} is not a "
                                      f"time ({node.path[0]}).", inner="InvalidFilter")
            else:
                stack.extend(node[1])


MISSING = object()
"""A tag, property or trait the entity does not have: every comparison on it is false."""
TIME_FIELDS = ("CreatedUtc", "StartTimeUtc", "EndTimeUtc")


def _parse_time(text: str) -> datetime | None:
    value = text.strip().replace("Z", "+00:00")
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)  # Azure writes 7 fractional digits
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _compare(actual: Any, op: str, expected: str | None, field: str) -> bool:
    if actual is MISSING:
        return False
    if field in ("Tags", "Properties", "RunTypeV2") and actual is not MISSING:
        # present: "eq null" holds for an empty value, "ne null" for any other
        if expected is None:
            return (actual in (None, "")) == (op == "eq")
    if expected is None or actual is None:
        same = expected is None and actual in (None, "")
        if op == "eq":
            return same
        if op == "ne":
            return not same
        return False
    if isinstance(actual, datetime):
        other = _parse_time(expected)
        if other is None:
            return False
        left, right = actual.timestamp(), other.timestamp()
    elif isinstance(actual, int) and not isinstance(actual, bool):
        try:
            left, right = actual, int(expected)
        except ValueError:
            return False
    else:
        left, right = str(actual), expected
    return {"eq": left == right, "ne": left != right, "gt": left > right,
            "ge": left >= right, "lt": left < right, "le": left <= right}[op]


# --- ordering and pages --------------------------------------------------------------------------

def _order(text: Any, fields: dict[str, str], default: str) -> tuple[str, bool]:
    """(canonical field, descending) of an ``orderby`` like ``StartTimeUtc desc``."""
    if isinstance(text, list):  # the client's helper may leave a one-item list
        text = text[0] if len(text) == 1 else None
    if text is None or text == "":
        text = default
    if not isinstance(text, str):
        raise bad_request(f"orderby must be a string like 'CreatedUtc desc', not {text!r}.")
    words = text.split()
    canonical = fields.get(words[0].lower()) if words else None
    if canonical is None or len(words) > 2 or \
            (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
        raise bad_request(f"Invalid orderby {text!r}: expected '<field> asc|desc' with a field "
                          f"among {', '.join(sorted(set(fields.values())))}.")
    return canonical, len(words) == 2 and words[1].lower() == "desc"


def _top(value: Any) -> int:
    if value is None:
        return DEFAULT_TOP
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"top must be a positive integer, not {value!r}.")
    return min(value, MAX_TOP)


def _sort_value(value: Any) -> list[Any]:
    """A JSON-able, totally ordered form of one sort value (None first)."""
    if value is None:
        return [0, 0]
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return [1, stamp.timestamp()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [1, value]
    return [1, str(value)]


def _page(items: list[Any], key: Callable[[Any], list[Any]], descending: bool, order: str,
          top: int, token: Any) -> tuple[list[Any], str | None]:
    """One page after ``token`` (the previous page's last key) and the next page's token."""
    keyed = sorted(((key(item), item) for item in items), key=lambda pair: pair[0],
                   reverse=descending)
    if token is not None:
        after = _decode_token(token, order)
        keyed = [(k, i) for k, i in keyed if (k < after if descending else k > after)]
    page = keyed[:top]
    following = None
    if len(keyed) > top:
        following = base64.urlsafe_b64encode(json.dumps(
            {"o": order, "k": page[-1][0]}).encode()).decode()
    return [item for _, item in page], following


def _decode_token(token: Any, order: str) -> list[Any]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        if not isinstance(doc, dict) or not isinstance(doc.get("k"), list):
            raise ValueError("not a key")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise bad_request(f"Invalid continuationToken {token!r}.") from exc
    if doc.get("o") != order:
        raise bad_request("The continuationToken belongs to a query with another orderby.")
    return doc["k"]


# --- the routes ----------------------------------------------------------------------------------

RUN_FIELDS = {name.lower(): name for name in (
    "RunId", "Status", "RunType", "Target", "ParentRunId", "RootRunId", "CreatedUtc",
    "StartTimeUtc", "EndTimeUtc", "RunNumber", "Name", "DisplayName", "ExperimentId", "Tags",
    "Properties", "RunTypeV2")}
EXPERIMENT_FIELDS = {name.lower(): name for name in (
    "Name", "ExperimentId", "CreatedUtc", "Tags")}


class History:
    """The query routes of run history over simml's ``RunHistoryStore``."""

    def __init__(self, emulator: "Emulator") -> None:
        self.emulator = emulator

    @property
    def store(self) -> Any:
        return self.emulator.workspace._history()

    def register_routes(self) -> None:
        add = self.emulator.router.add
        add("POST", HISTORY + "/experiments:query", self.experiments_query)
        add("PATCH", HISTORY + "/experimentids/{expid}", self.experiment_patch)
        add("POST", HISTORY + "/experiments/{exp}/runs:query", self.runs_query)
        add("DELETE", HISTORY + "/experiments/{exp}/runs/{run}/tags", self.run_tags_delete)

    # --- experiments -----------------------------------------------------------------------------
    def experiments_query(self, req: "Request") -> dict[str, Any]:
        """``Experiment.list(ws, experiment_name=, view_type=, tags=)``, ``ws.experiments``."""
        body = req.json_object() if req.body else {}
        view_text = body.get("viewType") or req.arg("viewType") or "Default"
        view = VIEW_TYPES.get(str(view_text).lower())
        if view is None:
            raise bad_request(f"Invalid viewType {view_text!r} (Default, All, ActiveOnly, "
                              "ArchivedOnly).")
        where = self._filter(body.get("filter"), EXPERIMENT_FIELDS)
        order = body.get("orderby")
        field, descending = _order(order, EXPERIMENT_FIELDS, "CreatedUtc desc")
        top = _top(body.get("top"))
        found = []
        for info in self.store.list_experiments(include_archived=True):
            archived = info.archived_time is not None
            if (view == "ActiveOnly" and archived) or (view == "ArchivedOnly" and not archived):
                continue
            if where is None or where.matches(lambda path, i=info: _experiment_field(i, path)):
                found.append(info)
        page, token = _page(found, lambda i: [*_sort_value(_experiment_field(i, (field,))),
                                              i.id], descending,
                            f"{field} {'desc' if descending else 'asc'}", top,
                            body.get("continuationToken"))
        return {"value": [self.emulator._experiment_dto(i) for i in page],
                "continuationToken": token, "nextLink": None}

    def experiment_patch(self, req: "Request") -> dict[str, Any]:
        """``archive()`` / ``reactivate()`` (``ModifyExperimentDto``). simml keeps no experiment
        description and its experiment tags are fixed at creation: those are refused, as is a
        rename (the client refuses it too)."""
        from simml.core.experiment import Experiment
        body = req.json_object()
        info = self.emulator._experiment_by_id(req.params["expid"])
        unknown = sorted(set(body) - {"name", "description", "archive", "tags"})
        if unknown:
            raise bad_request(f"Unknown field(s) {', '.join(unknown)} of ModifyExperimentDto.")
        if body.get("name") not in (None, info.name):
            raise bad_request("An experiment cannot be renamed.", inner="NotSupported")
        if body.get("description") is not None or body.get("tags"):
            raise bad_request("The emulator keeps no experiment description, and experiment "
                              "tags cannot be changed after creation.", inner="NotSupported")
        archive = body.get("archive")
        if archive is not None and not isinstance(archive, bool):
            raise bad_request(f"archive must be true or false, not {archive!r}.")
        if archive is not None and archive != (info.archived_time is not None):
            experiment = Experiment(self.emulator.workspace, info.name,
                                    _skip_name_validation=True)
            if archive:
                experiment.archive()
            else:
                experiment.reactivate()
        return self.emulator._experiment_dto(self.emulator._experiment_by_id(info.id))

    # --- runs ------------------------------------------------------------------------------------
    def runs_query(self, req: "Request") -> dict[str, Any]:
        """``Experiment.get_runs`` / ``Run.list`` (filters in ``QueryParamsDto.filter``),
        ``ExperimentClient.get_runs_by_run_ids``; the runs of the experiment in the path,
        children included unless the filter says ``ParentRunId eq null``."""
        from simml.entities import RunQuery
        from simml.exceptions import NotFoundException
        body = req.json_object() if req.body else {}
        where = self._filter(body.get("filter"), RUN_FIELDS)
        field, descending = _order(body.get("orderby"), RUN_FIELDS, "CreatedUtc desc")
        top = _top(body.get("top"))
        name = req.params["exp"]
        try:
            self.store.get_experiment(name)
        except NotFoundException as exc:
            raise not_found(f"Experiment {name} not found.", inner="ExperimentNotFound") from exc
        runs = self.store.query_runs(RunQuery(experiment_name=name, include_children=True))
        found = [r for r in runs
                 if where is None or where.matches(lambda path, r=r: _run_field(r, path))]
        page, token = _page(found, lambda r: [*_sort_value(_run_field(r, (field,))),
                                              *_sort_value(r.created_time), r.number, r.id],
                            descending, f"{field} {'desc' if descending else 'asc'}", top,
                            body.get("continuationToken"))
        return {"value": [self.emulator.run_dto(r) for r in page], "continuationToken": token}

    def run_tags_delete(self, req: "Request") -> dict[str, Any]:
        """``Run.remove_tags(keys)``: a JSON list of tag keys; keys the run lacks are ignored."""
        keys = req.json()
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise bad_request("The body must be a JSON list of tag keys (non-empty strings).")
        run = self.emulator._run(req.params["run"])
        present = [k for k in keys if k in run.get_tags()]
        if present:
            run.remove_tags(present)
        return self.emulator.run_dto(self.emulator._run_info(run.id))

    # --- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _filter(text: Any, fields: dict[str, str]) -> ODataFilter | None:
        if text is None or text == "":
            return None
        if not isinstance(text, str):
            raise bad_request(f"filter must be a string, not {type(text).__name__}.",
                              inner="InvalidFilter")
        if len(text) > MAX_FILTER:
            raise bad_request(f"The filter is longer than {MAX_FILTER} characters.",
                              inner="InvalidFilter")
        parsed = ODataFilter(text, fields)
        parsed.validate_values()
        return parsed


def _experiment_field(info: "ExperimentInfo", path: tuple[str, ...]) -> Any:
    head = path[0]
    if head == "Tags":
        return info.tags.get("/".join(path[1:]), MISSING)
    return {"Name": info.name, "ExperimentId": info.id, "CreatedUtc": info.created_time}[head]


def _run_field(info: "RunInfo", path: tuple[str, ...]) -> Any:
    head = path[0]
    key = "/".join(path[1:])
    if head == "Tags":
        return info.tags.get(key, MISSING)
    if head == "Properties":
        return info.properties.get(key, MISSING)
    if head == "RunTypeV2":  # simml keeps run types v1 only
        return info.run_type if key.lower() == "orchestrator" else MISSING
    root = info.id
    if info.parent_id:
        root = info.properties.get("azureml.rootRunId") or info.parent_id
    return {"RunId": info.id, "Status": info.status, "RunType": info.run_type,
            "Target": info.target, "ParentRunId": info.parent_id, "RootRunId": root,
            "CreatedUtc": info.created_time, "StartTimeUtc": info.start_time,
            "EndTimeUtc": info.end_time, "RunNumber": info.number, "Name": info.display_name,
            "DisplayName": info.display_name, "ExperimentId": info.experiment_id}[head]


def register(emulator: "Emulator") -> None:
    """Add the run-history query routes to ``emulator``."""
    History(emulator).register_routes()


__all__ = ["History", "ODataFilter", "register"]
