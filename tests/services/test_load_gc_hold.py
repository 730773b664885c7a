"""load_pack and the cyclic collector (reflow._loader._packs._collector_paused): while a pack's
manifest and table are parsed, only full collections wait (the collector stays enabled, young
collections run); before and after the parses nothing is held, and the oldest generation's
threshold is put back as it was."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from svctest import Packs, op, param, table

import reflow._loader._packs as packs_module
from reflow._core import _gcdefer


def _big_table(n: int) -> dict[str, Any]:
    path = [param("name", "path", {"type": "string"})]
    return table(
        {f"op_{i}": op("GET", f"/v{i}/{{name}}", path) for i in range(n)},
        servers=[{"url": "http://127.0.0.1:9"}],
    )


@pytest.mark.parametrize("operations", [1, 300])
def test_only_full_collections_wait_and_only_while_parsing(
    packs: Packs, monkeypatch: pytest.MonkeyPatch, operations: int
) -> None:
    seen: dict[str, tuple[bool, bool]] = {}
    real_head, real_actors = packs_module.read_head, packs_module._create_actors

    def read_head(*args: Any, **kwargs: Any) -> Any:
        seen["read_head"] = (gc.isenabled(), _gcdefer.holding())
        return real_head(*args, **kwargs)

    def create_actors(*args: Any, **kwargs: Any) -> Any:
        seen["create_actors"] = (gc.isenabled(), _gcdefer.holding())
        return real_actors(*args, **kwargs)

    def verify_head(*args: Any, **kwargs: Any) -> Any:
        seen["verify_head"] = (gc.isenabled(), _gcdefer.holding())
        return real_verify(*args, **kwargs)

    real_verify = packs_module.verify_head
    monkeypatch.setattr(packs_module, "read_head", read_head)
    monkeypatch.setattr(packs_module, "_create_actors", create_actors)
    monkeypatch.setattr(packs_module, "verify_head", verify_head)
    before = gc.get_threshold()
    collections = gc.get_stats()[0]["collections"]
    packs.load(_big_table(operations), "http://127.0.0.1:9")
    assert seen["read_head"] == (True, True)
    assert seen["create_actors"] == (True, True)
    assert seen["verify_head"] == (True, False)  # signatures are checked with nothing held
    assert gc.isenabled() and not _gcdefer.holding()
    assert gc.get_threshold() == before
    if operations > 1:  # a big parse allocates enough for young collections to run
        assert gc.get_stats()[0]["collections"] > collections


def test_a_threshold_changed_meanwhile_is_kept(
    packs: Packs, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_actors = packs_module._create_actors
    t0, t1, t2 = gc.get_threshold()

    def create_actors(*args: Any, **kwargs: Any) -> Any:
        gc.set_threshold(t0, t1, 25)  # someone else's choice, made during the load
        return real_actors(*args, **kwargs)

    monkeypatch.setattr(packs_module, "_create_actors", create_actors)
    try:
        packs.load(_big_table(2), "http://127.0.0.1:9")
        assert gc.get_threshold() == (t0, t1, 25)
    finally:
        gc.set_threshold(t0, t1, t2)
