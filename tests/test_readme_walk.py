"""What a new user walking the README tries next: the obvious variations and mistakes
around each documented call, each answered by a clear ``ReflowError`` naming the thing."""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from reflow import (
    Actor,
    CheckpointStoreError,
    GuestGrants,
    InvalidLimitsError,
    Message,
    MessageError,
    Network,
    NetworkStateError,
    SqliteCheckpointStore,
    Stream,
    StreamError,
    UnknownComponentError,
)
from reflow._core._catalog import register_template, unregister_template
from reflow._loader._packs import LoadedPack
from reflow.library import describe_template


class Doubler(Actor):
    component = "doubler"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] * 2)})


def _net() -> Network:
    net = Network()
    net.register_actor("tpl_doubler", Doubler())
    net.add_node("a", "tpl_doubler")
    net.add_initial("a", "in", Message.integer(21))
    return net


BAD_SECONDS = [
    pytest.param(-1, "timeout=-1", id="negative"),
    pytest.param("10", "timeout='10'", id="text"),
    pytest.param(math.nan, "timeout=nan", id="nan"),
    pytest.param(math.inf, "timeout=inf", id="inf"),
    pytest.param(True, "timeout=True", id="bool"),
    pytest.param([1], "timeout=[1]", id="list"),
]


@pytest.mark.parametrize(("timeout", "fragment"), BAD_SECONDS)
def test_run_timeout_is_checked_before_running(timeout: Any, fragment: str) -> None:
    net = _net()
    out = net.collect("a", "out")
    with pytest.raises(NetworkStateError, match="finite number of seconds") as info:
        net.run(timeout=timeout)
    assert fragment in str(info.value)
    assert net.run(timeout=10).ticks == 1  # nothing ran, and the network still works
    assert out.values() == [42]
    net.shutdown()


@pytest.mark.parametrize(("timeout", "fragment"), BAD_SECONDS)
def test_arun_timeout_is_checked_before_running(timeout: Any, fragment: str) -> None:
    net = _net()
    with pytest.raises(NetworkStateError, match="finite number of seconds") as info:
        asyncio.run(net.arun(timeout=timeout))
    assert fragment in str(info.value)
    net.shutdown()


@pytest.mark.parametrize(("wait", "fragment"), [(-1, "wait=-1"), ("5", "wait='5'")])
def test_shutdown_wait_is_checked(wait: Any, fragment: str) -> None:
    net = _net()
    net.start()
    with pytest.raises(NetworkStateError, match="finite number of seconds") as info:
        net.shutdown(wait=wait)
    assert fragment in str(info.value)
    net.shutdown()


@pytest.mark.parametrize("timeout", [None, 0.5, 10, 2.5])
def test_run_timeout_accepts_seconds(timeout: Any) -> None:
    net = _net()
    out = net.collect("a", "out")
    net.run(timeout=timeout)
    assert out.values() == [42]
    net.shutdown()


# -- Streams: a wait that is not a finite number is refused at once, never hangs ---------------

BAD_WAITS = [
    pytest.param(math.nan, StreamError, "finite number", id="nan"),
    pytest.param(math.inf, StreamError, "finite number", id="inf"),
    pytest.param(-math.inf, StreamError, "finite number", id="-inf"),
    pytest.param(-1, StreamError, "finite number", id="negative"),
    pytest.param("5", StreamError, "must be a number", id="text"),
    pytest.param(True, StreamError, "must be a number", id="bool"),
]


def _reader() -> tuple[Stream, Any]:
    stream = Stream.create(buffer_size=1)
    return stream, stream.into_message().take_stream()


@pytest.mark.parametrize(("wait", "error", "fragment"), BAD_WAITS)
def test_stream_recv_wait_is_checked(wait: Any, error: type[Exception], fragment: str) -> None:
    _, reader = _reader()
    t0 = time.monotonic()
    with pytest.raises(error, match=fragment) as info:
        reader.recv(wait)
    assert "timeout_ms" in str(info.value)
    with pytest.raises(error, match=fragment):
        asyncio.run(reader.arecv(wait))
    assert time.monotonic() - t0 < 2


@pytest.mark.parametrize(("wait", "error", "fragment"), BAD_WAITS)
def test_stream_send_wait_is_checked(wait: Any, error: type[Exception], fragment: str) -> None:
    stream, _ = _reader()
    stream.send_bytes(b"a")  # full now: a send would wait
    t0 = time.monotonic()
    with pytest.raises(error, match=fragment) as info:
        stream.send_bytes(b"b", timeout=wait)
    assert "timeout" in str(info.value)
    assert time.monotonic() - t0 < 2


