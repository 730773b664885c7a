"""Messages: the values that travel along edges.

A :class:`Message` *is* a dict of the JSON shape ``{"type": "Integer", "data": 42}`` (a ``dict``
subclass), so code written for the JSON form — ``ctx.inputs["in"]["data"]`` — works unchanged, and
printing one shows the dict, as ``offbit_reflow``'s plain dicts print (``to_json_string()`` is
its JSON text). Building one costs about as much as building a small object, and a
message goes from one Python actor to the next as the same object: no JSON round trip on the
hot path. Treat messages as immutable: a fan-out hands the same object to every consumer.

``Message.from_json`` is the validating entry point for anything that did not come from one of
the typed constructors; it raises :class:`~reflow.MessageError` naming the bad part. Objects
and arrays nest at most ``MAX_DEPTH`` (200) levels, the message itself and messages inside
``Any``/``Optional`` counted, so no deep value can make anything downstream recurse too far.
"""

from __future__ import annotations

import base64
import builtins
import json
import numbers
import operator
import reprlib
from typing import Any

from .._errors import MessageError
from .._jsonread import (
    MAX_DEPTH,
    JSONDepthError,
    check_depth,
    loads,
    measure_depth,
    segment,
    shorten_path,
)

__all__ = ["KINDS", "Message", "as_message"]

#: Every message kind, in the order of the design document.
KINDS = (
    "Flow",
    "Event",
    "Boolean",
    "Integer",
    "Float",
    "String",
    "Object",
    "Array",
    "Bytes",
    "Stream",
    "Optional",
    "Any",
    "Error",
    "Null",
)
_KINDS = frozenset(KINDS)
_ALIASES = {"StreamHandle": "Stream"}  # the name offbit_reflow uses for Stream
_NO_DATA = frozenset(("Flow", "Null"))

_new = dict.__new__


