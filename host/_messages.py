"""Messages: the values that travel along edges.

A :class:`Message` *is* a dict of the JSON shape ``{"type": "Integer", "data": 42}`` (a ``dict``
subclass), so code written for the JSON form — ``ctx.inputs["in"]["data"]`` — works unchanged and
printing one shows its JSON. Building one costs about as much as building a small object, and a
message goes from one Python actor to the next as the same object: no JSON round trip on the
hot path. Treat messages as immutable: a fan-out hands the same object to every consumer.

``Message.from_json`` is the validating entry point for anything that did not come from one of
the typed constructors; it raises :class:`~reflow.MessageError` naming the bad part.
"""

from __future__ import annotations

import base64
import builtins
import json
from typing import Any

from ._errors import MessageError

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


def _check_json(value: Any, path: str, depth: int = 0) -> None:
    """Raise MessageError unless ``value`` is plain JSON data (dict, list, str, number...)."""
    if depth > 200:
        raise MessageError("value nests deeper than 200 levels", path=path)
    if value is None or isinstance(value, (str, int, float)):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MessageError(f"object keys must be strings, got {key!r}", path=path)
            _check_json(item, f"{path}.{key}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth + 1)
        return
    raise MessageError(f"{type(value).__name__} is not JSON data", path=path)


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


def _validate(kind: str, data: Any, path: str) -> Any:
    """Check ``data`` against ``kind``; return the stored form (bytes for Bytes)."""
    if kind == "Integer":
        if isinstance(data, bool) or not isinstance(data, int):
            raise MessageError(f"Integer data must be an int, got {type(data).__name__}", path=path)
    elif kind == "Float":
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise MessageError(f"Float data must be a number, got {type(data).__name__}", path=path)
        return float(data)
    elif kind == "Boolean":
        if not isinstance(data, bool):
            raise MessageError(f"Boolean data must be a bool, got {type(data).__name__}", path=path)
    elif kind == "String" or kind == "Error":
        if not isinstance(data, str):
            raise MessageError(f"{kind} data must be a str, got {type(data).__name__}", path=path)
    elif kind == "Object" or kind == "Event":
        if not isinstance(data, dict):
            raise MessageError(f"{kind} data must be an object, got {type(data).__name__}",
                               path=path)
        _check_json(data, path)
    elif kind == "Array":
        if not isinstance(data, (list, tuple)):
            raise MessageError(f"Array data must be a list, got {type(data).__name__}", path=path)
        _check_json(data, path)
        return list(data)
    elif kind == "Bytes":
        return _coerce_bytes(data, path)
    elif kind == "Optional" or kind == "Any":
        if isinstance(data, dict) and isinstance(data.get("type"), str) and data["type"] in _KINDS:
            return Message.from_json(data, _path=path)
        _check_json(data, path)
    elif kind in _NO_DATA and data is not None:
        raise MessageError(f"{kind} carries no data, got {type(data).__name__}", path=path)
    return data


class Message(dict[str, Any]):
    """One message: ``{"type": kind, "data": payload}``.

    Build with the typed constructors (``Message.integer(42)``), or ``Message.from_json`` for
    values from outside. ``kind`` is the type name; ``data()`` the payload as a Python value.
    """

    __slots__ = ()

    # -- constructors (no validation beyond what the type guarantees: hot path) --------------
    @staticmethod
    def integer(v: int) -> Message:
        m = _new(Message)
        m["type"] = "Integer"
        m["data"] = v
        return m

    @staticmethod
    def float(v: float) -> Message:
        m = _new(Message)
        m["type"] = "Float"
        m["data"] = v
        return m

    @staticmethod
    def string(v: str) -> Message:
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
        """A Stream message around a live stream channel (see ``reflow._streams``)."""
        m = _new(Message)
        m["type"] = "Stream"
        m["data"] = channel
        return m

    @staticmethod
    def from_json(value: Any, _path: str = "$") -> Message:
        """Parse the tagged JSON form (a dict, or a JSON string) and validate it.

        Raises :class:`~reflow.MessageError` naming what is wrong and where.
        """
        if type(value) is Message:
            return value
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise MessageError(f"not valid JSON: {exc}", path=_path) from exc
        if not isinstance(value, dict):
            raise MessageError(
                f'a message must be an object like {{"type": "Integer", "data": 42}}, '
                f"got {type(value).__name__}",
                path=_path,
            )
        kind = value.get("type")
        if kind is None:
            raise MessageError('a message needs a "type" field', path=f"{_path}.type")
        if not isinstance(kind, str) or (kind not in _KINDS and kind not in _ALIASES):
            raise MessageError(
                f"unknown message type {kind!r}; expected one of {', '.join(KINDS)}",
                path=f"{_path}.type",
            )
        kind = _ALIASES.get(kind, kind)
        extra = set(value) - {"type", "data"}
        if extra:
            raise MessageError(
                f"unexpected field(s) {', '.join(sorted(extra))}; a message has only "
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
        return Message._make(kind, _validate(kind, value.get("data"), f"{_path}.data"))

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
        """The message type name, e.g. ``"Integer"``."""
        return self["type"]

    def data(self) -> Any:
        """The payload as a Python value (``None`` for Flow and Null; ``bytes`` for Bytes)."""
        return self.get("data")

    def as_json(self) -> dict[str, Any]:
        """A plain-JSON dict of this message (Bytes as a list of ints, Stream as its locator)."""
        kind = self["type"]
        if kind in _NO_DATA:
            return {"type": kind}
        data = self["data"]
        if kind == "Bytes":
            data = list(data)
        elif kind == "Stream":
            data = data.locator()
        elif isinstance(data, Message):
            data = data.as_json()
        return {"type": kind, "data": data}

    def to_json_string(self) -> str:
        return json.dumps(self.as_json(), separators=(",", ":"))

    def _expect(self, kind: str) -> Any:
        if self["type"] != kind:
            raise MessageError(f"message is {self['type']}, not {kind}")
        return self["data"]

    def as_integer(self) -> int:
        return self._expect("Integer")

    def as_float(self) -> builtins.float:
        if self["type"] == "Integer":
            return float(self["data"])
        return self._expect("Float")

    def as_string(self) -> str:
        return self._expect("String")

    def as_boolean(self) -> bool:
        return self._expect("Boolean")

    def as_bytes(self) -> builtins.bytes:
        return self._expect("Bytes")

    def take_stream(self) -> Any:
        """The consumer side of a Stream message (a ``StreamReader``); only one reader."""
        channel = self._expect("Stream")
        return channel.take_reader()

    def __repr__(self) -> str:
        # Prints as its JSON form, like the dicts offbit_reflow hands to actors.
        return dict.__repr__(self)

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