def test_stream_huge_wait_is_a_long_wait_not_an_overflow() -> None:
    stream, reader = _reader()
    stream.send_bytes(b"a")
    assert reader.recv(1e300) == {"kind": "data", "data": b"a"}
    stream.end()
    assert reader.recv(1e300)["kind"] == "end"


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: Stream.create(buffer_size="4"), "buffer_size must be an int"),
        (lambda: Stream.create(buffer_size=4, content_type=5), "content_type must be a str"),
        (lambda: Stream.create(buffer_size=4).send_bytes("text"), "send_bytes() takes bytes"),
        (lambda: Stream.create(buffer_size=4).send_begin(metadata=[1]), "metadata must be a dict"),
    ],
)
def test_stream_argument_kinds_raise_stream_errors(call: Any, fragment: str) -> None:
    with pytest.raises(StreamError, match=re.escape(fragment)) as info:
        call()
    assert isinstance(info.value, TypeError)  # what these calls raised before, still caught


# -- Built-in actors: describe_template of an unknown id, or of a plain Python template ---------


@pytest.mark.parametrize("template_id", ["tpl_nope", "acme/none", "", 5, None])
def test_describe_unknown_template_names_it(template_id: Any) -> None:
    with pytest.raises(UnknownComponentError, match="unknown component") as info:
        describe_template(template_id)
    assert repr(str(template_id)) in str(info.value)
    assert isinstance(info.value, KeyError)  # what it raised before, still caught


class Described(Actor):
    """Doubles what it gets."""

    component = "described"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done()


def test_describe_a_python_template_by_its_ports() -> None:
    register_template("walk/described", Described())
    try:
        info = describe_template("walk/described")
    finally:
        unregister_template("walk/described")
    assert info["inports"] == ["in"] and info["outports"] == ["out"]
    assert info["doc"] == "Doubles what it gets."
    assert describe_template("tpl_flow_filter")["outports"] == ["out", "rejected"]


# -- Set up: reflow-demo --help says what it does instead of running the demo ------------------


@pytest.mark.parametrize(
    ("args", "status", "fragment"),
    [
        (["--help"], 0, "usage: reflow-demo"),
        (["-h"], 0, "It takes no arguments"),
        (["--bogus"], 2, "unrecognized arguments: --bogus"),
        (["extra"], 2, "unrecognized arguments: extra"),
    ],
)
def test_demo_help_and_usage(args: list[str], status: int, fragment: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reflow", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == status, done.stderr
    assert fragment in done.stdout + done.stderr
    assert "square #" not in done.stdout  # the demo did not run


# -- Guest actors: GuestGrants takes what the README shows, and says what it expected ----------


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"http_hosts": 5}, "http_hosts", "must be host names"),
        ({"http_hosts": ("ok.example", 5)}, "http_hosts", "must be host names"),
        ({"http_hosts": ("",)}, "http_hosts", "must be host names"),
        ({"http_hosts": (" a.example",)}, "http_hosts", "must be host names"),
        ({"http_hosts": ("a\nb",)}, "http_hosts", "must be host names"),
        ({"http_timeout": 0}, "http_timeout", "positive, finite number of seconds"),
        ({"http_timeout": math.nan}, "http_timeout", "positive, finite number of seconds"),
        ({"http_timeout": "10"}, "http_timeout", "positive, finite number of seconds"),
        ({"http_max_response": 0}, "http_max_response", "positive number of bytes"),
        ({"http_max_response": 1.5}, "http_max_response", "positive number of bytes"),
        ({"wasi": "yes"}, "wasi", "True or False"),
    ],
)
def test_guest_grants_refuse_bad_values(kwargs: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(InvalidLimitsError, match=re.escape(fragment)) as info:
        GuestGrants(**kwargs)
    assert info.value.field == field
    assert f"GuestGrants.{field}" in str(info.value)


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        ("api.example.com", ("api.example.com",)),  # the README's tuple without its comma
        (["a.example", "b.example:8080"], ("a.example", "b.example:8080")),
        (("*",), ("*",)),
        ((), ()),
    ],
)
def test_guest_grants_hosts_become_a_tuple(hosts: Any, expected: tuple[str, ...]) -> None:
    grants = GuestGrants(http_hosts=hosts)
    assert grants.http_hosts == expected
    assert grants.allows_http() is bool(expected)
    hash(grants)


# -- API-service packs: printing a loaded pack of hundreds of operations stays one short line --


@pytest.mark.parametrize(
    ("count", "shown", "tail"), [(3, 3, "]"), (8, 8, "]"), (174, 8, "(174 in all)]")]
)
def test_loaded_pack_repr_is_bounded(count: int, shown: int, tail: str) -> None:
    ids = [f"acme/slack/op_{i:03d}" for i in range(count)]
    pack = LoadedPack(
        name="acme/slack",
        version="1.7.0",
        manifest=None,
        digest="",
        signer="292ec52845c8f6b5",
        source="",
        directory=Path("."),
        artifacts={},
        templates=dict.fromkeys(ids, Described()),
    )
    text = repr(pack)
    assert text.startswith("<LoadedPack acme/slack 1.7.0 templates=[")
    assert text.count("acme/slack/op_") == shown
    assert f"{tail} signer=292ec52845c8f6b5>" in text
    assert len(text) < 600


