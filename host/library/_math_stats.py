"""Math templates over a list of numbers: sum, average, min/max statistics."""

from __future__ import annotations

import math

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import (
    LibraryActor,
    input_array,
)
from ._math_numbers import _number_message, round_to
from ._sdk_support import precision


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
        ctx.done(
            {
                "sum": _number_message(total, True),
                "mean": Message.float(float(mean)),
                "min": _number_message(lo, True),
                "max": _number_message(hi, True),
                "stats": Message.object(
                    {
                        "count": len(values),
                        "sum": total,
                        "mean": mean,
                        "min": lo,
                        "max": hi,
                        "std": std,
                    }
                ),
            }
        )


def _values(ctx: ActorContext) -> list[float]:
    values = input_array(ctx, "values")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ActorError(f"in-port 'values': item [{i}] is not a number: {v!r}")
    return [float(v) for v in values]


class MathSum(LibraryActor):
    """Sum of an Array of numbers (0 for an empty one).

    Ports: in ``values`` (Array of numbers) → out ``result`` (Float rounded to
    ``precision``). Config: ``precision`` (int 0-15, default 10).
    """

    component = "tpl_math_sum"
    inports = ["values"]
    outports = ["result"]
    inport_types = {"values": "Array"}
    outport_types = {"result": "Float"}

    def run(self, ctx: ActorContext) -> None:
        prec = precision(ctx)
        ctx.done({"result": _number_message(round_to(math.fsum(_values(ctx)), prec), False)})


class MathAverage(LibraryActor):
    """Arithmetic mean of an Array of numbers (0 for an empty one).

    Ports: in ``values`` (Array of numbers) → out ``result`` (Float rounded to
    ``precision``). Config: ``precision`` (int 0-15, default 10).
    """

    component = "tpl_math_average"
    inports = ["values"]
    outports = ["result"]
    inport_types = {"values": "Array"}
    outport_types = {"result": "Float"}

    def run(self, ctx: ActorContext) -> None:
        prec = precision(ctx)
        values = _values(ctx)
        mean = math.fsum(values) / len(values) if values else 0.0
        ctx.done({"result": _number_message(round_to(mean, prec), False)})


class MathStatistics(LibraryActor):
    """Statistics of an Array of numbers.

    Ports: in ``values`` (Array of numbers) → out ``mean``, ``median``, ``stddev``
    (population), ``min``, ``max`` (Floats rounded to ``precision``; not sent for an empty
    Array), ``count`` (Integer). Config: ``precision`` (int 0-15, default 10).
    """

    component = "tpl_math_statistics"
    inports = ["values"]
    outports = ["mean", "median", "stddev", "min", "max", "count"]
    inport_types = {"values": "Array"}
    outport_types = {
        "mean": "Float",
        "median": "Float",
        "stddev": "Float",
        "min": "Float",
        "max": "Float",
        "count": "Integer",
    }

    def run(self, ctx: ActorContext) -> None:
        prec = precision(ctx)
        values = sorted(_values(ctx))
        n = len(values)
        if not n:
            ctx.done({"count": Message.integer(0)})
            return
        mean = math.fsum(values) / n
        mid = n // 2
        median = values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)

        def out(v: float) -> Message:
            return _number_message(round_to(v, prec), False)

        ctx.done(
            {
                "mean": out(mean),
                "median": out(median),
                "stddev": out(std),
                "min": out(values[0]),
                "max": out(values[-1]),
                "count": Message.integer(n),
            }
        )
