"""Stream templates of the offbit-reflow standard catalog: ``tpl_bytes_to_stream``,
``tpl_stream_to_bytes``, ``tpl_stream_buffer``, ``tpl_stream_stats``, ``tpl_stream_tee``,
``tpl_stream_throttle``.

The stream-to-stream templates are ``async``: each sends its output Stream message first, so
the consumers start, then forwards frames as they arrive, waiting (without blocking the event
loop) while an output stream is full — memory stays bounded by the output streams' sizes. An
``error`` frame or a producer that goes away is passed on downstream and fails the tick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._core._streams import Stream
from .._errors import ActorError, StreamError
from ._base import LibraryActor, config_int
from ._sdk_config import with_sdk_config
from ._sdk_support import reject

__all__ = ["SDK_STREAM_TEMPLATES"]

_TIMEOUT_MS = 30_000
_OUT_FRAMES = 16  # frames queued per output stream before the forwarder waits


def _reader(ctx: ActorContext, port: str = "stream") -> Any:
    msg = ctx.inputs.get(port)
    if msg is None or msg["type"] != "Stream":
        got = "no packet" if msg is None else msg["type"]
        raise reject(ctx, f"in-port {port!r}: expected a Stream (StreamHandle), got {got}")
    try:
        return msg.take_stream()
    except Exception as exc:  # already taken by another reader
        raise reject(ctx, f"in-port {port!r}: {exc}") from exc


async def _frames(reader: Any, timeout_ms: int) -> AsyncIterator[dict[str, Any]]:
    """``begin`` and ``data`` frames until ``end``; ActorError for anything else."""
    while True:
        frame = await reader.arecv(timeout_ms)
        kind = frame["kind"]
        if kind in ("begin", "data"):
            yield frame
        elif kind == "end":
            return
        elif kind == "timeout":
            raise ActorError(
                f"in-port 'stream': stream {reader.stream_id} sent nothing for "
                f"{timeout_ms} ms (config 'timeoutMs')"
            )
        elif kind == "error":
            raise ActorError(
                f"in-port 'stream': stream {reader.stream_id} failed: {frame['error']}"
            )
        else:
            raise ActorError(
                f"in-port 'stream': stream {reader.stream_id} was closed by its producer before end"
            )


async def _push(out: Stream, data: bytes) -> bool:
    """Queue ``data`` on ``out``, waiting while it is full; False once its reader is gone."""
    delay = 0.0005
    while True:
        try:
            out.send_bytes_nowait(data)
            return True
        except StreamError:
            ch = out.channel
            if ch._reader_closed or ch._state != "open":
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)


class _Forward(LibraryActor):
    """Reads ``stream`` and writes each output stream; subclasses shape the frames."""

    inports = ["stream"]
    inport_types = {"stream": "Stream"}
    out_ports: tuple[str, ...] = ("stream",)

    def frame_delay(self, ctx: ActorContext, size: int) -> float:
        return 0.0

    def batch(self, ctx: ActorContext) -> int:
        return 0

    async def run(self, ctx: ActorContext) -> None:
        timeout_ms = config_int(ctx, "timeoutMs", _TIMEOUT_MS, minimum=1)
        depth = (
            config_int(ctx, "bufferSize", 64, minimum=1, maximum=1 << 16)
            if ("bufferSize" in self.config_schema)
            else _OUT_FRAMES
        )
        self.check_config(ctx)
        reader = _reader(ctx)
        source = reader._channel
        # An out-port without an edge gets no stream: nobody could ever read it, and a
        # bounded stream nobody reads would stall the forwarding for good.
        routes = getattr(ctx._node, "routes")  # noqa: B009
        ports = [p for p in self.out_ports if routes.get(p)]
        outs = [
            Stream.create(depth, ctx.node, port, content_type=source.content_type) for port in ports
        ]
        if outs:
            await ctx.asend({port: s.into_message() for port, s in zip(ports, outs, strict=True)})
        stats: dict[str, Any] = {"totalBytes": 0, "dataFrames": 0, "sizeHint": None}
        started = time.monotonic()
        batch_size, pending = self.batch(ctx), bytearray()
        try:
            with reader:
                async for frame in _frames(reader, timeout_ms):
                    if frame["kind"] == "begin":
                        stats["sizeHint"] = frame.get("size_hint")
                        for s in outs:
                            s.send_begin(
                                frame.get("content_type"),
                                frame.get("size_hint"),
                                frame.get("metadata") or None,
                            )
                        continue
                    data = frame["data"]
                    stats["totalBytes"] += len(data)
                    stats["dataFrames"] += 1
                    if batch_size:
                        pending += data
                        if len(pending) < batch_size:
                            continue
                        data, pending = bytes(pending), bytearray()
                    await self._send(outs, data)
                    wait = self.frame_delay(ctx, len(data))
                    if wait:
                        await asyncio.sleep(wait)
                if pending:
                    await self._send(outs, bytes(pending))
        except ActorError as exc:
            for s in outs:
                s.error(str(exc))
            raise reject(ctx, str(exc)) from None
        for s in outs:
            s.end()
        elapsed_ms = int((time.monotonic() - started) * 1000)
        self.finish(ctx, stats, elapsed_ms, source.content_type)

    @staticmethod
    async def _send(outs: list[Stream], data: bytes) -> None:
        for s in outs:
            await _push(s, data)

    def check_config(self, ctx: ActorContext) -> None:
        """Validate config before anything is read."""

    def finish(
        self, ctx: ActorContext, stats: dict[str, Any], elapsed_ms: int, content_type: str | None
    ) -> None:
        ctx.done()


class StreamBuffer(_Forward):
    """Gathers a stream's data frames into frames of at least ``bufferBytes`` bytes (the
    last one may be shorter).

    Ports: in ``stream`` (Stream) → out ``stream`` (Stream), ``error`` (Error, when the input
    is not a Stream or fails; the tick fails too). Config: ``bufferBytes`` (int 1 to 64 MiB,
    default 65536), ``timeoutMs`` (int, default 30000: the longest wait for one frame).
    """

    component = "tpl_stream_buffer"
    outports = ["stream", "error"]
    outport_types = {"stream": "Stream", "error": "Error"}

    def batch(self, ctx: ActorContext) -> int:
        return config_int(ctx, "bufferBytes", 65536, minimum=1, maximum=64 << 20)

    def check_config(self, ctx: ActorContext) -> None:
        self.batch(ctx)


class StreamStats(_Forward):
    """Passes a stream through unchanged and measures it.

    Ports: in ``stream`` (Stream) → out ``stream`` (Stream, the same frames), ``stats``
    (Object ``{totalBytes, dataFrames, durationMs, throughputBytesPerSec, avgFrameBytes,
    sizeHint, contentType}``, after the end), ``error`` (Error, when the input is not a
    Stream or fails; the tick fails too). Config: ``timeoutMs`` (int, default 30000).
    """

    component = "tpl_stream_stats"
    outports = ["stream", "stats", "error"]
    outport_types = {"stream": "Stream", "stats": "Object", "error": "Error"}

    def finish(
        self, ctx: ActorContext, stats: dict[str, Any], elapsed_ms: int, content_type: str | None
    ) -> None:
        total, frames = stats["totalBytes"], stats["dataFrames"]
        ctx.done(
            {
                "stats": Message.object(
                    {
                        **stats,
                        "durationMs": elapsed_ms,
                        "throughputBytesPerSec": total * 1000 // elapsed_ms if elapsed_ms else 0,
                        "avgFrameBytes": total // frames if frames else 0,
                        "contentType": content_type,
                    }
                )
            }
        )


class StreamTee(_Forward):
    """Copies one stream into two; the slower reader sets the pace (nothing is dropped).

    Ports: in ``stream`` (Stream) → out ``stream_a``, ``stream_b`` (Streams with the same
    frames), ``error`` (Error, when the input is not a Stream or fails; the tick fails too).
    Config: ``bufferSize`` (int 1-65536, default 64: frames queued per output),
    ``timeoutMs`` (int, default 30000).
    """

    component = "tpl_stream_tee"
    outports = ["stream_a", "stream_b", "error"]
    outport_types = {"stream_a": "Stream", "stream_b": "Stream", "error": "Error"}
    out_ports = ("stream_a", "stream_b")


class StreamThrottle(_Forward):
    """Slows a stream down: a pause after each data frame.

    Ports: in ``stream`` (Stream) → out ``stream`` (Stream, the same frames), ``error``
    (Error, when the input is not a Stream or fails; the tick fails too). Config: ``delayMs``
    (int 0-60000, default 10: the pause per frame), ``bytesPerSecond`` (int > 0: pause for
    the frame's size at that rate instead), ``timeoutMs`` (int, default 30000).
    """

    component = "tpl_stream_throttle"
    outports = ["stream", "error"]
    outport_types = {"stream": "Stream", "error": "Error"}

    def check_config(self, ctx: ActorContext) -> None:
        self.frame_delay(ctx, 0)

    def frame_delay(self, ctx: ActorContext, size: int) -> float:
        rate = ctx.config.get("bytesPerSecond")
        if rate is not None:
            rate = config_int(ctx, "bytesPerSecond", minimum=1)
            return min(size / rate, 60.0)
        return config_int(ctx, "delayMs", 10, minimum=0, maximum=60_000) / 1000


class BytesToStream(LibraryActor):
    """Turns Bytes into a Stream of fixed-size chunks.

    Ports: in ``input`` (Bytes, or a String as UTF-8) → out ``stream`` (Stream: a ``begin``
    frame with ``contentType`` and the size, ``chunkSize``-byte data frames, ``end``),
    ``error`` (Error, for any other input; the tick fails too). Config: ``chunkSize`` (int
    1 to 64 MiB, default 65536), ``contentType`` (string, default none).
    """

    component = "tpl_bytes_to_stream"
    inports = ["input"]
    outports = ["stream", "error"]
    outport_types = {"stream": "Stream", "error": "Error"}

    def run(self, ctx: ActorContext) -> None:
        size = config_int(ctx, "chunkSize", 65536, minimum=1, maximum=64 << 20)
        content_type = ctx.config.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise ActorError(f"config 'contentType' must be a string, got {content_type!r}")
        msg = ctx.inputs["input"]
        if msg["type"] == "Bytes":
            data = bytes(msg["data"])
        elif msg["type"] == "String":
            data = msg["data"].encode()
        else:
            raise reject(ctx, f"in-port 'input': expected Bytes, got {msg['type']}")
        # Unbounded: the bytes are in memory already, and the tick never waits for a reader.
        stream = Stream.create(0, ctx.node, "stream", content_type=content_type)
        stream.send_begin(size_hint=len(data))
        view = memoryview(data)
        for start in range(0, len(data), size):
            stream.send_bytes(view[start : start + size])
        stream.end()
        ctx.done({"stream": stream.into_message()})


class StreamToBytes(LibraryActor):
    """Reads a whole Stream into one Bytes packet.

    Ports: in ``stream`` (Stream) → out ``output`` (Bytes), ``metadata`` (Object
    ``{contentType, size, streamMetadata}``), ``error`` (Error, when the input is not a
    Stream, fails, or is too long; the tick fails too). Config: ``maxBytes`` (int, default
    64 MiB: a longer stream is refused), ``timeoutMs`` (int, default 30000).
    """

    component = "tpl_stream_to_bytes"
    inports = ["stream"]
    outports = ["output", "metadata", "error"]
    inport_types = {"stream": "Stream"}
    outport_types = {"output": "Bytes", "metadata": "Object", "error": "Error"}

    async def run(self, ctx: ActorContext) -> None:
        limit = config_int(ctx, "maxBytes", 64 << 20, minimum=0)
        timeout_ms = config_int(ctx, "timeoutMs", _TIMEOUT_MS, minimum=1)
        reader = _reader(ctx)
        content_type, buf = reader._channel.content_type, bytearray()
        meta: dict[str, Any] = {}
        try:
            with reader:
                async for frame in _frames(reader, timeout_ms):
                    if frame["kind"] == "begin":
                        content_type = frame.get("content_type") or content_type
                        meta = frame.get("metadata") or {}
                        continue
                    buf += frame["data"]
                    if len(buf) > limit:
                        raise ActorError(
                            f"in-port 'stream': stream {reader.stream_id} is "
                            f"longer than config 'maxBytes' ({limit} bytes)"
                        )
        except ActorError as exc:
            raise reject(ctx, str(exc)) from None
        ctx.done(
            {
                "output": Message.bytes(bytes(buf)),
                "metadata": Message.object(
                    {"contentType": content_type, "size": len(buf), "streamMetadata": meta}
                ),
            }
        )


SDK_STREAM_TEMPLATES: dict[str, type[LibraryActor]] = with_sdk_config(
    {
        cls.component: cls
        for cls in (
            BytesToStream,
            StreamBuffer,
            StreamStats,
            StreamTee,
            StreamThrottle,
            StreamToBytes,
        )
    }
)
