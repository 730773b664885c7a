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
    input_array,
    input_number,
)

__all__ = ["MATH_TEMPLATES"]

Number = int | float


def _number_message(value: Number, integer: bool) -> Message:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise ActorError(f"result is not a finite number ({value})")
    if integer and isinstance(value, int):
        return Message.integer(value)
    return Message.float(float(value))


class _Binary(LibraryActor):
    inports = ["a", "b"]
    outports = ["out"]
    await_all_inports = True
    inport_types = {"a": "Float", "b": "Float"}  # Integer connects to Float too
    op: Callable[[Number, Number], Number] = operator.add
    exact = True  # Integer in, Integer out

    def operands(self, ctx: ActorContext) -> tuple[Number, Number]:
        a = input_number(ctx, "a")
        b = input_number(ctx, "b") if "b" in ctx.inputs else config_number(ctx, "b")
        return a, b

    def run(self, ctx: ActorContext) -> None:
        a, b = self.operands(ctx)
        self.check(a, b)
        integer = self.exact and isinstance(a, int) and isinstance(b, int)
        try:
            result = type(self).op(a, b)
        except OverflowError as exc:
            raise ActorError(f"result overflows: {exc}") from exc
        ctx.done({"out": _number_message(result, integer)})

    def check(self, a: Number, b: Number) -> None:
        """Reject operands the operation is not defined for."""


_BINARY_DOC = """{what}.

    Ports: in ``a``, ``b`` (Integer or Float; ``b`` falls back to config ``b`` when not
    connected) → out ``out`` ({result}). Config: ``b`` (number, used when in-port ``b`` is not
    connected).
    """


def _binary(name: str, op: Callable[[Any, Any], Any], what: str, result: str,
            exact: bool = True, check: Callable[[Number, Number], None] | None = None
            ) -> type[_Binary]:
    attrs: dict[str, Any] = {
        "component": f"tpl_math_{name}",
        "op": staticmethod(op),
        "exact": exact,
        "__doc__": _BINARY_DOC.format(what=what, result=result),
    }
    if check is not None:
        attrs["check"] = lambda self, a, b: check(a, b)
    return type(f"Math{name.title()}", (_Binary,), attrs)


def _nonzero_b(a: Number, b: Number) -> None:
    if b == 0:
        raise ActorError("in-port 'b' (or config 'b') is zero: division by zero")


def _power_ok(a: Number, b: Number) -> None:
    if a == 0 and b < 0:
        raise ActorError("0 to a negative power (in-port 'a' is 0, 'b' < 0) is undefined")
    if a < 0 and not float(b).is_integer():
        raise ActorError("a negative number (in-port 'a') to a fractional power is undefined")
    if abs(b) > 10_000:
        raise ActorError(f"exponent (in-port 'b') {b} is too large (limit 10000)")


def _power(a: Number, b: Number) -> Number:
    if isinstance(a, int) and isinstance(b, int) and b >= 0:
        return a ** b
    return float(a) ** float(b)


_INT_OR_FLOAT = "Integer when both are Integer, else Float"
MathAdd = _binary("add", operator.add, "Adds ``a + b``", _INT_OR_FLOAT)
MathSubtract = _binary("subtract", operator.sub, "Subtracts ``a - b``", _INT_OR_FLOAT)
MathMultiply = _binary("multiply", operator.mul, "Multiplies ``a * b``", _INT_OR_FLOAT)
MathDivide = _binary("divide", operator.truediv, "Divides ``a / b``; b = 0 fails the tick",
                     "Float", exact=False, check=_nonzero_b)
MathModulo = _binary("modulo", operator.mod,
                     "Remainder of ``a / b`` (Python's sign rule); b = 0 fails the tick",
                     _INT_OR_FLOAT, check=_nonzero_b)
MathPower = _binary("power", _power, "Raises ``a ** b``", _INT_OR_FLOAT, check=_power_ok)
MathMin = _binary("min", min, "The smaller of ``a`` and ``b``", _INT_OR_FLOAT)
MathMax = _binary("max", max, "The larger of ``a`` and ``b``", _INT_OR_FLOAT)


_COMPARE = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


