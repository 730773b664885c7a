"""Resuming durable runs (issue 14, Deliver 1 and the bad-input rules).

Resume in a new process; what a checkpoint restores (pools, actor state, policy state, ticks
in flight on async and worker nodes, ``ctx.seq``); the events; streams put checkpoints off.
Bad input, each a table: checkpoints of another graph, of another format version, corrupt
ones (written by hand: truncated, not JSON, digest mismatch, values that are not what the
format says) — refused with a CheckpointError subclass and never half-applied (the network
still runs from scratch afterwards); bad arguments.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from reflow import (
    Actor,
    CheckpointConfigError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointStateError,
    CheckpointVersionError,
    Every,
    Message,
    Network,
    SqliteCheckpointStore,
    Stream,
    TickStateError,
)
from reflow._core._checkpoint_format import MAGIC, decode

SCRIPT = Path(__file__).with_name("_durable_chain.py")


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no tick catches it."""


class Count(Actor):
    component = "durable_count"
    inports: list[str] = []
    outports = ["out"]

    def __init__(self, n: int, chunk: int = 5) -> None:
        self.n = n
        self.chunk = chunk

    def run(self, ctx: Any) -> None:
        pos = ctx.pool_get("p", "next", 0)
        end = min(pos + self.chunk, self.n)
        for i in range(pos, end):
            ctx.emit("out", Message.integer(i))
        ctx.pool_upsert("p", "next", end)
        if end < self.n:
            ctx.wake_after(0)
        ctx.done()


class Inc(Actor):
    component = "durable_inc"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] + 1)})


class AsyncInc(Inc):
    component = "durable_async_inc"

    async def run(self, ctx: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] + 1)})


class WorkerInc(Inc):
    component = "durable_worker_inc"
    execution = "worker"


class Keep(Actor):
    """Records seq -> value; raises Crash at tick ``crash_at``."""

    component = "durable_keep"
    inports = ["in"]
    outports: list[str] = []
    sequenced = True

    def __init__(self, crash_at: int | None = None) -> None:
        self.seen: dict[int, Any] = {}
        self.crash_at = crash_at

    def run(self, ctx: Any) -> None:
        if ctx.seq == self.crash_at:
            raise Crash
        self.seen.setdefault(ctx.seq, ctx.inputs["in"]["data"])
        ctx.done()


def chain(n: int, sink: Keep, mid: type[Actor] = Inc, extra: str | None = None) -> Network:
    net = Network(capacity=8)
    net.register_actor("count", Count(n))
    net.register_actor("inc", mid())
    net.register_actor("keep", sink)
    net.add_node("src", "count")
    net.add_node("inc", "inc")
    net.add_node("sink", "keep")
    net.add_connection("src", "out", "inc", "in")
    net.add_connection("inc", "out", "sink", "in")
    if extra == "node":
        net.add_node("spare", "inc")
    elif extra == "edge":
        net.add_node("spare", "inc")
        net.add_connection("src", "out", "spare", "in")
    elif extra == "template":
        net.register_actor("inc2", AsyncInc())
    return net


def crashed_run(db: Path, n: int = 300, crash_at: int = 150, **kw: Any) -> Keep:
    sink = Keep(crash_at)
    net = chain(n, sink, **kw)
    with pytest.raises(Crash):
        net.run(run_id="r", checkpoint=f"sqlite://{db}", checkpoint_every=Every(ticks=40))
    return sink


def resumed(db: Path, n: int = 300, **kw: Any) -> tuple[Keep, Network]:
    sink = Keep()
    net = chain(n, sink, **kw)
    summary = net.run(run_id="r", checkpoint=f"sqlite://{db}", resume=True)
    assert summary.ok, summary.failures
    return sink, net


