"""What the templates carried over from the offbit_reflow catalog share.

* :class:`SdkTemplate` records the config keys and defaults (``config_defaults``) that
  :func:`reflow.library.describe_template` reports, as the catalog lists them.
* A template that declares an ``error`` out-port (as most SDK media templates do) still fails
  its tick on bad config or input, with an error naming the key or port, and also sends the
  same text as an Error message on ``error``, where an SDK graph wired it.
* Stream helpers: read a whole input Stream (bounded in bytes and in the wait for each frame)
  and write an output Stream of chunks, announced by a ``begin`` frame with its metadata.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from .._core._actor import ActorContext
from .._core._messages import Message
from .._core._streams import Stream
from .._errors import ActorError
from ._base import LibraryActor, config_int

__all__ = ["SdkTemplate", "StreamData", "read_stream", "write_stream"]

#: Longest input stream a media template collects (config ``maxBytes`` overrides it).
MAX_STREAM_BYTES = 256 << 20
#: Longest wait for one frame (config ``timeoutMs`` overrides it).
FRAME_TIMEOUT_MS = 30_000


class SdkTemplate(LibraryActor):
    """A template of the SDK catalog: its config keys with defaults are described."""

    #: ``{key: default}`` as the catalog lists them (``None``: no default / derived).
    config_defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def declared_config(cls) -> dict[str, dict[str, Any]]:
        # the same shape as every other template's (LibraryActor.config_schema)
        return {k: _schema(v) for k, v in cls.config_defaults.items()}

    def tick(self, ctx: ActorContext) -> Any:
        raise NotImplementedError

    async def run(self, ctx: ActorContext) -> None:
        try:
            try:
                result = self.tick(ctx)
                if inspect.isawaitable(result):
                    await result
            except (ArithmeticError, ValueError, TypeError) as exc:
                raise _unexpected(exc) from exc
        except ActorError as exc:
            if "error" in self.outports:
                await ctx.asend({"error": Message.error(str(exc))})
            raise


class SyncSdkTemplate(SdkTemplate):
    """An :class:`SdkTemplate` whose tick never waits: it runs inline on the scheduler."""

    def run(self, ctx: ActorContext) -> None:  # type: ignore[override]
        try:
            try:
                self.tick(ctx)
            except (ArithmeticError, ValueError, TypeError) as exc:
                raise _unexpected(exc) from exc
        except ActorError as exc:
            if "error" in self.outports:
                ctx.send({"error": Message.error(str(exc))})
            raise


_JSON_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _schema(default: Any) -> dict[str, Any]:
    """``{"type", "default"}`` of a catalog default (no type for a ``None`` default)."""
    for py, name in _JSON_TYPES:
        if isinstance(default, py):
            return {"type": name, "default": default}
    return {"default": default}


def _unexpected(exc: Exception) -> ActorError:
    """A value no check caught (an integer too large for a float, say) as a tick failure."""
    return ActorError(f"bad config or input value ({type(exc).__name__}: {exc})")


class StreamData:
    """A whole stream read into memory: its data frames, their bytes joined, and its begin."""

    __slots__ = ("content_type", "frames", "metadata", "size_hint")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.content_type: str | None = None
        self.metadata: dict[str, Any] = {}
        self.size_hint: int | None = None

    @property
    def data(self) -> bytes:
        return b"".join(self.frames)


async def read_stream(ctx: ActorContext, port: str) -> StreamData:
    """Every data frame of the Stream on ``port``; its ``error`` or ``closed`` end, a frame
    that takes longer than config ``timeoutMs`` or more than config ``maxBytes`` bytes fail
    the tick naming the port."""
    limit = config_int(ctx, "maxBytes", MAX_STREAM_BYTES, minimum=0)
    timeout_ms = config_int(ctx, "timeoutMs", FRAME_TIMEOUT_MS, minimum=1)
    msg = ctx.inputs.get(port)
    if msg is None:
        raise ActorError(f"in-port {port!r} has no packet")
    if msg["type"] != "Stream":
        raise ActorError(f"in-port {port!r}: expected a Stream (StreamHandle), got {msg['type']}")
    try:
        reader = msg.take_stream()
    except Exception as exc:
        raise ActorError(f"in-port {port!r}: {exc}") from exc
    out = StreamData()
    total = 0
    with reader:
        while True:
            frame = await reader.arecv(timeout_ms)
            kind = frame["kind"]
            if kind == "data":
                total += len(frame["data"])
                if total > limit:
                    raise ActorError(
                        f"in-port {port!r}: stream {reader.stream_id} is longer "
                        f"than config 'maxBytes' ({limit} bytes)"
                    )
                out.frames.append(bytes(frame["data"]))
            elif kind == "begin":
                out.content_type = frame.get("content_type")
                out.metadata = dict(frame.get("metadata") or {})
                out.size_hint = frame.get("size_hint")
            elif kind == "end":
                return out
            elif kind == "timeout":
                raise ActorError(
                    f"in-port {port!r}: stream {reader.stream_id} sent nothing "
                    f"for {timeout_ms} ms (config 'timeoutMs')"
                )
            elif kind == "error":
                raise ActorError(
                    f"in-port {port!r}: stream {reader.stream_id} failed: {frame['error']}"
                )
            else:
                raise ActorError(
                    f"in-port {port!r}: stream {reader.stream_id} was closed by "
                    "its producer before end"
                )


def write_stream(
    ctx: ActorContext,
    port: str,
    chunks: list[bytes] | bytes,
    content_type: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Message:
    """A finished Stream message of ``chunks`` (all queued: they are in memory already)."""
    if isinstance(chunks, (bytes, bytearray)):
        chunks = [bytes(chunks)]
    stream = Stream.create(0, ctx.node, port, content_type=content_type)
    stream.send_begin(content_type, sum(len(c) for c in chunks), metadata)
    for chunk in chunks:
        if chunk:
            stream.send_bytes(chunk)
    stream.end()
    return stream.into_message()
