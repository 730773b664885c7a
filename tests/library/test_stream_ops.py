"""reflow.library._stream_ops: collect, chunk and line-split streams, alone and in a graph."""

from __future__ import annotations

from typing import Any

import pytest

from reflow import Message, Network, Stream
from reflow.library._stream_ops import StreamChunk, StreamCollect, StreamLines
from reflow.testing import run_tick

_OPEN_PRODUCERS: list[Stream] = []


def stream_of(*chunks: bytes, end: str = "end") -> Message:
    s = Stream.create()
    for chunk in chunks:
        s.send_bytes(chunk)
    if end == "end":
        s.end()
    elif end == "error":
        s.error("disk on fire")
    elif end == "close":
        s.close()
    if end == "open":
        _OPEN_PRODUCERS.append(s)  # alive, never ending: the reader must time out
    return s.into_message()


def test_collect_joins_all_data_frames() -> None:
    r = run_tick(StreamCollect(), {"in": stream_of(b"ab", b"", b"cd")})
    r.raise_for_failures()
    assert r.values("out") == [b"abcd"]


def test_chunk_splits_bytes_and_text() -> None:
    r = run_tick(
        StreamChunk(),
        {"in": Message.bytes(b"abcdefg")},
        {"chunk_size": 3, "content_type": "text/plain"},
    )
    r.raise_for_failures()
    reader = r.outputs["out"][0].take_stream()
    begin = reader.recv(0)
    assert begin["kind"] == "begin" and begin["content_type"] == "text/plain"
    assert begin["size_hint"] == 7
    assert list(reader) == [b"abc", b"def", b"g"]
    r = run_tick(StreamChunk(), {"in": Message.string("hé")})
    assert list(r.outputs["out"][0].take_stream()) == ["hé".encode()]


def test_lines_split_across_chunks() -> None:
    r = run_tick(StreamLines(), {"in": stream_of(b"one\ntw", b"o\r\nthr\xc3", b"\xa9e\n", b"end")})
    r.raise_for_failures()
    assert r.values("line") == ["one", "two", "thrée", "end"]
    assert r.values("done") == [4]
    r = run_tick(StreamLines(), {"in": stream_of(b"a\nb\n")}, {"keep_ends": True})
    assert r.values("line") == ["a\n", "b\n"]


def test_chunk_then_lines_then_collect_in_a_graph() -> None:
    net = Network()
    net.register_actor("chunk", StreamChunk())
    net.register_actor("lines", StreamLines())
    net.register_actor("chunk2", StreamChunk())
    net.register_actor("collect", StreamCollect())
    net.add_node("c", "chunk", {"chunk_size": 4})
    net.add_node("l", "lines")
    net.add_node("c2", "chunk2", {"chunk_size": 2})
    net.add_node("all", "collect")
    net.add_connection("c", "out", "l", "in")
    net.add_connection("l", "line", "c2", "in")
    net.add_connection("c2", "out", "all", "in")
    lines = net.collect("l", "line")
    out = net.collect("all", "out")
    text = "".join(f"line {i}\n" for i in range(50))
    net.add_initial("c", "in", Message.string(text))
    net.run(timeout=20).raise_for_failures()
    net.shutdown()
    assert lines.values() == [f"line {i}" for i in range(50)]
    assert out.values() == [f"line {i}".encode() for i in range(50)]


@pytest.mark.parametrize(
    ("actor", "inputs", "config", "fragment"),
    [
        (
            StreamCollect(),
            {"in": Message.bytes(b"x")},
            None,
            "in-port 'in': expected a Stream, got Bytes",
        ),
        (StreamCollect(), {"in": stream_of(b"x", end="error")}, None, "failed: disk on fire"),
        (
            StreamCollect(),
            {"in": stream_of(b"x", end="close")},
            None,
            "was closed by its producer before end",
        ),
        (
            StreamCollect(),
            {"in": stream_of(b"x", end="open")},
            {"timeout_ms": 50},
            "sent nothing for 50 ms (config 'timeout_ms')",
        ),
        (
            StreamCollect(),
            {"in": stream_of(b"12345")},
            {"max_bytes": 4},
            "longer than config 'max_bytes' (4 bytes)",
        ),
        (
            StreamChunk(),
            {"in": Message.integer(1)},
            None,
            "in-port 'in': expected Bytes or a String, got Integer",
        ),
        (
            StreamChunk(),
            {"in": Message.bytes(b"x")},
            {"chunk_size": 0},
            "config 'chunk_size' must be >= 1",
        ),
        (StreamLines(), {"in": stream_of(b"\xff\n")}, None, "is not valid utf-8"),
        (StreamLines(), {"in": stream_of(b"ok\n\xc3")}, None, "ends inside a utf-8 character"),
        (
            StreamLines(),
            {"in": stream_of(b"x")},
            {"encoding": "nope"},
            "config 'encoding': unknown encoding",
        ),
        (
            StreamLines(),
            {"in": stream_of(b"abcdef")},
            {"max_line": 3},
            "longer than config 'max_line' (3)",
        ),
    ],
)
def test_bad_input_fails_the_tick(
    actor: Any, inputs: dict[str, Any], config: dict[str, Any] | None, fragment: str
) -> None:
    r = run_tick(actor, inputs, config)
    assert not r.ok
    assert fragment in r.failures[0].error
