"""What the offbit-reflow-compatible templates share: the SDK's JSON view of a message, its
rule operators (rules engine, branch, FSM guards), its number coercion, and the one way they
report bad input.

A template with an ``error`` out-port reports bad input twice: an Error message on ``error``
(what offbit_reflow sends there, so graphs wired to it keep working) and a failed tick whose
:class:`~reflow.ActorError` names the port or config key at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError

__all__ = [
    "RULE_OPERATORS",
    "evaluate_rule",
    "json_equal",
    "message_json",
    "payload",
    "precision",
    "reject",
    "rule_groups_match",
    "sdk_number",
    "value_message",
]


def message_json(msg: Message) -> Any:
    """The tagged JSON form offbit_reflow stores for a message: ``{"type": …, "data": …}``."""
    return msg.as_json() if isinstance(msg, Message) else Message.from_json(msg).as_json()


def payload(msg: Message) -> Any:
    """The payload of a message as plain JSON (an Any/Optional wrapping a message unwrapped;
    Bytes as a list of ints)."""
    kind = msg["type"]
    if kind in ("Flow", "Null"):
        return None
    data: Any = msg.get("data")
    if isinstance(data, Message):
        return payload(data)
    if kind == "Bytes":
        return list(data)
    if kind == "Stream":
        return data.locator()
    return data


def value_message(value: Any) -> Message:
    """A message of the natural kind for a JSON value; null becomes an empty Optional, as
    offbit_reflow sends it."""
    if value is None:
        return Message.optional(None)
    if isinstance(value, bool):
        return Message.boolean(value)
    if isinstance(value, int):
        return Message.integer(value)
    if isinstance(value, float):
        return Message.float(value)
    if isinstance(value, str):
        return Message.string(value)
    if isinstance(value, list):
        return Message.array(value)
    if isinstance(value, dict):
        return Message.object(value)
    raise ActorError(f"cannot send a {type(value).__name__} value as a message")


def reject(ctx: ActorContext, text: str, *, error_port: bool = True) -> ActorError:
    """Send ``text`` on ``error`` (when the template has one) and return the ActorError that
    fails the tick: ``raise reject(ctx, "in-port 'input': expected an Array, got String")``."""
    if error_port and "error" in getattr(ctx._node, "actor").outports:  # noqa: B009
        ctx.send({"error": Message.error(text)})
    return ActorError(text)


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: booleans never equal numbers, 1 equals 1.0, containers compare
    item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _contains(haystack: Any, needle: Any) -> bool | None:
    if isinstance(haystack, str) and isinstance(needle, str):
        return needle in haystack
    if isinstance(haystack, list):
        return any(json_equal(item, needle) for item in haystack)
    return None


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, (str, list, dict)) and not v)


def _ordered(op: str, a: Any, b: Any) -> bool:
    if not (_is_number(a) and _is_number(b)):
        return False
    return {
        "greater_than": a > b,
        "less_than": a < b,
        "greater_equal": a >= b,
        "less_equal": a <= b,
    }[op]


def _between(v: Any, bounds: Any) -> bool:
    return (
        _is_number(v)
        and isinstance(bounds, list)
        and len(bounds) == 2
        and all(_is_number(x) for x in bounds)
        and bounds[0] <= v <= bounds[1]
    )


#: Rule operators and their aliases (the FSM's guards also take gt/lt/gte/lte).
RULE_OPERATORS = {
    "is": "is",
    "is_not": "is_not",
    "contains": "contains",
    "not_contains": "not_contains",
    "greater_than": "greater_than",
    "gt": "greater_than",
    "less_than": "less_than",
    "lt": "less_than",
    "greater_equal": "greater_equal",
    "gte": "greater_equal",
    "less_equal": "less_equal",
    "lte": "less_equal",
    "empty": "empty",
    "not_empty": "not_empty",
    "between": "between",
    "in": "in",
    "not_in": "not_in",
}


def evaluate_rule(rule: Any, value: Any, where: str, *, present: bool = True) -> bool:
    """Whether ``value`` (the rule's field, or the whole payload) satisfies ``rule``
    (``{"field", "operator", "value"}``); ``where`` names the rule in errors. A missing field
    (``present`` false) satisfies only ``empty`` and ``not_contains``-style negations' opposite:
    it fails every rule but ``empty``."""
    if not isinstance(rule, Mapping):
        raise ActorError(
            f"config {where} must be an object like "
            f'{{"field": …, "operator": …, "value": …}}, got {rule!r}'
        )
    name = rule.get("operator", "is")
    op = RULE_OPERATORS.get(name) if isinstance(name, str) else None
    if op is None:
        raise ActorError(
            f"config {where}.operator: unknown operator {name!r}; expected one "
            f"of {', '.join(sorted(RULE_OPERATORS))}"
        )
    expected = rule.get("value")
    if not present:
        return op == "empty"
    if op == "is":
        return "value" in rule and json_equal(value, expected)
    if op == "is_not":
        return "value" not in rule or not json_equal(value, expected)
    if op in ("contains", "not_contains"):
        hit = _contains(value, expected)
        return bool(hit) if op == "contains" else not hit
    if op in ("in", "not_in"):
        inside = isinstance(expected, list) and any(json_equal(value, x) for x in expected)
        return inside if op == "in" else not (isinstance(expected, list) and inside)
    if op == "empty":
        return _empty(value)
    if op == "not_empty":
        return not _empty(value)
    if op == "between":
        return _between(value, expected)
    return _ordered(op, value, expected)


def _field(data: Any, rule: Any) -> tuple[bool, Any]:
    field = rule.get("field") if isinstance(rule, Mapping) else None
    if field is None:
        return True, data
    if isinstance(data, dict) and field in data:
        return True, data[field]
    return False, None


def rule_groups_match(
    spec: Mapping[str, Any], data: Any, key: str, default_type: str = "IF"
) -> bool:
    """Whether ``data`` (a payload) satisfies a Zeal rule set ``{"type": "IF"|"OR", "groups":
    [{"connector": "AND"|"OR", "rules": [...]}]}``: IF needs every group, OR any one."""
    kind = spec.get("type", default_type)
    if kind not in ("IF", "AND", "OR"):
        raise ActorError(f"config {key}.type must be 'IF' or 'OR', got {kind!r}")
    groups = spec.get("groups", [])
    if not isinstance(groups, list):
        raise ActorError(f"config {key}.groups must be a list, got {groups!r}")
    results = []
    for g, group in enumerate(groups):
        where = f"{key}.groups[{g}]"
        if not isinstance(group, Mapping):
            raise ActorError(f"config {where} must be an object, got {group!r}")
        connector = group.get("connector", "AND")
        if connector not in ("AND", "OR"):
            raise ActorError(f"config {where}.connector must be 'AND' or 'OR', got {connector!r}")
        rules = group.get("rules", [])
        if not isinstance(rules, list):
            raise ActorError(f"config {where}.rules must be a list, got {rules!r}")
        hits = []
        for r, rule in enumerate(rules):
            present, value = _field(data, rule)
            hits.append(evaluate_rule(rule, value, f"{where}.rules[{r}]", present=present))
        results.append(all(hits) if connector == "AND" else any(hits))
    return any(results) if kind == "OR" else all(results)


def sdk_number(ctx: ActorContext, port: str, *, required: bool = True) -> float:
    """The number on ``port`` as offbit_reflow reads it: Integer, Float or a numeric String;
    anything else fails the tick naming the port."""
    msg = ctx.inputs.get(port)
    if msg is None:
        if required:
            raise reject(ctx, f"in-port {port!r} has no packet")
        return 0.0
    data = payload(msg)
    if _is_number(data):
        return float(data)
    if isinstance(data, str):
        try:
            value = float(data.strip())
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return value
        raise reject(
            ctx, f"in-port {port!r}: expected a number, got the String {json.dumps(data[:40])}"
        )
    raise reject(
        ctx,
        f"in-port {port!r}: expected a number (Integer, Float or numeric "
        f"String), got {msg['type']}",
    )


def precision(ctx: ActorContext) -> int:
    value = ctx.config.get("precision", 10)
    if value is None:
        return 10
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 15:
        raise ActorError(f"config 'precision' must be an integer from 0 to 15, got {value!r}")
    return value
