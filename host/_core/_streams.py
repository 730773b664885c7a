"""Streams: byte frames from one producer to exactly one reader, across threads and event loops.

A :class:`Stream` is the producer side. ``into_message()`` wraps its :class:`StreamChannel` in a
``Stream`` message that travels along an edge like any other; the consumer calls
``message.take_stream()`` to get the one :class:`StreamReader`, and reads frames with
``recv(timeout_ms)`` (or ``await arecv(...)``, or by iterating over the data bytes).

What this module promises:

* Frames arrive in the order they were sent: an optional ``begin``, then ``data`` frames, then one
  ``end`` or ``error``. After that, and after a producer that went away without ``end()``,
  ``recv`` returns ``{"kind": "closed"}``; when nothing came in time it returns
  ``{"kind": "timeout"}``.
* ``buffer_size > 0`` bounds the queue: ``send_bytes`` on a full stream waits (without polling)
  until the reader takes a frame; ``send_bytes_nowait`` raises instead. ``buffer_size == 0``
  means unbounded. ``end()`` and ``error()`` never wait, so a producer can always finish.
* Nothing hangs on a party that is gone: a producer waiting on a full stream whose reader was
  closed (or dropped) gets :class:`~reflow.StreamError`, and a reader waiting on a producer that
  was closed (or dropped) gets a ``closed`` frame.
* The data path is a deque under one lock: ``bytes`` are queued as given, ``bytearray`` and
  ``memoryview`` are copied into ``bytes`` once, because the sender may reuse them.

Misuse raises :class:`~reflow.StreamError` naming the stream id: sending after ``end()``,
``error()`` or ``close()``, a second reader, reading after ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._errors import StreamError

# A longer wait is no limit in practice, and longer ones overflow the platform's clock.
_MAX_WAIT_S = 30 * 86400.0

if TYPE_CHECKING:
    from ._messages import Message

__all__ = ["Stream", "StreamChannel", "StreamReader", "take_stream"]

#: A frame as ``recv`` returns it: ``{"kind": "data", "data": b"..."}`` and so on.
Frame = dict[str, Any]

_stream_ids = itertools.count(1)

# Producer states.
_OPEN = "open"
_ENDED = "ended"  # end() was sent
_FAILED = "failed"  # error() was sent
_CLOSED = "closed"  # close()d or dropped without end()


# A thread that runs a scheduler registers a hook here: while a Stream call made on that
# thread would block, the hook runs other ready nodes (the other end of the stream may be one
# of them). It returns False when nothing could run.
_thread_hooks = threading.local()


def set_wait_hook(hook: Callable[[], bool] | None) -> None:
    """Install (or clear) this thread's wait hook; see above."""
    _thread_hooks.hook = hook


def _wait(cond: threading.Condition, lock: Any, remaining: float | None) -> None:
    """``cond.wait(remaining)`` that first lets this thread's scheduler make progress."""
    hook = getattr(_thread_hooks, "hook", None)
    if hook is None:
        cond.wait(remaining)
        return
    lock.release()
    try:
        progressed = hook()
    finally:
        lock.acquire()
    if not progressed:
        cond.wait(0.005 if remaining is None else min(remaining, 0.005))


class StreamArgumentError(StreamError, TypeError):
    """An argument of the wrong kind: a :class:`~reflow.StreamError` that ``except TypeError``
    (what these calls raised before) still catches."""


