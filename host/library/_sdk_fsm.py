"""``tpl_fsm``: the offbit-reflow catalog's config-driven finite state machine.

The machine's current state and its context live in the node's pools (``_fsm`` and
``_fsm_ctx``), so it survives from tick to tick and one template serves any number of nodes.
Transient (``always``) transitions are followed at most 10 deep, so a cycle of them ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import LibraryActor, config_number, config_str
from ._sdk_support import evaluate_rule

__all__ = ["Fsm"]

_MAX_TRANSIENT = 10
_ASSIGN_OPS = ("set", "increment", "decrement", "add", "multiply", "toggle")


def _object(ctx: ActorContext, key: str) -> dict[str, Any]:
    value = ctx.config.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ActorError(f"config {key!r} must be an object, got {value!r}")
    return dict(value)


class _Machine:
    """One tick's view of the machine: its config and the node's pools."""

    def __init__(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        self.states = _object(ctx, "states")
        self.guards = _object(ctx, "guards")

    def state_def(self, name: str) -> Mapping[str, Any] | None:
        s = self.states.get(name)
        if s is not None and not isinstance(s, Mapping):
            raise ActorError(f"config 'states'.{name} must be an object, got {s!r}")
        return s

    def scope(self, event_payload: Any) -> dict[str, Any]:
        scope = dict(self.ctx.pool("_fsm_ctx"))
        if isinstance(event_payload, dict):
            scope.update(event_payload)
        return scope

    def guard(self, name: Any, scope: dict[str, Any], where: str) -> bool:
        if not isinstance(name, str) or name not in self.guards:
            raise ActorError(f"config {where}: no guard named {name!r} in config 'guards'")
        rule = self.guards[name]
        field = rule.get("field") if isinstance(rule, Mapping) else None
        if field is None:
            return evaluate_rule(rule, scope, f"'guards'.{name}")
        return evaluate_rule(rule, scope.get(field), f"'guards'.{name}", present=field in scope)

    def pick(self, spec: Any, scope: dict[str, Any], where: str) -> str | None:
        """The target of a transition spec: a state name, ``{"target", "guard"?}`` or a list
        of those (the first whose guard holds)."""
        if isinstance(spec, str):
            return spec
        options = spec if isinstance(spec, list) else [spec]
        for i, option in enumerate(options):
            at = f"{where}[{i}]" if isinstance(spec, list) else where
            if not isinstance(option, Mapping):
                raise ActorError(
                    f"config {at} must be a state name or "
                    f'{{"target": …, "guard": …}}, got {option!r}'
                )
            if "guard" in option and not self.guard(option["guard"], scope, f"{at}.guard"):
                if isinstance(spec, list):
                    continue
                return None
            target = option.get("target")
            if target is not None and not isinstance(target, str):
                raise ActorError(f"config {at}.target must be a state name, got {target!r}")
            return target
        return None

    def act(self, action: Any, emitted: dict[str, Any], where: str) -> None:
        if not isinstance(action, Mapping):
            raise ActorError(f"config {where} must be an object, got {action!r}")
        emit = action.get("emit")
        if isinstance(emit, Mapping):
            emitted.update(emit)
        assign = action.get("assign")
        if not isinstance(assign, Mapping):
            return
        for name, change in assign.items():
            if not isinstance(change, Mapping):
                self.ctx.pool_upsert("_fsm_ctx", name, change)
                continue
            op = change.get("op", "set")
            if op not in _ASSIGN_OPS:
                raise ActorError(
                    f"config {where}.assign.{name}.op must be one of "
                    f"{', '.join(_ASSIGN_OPS)}, got {op!r}"
                )
            amount = change.get("value", 1.0)
            if isinstance(amount, bool) or not isinstance(amount, (int, float)):
                amount = 1.0
            now = self.ctx.pool_get("_fsm_ctx", name, 0.0)
            if isinstance(now, bool) or not isinstance(now, (int, float)):
                now = 0.0
            new = {
                "set": amount,
                "increment": now + amount,
                "decrement": now - amount,
                "add": now + amount,
                "multiply": now * amount,
                "toggle": 1.0 if now == 0 else 0.0,
            }[op]
            self.ctx.pool_upsert("_fsm_ctx", name, float(new))


class Fsm(LibraryActor):
    """A finite state machine driven by its config.

    Ports: in ``event`` (String event name, or Object ``{"type": name, "payload": {…}}``),
    ``tick`` (any: advances ``_timeout`` transitions by ``dt`` seconds), ``control`` (String
    ``"reset"`` or ``"set:<state>"``), ``data`` (Object merged into the context) → out
    ``state`` (String, after every transition, reset or set), ``transition`` (Object
    ``{"from", "to", "event"}``), ``context`` (Object, when the new state's entry has
    ``"emit_context": true``), ``done`` (Flow, on entering a state of ``"type": "final"``),
    ``emit`` (Object ``{"id": state, "data": {…}}`` of the entry/exit ``emit`` values),
    ``data`` (the same values, flat).
    Config: ``states`` (object, default ``{}``: ``{name: {"on": {event: target | {"target",
    "guard"} | [...]}, "entry": action, "exit": action, "always": transient, "type":
    "final"}}``; an action is ``{"emit": {…}, "assign": {key: value | {"op": set|increment|
    decrement|add|multiply|toggle, "value": n}}}``; ``"_timeout": {"target", "delay": s}``
    fires on ``tick``), ``guards`` (object, default ``{}``: ``{name: {"field", "operator",
    "value"}}``, operators as in ``tpl_rules_engine`` plus ``gt lt gte lte in not_in``),
    ``initial`` (string, default ``"initial"``), ``context`` (object, the starting context),
    ``dt`` (seconds per tick, default 1/30).
    """

    component = "tpl_fsm"
    inports = ["event", "tick", "control", "data"]
    outports = ["state", "transition", "context", "done", "emit", "data"]
    outport_types = {
        "state": "String",
        "transition": "Object",
        "context": "Object",
        "done": "Flow",
        "emit": "Object",
        "data": "Object",
    }

    def run(self, ctx: ActorContext) -> None:
        machine = _Machine(ctx)
        initial = config_str(ctx, "initial", "initial")
        start_context = _object(ctx, "context")
        dt = config_number(ctx, "dt", 1.0 / 30.0, minimum=0)
        if not ctx.pool_count("_fsm_ctx"):
            for k, v in start_context.items():
                ctx.pool_upsert("_fsm_ctx", k, v)
        current = ctx.pool_get("_fsm", "current")
        if not isinstance(current, str):
            current = initial
            ctx.pool_upsert("_fsm", "current", current)

        control = ctx.inputs.get("control")
        command = control["data"] if control is not None and control["type"] == "String" else ""
        if command == "reset" or command.startswith("set:"):
            target = initial if command == "reset" else command[4:]
            ctx.pool_upsert("_fsm", "current", target)
            ctx.pool_upsert("_fsm", "timeout_elapsed", 0.0)
            if command == "reset":
                for k, v in start_context.items():
                    ctx.pool_upsert("_fsm_ctx", k, v)
            ctx.done({"state": Message.string(target)})
            return

        data = ctx.inputs.get("data")
        if data is not None and data["type"] == "Object":
            for k, v in data["data"].items():
                ctx.pool_upsert("_fsm_ctx", k, v)
            ctx.done()
            return

        event, event_payload = None, None
        msg = ctx.inputs.get("event")
        if msg is not None and msg["type"] == "String":
            event = msg["data"]
        elif msg is not None and msg["type"] == "Object":
            name = msg["data"].get("type")
            event = name if isinstance(name, str) else None
            event_payload = msg["data"].get("payload")

        state_def = machine.state_def(current)
        on = state_def.get("on") if state_def else None
        if on is not None and not isinstance(on, Mapping):
            raise ActorError(f"config 'states'.{current}.on must be an object, got {on!r}")
        if event is None and "tick" in ctx.inputs:
            timeout = on.get("_timeout") if on else None
            if timeout is None:
                ctx.done()
                return
            delay = timeout.get("delay", 1.0) if isinstance(timeout, Mapping) else 1.0
            if isinstance(delay, bool) or not isinstance(delay, (int, float)):
                raise ActorError(
                    f"config 'states'.{current}.on._timeout.delay must be a "
                    f"number of seconds, got {delay!r}"
                )
            elapsed = ctx.pool_get("_fsm", "timeout_elapsed", 0.0) + dt
            if elapsed < delay:
                ctx.pool_upsert("_fsm", "timeout_elapsed", elapsed)
                ctx.done()
                return
            ctx.pool_upsert("_fsm", "timeout_elapsed", 0.0)
            event = "_timeout"
        if event is None or not on or event not in on:
            ctx.done()
            return
        where = f"'states'.{current}.on.{event}"
        target = machine.pick(on[event], machine.scope(event_payload), where)
        if target is None:
            ctx.done()
            return
        ctx.done(self._transition(machine, current, target, event))

    def _transition(self, m: _Machine, start: str, target: str, event: str) -> dict[str, Message]:
        ctx = m.ctx
        out: dict[str, Message] = {}
        emitted: dict[str, Any] = {}
        current = start
        for depth in range(1, _MAX_TRANSIENT + 1):
            exit_action = (m.state_def(current) or {}).get("exit")
            if exit_action is not None:
                m.act(exit_action, emitted, f"'states'.{current}.exit")
            ctx.pool_upsert("_fsm", "current", target)
            ctx.pool_upsert("_fsm", "timeout_elapsed", 0.0)
            target_def = m.state_def(target) or {}
            if target_def.get("entry") is not None:
                m.act(target_def["entry"], emitted, f"'states'.{target}.entry")
            if target_def.get("type") == "final":
                out["done"] = Message.flow()
            always = target_def.get("always")
            nxt = None
            if always is not None and depth < _MAX_TRANSIENT:
                nxt = m.pick(always, m.scope(None), f"'states'.{target}.always")
            if nxt is None:
                break
            current, target = target, nxt
        final = ctx.pool_get("_fsm", "current", target)
        out["state"] = Message.string(final)
        out["transition"] = Message.object({"from": start, "to": final, "event": event})
        if emitted:
            out["emit"] = Message.object({"id": final, "data": dict(emitted)})
            out["data"] = Message.object(dict(emitted))
        entry = (m.state_def(final) or {}).get("entry")
        if isinstance(entry, Mapping) and entry.get("emit_context") is True:
            out["context"] = Message.object(dict(ctx.pool("_fsm_ctx")))
        return out
