"""Checkpoint stores (issue 14, Deliver 2-3): one table of store behaviour run on SQLite,
a real PostgreSQL and a real redis-server; durable runs round-trip through each; unreachable
or malformed store URLs give a CheckpointError naming them, in bounded time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from _durable_support import durable_pg, durable_redis, free_port, store_url  # noqa: F401

from reflow import (
    Actor,
    CheckpointConfigError,
    CheckpointStore,
    CheckpointStoreError,
    Every,
    Message,
    Network,
    PostgresCheckpointStore,
    RedisCheckpointStore,
    SqliteCheckpointStore,
)
from reflow._core._checkpoint_open import open_store


def _open(url: str) -> CheckpointStore:
    store, _ = open_store(url)
    return store


# -- the store contract, on every backend --------------------------------------------------------
def test_put_latest_list_delete(store_url: str) -> None:  # noqa: F811
    with _open(store_url) as store:
        assert store.latest("a") is None
        assert store.list("a") == []
        store.put("a", 1, b"one")
        store.put("a", 2, b"two\x00\xff")
        store.put("b", 7, b"other run")
        got = store.latest("a")
        assert got is not None and (got.run_id, got.seq, got.data) == ("a", 2, b"two\x00\xff")
        assert store.list("a") == [1, 2]
        store.put("a", 3, b"three")  # keep=2: the oldest goes in the same transaction
        assert store.list("a") == [2, 3]
        assert store.list("b") == [7]
        assert store.delete("a") == 2
        assert store.latest("a") is None
        assert store.latest("b") is not None and store.latest("b").data == b"other run"  # type: ignore[union-attr]


def test_big_checkpoint_round_trips(store_url: str) -> None:  # noqa: F811
    blob = bytes(range(256)) * 8192  # 2 MiB, every byte value
    with _open(store_url) as store:
        store.put("big", 1, blob)
        got = store.latest("big")
        assert got is not None and got.data == blob


def test_closed_store_raises_and_close_is_idempotent(store_url: str) -> None:  # noqa: F811
    store = _open(store_url)
    store.close()
    store.close()
    with pytest.raises(CheckpointStoreError, match="closed"):
        store.latest("a")
    with pytest.raises(CheckpointStoreError, match="closed"):
        store.put("a", 1, b"x")


# -- durable runs through each backend -----------------------------------------------------------
class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no tick catches it."""


class Count(Actor):
    component = "durable_count"
    inports: list[str] = []
    outports = ["out"]

    def __init__(self, n: int) -> None:
        self.n = n

    def run(self, ctx: Any) -> None:
        pos = ctx.pool_get("p", "next", 0)
        end = min(pos + 5, self.n)
        for i in range(pos, end):
            ctx.emit("out", Message.integer(i))
        ctx.pool_upsert("p", "next", end)
        if end < self.n:
            ctx.wake_after(0)
        ctx.done()


class Keep(Actor):
    component = "durable_keep"
    inports = ["in"]
    outports: list[str] = []
    sequenced = True

    def __init__(self, crash_at: int | None = None) -> None:
        self.seen: dict[int, int] = {}
        self.crash_at = crash_at

    def run(self, ctx: Any) -> None:
        if ctx.seq == self.crash_at:
            raise Crash
        self.seen[ctx.seq] = ctx.inputs["in"]["data"]
        ctx.done()


def _net(n: int, sink: Keep) -> Network:
    net = Network()
    net.register_actor("count", Count(n))
    net.register_actor("keep", sink)
    net.add_node("src", "count")
    net.add_node("sink", "keep")
    net.add_connection("src", "out", "sink", "in")
    return net


def test_crash_and_resume_through_the_store(store_url: str) -> None:  # noqa: F811
    first = Keep(crash_at=333)
    net = _net(500, first)
    with pytest.raises(Crash):
        net.run(run_id="rt", checkpoint=store_url, checkpoint_every=Every(ticks=50))
    assert len(first.seen) == 333
    second = Keep()
    again = _net(500, second)
    summary = again.run(run_id="rt", checkpoint=store_url, resume=True)
    again.shutdown()
    assert summary.ok
    assert min(second.seen) <= 333 <= max(second.seen)  # went on from a checkpoint before 333
    merged = {**first.seen, **second.seen}
    assert merged == {i: i for i in range(500)}  # seq k carried packet k, every one arrived
    with _open(store_url) as store:
        assert store.list("rt")  # the finished run's last checkpoint


# -- bad store arguments and unreachable stores ----------------------------------------------------
def _closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


BAD_URLS: list[tuple[Any, type[Exception], str]] = [
    ("ftp://example.com/x", CheckpointConfigError, "unknown scheme 'ftp'"),
    ("no-scheme.db", CheckpointConfigError, "expected one of sqlite:///path"),
    ("", CheckpointConfigError, "unknown scheme"),
    ("sqlite://", CheckpointConfigError, "expected a file path"),
    (42, CheckpointConfigError, "expected a CheckpointStore"),
    ("sqlite:///nonexistent-dir-reflow/x/y.db", CheckpointStoreError, "cannot be opened"),
    ("sqlite://{tmp}", CheckpointStoreError, "cannot be opened"),  # a directory
    ("postgresql://reflow:s3cret@127.0.0.1:{port}/db", CheckpointStoreError, "cannot be reached"),
    ("redis://:s3cret@127.0.0.1:{port}/0", CheckpointStoreError, "cannot be reached"),
    ("redis://127.0.0.1:notaport/0", CheckpointStoreError, "cannot be reached"),
]


@pytest.mark.parametrize(("url", "error", "fragment"), BAD_URLS)
def test_bad_or_unreachable_store(
    url: Any, error: type[Exception], fragment: str, tmp_path: Path
) -> None:
    if isinstance(url, str):
        url = url.replace("{tmp}", str(tmp_path)).replace("{port}", str(_closed_port()))
    net = _net(10, Keep())
    t0 = time.monotonic()
    with pytest.raises(error) as info:
        net.run(run_id="bad", checkpoint=url)
    assert time.monotonic() - t0 < 15  # bounded: connect timeouts, no retries forever
    assert fragment in str(info.value)
    assert "s3cret" not in str(info.value)
    if isinstance(info.value, CheckpointStoreError) and isinstance(url, str):
        assert info.value.store  # names the store
    assert net.run().ok  # the network was not touched: it still runs, not durably


def test_sqlite_store_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(CheckpointConfigError, match="synchronous"):
        SqliteCheckpointStore(tmp_path / "a.db", synchronous="OFF")
    with pytest.raises(CheckpointConfigError, match="keep"):
        SqliteCheckpointStore(tmp_path / "a.db", keep=0)


@pytest.mark.parametrize("keep", [0, -1, 1001, True, 2.5, "2"])
@pytest.mark.parametrize(
    "make",
    [
        lambda keep, tmp: SqliteCheckpointStore(tmp / "a.db", keep=keep),
        lambda keep, tmp: PostgresCheckpointStore("postgresql://127.0.0.1:1/x", keep=keep),
        lambda keep, tmp: RedisCheckpointStore("redis://127.0.0.1:1/0", keep=keep),
    ],
    ids=["sqlite", "postgresql", "redis"],
)
def test_every_store_checks_keep_before_connecting(make: Any, keep: Any, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(CheckpointConfigError, match=r"keep=.*expected 1 to 1000"):
        make(keep, tmp_path)
    assert time.monotonic() - start < 2  # refused up front, not after a connect timeout
