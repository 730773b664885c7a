"""Cache policy: hits skip the tick; TTL; SQLite persistence across networks; never a failed,
sent or streamed tick."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from _policies_support import MODES, FakeClock, datas, one_node, scripted

from reflow import Message, Network, PolicyError


@pytest.mark.parametrize("mode", MODES)
def test_a_hit_skips_the_tick_and_delivers_the_cached_outputs(mode: str) -> None:
    actor = scripted(mode)
    net, out = one_node(actor, {"cache": {}}, 7, 8, 7, 7)
    ev = net.events(kinds=["CacheHit"])
    with net:
        summary = net.run(timeout=10)
        hits = [e["actorId"] for e in ev.drain()]
    assert actor.calls == 2 and datas(out) == [7, 8, 7, 7]
    assert hits == ["n", "n"] and summary.failure_count == 0


# script, packets, calls: what is never cached
NOT_CACHED = [
    pytest.param(["raise:RuntimeError:x"], [7, 7, 7], 2, id="failed-tick"),
    pytest.param(["fail:no"], [7, 7, 7], 2, id="fail"),
    pytest.param(["send-ok", "send-ok"], [7, 7], 2, id="sent-mid-tick"),
    pytest.param(["stream-ok", "stream-ok"], [7, 7], 2, id="streamed"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("script", "packets", "calls"), NOT_CACHED)
def test_what_is_never_cached(mode: str, script: list[str], packets: list[int], calls: int) -> None:
    actor = scripted(mode, script)
    net, _ = one_node(actor, {"cache": {}}, *packets)
    with net:
        net.run(timeout=10)
    assert actor.calls == calls


def test_ttl_expires_entries_on_the_injected_clock() -> None:
    clock = FakeClock()
    actor = scripted("inline")
    net, out = one_node(actor, {"cache": {"ttl_s": 60, "clock": clock}}, 1)
    with net:
        net.run(timeout=10)
        clock.advance(59)
        net.add_initial("n", "in", Message.integer(1))
        net.run(timeout=10)
        assert actor.calls == 1
        clock.advance(2)
        net.add_initial("n", "in", Message.integer(1))
        net.run(timeout=10)
    assert actor.calls == 2 and datas(out) == [1, 1, 1]


def test_max_entries_bounds_the_memory_cache() -> None:
    actor = scripted("inline")
    net, _ = one_node(actor, {"cache": {"max_entries": 2}}, 1, 2, 3, 1)
    with net:
        net.run(timeout=10)
    assert actor.calls == 4  # 1 was the least recently used when 3 came


def _run_with(path: Path, packets: list[int], **cache: Any) -> tuple[int, list[Any]]:
    actor = scripted("inline")
    net, out = one_node(actor, {"cache": {"path": str(path), **cache}}, *packets)
    with net:
        net.run(timeout=10)
    return actor.calls, datas(out)


def test_sqlite_cache_persists_across_two_networks(tmp_path: Path) -> None:
    db = tmp_path / "cache.sqlite"
    assert _run_with(db, [1, 2]) == (2, [1, 2])
    assert _run_with(db, [2, 1, 3]) == (1, [2, 1, 3])  # only 3 ran


def test_a_new_version_or_config_misses(tmp_path: Path) -> None:
    db = tmp_path / "cache.sqlite"
    assert _run_with(db, [1], version="1") == (1, [1])
    assert _run_with(db, [1], version="1") == (0, [1])
    assert _run_with(db, [1], version="2") == (1, [1])
    actor = scripted("inline")
    net = Network()
    net.register_actor("t", actor)
    net.add_node("n", "t", {"scale": 3}, policies={"cache": {"path": str(db), "version": "1"}})
    net.add_initial("n", "in", Message.integer(1))
    with net:
        net.run(timeout=10)
    assert actor.calls == 1


def test_a_corrupt_row_is_a_miss(tmp_path: Path) -> None:
    db = tmp_path / "cache.sqlite"
    _run_with(db, [1, 2])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE reflow_cache SET value = ?", (b"\xff\x00garbage",))
    assert _run_with(db, [1, 2]) == (2, [1, 2])
    assert _run_with(db, [1, 2]) == (0, [1, 2])  # rewritten whole


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"this is not a sqlite database" * 100, "cannot open the cache file"),
        (None, "does not exist"),
    ],
)
def test_an_unusable_cache_file_is_a_policy_error(
    tmp_path: Path, content: bytes | None, fragment: str
) -> None:
    path = tmp_path / "c.sqlite" if content is not None else tmp_path / "missing" / "c.sqlite"
    if content is not None:
        path.write_bytes(content)
    net = Network()
    net.register_actor("t", scripted("inline"))
    with pytest.raises(PolicyError, match=fragment) as info:
        net.add_node("n", "t", policies={"cache": {"path": str(path)}})
    assert info.value.node == "n" and info.value.key == "cache.path"
    assert "node 'n'" in str(info.value)
