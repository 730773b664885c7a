"""Encoding host values into the guest ABI v1 wire format (host -> guest): messages, tick
inputs, results, batch and open frames (see ``abi/ABI.md``), and reading a batch frame's
results back. Raises :class:`~reflow.MessageError` for a value the format cannot carry."""

from __future__ import annotations

import struct
from typing import Any

from .._core._messages import Message
from .._errors import GuestOutputError, MessageError
from ._codec_decode import (
    TickResult,
    _bad,
    decode_result,
)
from ._codec_wire import (
    _B_FALSE,
    _B_FLOW,
    _B_NULL,
    _B_TRUE,
    _BATCH_HEAD,
    _FLOAT,
    _INT,
    _LEN,
    _U16,
    _U32,
    BATCH_HEAD,
    KIND_CODES,
    STATUS_DONE,
    STATUS_FAIL,
    _dumps,
)

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
