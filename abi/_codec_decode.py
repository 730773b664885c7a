"""Decoding what a guest wrote (guest -> host): every byte is untrusted. Each function checks
every length, count and offset against the buffer before use and raises
:class:`~reflow.GuestOutputError` naming the byte offset and what was wrong (see
``abi/ABI.md``); JSON text is depth- and number-checked before ``json`` sees it."""

from __future__ import annotations

from typing import Any, NamedTuple

from .._core._messages import Message
from .._errors import GuestOutputError, MessageError
from ._codec_wire import (
    _F64,
    _I64,
    _JSON_SHAPE,
    _KIND_NAMES,
    _RISKY_NUMBER,
    _U32,
    MAX_JSON_DEPTH,
    STATUS_DONE,
    STATUS_FAIL,
    _loads,
    _new,
)

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