def _wait_seconds(
    value: Any, name: str, unit: str, per_second: float, stream_id: int
) -> float | None:
    """``value`` (``None`` or a number of ``unit``) as seconds, or a StreamError naming it.

    NaN and infinities are refused: a NaN deadline never passes, so the call would hang."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StreamArgumentError(
            f"stream {stream_id}: {name} must be a number of {unit} or None, "
            f"got {type(value).__name__}"
        )
    if not 0 <= value < math.inf:
        raise StreamError(
            f"stream {stream_id}: {name} must be a finite number of {unit}, 0 or more "
            f"(or None to wait without limit), got {value!r}"
        )
    return min(value / per_second, _MAX_WAIT_S)


def _seconds(timeout_ms: int | None, stream_id: int) -> float | None:
    return _wait_seconds(timeout_ms, "timeout_ms", "milliseconds", 1000.0, stream_id)


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise StreamArgumentError(
        f"send_bytes() takes bytes, bytearray or memoryview, got {type(data).__name__}"
    )


class StreamChannel:
    """The state one producer and one reader share: the frame queue, the lock and both ends' state.

    A ``Stream`` message carries the channel itself (``message["data"]``); its JSON form is
    :meth:`locator`. Copying a message copies the reference, never the channel.
    """

    # The lock is re-entrant because weakref finalizers (a dropped Stream or reader) take it, and
    # the garbage collector may run one on a thread that is already inside this channel.
    def __init__(
        self,
        buffer_size: int = 0,
        origin_actor: str | None = None,
        origin_port: str | None = None,
        content_type: str | None = None,
    ) -> None:
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int):
            raise StreamArgumentError(
                f"buffer_size must be an int, got {type(buffer_size).__name__}"
            )
        if buffer_size < 0:
            raise StreamError(f"buffer_size must be >= 0 (0 means unbounded), got {buffer_size}")
        for name, value in (
            ("origin_actor", origin_actor),
            ("origin_port", origin_port),
            ("content_type", content_type),
        ):
            if value is not None and not isinstance(value, str):
                raise StreamArgumentError(
                    f"{name} must be a str or None, got {type(value).__name__}"
                )
        self.stream_id: int = next(_stream_ids)
        self.buffer_size = buffer_size
        self.origin_actor = origin_actor
        self.origin_port = origin_port
        self.content_type = content_type
        self.size_hint: int | None = None
        self._frames: deque[Frame] = deque()
        self._lock = threading.RLock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._readers_waiting = 0
        self._producers_waiting = 0
        # threads whose producer / reader is waiting right now (see _same_thread_deadlock)
        self._producer_threads: list[int] = []
        self._reader_threads: list[int] = []
        self._watchers: list[Callable[[], None]] = []  # async readers to wake on any change
        self._state = _OPEN
        self._sent_any = False
        self._in_message = False
        self._reader_taken = False
        self._reader_closed = False

    def __repr__(self) -> str:
        return f"<StreamChannel {self.stream_id} content_type={self.content_type!r}>"

    # A live channel is shared, never duplicated: Message.__deepcopy__ must keep it.
    def __copy__(self) -> StreamChannel:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> StreamChannel:
        return self

    def __reduce__(self) -> Any:
        raise StreamError(f"stream {self.stream_id} is live and cannot be pickled or sent away")

    def locator(self) -> dict[str, Any]:
        """The JSON metadata of this stream, the same keys offbit_reflow uses."""
        return {
            "stream_id": self.stream_id,
            "content_type": self.content_type,
            "origin_actor": self.origin_actor or "",
            "origin_port": self.origin_port or "",
            "size_hint": self.size_hint,
        }

    def take_reader(self) -> StreamReader:
        """The one consumer side of this channel; a second call raises StreamError."""
        with self._lock:
            if self._reader_taken:
                raise StreamError(
                    f"stream {self.stream_id} already has a reader; "
                    "a stream is read by exactly one consumer"
                )
            self._reader_taken = True
        return StreamReader(self)

    # -- producer side, called by Stream ------------------------------------------------------
    def _refuse_send(self) -> None:
        # Called with the lock held, before queueing anything.
        sid = self.stream_id
        if self._state == _ENDED:
            raise StreamError(f"stream {sid} already ended; nothing can be sent after end()")
        if self._state == _FAILED:
            raise StreamError(f"stream {sid} already failed; nothing can be sent after error()")
        if self._state == _CLOSED:
            raise StreamError(f"stream {sid} is closed; nothing can be sent after close()")
        if self._reader_closed:
            raise StreamError(f"the reader of stream {sid} was closed; nobody reads this stream")

    def _push(self, frame: Frame, wait: bool, timeout: float | None) -> None:
        """Queue one begin or data frame, waiting for room if the stream is full and ``wait``."""
        watchers: list[Callable[[], None]] = []
        with self._lock:
            self._refuse_send()
            frames = self._frames
            bound = self.buffer_size
            if bound and len(frames) >= bound:
                if not wait:
                    raise StreamError(
                        f"stream {self.stream_id} is full ({len(frames)} of {bound} frames queued);"
                        " use send_bytes() to wait for the reader"
                    )
                deadline = None if timeout is None else time.monotonic() + timeout
                self._producers_waiting += 1
                me = threading.get_ident()
                self._producer_threads.append(me)
                try:
                    while len(frames) >= bound:
                        if me in self._reader_threads:
                            raise self._break_same_thread_deadlock("producer", "reader")
                        if deadline is None:
                            _wait(self._not_full, self._lock, None)
                        else:
                            remaining = deadline - time.monotonic()
                            if remaining <= 0:
                                raise StreamError(
                                    f"stream {self.stream_id} is still full after waiting "
                                    f"{timeout:g} s for the reader ({bound} frames queued)"
                                )
                            _wait(self._not_full, self._lock, remaining)
                        self._refuse_send()
                finally:
                    self._producers_waiting -= 1
                    self._producer_threads.remove(me)
            frames.append(frame)
            self._sent_any = True
            if self._readers_waiting:
                self._not_empty.notify()
            if self._watchers:
                watchers, self._watchers = self._watchers, []
        for wake in watchers:
            wake()

    def _begin(self, frame: Frame, content_type: str | None, size_hint: int | None) -> None:
        with self._lock:
            self._refuse_send()
            if self._sent_any:
                raise StreamError(
                    f"stream {self.stream_id}: send_begin() must come first and only once"
                )
            if self.content_type is None:
                self.content_type = content_type
            if size_hint is not None:
                self.size_hint = size_hint
            self._push(frame, wait=False, timeout=None)  # the queue is empty: never full

    def _finish(self, frame: Frame, state: str) -> None:
        """Queue the final ``end`` or ``error`` frame; never waits for room."""
        with self._lock:
            if self._reader_closed and self._state == _OPEN:
                self._state = state  # nobody is left to tell
                self._frames.clear()
                return
            self._refuse_send()
            self._frames.append(frame)
            self._state = state
            watchers = self._wake_all()
        for wake in watchers:
            wake()

    def _producer_closed(self) -> None:
        """The producer closed or was dropped: the reader sees ``closed`` after what is queued."""
        with self._lock:
            if self._state != _OPEN:
                return
            self._state = _CLOSED
            watchers = self._wake_all()
        for wake in watchers:
            wake()

    def _mark_in_message(self) -> None:
        with self._lock:
            if self._in_message:
                raise StreamError(
                    f"stream {self.stream_id} was already turned into a message; "
                    "pass that message on instead"
                )
            self._in_message = True

    # -- reader side, called by StreamReader --------------------------------------------------
    def _wake_all(self) -> list[Callable[[], None]]:
        # With the lock held: wake every thread waiting either way; the caller runs the
        # returned async watchers after releasing the lock.
        self._not_empty.notify_all()
        self._not_full.notify_all()
        watchers, self._watchers = self._watchers, []
        return watchers

    def _break_same_thread_deadlock(self, me: str, other: str) -> StreamError:
        # A sync producer waiting on the scheduler thread lets the scheduler run the sync
        # reader on top of it (or the other way round); if that one now waits too, the
        # party it waits for is suspended underneath it and can never go on. Close the
        # reading side (with the lock held) so that both ends fail instead of hanging.
        self._reader_closed = True
        self._not_empty.notify_all()
        self._not_full.notify_all()
        return StreamError(
            f"stream {self.stream_id}: the {me} would wait for its {other}, which is itself "
            f"waiting further down this thread's stack (both are sync actors on the "
            f"scheduler thread); make one of them async or execution='worker'"
        )

    def _closed_reader_error(self) -> StreamError:
        return StreamError(f"the reader of stream {self.stream_id} is closed")

    def _pop(self, timeout: float | None) -> Frame:
        """The next frame, waiting up to ``timeout`` seconds (``None``: no limit)."""
        with self._lock:
            if self._reader_closed:
                raise self._closed_reader_error()
            frames = self._frames
            if not frames and self._state == _OPEN and timeout != 0:
                deadline = None if timeout is None else time.monotonic() + timeout
                self._readers_waiting += 1
                me = threading.get_ident()
                self._reader_threads.append(me)
                try:
                    while not frames and self._state == _OPEN:
                        if me in self._producer_threads:
                            raise self._break_same_thread_deadlock("reader", "producer")
                        if deadline is None:
                            _wait(self._not_empty, self._lock, None)
                        else:
                            remaining = deadline - time.monotonic()
                            if remaining <= 0:
                                break
                            _wait(self._not_empty, self._lock, remaining)
                        if self._reader_closed:
                            raise self._closed_reader_error()
                finally:
                    self._readers_waiting -= 1
                    self._reader_threads.remove(me)
            if frames:
                frame = frames.popleft()
                if self._producers_waiting:
                    self._not_full.notify()
                return frame
            if self._state != _OPEN:
                return {"kind": "closed"}
            return {"kind": "timeout"}

    def _pop_or_watch(self, wake: Callable[[], None] | None) -> Frame | None:
        """The next frame without waiting; if there is none yet, register ``wake`` and say None."""
        with self._lock:
            if self._reader_closed:
                raise self._closed_reader_error()
            frames = self._frames
            if frames:
                frame = frames.popleft()
                if self._producers_waiting:
                    self._not_full.notify()
                return frame
            if self._state != _OPEN:
                return {"kind": "closed"}
            if wake is not None:
                self._watchers.append(wake)
            return None

    def _unwatch(self, wake: Callable[[], None]) -> None:
        with self._lock:
            if wake in self._watchers:
                self._watchers.remove(wake)

    def _reader_gone(self) -> None:
        """The reader closed or was dropped: free the queue and release a waiting producer."""
        with self._lock:
            if self._reader_closed:
                return
            self._reader_closed = True
            self._frames.clear()
            watchers = self._wake_all()
        for wake in watchers:
            wake()


class Stream:
    """The producer side of a stream.

    ``Stream.create(buffer_size=0, origin_actor=None, origin_port=None, content_type=None)``;
    note that, as in offbit_reflow, the second positional argument is ``origin_actor``, so pass
    ``content_type=`` by keyword. ``buffer_size`` bounds the queued frames (0: unbounded).

    The producer stays usable after :meth:`into_message`: typically an actor emits the message
    and keeps sending from a thread or task. Finish with :meth:`end` or :meth:`error`;
    :meth:`close` (or leaving a ``with`` block, or dropping the Stream) without either makes the
    reader see ``closed``. Leaving a ``with`` block on an exception sends ``error`` first.

    Frames sent before anyone takes the reader are queued for it. A producer can only tell that
    a message was dropped unread once the reader is closed, so on a bounded stream whose message
    may never be read, pass ``timeout=`` to :meth:`send_bytes`.
    """

    __slots__ = ("__weakref__", "_channel", "_finalizer")

    def __init__(
        self,
        buffer_size: int = 0,
        origin_actor: str | None = None,
        origin_port: str | None = None,
        content_type: str | None = None,
    ) -> None:
        self._channel = StreamChannel(buffer_size, origin_actor, origin_port, content_type)
        self._finalizer = weakref.finalize(self, self._channel._producer_closed)
        self._finalizer.atexit = False

    @classmethod
    def create(
        cls,
        buffer_size: int = 0,
        origin_actor: str | None = None,
        origin_port: str | None = None,
        content_type: str | None = None,
    ) -> Stream:
        """A new stream; ``buffer_size`` frames at most are queued (0: no bound)."""
        return cls(buffer_size, origin_actor, origin_port, content_type)

    def __repr__(self) -> str:
        ch = self._channel
        return f"<Stream {ch.stream_id} {ch._state} buffer_size={ch.buffer_size}>"

    @property
    def stream_id(self) -> int:
        return self._channel.stream_id

    @property
    def channel(self) -> StreamChannel:
        """The shared state a ``Stream`` message carries."""
        return self._channel

    def send_begin(
        self,
        content_type: str | None = None,
        size_hint: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Announce the content before any data; optional, at most once, never waits.

        The reader gets ``{"kind": "begin", "content_type", "size_hint", "metadata"}``;
        ``content_type`` defaults to the stream's.
        """
        if content_type is not None and not isinstance(content_type, str):
            raise StreamArgumentError(
                f"content_type must be a str or None, got {type(content_type).__name__}"
            )
        if size_hint is not None and (
            isinstance(size_hint, bool) or not isinstance(size_hint, int) or size_hint < 0
        ):
            raise StreamError(
                f"stream {self.stream_id}: size_hint must be an int >= 0 or None, got {size_hint!r}"
            )
        if metadata is not None and not isinstance(metadata, dict):
            raise StreamArgumentError(
                f"metadata must be a dict or None, got {type(metadata).__name__}"
            )
        ch = self._channel
        frame = {
            "kind": "begin",
            "content_type": content_type if content_type is not None else ch.content_type,
            "size_hint": size_hint,
            "metadata": dict(metadata) if metadata else {},
        }
        ch._begin(frame, content_type, size_hint)

    def send_bytes(
        self, data: bytes | bytearray | memoryview, *, timeout: float | None = None
    ) -> None:
        """Queue one data frame; on a full stream, wait until the reader takes a frame.

        ``timeout`` (seconds, ``None``: no limit) bounds the wait; when it expires, or the reader
        is closed meanwhile, raises :class:`~reflow.StreamError` and nothing is queued.
        """
        wait = _wait_seconds(timeout, "timeout", "seconds", 1.0, self.stream_id)
        self._channel._push({"kind": "data", "data": _as_bytes(data)}, True, wait)

    def send_bytes_nowait(self, data: bytes | bytearray | memoryview) -> None:
        """Queue one data frame, or raise :class:`~reflow.StreamError` if the stream is full."""
        self._channel._push({"kind": "data", "data": _as_bytes(data)}, False, None)

    def end(self) -> None:
        """Finish the stream normally. Never waits; a no-op once the reader is closed."""
        self._channel._finish({"kind": "end"}, _ENDED)

    def error(self, message: str) -> None:
        """Finish the stream with an error: the reader gets an ``error`` frame. Never waits."""
        self._channel._finish({"kind": "error", "error": str(message)}, _FAILED)

    def close(self) -> None:
        """Stop producing. Without end()/error() first, the reader sees ``closed``. Idempotent."""
        self._finalizer()

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and self._channel._state == _OPEN:
            self.error(f"{type(exc).__name__}: {exc}")
        self.close()

    def into_message(self) -> Message:
        """A ``Stream`` message carrying this stream's channel; once per stream."""
        from ._messages import Message

        self._channel._mark_in_message()
        return Message._stream(self._channel)


