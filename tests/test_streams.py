"""Tests for reflow._core._streams: frames, bounds and blocking, misuse, threads and asyncio."""

from __future__ import annotations

import asyncio
import copy
import gc
import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest

from reflow._core._streams import Stream, StreamChannel, StreamReader, take_stream
from reflow._errors import ReflowError, StreamError

WAIT = 10.0  # generous limit for anything that should happen "soon"; never a performance bound


def reader_of(s: Stream) -> StreamReader:
    return take_stream(s.channel)


def drain(r: StreamReader) -> list[dict[str, Any]]:
    """Every frame up to and including the first closed/timeout one."""
    frames = []
    while True:
        frame = r.recv(0)
        frames.append(frame)
        if frame["kind"] in ("closed", "timeout"):
            return frames


def run_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, errors


# -- misuse ---------------------------------------------------------------------------------


def _full(s: Stream) -> Stream:
    s.send_bytes(b"x")  # buffer_size is 1 in the table below
    return s


def _closed_reader(s: Stream) -> Stream:
    reader_of(s).close()
    return s


MISUSE: list[tuple[str, Callable[[Stream], Any], type[BaseException], str]] = [
    ("send after end", lambda s: (s.end(), s.send_bytes(b"x")), StreamError, "already ended"),
    ("send after error", lambda s: (s.error("e"), s.send_bytes(b"x")), StreamError, "failed"),
    ("send after close", lambda s: (s.close(), s.send_bytes(b"x")), StreamError, "is closed"),
    ("nowait after end", lambda s: (s.end(), s.send_bytes_nowait(b"x")), StreamError, "ended"),
    ("begin after end", lambda s: (s.end(), s.send_begin()), StreamError, "already ended"),
    ("end twice", lambda s: (s.end(), s.end()), StreamError, "already ended"),
    ("error after end", lambda s: (s.end(), s.error("late")), StreamError, "already ended"),
    ("end after error", lambda s: (s.error("e"), s.end()), StreamError, "already failed"),
    ("begin after data", lambda s: (s.send_bytes(b"x"), s.send_begin()), StreamError, "first"),
    ("begin twice", lambda s: (s.send_begin(), s.send_begin()), StreamError, "only once"),
    ("nowait on full", lambda s: _full(s).send_bytes_nowait(b"y"), StreamError, "is full"),
    ("send timeout", lambda s: _full(s).send_bytes(b"y", timeout=0.01), StreamError, "still full"),
    ("send to closed reader", lambda s: _closed_reader(s).send_bytes(b"x"), StreamError, "reader"),
    ("second reader", lambda s: (reader_of(s), reader_of(s)), StreamError, "already has a reader"),
    (
        "second message",
        lambda s: (s.into_message(), s.into_message()),
        StreamError,
        "already turned into a message",
    ),
    ("recv after close", lambda s: _recv_after_close(s), StreamError, "is closed"),
    ("negative timeout_ms", lambda s: reader_of(s).recv(-1), StreamError, "timeout_ms"),
    ("negative send timeout", lambda s: s.send_bytes(b"", timeout=-1), StreamError, "timeout"),
    ("negative size_hint", lambda s: s.send_begin(size_hint=-1), StreamError, "size_hint"),
    ("pickle the channel", lambda s: pickle.dumps(s.channel), StreamError, "cannot be pickled"),
    ("str data", lambda s: s.send_bytes("text"), TypeError, "bytes"),  # type: ignore[arg-type]
    ("int data", lambda s: s.send_bytes_nowait(3), TypeError, "int"),  # type: ignore[arg-type]
    ("metadata list", lambda s: s.send_begin(metadata=[1]), TypeError, "metadata"),  # type: ignore
    ("timeout_ms str", lambda s: reader_of(s).recv("1"), TypeError, "timeout_ms"),  # type: ignore
]