# -- resuming ------------------------------------------------------------------------------------
def test_resume_in_a_new_process(tmp_path: Path) -> None:
    url, effects = f"sqlite://{tmp_path / 'c.db'}", tmp_path / "effects.db"
    base = [sys.executable, str(SCRIPT), url, str(effects), "2000", "--every", "50", "--dedupe"]
    died = subprocess.run([*base, "--resume", "false", "--crash-at", "1234"], timeout=120)
    assert died.returncode == 3
    done = subprocess.run([*base, "--resume", "true"], timeout=120, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "finished" in done.stdout
    rows = sqlite3.connect(effects).execute("SELECT seq, id FROM effects ORDER BY seq").fetchall()
    assert rows == [(i, i + 1) for i in range(2000)]


@pytest.mark.parametrize("mid", [Inc, AsyncInc, WorkerInc], ids=["inline", "async", "worker"])
def test_ticks_in_flight_are_run_again(tmp_path: Path, mid: type[Actor]) -> None:
    first = crashed_run(tmp_path / "c.db", 400, 222, mid=mid)
    second, net = resumed(tmp_path / "c.db", 400, mid=mid)
    net.shutdown()
    assert {**first.seen, **second.seen} == {i: i + 1 for i in range(400)}
    assert min(second.seen) <= 222  # resumed from a checkpoint at or before the crash


def test_resume_of_a_finished_run_does_nothing(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path / 'c.db'}"
    net = chain(50, Keep())
    assert net.run(run_id="r", checkpoint=db).ticks > 0
    again = chain(50, Keep())
    summary = again.run(run_id="r", checkpoint=db, resume=True)
    assert summary.ticks == 0


def test_resume_if_exists_starts_afresh_without_a_checkpoint(tmp_path: Path) -> None:
    sink = Keep()
    net = chain(30, sink)
    net.run(run_id="new", checkpoint=f"sqlite://{tmp_path / 'c.db'}", resume="if-exists")
    assert sink.seen == {i: i + 1 for i in range(30)}


class Stateful(Actor):
    """Keeps its state in an attribute, saved with checkpoint_state()."""

    component = "durable_stateful"
    inports = ["in"]
    outports = ["out"]

    def __init__(self) -> None:
        self.total: dict[str, int] = {}

    def run(self, ctx: Any) -> None:
        self.total[ctx.node] = self.total.get(ctx.node, 0) + ctx.inputs["in"]["data"]
        ctx.done({"out": Message.integer(self.total[ctx.node])})

    def checkpoint_state(self, node_id: str) -> Any:
        return {"total": self.total.get(node_id, 0), "blob": b"\x00\x01"}

    def restore_state(self, node_id: str, state: Any) -> None:
        assert state["blob"] == b"\x00\x01"
        self.total[node_id] = state["total"]


def test_actor_state_and_policy_state_are_restored(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path / 'c.db'}"

    def build(sink: Keep) -> Network:
        net = Network()
        net.register_actor("count", Count(100))
        net.register_actor("st", Stateful())
        net.register_actor("keep", sink)
        net.add_node("src", "count")
        net.add_node("st", "st", policies={"cache": {"version": "1"}})
        net.add_node("sink", "keep")
        net.add_connection("src", "out", "st", "in")
        net.add_connection("st", "out", "sink", "in")
        return net

    first = Keep(crash_at=60)
    with pytest.raises(Crash):
        build(first).run(run_id="r", checkpoint=db, checkpoint_every=Every(ticks=10))
    second = Keep()
    net = build(second)
    hits = net.events(kinds=["CacheHit"])
    net.run(run_id="r", checkpoint=db, resume=True)
    merged = {**first.seen, **second.seen}
    assert merged == {i: sum(range(i + 1)) for i in range(100)}  # running sums, as uncrashed
    assert hits.drain() == []  # the inputs were all different; the cache restored cleanly
    runner = net._policy_host.runners["st"]
    assert len(runner.cache.entries) > 60  # entries from before the crash came back


def test_events_written_and_resumed(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    sink = Keep(crash_at=100)
    net = chain(200, sink)
    written = net.events(kinds=["CheckpointWritten"])
    with pytest.raises(Crash):
        net.run(run_id="r", checkpoint=db, checkpoint_every=Every(ticks=30))
    evs = written.drain()
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    assert all(e["runId"] == "r" and e["bytes"] > 0 and e["seconds"] >= 0 for e in evs)
    assert evs[0]["ticks"] == 0 and evs[-1]["ticks"] > evs[1]["ticks"]
    again = chain(200, Keep())
    back = again.events(kinds=["RunResumed"])
    again.run(run_id="r", checkpoint=db, resume=True)
    (ev,) = back.drain()
    assert ev["runId"] == "r" and ev["seq"] == evs[-1]["seq"] and ev["packets"] >= 0


def test_seconds_schedule(tmp_path: Path) -> None:
    class Slow(Inc):
        def run(self, ctx: Any) -> None:
            time.sleep(0.002)
            super().run(ctx)

    net = chain(150, Keep(), mid=Slow)
    written = net.events(kinds=["CheckpointWritten"])
    net.run(
        run_id="r",
        checkpoint=tmp_path / "c.db",
        checkpoint_every=Every(ticks=None, seconds=0.05),
    )
    assert 3 <= len(written.drain()) < 100


class StreamSource(Actor):
    component = "durable_stream_source"
    inports: list[str] = []
    outports = ["out", "n"]

    def run(self, ctx: Any) -> None:
        s = Stream.create(4)
        ctx.send({"out": s.into_message()})
        for i in range(100):
            ctx.send({"n": Message.integer(i)})
        s.send_bytes(b"abc")
        s.end()
        ctx.done()


class StreamTaker(Actor):
    component = "durable_stream_taker"
    inports = ["in"]
    outports: list[str] = []

    def run(self, ctx: Any) -> None:
        ctx.done()


def test_a_stream_in_transit_puts_checkpoints_off(tmp_path: Path) -> None:
    net = Network(capacity=200)
    net.register_actor("s", StreamSource())
    net.register_actor("t", StreamTaker())
    net.register_actor("keep", Keep())
    net.add_node("s", "s")
    net.add_node("t", "t")
    net.add_node("k", "keep")
    net.add_connection("s", "out", "t", "in")
    net.add_connection("s", "n", "k", "in")
    written = net.events(kinds=["CheckpointWritten"])
    assert net.run(run_id="r", checkpoint=tmp_path / "c.db", checkpoint_every=Every(ticks=1)).ok
    store = SqliteCheckpointStore(tmp_path / "c.db")
    found = store.latest("r")
    assert found is not None
    body = decode("r", found.seq, found.data)
    assert body["queues"] == []  # written after the stream was taken, never with it
    assert len(written.drain()) >= 2


def test_seq_needs_sequenced() -> None:
    class Plain(Inc):
        def run(self, ctx: Any) -> None:
            ctx.seq  # noqa: B018
            ctx.done()

    net = chain(3, Keep(), mid=Plain)
    summary = net.run()
    assert summary.failure_count == 3
    assert isinstance(summary.failures[0].exception, TickStateError)
    assert "sequenced = True" in summary.failures[0].error


def test_unwritable_pool_value_stops_the_run(tmp_path: Path) -> None:
    class Odd(Inc):
        def run(self, ctx: Any) -> None:
            ctx.pool_upsert("p", "x", object())
            super().run(ctx)

    net = chain(50, Keep(), mid=Odd)
    with pytest.raises(CheckpointStateError, match="node 'inc': pools: a object value"):
        net.run(run_id="r", checkpoint=tmp_path / "c.db", checkpoint_every=Every(ticks=5))


# -- bad input: another graph --------------------------------------------------------------------
class Dec(Inc):
    component = "durable_dec"


def _other_graph(kind: str, sink: Keep) -> Network:
    if kind == "added node":
        return chain(300, sink, extra="node")
    if kind == "changed edge":
        return chain(300, sink, extra="edge")
    if kind == "changed template":
        return chain(300, sink, mid=Dec)
    net = Network(capacity=8)  # "removed node": src -> sink directly
    net.register_actor("count", Count(300))
    net.register_actor("keep", sink)
    net.add_node("src", "count")
    net.add_node("sink", "keep")
    net.add_connection("src", "out", "sink", "in")
    return net


OTHER_GRAPHS = [
    ("added node", "node 'spare' is new"),
    ("removed node", "node 'inc' is not in this graph"),
    ("changed edge", "connection src.out->spare.in is new"),
    ("changed template", "node 'inc' runs 'durable_dec', the checkpoint's runs 'durable_inc'"),
]


def _untouched(net: Network, sink: Keep, n: int = 300) -> None:
    """The refused network is as built: nothing restored, and it runs from the start."""
    sched = net._sched
    assert all(node.ticks == 0 and not node.pools for node in sched.nodes.values())
    assert net.run().ok
    assert sink.seen[0] in (0, 1) and len(sink.seen) == n


@pytest.mark.parametrize(("kind", "fragment"), OTHER_GRAPHS)
def test_checkpoint_of_another_graph_is_refused(tmp_path: Path, kind: str, fragment: str) -> None:
    crashed_run(tmp_path / "c.db")
    sink = Keep()
    net = _other_graph(kind, sink)
    with pytest.raises(CheckpointMismatchError) as info:
        net.run(run_id="r", checkpoint=tmp_path / "c.db", resume=True)
    assert fragment in str(info.value)
    assert "run 'r'" in str(info.value)
    assert any(fragment in d for d in info.value.differences)
    _untouched(net, sink)


# -- bad input: damaged or foreign bytes, written by hand -----------------------------------------
def _blob(head: dict[str, Any], body: bytes) -> bytes:
    return MAGIC + json.dumps(head).encode() + b"\n" + body


def _signed(body: bytes, **head: Any) -> bytes:
    h = {"format": 1, "run_id": "r", "seq": 9, "size": len(body)}
    h["sha256"] = hashlib.sha256(body).hexdigest()
    h.update(head)
    return _blob(h, body)


def _real(tmp_path: Path) -> tuple[dict[str, Any], bytes]:
    """The body and bytes of a real checkpoint of the chain, to damage."""
    crashed_run(tmp_path / "real.db")
    found = SqliteCheckpointStore(tmp_path / "real.db").latest("r")
    assert found is not None
    return decode("r", found.seq, found.data), found.data


def _edit(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> bytes:
    body = json.loads(json.dumps(body))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return _signed(json.dumps(body).encode())


DAMAGED: list[tuple[str, Any, type[CheckpointError], str]] = [
    ("empty", lambda b, raw: b"", CheckpointCorruptError, "does not start with"),
    ("foreign bytes", lambda b, raw: b"PK\x03\x04" * 40, CheckpointCorruptError, "start with"),
    ("truncated header", lambda b, raw: raw[:20], CheckpointCorruptError, "header line"),
    ("truncated body", lambda b, raw: raw[: len(raw) - 7], CheckpointCorruptError, "bytes, the"),
    (
        "one byte flipped",
        lambda b, raw: raw[:-3] + bytes([raw[-3] ^ 1]) + raw[-2:],
        CheckpointCorruptError,
        "sha256",
    ),
    ("header not JSON", lambda b, raw: MAGIC + b"{nope\n{}", CheckpointCorruptError, "not JSON"),
    ("header a list", lambda b, raw: MAGIC + b"[1]\n{}", CheckpointCorruptError, "JSON object"),
    (
        "no digest",
        lambda b, raw: _blob({"format": 1, "size": 2}, b"{}"),
        CheckpointCorruptError,
        "no size or sha256",
    ),
    (
        "format 2",
        lambda b, raw: _signed(b"{}", format=2),
        CheckpointVersionError,
        "format 2; this host reads format 1",
    ),
    (
        "format missing",
        lambda b, raw: _blob({"size": 2}, b"{}"),
        CheckpointVersionError,
        "format None",
    ),
    (
        "body not JSON",
        lambda b, raw: _signed(b'{"nodes": [1, 2'),
        CheckpointCorruptError,
        "not valid JSON",
    ),
    (
        "body deeply nested",
        lambda b, raw: _signed(b"[" * 100_000 + b"]" * 100_000),
        CheckpointCorruptError,
        "not valid JSON",
    ),
    ("body a list", lambda b, raw: _signed(b"[]"), CheckpointCorruptError, "not a JSON object"),
    (
        "other run's",
        lambda b, raw: _signed(json.dumps(b).encode(), run_id="x"),
        CheckpointCorruptError,
        "written for run 'x'",
    ),
    ("nodes missing", lambda b, raw: _edit(b, ("nodes",), None), CheckpointCorruptError, "missing"),
    (
        "node entry missing",
        lambda b, raw: _edit(b, ("nodes", "inc"), 5),
        CheckpointCorruptError,
        "node 'inc' has no entry",
    ),
    (
        "negative ticks",
        lambda b, raw: _edit(b, ("nodes", "sink", "ticks"), -4),
        CheckpointCorruptError,
        "ticks is -4",
    ),
    (
        "ticks a string",
        lambda b, raw: _edit(b, ("nodes", "sink", "ticks"), "7"),
        CheckpointCorruptError,
        "expected a count",
    ),
    (
        "pools not maps",
        lambda b, raw: _edit(b, ("nodes", "src", "pools"), {"p": 3}),
        CheckpointCorruptError,
        "pools are not maps",
    ),
    (
        "queue row short",
        lambda b, raw: _edit(b, ("queues",), [["src", "out"]]),
        CheckpointCorruptError,
        "queue row",
    ),
    (
        "queue to nowhere",
        lambda b, raw: _edit(b, ("queues",), [["a", "b", "c", "d", []]]),
        CheckpointCorruptError,
        "queue a.b->c.d",
    ),
    (
        "bad message",
        lambda b, raw: _edit(
            b, ("queues",), [["src", "out", "inc", "in", [{"type": "Integer", "data": "x"}]]]
        ),
        CheckpointCorruptError,
        "not a message",
    ),
    (
        "unknown kind",
        lambda b, raw: _edit(b, ("queues",), [["src", "out", "inc", "in", [{"type": "Bogus"}]]]),
        CheckpointCorruptError,
        "unknown message type",
    ),
    (
        "queue from a wrong port",
        lambda b, raw: _edit(b, ("queues",), [["src", "err", "inc", "in", []]]),
        CheckpointCorruptError,
        "queue src.err->inc.in",
    ),
    (
        "queues not a list",
        lambda b, raw: _edit(b, ("queues",), {"a": 1}),
        CheckpointCorruptError,
        "queues is missing",
    ),
    (
        "bad base64",
        lambda b, raw: _edit(
            b, ("nodes", "src", "pools"), {"p": {"x": {"$reflow": "bytes", "b64": "!!"}}}
        ),
        CheckpointCorruptError,
        "base64",
    ),
    (
        "counter missing",
        lambda b, raw: _edit(b, ("counters",), {}),
        CheckpointCorruptError,
        "counter overflowed",
    ),
]


@pytest.mark.parametrize(
    ("name", "make", "error", "fragment"), DAMAGED, ids=[row[0] for row in DAMAGED]
)
def test_damaged_checkpoint_is_refused_and_not_applied(
    tmp_path: Path, name: str, make: Any, error: type[CheckpointError], fragment: str
) -> None:
    body, raw = _real(tmp_path)
    store = SqliteCheckpointStore(tmp_path / "c.db")
    store.put("r", 9, make(body, raw))
    sink = Keep()
    net = chain(300, sink)
    t0 = time.monotonic()
    with pytest.raises(error) as info:
        net.run(run_id="r", checkpoint=store, resume=True)
    assert time.monotonic() - t0 < 5
    assert fragment in str(info.value), str(info.value)
    assert info.value.run_id == "r"
    _untouched(net, sink)


def test_no_checkpoint_to_resume(tmp_path: Path) -> None:
    sink = Keep()
    net = chain(300, sink)
    with pytest.raises(CheckpointNotFoundError, match="holds no checkpoint for run 'ghost'"):
        net.run(run_id="ghost", checkpoint=tmp_path / "c.db", resume=True)
    _untouched(net, sink)


# -- bad arguments ---------------------------------------------------------------------------------
BAD_ARGS: list[tuple[dict[str, Any], str]] = [
    ({"run_id": "r"}, "need checkpoint="),
    ({"resume": True}, "need checkpoint="),
    ({"checkpoint_every": Every()}, "need checkpoint="),
    ({"checkpoint": "DB"}, "run_id None"),
    ({"checkpoint": "DB", "run_id": ""}, "run_id ''"),
    ({"checkpoint": "DB", "run_id": " r"}, "without leading or trailing spaces"),
    ({"checkpoint": "DB", "run_id": "r" * 201}, "1 to 200 characters"),
    ({"checkpoint": "DB", "run_id": "a\nb"}, "printable"),
    ({"checkpoint": "DB", "run_id": 5}, "run_id 5"),
    ({"checkpoint": "DB", "run_id": "r", "resume": "yes"}, "resume='yes'"),
    ({"checkpoint": "DB", "run_id": "r", "resume": 1}, "resume=1"),
    ({"checkpoint": "DB", "run_id": "r", "checkpoint_every": 1000}, "expected Every("),
]


@pytest.mark.parametrize(("kwargs", "fragment"), BAD_ARGS)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], fragment: str) -> None:
    if kwargs.get("checkpoint") == "DB":
        kwargs = {**kwargs, "checkpoint": f"sqlite://{tmp_path / 'c.db'}"}
    net = chain(10, Keep())
    with pytest.raises(CheckpointConfigError) as info:
        net.run(**kwargs)
    assert fragment in str(info.value)
    assert net.run().ok
    net2 = chain(10, Keep())
    with pytest.raises(CheckpointConfigError):
        net2.start(**kwargs)
    net2.shutdown()


BAD_EVERY: list[tuple[dict[str, Any], str]] = [
    ({"ticks": 0}, "ticks=0"),
    ({"ticks": True}, "ticks=True"),
    ({"ticks": 1.5}, "ticks=1.5"),
    ({"seconds": 0}, "seconds=0"),
    ({"seconds": float("nan")}, "seconds=nan"),
    ({"seconds": 1e9}, "seconds=1000000000.0"),
    ({"ticks": None}, "both None"),
]


@pytest.mark.parametrize(("kwargs", "fragment"), BAD_EVERY)
def test_bad_every(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CheckpointConfigError, match=fragment.replace("(", r"\(")):
        Every(**kwargs)


def test_resume_on_a_network_that_ran(tmp_path: Path) -> None:
    crashed_run(tmp_path / "c.db")
    net = chain(300, Keep())
    net.run()
    with pytest.raises(CheckpointConfigError, match="has run already"):
        net.run(run_id="r", checkpoint=tmp_path / "c.db", resume=True)


def test_start_is_durable_too(tmp_path: Path) -> None:
    sink = Keep()
    net = chain(100, sink)
    net.start(run_id="bg", checkpoint=tmp_path / "c.db", checkpoint_every=Every(ticks=20))
    net.run(timeout=30)
    net.shutdown()
    assert sink.seen == {i: i + 1 for i in range(100)}
    assert SqliteCheckpointStore(tmp_path / "c.db").list("bg")


def _stateful_net(sink: Keep, actor: Actor) -> Network:
    net = Network()
    net.register_actor("count", Count(100))
    net.register_actor("st", actor)
    net.register_actor("keep", sink)
    net.add_node("src", "count")
    net.add_node("st", "st", policies={"cache": {"version": "1"}})
    net.add_node("sink", "keep")
    net.add_connection("src", "out", "st", "in")
    net.add_connection("st", "out", "sink", "in")
    return net


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("nodes", "st", "policy"), {"cache": {"entries": 5}}),
        (("nodes", "st", "policy"), {"cache": {"entries": {"k": [1, "notbytes"]}}}),
        (("nodes", "st", "state"), {"total": "x"}),
        (("nodes", "st", "state"), None),
    ],
    ids=["cache entries not a map", "cache entry garbage", "state wrong type", "state None"],
)
def test_state_that_does_not_restore_is_refused_and_rolled_back(
    tmp_path: Path, path: tuple[str, ...], value: Any
) -> None:
    class Picky(Stateful):
        def restore_state(self, node_id: str, state: Any) -> None:
            if not isinstance(state, dict) or not isinstance(state.get("total"), int):
                raise ValueError("expected {'total': int}")
            super().restore_state(node_id, state)

    db = tmp_path / "c.db"
    with pytest.raises(Crash):
        _stateful_net(Keep(crash_at=60), Picky()).run(
            run_id="r", checkpoint=db, checkpoint_every=Every(ticks=10)
        )
    store = SqliteCheckpointStore(db)
    found = store.latest("r")
    assert found is not None
    store.put("r", found.seq + 1, _edit(decode("r", found.seq, found.data), path, value))
    actor = Picky()
    actor.total["st"] = 7
    sink = Keep()
    net = _stateful_net(sink, actor)
    with pytest.raises(CheckpointCorruptError, match="restoring node 'st'"):
        net.run(run_id="r", checkpoint=store, resume=True)
    assert actor.total["st"] == 7  # put back
    assert net._policy_host.runners["st"].cache.entries == {}
    assert net.run().ok and len(sink.seen) == 100