class MathCompare(_Binary):
    """Compares ``a`` with ``b``.

    Ports: in ``a``, ``b`` (Integer or Float; ``b`` falls back to config ``b``) → out ``out``
    (Boolean). Config: ``op`` (one of ``== != < <= > >=``, default ``==``), ``b`` (number).
    """

    component = "tpl_math_compare"
    outport_types = {"out": "Boolean"}

    def run(self, ctx: ActorContext) -> None:
        op = config_choice(ctx, "op", tuple(_COMPARE), "==")
        a, b = self.operands(ctx)
        ctx.done({"out": Message.boolean(_COMPARE[op](a, b))})


class MathRound(LibraryActor):
    """Rounds a number.

    Ports: in ``in`` (Integer or Float) → out ``out`` (Integer when ``digits`` is 0, else
    Float). Config: ``mode`` (``"round"`` half to even, ``"floor"``, ``"ceil"``, ``"trunc"``;
    default ``"round"``), ``digits`` (int 0-15, default 0; ``round`` mode only).
    """

    component = "tpl_math_round"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Float"}

    def run(self, ctx: ActorContext) -> None:
        mode = config_choice(ctx, "mode", ("round", "floor", "ceil", "trunc"), "round")
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
            "round": round, "floor": math.floor, "ceil": math.ceil, "trunc": math.trunc,
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
    is a Float). Config: ``min``, ``max`` (numbers; at least one required; min ≤ max).
    """

    component = "tpl_math_clamp"

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

    Ports: in ``in`` (Integer or Float ≥ 0) → out ``out`` (Float). Config: none.
    """

    component = "tpl_math_sqrt"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Float"}
    outport_types = {"out": "Float"}

    def run(self, ctx: ActorContext) -> None:
        x = input_number(ctx, "in")
        if x < 0:
            raise ActorError(f"in-port 'in': square root of a negative number ({x})")
        ctx.done({"out": Message.float(math.sqrt(x))})


class MathStats(LibraryActor):
    """Statistics of an Array of numbers.

    Ports: in ``in`` (Array of numbers, not empty) → out ``sum``, ``mean``, ``min``, ``max``
    (numbers; ``mean`` is a Float), ``stats`` (Object ``{count, sum, mean, min, max, std}``,
    ``std`` the population standard deviation). Config: none.
    """

    component = "tpl_math_stats"
    inports = ["in"]
    outports = ["sum", "mean", "min", "max", "stats"]
    inport_types = {"in": "Array"}

    def run(self, ctx: ActorContext) -> None:
        values = input_array(ctx, "in")
        if not values:
            raise ActorError("in-port 'in': the array is empty")
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ActorError(f"in-port 'in': item [{i}] is not a number: {v!r}")
        total = math.fsum(values) if any(isinstance(v, float) for v in values) else sum(values)
        mean = total / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
        lo, hi = min(values), max(values)
        ctx.done({
            "sum": _number_message(total, True),
            "mean": Message.float(float(mean)),
            "min": _number_message(lo, True),
            "max": _number_message(hi, True),
            "stats": Message.object({"count": len(values), "sum": total, "mean": mean,
                                     "min": lo, "max": hi, "std": std}),
        })


class MathRandom(LibraryActor):
    """A random number for every trigger packet.

    Ports: in ``in`` (any, a trigger) → out ``out`` (Float in ``[min, max)``, or Integer in
    ``[min, max]`` when ``integer`` is true). Config: ``min`` (default 0), ``max`` (default 1),
    ``integer`` (bool, default false), ``seed`` (int: a reproducible sequence per node).
    """

    component = "tpl_math_random"
    inports = ["in"]
    outports = ["out"]

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
        if integer:
            ctx.done({"out": Message.integer(rng.randint(math.ceil(lo), math.floor(hi)))})
        else:
            ctx.done({"out": Message.float(rng.uniform(lo, hi))})


MATH_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (MathAdd, MathSubtract, MathMultiply, MathDivide, MathModulo, MathPower,
                MathMin, MathMax, MathCompare, MathRound, MathAbs, MathClamp, MathSqrt,
                MathStats, MathRandom)
}
