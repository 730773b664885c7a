"""The wire format of guest ABI v1: messages and frames as bytes (see ``abi/ABI.md``).

A compact little-endian binary layout: one kind byte per message, fixed-width scalars, and
length-prefixed UTF-8 / raw bytes; structured data (Object, Array, Event, Optional, Any) is
carried as length-prefixed JSON text. It was chosen by measurement (ABI.md, "Why this
encoding"): scalars and Bytes — the hot cases — cost one ``struct`` call each way and no
base64, and a C guest parses it with a few lines of pointer arithmetic instead of a JSON or
msgpack library.

Encoding host values raises :class:`~reflow.MessageError` (a Stream, an Integer outside 64
bits); decoding what a guest produced raises :class:`~reflow.GuestOutputError` naming the byte
offset and what was wrong. Both directions are pure functions with no runtime state;
:class:`TickCodec` is the same codec with one node's port names precomputed, for the hot tick.
Batch frames (ABI 1.1: several ticks in one ``reflow_tick_batch`` call) are a 24-byte header
followed by length-prefixed input frames (:func:`encode_batch`, :func:`decode_batch_head`).
"""

from __future__ import annotations

import json
import re
import struct
from itertools import repeat
from typing import Any, NamedTuple

from .._core._messages import Message
from .._errors import GuestOutputError, MessageError

__all__ = [
    "BATCH_HEAD",
    "KIND_CODES",
    "MAX_JSON_DEPTH",
    "TickCodec",
    "TickResult",
    "decode_batch_head",
    "decode_batch_results",
    "decode_message",
    "decode_open",
    "decode_outputs",
    "decode_result",
    "decode_tick_input",
    "encode_batch",
    "encode_message",
    "encode_open",
    "encode_outputs",
    "encode_result_done",
    "encode_result_fail",
    "encode_tick_input",
    "tick_codec",
]

#: Kind byte of every message kind. Stream (13) is reserved: ABI 1.0 cannot carry a live
#: stream across the boundary, and both sides refuse it.
KIND_CODES: dict[str, int] = {
    "Null": 0,
    "Flow": 1,
    "Boolean": 2,
    "Integer": 3,
    "Float": 4,
    "String": 5,
    "Bytes": 6,
    "Error": 7,
    "Object": 8,
    "Array": 9,
    "Event": 10,
    "Optional": 11,
    "Any": 12,
    "Stream": 13,
}
_KIND_NAMES = {code: name for name, code in KIND_CODES.items()}

STATUS_DONE = 0
STATUS_FAIL = 1

_INT = struct.Struct("<Bq")
_FLOAT = struct.Struct("<Bd")
_LEN = struct.Struct("<BI")  # kind + u32 length prefix
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_RESULT_HEAD = struct.Struct("<BH")
#: The batch frame header: count (host), done, results pointer, results length (guest), 0.
_BATCH_HEAD = struct.Struct("<IIQII")
BATCH_HEAD = _BATCH_HEAD.size  # 24

_B_NULL = b"\x00"
_B_FLOW = b"\x01"
_B_FALSE = b"\x02\x00"
_B_TRUE = b"\x02\x01"

_new = dict.__new__
_JSON_SHAPE = {8: "object", 9: "array", 10: "object"}
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_loads = json.loads

#: How deeply the JSON text of one message (or the open frame's config) may nest: objects and
#: arrays, nested messages in Optional/Any included (ABI.md, section 3). Deeper text is
#: refused by the decoder, so nothing recursive on either side can run out of stack.
MAX_JSON_DEPTH = 64
#: A number literal that could overflow a float to infinity: an exponent, or 300+ digits.
_RISKY_NUMBER = re.compile(r"[0-9][eE]|[0-9]{300}")

# Port-name prefixes (u8 length + UTF-8) are cached: the same few names repeat every tick.
_PORT_CACHE: dict[str, bytes] = {}