def _recv_after_close(s: Stream) -> None:
    r = reader_of(s)
    r.close()
    r.recv(0)


@pytest.mark.parametrize(
    ("action", "error", "fragment"),
    [row[1:] for row in MISUSE],
    ids=[row[0] for row in MISUSE],
)
def test_misuse_raises(
    action: Callable[[Stream], Any], error: type[BaseException], fragment: str
) -> None:
    s = Stream.create(1)
    with pytest.raises(error, match=fragment) as info:
        action(s)
    if error is StreamError:
        assert f"stream {s.stream_id}" in str(info.value)
        assert isinstance(info.value, ReflowError)


CREATE_MISUSE: list[tuple[dict[str, Any], type[BaseException], str]] = [
    ({"buffer_size": -1}, StreamError, "buffer_size must be >= 0"),
    ({"buffer_size": "4"}, TypeError, "buffer_size must be an int"),
    ({"buffer_size": True}, TypeError, "buffer_size must be an int"),
    ({"content_type": 3}, TypeError, "content_type"),
    ({"origin_actor": b"a"}, TypeError, "origin_actor"),
]


@pytest.mark.parametrize(("kwargs", "error", "fragment"), CREATE_MISUSE)
def test_create_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[BaseException], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        Stream.create(**kwargs)


def test_take_stream_needs_a_channel() -> None:
    with pytest.raises(TypeError, match="StreamChannel"):
        take_stream({"stream_id": 1})  # type: ignore[arg-type]


def test_second_reader_names_the_stream_and_first_keeps_working() -> None:
    s = Stream.create()
    first = reader_of(s)
    with pytest.raises(StreamError, match=f"stream {s.stream_id} already has a reader"):
        s.channel.take_reader()
    s.send_bytes(b"still mine")
    assert first.recv(0) == {"kind": "data", "data": b"still mine"}


# -- frames -----------------------------------------------------------------------------------


def test_frames_in_order_then_closed() -> None:
    s = Stream.create(content_type="text/plain")
    r = reader_of(s)
    s.send_begin(size_hint=6, metadata={"lang": "en"})
    s.send_bytes(b"abc")
    s.send_bytes(b"def")
    s.end()
    assert drain(r) == [
        {"kind": "begin", "content_type": "text/plain", "size_hint": 6, "metadata": {"lang": "en"}},
        {"kind": "data", "data": b"abc"},
        {"kind": "data", "data": b"def"},
        {"kind": "end"},
        {"kind": "closed"},
    ]
    assert r.recv(0) == {"kind": "closed"}  # and stays closed


def test_begin_defaults() -> None:
    s = Stream.create()
    r = reader_of(s)
    s.send_begin(content_type="audio/wav")
    assert r.recv(0) == {
        "kind": "begin",
        "content_type": "audio/wav",
        "size_hint": None,
        "metadata": {},
    }


def test_error_frame() -> None:
    s = Stream.create()
    r = reader_of(s)
    s.send_bytes(b"part")
    s.error("disk full")
    assert drain(r) == [
        {"kind": "data", "data": b"part"},
        {"kind": "error", "error": "disk full"},
        {"kind": "closed"},
    ]


def test_end_and_error_never_wait_on_a_full_stream() -> None:
    s = Stream.create(1)
    r = reader_of(s)
    s.send_bytes(b"fills it")
    s.end()
    assert [f["kind"] for f in drain(r)] == ["data", "end", "closed"]


@pytest.mark.parametrize("how", ["close", "drop", "with-block"])
def test_producer_gone_without_end_gives_closed_after_queued_frames(how: str) -> None:
    s = Stream.create()
    r = reader_of(s)
    s.send_bytes(b"last words")
    if how == "close":
        s.close()
        s.close()  # idempotent
    elif how == "drop":
        del s
        gc.collect()
    else:
        with s:
            pass
    assert drain(r) == [{"kind": "data", "data": b"last words"}, {"kind": "closed"}]


