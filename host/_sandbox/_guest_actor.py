"""The actors every guest engine builds on: a guest template and one node of it.

:class:`GuestActor` is a template (a module or a library) registered in a network like any
actor; :class:`GuestNodeActor` is one node of it: its ports, its tick codec, delivering a
decoded result, batches of ticks in one guest call (ABI 1.1), and a close that is safe while a
tick runs. An engine subclasses both and supplies the guest calls; the host functions a guest
calls back into are :class:`~._guest_host.GuestNodeHost`'s.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .._core._actor import Actor
from .._core._messages import Message
from .._errors import GuestOutputError, MessageError, SandboxError
from ..abi._codec import (
    BATCH_HEAD,
    decode_result,
    encode_batch,
    encode_tick_input,
    tick_codec,
)
from ._guest_describe import GuestTemplate
from ._guest_host import GuestNodeHost
from ._guest_limits import GuestGrants, GuestLimits

__all__ = ["GuestActor", "GuestNodeActor", "batch_progress"]

_U32 = struct.Struct("<I")
#: A batch frame grows a node's input buffer up to about this size; beyond it, batches of big
#: ticks get shorter instead (the guest's memory is capped, and a 1 MiB call already amortises
#: the per-call cost).
_BATCH_BYTES = 1 << 20


class GuestActor(Actor):
    """A template of a guest (a module or a library), registered in a network like any
    actor. It never ticks itself: each node built from it gets its own per-node actor from
    :meth:`open_node`, an instance of :attr:`node_type`."""

    execution = "worker"
    node_type: type[GuestNodeActor]

    def __init__(self, template: GuestTemplate, limits: GuestLimits, grants: GuestGrants) -> None:
        self.template = template
        self.limits = limits
        self.grants = grants
        self.component = template.id
        self.inports = list(template.inports)
        self.outports = list(template.outports)
        self.await_all_inports = template.await_all_inports

    def open_node(self, node_id: str, config: dict[str, Any]) -> GuestNodeActor:
        return self.node_type(self, node_id, config or {})

    def run(self, ctx: Any) -> None:
        raise SandboxError(
            f"{self.component}: a {type(self).__name__} runs through the per-node actor that "
            f"open_node() returns",
            node=getattr(ctx, "node", ""),
            component=self.component,
        )


class GuestNodeActor(Actor):
    """One node of a guest. Subclasses open the guest-side node in ``__init__`` (and put it in
    ``_owned``), implement :meth:`_tick` (one tick's guest call) and :meth:`_release` (free
    the guest-side node; called exactly once).

    No lock on the tick path: it relies on the runtime running **at most one tick of a node
    at a time** (``Scheduler._run`` skips a ``busy`` node; ``_start_worker`` sets ``busy``
    before the batch goes to a worker and only the scheduler thread clears it, in
    ``_drain_completions``, after the whole batch returned), so ``run`` never overlaps
    itself. What may overlap a tick is :meth:`close` from another thread (``Network.shutdown``
    does not: it joins the workers first). ``run`` sets ``_running`` for the time it touches
    guest memory; ``close`` marks the node closed and frees the guest only if no tick is
    running, else the tick frees it on its way out; ``_release_once`` makes sure exactly one
    of them does. Each step is one bytecode-level read or write, which the GIL orders.
    """

    execution = "worker"
    #: Whether :meth:`run_batch` hands several ticks to the guest in one call (an engine sets
    #: it for a guest that exports ``reflow_tick_batch``), and at most how many.
    _batching = False
    _batch_max = 1

    def __init__(self, owner: GuestActor, node_id: str, config: dict[str, Any]) -> None:
        # ``config`` is for the subclass, which opens the guest-side node with it.
        t = owner.template
        self.component = t.id
        self.inports = list(t.inports)
        self.outports = list(t.outports)
        self.await_all_inports = t.await_all_inports
        self.node = node_id
        self.codec = tick_codec(t.inports, t.outports)
        self._running = False
        self._closing = False
        self._owned: list[Any] = []  # the guest-side node; popped by exactly one releaser

    def _closed_error(self) -> SandboxError:
        return SandboxError(
            f"node {self.node!r} ({self.component}) is closed",
            node=self.node,
            component=self.component,
        )

    def _refused(self, error: str) -> SandboxError:
        return SandboxError(
            f"node {self.node!r} ({self.component}): the guest refused to open: {error}",
            node=self.node,
            component=self.component,
        )

    def run(self, ctx: Any) -> None:
        """One tick. The guard around :meth:`_tick` is the lock-free close protocol above."""
        self._running = True  # before reading _closing
        try:
            if self._closing:
                raise self._closed_error()
            outputs = self._tick(ctx)
        finally:
            self._running = False
            if self._closing:
                self._release_once()
        if outputs is not None:
            ctx.done(outputs)

    def run_batch(self, ctxs: list[Any]) -> list[BaseException | None]:
        """Consecutive ticks of this node (``Scheduler._worker_ticks``): each ctx ends resolved
        or has its exception in the returned list. With a batching guest, up to
        ``_batch_max`` ticks go to the guest in one ``reflow_tick_batch`` call; a trap ends
        that call, and the ticks after the one that trapped then run one call each, so that
        every tick has its own time limit again (ABI.md, "Batched ticks")."""
        errors: list[BaseException | None] = [None] * len(ctxs)
        self._running = True  # the close protocol of ``run``, held for the whole batch
        try:
            if self._closing:
                return [self._closed_error()] * len(ctxs)
            i, n = 0, len(ctxs)
            batching = self._batching
            while i < n:
                if batching and n - i > 1:
                    used, trapped = self._tick_batch(ctxs[i : i + self._batch_max], errors, i)
                    i += used
                    batching = not trapped
                    continue
                errors[i] = self._one(ctxs[i])
                i += 1
        finally:
            self._running = False
            if self._closing:
                self._release_once()
        return errors

    def _one(self, ctx: Any) -> BaseException | None:
        try:
            outputs = self._tick(ctx)
            if outputs is not None:
                ctx.done(outputs)
        except Exception as exc:
            return exc
        return None

    def _tick(self, ctx: Any) -> dict[str, Message] | None:
        """Run the guest on ``ctx.inputs``. Return the outputs of a hot result for ``run`` to
        deliver with ``ctx.done`` after the guard, or end the tick itself (``_finish``) and
        return None."""
        raise NotImplementedError

    def _tick_batch(
        self, ctxs: list[Any], errors: list[BaseException | None], base: int
    ) -> tuple[int, bool]:
        """One ``reflow_tick_batch`` call for the first ticks of ``ctxs`` (at least one).
        Resolve each tick it covered or set ``errors[base + i]``; return (ticks covered,
        whether the call trapped)."""
        raise NotImplementedError

    def _encode_batch(
        self, ctxs: list[Any], buf: Any, offset: int, capacity: int
    ) -> tuple[int, int, bytes | None]:
        """Write a batch frame for the first ticks of ``ctxs`` into ``buf[offset:]``.

        Returns (ticks, size, None); or, when the buffer is too small and smaller than
        ``_BATCH_BYTES``, (ticks, size, frame) with the frame as bytes, for the caller to grow
        its buffer and copy (a batch frame grows the buffer to about ``_BATCH_BYTES`` at most:
        beyond that, batches get shorter). A tick whose inputs cannot cross the boundary ends
        the batch before it; if it is the first, its MessageError is raised."""
        m, size, full = self.codec.encode_ctxs_into(ctxs, buf, offset, capacity)
        if m and (not full or capacity >= _BATCH_BYTES):
            return m, size, None
        inputs = [c.inputs for c in ctxs]
        room = max(_BATCH_BYTES, capacity)
        frames: list[bytes] = []
        total = BATCH_HEAD
        for i in inputs:
            try:
                f = encode_tick_input(i)
            except MessageError:
                if not frames:
                    raise
                break
            if frames and total + 4 + len(f) > room:
                break
            frames.append(f)
            total += 4 + len(f)
        frame = encode_batch(frames)
        return len(frames), len(frame), frame

    def _deliver_batch(
        self,
        ctxs: list[Any],
        errors: list[BaseException | None],
        base: int,
        view: Any,
        pos: int,
        end: int,
        count: int,
        host: GuestNodeHost,
        emitted: dict[int, int] | None = None,
        failed: dict[int, BaseException] | None = None,
    ) -> None:
        """End ticks ``0..count-1`` of ``ctxs`` with the result frames at ``view[pos:end]``
        (each ``u32 n`` + frame). A frame that is invalid, over the output cap, or of a tick
        whose host function failed (``failed``) fails that tick alone; ``emitted`` is what each
        tick already emitted, which counts toward its cap. ``end`` must lie inside ``view``."""
        limit = host.limits.output_bytes
        # With bytes emitted mid-tick, every frame takes the full path, which counts them.
        if failed:
            frames = self.codec.decode_batch(view, pos, end, count, -1 if emitted else limit)
            hot = 0
        else:  # the hot loop: the leading hot frames end their ticks
            hot, frames = self.codec.deliver_batch(
                view, pos, end, count, -1 if emitted else limit, ctxs
            )
        for j in range(hot, count):
            ctx, out = ctxs[j], frames[j]
            if failed and j in failed:
                err = failed[j]
                errors[base + j] = host.tag(err) if isinstance(err, SandboxError) else err
            elif out is None:
                errors[base + j] = host.tag(
                    GuestOutputError(
                        f"invalid output encoding: the results of reflow_tick_batch end "
                        f"before the result of tick {j + 1} of {count}"
                    )
                )
            elif type(out) is dict:
                ctx.done(out)
            else:
                try:
                    host.out_bytes = emitted.get(j, 0) if emitted else 0
                    host.count_output(out[1] - out[0])
                    self._finish(ctx, host, view[out[0] : out[1]].tobytes())
                except Exception as exc:
                    errors[base + j] = exc

    @staticmethod
    def _finish(ctx: Any, host: GuestNodeHost, frame: bytes) -> None:
        """End the tick with a result frame the fast decoder did not take (several outputs,
        other kinds, a fail, or something invalid)."""
        try:
            ok, outputs, error = decode_result(frame)
        except GuestOutputError as exc:
            raise host.tag(exc) from None
        if not ok:
            ctx.fail(error)
            return
        host.check_ports(outputs, ctx)
        for port, msg in outputs:
            ctx.emit(port, msg)
        ctx.done()

    def _release(self, owned: Any) -> None:
        raise NotImplementedError

    def _release_once(self) -> None:
        try:
            owned = self._owned.pop()  # atomic: a second caller finds the list empty
        except IndexError:
            return
        self._release(owned)

    def close(self) -> None:
        """Free the guest-side node (idempotent). Safe while a tick runs: that tick frees
        it when it returns; later ticks raise ``SandboxError: ... is closed``."""
        self._closing = True
        if not self._running:
            self._release_once()


def batch_progress(view: Any, offset: int) -> Callable[[], int]:
    """A reader of the ``done`` counter of the batch frame at ``view[offset:]``."""
    unpack = _U32.unpack_from
    at = offset + 4
    return lambda: unpack(view, at)[0]
