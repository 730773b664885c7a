"""What a policy is: the tick it wraps, the outcome it returns, the base class plugins use.

Kept below both the declarations (``_policies``) and the runner (``_policies_runner``), which
import it; it imports neither.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._messages import Message

__all__ = ["Policy", "Proceed", "TickCall", "TickOutcome"]


@dataclass
class TickCall:
    """One tick as policies see it: whose, with what inputs and config, which attempt."""

    node: str
    component: str
    inputs: dict[str, Message]
    config: dict[str, Any]
    attempt: int = 0


@dataclass
class TickOutcome:
    """What one attempt (or the whole tick) came to. ``error`` is the exception raised, or an
    :class:`~reflow.ActorError` for ``ctx.fail(message)`` (then ``fail_message`` is set);
    ``pairs``: the packets ``done`` would deliver; ``sent``: packets already went out
    mid-tick (``send``) or a Stream was among them — never retried, never cached."""

    pairs: list[tuple[str, Message]] = field(default_factory=list)
    error: BaseException | None = None
    fail_message: str | None = None
    sent: bool = False
    attempts: int = 1
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


Proceed = Callable[[TickCall], Awaitable[TickOutcome]]


class Policy:
    """Base of a policy object; plugins return one from ``reflow_policy(name, config)``.

    ``around(call, proceed)`` is awaited once per tick on the scheduler's event loop (inside
    the cache, outside retries); it calls ``await proceed(call)`` zero or more times and
    returns a :class:`TickOutcome`. It must not block: ``await`` instead.
    ``snapshot()``/``restore()`` carry the policy's own state for checkpoints.
    """

    name = "policy"

    async def around(self, call: TickCall, proceed: Proceed) -> TickOutcome:
        return await proceed(call)

    def snapshot(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        return None
