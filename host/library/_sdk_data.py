"""Data and text templates of the offbit-reflow standard catalog: ``tpl_data_emit``,
``tpl_data_transformer``, ``tpl_data_operations``, ``tpl_generator``, ``tpl_json_parser``,
``tpl_regex_matcher``.

Where offbit_reflow evaluates JavaScript (``tpl_data_operations``' filter, map, sort,
transform, group and aggregate expressions), these templates use the safe expression language
of :mod:`reflow.library._expr` instead, reading JavaScript's ``item.x``/``data.x``, ``&&``,
``||``, ``!``, ``===`` and ``!==`` as ``$.x``, ``and``, ``or``, ``not``, ``==`` and ``!=``.
Nothing is ever passed to a JavaScript engine or to ``eval``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from .._jsonread import loads
from ._base import LibraryActor, config_bool, config_int, config_str
from ._expr import Expression, ExpressionError, get_path, parse_path
from ._sdk_config import with_sdk_config
from ._sdk_support import payload, reject, value_message

__all__ = ["SDK_DATA_TEMPLATES", "SDK_TEXT_TEMPLATES"]

_MAX_ITEMS = 1_000_000


def _data_message(value: Any) -> Message:
    # offbit_reflow wraps any JSON value in an Object message; here an object is an Object
    # and anything else a message of its own kind (an Object must hold an object).
    return Message.object(value) if isinstance(value, dict) else value_message(value)


class DataEmit(LibraryActor):
    """Sends config ``data`` when triggered.

    Ports: in ``trigger`` (any) → out ``output`` (config ``data``: an Object for a JSON
    object, else a message of the value's kind). Config: ``data`` (any JSON; nothing is
    sent without it), ``oneshot`` (bool, default true: only the first trigger sends),
    ``port`` (out-port name; only ``"output"``).
    """

    component = "tpl_data_emit"
    inports = ["trigger"]
    outports = ["output"]

    def run(self, ctx: ActorContext) -> None:
        oneshot = config_bool(ctx, "oneshot", True)
        port = ctx.config.get("port")
        if port is not None and port != "output":
            raise ActorError(
                f"config 'port' must be 'output' (the only out-port of tpl_data_emit), got {port!r}"
            )
        if (oneshot and ctx.pool_get("_emit", "done")) or "data" not in ctx.config:
            ctx.done()
            return
        if oneshot:
            ctx.pool_upsert("_emit", "done", True)
        ctx.done({"output": _data_message(ctx.config["data"])})


_TRANSFORMS = (
    "passthrough",
    "to_uppercase",
    "to_lowercase",
    "to_json",
    "from_json",
    "extract_field",
    "set_field",
    "template",
)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class DataTransformer(LibraryActor):
    """Transforms each packet by one named operation.

    Ports: in ``input`` (any) → out ``output`` (the result), ``error`` (Error, for text that
    ``from_json`` cannot parse; the tick fails too). Config: ``transform_type`` (or
    ``operation``; default ``passthrough``): ``to_uppercase``/``to_lowercase`` (a String;
    other kinds pass unchanged), ``to_json`` (the payload as compact JSON text),
    ``from_json`` (a String parsed into a message of its JSON kind), ``extract_field`` (field
    ``field_name`` (or ``field``) of an Object; an empty Optional when absent),
    ``set_field`` (an Object, or ``{}`` for other kinds, with ``field_name`` set to
    ``field_value`` (or ``value``)), ``template`` (config ``template``, default
    ``"${value}"``, with ``${value}`` replaced by the String, or the payload's JSON text).
    """

    component = "tpl_data_transformer"
    inports = ["input"]
    outports = ["output", "error"]
    outport_types = {"error": "Error"}

    def run(self, ctx: ActorContext) -> None:
        config = ctx.config
        kind = config.get("transform_type", config.get("operation", "passthrough"))
        if kind not in _TRANSFORMS:
            raise ActorError(
                f"config 'transform_type' must be one of {', '.join(_TRANSFORMS)}, got {kind!r}"
            )
        msg = ctx.inputs["input"]
        data = payload(msg)
        field = config.get("field_name", config.get("field"))
        if field is not None and not isinstance(field, str):
            raise ActorError(f"config 'field_name' must be a string, got {field!r}")
        out = msg
        if kind in ("to_uppercase", "to_lowercase") and msg["type"] == "String":
            out = Message.string(data.upper() if kind == "to_uppercase" else data.lower())
        elif kind == "to_json":
            out = Message.string(_compact(data))
        elif kind == "from_json" and msg["type"] == "String":
            try:
                out = value_message(loads(data))
            except ValueError as exc:
                raise reject(ctx, f"in-port 'input': JSON parse error: {exc}") from None
        elif kind == "extract_field" and field is not None and msg["type"] == "Object":
            out = value_message(data[field]) if field in data else Message.optional(None)
        elif (
            kind == "set_field"
            and field is not None
            and ("field_value" in config or "value" in config)
        ):
            value = config.get("field_value", config.get("value"))
            base = dict(data) if msg["type"] == "Object" else {}
            out = Message.object({**base, field: value})
        elif kind == "template":
            template = config_str(ctx, "template", "${value}")
            text = data if msg["type"] == "String" else _compact(data)
            out = Message.string(template.replace("${value}", text))
        ctx.done({"output": out})


_JS = [
    (re.compile(r"===?"), "=="),
    (re.compile(r"!=="), "!="),
    (re.compile(r"&&"), " and "),
    (re.compile(r"\|\|"), " or "),
    (re.compile(r"!(?!=)"), " not "),
    (re.compile(r"\b(?:item|data)\b(?=\s*[.\[])"), "$"),
    (re.compile(r"\b(?:item|data)\b"), "$"),
]
_TEMPLATE = re.compile(
    r"\$\{\s*input\.get\(\s*['\"]([A-Za-z0-9_\-]+)['\"]\s*\)"
    r"((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)\s*\}"
)


class DataOperations(LibraryActor):
    """Runs Zeal data-operation sets over the packet.

    Ports: in ``data`` (any) → out ``output`` (the result of each set, as a message of its
    JSON kind; the packet unchanged when no sets are configured), ``error`` (Error, when an
    expression fails; the tick fails too). Config: ``dataOperations`` (list of ``{"operations":
    [op, …]}``); each op ``{"type": …, "enabled": true}`` is one of ``map`` (``mapping``:
    ``[{"sourceField", "targetField", "transform"?}]``, for each item of an Array),
    ``filter`` (``filterExpression``), ``sort`` (``sortField``, ``sortDirection`` asc|desc),
    ``transform`` (``transformExpression``, on the whole value), ``group``
    (``groupByField``: an Object of Arrays keyed by the value), ``aggregate``
    (``aggregateField``, ``aggregateFunction`` sum|avg|count|min|max|first|last: ``{fn:
    n}``). Expressions are in the safe expression language with ``item``/``data``/``$`` the
    item (or the whole value); ``${input.get('data').data.field}`` is replaced by that
    field's JSON.
    """

    component = "tpl_data_operations"
    inports = ["data"]
    outports = ["output", "error"]
    outport_types = {"error": "Error"}

    def run(self, ctx: ActorContext) -> None:
        sets = ctx.config.get("dataOperations")
        msg = ctx.inputs["data"]
        if sets is None:
            ctx.done({"output": msg})
            return
        if not isinstance(sets, list):
            raise ActorError(f"config 'dataOperations' must be a list, got {sets!r}")
        for s, op_set in enumerate(sets):
            ops = op_set.get("operations") if isinstance(op_set, Mapping) else None
            if not isinstance(ops, list):
                raise ActorError(
                    f"config 'dataOperations'[{s}].operations must be a list, got {ops!r}"
                )
            value = payload(msg)
            for o, op in enumerate(ops):
                where = f"'dataOperations'[{s}].operations[{o}]"
                if not isinstance(op, Mapping):
                    raise ActorError(f"config {where} must be an object, got {op!r}")
                if op.get("enabled", True) is False:
                    continue
                try:
                    value = self._apply(ctx, op, value, where)
                except ExpressionError as exc:
                    raise reject(ctx, f"config {where}: {exc}") from None
            ctx.send({"output": value_message(value)})
        ctx.done()

    @staticmethod
    def _expr(ctx: ActorContext, op: Mapping[str, Any], key: str, where: str) -> Expression | None:
        source = op.get(key)
        if source is None or source == "":
            return None
        if not isinstance(source, str):
            raise ActorError(f"config {where}.{key} must be a string, got {source!r}")

        def port_value(m: re.Match[str]) -> str:
            port_msg = ctx.inputs.get(m[1])
            found = (
                get_path(payload(port_msg), parse_path(m[2].removeprefix(".data").lstrip(".")))
                if port_msg is not None and m[2].startswith(".data")
                else None
            )
            return _compact(found)

        text = _TEMPLATE.sub(port_value, source)
        for rx, repl in _JS:
            text = rx.sub(repl, text)
        try:
            return Expression(text)
        except ExpressionError as exc:
            raise ActorError(f"config {where}.{key}: {exc} (in {source!r})") from None

    def _apply(self, ctx: ActorContext, op: Mapping[str, Any], value: Any, where: str) -> Any:
        kind = op.get("type", "transform")
        if kind == "transform":
            expr = self._expr(ctx, op, "transformExpression", where)
            return value if expr is None else expr.evaluate(value)
        if kind not in ("map", "filter", "sort", "group", "aggregate"):
            raise ActorError(
                f"config {where}.type must be one of map, filter, sort, "
                f"transform, group, aggregate; got {kind!r}"
            )
        if not isinstance(value, list):
            return value
        if kind == "map":
            return self._map(ctx, op, value, where)
        if kind == "filter":
            expr = self._expr(ctx, op, "filterExpression", where)
            return value if expr is None else [item for item in value if expr.test(item)]
        if kind == "sort":
            expr = self._expr(ctx, op, "sortField", where)
            if expr is None:
                return value
            direction = op.get("sortDirection", "asc")
            if direction not in ("asc", "desc"):
                raise ActorError(
                    f"config {where}.sortDirection must be 'asc' or 'desc', got {direction!r}"
                )
            keys = [expr.evaluate(item) for item in value]
            numbers = [k for k in keys if isinstance(k, (int, float)) and not isinstance(k, bool)]
            strings = [k for k in keys if isinstance(k, str)]
            if len(numbers) != len(keys) and len(strings) != len(keys):
                return value  # mixed keys compare equal, as offbit_reflow's stable sort
            order = sorted(range(len(value)), key=lambda i: keys[i], reverse=direction == "desc")
            return [value[i] for i in order]
        if kind == "group":
            expr = self._expr(ctx, op, "groupByField", where)
            if expr is None:
                return value
            groups: dict[str, list[Any]] = {}
            for item in value:
                k = expr.evaluate(item)
                name = (
                    k
                    if isinstance(k, str)
                    else str(k).lower()
                    if isinstance(k, bool)
                    else _compact(k)
                    if isinstance(k, (int, float))
                    else "undefined"
                )
                groups.setdefault(name, []).append(item)
            return groups
        return self._aggregate(ctx, op, value, where)

    def _map(
        self, ctx: ActorContext, op: Mapping[str, Any], items: list[Any], where: str
    ) -> list[Any]:
        mappings = op.get("mapping")
        if mappings is None:
            return items
        if not isinstance(mappings, list):
            raise ActorError(f"config {where}.mapping must be a list, got {mappings!r}")
        out = []
        for item in items:
            item = dict(item) if isinstance(item, dict) else item
            for m, mapping in enumerate(mappings):
                at = f"{where}.mapping[{m}]"
                if not isinstance(mapping, Mapping):
                    raise ActorError(f"config {at} must be an object, got {mapping!r}")
                source, target = mapping.get("sourceField", ""), mapping.get("targetField", "")
                if not source or not target or not isinstance(item, dict):
                    continue
                expr = self._expr(ctx, mapping, "transform", at) or self._expr(
                    ctx,
                    {
                        "sourceField": source
                        if source.startswith(("$", "item", "data"))
                        else f"$.{source}"
                    },
                    "sourceField",
                    at,
                )
                assert expr is not None
                item[str(target)] = expr.evaluate(item)
            out.append(item)
        return out

    def _aggregate(
        self, ctx: ActorContext, op: Mapping[str, Any], items: list[Any], where: str
    ) -> Any:
        expr = self._expr(ctx, op, "aggregateField", where)
        if expr is None:
            return {"count": len(items)}
        fn = op.get("aggregateFunction", "sum")
        fns = ("sum", "avg", "count", "min", "max", "first", "last")
        if fn not in fns:
            raise ActorError(
                f"config {where}.aggregateFunction must be one of {', '.join(fns)}, got {fn!r}"
            )
        values = []
        for item in items:
            v = expr.evaluate(item)
            values.append(
                float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0
            )
        result = {
            "sum": lambda: sum(values),
            "avg": lambda: sum(values) / len(values) if values else 0.0,
            "count": lambda: float(len(values)),
            "min": lambda: min(values) if values else None,
            "max": lambda: max(values) if values else None,
            "first": lambda: values[0] if values else 0.0,
            "last": lambda: values[-1] if values else 0.0,
        }[fn]()
        return {fn: result}


_GENERATORS = ("range", "linspace", "repeat", "index", "grid")


def _expand(template: Any, i: int, count: int) -> Any:
    t = i / (count - 1) if count > 1 else 0.0
    if isinstance(template, str):
        if template == "$i":
            return i
        if template == "$t":
            return t
        return template.replace("$i", str(i)).replace("$t", f"{t:.6f}")
    if isinstance(template, list):
        return [_expand(v, i, count) for v in template]
    if isinstance(template, dict):
        return {k.replace("$i", str(i)): _expand(v, i, count) for k, v in template.items()}
    return template


class _Params:
    """Config with an Object on ``params`` merged over it; numbers checked by key."""

    def __init__(self, ctx: ActorContext) -> None:
        self.values = dict(ctx.config)
        extra = ctx.inputs.get("params")
        if extra is not None and extra["type"] == "Object":
            self.values.update(extra["data"])

    def number(self, key: str, default: float) -> float:
        v = self.values.get(key, default)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            raise ActorError(f"config {key!r} must be a number, got {v!r}")
        return float(v)

    def count(self, key: str, default: int) -> int:
        v = self.values.get(key, default)
        if v is None:
            return default
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _MAX_ITEMS:
            raise ActorError(f"config {key!r} must be an integer from 0 to {_MAX_ITEMS}, got {v!r}")
        return v


class Generator(LibraryActor):
    """Generates a sequence from its config when triggered.

    Ports: in ``trigger`` (any), ``params`` (Object merged over the config, then generates)
    → out ``output`` (Array of the items), ``metadata`` (Object ``{type, count}``). Config:
    ``type`` (``range`` default: ``start`` (0) up to ``end`` (10) by ``step`` (1);
    ``linspace``: ``count`` (10) numbers from ``start`` to ``end`` (1); ``repeat``:
    ``value`` ``count`` (1) times; ``index``: ``count`` (1) copies of ``template`` (default
    ``{"index": 0}``) with ``"$i"`` the index and ``"$t"`` its fraction; ``grid``: ``width``
    * ``height`` * ``depth`` (4, 4, 1) points ``{x, y[, z], ix, iy[, iz]}`` ``spacing``
    (1.0) apart, ``center`` (true) around 0). At most 1 000 000 items.
    """

    component = "tpl_generator"
    inports = ["trigger", "params"]
    outports = ["output", "metadata"]
    outport_types = {"output": "Array", "metadata": "Object"}

    def run(self, ctx: ActorContext) -> None:
        p = _Params(ctx)
        kind = p.values.get("type", "range")
        if kind not in _GENERATORS:
            raise ActorError(f"config 'type' must be one of {', '.join(_GENERATORS)}, got {kind!r}")
        items = getattr(self, f"_{kind}")(p)
        ctx.done(
            {
                "output": Message.array(items),
                "metadata": Message.object({"type": kind, "count": len(items)}),
            }
        )

    @staticmethod
    def _range(p: _Params) -> list[Any]:
        start, end, step = p.number("start", 0.0), p.number("end", 10.0), p.number("step", 1.0)
        if step == 0 or (end - start) / step < 0:
            return []
        if (end - start) / step > _MAX_ITEMS:
            raise ActorError(f"config 'start', 'end', 'step' give more than {_MAX_ITEMS} items")
        items, v = [], start
        while (v < end) if step > 0 else (v > end):
            items.append(v)
            v += step
        return items

    @staticmethod
    def _linspace(p: _Params) -> list[Any]:
        start, end, count = p.number("start", 0.0), p.number("end", 1.0), p.count("count", 10)
        if count <= 1:
            return [start] * count
        return [start + i / (count - 1) * (end - start) for i in range(count)]

    @staticmethod
    def _repeat(p: _Params) -> list[Any]:
        return [p.values.get("value")] * p.count("count", 1)

    @staticmethod
    def _index(p: _Params) -> list[Any]:
        count = p.count("count", 1)
        template = p.values.get("template", {"index": 0})
        return [_expand(template, i, count) for i in range(count)]

    @staticmethod
    def _grid(p: _Params) -> list[Any]:
        w, h, d = p.count("width", 4), p.count("height", 4), p.count("depth", 1)
        if w * h * d > _MAX_ITEMS:
            raise ActorError(
                f"config 'width' * 'height' * 'depth' is {w * h * d} points (limit {_MAX_ITEMS})"
            )
        spacing = p.number("spacing", 1.0)
        center = p.values.get("center", True)
        if not isinstance(center, bool):
            raise ActorError(f"config 'center' must be true or false, got {center!r}")
        off = [max(n - 1, 0) * spacing * 0.5 if center else 0.0 for n in (w, h, d)]
        items = []
        for z in range(d):
            for y in range(h):
                for x in range(w):
                    point: dict[str, Any] = {"x": x * spacing - off[0], "y": y * spacing - off[1]}
                    if d > 1:
                        point["z"] = z * spacing - off[2]
                    point.update({"ix": x, "iy": y})
                    if d > 1:
                        point["iz"] = z
                    items.append(point)
        return items


class JsonParser(LibraryActor):
    """Parses JSON text, optionally taking one value out of it.

    Ports: in ``input`` (String, or Bytes in UTF-8) → out ``output`` (the value: an Object
    for a JSON object, else a message of its kind; an empty Optional when ``path`` finds
    nothing), ``error`` (Error, for input that is not JSON text; the tick fails too). Config:
    ``path`` (string: ``a.b[0].c``). Nesting deeper than 200 levels is refused.
    """

    component = "tpl_json_parser"
    inports = ["input"]
    outports = ["output", "error"]
    outport_types = {"error": "Error"}

    def run(self, ctx: ActorContext) -> None:
        path = ctx.config.get("path")
        if path is not None and not isinstance(path, str):
            raise ActorError(f"config 'path' must be a string, got {path!r}")
        try:
            parts = parse_path(path) if path else []
        except ExpressionError as exc:
            raise ActorError(f"config 'path': {exc}") from None
        msg = ctx.inputs["input"]
        if msg["type"] == "Bytes":
            text = bytes(msg["data"]).decode("utf-8", "replace")
        elif msg["type"] == "String":
            text = msg["data"]
        else:
            raise reject(ctx, f"in-port 'input': expected a String or Bytes, got {msg['type']}")
        try:
            value = loads(text)
        except ValueError as exc:
            raise reject(ctx, f"in-port 'input': JSON parse error: {exc}") from None
        ctx.done({"output": _data_message(get_path(value, parts) if parts else value)})


class RegexMatcher(LibraryActor):
    """Matches a regular expression (Python :mod:`re` syntax) against text.

    Ports: in ``input`` (String) → out ``matched`` (Boolean), ``matches`` (Array, when it
    matched: the first match's text, or with ``global`` every match as ``{"index", "match"}``),
    ``groups`` (Object of the first match's named groups, when it matched), ``error``
    (Error, for input that is not a String or a pattern that is not valid; the tick fails
    too). Config: ``pattern`` (string, default ``".*"``), ``global`` (bool, default false),
    ``max_length`` (int, default 1 MiB: longer input is refused).
    """

    component = "tpl_regex_matcher"
    inports = ["input"]
    outports = ["matched", "matches", "groups", "error"]
    outport_types = {"matched": "Boolean", "matches": "Array", "groups": "Object", "error": "Error"}

    def run(self, ctx: ActorContext) -> None:
        source = config_str(ctx, "pattern", ".*")
        every = config_bool(ctx, "global", False)
        limit = config_int(ctx, "max_length", 1 << 20, minimum=0)
        try:
            rx = re.compile(source)
        except re.error as exc:
            raise reject(ctx, f"config 'pattern': invalid regular expression: {exc}") from None
        msg = ctx.inputs["input"]
        if msg["type"] != "String":
            raise reject(ctx, f"in-port 'input': expected a String, got {msg['type']}")
        text = msg["data"]
        if len(text) > limit:
            raise reject(
                ctx,
                f"in-port 'input': text of {len(text)} characters is longer "
                f"than config 'max_length' ({limit})",
            )
        first = rx.search(text)
        if first is None:
            ctx.done({"matched": Message.boolean(False)})
            return
        found = (
            [{"index": m.start(), "match": m[0]} for m in rx.finditer(text)]
            if every
            else [first[0]]
        )
        ctx.done(
            {
                "matched": Message.boolean(True),
                "matches": Message.array(found),
                "groups": Message.object(first.groupdict()),
            }
        )


SDK_DATA_TEMPLATES: dict[str, type[LibraryActor]] = with_sdk_config(
    {cls.component: cls for cls in (DataEmit, DataOperations, DataTransformer, Generator)}
)
SDK_TEXT_TEMPLATES: dict[str, type[LibraryActor]] = with_sdk_config(
    {cls.component: cls for cls in (JsonParser, RegexMatcher)}
)
