"""Flow templates of the offbit-reflow standard catalog (``tpl_passthrough``, ``tpl_switch``,
``tpl_rules_engine``, ``tpl_fsm`` …), with its ids, ports and config keys.

They behave as offbit_reflow 0.2.9's do, except where that is evidently broken (listed in
README "Differences from offbit_reflow"): ``tpl_if_branch`` sends on both its declared
``true_output``/``false_output`` and the ``true-out``/``false-out`` the SDK writes;
``tpl_loop`` ends with ``completed``; comparisons look at the payload, not the message's tagged
form; an unknown operator, condition or guard is a config error instead of a silent false.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import LibraryActor, config_int, config_number, config_str
from ._sdk_config import with_sdk_config
from ._sdk_fsm import Fsm
from ._sdk_support import (
    json_equal,
    message_json,
    payload,
    reject,
    rule_groups_match,
    value_message,
)

__all__ = ["SDK_FLOW_TEMPLATES"]


def _array(ctx: ActorContext, port: str) -> list[Any]:
    msg = ctx.inputs.get(port)
    if msg is None or msg["type"] != "Array":
        got = "no packet" if msg is None else msg["type"]
        raise reject(ctx, f"in-port {port!r}: expected an Array, got {got}")
    return list(msg["data"])


def _config_object(ctx: ActorContext, key: str, default: Any = None) -> Any:
    value = ctx.config.get(key, default)
    if value is not None and not isinstance(value, Mapping):
        raise ActorError(f"config {key!r} must be an object, got {value!r}")
    return value


class Passthrough(LibraryActor):
    """Passes every packet through unchanged (a tap point for debugging and observation).

    Ports: in ``input`` (any) → out ``output`` (the same message). Config: none.
    """

    component = "tpl_passthrough"
    inports = ["input"]
    outports = ["output"]

    def run(self, ctx: ActorContext) -> None:
        ctx.done({"output": ctx.inputs["input"]})


class Collect(LibraryActor):
    """Collects ``count`` packets into an Array, then starts over.

    Ports: in ``input`` (any) → out ``output`` (Array of the collected messages in their
    tagged form ``{"type": …, "data": …}``, as offbit_reflow sends them), ``count``
    (Integer, how many). Config: ``count`` (int ≥ 0, default 10; 0 and 1 send every packet).
    """

    component = "tpl_collect"
    inports = ["input"]
    outports = ["output", "count"]
    outport_types = {"output": "Array", "count": "Integer"}

    def run(self, ctx: ActorContext) -> None:
        target = config_int(ctx, "count", 10, minimum=0, maximum=10_000_000)
        buffer = [*ctx.pool_get("collect", "buffer", []), message_json(ctx.inputs["input"])]
        if len(buffer) >= target:
            ctx.pool_upsert("collect", "buffer", [])
            ctx.done({"output": Message.array(buffer), "count": Message.integer(len(buffer))})
            return
        ctx.pool_upsert("collect", "buffer", buffer)
        ctx.done()


def _truthy(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, str):
        return v != ""
    return True


def _as_float(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return 0.0
    return 0.0


_FILTER_CONDITIONS = ("truthy", "not_null", "equals", "greater_than", "less_than", "contains")


class Filter(LibraryActor):
    """Keeps the items of an Array that satisfy a condition; the others go to ``rejected``.

    Ports: in ``input`` (Array) → out ``output`` (Array, kept items), ``rejected`` (Array),
    ``error`` (Error, when the input is not an Array). Config: ``condition`` (``truthy``
    default, ``not_null``, ``equals``, ``greater_than``, ``less_than``, ``contains``),
    ``field`` (string, default ``""``: test the item itself; else the item's field, or the
    item when it has no such field), ``value`` (what ``equals``/``greater_than``/
    ``less_than``/``contains`` compare with).
    """

    component = "tpl_filter"
    inports = ["input"]
    outports = ["output", "rejected", "error"]
    outport_types = {"output": "Array", "rejected": "Array", "error": "Error"}

    def run(self, ctx: ActorContext) -> None:
        condition = config_str(ctx, "condition", "truthy")
        if condition not in _FILTER_CONDITIONS:
            raise ActorError(
                f"config 'condition' must be one of "
                f"{', '.join(_FILTER_CONDITIONS)}, got {condition!r}"
            )
        field = config_str(ctx, "field", "")
        expected = ctx.config.get("value")
        kept: list[Any] = []
        dropped: list[Any] = []
        for item in _array(ctx, "input"):
            v = item.get(field, item) if field and isinstance(item, dict) else item
            if condition == "not_null":
                keep = v is not None
            elif condition == "equals":
                keep = "value" in ctx.config and json_equal(v, expected)
            elif condition == "greater_than":
                keep = _as_float(v) > _as_float(expected)
            elif condition == "less_than":
                keep = _as_float(v) < _as_float(expected)
            elif condition == "contains":
                keep = isinstance(v, str) and isinstance(expected, str) and expected in v
            else:
                keep = _truthy(v)
            (kept if keep else dropped).append(item)
        ctx.done({"output": Message.array(kept), "rejected": Message.array(dropped)})


def _json_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), ensure_ascii=False)


class Map(LibraryActor):
    """Applies one operation to every item of an Array.

    Ports: in ``input`` (Array) → out ``output`` (Array), ``error`` (Error, when the input
    is not an Array or an item cannot be converted). Config: ``operation`` (``identity``
    default; ``to_string``: strings as they are, other values as compact JSON text;
    ``to_number``: numbers and numeric strings as Float; ``extract_field``: the item's
    ``field``, null when absent), ``field`` (string, default ``""``).
    """

    component = "tpl_map"
    inports = ["input"]
    outports = ["output", "error"]
    outport_types = {"output": "Array", "error": "Error"}

    def run(self, ctx: ActorContext) -> None:
        operation = config_str(ctx, "operation", "identity")
        ops = ("identity", "to_string", "to_number", "extract_field")
        if operation not in ops:
            raise ActorError(
                f"config 'operation' must be one of {', '.join(ops)}, got {operation!r}"
            )
        field = config_str(ctx, "field", "")
        out: list[Any] = []
        for i, item in enumerate(_array(ctx, "input")):
            if operation == "to_string":
                out.append(_json_text(item))
            elif operation == "to_number":
                if isinstance(item, (int, float)) and not isinstance(item, bool):
                    out.append(float(item))
                    continue
                try:
                    out.append(float(item.strip()) if isinstance(item, str) else None)
                except ValueError:
                    out.append(None)
                if out[-1] is None:
                    raise reject(
                        ctx, f"in-port 'input': item [{i}] is not a number: {_json_text(item)[:60]}"
                    )
            elif operation == "extract_field":
                out.append(item.get(field) if isinstance(item, dict) else None)
            else:
                out.append(item)
        ctx.done({"output": Message.array(out)})


_REDUCE_OPS = ("sum", "product", "min", "max", "count", "concat", "first", "last")


class Reduce(LibraryActor):
    """Reduces an Array to one value.

    Ports: in ``input`` (Array) → out ``output`` (Float for ``sum``/``product``/``min``/
    ``max`` over the numeric items; Integer for ``count``; String for ``concat`` of the
    string items; the item itself for ``first``/``last``; Float 0.0 for an empty Array),
    ``error`` (Error, when the input is not an Array, or ``min``/``max`` find no number).
    Config: ``operation`` (one of ``sum`` default, ``product``, ``min``, ``max``, ``count``,
    ``concat``, ``first``, ``last``).
    """

    component = "tpl_reduce"
    inports = ["input"]
    outports = ["output", "error"]
    outport_types = {"error": "Error"}

    def run(self, ctx: ActorContext) -> None:
        op = config_str(ctx, "operation", "sum")
        if op not in _REDUCE_OPS:
            raise ActorError(
                f"config 'operation' must be one of {', '.join(_REDUCE_OPS)}, got {op!r}"
            )
        items = _array(ctx, "input")
        if not items:
            ctx.done({"output": Message.float(0.0)})
            return
        numbers = [
            float(v) for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        if op == "sum":
            result = Message.float(float(sum(numbers)))
        elif op == "product":
            p = 1.0
            for v in numbers:
                p *= v
            result = Message.float(p)
        elif op in ("min", "max"):
            if not numbers:
                raise reject(ctx, f"in-port 'input': no numbers to take the {op} of")
            result = Message.float(min(numbers) if op == "min" else max(numbers))
        elif op == "count":
            result = Message.integer(len(items))
        elif op == "concat":
            result = Message.string("".join(v for v in items if isinstance(v, str)))
        else:
            result = value_message(items[0] if op == "first" else items[-1])
        ctx.done({"output": result})


class Merge(LibraryActor):
    """Combines what arrives on ``a``..``d`` into one Object or Array, on every packet.

    Ports: in ``a``, ``b``, ``c``, ``d`` (any) → out ``output`` (Object ``{port: message}``
    or Array ``[message, …]`` of the messages of this tick in their tagged form, as
    offbit_reflow sends them). Config: ``mode`` (``object`` default, or ``array``).
    """

    component = "tpl_merge"
    inports = ["a", "b", "c", "d"]
    outports = ["output"]

    def run(self, ctx: ActorContext) -> None:
        mode = config_str(ctx, "mode", "object")
        if mode not in ("object", "array"):
            raise ActorError(f"config 'mode' must be 'object' or 'array', got {mode!r}")
        present = [(p, message_json(ctx.inputs[p])) for p in self.inports if p in ctx.inputs]
        if mode == "array":
            ctx.done({"output": Message.array([v for _, v in present])})
        else:
            ctx.done({"output": Message.object(dict(present))})


class Split(LibraryActor):
    """Splits an Array into its first item and the rest.

    Ports: in ``input`` (Array) → out ``head`` (the first item, as a message of its JSON
    kind; nothing for an empty Array), ``tail`` (Array), ``count`` (Integer, the input's
    length), ``error`` (Error, when the input is not an Array). Config: none.
    """

    component = "tpl_split"
    inports = ["input"]
    outports = ["head", "tail", "count", "error"]
    outport_types = {"tail": "Array", "count": "Integer", "error": "Error"}

    def run(self, ctx: ActorContext) -> None:
        items = _array(ctx, "input")
        out = {"tail": Message.array(items[1:]), "count": Message.integer(len(items))}
        if items:
            out = {"head": value_message(items[0]), **out}
        ctx.done(out)


class Gate(LibraryActor):
    """Passes or blocks a packet by a control signal; waits for both in-ports.

    Ports: in ``input`` (any), ``control`` (Boolean; an Integer or Float is open when not
    0; any other kind counts as open) → out ``output`` (passed), ``blocked`` (held back).
    Config: ``invert`` (bool, default false: open means block).
    """

    component = "tpl_gate"
    inports = ["input", "control"]
    outports = ["output", "blocked"]
    await_all_inports = True

    def run(self, ctx: ActorContext) -> None:
        invert = ctx.config.get("invert", False)
        if not isinstance(invert, bool):
            raise ActorError(f"config 'invert' must be true or false, got {invert!r}")
        control = ctx.inputs.get("control")
        is_open = True
        if control is not None and control["type"] in ("Boolean", "Integer", "Float"):
            is_open = bool(control["data"])
        msg = ctx.inputs.get("input", Message.flow())
        ctx.done({("output" if is_open != invert else "blocked"): msg})


_CONDITIONS = ("equals", "greater_than", "less_than", "contains", "is_empty", "truthy")


def _flat_condition(ctx: ActorContext, data: Any, kind: str) -> bool:
    config = ctx.config
    ctype = config.get("condition_type", "equals")
    if ctype not in _CONDITIONS:
        raise ActorError(
            f"config 'condition_type' must be one of {', '.join(_CONDITIONS)}, got {ctype!r}"
        )
    has_value = "condition_value" in config or "value" in config
    expected = config.get("condition_value", config.get("value"))
    field = config.get("condition_field", config.get("field"))
    if field is not None and not isinstance(field, str):
        raise ActorError(f"config 'condition_field' must be a string, got {field!r}")
    if ctype == "equals":
        if field is None:
            return has_value and json_equal(data, expected)
        return (
            isinstance(data, dict)
            and field in data
            and has_value
            and json_equal(data[field], expected)
        )
    if ctype in ("greater_than", "less_than"):
        if (
            kind not in ("Integer", "Float")
            or isinstance(expected, bool)
            or not isinstance(expected, (int, float))
        ):
            return False
        return data > expected if ctype == "greater_than" else data < expected
    if ctype == "contains":
        if kind == "String":
            return isinstance(expected, str) and expected in data
        return kind == "Array" and any(json_equal(x, expected) for x in data)
    if ctype == "is_empty":
        return (kind in ("String", "Array") and not data) or (kind == "Optional" and data is None)
    return kind in ("Boolean", "Integer", "Float", "String", "Array", "Optional") and (
        data is not None and _truthy(data) if kind != "Array" else bool(data)
    )


class IfBranch(LibraryActor):
    """Routes each packet to the true or the false side of a condition.

    Ports: in ``data`` (any) → out ``true_output``, ``false_output`` (the declared names) and
    ``true-out``, ``false-out`` (the names offbit_reflow writes); each packet goes to both
    names of its side. Config: either ``decisionRules`` (a Zeal rule set: ``{"type": "IF"
    (every group) | "OR" (any group), "groups": [{"connector": "AND"|"OR", "rules":
    [{"field", "operator", "value"}]}]}``, operators as in ``tpl_rules_engine``), or flat:
    ``condition_type`` (``equals`` default, ``greater_than``, ``less_than``, ``contains``,
    ``is_empty``, ``truthy``), ``condition_value`` (or ``value``), ``condition_field`` (or
    ``field``: compare that field of an Object payload; else the payload itself).
    """

    component = "tpl_if_branch"
    inports = ["data"]
    outports = ["true_output", "false_output", "true-out", "false-out"]

    def run(self, ctx: ActorContext) -> None:
        msg = ctx.inputs["data"]
        data = payload(msg)
        rules = _config_object(ctx, "decisionRules")
        if rules is not None and "groups" in rules:
            met = rule_groups_match(rules, data, "'decisionRules'")
        else:
            met = _flat_condition(ctx, data, msg["type"])
        side = "true" if met else "false"
        ctx.done({f"{side}_output": msg, f"{side}-out": msg})


class Switch(LibraryActor):
    """Routes each packet to the first case whose value it equals.

    Ports: in ``data`` (any) → out ``case1``, ``case2``, ``case3``, ``case4`` (matched that
    case), ``default`` (no case matched). Config: ``switch_field`` (or ``field``: compare that
    field of an Object payload; else the payload itself), ``case1_value``, ``case2_value``,
    ``case3_value``, ``case4_value`` (JSON values; 1 equals 1.0, true never equals 1).
    """

    component = "tpl_switch"
    inports = ["data"]
    outports = ["case1", "case2", "case3", "case4", "default"]

    def run(self, ctx: ActorContext) -> None:
        msg = ctx.inputs["data"]
        field = ctx.config.get("switch_field", ctx.config.get("field"))
        if field is not None and not isinstance(field, str):
            raise ActorError(f"config 'switch_field' must be a string, got {field!r}")
        data = payload(msg)
        present = True
        if field is not None:
            present = msg["type"] == "Object" and field in data
            data = data.get(field) if present else None
        port = "default"
        if present:
            for i in range(1, 5):
                key = f"case{i}_value"
                if key in ctx.config and json_equal(ctx.config[key], data):
                    port = f"case{i}"
                    break
        ctx.done({port: msg})


class RulesEngine(LibraryActor):
    """Tests each packet against a Zeal rule set; a match is enriched and sent on
    ``matched``.

    Ports: in ``data`` (any) → out ``matched`` (the payload with ``actions.setProperty``
    applied), ``unmatched`` (the packet unchanged), ``output`` (the packet unchanged, when
    no rule set is configured). Config: ``rules`` (or ``propertyRules``): ``{"type": "IF"
    (every group must match, default) | "OR", "groups": [{"connector": "AND" (default) |
    "OR", "rules": [{"field", "operator", "value"}]}], "actions": {"setProperty": [{"key",
    "value"}], "setOutput": [{"port", "value"}]}}``. Operators: ``is``, ``is_not``,
    ``contains``, ``not_contains``, ``greater_than``, ``less_than``, ``greater_equal``,
    ``less_equal``, ``empty``, ``not_empty``, ``between`` ([min, max]), ``in``, ``not_in``.
    ``setOutput`` may name only this template's out-ports.
    """

    component = "tpl_rules_engine"
    inports = ["data"]
    outports = ["output", "matched", "unmatched"]

    def run(self, ctx: ActorContext) -> None:
        msg = ctx.inputs["data"]
        key = "rules" if ctx.config.get("rules") is not None else "propertyRules"
        rules = _config_object(ctx, key)
        if rules is None:
            ctx.done({"output": msg})
            return
        data = payload(msg)
        if not rule_groups_match(rules, data, repr(key)):
            ctx.done({"unmatched": msg})
            return
        actions = rules.get("actions") or {}
        if not isinstance(actions, Mapping):
            raise ActorError(f"config {key!r}.actions must be an object, got {actions!r}")
        out: dict[str, Message] = {}
        result = dict(data) if isinstance(data, dict) else data
        for i, prop in enumerate(actions.get("setProperty") or []):
            if not isinstance(prop, Mapping) or not isinstance(prop.get("key"), str):
                raise ActorError(
                    f"config {key!r}.actions.setProperty[{i}] must be "
                    f'{{"key": <string>, "value": …}}, got {prop!r}'
                )
            if isinstance(result, dict) and "value" in prop:
                result[prop["key"]] = prop["value"]
        for i, target in enumerate(actions.get("setOutput") or []):
            port = target.get("port") if isinstance(target, Mapping) else None
            if port not in self.outports:
                raise ActorError(
                    f"config {key!r}.actions.setOutput[{i}].port: {port!r} is "
                    f"not an out-port of tpl_rules_engine (output, matched, "
                    f"unmatched)"
                )
            out[port] = value_message(target.get("value"))
        out["matched"] = value_message(result)
        ctx.done(out)


class Loop(LibraryActor):
    """Sends one packet per item of an Array, then ``completed``.

    Ports: in ``collection`` (Array), ``initial_value`` (accepted, unused) → out ``item``
    (Object ``{"value": item, "index": i}``, one per item, in order), ``completed``
    (Boolean true, after the last item). Config: none.
    """

    component = "tpl_loop"
    inports = ["collection", "initial_value"]
    outports = ["item", "completed"]
    outport_types = {"item": "Object", "completed": "Boolean"}

    def run(self, ctx: ActorContext) -> None:
        if "collection" not in ctx.inputs:
            ctx.done()
            return
        for i, item in enumerate(_array(ctx, "collection")):
            ctx.send({"item": Message.object({"value": item, "index": i})})
        ctx.done({"completed": Message.boolean(True)})


class Signal(LibraryActor):
    """Turns a trigger into a signal ``{"id": event, "data": …}``.

    Ports: in ``trigger`` (any; an Object payload is merged over config ``data``) → out
    ``signal`` (Object). Config: ``event`` (string, default ``"signal"``), ``data`` (default
    ``{}``).
    """

    component = "tpl_signal"
    inports = ["trigger"]
    outports = ["signal"]
    outport_types = {"signal": "Object"}

    def run(self, ctx: ActorContext) -> None:
        event = config_str(ctx, "event", "signal")
        data = ctx.config.get("data", {})
        trigger = ctx.inputs.get("trigger")
        if isinstance(data, dict) and trigger is not None and trigger["type"] == "Object":
            data = {**data, **trigger["data"]}
        ctx.done({"signal": Message.object({"id": event, "data": data})})


class Subscriber(LibraryActor):
    """Passes on the signals with a given id.

    Ports: in ``signal`` (Object ``{"id", "data"}``, or a String id) → out ``data`` (the
    signal's data, when not null), ``trigger`` (Flow, for every matching signal). Config:
    ``event`` (string, default ``"*"``: every signal).
    """

    component = "tpl_subscriber"
    inports = ["signal"]
    outports = ["data", "trigger"]
    outport_types = {"trigger": "Flow"}

    def run(self, ctx: ActorContext) -> None:
        wanted = config_str(ctx, "event", "*")
        msg = ctx.inputs["signal"]
        if msg["type"] == "Object":
            sid, data = msg["data"].get("id", ""), msg["data"].get("data")
        elif msg["type"] == "String":
            sid, data = msg["data"], None
        else:
            ctx.done()
            return
        if wanted != "*" and sid != wanted:
            ctx.done()
            return
        out = {"trigger": Message.flow()}
        if data is not None:
            out = {"data": value_message(data), **out}
        ctx.done(out)


class HitTest(LibraryActor):
    """Detects a point entering and leaving a rectangle, from timeline values.

    Ports: in ``values`` (Object of numbers such as ``{"s2_x": …, "s2_y": …}``; remembered
    from packet to packet) → out ``enter`` (String ``"HOVER"``), ``leave`` (String
    ``"LEAVE"``). The first packet only records the values. Config: ``source`` (prefix of the
    point, default ``"s2"``), ``target`` (prefix of the rectangle's centre, default ``"s0"``),
    ``target_width``, ``target_height`` (default 100), ``padding`` (default 8: extra margin
    before a point inside counts as leaving).
    """

    component = "tpl_hit_test"
    inports = ["values"]
    outports = ["enter", "leave"]
    outport_types = {"enter": "String", "leave": "String"}

    def run(self, ctx: ActorContext) -> None:
        source = config_str(ctx, "source", "s2")
        target = config_str(ctx, "target", "s0")
        width = config_number(ctx, "target_width", 100.0)
        height = config_number(ctx, "target_height", 100.0)
        padding = config_number(ctx, "padding", 8.0)
        msg = ctx.inputs.get("values")
        if msg is not None and msg["type"] == "Object":
            for k, v in msg["data"].items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    ctx.pool_upsert("_ht_vals", k, float(v))
        was_inside = ctx.pool_get("_ht", "inside")
        if was_inside is None:
            ctx.pool_upsert("_ht", "inside", False)
            ctx.done()
            return

        def val(prefix: str, axis: str) -> float:
            return float(ctx.pool_get("_ht_vals", f"{prefix}_{axis}", 0.0))

        extra = padding if was_inside else 0.0
        hw, hh = width / 2 + extra, height / 2 + extra
        sx, sy, tx, ty = val(source, "x"), val(source, "y"), val(target, "x"), val(target, "y")
        inside = tx - hw <= sx <= tx + hw and ty - hh <= sy <= ty + hh
        if inside == was_inside:
            ctx.done()
            return
        ctx.pool_upsert("_ht", "inside", inside)
        ctx.done(
            {"enter": Message.string("HOVER")} if inside else {"leave": Message.string("LEAVE")}
        )


SDK_FLOW_TEMPLATES: dict[str, type[LibraryActor]] = with_sdk_config(
    {
        cls.component: cls
        for cls in (
            Collect,
            Filter,
            Fsm,
            Gate,
            HitTest,
            IfBranch,
            Loop,
            Map,
            Merge,
            Passthrough,
            Reduce,
            RulesEngine,
            Signal,
            Split,
            Subscriber,
            Switch,
        )
    }
)