def test_close_after_end_keeps_the_end() -> None:
    s = Stream.create()
    r = reader_of(s)
    s.end()
    s.close()
    assert [f["kind"] for f in drain(r)] == ["end", "closed"]


def test_with_block_turns_an_exception_into_an_error_frame() -> None:
    s = Stream.create()
    r = reader_of(s)
    with pytest.raises(ValueError), s:
        s.send_bytes(b"1")
        raise ValueError("bad input")
    assert drain(r)[1:] == [{"kind": "error", "error": "ValueError: bad input"}, {"kind": "closed"}]


def test_timeout_frames() -> None:
    s = Stream.create()
    r = reader_of(s)
    assert r.recv(0) == {"kind": "timeout"}
    assert r.recv(10) == {"kind": "timeout"}
    s.send_bytes(b"now")
    assert r.recv(10) == {"kind": "data", "data": b"now"}


def test_recv_waits_for_a_frame_from_another_thread() -> None:
    s = Stream.create()
    r = reader_of(s)
    go = threading.Event()
    t, errors = run_thread(lambda: (go.wait(WAIT), s.send_bytes(b"late")))
    go.set()
    assert r.recv(int(WAIT * 1000)) == {"kind": "data", "data": b"late"}
    t.join(WAIT)
    assert not errors


def test_bytes_are_queued_as_given_and_buffers_copied_once() -> None:
    s = Stream.create()
    r = reader_of(s)
    payload = b"x" * 1024
    buf = bytearray(b"mutable")
    s.send_bytes(payload)
    s.send_bytes(buf)
    s.send_bytes(memoryview(b"0123456789")[2:5])
    buf[:] = b"changed"
    first, second, third = r.recv(0), r.recv(0), r.recv(0)
    assert first["data"] is payload
    assert second["data"] == b"mutable" and type(second["data"]) is bytes
    assert third["data"] == b"234" and type(third["data"]) is bytes


def test_empty_data_frame_is_data() -> None:
    s = Stream.create()
    r = reader_of(s)
    s.send_bytes(b"")
    s.end()
    assert list(r) == [b""]


# -- iteration and closing the reader ---------------------------------------------------------


def test_iteration_yields_data_until_end() -> None:
    s = Stream.create()
    r = reader_of(s)
    s.send_begin()
    for chunk in (b"a", b"b", b"c"):
        s.send_bytes(chunk)
    s.end()
    assert list(r) == [b"a", b"b", b"c"]
    assert list(r) == []  # the end was consumed: nothing more, no error


@pytest.mark.parametrize(
    ("finish", "fragment"),
    [
        (lambda s: s.error("codec failed"), "failed: codec failed"),
        (lambda s: s.close(), "closed by its producer before end"),
    ],
    ids=["error", "closed"],
)
def test_iteration_raises_when_the_stream_ends_badly(
    finish: Callable[[Stream], None], fragment: str
) -> None:
    s = Stream.create()
    r = reader_of(s)
    s.send_bytes(b"a")
    finish(s)
    got = []
    with pytest.raises(StreamError, match=fragment):
        for chunk in r:
            got.append(chunk)
    assert got == [b"a"]


def test_reader_close_is_idempotent_and_a_context_manager() -> None:
    s = Stream.create()
    with reader_of(s) as r:
        assert not r.closed
    assert r.closed
    r.close()
    with pytest.raises(StreamError, match="is closed"):
        r.recv(0)


def test_end_after_reader_closed_is_quiet() -> None:
    s = Stream.create()
    reader_of(s).close()
    s.end()  # a producer's normal finish does not fail because nobody listens any more
    with pytest.raises(StreamError, match="already ended"):
        s.send_bytes(b"x")


