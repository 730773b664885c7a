"""reflow._core._actor: the Actor base class and the per-tick context (done/fail/emit/send, pools).

Every context rule is checked for each place a tick can run: inline on the scheduler thread
(untraced, which takes the scheduler's single-edge fast path, and traced, which takes the
general path), as an asyncio task, and on a worker thread (BufferedContext).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reflow import (
    Actor,
    ActorCallContext,
    ActorContext,
    ActorError,
    ActorFailure,
    GraphError,
    Message,
    Network,
    RunSummary,
    TickStateError,
)

MODES = ["inline", "inline-traced", "async", "worker"]

Body = Callable[[Any], None]


def make_actor(
    body: Body,
    mode: str,
    *,
    inports: tuple[str, ...] = ("in",),
    outports: tuple[str, ...] = ("out",),
    component: str = "probe",
) -> Actor:
    """An actor whose tick is ``body(ctx)``, running where ``mode`` says."""
    if mode == "async":

        class AsyncProbe(Actor):
            async def run(self, ctx: Any) -> None:
                await asyncio.sleep(0)
                body(ctx)

        cls: type[Actor] = AsyncProbe
    else:

        class SyncProbe(Actor):
            execution = "worker" if mode == "worker" else "inline"

            def run(self, ctx: Any) -> None:
                body(ctx)

        cls = SyncProbe
    cls.component = component
    cls.inports = list(inports)
    cls.outports = list(outports)
    return cls()


class Tick:
    """The outcome of running one node over some input packets."""

    def __init__(self, out: list[Any], summary: RunSummary, events: list[dict[str, Any]]):
        self.out = out
        self.summary = summary
        self.events = events

    @property
    def errors(self) -> list[str]:
        return [f.error for f in self.summary.failures]


def run_node(
    body: Body, mode: str, inputs: list[Any], config: dict[str, Any] | None = None
) -> Tick:
    """Node ``n`` (in-port ``in``, out-port ``out``) ticks once per input; returns what
    reached ``out`` as payloads, the run summary and the trace events."""
    net = Network()
    net.register_actor("tpl", make_actor(body, mode))
    net.add_node("n", "tpl", config)
    out = net.collect("n", "out")
    stream = net.events() if mode != "inline" else None
    for value in inputs:
        net.add_initial("n", "in", Message.integer(value))
    summary = net.run(timeout=10)
    net.shutdown()
    events = stream.drain() if stream is not None else []
    return Tick(out.values(), summary, events)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- done ------------------------------------------------------------------------------------


def test_done_delivers_outputs(mode: str) -> None:
    def body(ctx: Any) -> None:
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] * 2)})

    t = run_node(body, mode, [1, 2, 3])
    assert t.out == [2, 4, 6]
    assert t.summary.ok
    assert t.summary.node_ticks == {"n": 3}


@pytest.mark.parametrize("outputs", [None, {}, {"out": None}])
def test_done_without_outputs(mode: str, outputs: Any) -> None:
    t = run_node(lambda ctx: ctx.done(outputs), mode, [1])
    assert t.out == []
    assert t.summary.ok


def test_done_accepts_json_dicts(mode: str) -> None:
    t = run_node(lambda ctx: ctx.done({"out": {"type": "String", "data": "s"}}), mode, [1])
    assert t.out == ["s"]
    assert t.summary.ok


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (lambda ctx: (ctx.done(), ctx.done()), "ctx.done() called after the tick"),
        (lambda ctx: (ctx.done(), ctx.fail("x")), "already ended by done()"),
        (lambda ctx: (ctx.fail("x"), ctx.done()), "already ended by fail()"),
        (lambda ctx: (ctx.fail("x"), ctx.fail("y")), "ctx.fail() called after the tick"),
        (lambda ctx: (ctx.done(), ctx.emit("out", Message.flow())), "ctx.emit() called after"),
        (lambda ctx: (ctx.done(), ctx.send({"out": Message.flow()})), "ctx.send() called after"),
        (lambda ctx: None, "run() returned without calling ctx.done()"),
        (lambda ctx: ctx.done({"nope": Message.flow()}), "undeclared out-port 'nope'"),
        (lambda ctx: ctx.send({"nope": Message.flow()}), "undeclared out-port 'nope'"),
        (lambda ctx: ctx.done([("out", Message.flow())]), "expects a dict keyed by output port"),
        (
            lambda ctx: ctx.done({"out": {"type": "Integer", "data": "x"}}),
            "invalid message on port 'out'",
        ),
        (lambda ctx: ctx.done({"out": 5}), "invalid message on port 'out'"),
    ],
)
def test_tick_misuse_fails_that_tick(mode: str, body: Body, fragment: str) -> None:
    t = run_node(body, mode, [1])
    assert not t.summary.ok
    assert t.summary.failure_count == 1
    (failure,) = t.summary.failures
    assert fragment in failure.error
    assert failure.node == "n"
    assert failure.component == "probe"


def test_misuse_raises_tick_state_error_inside_run(mode: str) -> None:
    seen: list[BaseException] = []

    def body(ctx: Any) -> None:
        ctx.done()
        try:
            ctx.done()
        except TickStateError as exc:
            seen.append(exc)

    t = run_node(body, mode, [1])
    assert t.summary.ok  # the actor caught it; the first done() stands
    (exc,) = seen
    assert isinstance(exc, ActorError)
    assert exc.node == "n"
    assert exc.component == "probe"


# -- fail and exceptions ---------------------------------------------------------------------


def test_fail_records_the_reason_and_discards_emits(mode: str) -> None:
    def body(ctx: Any) -> None:
        ctx.emit("out", Message.integer(1))
        ctx.fail("no good")

    t = run_node(body, mode, [1])
    assert t.out == []
    assert t.errors == ["no good"]
    assert not t.summary.ok


def boom(ctx: Any) -> None:
    n = ctx.inputs["in"]["data"]
    if n == 2:
        raise ValueError(f"boom on {n}")
    ctx.done({"out": Message.integer(n)})


def test_exception_becomes_a_failure_and_later_ticks_run(mode: str) -> None:
    t = run_node(boom, mode, [1, 2, 3])
    assert t.out == [1, 3]
    assert t.summary.failure_count == 1
    (failure,) = t.summary.failures
    assert isinstance(failure, ActorFailure)
    assert failure.node == "n"
    assert failure.component == "probe"
    assert failure.error == "ValueError: boom on 2"
    assert "Traceback" in failure.traceback
    assert "in boom" in failure.traceback
    assert isinstance(failure.exception, ValueError)
    assert str(failure) == "node 'n' (probe): ValueError: boom on 2"
    if mode != "inline":
        (ev,) = [e for e in t.events if e["_type"] == "ActorFailed"]
        assert ev["actorId"] == "n"
        assert ev["component"] == "probe"
        assert ev["error"] == "ValueError: boom on 2"
        assert "in boom" in ev["traceback"]


def test_missing_run_is_a_failure() -> None:
    class NoRun(Actor):
        component = "norun"
        inports = ["in"]

    net = Network()
    net.register_actor("t", NoRun())
    net.add_node("n", "t")
    net.add_initial("n", "in", Message.flow())
    summary = net.run(timeout=10)
    net.shutdown()
    (failure,) = summary.failures
    assert "NotImplementedError" in failure.error
    assert "NoRun.run() is not implemented" in failure.error


# -- emit and send ---------------------------------------------------------------------------


def test_emits_are_delivered_in_order_at_done(mode: str) -> None:
    def body(ctx: Any) -> None:
        n = ctx.inputs["in"]["data"]
        ctx.emit("out", Message.integer(n * 10 + 1))
        ctx.emit("out", {"type": "Integer", "data": n * 10 + 2})
        ctx.done({"out": Message.integer(n * 10 + 3)})

    t = run_node(body, mode, [1, 2])
    assert t.out == [11, 12, 13, 21, 22, 23]


def test_send_delivers_before_emits_and_done(mode: str) -> None:
    def body(ctx: Any) -> None:
        ctx.emit("out", Message.string("emitted"))
        ctx.send({"out": Message.string("sent")})
        ctx.done({"out": Message.string("done")})

    t = run_node(body, mode, [1])
    assert t.out == ["sent", "emitted", "done"]


def test_sent_packets_stay_delivered_when_the_tick_fails(mode: str) -> None:
    def body(ctx: Any) -> None:
        ctx.send({"out": Message.string("sent")})
        ctx.emit("out", Message.string("emitted"))
        ctx.fail("late failure")

    t = run_node(body, mode, [1])
    assert t.out == ["sent"]
    assert t.errors == ["late failure"]


def test_emits_of_a_failed_tick_do_not_leak_into_the_next(mode: str) -> None:
    """A tick that emits and then raises (or returns without done) loses its emits; the next
    tick must not deliver them."""

    def body(ctx: Any) -> None:
        n = ctx.inputs["in"]["data"]
        ctx.emit("out", Message.integer(n))
        if n == 1:
            raise RuntimeError("after emit")
        if n == 2:
            return  # no done(): also a failure
        ctx.done()

    t = run_node(body, mode, [1, 2, 3])
    assert t.summary.failure_count == 2
    assert t.out == [3]


def test_send_to_an_unconnected_port_is_dropped_and_counted(mode: str) -> None:
    net = Network()
    net.register_actor("tpl", make_actor(lambda ctx: ctx.done({"out": Message.flow()}), mode))
    net.add_node("n", "tpl")
    net.add_initial("n", "in", Message.flow())
    net.add_initial("n", "in", Message.flow())
    summary = net.run(timeout=10)
    net.shutdown()
    assert summary.ok
    assert summary.dropped == 2


# -- identity, config, logger ----------------------------------------------------------------


def test_ctx_identity_and_config(mode: str) -> None:
    seen: list[tuple[Any, ...]] = []

    def body(ctx: Any) -> None:
        seen.append((ctx.node, ctx.component, dict(ctx.config), dict(ctx.inputs)))
        ctx.done()

    t = run_node(body, mode, [5], config={"factor": 3})
    assert t.summary.ok
    assert seen == [("n", "probe", {"factor": 3}, {"in": Message.integer(5)})]


def test_config_is_copied_at_add_node() -> None:
    cfg = {"k": 1}
    seen: list[Any] = []
    net = Network()
    net.register_actor("t", make_actor(lambda ctx: (seen.append(ctx.config), ctx.done()), "inline"))
    net.add_node("n", "t", cfg)
    cfg["k"] = 2
    net.add_initial("n", "in", Message.flow())
    net.run(timeout=10)
    net.shutdown()
    assert seen == [{"k": 1}]


def test_ctx_logger(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    def body(ctx: Any) -> None:
        assert ctx.logger is ctx.log or ctx.logger == ctx.log
        ctx.log.warning("hello from %s", ctx.node)
        ctx.done()

    with caplog.at_level(logging.INFO):
        t = run_node(body, mode, [1])
    assert t.summary.ok
    records = [r for r in caplog.records if r.getMessage() == "hello from n"]
    assert len(records) == 1
    assert records[0].name == "reflow.actor.probe"
    assert records[0].node == "n"  # type: ignore[attr-defined]


def test_actor_call_context_is_the_sdk_name() -> None:
    assert ActorCallContext is ActorContext


# -- where ticks run -------------------------------------------------------------------------


def test_execution_places(mode: str) -> None:
    where: list[tuple[str, bool]] = []

    def body(ctx: Any) -> None:
        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False
        where.append((threading.current_thread().name, in_loop))
        ctx.done()

    run_node(body, mode, [1])
    ((thread, in_loop),) = where
    if mode == "worker":
        assert thread.startswith("reflow-worker")
        assert not in_loop
    else:
        # run() drives the graph on the calling thread, inside its event loop
        assert thread == threading.current_thread().name
        assert in_loop


@pytest.mark.parametrize(
    ("execution", "error", "fragment"),
    [
        ("threads", ActorError, "execution='threads'"),
        ("", ActorError, "expected one of inline, async, worker"),
    ],
)
def test_bad_execution_is_refused_at_add_node(
    execution: str, error: type[Exception], fragment: str
) -> None:
    class Bad(Actor):
        component = "bad"
        inports = ["in"]

        def run(self, ctx: Any) -> None:
            ctx.done()

    Bad.execution = execution
    net = Network()
    net.register_actor("t", Bad())
    with pytest.raises(error) as info:
        net.add_node("n", "t")
    assert fragment in str(info.value)
    assert "n" not in net.nodes()


# -- pools -----------------------------------------------------------------------------------


def pool_body(ctx: Any) -> None:
    n = ctx.inputs["in"]["data"]
    ctx.pool_upsert("seen", str(n), n)
    if n == 3:
        ctx.pool_remove("seen", "1")
        ctx.pool_remove("seen", "missing")  # no error
        ctx.pool_remove("no such pool", "x")
    if n == 4:
        ctx.pool_clear("seen")
    copy = ctx.pool("seen")
    copy["mutated"] = True  # a copy: the pool is unchanged
    ctx.done(
        {"out": Message.object({"count": ctx.pool_count("seen"), "keys": sorted(ctx.pool("seen"))})}
    )


def test_pools_persist_across_ticks(mode: str) -> None:
    t = run_node(pool_body, mode, [1, 2, 3, 4, 5])
    assert t.summary.ok
    assert t.out == [
        {"count": 1, "keys": ["1"]},
        {"count": 2, "keys": ["1", "2"]},
        {"count": 2, "keys": ["2", "3"]},
        {"count": 0, "keys": []},
        {"count": 1, "keys": ["5"]},
    ]


def test_pools_are_per_node(mode: str) -> None:
    net = Network()
    net.register_actor("tpl", make_actor(pool_body, mode))  # one instance, two nodes
    net.add_node("a", "tpl")
    net.add_node("b", "tpl")
    out_a, out_b = net.collect("a", "out"), net.collect("b", "out")
    for v in (1, 2):
        net.add_initial("a", "in", Message.integer(v))
    net.add_initial("b", "in", Message.integer(7))
    net.add_initial("b", "in", Message.integer(2))
    assert net.run(timeout=10).ok
    # a later run sees the pools as the earlier one left them
    net.add_initial("b", "in", Message.integer(5))
    assert net.run(timeout=10).ok
    net.shutdown()
    assert out_a.values()[-1] == {"count": 2, "keys": ["1", "2"]}
    assert out_b.values() == [
        {"count": 1, "keys": ["7"]},
        {"count": 2, "keys": ["2", "7"]},
        {"count": 3, "keys": ["2", "5", "7"]},
    ]


def test_pool_of_unknown_name_is_empty() -> None:
    seen: list[Any] = []

    def body(ctx: Any) -> None:
        seen.append((ctx.pool("none"), ctx.pool_count("none")))
        ctx.pool_clear("none")
        ctx.done()

    assert run_node(body, "inline", [1]).summary.ok
    assert seen == [({}, 0)]


# -- registering, open_node, close -----------------------------------------------------------


class PerNode(Actor):
    """Returns a fresh actor per node from open_node and counts close() calls."""

    component = "pernode"
    inports = ["in"]
    outports = ["out"]
    opened: list[tuple[str, dict[str, Any]]] = []
    closed: list[str] = []

    def __init__(self, node: str = "") -> None:
        self.node = node

    def open_node(self, node_id: str, config: dict[str, Any]) -> Actor:
        PerNode.opened.append((node_id, config))
        return PerNode(node_id)

    def close(self) -> None:
        PerNode.closed.append(self.node)
        if self.node == "bad":
            raise OSError("cannot close")

    def run(self, ctx: Any) -> None:
        assert self.node == ctx.node
        ctx.done({"out": Message.string(self.node)})


@pytest.fixture
def per_node() -> Iterator[type[PerNode]]:
    PerNode.opened, PerNode.closed = [], []
    yield PerNode


def test_open_node_and_close(per_node: type[PerNode]) -> None:
    net = Network()
    net.register_actor("t", per_node)  # a class is instantiated
    net.add_node("a", "t", {"x": 1})
    net.add_node("bad", "t")
    out = net.collect("a", "out")
    net.add_initial("a", "in", Message.flow())
    assert net.run(timeout=10).ok
    assert out.values() == ["a"]
    assert per_node.opened == [("a", {"x": 1}), ("bad", {})]
    net.shutdown()
    net.shutdown()  # idempotent: close() is not called twice
    assert sorted(per_node.closed) == ["a", "bad"]
    # one close() failing is recorded and does not stop the others
    assert any("close() failed: cannot close" in f.error for f in net.failures)


@pytest.mark.parametrize(
    ("template_id", "actor", "error", "fragment"),
    [
        ("t", object(), GraphError, "expects an Actor instance, got object"),
        ("t", Actor, None, None),
        ("", Actor(), GraphError, "template id must be a non-empty string"),
        (5, Actor(), GraphError, "template id must be a non-empty string"),
    ],
)
def test_register_actor_checks(
    template_id: Any, actor: Any, error: type[Exception] | None, fragment: str | None
) -> None:
    net = Network()
    if error is None:
        net.register_actor(template_id, actor)
        net.add_node("n", template_id)
        return
    with pytest.raises(error) as info:
        net.register_actor(template_id, actor)
    assert fragment is not None and fragment in str(info.value)


def test_pool_get_reads_one_entry() -> None:
    from reflow.testing import run_ticks

    class Remember(Actor):
        component = "remember"
        inports = ["in"]
        outports = ["out"]

        def run(self, ctx: Any) -> None:
            before = ctx.pool_get("seen", "last", "none")
            ctx.pool_upsert("seen", "last", ctx.inputs["in"]["data"])
            ctx.done({"out": Message.string(str(before))})

    result = run_ticks(Remember(), [{"in": Message.integer(1)}, {"in": Message.integer(2)}])
    assert result.values("out") == ["none", "1"]
