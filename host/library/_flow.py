"""Flow control templates: passing, gating, routing, splitting and joining packets.

Predicates and mappings are config strings in the safe expression language of
:mod:`reflow.library._expr` (``$.age >= 18``, ``{"name": upper($.name)}``), never Python code.
Per-node state (counters, buffers, gate state) lives in the node's pools, so one template
instance serves any number of nodes.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import (
    LibraryActor,
    config_bool,
    config_choice,
    config_int,
    config_number,
    config_value,
    input_array,
    to_message,
)
from ._expr import Expression, ExpressionError

__all__ = ["FLOW_TEMPLATES"]

_STATE = "state"


@functools.lru_cache(maxsize=1024)
def _compile(source: str) -> Expression:
    # Parsed once per distinct text: expressions are immutable, so nodes can share them.
    return Expression(source)


def _expression(where: str, source: Any) -> Expression:
    """The parsed expression ``source`` of config ``where`` (e.g. ``'when'``)."""
    try:
        return _compile(source) if isinstance(source, str) else Expression(source)
    except ExpressionError as exc:
        raise ActorError(f"config {where}: {exc} (in {source!r})") from exc


def _apply(ctx: ActorContext, key: str, port: str, test: bool) -> Any:
    expr = _expression(repr(key), config_value(ctx, key))
    data = ctx.inputs[port].get("data")
    try:
        return expr.test(data) if test else expr.evaluate(data)
    except ExpressionError as exc:
        raise ActorError(
            f"config {key!r}: {exc} (evaluating {expr.source!r} on in-port {port!r})"
        ) from exc


def _state(ctx: ActorContext, key: str, default: Any) -> Any:
    return ctx.pool_get(_STATE, key, default)


def _set_state(ctx: ActorContext, key: str, value: Any) -> None:
    ctx.pool_upsert(_STATE, key, value)


class Passthrough(LibraryActor):
    """Forwards every packet unchanged.

    Ports: in ``in`` (any) → out ``out`` (the same message). Config: none.
    """

    component = "tpl_flow_passthrough"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: ActorContext) -> None:
        ctx.done({"out": ctx.inputs["in"]})


class Gate(LibraryActor):
    """Lets packets through while open; drops (or holds) them while closed.

    Ports: in ``in`` (any), ``control`` (Boolean: true opens, false closes) → out ``out``.
    Config: ``open`` (bool, initial state, default false); ``buffer`` (int ≥ 0, default 0):
    how many packets to hold while closed — they are released, in order, when the gate opens;
    beyond that the oldest held packet is dropped.
    """

    component = "tpl_flow_gate"
    inports = ["in", "control"]
    outports = ["out"]
    inport_types = {"control": "Boolean"}

    def run(self, ctx: ActorContext) -> None:
        is_open = _state(ctx, "open", None)
        if is_open is None:
            is_open = config_bool(ctx, "open", False)
        limit = config_int(ctx, "buffer", 0, minimum=0)
        control = ctx.inputs.get("control")
        if control is not None:
            if control["type"] != "Boolean":
                raise ActorError(f"in-port 'control': expected a Boolean, got {control['type']}")
            is_open = control["data"]
            _set_state(ctx, "open", is_open)
            if is_open:
                for msg in _state(ctx, "held", []):
                    ctx.emit("out", msg)
                _set_state(ctx, "held", [])
            ctx.done()
            return
        msg = ctx.inputs["in"]
        if is_open:
            ctx.done({"out": msg})
            return
        if limit:
            held = [*_state(ctx, "held", []), msg][-limit:]
            _set_state(ctx, "held", held)
        ctx.done()


class Switch(LibraryActor):
    """Sends each packet to ``true`` or ``false`` by a predicate.

    Ports: in ``in`` (any) → out ``true``, ``false`` (the same message).
    Config: ``when`` (expression, required), e.g. ``$.status == "ok" and $.size > 10``.
    """

    component = "tpl_flow_switch"
    inports = ["in"]
    outports = ["true", "false"]

    def run(self, ctx: ActorContext) -> None:
        port = "true" if _apply(ctx, "when", "in", True) else "false"
        ctx.done({port: ctx.inputs["in"]})


class Route(LibraryActor):
    """Routes each packet by the first of up to four predicates that holds.

    Ports: in ``in`` (any) → out ``out0``, ``out1``, ``out2``, ``out3`` (route *i* goes to
    ``out<i>``) and
    ``default`` (no route matched).
    Config: ``routes`` (list of 1-4 expressions, required), e.g. ``["$.kind == 'a'",
    "$.kind == 'b'"]``; ``all`` (bool, default false): send to every matching route instead of
    the first.
    """

    component = "tpl_flow_route"
    inports = ["in"]
    outports = ["out0", "out1", "out2", "out3", "default"]

    def run(self, ctx: ActorContext) -> None:
        routes = config_value(ctx, "routes")
        if not isinstance(routes, list) or not 1 <= len(routes) <= 4:
            raise ActorError(
                f"config 'routes' must be a list of 1 to 4 expressions, got {routes!r}"
            )
        every = config_bool(ctx, "all", False)
        msg = ctx.inputs["in"]
        data = msg.get("data")
        matched = False
        for i, source in enumerate(routes):
            expr = _expression(f"'routes'[{i}]", source)
            try:
                hit = expr.test(data)
            except ExpressionError as exc:
                raise ActorError(f"config 'routes'[{i}]: {exc} (in {source!r})") from exc
            if hit:
                ctx.emit(f"out{i}", msg)
                matched = True
                if not every:
                    break
        if not matched:
            ctx.emit("default", msg)
        ctx.done()


class Merge(LibraryActor):
    """Forwards packets from any of four in-ports to one out-port, in arrival order.

    Ports: in ``in0``, ``in1``, ``in2``, ``in3`` (any) → out ``out``. Config: none. (Several
    edges may also connect to one in-port; the four ports keep graphs readable.)
    """

    component = "tpl_flow_merge"
    inports = ["in0", "in1", "in2", "in3"]
    outports = ["out"]

    def run(self, ctx: ActorContext) -> None:
        ctx.done({"out": next(iter(ctx.inputs.values()))})


class Split(LibraryActor):
    """Splits an Array into one packet per item, then a Flow on ``done``.

    Ports: in ``in`` (Array) → out ``out`` (each item, as Integer/Float/String/Object/... by
    its JSON type), ``done`` (Flow, after the last item). Config: none.
    """

    component = "tpl_flow_split"
    inports = ["in"]
    outports = ["out", "done"]
    inport_types = {"in": "Array"}
    outport_types = {"done": "Flow"}

    def run(self, ctx: ActorContext) -> None:
        for item in input_array(ctx, "in"):
            ctx.emit("out", to_message(item))
        ctx.done({"done": Message.flow()})


class Collect(LibraryActor):
    """Collects packet payloads into an Array of ``count`` items.

    Ports: in ``in`` (any), ``flush`` (any: emit what is collected now, if anything) → out
    ``out`` (Array). Config: ``count`` (int ≥ 0, default 0: only on ``flush``).
    """

    component = "tpl_flow_collect"
    inports = ["in", "flush"]
    outports = ["out"]
    outport_types = {"out": "Array"}

    def run(self, ctx: ActorContext) -> None:
        count = config_int(ctx, "count", 0, minimum=0)
        items = _state(ctx, "items", [])
        if "flush" in ctx.inputs:
            _set_state(ctx, "items", [])
            ctx.done({"out": Message.array(items)} if items else None)
            return
        items = [*items, ctx.inputs["in"].get("data")]
        if count and len(items) >= count:
            _set_state(ctx, "items", [])
            ctx.done({"out": Message.array(items)})
            return
        _set_state(ctx, "items", items)
        ctx.done()


class Zip(LibraryActor):
    """Waits for one packet on every connected in-port and joins their payloads.

    Ports: in ``a``, ``b``, ``c`` (any; unconnected ports are left out) → out ``out``.
    Config: ``as`` (``"array"``, default: ``[a, b, c]`` in port order; ``"object"``:
    ``{"a": …, "b": …}``).
    """

    component = "tpl_flow_zip"
    inports = ["a", "b", "c"]
    outports = ["out"]
    await_all_inports = True

    def run(self, ctx: ActorContext) -> None:
        shape = config_choice(ctx, "as", ("array", "object"), "array")
        present = [p for p in self.inports if p in ctx.inputs]
        if shape == "object":
            ctx.done({"out": Message.object({p: ctx.inputs[p].get("data") for p in present})})
        else:
            ctx.done({"out": Message.array([ctx.inputs[p].get("data") for p in present])})


class Counter(LibraryActor):
    """Counts packets: after each packet on ``in`` sends the running count.

    Ports: in ``in`` (any), ``reset`` (any: back to ``start``, sends nothing) → out ``count``
    (Integer, or Float when ``step`` is). Config: ``start`` (number, default 0), ``step``
    (number, default 1).
    """

    component = "tpl_flow_counter"
    inports = ["in", "reset"]
    outports = ["count"]

    def run(self, ctx: ActorContext) -> None:
        start = config_number(ctx, "start", 0)
        step = config_number(ctx, "step", 1)
        if "reset" in ctx.inputs:
            _set_state(ctx, "n", start)
            ctx.done()
            return
        n = _state(ctx, "n", start) + step
        _set_state(ctx, "n", n)
        ctx.done({"count": to_message(n)})


class Once(LibraryActor):
    """Forwards only the first packet (until reset).

    Ports: in ``in`` (any), ``reset`` (any: let the next packet through) → out ``out``.
    Config: none.
    """

    component = "tpl_flow_once"
    inports = ["in", "reset"]
    outports = ["out"]

    def run(self, ctx: ActorContext) -> None:
        if "reset" in ctx.inputs:
            _set_state(ctx, "seen", False)
            ctx.done()
        elif _state(ctx, "seen", False):
            ctx.done()
        else:
            _set_state(ctx, "seen", True)
            ctx.done({"out": ctx.inputs["in"]})


class Filter(LibraryActor):
    """Passes packets whose payload satisfies a predicate.

    Ports: in ``in`` (any) → out ``out`` (kept), ``rejected`` (the others).
    Config: ``where`` (expression, required), e.g. ``$.price < 10 and "sale" in $.tags``.
    """

    component = "tpl_flow_filter"
    inports = ["in"]
    outports = ["out", "rejected"]

    def run(self, ctx: ActorContext) -> None:
        port = "out" if _apply(ctx, "where", "in", True) else "rejected"
        ctx.done({port: ctx.inputs["in"]})


class Map(LibraryActor):
    """Computes a new payload from each packet with an expression.

    Ports: in ``in`` (any) → out ``out`` (the result, as a message of its JSON type: number →
    Integer/Float, string → String, object → Object, null → Null ...).
    Config: ``expr`` (expression, required), e.g. ``{"name": upper($.name), "age": $.age + 1}``.
    """

    component = "tpl_flow_map"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: ActorContext) -> None:
        ctx.done({"out": to_message(_apply(ctx, "expr", "in", False))})


class Constant(LibraryActor):
    """Sends a fixed value whenever any packet arrives (a trigger).

    Ports: in ``in`` (any) → out ``out``. Config: ``value`` (any JSON, required; a tagged
    message such as ``{"type": "Flow"}`` is sent as that message).
    """

    component = "tpl_flow_constant"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: ActorContext) -> None:
        if "value" not in ctx.config:
            raise ActorError("config 'value' is required")
        value = ctx.config["value"]
        if (
            isinstance(value, dict)
            and isinstance(value.get("type"), str)
            and set(value) <= {"type", "data"}
        ):
            try:
                ctx.done({"out": Message.from_json(value)})
            except Exception as exc:
                raise ActorError(f"config 'value': {exc}") from exc
            return
        ctx.done({"out": to_message(value)})


FLOW_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (
        Passthrough,
        Gate,
        Switch,
        Route,
        Merge,
        Split,
        Collect,
        Zip,
        Counter,
        Once,
        Filter,
        Map,
        Constant,
    )
}
