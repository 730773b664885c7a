"""Data templates: JSON, objects and arrays (text and regular expressions: ``_text``).

Paths in config (``path``, ``by``, ``{placeholders}``) are field paths such as ``user.name``,
``items[0].id`` or ``$.a["odd key"]`` (see :func:`reflow.library._expr.parse_path`).
Regular expressions use Python's :mod:`re` syntax; inputs longer than ``max_length``
characters (default 1 MiB) are refused so a pathological pattern cannot stall the graph on a
huge text.
"""

from __future__ import annotations

import json
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from .._jsonread import loads
from ._base import (
    MISSING,
    LibraryActor,
    config_bool,
    config_int,
    config_value,
    input_array,
    input_object,
    input_text,
    input_value,
    to_message,
)
from ._expr import ExpressionError, get_path, parse_path, set_path

__all__ = ["DATA_TEMPLATES"]

_ABSENT = object()


def _path(ctx: ActorContext, key: str, default: Any = MISSING) -> list[str | int]:
    source = config_value(ctx, key, default)
    try:
        return parse_path(source)
    except ExpressionError as exc:
        raise ActorError(f"config {key!r}: {exc}") from exc


def _json_text(
    value: Any, key: str = "", indent: int | None = None, sort_keys: bool = False
) -> str:
    return json.dumps(
        value,
        indent=indent,
        sort_keys=sort_keys,
        ensure_ascii=False,
        separators=None if indent else (",", ":"),
    )


# -- JSON ---------------------------------------------------------------------------------------


class JsonParse(LibraryActor):
    """Parses JSON text into a message of the value's type.

    Ports: in ``in`` (String, or Bytes in UTF-8) → out ``out`` (Object, Array, String,
    Integer, Float, Boolean or Null). Config: none. Invalid JSON fails the tick with the line
    and column.
    """

    component = "tpl_json_parse"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: ActorContext) -> None:
        msg = ctx.inputs["in"]
        if msg["type"] == "Bytes":
            try:
                text = msg["data"].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ActorError(f"in-port 'in': Bytes are not UTF-8 ({exc})") from exc
        else:
            text = input_text(ctx, "in")
        try:
            value = loads(text)  # nesting past the depth limit is a ValueError too
        except ValueError as exc:
            raise ActorError(f"in-port 'in': not valid JSON: {exc}") from exc
        ctx.done({"out": to_message(value)})


class JsonStringify(LibraryActor):
    """Serialises a payload as JSON text.

    Ports: in ``in`` (any JSON payload; Bytes as a list of ints) → out ``out`` (String).
    Config: ``indent`` (int 0-8, default none: compact), ``sort_keys`` (bool, default false).
    """

    component = "tpl_json_stringify"
    inports = ["in"]
    outports = ["out"]
    outport_types = {"out": "String"}

    def run(self, ctx: ActorContext) -> None:
        indent = ctx.config.get("indent")
        if indent is not None:
            indent = config_int(ctx, "indent", minimum=0, maximum=8)
        sort_keys = config_bool(ctx, "sort_keys", False)
        msg = ctx.inputs["in"]
        if msg["type"] == "Stream":
            raise ActorError("in-port 'in': a Stream cannot be written as JSON")
        value = msg.as_json().get("data")
        ctx.done(
            {"out": Message.string(_json_text(value, indent=indent or None, sort_keys=sort_keys))}
        )


# -- objects ------------------------------------------------------------------------------------


class ObjectGet(LibraryActor):
    """Reads the value at a path.

    Ports: in ``in`` (Object or Array) → out ``out`` (the value, as a message of its type),
    ``missing`` (the input message, when the path does not exist and no ``default`` is set).
    Config: ``path`` (required, e.g. ``user.emails[0]``), ``default`` (any JSON: sent on
    ``out`` when the path is missing).
    """

    component = "tpl_object_get"
    inports = ["in"]
    outports = ["out", "missing"]

    def run(self, ctx: ActorContext) -> None:
        parts = _path(ctx, "path")
        value = get_path(input_value(ctx, "in"), parts, _ABSENT)
        if value is _ABSENT:
            if "default" in ctx.config:
                ctx.done({"out": to_message(ctx.config["default"])})
            else:
                ctx.done({"missing": ctx.inputs["in"]})
            return
        ctx.done({"out": to_message(value)})


