"""A node of a WebAssembly guest: the actor a network ticks, and its hot path.

:class:`WasmActor` is a template of a loaded module; each node built from it
(:meth:`~reflow._sandbox._guest_actor.GuestActor.open_node`) is a :class:`WasmNodeActor` with
its own :class:`~reflow._sandbox._wasm_instance._GuestInstance`. ``_tick`` (one guest call per
tick) and ``_tick_batch`` (one ``reflow_tick_batch`` call for many, ABI 1.1) are kept flat on
purpose: they are what a sandboxed tick costs beyond the guest's own work.
"""

from __future__ import annotations

import ctypes
import struct
import time
from typing import Any

from .._core._messages import Message
from .._errors import (
    GuestOutputError,
)
from ..abi._codec import (
    decode_batch_head,
    decode_result,
    encode_open,
    encode_tick_input,
)
from ._guest_actor import GuestActor, GuestNodeActor, batch_progress
from ._guest_host import GuestGrants, GuestLimits, GuestTemplate
from ._wasm_instance import _GuestInstance

_MASK32 = 0xFFFFFFFF
_monotonic = time.monotonic
_batch_done = struct.Struct("<I").unpack_from

__all__ = ["WasmActor", "WasmNodeActor"]


class WasmNodeActor(GuestNodeActor):
    """One node's sandboxed instance (its own store). ``run`` is one tick; ``close`` frees
    the store (see :class:`~reflow._sandbox._guest_actor.GuestNodeActor` for why ``run`` takes no
    lock)."""

    def __init__(self, owner: WasmActor, node_id: str, config: dict[str, Any]) -> None:
        super().__init__(owner, node_id, config)
        self.template_actor = owner
        t = owner.template
        inst = _GuestInstance(owner.module, t, owner.limits, owner.grants, node_id)
        try:
            res = decode_result(inst.call_frame("reflow_open", encode_open(t.id, node_id, config)))
        except BaseException:
            inst.close()
            raise
        if not res.ok:
            inst.close()
            raise self._refused(res.error)
        self._inst: _GuestInstance | None = inst
        self._owned.append(inst)
        self._batching = inst.batch_bound is not None and owner.limits.batch_ticks > 1
        self._batch_max = owner.limits.batch_ticks
        #: The compiled codec's whole single tick (encode, call, decode), for a guest whose
        #: ticks cannot call into the host (no imports) on the fast path with a view.
        self._fused = getattr(self.codec, "tick", None)
        if inst.host_calls or inst.tick_bound is None or inst.view is None:
            self._fused = None

    def _tick(self, ctx: Any) -> dict[str, Message] | None:
        """The hot path, kept flat on purpose (each call saved is ~0.1 us of a ~2 us tick):
        encode into the guest's input buffer, one unchecked call, decode the result frame in
        place. With the compiled codec and a guest that imports no host function, those three
        are one C call (``fused``); whatever it does not finish goes on below."""
        inst = self._inst
        assert inst is not None
        host = inst.host
        host.out_bytes = 0
        if _monotonic() >= inst.rearm_at or inst.armed_ticks != inst.ticks:
            # A deadline armed less than an epoch ago still stands (deadline_ticks' slack).
            inst.set_deadline(inst.ticks)
        fused = self._fused
        if fused is not None:
            bound: Any = inst.tick_bound  # set: see _fused
            r = fused(
                ctx.inputs, inst.view, inst.in_ptr, inst.in_cap, bound.args, bound.call,
                bound.trap, inst.out_limit,
            )  # fmt: skip
            if type(r) is dict:
                return r
            if type(r) is int:
                return self._after_call(ctx, inst, host, r)
            if r is not None:
                raise inst.translate(bound.failure(r[0]), "reflow_tick")
        elif inst.host_calls:  # ctx stays set until the next tick: imports run only inside
            host.ctx = ctx
            host.pending = None
        codec = self.codec
        view = inst.view
        in_ptr = inst.in_ptr
        if view is not None:  # encode straight into the guest's input buffer
            n = codec.encode_into(ctx.inputs, view, in_ptr, inst.in_cap)
            if n < 0:
                n = inst.write_input(encode_tick_input(ctx.inputs))
                in_ptr = inst.in_ptr
        else:
            n = inst.write_input(encode_tick_input(ctx.inputs))
            in_ptr = inst.in_ptr
        bound = inst.tick_bound
        if bound is not None:  # the fast path's unchecked call
            args = bound.args
            args[0] = in_ptr
            args[2] = n
            e = bound.call()
            if e or bound.trap.value:
                raise inst.translate(bound.failure(e), "reflow_tick")
            raw = args[0]
        else:
            raw, err = inst.tick_call(in_ptr, n)
            if err is not None:
                raise inst.translate(err, "reflow_tick")
        return self._after_call(ctx, inst, host, raw)

    def _after_call(
        self, ctx: Any, inst: _GuestInstance, host: Any, raw: int
    ) -> dict[str, Message] | None:
        """Check and decode the result slice ``raw`` (ptr | len << 32) of a reflow_tick."""
        if not inst.stable:  # the memory may have moved
            inst.refresh()
        if host.pending is not None:
            pending, host.pending = host.pending, None
            raise pending
        ptr = raw & _MASK32
        ln = (raw >> 32) & _MASK32  # args[0] is a signed i64
        if ln > inst.out_limit - host.out_bytes:
            host.count_output(ln)  # raises OutputLimitError with the details
        view = inst.view
        if ptr + ln > inst.size:
            inst.refresh()  # the guest grew its memory during the tick
            if ptr + ln > inst.size:
                inst.read_slice(raw, "reflow_tick")  # raises GuestOutputError
            view = inst.view
        if view is None:  # the public-API fallback: no view over linear memory
            view, ptr = memoryview(ctypes.string_at(inst.base + ptr, ln)), 0
        outputs = self.codec.decode_single(view, ptr, ptr + ln)
        if outputs is None:
            self._finish(ctx, host, view[ptr : ptr + ln].tobytes())
        elif host._packets_ctx is ctx:  # the tick emitted: the returned packet counts too
            host.count_packets(len(outputs), ctx)
        return outputs

    def _tick_batch(
        self, ctxs: list[Any], errors: list[BaseException | None], base: int
    ) -> tuple[int, bool]:
        """One reflow_tick_batch call (ABI.md, "Batched ticks"): encode the ticks' inputs into
        the guest's input buffer, one unchecked call with a deadline of ``tick_ms`` per tick,
        then each result frame decoded into its ctx. After a trap, the guest's progress
        header says which results are complete: those are delivered and the tick that was
        running gets the error."""
        inst = self._inst
        assert inst is not None and inst.view is not None and inst.batch_bound is not None
        host = inst.host
        try:
            m, size, frame = self._encode_batch(ctxs, inst.view, inst.in_ptr, inst.in_cap)
            if frame is not None:  # the input buffer is too small: grow it (reflow_alloc)
                inst.write_input(frame)
        except Exception as exc:  # the first tick's inputs cannot cross, or alloc failed
            errors[base] = exc
            return 1, False
        view, in_ptr = inst.view, inst.in_ptr
        # Each tick of the batch has its own budget of tick_ms (see _on_deadline): the first
        # look comes after a quarter of it.
        progress = inst.progress_reader
        if progress is None or progress[0] is not view or progress[1] != in_ptr:
            progress = inst.progress_reader = (view, in_ptr, batch_progress(view, in_ptr))
        inst.batch_progress = progress[2]
        inst.batch_count = m
        inst.batch_at = 0
        now = inst.batch_start = _monotonic()
        if now >= inst.rearm_at or inst.armed_ticks != inst.batch_poll:
            inst.set_deadline(inst.batch_poll)  # else the one armed < an epoch ago stands
        host_calls = inst.host_calls
        if host_calls:
            host.begin_batch(ctxs[:m], progress[2])
        bound = inst.batch_bound
        args = bound.args
        args[0] = in_ptr
        args[2] = size
        emitted = None
        try:
            e = bound.call()
            failure = bound.failure(e) if e or bound.trap.value else None
        finally:
            inst.batch_progress = None
            if host_calls:
                emitted = host.end_batch()[0]
        if failure is None:
            raw = args[0]
            rptr = raw & _MASK32
            rlen = (raw >> 32) & _MASK32
            done = _batch_done(view, in_ptr + 4)[0]
        else:  # what the guest reported before it trapped
            _, done, rptr, rlen = decode_batch_head(view, in_ptr)
        if rptr + rlen > inst.size:
            inst.refresh()  # the guest grew its memory during the call
            view = inst.view
        if failure is not None:
            limit_ms = inst.limits.tick_ms
            if done >= m or rptr + rlen > inst.size:  # no usable progress: all of them fail
                exc = inst.translate(failure, f"reflow_tick_batch ({m} ticks)", limit_ms)
                for j in range(m):
                    errors[base + j] = exc
                return m, True
            exc = inst.translate(failure, f"reflow_tick_batch (tick {done + 1} of {m})", limit_ms)
            self._deliver_batch(ctxs, errors, base, view, rptr, rptr + rlen, done, host, emitted)
            errors[base + done] = exc
            return done + 1, True
        if not 1 <= done <= m or rptr + rlen > inst.size:
            exc = host.tag(
                GuestOutputError(
                    f"reflow_tick_batch reported {done} of {m} ticks done with the results "
                    f"[{rptr}, {rptr + rlen}) (linear memory: {inst.size} bytes)"
                )
            )
            for j in range(m):
                errors[base + j] = exc
            return m, False
        self._deliver_batch(ctxs, errors, base, view, rptr, rptr + rlen, done, host, emitted)
        return done, False

    def _release(self, inst: _GuestInstance) -> None:
        self._inst = None
        inst.close()


class WasmActor(GuestActor):
    """A template of a guest module, registered in a network like any actor. Each node built
    from it gets its own sandboxed instance from :meth:`open_node`."""

    node_type = WasmNodeActor

    def __init__(
        self,
        module: Any,  # a WasmModule (whose module imports this one)
        template: GuestTemplate,
        limits: GuestLimits,
        grants: GuestGrants,
    ) -> None:
        super().__init__(template, limits, grants)
        self.module = module
