"""Helpers shared by the sandbox tests (imported by name: this folder is on sys.path)."""

from __future__ import annotations

import logging
from typing import Any

from reflow._core._messages import Message


class TickCtx:
    """One tick's ctx, per the Actor contract: inputs, config, done/fail/emit/send, pools."""

    def __init__(
        self,
        inputs: dict[str, Message] | None = None,
        config: dict[str, Any] | None = None,
        pools: dict[str, dict[str, Any]] | None = None,
        node: str = "n1",
    ) -> None:
        self.inputs = inputs or {}
        self.config = config or {}
        self.node = node
        self.component = "test"
        self.pools = pools if pools is not None else {}
        self.log = logging.getLogger("reflow.test.tick")
        self.outputs: list[tuple[str, Message]] | None = None
        self.error: str | None = None
        self.sent: list[tuple[str, Message]] = []
        self._emitted: list[tuple[str, Message]] = []

    def done(self, outputs: dict[str, Message] | None = None) -> None:
        assert self.outputs is None and self.error is None, "done/fail called twice"
        self.outputs = [*self._emitted, *(outputs or {}).items()]

    def fail(self, message: str) -> None:
        assert self.outputs is None and self.error is None, "done/fail called twice"
        self.error = str(message)

    def emit(self, port: str, msg: Message) -> None:
        self._emitted.append((port, msg))

    def send(self, messages: dict[str, Message]) -> None:
        self.sent.extend(messages.items())

    def pool_upsert(self, pool: str, id: str, value: Any) -> None:
        self.pools.setdefault(pool, {})[id] = value

    def pool_remove(self, pool: str, id: str) -> None:
        self.pools.get(pool, {}).pop(id, None)

    def pool(self, pool: str) -> dict[str, Any]:
        return dict(self.pools.get(pool, {}))

    def pool_get(self, pool: str, key: str, default: Any = None) -> Any:
        return self.pools.get(pool, {}).get(key, default)

    def pool_count(self, pool: str) -> int:
        return len(self.pools.get(pool, {}))

    def pool_clear(self, pool: str) -> None:
        self.pools.pop(pool, None)