# -- Benchmarks: an explicit --specs that is not a folder is an error, not a silent fallback ---


@pytest.mark.parametrize("specs", ["/nonexistent/openapi", "README.md"])
def test_bench_openapi_refuses_a_missing_specs_folder(specs: str) -> None:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "tests/bench/bench_openapi.py", "--specs", specs, "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
    assert done.returncode == 2, done.stderr
    assert f"--specs {specs}: not a folder of OpenAPI descriptions" in done.stderr
    assert "built-in spec" not in done.stderr


# -- Network events: recv's wait and events' maxlen are checked like recv_batch's -------------


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda ev: ev.recv(-1), "timeout_ms=-1: expected a finite number of milliseconds"),
        (lambda ev: ev.recv(math.nan), "timeout_ms=nan"),
        (lambda ev: ev.recv(math.inf), "timeout_ms=inf"),
        (lambda ev: ev.recv("10"), "timeout_ms='10'"),
        (lambda ev: ev.recv(True), "timeout_ms=True"),
        (lambda ev: ev.recv_batch(10, -1), "timeout_ms=-1"),
    ],
)
def test_event_waits_are_checked(call: Any, fragment: str) -> None:
    net = _net()
    events = net.events()
    t0 = time.monotonic()
    with pytest.raises(NetworkStateError, match=re.escape(fragment)):
        call(events)
    assert time.monotonic() - t0 < 2
    net.shutdown()


@pytest.mark.parametrize("maxlen", [-1, "100", 1.5, True])
def test_events_maxlen_is_checked(maxlen: Any) -> None:
    net = _net()
    with pytest.raises(NetworkStateError, match=re.escape(f"events(maxlen={maxlen!r})")):
        net.events(maxlen=maxlen)
    net.shutdown()


@pytest.mark.parametrize("wait", [0, 1, 2.5])
def test_event_recv_still_takes_numbers(wait: Any) -> None:
    net = _net()
    events = net.events(maxlen=10, kinds=["ActorCompleted"])
    net.run(timeout=10)
    assert events.recv(wait)["_type"] == "ActorCompleted"
    assert events.recv(0) is None
    net.shutdown()


# -- Durable runs: the store's name is the URL the README writes (sqlite:///abs/path.db) ------


@pytest.mark.parametrize("where", ["missing", "ok"])
def test_sqlite_store_named_by_its_url(tmp_path: Path, where: str) -> None:
    path = tmp_path / ("nonexistent-dir" if where == "missing" else "") / "run.db"
    url = f"sqlite://{path}"  # path is absolute: sqlite:///tmp/...
    assert url.startswith("sqlite:///") and not url.startswith("sqlite:////")
    net = _net()
    if where == "missing":
        with pytest.raises(CheckpointStoreError) as info:
            net.run(timeout=10, run_id="walk", checkpoint=url)
        assert f"checkpoint store {url} cannot be opened" in str(info.value)
    else:
        store = SqliteCheckpointStore(path)
        assert store.name == url
        store.close()
    net.shutdown()


# -- Messages: the typed constructors refuse a value of another kind ---------------------------


@pytest.mark.parametrize(
    ("make", "value", "fragment"),
    [
        (Message.integer, "42", "Integer data must be an int, got str"),
        (Message.integer, 1.5, "Integer data must be an int, got float"),
        (Message.integer, True, "Integer data must be an int, got bool"),
        (Message.integer, None, "Integer data must be an int, got NoneType"),
        (Message.integer, [1], "Integer data must be an int, got list"),
        (Message.float, "1.5", "Float data must be a number, got str"),
        (Message.float, False, "Float data must be a number, got bool"),
        (Message.float, None, "Float data must be a number, got NoneType"),
        (Message.float, 1j, "Float data must be a number, got complex"),
        (Message.string, 3, "String data must be a str, got int"),
        (Message.string, b"x", "String data must be a str, got bytes"),
        (Message.string, None, "String data must be a str, got NoneType"),
    ],
)
def test_typed_constructors_refuse_other_kinds(make: Any, value: Any, fragment: str) -> None:
    with pytest.raises(MessageError, match=re.escape(fragment)) as info:
        make(value)
    assert info.value.path == "$.data"


def test_typed_constructors_take_integer_and_real_likes() -> None:
    import numpy as np

    assert Message.integer(np.int64(3)) == {"type": "Integer", "data": 3}
    assert type(Message.integer(np.int64(3))["data"]) is int
    assert Message.float(np.float32(1.5)) == {"type": "Float", "data": 1.5}
    assert type(Message.float(np.float32(1.5))["data"]) is float
    assert Message.float(2)["data"] == 2
    assert Message.string("x") == {"type": "String", "data": "x"}
