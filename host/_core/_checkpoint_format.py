"""The bytes of one checkpoint, and the graph it belongs to.

Layout (format 1)::

    RFLCKPT\\n
    {"format": 1, "run_id": "...", "seq": 7, "size": N, "sha256": "<hex of the body>"}\\n
    <body: N bytes of UTF-8 JSON>

The body is JSON: messages in their tagged JSON form (``Message.as_json``; Bytes as base64
text, which ``Message.from_json`` reads back), other values as JSON with two tagged forms,
``{"$reflow": "message", "value": ...}`` and ``{"$reflow": "bytes", "b64": ...}``.
:func:`decode` checks the magic, the format version, the size and the digest before it parses
the body (depth-bounded, ``_jsonread.loads``), so a truncated, altered or foreign blob is
refused with a :class:`~reflow.CheckpointError` subclass, never half-read.

:func:`describe` is the graph's shape (nodes with their components, connections) that a
checkpoint records; :func:`differences` lists how two shapes differ, for the refusal to
resume into another graph.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from .._errors import (
    CheckpointCorruptError,
    CheckpointStateError,
    CheckpointVersionError,
    MessageError,
)
from .._jsonread import loads
from ._messages import Message
from ._nodes import _Node

__all__ = ["FORMAT", "MAGIC", "decode", "describe", "differences", "encode"]

FORMAT = 1
MAGIC = b"RFLCKPT\n"
_HEADER_MAX = 4096
_SHOWN = 20  # differences listed in a message


class Unstorable(Exception):
    """A value a checkpoint cannot hold (a live Stream, a GPU buffer): the checkpoint waits."""


# -- values ------------------------------------------------------------------------------------
def message_out(msg: Message) -> dict[str, Any]:
    kind = msg["type"]
    if kind == "Stream" or kind == "Gpu":
        raise Unstorable(kind)
    if kind == "Bytes":
        return {"type": "Bytes", "data": base64.b64encode(msg["data"]).decode()}
    return msg.as_json()


def message_in(value: Any, where: str) -> Message:
    try:
        return Message.from_json(value)
    except MessageError as exc:
        raise CheckpointCorruptError(f"{where}: not a message: {exc} (at {exc.path})") from exc


def value_out(value: Any, where: str) -> Any:
    """A pool value or an actor's state as JSON (see the module docstring)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if type(value) is Message:
        return {"$reflow": "message", "value": message_out(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$reflow": "bytes", "b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointStateError(
                    f"{where}: a dict key {k!r:.40} is not a string; checkpoints hold JSON"
                )
            out[k] = value_out(v, where)
        return out
    if isinstance(value, (list, tuple)):
        return [value_out(v, where) for v in value]
    raise CheckpointStateError(
        f"{where}: a {type(value).__name__} value cannot be written to a checkpoint; expected "
        f"JSON values, bytes or messages"
    )


def value_in(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [value_in(v, where) for v in value]
    if isinstance(value, dict):
        tag = value.get("$reflow")
        if tag == "message":
            return message_in(value.get("value"), where)
        if tag == "bytes":
            try:
                return base64.b64decode(value.get("b64", ""), validate=True)
            except (ValueError, TypeError) as exc:
                raise CheckpointCorruptError(f"{where}: bad base64 bytes") from exc
        return {k: value_in(v, where) for k, v in value.items()}
    return value


# -- the blob ----------------------------------------------------------------------------------
def encode(run_id: str, seq: int, body: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(body, separators=(",", ":"), check_circular=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise CheckpointStateError(
            f"run {run_id!r}: the checkpoint cannot be written as JSON: {exc}", run_id=run_id
        ) from exc
    head = {
        "format": FORMAT,
        "run_id": run_id,
        "seq": seq,
        "size": len(text),
        "sha256": hashlib.sha256(text).hexdigest(),
    }
    return MAGIC + json.dumps(head, separators=(",", ":")).encode() + b"\n" + text


def _corrupt(run_id: str, seq: int, why: str) -> CheckpointCorruptError:
    return CheckpointCorruptError(
        f"checkpoint {seq} of run {run_id!r} is corrupt: {why}; it was not applied",
        run_id=run_id,
    )


def decode(run_id: str, seq: int, data: Any) -> dict[str, Any]:
    """The body of a stored checkpoint, after every check of the module docstring."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _corrupt(run_id, seq, f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise _corrupt(run_id, seq, f"it does not start with {MAGIC!r} ({len(data)} bytes)")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + _HEADER_MAX)
    if end < 0:
        raise _corrupt(run_id, seq, "its header line is missing or truncated")
    try:
        head = json.loads(data[len(MAGIC) : end])
    except ValueError:
        raise _corrupt(run_id, seq, "its header is not JSON") from None
    if not isinstance(head, dict):
        raise _corrupt(run_id, seq, "its header is not a JSON object")
    found = head.get("format")
    if found != FORMAT:
        raise CheckpointVersionError(
            f"checkpoint {seq} of run {run_id!r} is in checkpoint format {found!r:.40}; this "
            f"host reads format {FORMAT} only; resume it with the reflow version that wrote it",
            run_id=run_id,
            found=found,
            expected=FORMAT,
        )
    body = data[end + 1 :]
    size, digest = head.get("size"), head.get("sha256")
    if not isinstance(size, int) or not isinstance(digest, str):
        raise _corrupt(run_id, seq, "its header has no size or sha256")
    if len(body) != size:
        raise _corrupt(run_id, seq, f"the body is {len(body)} bytes, the header says {size}")
    if hashlib.sha256(body).hexdigest() != digest:
        raise _corrupt(run_id, seq, "sha256 of the body does not match the header's digest")
    if head.get("run_id") != run_id:
        raise _corrupt(run_id, seq, f"it was written for run {head.get('run_id')!r:.80}")
    try:
        parsed = loads(body, what="checkpoint body")
    except ValueError as exc:
        raise _corrupt(run_id, seq, f"the body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise _corrupt(run_id, seq, "the body is not a JSON object")
    return parsed


# -- the graph's shape -------------------------------------------------------------------------
def describe(nodes: dict[str, _Node]) -> dict[str, Any]:
    """Nodes (id -> component) and connections (``"a.out->b.in"``, sorted) of a network."""
    edges = sorted(
        f"{n.id}.{port}->{e.dst.id}.{e.dst_port}"
        for n in nodes.values()
        for port, route in n.routes.items()
        for e in route
        if e.dst.__class__ is _Node
    )
    return {"nodes": {n.id: n.component for n in nodes.values()}, "edges": edges}


def differences(saved: Any, now: dict[str, Any]) -> list[str]:
    """What differs between the checkpoint's graph ``saved`` and the network's ``now``."""
    if not isinstance(saved, dict) or not isinstance(saved.get("nodes"), dict):
        return ["the checkpoint records no graph"]
    out: list[str] = []
    a, b = saved["nodes"], now["nodes"]
    out += [f"node {k!r} is not in this graph" for k in a if k not in b]
    out += [f"node {k!r} is new (not in the checkpoint)" for k in b if k not in a]
    out += [
        f"node {k!r} runs {b[k]!r}, the checkpoint's runs {a[k]!r}"
        for k in a
        if k in b and a[k] != b[k]
    ]
    listed = saved.get("edges")
    ea = {e for e in listed if isinstance(e, str)} if isinstance(listed, list) else set()
    eb = set(now["edges"])
    out += [f"connection {e} is not in this graph" for e in sorted(ea - eb)]
    out += [f"connection {e} is new (not in the checkpoint)" for e in sorted(eb - ea)]
    return out


def shown(diffs: list[str]) -> str:
    more = f"; and {len(diffs) - _SHOWN} more" if len(diffs) > _SHOWN else ""
    return "; ".join(diffs[:_SHOWN]) + more