def _port_prefix(port: str) -> bytes:
    b = _PORT_CACHE.get(port)
    if b is None:
        raw = port.encode("utf-8")
        if not 0 < len(raw) < 256:
            raise MessageError(f"port name {port!r} must be 1..255 bytes of UTF-8", path=port)
        b = bytes((len(raw),)) + raw
        if len(_PORT_CACHE) < 4096:
            _PORT_CACHE[port] = b
    return b


def _json_data(data: Any) -> Any:
    if isinstance(data, Message):
        return data.as_json()
    return data


def _append_message(out: bytearray, m: Any, path: str) -> None:
    """Append one message to ``out``. Hot path: the common kinds come first."""
    kind = m["type"]
    if kind == "Integer":
        v = m["data"]
        try:
            out += _INT.pack(3, v)
        except struct.error as exc:
            raise MessageError(
                f"Integer {v!r} does not fit in 64 bits and cannot cross the guest boundary",
                path=path,
            ) from exc
    elif kind == "Bytes":
        v = m["data"]
        out += _LEN.pack(6, len(v))
        out += v
    elif kind == "String":
        v = m["data"].encode("utf-8")
        out += _LEN.pack(5, len(v))
        out += v
    elif kind == "Float":
        out += _FLOAT.pack(4, m["data"])
    elif kind == "Boolean":
        out += _B_TRUE if m["data"] else _B_FALSE
    elif kind == "Flow":
        out += _B_FLOW
    elif kind == "Null":
        out += _B_NULL
    elif kind == "Error":
        v = str(m["data"]).encode("utf-8")
        out += _LEN.pack(7, len(v))
        out += v
    elif kind == "Stream":
        raise MessageError(
            "a Stream message cannot cross the guest boundary in ABI 1.0; send its frames "
            "as Bytes messages instead",
            path=path,
        )
    else:
        code = KIND_CODES.get(kind)
        if code is None:
            raise MessageError(f"unknown message type {kind!r}", path=path)
        try:
            v = _dumps(_json_data(m.get("data"))).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise MessageError(f"{kind} data is not JSON-encodable: {exc}", path=path) from exc
        out += _LEN.pack(code, len(v))
        out += v


def encode_message(m: Any) -> bytes:
    """One message as bytes (the ``msg`` production of ABI.md)."""
    out = bytearray()
    _append_message(out, m, "$")
    return bytes(out)


def _append_entries(out: bytearray, entries: Any) -> None:
    for port, m in entries:
        out += _port_prefix(port)
        _append_message(out, m, f"$.{port}")


def encode_tick_input(inputs: dict[str, Any]) -> bytes:
    """The input frame of one tick: u16 count, then (port, message) entries."""
    out = bytearray(_U16.pack(len(inputs)))
    _append_entries(out, inputs.items())
    return bytes(out)


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


def encode_outputs(outputs: Any) -> bytes:
    """An outputs list (the emit frame): u16 count, then (port, message) entries.

    ``outputs`` is a mapping or an iterable of ``(port, message)`` pairs.
    """
    items = list(outputs.items()) if isinstance(outputs, dict) else list(outputs)
    if len(items) > 0xFFFF:
        raise MessageError(f"{len(items)} outputs in one frame; the limit is 65535")
    out = bytearray(_U16.pack(len(items)))
    _append_entries(out, items)
    return bytes(out)


def encode_result_done(outputs: Any = ()) -> bytes:
    """A result frame that ends the tick with ``done(outputs)``."""
    return bytes((STATUS_DONE,)) + encode_outputs(outputs)


def encode_result_fail(message: str) -> bytes:
    """A result frame that ends the tick with ``fail(message)``."""
    raw = message.encode("utf-8")
    return bytes((STATUS_FAIL,)) + _U32.pack(len(raw)) + raw


def encode_batch(frames: Any) -> bytes:
    """A batch frame (ABI 1.1) of already encoded input frames: the 24-byte header (count,
    then the guest's fields zeroed), then each frame as ``u32 n`` + frame."""
    frames = list(frames)
    out = bytearray(_BATCH_HEAD.pack(len(frames), 0, 0, 0, 0))
    for f in frames:
        out += _U32.pack(len(f))
        out += f
    return bytes(out)