def test_closing_the_reader_wakes_a_thread_blocked_in_recv() -> None:
    s = Stream.create()
    r = reader_of(s)
    waiting = threading.Event()

    def consume() -> None:
        waiting.set()
        r.recv(int(WAIT * 1000))

    t, errors = run_thread(consume)
    waiting.wait(WAIT)
    r.close()
    t.join(WAIT)
    assert not t.is_alive()
    # Either it was already waiting (woken with an error) or it started after the close.
    assert len(errors) == 1 and isinstance(errors[0], StreamError)


# -- bounds and blocking ----------------------------------------------------------------------


def test_buffer_size_bounds_queued_frames() -> None:
    s = Stream.create(4)
    r = reader_of(s)
    for i in range(4):
        s.send_bytes_nowait(b"%d" % i)
    with pytest.raises(StreamError, match=r"is full \(4 of 4"):
        s.send_bytes_nowait(b"4")
    assert r.recv(0)["data"] == b"0"
    s.send_bytes_nowait(b"4")  # room again


def test_unbounded_stream_never_waits() -> None:
    s = Stream.create(0)
    r = reader_of(s)
    for i in range(1000):
        s.send_bytes_nowait(b"%d" % i)
    assert [r.recv(0)["data"] for _ in range(1000)] == [b"%d" % i for i in range(1000)]


def test_blocked_producer_waits_then_resumes() -> None:
    s = Stream.create(2)
    r = reader_of(s)
    sent = threading.Event()

    def produce() -> None:
        s.send_bytes(b"1")
        s.send_bytes(b"2")
        s.send_bytes(b"3")  # the stream is full: waits for the reader
        sent.set()

    t, errors = run_thread(produce)
    assert not sent.wait(0.05)  # still waiting: nothing has been read
    assert r.recv(int(WAIT * 1000))["data"] == b"1"
    assert sent.wait(WAIT)
    t.join(WAIT)
    assert not errors
    assert [r.recv(0)["data"] for _ in range(2)] == [b"2", b"3"]


def test_send_timeout_queues_nothing() -> None:
    s = Stream.create(1)
    r = reader_of(s)
    s.send_bytes(b"1")
    with pytest.raises(StreamError, match="still full"):
        s.send_bytes(b"2", timeout=0.01)
    s.end()
    assert [f["kind"] for f in drain(r)] == ["data", "end", "closed"]


@pytest.mark.parametrize("how", ["close", "drop"])
def test_blocked_producer_gets_an_error_when_the_reader_goes(how: str) -> None:
    s = Stream.create(1)
    r = reader_of(s)
    s.send_bytes(b"1")
    t, errors = run_thread(lambda: s.send_bytes(b"2"))
    t.join(0.05)
    assert t.is_alive()  # blocked on the full stream
    if how == "close":
        r.close()
    else:
        del r
        gc.collect()
    t.join(WAIT)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], StreamError)
    assert "reader" in str(errors[0])


def test_ten_thousand_frames_across_threads_through_a_four_frame_buffer() -> None:
    n = 10_000
    s = Stream.create(4)
    r = reader_of(s)

    def produce() -> None:
        for i in range(n):
            s.send_bytes(i.to_bytes(4, "big"))
        s.end()

    t, errors = run_thread(produce)
    received = []
    most_queued = 0
    while True:
        frame = r.recv(int(WAIT * 1000))
        most_queued = max(most_queued, len(s.channel._frames))
        if frame["kind"] != "data":
            break
        received.append(int.from_bytes(frame["data"], "big"))
    t.join(WAIT)
    assert not errors
    assert frame == {"kind": "end"}
    assert received == list(range(n))
    assert most_queued <= 4


def test_two_producer_threads_share_one_bounded_stream() -> None:
    s = Stream.create(3)
    r = reader_of(s)
    threads = [
        run_thread(lambda tag=tag: [s.send_bytes(b"%s%d" % (tag, i)) for i in range(500)])
        for tag in (b"a", b"b")
    ]
    got = [r.recv(int(WAIT * 1000))["data"] for _ in range(1000)]
    for t, errors in threads:
        t.join(WAIT)
        assert not errors
    for tag in (b"a", b"b"):  # each producer's frames stay in its own order
        assert [g for g in got if g.startswith(tag)] == [b"%s%d" % (tag, i) for i in range(500)]


