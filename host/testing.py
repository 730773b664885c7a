"""Testing helpers for actor authors: run one tick of one actor without building a graph.

    from reflow.testing import run_tick

    result = run_tick(Doubler(), {"in": Message.integer(21)})
    assert result.outputs == {"out": [Message.integer(42)]}

The tick runs through the real scheduler (a one-node network), so done/fail rules, message
validation, pools and the execution mode (inline, async, worker) are exactly those of a graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ._core._actor import Actor
from ._core._network import Network
from ._core._nodes import ActorFailure
from ._errors import ActorError, PackFormatError

__all__ = ["TickResult", "run_tick", "run_ticks", "spec_server"]


@dataclass
class TickResult:
    """What one or more ticks produced: packets per out-port, in order, and failures."""

    outputs: dict[str, list[Any]] = field(default_factory=dict)
    failures: list[ActorFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def values(self, port: str) -> list[Any]:
        """The payloads sent on ``port``."""
        return [m.get("data") for m in self.outputs.get(port, [])]

    def raise_for_failures(self) -> None:
        if self.failures:
            f = self.failures[0]
            raise ActorError(str(f), node=f.node, component=f.component)


def run_ticks(
    actor: Actor,
    ticks: list[dict[str, Any]],
    config: dict[str, Any] | None = None,
    *,
    timeout: float | None = 30.0,
) -> TickResult:
    """Run ``actor`` once per entry of ``ticks`` (each a {port: message} dict), in order, on
    one node — so pools persist from tick to tick — and collect everything it sent."""
    net = Network()
    net.register_actor("actor", actor)
    net.add_node("node", "actor", config)
    colls = {port: net.collect("node", port) for port in actor.outports}
    result = TickResult()
    try:
        if not ticks:
            ticks = [{}]
        for inputs in ticks:
            for port, msg in inputs.items():
                net.add_initial("node", port, msg)
            summary = net.run(timeout=timeout)
            result.failures.extend(summary.failures)
    finally:
        net.shutdown()
    result.outputs = {port: list(c.messages) for port, c in colls.items() if c.messages}
    return result


def run_tick(
    actor: Actor,
    inputs: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    *,
    timeout: float | None = 30.0,
) -> TickResult:
    """Run one tick of ``actor`` with ``inputs`` ({port: message}); see :func:`run_ticks`."""
    return run_ticks(actor, [inputs or {}], config, timeout=timeout)


def spec_server(table: Any, **kwargs: Any) -> Any:
    """A local server implementing an http-api operation table on 127.0.0.1 (a context
    manager whose value has ``.url``); see ``reflow._services._spec_server``.

    ``table`` is the table (a dict or its JSON text) or a ``pathlib.Path`` of an API-service
    pack, whose table it serves (read as data, not verified: nothing of it runs)."""
    from ._services._spec_server import spec_server as serve

    if isinstance(table, os.PathLike):
        table, name = _pack_table(table)
        kwargs.setdefault("pack", name)
    return serve(table, **kwargs)


def _pack_table(path: os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """The operation table of the API-service pack at ``path``, and the pack's name."""
    import json

    from ._services._table_shared import expand_table
    from .abi._bundle import read_bundle

    bundle = read_bundle(path)
    tables = [a.path for a in bundle.manifest.artifacts if a.kind == "http-api"]
    if not tables or tables[0] not in bundle.contents:
        raise PackFormatError(
            f"{os.fspath(path)}: pack {bundle.manifest.name} has no http-api operation table "
            "(spec_server serves API-service packs, made by reflow-pack openapi)",
            pack=bundle.manifest.name,
        )
    return expand_table(json.loads(bundle.contents[tables[0]])), bundle.manifest.name
