"""What the math templates share: reading a numeric operand and making a number message."""

from __future__ import annotations

import math

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import input_number
from ._sdk_support import payload, reject

Number = int | float


def _number_message(value: Number, integer: bool) -> Message:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise ActorError(f"result is not a finite number ({value})")
    if integer and isinstance(value, int):
        return Message.integer(value)
    return Message.float(float(value))


def round_to(value: float, decimals: int) -> float:
    """``value`` rounded to ``decimals`` places, halves away from zero (as offbit_reflow)."""
    factor = 10.0**decimals
    scaled = value * factor
    if not math.isfinite(scaled) or abs(scaled) >= 2.0**52:
        return value
    return math.copysign(math.floor(abs(scaled) + 0.5), scaled) / factor


def _operand(ctx: ActorContext, port: str) -> Number:
    """An Integer, Float or numeric String on ``port`` (an Any/Optional number too)."""
    msg = ctx.inputs.get(port)
    if msg is not None and msg["type"] in ("String", "Any", "Optional"):
        data = payload(msg)
        if isinstance(data, str):
            try:
                value = float(data.strip())
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise reject(
                    ctx, f"in-port {port!r}: expected a number, got the String {data[:40]!r}"
                )
            return int(value) if value.is_integer() and "." not in data else value
    return input_number(ctx, port)