def decode_batch_head(buf: Any, offset: int = 0) -> tuple[int, int, int, int]:
    """(count, done, results pointer, results length) of the batch frame at ``buf[offset:]``:
    what the guest reported so far. Untrusted: the caller checks them."""
    try:
        count, done, ptr, n, _ = _BATCH_HEAD.unpack_from(buf, offset)
    except struct.error:
        raise _bad(offset, f"a batch frame starts with a {BATCH_HEAD}-byte header") from None
    return count, done, ptr, n


def decode_batch_results(buf: bytes, count: int) -> list[TickResult | GuestOutputError]:
    """The ``count`` result frames of a batch (each ``u32 n`` + result frame), each decoded
    with :func:`decode_result`, or the error that frame (alone) fails with. Bytes after the
    last frame are ignored."""
    out: list[TickResult | GuestOutputError] = []
    pos, end = 0, len(buf)
    for j in range(count):
        if pos + 4 > end or _U32.unpack_from(buf, pos)[0] > end - pos - 4:
            err = _bad(pos, f"the batch results end before the result of tick {j + 1}")
            out.extend([err] * (count - j))
            break
        n = _U32.unpack_from(buf, pos)[0]
        try:
            out.append(decode_result(buf[pos + 4 : pos + 4 + n]))
        except GuestOutputError as exc:
            out.append(exc)
        pos += 4 + n
    return out


def encode_open(template: str, node: str, config: dict[str, Any]) -> bytes:
    """The frame given to ``reflow_open``: template id, node id, config as JSON text."""
    t = template.encode("utf-8")
    n = node.encode("utf-8")
    if not 0 < len(t) < 256 or len(n) > 255:
        raise MessageError("template and node ids must be at most 255 bytes of UTF-8")
    try:
        c = _dumps(config if config is not None else {}).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise MessageError(f"node config is not JSON-encodable: {exc}") from exc
    return bytes((len(t),)) + t + bytes((len(n),)) + n + _U32.pack(len(c)) + c


# -- decoding (guest -> host: every byte is untrusted) ----------------------------------------


def _bad(offset: int, what: str) -> GuestOutputError:
    return GuestOutputError(f"invalid output encoding at byte {offset}: {what}")