class _NotJSON(Exception):
    """Unwinds _plain's recursion, collecting the path of the bad part on the way out."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason  # empty: nested past MAX_DEPTH
        self.segments: list[str] = []


def _plain(value: Any, level: int, heights: dict[int, int]) -> int:
    """The height of ``value`` (0 for a scalar), which sits at ``level``; raises _NotJSON for
    anything that is not plain JSON data or nests past MAX_DEPTH. A container met again (a
    value shared by several parents) is checked once."""
    if value is None or isinstance(value, (str, int, float)):
        return 0
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        raise _NotJSON(f"{type(value).__name__} is not JSON data")
    known = heights.get(id(value))
    if known is not None:
        if level + known - 1 > MAX_DEPTH:
            raise _NotJSON
        return known
    if level > MAX_DEPTH:
        raise _NotJSON
    tallest = 0
    check_keys = isinstance(value, dict)
    for key, item in items:
        if check_keys and not isinstance(key, str):
            raise _NotJSON(f"object keys must be strings, got {reprlib.repr(key)}")
        if item is None or isinstance(item, (str, int, float)):
            continue
        try:
            tallest = max(tallest, _plain(item, level + 1, heights))
        except _NotJSON as exc:
            exc.segments.append(segment(key))
            raise
    heights[id(value)] = tallest + 1
    return tallest + 1


def _check_json(value: Any, path: str, level: int) -> None:
    """Raise MessageError unless ``value`` is plain JSON data (dict, list, str, number...)
    that, sitting at ``level`` of a message's JSON (the message itself is level 1), nests no
    deeper than MAX_DEPTH."""
    try:
        _plain(value, level, {})
    except _NotJSON as exc:
        if exc.reason:
            raise MessageError(exc.reason, path=path + "".join(exc.segments[::-1])) from None
        _too_deep(value, path, level)


def _too_deep(value: Any, path: str, level: int) -> None:
    """Raise the MessageError for a ``value`` at ``level`` that nests past MAX_DEPTH."""
    try:
        check_depth(value, level=level, path=path, what="message")
    except JSONDepthError as exc:
        raise MessageError(str(exc), path=exc.path) from None
    height = measure_depth(value)  # reached through a Message check_depth does not walk
    raise MessageError(
        str(
            JSONDepthError(
                depth=None if height is None else height + level - 1,
                limit=MAX_DEPTH,
                path=path,
                what="message",
                cyclic=height is None,
            )
        ),
        path=shorten_path(path),
    )


def _coerce_bytes(value: Any, path: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, list):
        try:
            return bytes(value)
        except (TypeError, ValueError) as exc:
            raise MessageError(
                "Bytes data must be a list of integers 0..255, bytes, or base64 text", path=path
            ) from exc
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise MessageError("Bytes data given as text must be base64", path=path) from exc
    raise MessageError(
        f"Bytes data must be bytes, a list of integers 0..255 or base64 text, "
        f"got {type(value).__name__}",
        path=path,
    )


def _integer_data(v: Any) -> int:
    """``Message.integer``'s argument when it is not an ``int``: an integer-like value (a
    numpy integer, an ``int`` subclass) as an ``int``; anything else refused."""
    if not isinstance(v, bool):
        try:
            return operator.index(v)
        except TypeError:
            pass
    raise MessageError(f"Integer data must be an int, got {type(v).__name__}", path="$.data")


def _float_data(v: Any) -> Any:
    """``Message.float``'s argument when it is not a ``float``: an ``int`` as it is, another
    real number (a numpy float) as a ``float``; anything else refused."""
    if v.__class__ is int:
        return v
    if not isinstance(v, bool) and isinstance(v, numbers.Real):
        try:
            return builtins.float(v)
        except (OverflowError, ValueError):
            pass
    raise MessageError(f"Float data must be a number, got {type(v).__name__}", path="$.data")


def _validate(kind: str, data: Any, path: str, level: int = 2) -> Any:
    """Check ``data`` (at ``level`` of the message's JSON; the message itself is level 1)
    against ``kind``; return the stored form (bytes for Bytes)."""
    if kind == "Integer":
        if isinstance(data, bool) or not isinstance(data, int):
            raise MessageError(f"Integer data must be an int, got {type(data).__name__}", path=path)
    elif kind == "Float":
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise MessageError(f"Float data must be a number, got {type(data).__name__}", path=path)
        try:
            return float(data)
        except OverflowError:
            raise MessageError(
                f"Float data must fit a 64-bit float, got an integer of "
                f"{int(data).bit_length()} bits",
                path=path,
            ) from None
    elif kind == "Boolean":
        if not isinstance(data, bool):
            raise MessageError(f"Boolean data must be a bool, got {type(data).__name__}", path=path)
    elif kind == "String" or kind == "Error":
        if not isinstance(data, str):
            raise MessageError(f"{kind} data must be a str, got {type(data).__name__}", path=path)
    elif kind == "Object" or kind == "Event":
        if not isinstance(data, dict):
            raise MessageError(
                f"{kind} data must be an object, got {type(data).__name__}", path=path
            )
        _check_json(data, path, level)
    elif kind == "Array":
        if not isinstance(data, (list, tuple)):
            raise MessageError(f"Array data must be a list, got {type(data).__name__}", path=path)
        _check_json(data, path, level)
        return list(data)
    elif kind == "Bytes":
        return _coerce_bytes(data, path)
    elif kind == "Optional" or kind == "Any":
        if type(data) is Message:  # built already; only its depth here is new
            if level > MAX_DEPTH or data.get("type") in _NESTING:
                _check_message_depth(data, path, level)
            return data
        if isinstance(data, dict) and isinstance(data.get("type"), str) and data["type"] in _KINDS:
            return Message.from_json(data, _path=path, _level=level)
        _check_json(data, path, level)
    elif kind in _NO_DATA and data is not None:
        raise MessageError(f"{kind} carries no data, got {type(data).__name__}", path=path)
    return data


_NESTING = frozenset(("Object", "Event", "Array", "Optional", "Any"))


def _check_message_depth(msg: Message, path: str, level: int) -> None:
    """A built message ``msg`` placed at ``level``: refuse it if that takes it past MAX_DEPTH."""
    try:
        check_depth(msg, level=level, path=path, what="message")
    except JSONDepthError as exc:
        raise MessageError(str(exc), path=exc.path) from None


def _sorted_view(value: Any, seen: set[int], depth: int) -> Any:
    """``value`` with every dict's keys sorted, for ``Message.__repr__`` (a cycle, or nesting
    past the message depth limit, shows as ``...`` instead of recursing)."""
    if isinstance(value, (dict, list)):
        if id(value) in seen or depth > MAX_DEPTH:
            return ...
        seen.add(id(value))
        try:
            if isinstance(value, dict):
                keys = sorted(value, key=lambda k: (not isinstance(k, str), str(k)))
                return {k: _sorted_view(value[k], seen, depth + 1) for k in keys}
            return [_sorted_view(v, seen, depth + 1) for v in value]
        finally:
            seen.discard(id(value))
    return value


class Message(dict[str, Any]):
    """One message: ``{"type": kind, "data": payload}``.

    Build with the typed constructors (``Message.integer(42)``), or ``Message.from_json`` for
    values from outside. ``kind`` is the type name; ``data()`` the payload as a Python value.
    """

    __slots__ = ()

    # -- constructors (no validation beyond what the type guarantees: hot path) --------------
    @staticmethod
    def integer(v: int) -> Message:
        if v.__class__ is not int:  # the one check the hot path pays
            v = _integer_data(v)
        m = _new(Message)
        m["type"] = "Integer"
        m["data"] = v
        return m

    @staticmethod
    def float(v: float) -> Message:
        if v.__class__ is not builtins.float:
            v = _float_data(v)
        m = _new(Message)
        m["type"] = "Float"
        m["data"] = v
        return m

    @staticmethod
    def string(v: str) -> Message:
        if v.__class__ is not str and not isinstance(v, str):
            raise MessageError(f"String data must be a str, got {type(v).__name__}", path="$.data")
        m = _new(Message)
        m["type"] = "String"
        m["data"] = v
        return m

    @staticmethod
    def boolean(v: bool) -> Message:
        m = _new(Message)
        m["type"] = "Boolean"
        m["data"] = bool(v)
        return m

    @staticmethod
    def object(value: dict[str, Any]) -> Message:
        return Message._make("Object", _validate("Object", value, "$.data"))

    @staticmethod
    def array(value: list[Any]) -> Message:
        return Message._make("Array", _validate("Array", value, "$.data"))

    @staticmethod
    def bytes(v: bytes | bytearray | memoryview | list[int]) -> Message:
        return Message._make("Bytes", _coerce_bytes(v, "$.data"))

    @staticmethod
    def flow() -> Message:
        m = _new(Message)
        m["type"] = "Flow"
        return m

    @staticmethod
    def null() -> Message:
        m = _new(Message)
        m["type"] = "Null"
        return m

    @staticmethod
    def error(v: str) -> Message:
        return Message._make("Error", _validate("Error", str(v), "$.data"))

    @staticmethod
    def event(value: dict[str, Any]) -> Message:
        return Message._make("Event", _validate("Event", value, "$.data"))

    @staticmethod
    def optional(value: Any = None) -> Message:
        return Message._make("Optional", _validate("Optional", value, "$.data"))

    @staticmethod
    def any(value: Any) -> Message:
        return Message._make("Any", _validate("Any", value, "$.data"))

    @staticmethod
    def _make(kind: str, data: Any) -> Message:
        m = _new(Message)
        m["type"] = kind
        if kind not in _NO_DATA:
            m["data"] = data
        return m

    @staticmethod
    def _stream(channel: Any) -> Message:
        """A Stream message around a live stream channel (see ``reflow._core._streams``)."""
        m = _new(Message)
        m["type"] = "Stream"
        m["data"] = channel
        return m

    @staticmethod
    def gpu(handle: Any) -> Message:
        """A ``Gpu`` message around a device-resident ``GpuBuffer`` (see ``reflow._gpu``): the
        device form of a Bytes message, passed by reference; a host-only kind (not in
        ``KINDS``, never read from JSON), read back to Bytes only by a node that reads Bytes."""
        if not callable(getattr(handle, "to_message", None)):
            raise MessageError(
                f"Gpu data must be a GpuBuffer handle, got {type(handle).__name__}", path="$.data"
            )
        m = _new(Message)
        m["type"] = "Gpu"
        m["data"] = handle
        return m

    @staticmethod
    def from_json(value: Any, _path: str = "$", _level: int = 1) -> Message:
        """Parse the tagged JSON form (a dict, or a JSON string) and validate it.

        Raises :class:`~reflow.MessageError` naming what is wrong and where; JSON that nests
        objects and arrays more than 200 levels deep is refused before it is parsed.
        """
        if type(value) is Message:
            if _level > 1:
                _check_message_depth(value, _path, _level)
            return value
        if isinstance(value, (str, bytes)):
            try:
                value = loads(value, what="message JSON")
            except JSONDepthError as exc:
                raise MessageError(str(exc), path=exc.path) from None
            except ValueError as exc:
                raise MessageError(f"not valid JSON: {exc}", path=_path) from exc
        if not isinstance(value, dict):
            raise MessageError(
                f'a message must be an object like {{"type": "Integer", "data": 42}}, '
                f"got {type(value).__name__}",
                path=_path,
            )
        if _level > MAX_DEPTH:
            _too_deep(value, _path, _level)
        kind = value.get("type")
        if kind is None:
            raise MessageError('a message needs a "type" field', path=f"{_path}.type")
        if not isinstance(kind, str) or (kind not in _KINDS and kind not in _ALIASES):
            raise MessageError(
                f"unknown message type {reprlib.repr(kind)}; expected one of {', '.join(KINDS)}",
                path=f"{_path}.type",
            )
        kind = _ALIASES.get(kind, kind)
        extra = set(value) - {"type", "data"}
        if extra:
            shown = sorted(reprlib.repr(k) if not isinstance(k, str) else k for k in extra)
            more = f" (and {len(shown) - 5} more)" if len(shown) > 5 else ""
            raise MessageError(
                f"unexpected field(s) {', '.join(shown[:5])}{more}; a message has only "
                f'"type" and "data"',
                path=_path,
            )
        if kind == "Stream":
            data = value.get("data")
            if not hasattr(data, "take_reader"):
                raise MessageError(
                    "a Stream message can only be built from a live Stream "
                    "(Stream.create(...).into_message())",
                    path=f"{_path}.data",
                )
            return Message._stream(data)
        if kind not in _NO_DATA and "data" not in value:
            if kind == "Optional":
                return Message._make(kind, None)
            raise MessageError(f'a {kind} message needs a "data" field', path=f"{_path}.data")
        return Message._make(kind, _validate(kind, value.get("data"), f"{_path}.data", _level + 1))

    @staticmethod
    def from_value(value: Any) -> Message:
        """A message for a plain Python/JSON value, its kind inferred: None → Null, bool →
        Boolean, int → Integer, float → Float, str → String, bytes → Bytes, list → Array,
        dict → Object. A Message is returned as it is. Raises MessageError otherwise."""
        if type(value) is Message:
            return value
        if value is None:
            return Message.null()
        if isinstance(value, bool):
            return Message.boolean(value)
        if isinstance(value, int):
            return Message.integer(value)
        if isinstance(value, builtins.float):
            return Message.float(value)
        if isinstance(value, str):
            return Message.string(value)
        if isinstance(value, (builtins.bytes, bytearray, memoryview)):
            return Message.bytes(value)
        if isinstance(value, (list, tuple)):
            return Message.array(list(value))
        if isinstance(value, dict):
            return Message.object(value)
        raise MessageError(f"no message kind for a {type(value).__name__} value")

    # -- accessors -------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """The message type name, e.g. ``"Integer"`` — ``"StreamHandle"`` for a stream, the
        name offbit_reflow gives it (``msg["type"]`` and the JSON form say ``"Stream"``; both
        names are read back)."""
        kind: str = self["type"]
        return "StreamHandle" if kind == "Stream" else kind

    def data(self) -> Any:
        """The payload as a plain Python value, as offbit_reflow's ``data()`` gives it: scalars,
        dicts and lists as they are, a stream's locator; ``None`` for kinds without a portable
        JSON payload (Flow, Null, Bytes — ``as_bytes()`` gives the bytes)."""
        kind = self["type"]
        if kind in _NO_DATA or kind == "Bytes":
            return None
        data = self["data"]
        if kind == "Stream":
            return data.locator()
        return data

    def as_json(self) -> dict[str, Any]:
        """A plain-JSON dict of this message (Bytes as a list of ints, Stream as its locator)."""
        kind = self["type"]
        if kind in _NO_DATA:
            return {"type": kind}
        data = self["data"]
        if kind == "Bytes":
            data = list(data)
        elif kind == "Gpu":
            data = repr(data)
        elif kind == "Stream":
            data = data.locator()
        elif isinstance(data, Message):
            data = data.as_json()
        return {"type": kind, "data": data}

    def to_json_string(self) -> str:
        """The message as compact JSON text (what ``from_json`` reads back)."""
        return json.dumps(self.as_json(), separators=(",", ":"))

    def _expect(self, kind: str) -> Any:
        if self["type"] != kind:
            raise MessageError(f"message is {self['type']}, not {kind}")
        return self["data"]

    # The typed accessors answer None for a message of another kind, as offbit_reflow's do
    # (no conversion: as_float() of an Integer is None there too).
    def as_integer(self) -> int | None:
        """The value of an Integer message, else None."""
        return self["data"] if self["type"] == "Integer" else None

    def as_float(self) -> builtins.float | None:
        """The value of a Float message, else None."""
        return self["data"] if self["type"] == "Float" else None

    def as_string(self) -> str | None:
        """The text of a String (or Error) message, else None."""
        return self["data"] if self["type"] in ("String", "Error") else None

    def as_boolean(self) -> bool | None:
        """The value of a Boolean message, else None."""
        return self["data"] if self["type"] == "Boolean" else None

    def as_bytes(self) -> builtins.bytes | None:
        """The bytes of a Bytes message, else None."""
        return self["data"] if self["type"] == "Bytes" else None

    def take_stream(self) -> Any:
        """The consumer side of a Stream message (a ``StreamReader``); only one reader."""
        channel = self._expect("Stream")
        return channel.take_reader()

    def __repr__(self) -> str:
        # As the dicts offbit_reflow hands to actors print (programs written for it print the
        # same): keys in sorted order, those of objects inside too (its JSON maps are sorted).
        # Only the text: the payload keeps its own order. to_json_string() is the JSON text.
        return repr(_sorted_view(self, set(), 0))

    def __copy__(self) -> Message:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Message:
        import copy

        return Message._make(self["type"], copy.deepcopy(self.get("data"), memo))

    def __reduce__(self) -> Any:
        return (Message.from_json, (self.as_json(),))


def as_message(value: Any, path: str = "$") -> Message:
    """Accept a Message, or validate a JSON-shaped dict into one."""
    if type(value) is Message:
        return value
    return Message.from_json(value, _path=path)
