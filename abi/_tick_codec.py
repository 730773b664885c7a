"""The codec with one node's port names precomputed, for the hot tick: :class:`TickCodec`
encodes a tick's inputs straight into guest memory and decodes the common results without
the general decoder; the compiled C codec (``abi/_ccodec``) takes over where it is built."""

from __future__ import annotations

import struct
from itertools import repeat
from typing import Any

from .._core._messages import Message
from .._errors import MessageError
from ._codec_encode import (
    _port_prefix,
    encode_tick_input,
)
from ._codec_wire import (
    _BATCH_HEAD,
    _U32,
    BATCH_HEAD,
    _new,
)


class TickCodec:
    """The hot tick of one node, with everything that depends only on its ports precomputed.

    Built once per node from its template's in- and out-ports. :meth:`encode_into` writes an
    input frame straight into a buffer (a guest's linear memory); :meth:`decode_single` reads
    a result frame that carries exactly one Integer or Bytes output on a declared out-port —
    the common tick — straight from a buffer, and returns ``None`` for anything else, which
    the caller then hands to :func:`decode_result`. Same bytes and same results as the general
    functions (``tests/abi/test_codec.py`` checks both against every vector).

    One codec per node, used by one tick at a time: it remembers the shape of the last result
    it decoded, because a node's next result almost always has the same port and kind.
    """

    __slots__ = (
        "_batch_inputs",
        "_batch_outputs",
        "_inputs",
        "_last",
        "_last_bytes",
        "_outputs",
        "_runs",
        "_sized",
    )

    def __init__(self, inports: Any, outports: Any) -> None:
        # in-port -> (Struct, head, size) of an Integer frame, then of a Bytes frame's header,
        # where head = entry count 1 + port + kind byte: one pack_into writes the whole header.
        self._inputs: dict[str, tuple[Any, ...]] = {}
        # The same for batch frames, where each frame has a u32 length in front:
        # (in-port, kind) -> (Struct of length + head + i64 | u32, head, its size, is Integer)
        self._batch_inputs: dict[tuple[str, str], tuple[struct.Struct, bytes, int, bool]] = {}
        for port in inports:
            prefix = _port_prefix(port)
            k = 3 + len(prefix)
            as_int, as_bytes = struct.Struct(f"<{k}sq"), struct.Struct(f"<{k}sI")
            self._inputs[port] = (
                as_int,
                b"\x01\x00" + prefix + b"\x03",
                as_int.size,
                as_bytes,
                b"\x01\x00" + prefix + b"\x06",
                as_bytes.size,
            )
            bi = struct.Struct(f"<I{k}sq")
            bb = struct.Struct(f"<I{k}sI")
            heads = self._inputs[port]
            self._batch_inputs[port, "Integer"] = (bi, heads[1], bi.size, True)
            self._batch_inputs[port, "Bytes"] = (bb, heads[4], bb.size, False)
        # head = status done + entry count 1 + port + kind byte -> (Struct reading the head and
        # then the i64 value or the u32 length, its size, head, port, kind code)
        self._outputs: dict[bytes, tuple[struct.Struct, int, bytes, str, int]] = {}
        for port in outports:
            prefix = _port_prefix(port)
            for code, tail in ((3, "q"), (6, "I")):
                head = b"\x00\x01\x00" + prefix + bytes((code,))
                st = struct.Struct(f"<{len(head)}s{tail}")
                self._outputs[head] = (st, st.size, head, port, code)
        self._last: tuple[struct.Struct, int, bytes, str, int] | None = None
        # The last Bytes result frame: (its length, Struct reading head + length + payload,
        # the payload length, out-port); the next frame of the same length costs one unpack.
        self._last_bytes: tuple[int, struct.Struct, int, str] | None = None
        # head -> (Struct of u32 length + head + i64 | u32, its size, head, port, kind code)
        self._batch_outputs: dict[bytes, tuple[struct.Struct, int, bytes, str, int]] = {
            head: (struct.Struct("<I" + spec[0].format[1:]), spec[1] + 4, head, spec[3], spec[4])
            for head, spec in self._outputs.items()
        }
        # A Bytes frame's header Struct extended by the payload of one length ("...I1024s"):
        # a batch of equal-sized Bytes (the usual stream of records) costs one call per frame.
        self._sized: dict[tuple[str, int], struct.Struct] = {}
        # A whole run of equal result frames read by one unpack ("<I6sI1024sI6sI1024s..."):
        # (frame format, frames) -> Struct.
        self._runs: dict[tuple[str, int], struct.Struct] = {}

    def _with_payload(self, st: struct.Struct, n: int) -> struct.Struct:
        key = (st.format, n)
        sized = self._sized.get(key)
        if sized is None:
            if len(self._sized) >= 64:
                self._sized.clear()
            sized = self._sized[key] = struct.Struct(f"{st.format}{n}s")
        return sized

    def _run(self, fmt: str, k: int) -> struct.Struct:
        key = (fmt, k)
        st = self._runs.get(key)
        if st is None:
            if len(self._runs) >= 64:
                self._runs.clear()
            st = self._runs[key] = struct.Struct("<" + fmt * k)
        return st

    def _encode_uniform(
        self, inputs: list[dict[str, Any]], buf: Any, offset: int, capacity: int
    ) -> tuple[int, int, bool] | None:
        """The whole batch in a few C-level passes when every tick has one input, on the
        same port, of the same kind (Integer, or Bytes of one length): the usual batch.
        None when it is not such a batch or does not fit (the general loop decides)."""
        total = len(inputs)
        first = inputs[0]
        if len(first) != 1:
            return None
        [(port, msg)] = first.items()
        kind = msg["type"]
        spec = self._batch_inputs.get((port, kind))
        if spec is None or list(map(len, inputs)).count(1) != total:
            return None
        msgs: list[Any] = [t.get(port) for t in inputs]
        if not all(msgs) or [m["type"] for m in msgs].count(kind) != total:
            return None
        data = [m["data"] for m in msgs]
        st, head, size, is_int = spec
        pos = offset + BATCH_HEAD
        if is_int:
            n = BATCH_HEAD + total * size
            if n > capacity:
                return None
            try:
                body = b"".join(map(st.pack, repeat(size - 4, total), repeat(head, total), data))
            except struct.error:
                return None  # not a 64-bit int: the general loop raises the right error
            buf[pos : pos + len(body)] = body
        else:
            if list(map(type, data)).count(bytes) != total:
                return None
            lengths = list(map(len, data))
            ln = lengths[0]
            n = BATCH_HEAD + total * (size + ln)
            if lengths.count(ln) != total or n > capacity:
                return None
            pre = st.pack(size - 4 + ln, head, ln)
            buf[pos : pos + size] = pre
            body = pre.join(data)
            buf[pos + size : pos + size + len(body)] = body
        _BATCH_HEAD.pack_into(buf, offset, total, 0, 0, 0, 0)
        return total, n, False

    def encode_into(self, inputs: dict[str, Any], buf: Any, offset: int, capacity: int) -> int:
        """Encode the input frame of ``inputs`` into ``buf[offset:]``.

        Returns the number of bytes written, or ``-needed`` (writing nothing) when the frame
        needs more than ``capacity`` bytes. Raises :class:`~reflow.MessageError` like
        :func:`encode_tick_input` (the buffer may then hold part of a frame).
        """
        if len(inputs) == 1:
            [(port, m)] = inputs.items()
            spec = self._inputs.get(port)
            while spec is not None:  # a block to break out of
                kind = m["type"]
                if kind == "Integer":
                    size = spec[2]
                    if size > capacity:
                        return -size
                    try:
                        spec[0].pack_into(buf, offset, spec[1], m["data"])
                        return size
                    except struct.error:
                        break  # not a 64-bit int: the general encoder raises the right error
                if kind == "Bytes":
                    d = m["data"]
                    size = spec[5]
                    n = size + len(d)
                    if n > capacity:
                        return -n
                    spec[3].pack_into(buf, offset, spec[4], n - size)
                    buf[offset + size : offset + n] = d
                    return n
                break
        frame = encode_tick_input(inputs)
        n = len(frame)
        if n > capacity:
            return -n
        buf[offset : offset + n] = frame
        return n

    def encode_batch_into(
        self, inputs: list[dict[str, Any]], buf: Any, offset: int, capacity: int
    ) -> tuple[int, int, bool]:
        """Write a batch frame for the first ticks of ``inputs`` into ``buf[offset:]``.

        Returns (ticks written, bytes written, full): ``full`` when it stopped because the
        next frame did not fit in ``capacity``. It also stops before a tick whose inputs raise
        :class:`~reflow.MessageError`, and raises it if that is the first tick. A tick with
        one Integer or Bytes input (the hot case) costs one ``pack_into``, and a batch of
        nothing but such ticks, all alike, a few C-level passes."""
        if len(inputs) > 1:
            done = self._encode_uniform(inputs, buf, offset, capacity)
            if done is not None:
                return done
        return self._encode_batch_loop(inputs, buf, offset, capacity, 0, offset + BATCH_HEAD)

    def _encode_batch_from(
        self, inputs: list[dict[str, Any]], buf: Any, offset: int, capacity: int, m: int, pos: int
    ) -> tuple[int, int, bool]:
        """:meth:`encode_batch_into` from tick ``m`` on, whose frame goes at ``pos`` (the
        ticks before it are written already): where the compiled codec hands over."""
        if m == 0:
            return TickCodec.encode_batch_into(self, inputs, buf, offset, capacity)
        return self._encode_batch_loop(inputs, buf, offset, capacity, m, pos)

    def _encode_batch_loop(
        self, inputs: list[dict[str, Any]], buf: Any, offset: int, capacity: int, m: int, pos: int
    ) -> tuple[int, int, bool]:
        end = offset + capacity
        total = len(inputs)
        full = False
        specs = self._batch_inputs
        while m < total:
            tick = inputs[m]
            if len(tick) == 1:
                [(port, msg)] = tick.items()
                kind = msg["type"]
                spec = specs.get((port, kind))
                if spec is not None:  # a run of ticks with one input of this port and kind
                    pack, head, size = spec[0].pack_into, spec[1], spec[2]
                    sized, sized_n = pack, -1
                    start = m
                    while True:
                        if spec[3]:
                            if pos + size > end:
                                full = True
                                break
                            try:
                                pack(buf, pos, size - 4, head, msg["data"])
                            except struct.error:
                                break  # not a 64-bit int: the general path raises
                            pos += size
                        else:
                            d = msg["data"]
                            n = size + len(d)
                            if pos + n > end:
                                full = True
                                break
                            if type(d) is bytes:
                                if n != sized_n:
                                    sized_n = n
                                    sized = self._with_payload(spec[0], n - size).pack_into
                                sized(buf, pos, n - 4, head, n - size, d)
                            else:
                                pack(buf, pos, n - 4, head, n - size)
                                buf[pos + size : pos + n] = d
                            pos += n
                        m += 1
                        if m == total:
                            break
                        tick = inputs[m]
                        if len(tick) != 1:
                            break
                        [(p, msg)] = tick.items()
                        if p != port or msg["type"] != kind:
                            break
                    if full:
                        break
                    if m > start:
                        continue
            if pos + 4 > end:
                full = True
                break
            try:
                n = self.encode_into(tick, buf, pos + 4, end - pos - 4)
            except MessageError:
                if m == 0:
                    raise
                break
            if n < 0:
                full = True
                break
            _U32.pack_into(buf, pos, n)
            pos += 4 + n
            m += 1
        if m:
            _BATCH_HEAD.pack_into(buf, offset, m, 0, 0, 0, 0)
        return m, pos - offset if m else 0, full

    def encode_ctxs_into(
        self, ctxs: list[Any], buf: Any, offset: int, capacity: int
    ) -> tuple[int, int, bool]:
        """:meth:`encode_batch_into` of the ``inputs`` of each of ``ctxs``."""
        return self.encode_batch_into([c.inputs for c in ctxs], buf, offset, capacity)

    def deliver_batch(
        self, view: Any, pos: int, end: int, count: int, limit: int, ctxs: list[Any]
    ) -> tuple[int, list[Any]]:
        """:meth:`decode_batch`, then ``ctxs[j].done(frames[j])`` for the leading frames that
        are hot; returns (how many were ended, the frames)."""
        frames = self.decode_batch(view, pos, end, count, limit)
        j = 0
        for ctx, out in zip(ctxs, frames, strict=False):
            if type(out) is not dict:
                break
            ctx.done(out)
            j += 1
        return j, frames

    def decode_batch(self, view: Any, pos: int, end: int, count: int, limit: int) -> list[Any]:
        """The ``count`` result frames of a batch at ``view[pos:end]`` (each ``u32 n`` +
        frame), one entry per frame: the ``{port: message}`` outputs of a hot frame (one
        Integer or Bytes output on a declared out-port, as :meth:`decode_single` reads it),
        ``(start, stop)`` of a frame to decode in full (anything else, or longer than
        ``limit``), or ``None`` for each frame the results end before. ``end`` must not exceed
        ``len(view)``; nothing outside ``view[pos:end]`` is read.

        Consecutive frames of the same shape — the usual batch — are read in a tight loop."""
        out: list[Any] = []
        append = out.append
        outputs = self._batch_outputs
        u32 = _U32.unpack_from
        new = _new
        while len(out) < count:
            if pos + 4 > end or u32(view, pos)[0] > end - pos - 4:
                out.extend([None] * (count - len(out)))
                break
            n = u32(view, pos)[0]
            spec = None
            if 10 <= n <= limit:
                k = 5 + view[pos + 7]
                if k <= n:
                    spec = outputs.get(view[pos + 4 : pos + 4 + k].tobytes())
            before = len(out)
            if spec is not None and count - before > 1:
                pos = self._decode_uniform(view, pos, end, count - before, spec, n, append)
            if spec is not None and len(out) < count:
                unpack, size, head, port = spec[0].unpack_from, spec[1], spec[2], spec[3]
                todo = count - len(out)
                if spec[4] == 3:  # a run of Integer frames
                    want = size - 4
                    while todo and pos + size <= end:
                        n, h, value = unpack(view, pos)
                        if n != want or h != head:
                            break
                        m = new(Message)
                        m["type"] = "Integer"
                        m["data"] = value
                        append({port: m})
                        pos += size
                        todo -= 1
                else:  # a run of Bytes frames
                    fixed = size - 4
                    same = -1  # payload length of the previous frame, read with ``sized``
                    sized = unpack
                    while todo and pos + size <= end:
                        if pos + size + same <= end and same >= 0:
                            n, h, value, data = sized(view, pos)
                            if h == head and value == same and n == fixed + value:
                                m = new(Message)
                                m["type"] = "Bytes"
                                m["data"] = data
                                append({port: m})
                                pos += size + same
                                todo -= 1
                                continue
                        n, h, value = unpack(view, pos)
                        stop = pos + 4 + n
                        if h != head or n != fixed + value or stop > end or n > limit:
                            break
                        m = new(Message)
                        m["type"] = "Bytes"
                        m["data"] = view[pos + size : stop].tobytes()
                        append({port: m})
                        pos = stop
                        todo -= 1
                        if value != same:
                            same = value
                            sized = self._with_payload(spec[0], value).unpack_from
            if len(out) == before and len(out) < count:  # not hot: the caller decodes it
                n = u32(view, pos)[0]
                append((pos + 4, pos + 4 + n))
                pos += 4 + n
        return out

    def _decode_uniform(
        self, view: Any, pos: int, end: int, todo: int, spec: tuple[Any, ...], n: int, append: Any
    ) -> int:
        """Read as many of the next ``todo`` frames as are exactly like the one at ``pos``
        (``u32 n`` + the head of ``spec`` + its Integer, or a Bytes payload of the same
        length) with one unpack, appending their outputs; returns the new position (``pos``
        when fewer than two frames are alike: the per-frame loop takes over)."""
        st, size, head, port, code = spec
        stride = 4 + n
        k = min(todo, (end - pos) // stride)
        if k < 2:
            return pos
        fmt = st.format[1:]
        if code == 3:
            if n != size - 4:
                return pos
            vals = self._run(fmt, k).unpack_from(view, pos)
            if vals[0::3].count(n) != k or vals[1::3].count(head) != k:
                return pos
            new = _new
            for value in vals[2::3]:
                m = new(Message)
                m["type"] = "Integer"
                m["data"] = value
                append({port: m})
            return pos + k * stride
        ln = n - (size - 4)
        if ln < 0:
            return pos
        vals = self._run(f"{fmt}{ln}s", k).unpack_from(view, pos)
        if vals[0::4].count(n) != k or vals[1::4].count(head) != k or vals[2::4].count(ln) != k:
            return pos
        new = _new
        for data in vals[3::4]:
            m = new(Message)
            m["type"] = "Bytes"
            m["data"] = data
            append({port: m})
        return pos + k * stride

    def decode_single(self, view: memoryview, pos: int, end: int) -> dict[str, Message] | None:
        """``{port: message}`` if ``view[pos:end]`` is a done result frame with exactly one
        Integer or Bytes output on a declared out-port; else ``None`` (decode it in full).

        ``end`` must not exceed ``len(view)``; nothing outside ``view[pos:end]`` is read or
        trusted.
        """
        n = end - pos
        last = self._last_bytes
        if last is not None and last[0] == n:  # a Bytes frame like the last: one unpack
            head, value, data = last[1].unpack_from(view, pos)
            spec = self._last
            if spec is not None and head == spec[2] and value == last[2]:
                m = _new(Message)
                m["type"] = "Bytes"
                m["data"] = data
                return {last[3]: m}
        spec = self._last
        if spec is not None and n >= spec[1]:  # one unpack checks the head and reads on
            head, value = spec[0].unpack_from(view, pos)
            if head != spec[2]:
                spec = None
        else:
            spec = None
        if spec is None:
            if n < 10:  # shorter than any frame this recognises
                return None
            k = 5 + view[pos + 3]
            if k > n:  # never read past ``end``: a native guest's frame may end a mapping
                return None
            spec = self._outputs.get(view[pos : pos + k].tobytes())
            if spec is None or n < spec[1]:
                return None
            self._last = spec
            value = spec[0].unpack_from(view, pos)[1]
        m = _new(Message)
        if spec[4] == 3:
            if n != spec[1]:
                return None
            m["type"] = "Integer"
            m["data"] = value
        else:
            if value != n - spec[1]:
                return None
            m["type"] = "Bytes"
            m["data"] = view[pos + spec[1] : end].tobytes()
            self._last_bytes = (n, self._with_payload(spec[0], value), value, spec[3])
        return {spec[3]: m}


class _CompiledTickCodec(TickCodec):
    """A :class:`TickCodec` whose hot methods are the compiled module's (``abi/_ccodec``):
    instance attributes that shadow the Python methods, so a call costs no Python frame.
    What the C code does not write or read exactly it hands back to the Python methods."""

    def __init__(self, inports: Any, outports: Any, compiled: Any) -> None:
        super().__init__(inports, outports)
        c = compiled.Codec(
            list(outports),
            super().encode_into,
            super()._encode_batch_from,
        )
        self.encode_into = c.encode_into  # type: ignore[method-assign]
        self.encode_batch_into = c.encode_batch_into  # type: ignore[method-assign]
        self.decode_single = c.decode_single  # type: ignore[method-assign]
        self.decode_batch = c.decode_batch  # type: ignore[method-assign]
        self.encode_ctxs_into = c.encode_ctxs_into  # type: ignore[method-assign]
        self.deliver_batch = c.deliver_batch  # type: ignore[method-assign]
        #: A wasmtime node's whole single tick (see ``WasmNodeActor._tick``).
        self.tick = c.tick


def tick_codec(inports: Any, outports: Any, compiled: bool | None = None) -> TickCodec:
    """The :class:`TickCodec` of a node: the compiled one when ``abi/_ccodec`` has it
    (``compiled=None``: when it is built; ``False``: never; ``True``: build it or raise
    SandboxError), else the Python one. Both give the same bytes, Messages and errors."""
    from . import _ccodec

    if compiled is False:
        return TickCodec(inports, outports)
    mod = _ccodec.require() if compiled else _ccodec.get()
    if mod is None or len(outports) > 64:
        return TickCodec(inports, outports)
    return _CompiledTickCodec(inports, outports, mod)