def take_stream(channel: StreamChannel) -> StreamReader:
    """The one reader of ``channel`` (what ``Message.take_stream()`` does)."""
    if not isinstance(channel, StreamChannel):
        raise StreamArgumentError(
            f"take_stream() needs a StreamChannel, got {type(channel).__name__}"
        )
    return channel.take_reader()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class StreamReader:
    """The consumer side of a stream: ``recv``/``arecv`` frames, or iterate over the data bytes.

    Iterating (``for chunk in reader`` or ``async for``) yields the ``bytes`` of each data frame,
    skips ``begin``, stops at ``end`` and raises :class:`~reflow.StreamError` on an ``error``
    frame or when the producer went away without ``end()``. ``close()`` (or leaving a ``with``
    block) releases a producer waiting on a full stream; reading afterwards raises.
    """

    __slots__ = ("__weakref__", "_channel", "_finalizer")

    def __init__(self, channel: StreamChannel) -> None:
        self._channel = channel
        self._finalizer = weakref.finalize(self, channel._reader_gone)
        self._finalizer.atexit = False

    def __repr__(self) -> str:
        state = "closed" if self._channel._reader_closed else "open"
        return f"<StreamReader {self._channel.stream_id} {state}>"

    @property
    def stream_id(self) -> int:
        return self._channel.stream_id

    @property
    def closed(self) -> bool:
        return self._channel._reader_closed

    def locator(self) -> dict[str, Any]:
        return self._channel.locator()

    def recv(self, timeout_ms: int | None = None) -> Frame:
        """The next frame, waiting up to ``timeout_ms`` (0: don't wait; ``None``: no limit).

        Returns ``{"kind": "begin"|"data"|"end"|"error"|"closed"|"timeout", ...}``.
        """
        return self._channel._pop(_seconds(timeout_ms, self._channel.stream_id))

    async def arecv(self, timeout_ms: int | None = None) -> Frame:
        """Like :meth:`recv`, without blocking the event loop. Cancelling it loses no frame."""
        timeout = _seconds(timeout_ms, self._channel.stream_id)
        channel = self._channel
        frame = channel._pop_or_watch(None)
        if frame is not None or timeout == 0:
            return frame or {"kind": "timeout"}
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            fut: asyncio.Future[None] = loop.create_future()

            def wake(fut: asyncio.Future[None] = fut) -> None:
                # Runs on the producer's thread; a frame is only popped back in this coroutine.
                with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                    loop.call_soon_threadsafe(_resolve, fut)

            frame = channel._pop_or_watch(wake)
            if frame is not None:
                return frame
            timer = None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    channel._unwatch(wake)
                    return channel._pop_or_watch(None) or {"kind": "timeout"}
                timer = loop.call_later(remaining, _resolve, fut)
            try:
                await fut
            finally:
                if timer is not None:
                    timer.cancel()
                channel._unwatch(wake)

    def close(self) -> None:
        """Stop reading: drop what is queued and release the producer. Idempotent."""
        self._finalizer()

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _data_of(self, frame: Frame) -> bytes | None:
        # For iteration: the bytes of a data frame, None at the end; raises if it ended badly.
        kind = frame["kind"]
        if kind == "data":
            return frame["data"]
        if kind == "end" or (kind == "closed" and self._channel._state == _ENDED):
            return None
        if kind == "error":
            raise StreamError(f"stream {self.stream_id} failed: {frame['error']}")
        raise StreamError(f"stream {self.stream_id} was closed by its producer before end()")

    def __iter__(self) -> StreamReader:
        return self

    def __next__(self) -> bytes:
        frame = self._channel._pop(None)
        while frame["kind"] == "begin":
            frame = self._channel._pop(None)
        data = self._data_of(frame)
        if data is None:
            raise StopIteration
        return data

    def __aiter__(self) -> StreamReader:
        return self

    async def __anext__(self) -> bytes:
        frame = await self.arecv(None)
        while frame["kind"] == "begin":
            frame = await self.arecv(None)
        data = self._data_of(frame)
        if data is None:
            raise StopAsyncIteration
        return data