class ObjectSet(LibraryActor):
    """Sets the value at a path, returning a new object (the input is not changed).

    Ports: in ``in`` (Object), ``value`` (any; when not connected, config ``value`` is used)
    → out ``out`` (Object). Config: ``path`` (required; missing objects on the way are
    created), ``value`` (any JSON).
    """

    component = "tpl_object_set"
    inports = ["in", "value"]
    outports = ["out"]
    await_all_inports = True
    inport_types = {"in": "Object"}
    outport_types = {"out": "Object"}

    def run(self, ctx: ActorContext) -> None:
        parts = _path(ctx, "path")
        if not parts:
            raise ActorError("config 'path' must name a field, not the whole object")
        obj = input_object(ctx, "in")
        if "value" in ctx.inputs:
            new = ctx.inputs["value"].as_json().get("data")
        elif "value" in ctx.config:
            new = ctx.config["value"]
        else:
            raise ActorError("in-port 'value' is not connected and config 'value' is not set")
        try:
            out = set_path(obj, parts, new)
        except ExpressionError as exc:
            raise ActorError(f"config 'path' {config_value(ctx, 'path')!r}: {exc}") from exc
        ctx.done({"out": Message.object(out)})


class ObjectPick(LibraryActor):
    """Keeps (``keys``) or drops (``omit``) top-level fields.

    Ports: in ``in`` (Object) → out ``out`` (Object). Config: ``keys`` (list of field names
    to keep) or ``omit`` (list of field names to drop) — exactly one.
    """

    component = "tpl_object_pick"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Object"}
    outport_types = {"out": "Object"}

    def run(self, ctx: ActorContext) -> None:
        keys, omit = ctx.config.get("keys"), ctx.config.get("omit")
        if (keys is None) == (omit is None):
            raise ActorError("config 'keys' or 'omit' is required (exactly one of them)")
        key = "keys" if keys is not None else "omit"
        names = keys if keys is not None else omit
        if not isinstance(names, list) or not all(isinstance(k, str) for k in names):
            raise ActorError(f"config {key!r} must be a list of field names, got {names!r}")
        obj = input_object(ctx, "in")
        if keys is not None:
            out = {k: obj[k] for k in names if k in obj}
        else:
            drop = set(names)
            out = {k: v for k, v in obj.items() if k not in drop}
        ctx.done({"out": Message.object(out)})


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


class ObjectMerge(LibraryActor):
    """Merges two objects; fields of ``b`` win.

    Ports: in ``a``, ``b`` (Object; waits for both) → out ``out`` (Object).
    Config: ``deep`` (bool, default false: nested objects are merged too when true).
    """

    component = "tpl_object_merge"
    inports = ["a", "b"]
    outports = ["out"]
    await_all_inports = True
    inport_types = {"a": "Object", "b": "Object"}
    outport_types = {"out": "Object"}

    def run(self, ctx: ActorContext) -> None:
        deep = config_bool(ctx, "deep", False)
        a = input_object(ctx, "a")
        b = input_object(ctx, "b")
        ctx.done({"out": Message.object(_deep_merge(a, b) if deep else {**a, **b})})


class ObjectKeys(LibraryActor):
    """The keys and values of an object.

    Ports: in ``in`` (Object) → out ``keys`` (Array of String), ``values`` (Array),
    ``entries`` (Array of ``[key, value]``). Config: ``sort`` (bool, default false).
    """

    component = "tpl_object_keys"
    inports = ["in"]
    outports = ["keys", "values", "entries"]
    inport_types = {"in": "Object"}
    outport_types = {"keys": "Array", "values": "Array", "entries": "Array"}

    def run(self, ctx: ActorContext) -> None:
        obj = input_object(ctx, "in")
        items = sorted(obj.items()) if config_bool(ctx, "sort", False) else list(obj.items())
        ctx.done(
            {
                "keys": Message.array([k for k, _ in items]),
                "values": Message.array([v for _, v in items]),
                "entries": Message.array([[k, v] for k, v in items]),
            }
        )


# -- arrays -------------------------------------------------------------------------------------