def _read_len(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos + 4 > end:
        raise _bad(pos, "truncated length prefix")
    n = _U32.unpack_from(buf, pos)[0]
    pos += 4
    if n > end - pos:
        raise _bad(pos, f"length {n} runs past the end of the frame ({end - pos} bytes left)")
    return n, pos


def _utf8(buf: bytes, pos: int, n: int) -> str:
    try:
        return buf[pos : pos + n].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(pos + exc.start, "text is not valid UTF-8") from None


class _JSONRefused(Exception):
    """Raised inside json.loads by the hooks below; turned into a GuestOutputError."""


def _refuse_constant(name: str) -> Any:
    raise _JSONRefused(f"{name} is not JSON (ABI.md, section 3: no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf and nan - nan are nan
        raise _JSONRefused(
            f"the number {text[:40]} overflows a 64-bit float (ABI.md, section 3: no NaN or "
            f"Infinity)"
        )
    return value


def _json_depth(data: Any) -> int:
    """How deeply ``data`` nests (a scalar 0, ``[]`` 1, ``[[1]]`` 2); iterative."""
    deepest = 0
    stack = [(data, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if type(value) is dict:
            value = value.values()
        elif type(value) is not list:
            continue
        if depth > deepest:
            deepest = depth
        for item in value:
            if type(item) is dict or type(item) is list:
                push((item, depth + 1))
    return deepest


def _parse_json(text: str, pos: int, what: str) -> Any:
    """``text`` (the JSON of ``what``, starting at byte ``pos``) parsed as strict JSON: no
    NaN/Infinity, no number that overflows a float, at most :data:`MAX_JSON_DEPTH` levels."""
    try:
        if _RISKY_NUMBER.search(text) is None:
            data = _loads(text, parse_constant=_refuse_constant)
        else:
            data = _loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _JSONRefused as exc:
        raise _bad(pos, f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise _bad(
            pos,
            f"{what} nests too deeply to parse (far more than the limit of "
            f"{MAX_JSON_DEPTH} levels)",
        ) from None
    except ValueError as exc:
        raise _bad(pos, f"{what} is not valid JSON ({exc})") from None
    # Depth can only pass the limit if there are that many brackets: count them in C first.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        depth = _json_depth(data)
        if depth > MAX_JSON_DEPTH:
            raise _bad(
                pos, f"{what} nests {depth} levels deep; the limit is {MAX_JSON_DEPTH} levels"
            )
    return data


def _read_message(buf: bytes, pos: int, end: int) -> tuple[Message, int]:
    if pos >= end:
        raise _bad(pos, "truncated: expected a message kind byte")
    code = buf[pos]
    pos += 1
    m = _new(Message)
    if code == 3:
        if pos + 8 > end:
            raise _bad(pos, "truncated Integer")
        m["type"] = "Integer"
        m["data"] = _I64.unpack_from(buf, pos)[0]
        return m, pos + 8
    if code == 6:
        n, pos = _read_len(buf, pos, end)
        m["type"] = "Bytes"
        m["data"] = bytes(buf[pos : pos + n])
        return m, pos + n
    if code == 5 or code == 7:
        n, pos = _read_len(buf, pos, end)
        m["type"] = "String" if code == 5 else "Error"
        m["data"] = _utf8(buf, pos, n)
        return m, pos + n
    if code == 4:
        if pos + 8 > end:
            raise _bad(pos, "truncated Float")
        m["type"] = "Float"
        m["data"] = _F64.unpack_from(buf, pos)[0]
        return m, pos + 8
    if code == 2:
        if pos >= end:
            raise _bad(pos, "truncated Boolean")
        b = buf[pos]
        if b > 1:
            raise _bad(pos, f"Boolean byte must be 0 or 1, got {b}")
        m["type"] = "Boolean"
        m["data"] = b == 1
        return m, pos + 1
    if code == 1 or code == 0:
        m["type"] = "Flow" if code == 1 else "Null"
        return m, pos
    if 8 <= code <= 12:
        kind = _KIND_NAMES[code]
        n, pos = _read_len(buf, pos, end)
        text = _utf8(buf, pos, n)
        data = _parse_json(text, pos, f"{kind} data")
        if code == 9:
            ok = type(data) is list
        elif code == 8 or code == 10:
            ok = type(data) is dict
        else:
            ok = True
        if not ok:
            raise _bad(pos, f"{kind} data must be a JSON {_JSON_SHAPE[code]}, got {text[:40]!r}")
        if code >= 11 and type(data) is dict and isinstance(data.get("type"), str):
            # Optional/Any may wrap a message in its JSON form: let the Message rules decide.
            try:
                return Message.from_json({"type": kind, "data": data}), pos + n
            except MessageError as exc:
                raise _bad(pos, f"{kind} data does not fit the kind: {exc}") from None
            except (RecursionError, TypeError, ValueError) as exc:  # belt and braces
                raise _bad(pos, f"{kind} data is not a valid nested message ({exc})") from None
        m["type"] = kind
        m["data"] = data
        return m, pos + n
    if code == 13:
        raise _bad(pos - 1, "a Stream message cannot cross the guest boundary in ABI 1.0")
    raise _bad(pos - 1, f"unknown message kind byte {code}")


def _read_port(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    if pos >= end:
        raise _bad(pos, "truncated: expected a port name")
    n = buf[pos]
    pos += 1
    if n == 0:
        raise _bad(pos - 1, "empty port name")
    if pos + n > end:
        raise _bad(pos, "port name runs past the end of the frame")
    return _utf8(buf, pos, n), pos + n


_PORT_NAMES: dict[bytes, str] = {}


def _read_entries(buf: bytes, pos: int, end: int) -> tuple[list[tuple[str, Message]], int]:
    """Decode ``u16 count`` + entries. Integer and Bytes are decoded inline (the hot kinds);
    everything else goes through :func:`_read_message`."""
    if pos + 2 > end:
        raise _bad(pos, "truncated: expected a u16 entry count")
    count = buf[pos] | (buf[pos + 1] << 8)
    pos += 2
    entries = []
    for _ in range(count):
        if pos >= end:
            raise _bad(pos, "truncated: expected a port name")
        n = buf[pos]
        stop = pos + 1 + n
        if n == 0 or stop > end:
            raise _bad(pos, "empty port name" if n == 0 else "port name runs past the frame")
        raw = buf[pos + 1 : stop]
        port = _PORT_NAMES.get(raw)
        if port is None:
            port = _utf8(buf, pos + 1, n)
            if len(_PORT_NAMES) < 4096:
                _PORT_NAMES[raw] = port
        pos = stop
        code = buf[pos] if pos < end else -1
        if code == 3 and pos + 9 <= end:
            m = _new(Message)
            m["type"] = "Integer"
            m["data"] = _I64.unpack_from(buf, pos + 1)[0]
            pos += 9
        elif code == 6 and pos + 5 <= end:
            n = _U32.unpack_from(buf, pos + 1)[0]
            pos += 5
            if n > end - pos:
                raise _bad(pos, f"length {n} runs past the end of the frame ({end - pos} left)")
            m = _new(Message)
            m["type"] = "Bytes"
            m["data"] = buf[pos : pos + n]
            pos += n
        else:
            m, pos = _read_message(buf, pos, end)
        entries.append((port, m))
    return entries, pos


def _check_end(pos: int, end: int) -> None:
    if pos != end:
        raise _bad(pos, f"{end - pos} unexpected trailing byte(s)")


def decode_message(buf: bytes) -> Message:
    """Inverse of :func:`encode_message`; the whole buffer must be one message."""
    m, pos = _read_message(buf, 0, len(buf))
    _check_end(pos, len(buf))
    return m


def decode_outputs(buf: bytes) -> list[tuple[str, Message]]:
    """Inverse of :func:`encode_outputs`."""
    entries, pos = _read_entries(buf, 0, len(buf))
    _check_end(pos, len(buf))
    return entries


def decode_tick_input(buf: bytes) -> dict[str, Message]:
    """Inverse of :func:`encode_tick_input`."""
    return dict(decode_outputs(buf))


class TickResult(NamedTuple):
    """A decoded result frame: ``ok`` with ``outputs``, or not ok with ``error``."""

    ok: bool
    outputs: list[tuple[str, Message]]
    error: str


_tuple_new = tuple.__new__


def decode_result(buf: bytes) -> TickResult:
    """Decode the result frame a guest returned from ``reflow_open`` / ``reflow_tick``."""
    end = len(buf)
    if end == 0:
        raise _bad(0, "empty result frame")
    status = buf[0]
    if status == STATUS_DONE:
        entries, pos = _read_entries(buf, 1, end)
        if pos != end:
            raise _bad(pos, f"{end - pos} unexpected trailing byte(s)")
        return _tuple_new(TickResult, (True, entries, ""))
    if status == STATUS_FAIL:
        n, pos = _read_len(buf, 1, end)
        text = _utf8(buf, pos, n)
        _check_end(pos + n, end)
        return TickResult(False, [], text)
    raise _bad(0, f"result status byte must be 0 (done) or 1 (fail), got {status}")


def decode_open(buf: bytes) -> tuple[str, str, dict[str, Any]]:
    """Inverse of :func:`encode_open`: (template, node, config)."""
    end = len(buf)
    template, pos = _read_port(buf, 0, end)
    if pos >= end:
        raise _bad(pos, "truncated: expected the node id")
    n = buf[pos]
    pos += 1
    if pos + n > end:
        raise _bad(pos, "node id runs past the end of the frame")
    node = _utf8(buf, pos, n)
    pos += n
    clen, pos = _read_len(buf, pos, end)
    config = _parse_json(_utf8(buf, pos, clen), pos, "config")
    if type(config) is not dict:
        raise _bad(pos, f"config must be a JSON object, got {type(config).__name__}")
    _check_end(pos + clen, end)
    return template, node, config
