"""Sending one API result on a node's out-ports: ``response`` for 2xx, ``error`` (when it is
connected) otherwise, or a failed tick naming the operation and status. A streamed body is
sent on at once and fed while the tick lasts."""

from __future__ import annotations

from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import HttpApiError
from ._table import Operation

__all__ = ["emit_result"]


async def emit_result(
    ctx: ActorContext, op: Operation, result: Any, error_wired: bool, *, final: bool
) -> bool:
    """Send one result on ``response`` (2xx) or ``error``; False when it was an error."""
    ok = 200 <= result.status < 300
    if result.stream is not None and (ok or error_wired):
        # The stream goes on at once; the tick lasts while the body is fed into it.
        await ctx.asend({"response" if ok else "error": result.stream.into_message()})
        await result.pump()
        if final:
            ctx.done()
        return ok
    if result.stream is not None:
        result.stream.close()
        await result.pump()
    message = Message.object(result.as_object())
    if ok:
        if final:
            ctx.done({"response": message})
        else:
            await ctx.asend({"response": message})
        return True
    if error_wired:
        if final:
            ctx.done({"error": message})
        else:
            await ctx.asend({"error": message})
        return False
    raise HttpApiError(
        f"{op.template_id} ({op.method} {op.path}) answered {result.status}"
        + _snippet(result.body),
        operation=op.template_id,
        status=result.status,
    )


def _snippet(body: Any) -> str:
    if body is None:
        return ""
    text = body if isinstance(body, str) else repr(body)
    return ": " + (text[:200] + "…" if len(text) > 200 else text)