# -- messages -------------------------------------------------------------------------------


def test_into_message_carries_the_channel() -> None:
    from reflow._core._messages import Message

    s = Stream.create(8, "node1", "out", content_type="application/json")
    m = s.into_message()
    assert isinstance(m, Message)
    assert m["type"] == "Stream" and m["data"] is s.channel
    assert isinstance(m["data"], StreamChannel)
    assert m.as_json() == {
        "type": "Stream",
        "data": {
            "stream_id": s.stream_id,
            "content_type": "application/json",
            "origin_actor": "node1",
            "origin_port": "out",
            "size_hint": None,
        },
    }
    assert copy.deepcopy(m)["data"] is s.channel  # a live channel is shared, never copied
    s.send_bytes(b"{}")  # the producer keeps working after into_message()
    r = m.take_stream()
    assert isinstance(r, StreamReader)
    assert r.recv(0) == {"kind": "data", "data": b"{}"}


def test_locator_defaults_and_size_hint_from_begin() -> None:
    s = Stream.create()
    assert s.channel.locator() == {
        "stream_id": s.stream_id,
        "content_type": None,
        "origin_actor": "",
        "origin_port": "",
        "size_hint": None,
    }
    s.send_begin(content_type="image/png", size_hint=42)
    assert s.channel.locator()["size_hint"] == 42
    assert s.channel.locator()["content_type"] == "image/png"


