"""The shared sections of an operation table of format ``reflow-http-api/2`` (abi/HTTP_API.md).

A generated table repeats itself: Kubernetes' 1,123 operations hold 8,849 parameters of only
129 kinds (the same ``$ref``'d ``pretty``, ``namespace``, ``fieldManager`` ... copied into
hundreds of operations), 2,788 responses of 392 and 533 bodies of 99. Format 2 keeps each
distinct parameter, response and body once, in the table's ``parameters``, ``responses`` and
``bodies`` arrays, an operation names them by index, operation fields holding the default
are left out, and the shared schemas are kept as their JSON text (decoded on first use by
:attr:`~._table.ApiTable.schemas`). :func:`share_table` writes that form from the expanded
one (the generator's); :func:`check_shared` checks, at load, that the sections are arrays of
objects and that every index an operation holds is an integer naming one of them, so a bad
reference is a load-time error, never a tick-time one; :func:`resolve_operation` gives an
operation with its entries in place when it is first used (they are then checked like
inline ones); :func:`expand_table` gives the whole expanded form back, for tools and tests.

A shared entry must be an object, never an index, so references cannot form cycles. Format 1
tables have no shared sections and are still read: an index in one is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import PackFormatError

__all__ = [
    "FORMATS",
    "FORMAT_1",
    "FORMAT_2",
    "SharedSections",
    "check_shared",
    "expand_table",
    "resolve_operation",
    "share_table",
]

FORMAT_1 = "reflow-http-api/1"
FORMAT_2 = "reflow-http-api/2"
FORMATS = (FORMAT_1, FORMAT_2)

Fail = Callable[[str, str], PackFormatError]


#: Operation fields whose value is the reader's default: format 2 leaves them out.
OPERATION_DEFAULTS: dict[str, Any] = {
    "body": None,
    "credentials": [],
    "deprecated": False,
    "description": "",
    "operation_id": None,
    "pagination": None,
    "security": None,
    "servers": None,
    "summary": "",
}


class _Pool:
    """Distinct entries in first-use order (so the same table always gives the same bytes)."""

    def __init__(self) -> None:
        self.entries: list[Any] = []
        self._seen: dict[str, int] = {}

    def index(self, value: Any) -> int:
        key = json.dumps(value, sort_keys=True, separators=(",", ":"))
        i = self._seen.get(key)
        if i is None:
            i = self._seen[key] = len(self.entries)
            self.entries.append(value)
        return i


def share_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """The format-2 form of an expanded table: each distinct parameter, response and body
    kept once, and operation fields that hold the default left out."""
    params, responses, bodies = _Pool(), _Pool(), _Pool()
    ops = {}
    for suffix, raw in table["operations"].items():
        op = {
            k: v
            for k, v in raw.items()
            if not (k in OPERATION_DEFAULTS and v == OPERATION_DEFAULTS[k])
        }
        if isinstance(op.get("parameters"), list):
            op["parameters"] = [params.index(p) for p in op["parameters"]]
        if isinstance(op.get("responses"), dict):
            op["responses"] = {s: responses.index(r) for s, r in op["responses"].items()}
        if isinstance(op.get("body"), dict):
            op["body"] = bodies.index(op["body"])
        ops[suffix] = op
    return {
        **table,
        "format": FORMAT_2,
        "parameters": params.entries,
        "responses": responses.entries,
        "bodies": bodies.entries,
        "schemas": json.dumps(
            table.get("schemas") or {},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ),
        "operations": ops,
    }


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SharedSections:
    """A table's shared entries (empty for format 1), each section checked to hold objects."""

    parameters: list[Any] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)


SECTIONS = ("parameters", "responses", "bodies")


def _section(doc: Mapping[str, Any], name: str, fail: Fail) -> list[Any]:
    value = doc.get(name, [])
    if not isinstance(value, list):
        raise fail(name, f"expected an array of shared {name}, got {_kind(value)}")
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            what = _kind(entry)
            if _is_index(entry):
                what += " (a shared entry cannot refer to another)"
            raise fail(f"{name}[{i}]", f"expected an object, got {what}")
    return value


def check_shared(
    doc: Mapping[str, Any], fmt: str, ops: Mapping[str, Any], fail: Fail
) -> SharedSections:
    """The shared sections of ``doc``, every reference of every operation checked. ``ops``
    are the operations (already known to be objects)."""
    if fmt == FORMAT_1:
        for name in SECTIONS:
            if name in doc:
                raise fail(name, f"a {FORMAT_1!r} table has no shared {name} (format 2 has)")
        shared = SharedSections()
    else:
        shared = SharedSections(*(_section(doc, name, fail) for name in SECTIONS))
    np, nr = len(shared.parameters), len(shared.responses)
    for suffix, raw in ops.items():
        where = f"operations.{suffix}"
        plist = raw.get("parameters")
        if isinstance(plist, list) and not _all_indexes(plist, np):
            for i, p in enumerate(plist):
                _check_ref(
                    p, shared.parameters, f"{where}.parameters[{i}]", "parameters", fmt, fail
                )
        resp = raw.get("responses")
        if isinstance(resp, dict) and not _all_indexes(resp.values(), nr):
            for status, r in resp.items():
                _check_ref(
                    r, shared.responses, f"{where}.responses.{status}", "responses", fmt, fail
                )
        body = raw.get("body")
        if body is not None:
            _check_ref(body, shared.bodies, f"{where}.body", "bodies", fmt, fail)
    return shared


def _all_indexes(values: Iterable[Any], size: int) -> bool:
    """Whether every value is an index below ``size`` (the common case, checked fast)."""
    values = list(values)
    return all(type(v) is int for v in values) and (
        not values or (min(values) >= 0 and max(values) < size)
    )


def _check_ref(value: Any, pool: list[Any], where: str, section: str, fmt: str, fail: Fail) -> None:
    if isinstance(value, dict):
        return  # inline: checked with its operation
    if not _is_index(value):
        raise fail(where, f"expected an object or an index into {section}, got {_kind(value)}")
    if fmt == FORMAT_1:
        raise fail(where, f"is an index, but a {FORMAT_1!r} table has no shared {section}")
    if not 0 <= value < len(pool):
        raise fail(
            where, f"index {value} is out of range: the table has {len(pool)} shared {section}"
        )


def resolve_operation(raw: Mapping[str, Any], shared: SharedSections) -> dict[str, Any]:
    """``raw`` with every index replaced by the shared entry it names (checked at load)."""
    out = dict(raw)
    plist = raw.get("parameters")
    if isinstance(plist, list):
        out["parameters"] = [shared.parameters[p] if _is_index(p) else p for p in plist]
    resp = raw.get("responses")
    if isinstance(resp, dict):
        out["responses"] = {s: shared.responses[r] if _is_index(r) else r for s, r in resp.items()}
    if _is_index(raw.get("body")):
        out["body"] = shared.bodies[raw["body"]]
    return out


def expand_table(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A parsed table of either format in the expanded (format-1) form, every operation
    field present: what tools and tests that read a pack's table as data use. The
    references must be valid (a table :func:`~._table.load_table` accepted)."""
    if doc.get("format") != FORMAT_2:
        return dict(doc)
    shared = SharedSections(*(list(doc.get(name) or []) for name in SECTIONS))
    out = {k: v for k, v in doc.items() if k not in SECTIONS}
    out["format"] = FORMAT_1
    if isinstance(out.get("schemas"), str):
        out["schemas"] = json.loads(out["schemas"])
    out["operations"] = {
        s: {**OPERATION_DEFAULTS, **resolve_operation(o, shared)}
        for s, o in doc["operations"].items()
    }
    return out


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