class ArrayLength(LibraryActor):
    """The number of items of an Array, characters of a String, fields of an Object or bytes
    of Bytes.

    Ports: in ``in`` (Array, String, Object or Bytes) → out ``out`` (Integer). Config: none.
    """

    component = "tpl_array_length"
    inports = ["in"]
    outports = ["out"]
    outport_types = {"out": "Integer"}

    def run(self, ctx: ActorContext) -> None:
        msg = ctx.inputs["in"]
        if msg["type"] not in ("Array", "String", "Object", "Bytes"):
            raise ActorError(
                f"in-port 'in': expected an Array, String, Object or Bytes, got {msg['type']}"
            )
        ctx.done({"out": Message.integer(len(msg["data"]))})


class ArraySlice(LibraryActor):
    """Items ``start`` to ``end`` (exclusive) of an Array; negative indexes count from the end.

    Ports: in ``in`` (Array) → out ``out`` (Array). Config: ``start`` (int, default 0),
    ``end`` (int, default: the end), ``step`` (int ≥ 1, default 1).
    """

    component = "tpl_array_slice"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Array"}
    outport_types = {"out": "Array"}

    def run(self, ctx: ActorContext) -> None:
        start = config_int(ctx, "start", 0)
        end = config_int(ctx, "end", None) if ctx.config.get("end") is not None else None
        step = config_int(ctx, "step", 1, minimum=1)
        ctx.done({"out": Message.array(input_array(ctx, "in")[start:end:step])})


def _sort_key(value: Any) -> tuple[int, Any]:
    # Mixed types sort by kind first (null, bool, number, string, others as JSON text).
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, json.dumps(value, sort_keys=True))


class ArraySort(LibraryActor):
    """Sorts an Array (stable), optionally by a field of each item.

    Ports: in ``in`` (Array) → out ``out`` (Array). Config: ``by`` (path into each item,
    default: the item itself), ``reverse`` (bool, default false). Items of mixed types sort
    null < booleans < numbers < strings < others.
    """

    component = "tpl_array_sort"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Array"}
    outport_types = {"out": "Array"}

    def run(self, ctx: ActorContext) -> None:
        parts = _path(ctx, "by", "")
        reverse = config_bool(ctx, "reverse", False)
        items = input_array(ctx, "in")
        out = sorted(items, key=lambda v: _sort_key(get_path(v, parts)), reverse=reverse)
        ctx.done({"out": Message.array(out)})


class ArrayConcat(LibraryActor):
    """Joins two arrays.

    Ports: in ``a``, ``b`` (Array; waits for both) → out ``out`` (Array ``a + b``).
    Config: none.
    """

    component = "tpl_array_concat"
    inports = ["a", "b"]
    outports = ["out"]
    await_all_inports = True
    inport_types = {"a": "Array", "b": "Array"}
    outport_types = {"out": "Array"}

    def run(self, ctx: ActorContext) -> None:
        b = input_array(ctx, "b") if "b" in ctx.inputs else []
        ctx.done({"out": Message.array(input_array(ctx, "a") + b)})


class ArrayPluck(LibraryActor):
    """The value at a path of every item.

    Ports: in ``in`` (Array) → out ``out`` (Array; ``null`` where an item lacks the path).
    Config: ``path`` (required, e.g. ``user.id``), ``skip_missing`` (bool, default false:
    leave out items without the path).
    """

    component = "tpl_array_pluck"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Array"}
    outport_types = {"out": "Array"}

    def run(self, ctx: ActorContext) -> None:
        parts = _path(ctx, "path")
        skip = config_bool(ctx, "skip_missing", False)
        values = [get_path(item, parts, _ABSENT) for item in input_array(ctx, "in")]
        if skip:
            values = [v for v in values if v is not _ABSENT]
        else:
            values = [None if v is _ABSENT else v for v in values]
        ctx.done({"out": Message.array(values)})


DATA_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (
        JsonParse,
        JsonStringify,
        ObjectGet,
        ObjectSet,
        ObjectPick,
        ObjectMerge,
        ObjectKeys,
        ArrayLength,
        ArraySlice,
        ArraySort,
        ArrayConcat,
        ArrayPluck,
    )
}