def test_stream_ids_are_unique_and_increasing() -> None:
    ids = [Stream.create().stream_id for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


# -- asyncio ----------------------------------------------------------------------------------


def test_arecv_does_not_block_the_event_loop() -> None:
    async def main() -> dict[str, Any]:
        s = Stream.create()
        r = reader_of(s)

        async def later() -> None:
            await asyncio.sleep(0.01)
            s.send_bytes(b"from the same loop")  # only runs if arecv yields to the loop

        task = asyncio.create_task(later())
        frame = await r.arecv(int(WAIT * 1000))
        await task
        return frame

    assert asyncio.run(main()) == {"kind": "data", "data": b"from the same loop"}


def test_arecv_timeout_and_closed() -> None:
    async def main() -> list[dict[str, Any]]:
        s = Stream.create()
        r = reader_of(s)
        frames = [await r.arecv(0), await r.arecv(10)]
        s.end()
        frames += [await r.arecv(10), await r.arecv(10)]
        return frames

    assert asyncio.run(main()) == [
        {"kind": "timeout"},
        {"kind": "timeout"},
        {"kind": "end"},
        {"kind": "closed"},
    ]


def test_arecv_from_a_producer_thread_through_a_small_buffer() -> None:
    n = 2000

    async def main() -> list[bytes]:
        s = Stream.create(2)
        r = reader_of(s)

        def produce() -> None:
            s.send_begin()
            for i in range(n):
                s.send_bytes(b"%d" % i)
            s.end()

        t, errors = run_thread(produce)
        got = [chunk async for chunk in r]
        t.join(WAIT)
        assert not errors
        return got

    assert asyncio.run(main()) == [b"%d" % i for i in range(n)]


def test_cancelled_arecv_loses_no_frame() -> None:
    async def main() -> dict[str, Any]:
        s = Stream.create()
        r = reader_of(s)
        task = asyncio.create_task(r.arecv(int(WAIT * 1000)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not s.channel._watchers  # the cancelled wait left nothing behind
        s.send_bytes(b"kept")
        return await r.arecv(0)

    assert asyncio.run(main()) == {"kind": "data", "data": b"kept"}


def test_closing_the_reader_wakes_arecv() -> None:
    async def main() -> None:
        s = Stream.create()
        r = reader_of(s)
        task = asyncio.create_task(r.arecv(int(WAIT * 1000)))
        await asyncio.sleep(0.01)
        r.close()
        with pytest.raises(StreamError, match="is closed"):
            await asyncio.wait_for(task, WAIT)

    asyncio.run(main())


def test_async_iteration_raises_on_error_frame() -> None:
    async def main() -> list[bytes]:
        s = Stream.create()
        r = reader_of(s)
        s.send_bytes(b"ok")
        s.error("upstream gone")
        got = []
        with pytest.raises(StreamError, match="upstream gone"):
            async for chunk in r:
                got.append(chunk)
        return got

    assert asyncio.run(main()) == [b"ok"]


# -- streams travelling through a network ---------------------------------------------------


def _stream_graph(producer_execution: str, consumer_kind: str, frames: int) -> list[int]:
    from reflow import Actor, Message, Network

    class Producer(Actor):
        component = "producer"
        inports: list[str] = []
        outports = ["out"]
        execution = producer_execution

        def run(self, ctx):
            s = Stream.create(4, content_type="text/plain")
            ctx.send({"out": s.into_message()})
            for i in range(frames):
                s.send_bytes(b"%d," % i)
            s.end()
            ctx.done()

    class SyncConsumer(Actor):
        component = "consumer"
        inports = ["in"]
        outports = ["out"]
        execution = "worker"

        def run(self, ctx):
            data = b"".join(ctx.inputs["in"].take_stream())
            ctx.done({"out": Message.integer(data.count(b","))})

    class AsyncConsumer(Actor):
        component = "consumer"
        inports = ["in"]
        outports = ["out"]

        async def run(self, ctx):
            n = 0
            async for chunk in ctx.inputs["in"].take_stream():
                n += chunk.count(b",")
            ctx.done({"out": Message.integer(n)})

    net = Network()
    net.register_actor("p", Producer())
    net.register_actor("c", SyncConsumer() if consumer_kind == "worker" else AsyncConsumer())
    net.add_node("p", "p")
    net.add_node("c", "c")
    net.add_connection("p", "out", "c", "in")
    out = net.collect("c", "out")
    summary = net.run(timeout=30)
    net.shutdown()
    assert summary.ok, summary.failures
    return out.values()


@pytest.mark.parametrize(
    ("producer", "consumer"),
    [("inline", "worker"), ("worker", "worker"), ("worker", "async")],
)
def test_bounded_stream_crosses_a_network(producer: str, consumer: str) -> None:
    # a 4-frame stream carrying 2000 frames: the producer must wait for the consumer many
    # times; an inline producer waits by letting the scheduler run the consumer
    assert _stream_graph(producer, consumer, 2000) == [2000]


def test_sync_reader_of_a_sync_producer_fails_both_ticks_instead_of_hanging() -> None:
    from reflow import Actor, Network

    class Producer(Actor):
        component = "producer"
        inports: list[str] = []
        outports = ["out"]

        def run(self, ctx):
            s = Stream.create(4)
            ctx.send({"out": s.into_message()})
            for _ in range(10):
                s.send_bytes(b"x")
            s.end()
            ctx.done()

    class Reader(Actor):
        component = "reader"
        inports = ["in"]
        outports: list[str] = []

        def run(self, ctx):
            for _ in ctx.inputs["in"].take_stream():
                pass
            ctx.done()

    net = Network()
    net.register_actor("p", Producer())
    net.register_actor("r", Reader())
    net.add_node("p", "p")
    net.add_node("r", "r")
    net.add_connection("p", "out", "r", "in")
    summary = net.run(timeout=30)
    net.shutdown()
    assert sorted(f.node for f in summary.failures) == ["p", "r"]
    assert all("StreamError" in f.error for f in summary.failures)
    assert any("execution='worker'" in f.error for f in summary.failures)
