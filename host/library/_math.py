"""Math templates on Integer and Float packets.

Binary operations wait for both ``a`` and ``b`` (``await_all_inports``); when ``b`` is not
connected the config key ``b`` is the second operand, so ``tpl_math_multiply`` with
``{"b": 3}`` is a tripler. Integer inputs give an Integer result where the result is exact
(``add``, ``subtract``, ``multiply``, ``modulo``, ``min``, ``max``, ``power`` with an exponent
≥ 0); ``divide`` always gives a Float.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import (
    LibraryActor,
    config_choice,
    config_int,
    config_number,
    config_value,
    input_number,
)
from ._math_expression import MathExpression
from ._math_numbers import Number, _number_message, _operand, round_to
from ._math_stats import MathAverage, MathStatistics, MathStats, MathSum
from ._sdk_config import with_sdk_config
from ._sdk_support import precision

__all__ = ["MATH_TEMPLATES"]


class _Binary(LibraryActor):
    inports = ["a", "b"]
    outports = ["out", "result"]
    await_all_inports = True
    inport_types = {"a": "Float", "b": "Float"}  # Integer connects to Float too
    op: Callable[[Number, Number], Number] = operator.add
    #: The offbit-reflow form, sent as a Float rounded to config ``precision`` on ``result``.
    sdk_op: Callable[[float, float], float] = operator.add
    exact = True  # Integer in, Integer out (on ``out``)
    #: (first, second) in-port names as offbit_reflow has them, when they differ from a, b.
    sdk_ports: tuple[str, str] | None = None
    zero_error: str | None = None

    def operands(self, ctx: ActorContext) -> tuple[Number, Number]:
        first, second = ("a", "b")
        if self.sdk_ports and self.sdk_ports[0] in ctx.inputs:
            first = self.sdk_ports[0]
        if self.sdk_ports and self.sdk_ports[1] in ctx.inputs:
            second = self.sdk_ports[1]
        a = _operand(ctx, first)
        b = _operand(ctx, second) if second in ctx.inputs else config_number(ctx, "b")
        return a, b

    def run(self, ctx: ActorContext) -> None:
        prec = precision(ctx)
        a, b = self.operands(ctx)
        if self.zero_error and b == 0:
            ctx.send({"error": Message.error(self.zero_error)})
            raise ActorError("in-port 'b' (or config 'b') is zero: division by zero")
        self.check(a, b)
        integer = self.exact and isinstance(a, int) and isinstance(b, int)
        try:
            result = type(self).op(a, b)
            sdk = type(self).sdk_op(float(a), float(b))
        except (OverflowError, ZeroDivisionError) as exc:
            raise ActorError(f"result overflows: {exc}") from exc
        outputs = {"out": _number_message(result, integer)}
        if "result" in self.outports:
            outputs["result"] = _number_message(round_to(sdk, prec), False)
        ctx.done(outputs)

    def check(self, a: Number, b: Number) -> None:
        """Reject operands the operation is not defined for."""


_BINARY_DOC = """{what}.

    Ports: in ``a``, ``b`` (Integer, Float or numeric String; ``b`` falls back to config ``b``
    when not connected){extra_in} → out ``out`` ({result}), ``result`` (Float rounded to
    ``precision`` decimals, as offbit_reflow sends it){extra_out}. Config: ``b`` (number,
    used when in-port ``b`` is not connected), ``precision`` (int 0-15, default 10).
    """


_LEGACY_DOC = """{what}.

    Ports: in ``a``, ``b`` (Integer, Float or numeric String; ``b`` falls back to config ``b``
    when not connected) → out ``out`` (Integer when both are Integer, else Float). Config:
    ``b`` (number, used when in-port ``b`` is not connected).
    """


def _binary(
    name: str,
    op: Callable[[Any, Any], Any],
    what: str,
    result: str,
    exact: bool = True,
    check: Callable[[Number, Number], None] | None = None,
    sdk_op: Callable[[float, float], float] | None = None,
    zero_error: str | None = None,
    sdk_ports: tuple[str, str] | None = None,
) -> type[_Binary]:
    extra_in = extra_out = ""
    attrs: dict[str, Any] = {
        "component": f"tpl_math_{name}",
        "op": staticmethod(op),
        "sdk_op": staticmethod(sdk_op or op),
        "exact": exact,
        "zero_error": zero_error,
        "sdk_ports": sdk_ports,
    }
    if zero_error:
        attrs["outports"] = ["out", "result", "error"]
        attrs["outport_types"] = {"error": "Error"}
        extra_out = f", ``error`` (Error {zero_error!r} when b is 0; the tick fails too)"
    if sdk_ports:
        attrs["inports"] = ["a", "b", *sdk_ports]
        extra_in = (
            f"; or ``{sdk_ports[0]}``, ``{sdk_ports[1]}`` (offbit_reflow's names, "
            f"for ``a`` and ``b``)"
        )
    attrs["__doc__"] = _BINARY_DOC.format(
        what=what, result=result, extra_in=extra_in, extra_out=extra_out
    )
    if check is not None:
        attrs["check"] = lambda self, a, b: check(a, b)
    return type(f"Math{name.title()}", (_Binary,), attrs)


def _power_ok(a: Number, b: Number) -> None:
    if a == 0 and b < 0:
        raise ActorError("0 to a negative power (in-port 'a' is 0, 'b' < 0) is undefined")
    if a < 0 and not float(b).is_integer():
        raise ActorError("a negative number (in-port 'a') to a fractional power is undefined")
    if abs(b) > 10_000:
        raise ActorError(f"exponent (in-port 'b') {b} is too large (limit 10000)")


def _power(a: Number, b: Number) -> Number:
    if isinstance(a, int) and isinstance(b, int) and b >= 0:
        return a**b
    return float(a) ** float(b)


_INT_OR_FLOAT = "Integer when both are Integer, else Float"
MathAdd = _binary("add", operator.add, "Adds ``a + b``", _INT_OR_FLOAT)
MathSubtract = _binary("subtract", operator.sub, "Subtracts ``a - b``", _INT_OR_FLOAT)
MathMultiply = _binary("multiply", operator.mul, "Multiplies ``a * b``", _INT_OR_FLOAT)
MathDivide = _binary(
    "divide",
    operator.truediv,
    "Divides ``a / b``; b = 0 fails the tick",
    "Float",
    exact=False,
    zero_error="Division by zero",
)
MathModulo = _binary(
    "modulo",
    operator.mod,
    "Remainder of ``a / b`` (on ``out`` with Python's sign rule, on "
    "``result`` with the dividend's sign, as offbit_reflow); b = 0 fails the "
    "tick",
    _INT_OR_FLOAT,
    sdk_op=math.fmod,
    zero_error="Modulo by zero",
)
MathPower = _binary(
    "power",
    _power,
    "Raises ``a ** b``",
    _INT_OR_FLOAT,
    check=_power_ok,
    sdk_op=lambda a, b: float(_power(a, b)),
    sdk_ports=("base", "exponent"),
)
MathMin = _binary("min", min, "The smaller of ``a`` and ``b``", _INT_OR_FLOAT)
MathMax = _binary("max", max, "The larger of ``a`` and ``b``", _INT_OR_FLOAT)
for _legacy in (MathMin, MathMax):  # not offbit_reflow templates (it has tpl_math_min_max)
    _legacy.outports = ["out"]
    _legacy.__doc__ = _LEGACY_DOC.format(what=(_legacy.__doc__ or "").split(".")[0])


_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class MathCompare(_Binary):
    """Compares ``a`` with ``b``.

    Ports: in ``a``, ``b`` (Integer or Float; ``b`` falls back to config ``b``) → out ``out``
    (Boolean). Config: ``op`` (one of ``== != < <= > >=``, default ``==``), ``b`` (number).
    """

    component = "tpl_math_compare"
    outports = ["out"]
    outport_types = {"out": "Boolean"}

    def run(self, ctx: ActorContext) -> None:
        op = config_choice(ctx, "op", tuple(_COMPARE), "==")
        a, b = self.operands(ctx)
        ctx.done({"out": Message.boolean(_COMPARE[op](a, b))})


class MathRound(LibraryActor):
    """Rounds a number.

    Ports: in ``in`` (Integer or Float) → out ``out`` (Integer when ``digits`` is 0, else
    Float); or, as offbit_reflow, in ``input`` (Integer, Float or numeric String) → out
    ``result`` (Float: ``round`` to ``precision`` decimals, halves away from zero; or
    ``floor``/``ceil``/``trunc`` to a whole number). Config: ``mode`` (``"round"`` (on
    ``out`` half to even), ``"floor"``, ``"ceil"``, ``"trunc"``; default ``"round"``),
    ``digits`` (int 0-15, default 0; ``round`` mode, ``out`` only), ``precision`` (int 0-15,
    default 10; ``result`` only).
    """

    component = "tpl_math_round"
    inports = ["in", "input"]
    outports = ["out", "result"]
    inport_types = {"in": "Float"}
    outport_types = {"result": "Float"}

    def run(self, ctx: ActorContext) -> None:
        mode = config_choice(ctx, "mode", ("round", "floor", "ceil", "trunc"), "round")
        if "input" in ctx.inputs:
            prec = precision(ctx)
            x = float(_operand(ctx, "input"))
            whole: dict[str, Callable[[float], float]] = {
                "floor": math.floor,
                "ceil": math.ceil,
                "trunc": math.trunc,
            }
            value = whole.get(mode, lambda v: round_to(v, prec))(x) if math.isfinite(x) else x
            ctx.done({"result": _number_message(round_to(float(value), prec), False)})
            return
        digits = config_int(ctx, "digits", 0, minimum=0, maximum=15)
        x = input_number(ctx, "in")
        if digits and mode != "round":
            raise ActorError(f"config 'digits' works with mode 'round' only, not {mode!r}")
        if isinstance(x, float) and not math.isfinite(x):
            raise ActorError(f"in-port 'in': cannot round {x}")
        if digits:
            ctx.done({"out": Message.float(round(x, digits))})
            return
        rounders: dict[str, Callable[[Any], Any]] = {
            "round": round,
            "floor": math.floor,
            "ceil": math.ceil,
            "trunc": math.trunc,
        }
        fn = rounders[mode]
        ctx.done({"out": Message.integer(int(fn(x)))})


class _Unary(LibraryActor):
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Float"}

    def compute(self, ctx: ActorContext, x: Number) -> Number:
        raise NotImplementedError

    def run(self, ctx: ActorContext) -> None:
        x = input_number(ctx, "in")
        result = self.compute(ctx, x)
        ctx.done({"out": _number_message(result, isinstance(x, int))})


class MathAbs(_Unary):
    """Absolute value.

    Ports: in ``in`` (Integer or Float) → out ``out`` (same kind). Config: none.
    """

    component = "tpl_math_abs"

    def compute(self, ctx: ActorContext, x: Number) -> Number:
        return abs(x)


class MathClamp(_Unary):
    """Limits a number to ``[min, max]``.

    Ports: in ``in`` (Integer or Float) → out ``out`` (same kind as the input unless a bound
    is a Float; ``min`` or ``max`` required); or, as offbit_reflow, in ``input`` (Integer,
    Float or numeric String) → out ``result`` (Float rounded to ``precision``; bounds default
    to 0 and 1). Config: ``min``, ``max`` (numbers, min ≤ max), ``precision`` (int 0-15,
    default 10).
    """

    component = "tpl_math_clamp"
    inports = ["in", "input"]
    outports = ["out", "result"]
    outport_types = {"result": "Float"}

    def run(self, ctx: ActorContext) -> None:
        if "input" not in ctx.inputs:
            super().run(ctx)
            return
        prec = precision(ctx)
        lo, hi = config_number(ctx, "min", 0.0), config_number(ctx, "max", 1.0)
        if lo > hi:
            raise ActorError(f"config 'min' ({lo}) is greater than 'max' ({hi})")
        x = float(_operand(ctx, "input"))
        ctx.done({"result": _number_message(round_to(min(max(x, lo), hi), prec), False)})

    def compute(self, ctx: ActorContext, x: Number) -> Number:
        lo = config_number(ctx, "min", None) if ctx.config.get("min") is not None else None
        hi = config_number(ctx, "max", None) if ctx.config.get("max") is not None else None
        if lo is None and hi is None:
            raise ActorError("config 'min' or 'max' is required")
        if lo is not None and hi is not None and lo > hi:
            raise ActorError(f"config 'min' ({lo}) is greater than 'max' ({hi})")
        if lo is not None and x < lo:
            x = lo
        if hi is not None and x > hi:
            x = hi
        return x


class MathSqrt(LibraryActor):
    """Square root.

    Ports: in ``in`` (Integer or Float ≥ 0) → out ``out`` (Float); or, as offbit_reflow, in
    ``input`` (Integer, Float or numeric String) → out ``result`` (Float rounded to
    ``precision``), ``error`` (Error, for a negative input; the tick fails too). Config:
    ``precision`` (int 0-15, default 10; ``result`` only).
    """

    component = "tpl_math_sqrt"
    inports = ["in", "input"]
    outports = ["out", "result", "error"]
    inport_types = {"in": "Float"}
    outport_types = {"out": "Float", "result": "Float", "error": "Error"}

    def run(self, ctx: ActorContext) -> None:
        port = "input" if "input" in ctx.inputs else "in"
        prec = precision(ctx) if port == "input" else 10
        x = _operand(ctx, port) if port == "input" else input_number(ctx, port)
        if x < 0:
            if port == "input":
                ctx.send({"error": Message.error("Square root of negative number")})
            raise ActorError(f"in-port {port!r}: square root of a negative number ({x})")
        if port == "input":
            ctx.done({"result": _number_message(round_to(math.sqrt(x), prec), False)})
        else:
            ctx.done({"out": Message.float(math.sqrt(x))})


class MathRandom(LibraryActor):
    """A random number for every trigger packet.

    Ports: in ``in`` (any, a trigger) → out ``out`` (Float in ``[min, max)``, or Integer in
    ``[min, max]`` when ``integer`` is true); or, as offbit_reflow, in ``trigger`` (any) →
    out ``result`` (Float in ``[min, max)`` rounded to ``precision``). Config: ``min``
    (default 0), ``max`` (default 1), ``integer`` (bool, default false; ``out`` only),
    ``seed`` (int: a reproducible sequence per node), ``precision`` (int 0-15, default 10).
    """

    component = "tpl_math_random"
    inports = ["in", "trigger"]
    outports = ["out", "result"]
    outport_types = {"result": "Float"}

    def run(self, ctx: ActorContext) -> None:
        import random

        lo = config_number(ctx, "min", 0)
        hi = config_number(ctx, "max", 1)
        if lo > hi:
            raise ActorError(f"config 'min' ({lo}) is greater than 'max' ({hi})")
        integer = config_value(ctx, "integer", False)
        if not isinstance(integer, bool):
            raise ActorError(f"config 'integer' must be true or false, got {integer!r}")
        rng = ctx.pool_get("random", "rng")
        if rng is None:
            seed = ctx.config.get("seed")
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise ActorError(f"config 'seed' must be an integer, got {seed!r}")
            rng = random.Random(seed)
            ctx.pool_upsert("random", "rng", rng)
        if "trigger" in ctx.inputs:
            prec = precision(ctx)
            ctx.done({"result": Message.float(round_to(rng.uniform(lo, hi), prec))})
        elif integer:
            ctx.done({"out": Message.integer(rng.randint(math.ceil(lo), math.floor(hi)))})
        else:
            ctx.done({"out": Message.float(rng.uniform(lo, hi))})


class MathAbsolute(LibraryActor):
    """Absolute value, as offbit_reflow has it.

    Ports: in ``input`` (Integer, Float or numeric String) → out ``result`` (Float rounded
    to ``precision``). Config: ``precision`` (int 0-15, default 10).
    """

    component = "tpl_math_absolute"
    inports = ["input"]
    outports = ["result"]
    outport_types = {"result": "Float"}

    def run(self, ctx: ActorContext) -> None:
        prec = precision(ctx)
        x = float(_operand(ctx, "input"))
        ctx.done({"result": _number_message(round_to(abs(x), prec), False)})


class MathMinMax(_Binary):
    """The smaller and the larger of two numbers.

    Ports: in ``a``, ``b`` (Integer, Float or numeric String) → out ``min``, ``max``
    (Float rounded to ``precision``). Config: ``precision`` (int 0-15, default 10).
    """

    component = "tpl_math_min_max"
    outports = ["min", "max"]
    outport_types = {"min": "Float", "max": "Float"}

    def run(self, ctx: ActorContext) -> None:
        prec = precision(ctx)
        a, b = (float(v) for v in self.operands(ctx))
        ctx.done(
            {
                "min": _number_message(round_to(min(a, b), prec), False),
                "max": _number_message(round_to(max(a, b), prec), False),
            }
        )


MATH_TEMPLATES: dict[str, type[LibraryActor]] = with_sdk_config(
    {
        cls.component: cls
        for cls in (
            MathAdd,
            MathSubtract,
            MathMultiply,
            MathDivide,
            MathModulo,
            MathPower,
            MathMin,
            MathMax,
            MathCompare,
            MathRound,
            MathAbs,
            MathClamp,
            MathSqrt,
            MathStats,
            MathRandom,
            MathAbsolute,
            MathMinMax,
            MathSum,
            MathAverage,
            MathStatistics,
            MathExpression,
        )
    }
)
