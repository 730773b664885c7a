"""Stream templates: collect a Stream into Bytes, chunk Bytes into a Stream, split lines.

The readers are ``async`` actors that wait with ``arecv`` on the scheduler's event loop, so a
slow producer blocks no thread; a frame that does not come within ``timeout_ms``, an ``error``
frame or a producer that goes away before ``end`` fails the tick with the stream's id.
"""

from __future__ import annotations

from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._core._streams import Stream
from .._errors import ActorError
from ._base import LibraryActor, config_bool, config_int, config_str

__all__ = ["STREAM_TEMPLATES"]


def _reader(ctx: ActorContext, port: str) -> Any:
    msg = ctx.inputs[port]
    if msg["type"] != "Stream":
        raise ActorError(f"in-port {port!r}: expected a Stream, got {msg['type']}")
    try:
        return msg.take_stream()
    except Exception as exc:
        raise ActorError(f"in-port {port!r}: {exc}") from exc


async def _chunks(ctx: ActorContext, reader: Any, timeout_ms: int) -> Any:
    """Yield the data frames of ``reader`` until ``end``; raise ActorError on anything else."""
    while True:
        frame = await reader.arecv(timeout_ms)
        kind = frame["kind"]
        if kind == "data":
            yield frame["data"]
        elif kind == "begin":
            continue
        elif kind == "end":
            return
        elif kind == "timeout":
            raise ActorError(
                f"in-port 'in': stream {reader.stream_id} sent nothing for "
                f"{timeout_ms} ms (config 'timeout_ms')"
            )
        elif kind == "error":
            raise ActorError(f"in-port 'in': stream {reader.stream_id} failed: {frame['error']}")
        else:
            raise ActorError(
                f"in-port 'in': stream {reader.stream_id} was closed by its producer before end"
            )


class StreamCollect(LibraryActor):
    """Reads a whole Stream into one Bytes packet.

    Ports: in ``in`` (Stream) → out ``out`` (Bytes). Config: ``max_bytes`` (int, default
    67108864: a longer stream fails the tick and is closed), ``timeout_ms`` (int > 0, default
    30000: the longest wait for one frame).
    """

    component = "tpl_stream_collect"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Stream"}
    outport_types = {"out": "Bytes"}

    async def run(self, ctx: ActorContext) -> None:
        limit = config_int(ctx, "max_bytes", 64 << 20, minimum=0)
        timeout_ms = config_int(ctx, "timeout_ms", 30_000, minimum=1)
        reader = _reader(ctx, "in")
        buf = bytearray()
        with reader:
            async for chunk in _chunks(ctx, reader, timeout_ms):
                buf += chunk
                if len(buf) > limit:
                    raise ActorError(
                        f"in-port 'in': stream {reader.stream_id} is longer than "
                        f"config 'max_bytes' ({limit} bytes)"
                    )
        ctx.done({"out": Message.bytes(bytes(buf))})


class StreamChunk(LibraryActor):
    """Turns Bytes (or a String, as UTF-8) into a Stream of fixed-size chunks.

    Ports: in ``in`` (Bytes or String) → out ``out`` (Stream; ``chunk_size`` bytes per data
    frame, the last one shorter, then ``end``). Config: ``chunk_size`` (int ≥ 1, default
    65536), ``content_type`` (string, default none; sent in a ``begin`` frame when set).
    """

    component = "tpl_stream_chunk"
    inports = ["in"]
    outports = ["out"]
    outport_types = {"out": "Stream"}

    def run(self, ctx: ActorContext) -> None:
        size = config_int(ctx, "chunk_size", 65536, minimum=1)
        content_type = ctx.config.get("content_type")
        if content_type is not None:
            content_type = config_str(ctx, "content_type")
        msg = ctx.inputs["in"]
        if msg["type"] == "String":
            data = msg["data"].encode()
        elif msg["type"] == "Bytes":
            data = msg["data"]
        else:
            raise ActorError(f"in-port 'in': expected Bytes or a String, got {msg['type']}")
        # Unbounded: the bytes are already in memory, so queueing them costs nothing more and
        # the tick never waits on a reader that has not started.
        stream = Stream.create(0, ctx.node, "out", content_type=content_type)
        if content_type is not None:
            stream.send_begin(size_hint=len(data))
        view = memoryview(data)
        for start in range(0, len(data), size):
            stream.send_bytes(view[start : start + size])
        stream.end()
        ctx.done({"out": stream.into_message()})


class StreamLines(LibraryActor):
    """Splits a text Stream into lines, one String packet each, as they arrive.

    Ports: in ``in`` (Stream of text) → out ``line`` (String, without the line ending unless
    ``keep_ends``), ``done`` (Integer: the number of lines, after the last one).
    Config: ``encoding`` (default ``"utf-8"``; invalid bytes fail the tick), ``keep_ends``
    (bool, default false), ``max_line`` (int, default 1048576 bytes), ``timeout_ms`` (int,
    default 30000). ``\\n`` and ``\\r\\n`` end a line; a last line without one is sent too.
    """

    component = "tpl_stream_lines"
    inports = ["in"]
    outports = ["line", "done"]
    inport_types = {"in": "Stream"}
    outport_types = {"line": "String", "done": "Integer"}

    async def run(self, ctx: ActorContext) -> None:
        import codecs

        encoding = config_str(ctx, "encoding", "utf-8")
        try:
            decoder = codecs.getincrementaldecoder(encoding)()
        except LookupError as exc:
            raise ActorError(f"config 'encoding': unknown encoding {encoding!r}") from exc
        keep = config_bool(ctx, "keep_ends", False)
        max_line = config_int(ctx, "max_line", 1 << 20, minimum=1)
        timeout_ms = config_int(ctx, "timeout_ms", 30_000, minimum=1)
        reader = _reader(ctx, "in")
        pending = ""
        count = 0

        async def emit(line: str) -> None:
            nonlocal count
            if not keep:
                line = line.rstrip("\r\n")
            count += 1
            await ctx.asend({"line": Message.string(line)})

        with reader:
            async for chunk in _chunks(ctx, reader, timeout_ms):
                try:
                    pending += decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise ActorError(
                        f"in-port 'in': stream {reader.stream_id} is not valid {encoding}: {exc}"
                    ) from exc
                *lines, pending = pending.split("\n")
                for line in lines:
                    await emit(line + "\n")
                if len(pending) > max_line:
                    raise ActorError(
                        f"in-port 'in': a line is longer than config 'max_line' ({max_line})"
                    )
            try:
                pending += decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                raise ActorError(
                    f"in-port 'in': stream {reader.stream_id} ends inside a {encoding} character"
                ) from exc
            if pending:
                await emit(pending)
        ctx.done({"done": Message.integer(count)})


STREAM_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls for cls in (StreamCollect, StreamChunk, StreamLines)
}