class StreamingWorkerSource(Actor):
    """One worker tick that streams 300 packets through ctx.send (it waits for room)."""

    component = "durable_streaming_worker"
    inports: list[str] = []
    outports = ["out"]
    execution = "worker"

    def run(self, ctx: Any) -> None:
        for i in range(300):
            ctx.send({"out": Message.integer(i)})
        ctx.done()


def test_a_hold_that_would_deadlock_is_lifted(tmp_path: Path) -> None:
    """A checkpoint is due while a worker tick streams into an async node it needs to run:
    holding would stop that node, so the hold is lifted; the run ends, nothing lost."""
    sink = Keep()
    net = Network(capacity=1)
    net.register_actor("src", StreamingWorkerSource())
    net.register_actor("inc", AsyncInc())
    net.register_actor("keep", sink)
    net.add_node("src", "src")
    net.add_node("inc", "inc")
    net.add_node("sink", "keep")
    net.add_connection("src", "out", "inc", "in")
    net.add_connection("inc", "out", "sink", "in")
    written = net.events(kinds=["CheckpointWritten"])
    summary = net.run(
        timeout=60, run_id="r", checkpoint=tmp_path / "c.db", checkpoint_every=Every(ticks=1)
    )
    assert summary.ok
    assert sink.seen == {i: i + 1 for i in range(300)}
    assert len(written.drain()) >= 2  # the first and the idle one at least
