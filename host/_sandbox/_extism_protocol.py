"""Messages and metadata across the Reflow-SDK protocol (JSON over Extism calls).

``get_metadata`` becomes a :class:`~reflow._sandbox._guest_host.GuestTemplate`
(:func:`parse_metadata`); messages go out as the SDK's JSON and come back checked, every
malformed answer a :class:`~reflow.GuestOutputError` naming where it was found.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .._core._messages import Message
from .._errors import (
    GuestABIError,
    GuestOutputError,
    MessageError,
)
from ._guest_host import (
    GuestTemplate,
)


def _loads(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GuestOutputError(
            f"{what}: the guest's output is not valid UTF-8 JSON: {exc}"
        ) from exc


def _sdk_result(doc: Any) -> Any:
    """``process``'s result; a JSON string is the base64 of the JSON result (what the Go
    SDK's ``pdk.OutputJSON`` of marshalled bytes gives, and the original host accepts)."""
    if not isinstance(doc, str):
        return doc
    try:
        raw = base64.b64decode(doc, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GuestOutputError(f"process returned a JSON string that is not base64: {exc}") from exc
    return _loads(raw, "process (base64)")


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GuestOutputError(f"{what}: key is not valid UTF-8: {exc}") from exc


# -- messages across the Reflow-SDK protocol --------------------------------------------------


def _to_sdk(msg: Message) -> Any:
    """A message in the original SDK's vocabulary (it has no Bytes or Null kinds)."""
    doc = msg.as_json()
    kind = doc["type"]
    if kind == "Bytes":
        return {"type": "Stream", "data": doc["data"]}
    if kind == "Null":
        return {"type": "Optional", "data": None}
    return doc


def _guest_message(raw: Any, where: str) -> Message:
    """A tagged message from the guest, validated; the SDK's ``Stream`` of bytes is Bytes."""
    try:
        if (
            isinstance(raw, dict)
            and raw.get("type") == "Stream"
            and isinstance(raw.get("data"), list)
        ):
            return Message.bytes(raw["data"])
        return Message.from_json(raw, _path=where)
    except MessageError as exc:
        raise GuestOutputError(
            f"the guest returned an invalid message at {exc.path}: {exc}"
        ) from exc


def _plain_message(value: Any, where: str) -> Message:
    """A plain JSON value from ``__send_output`` as a message (a tagged one is kept)."""
    if (
        isinstance(value, dict)
        and isinstance(value.get("type"), str)
        and set(value)
        <= {
            "type",
            "data",
        }
    ):
        return _guest_message(value, where)
    try:
        return Message.from_value(value)
    except MessageError as exc:
        raise GuestOutputError(f"the guest sent an invalid value at {where}: {exc}") from exc


def _input_bytes(msg: Message | None) -> bytes:
    """What a function actor passes to its export: Bytes raw, String as UTF-8, Flow/Null
    empty, anything else as the JSON of its data."""
    if msg is None:
        return b""
    kind = msg.kind
    if kind == "Bytes":
        return msg["data"]
    if kind == "String":
        return msg["data"].encode("utf-8")
    if kind in ("Flow", "Null"):
        return b""
    data = msg.as_json().get("data")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- modules, templates, actors --------------------------------------------------------------


def _port_names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise GuestABIError(f"get_metadata: {what} must be a list of ports")
    names = []
    for p in value:
        name = p.get("name") if isinstance(p, dict) else p
        if not isinstance(name, str) or not name:
            raise GuestABIError(f"get_metadata: {what} has a port without a name: {p!r}")
        names.append(name)
    if len(set(names)) != len(names):
        raise GuestABIError(f"get_metadata: {what} lists a port twice")
    return tuple(names)


def parse_metadata(raw: bytes) -> GuestTemplate:
    """The template described by a Reflow-SDK ``get_metadata`` document."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GuestABIError(f"get_metadata did not return UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise GuestABIError("get_metadata must return a JSON object")
    tid = doc.get("component", doc.get("id"))
    if not isinstance(tid, str) or not tid:
        raise GuestABIError('get_metadata needs a non-empty string "component"')
    schema = doc.get("config_schema")
    caps = doc.get("capabilities", [])
    return GuestTemplate(
        id=tid,
        inports=_port_names(doc.get("inports", []), "inports"),
        outports=_port_names(doc.get("outports", []), "outports"),
        await_all_inports=bool(doc.get("await_all_inports", False)),
        description=str(doc.get("description", "")),
        config_schema=schema if isinstance(schema, dict) else {},
        capabilities=tuple(c for c in caps if isinstance(c, str)) if isinstance(caps, list) else (),
    )
