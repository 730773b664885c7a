"""The values a graph document holds, checked one at a time: ids, indexes, metadata, port types.

Shared by the graph model (values handed to its methods), the FBP JSON reader (values read from
a document) and composition. Every check raises :class:`~reflow.GraphFormatError` with the JSON
path of the value, and nothing here recurses deeper than the JSON depth limit
(``reflow._jsonread.MAX_DEPTH``).
"""

from __future__ import annotations

import copy
import json
import re
import reprlib
from collections.abc import Iterable
from typing import Any, Literal

from .._errors import GraphFormatError, MessageError
from .._jsonread import JSONDepthError, check_depth

__all__ = [
    "ANY",
    "PORT_TYPES",
    "VALUE_LEVEL",
    "Direction",
    "Shape",
    "bounded",
    "check_iip_data",
    "extras",
    "index_value",
    "is_tagged_message",
    "key_path",
    "merge_metadata",
    "metadata_value",
    "port_type_value",
    "port_types_compatible",
    "string_field",
    "type_label",
    "type_name",
]

Shape = Literal["verbose", "classic"]
Direction = Literal["in", "out"]

#: Port type names (``{"type": name}``); ``object`` may carry ``"value"`` (a type name),
#: ``array`` and ``option`` carry ``"value"``: the element's port type.
PORT_TYPES = (
    "any",
    "flow",
    "event",
    "boolean",
    "integer",
    "float",
    "string",
    "object",
    "array",
    "encoded",
    "bytes",
    "stream",
    "option",
)
ANY: dict[str, Any] = {"type": "any"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def key_path(base: str, key: str) -> str:
    return f"{base}.{key}" if _IDENT.match(key) else f"{base}[{json.dumps(key)}]"


def type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


#: The deepest a value handed to a Graph method sits in the graph's JSON (the document is
#: level 1; a verbose edge's metadata is ``$.connections[i].from.metadata``, level 5). Values
#: are checked at this level, so every graph reads back from its own ``to_json()``.
VALUE_LEVEL = 5


def bounded(value: Any, path: str, level: int = VALUE_LEVEL, what: str = "value") -> None:
    """Refuse ``value`` (sitting at ``level`` of the graph JSON, at ``path``) with a
    GraphFormatError if it nests deeper than the JSON depth limit."""
    try:
        check_depth(value, level=level, path=path, what=what)
    except JSONDepthError as exc:
        raise GraphFormatError(exc.detail, path=exc.path) from None


def is_tagged_message(value: Any) -> bool:
    """True when ``value`` is meant as a tagged message: a dict with a ``"type"`` key and no
    keys other than ``"type"`` and ``"data"``. Any other value is plain JSON data, which an
    initial packet may carry as is (the network wraps it)."""
    return isinstance(value, dict) and "type" in value and set(value) <= {"type", "data"}


def check_iip_data(data: Any, path: str) -> None:
    if not is_tagged_message(data):
        return
    from ._messages import Message  # imported late: messages import nothing from here

    try:
        Message.from_json(data, _path=path)
    except MessageError as exc:
        raise GraphFormatError(
            f"initial packet is not a valid message: {exc}", path=exc.path
        ) from exc


def metadata_value(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GraphFormatError(
            f"metadata must be an object or null, got {type_name(value)}", path=path
        )
    return copy.deepcopy(value)


def string_field(
    obj: dict[str, Any], key: str, path: str, what: str, *, empty: bool = False
) -> str:
    if key not in obj:
        raise GraphFormatError(f"{what} is missing (expected key {key!r})", path=path)
    value = obj[key]
    if not isinstance(value, str):
        raise GraphFormatError(f"{what} must be a string, got {type_name(value)}", path=path)
    if not value and not empty:
        raise GraphFormatError(f"{what} must not be empty", path=path)
    return value


def index_value(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GraphFormatError(
            f"index must be a non-negative integer or null, got {reprlib.repr(value)}", path=path
        )
    return value


def port_type_value(value: Any, path: str) -> dict[str, Any] | None:
    """Validate a port type; ``None`` means untyped (``any``). Kept verbatim when valid."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GraphFormatError(
            f'a port type must be an object like {{"type": "integer"}}, got {type_name(value)}',
            path=path,
        )
    kind = value.get("type")
    if kind not in PORT_TYPES:
        raise GraphFormatError(
            f"unknown port type {kind!r}; expected one of {', '.join(PORT_TYPES)}",
            path=f"{path}.type",
        )
    if kind in ("array", "option"):
        if "value" not in value:
            raise GraphFormatError(
                f"a {kind} port type needs a 'value' (the element's port type)",
                path=f"{path}.value",
            )
        port_type_value(value["value"], f"{path}.value")
    elif kind == "object" and not isinstance(value.get("value", ""), str):
        raise GraphFormatError(
            "an object port type's 'value' must be a string", path=f"{path}.value"
        )
    return copy.deepcopy(value)


def type_label(port_type: dict[str, Any] | None) -> str:
    if port_type is None:
        return "any"
    kind = port_type["type"]
    if kind in ("array", "option"):
        return f"{kind}<{type_label(port_type['value'])}>"
    if kind == "object" and port_type.get("value"):
        return f"object<{port_type['value']}>"
    return str(kind)


def port_types_compatible(out_type: dict[str, Any] | None, in_type: dict[str, Any] | None) -> bool:
    """Whether a packet from an out-port of ``out_type`` may enter an in-port of ``in_type``.

    ``None`` and ``any`` match everything; otherwise types must be equal, except that an
    ``integer`` may feed a ``float``, ``option<T>`` matches ``T`` on either side, ``array``
    compares its elements, and an ``object`` without a ``value`` matches every object.
    """
    a = out_type or ANY
    b = in_type or ANY
    ka, kb = a["type"], b["type"]
    if ka == "any" or kb == "any":
        return True
    if ka == "option":
        return port_types_compatible(a["value"], b["value"] if kb == "option" else b)
    if kb == "option":
        return port_types_compatible(a, b["value"])
    if ka == "array" and kb == "array":
        return port_types_compatible(a["value"], b["value"])
    if ka == "object" and kb == "object":
        va, vb = a.get("value") or "", b.get("value") or ""
        return not va or not vb or va == vb
    return bool(ka == kb or (ka == "integer" and kb == "float"))


def merge_metadata(
    current: dict[str, Any] | None, update: dict[str, Any] | None
) -> dict[str, Any] | None:
    """noflo's rule: keys are merged in, a ``None`` value deletes its key; ``{}`` (or ``None``)
    clears the metadata, as ``offbit_reflow`` does."""
    if not update:
        return {} if update is not None else None
    merged = dict(current or {})
    for key, value in copy.deepcopy(update).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def extras(obj: dict[str, Any], known: Iterable[str]) -> dict[str, Any]:
    skip = set(known)
    return {k: copy.deepcopy(v) for k, v in obj.items() if k not in skip}
