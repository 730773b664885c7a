"""What running a network gives back: a :class:`RunSummary` per run, :class:`Collector` s of
the messages that reached a port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._messages import Message
from ._nodes import ActorFailure

__all__ = ["Collector", "RunSummary"]


@dataclass
class RunSummary:
    """What one ``run()`` did. ``ok`` is False when any tick failed."""

    ticks: int
    node_ticks: dict[str, int]
    failures: list[ActorFailure]
    failure_count: int
    overflowed: int
    dropped: int
    elapsed: float
    pending: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure_count == 0

    def raise_for_failures(self) -> None:
        """Raise :class:`~reflow.ActorError` for the first failure, if any."""
        if self.failures:
            from .._errors import ActorError

            first = self.failures[0]
            more = f" (and {self.failure_count - 1} more)" if self.failure_count > 1 else ""
            raise ActorError(f"{first}{more}", node=first.node, component=first.component)


class Collector:
    """The messages that reached a port, in arrival order. Unbounded: meant for results
    and tests, not for a firehose (use an actor for that)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.messages: list[Message] = []

    def values(self) -> list[Any]:
        """The payloads (``message["data"]``) of the collected messages."""
        return [m.get("data") for m in self.messages]

    def clear(self) -> None:
        self.messages.clear()

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __getitem__(self, i: int) -> Message:
        return self.messages[i]

    def __repr__(self) -> str:
        return f"<Collector {self.label}: {len(self.messages)} messages>"
