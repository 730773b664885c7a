"""The rules a pack manifest's fields follow, below the data classes of ``_manifest``.

The shapes of names, versions, ids, triples and ports; the limits that bound validation;
typed access to a TOML table that names the field at fault; the checks of a member path, a
hash and a config schema. Each failure is a :class:`~reflow.PackFormatError` whose message
and ``field`` name the field (``templates[2].inports``), in bounded time whatever the input.
``_manifest`` (the data classes, reading and validating a whole manifest) and
``_manifest_wgsl`` (a template's kernel contract) build on these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .._errors import PackFormatError
from ._bounded import MAX_DEPTH

__all__ = [
    "ABI_RE",
    "DEVICE_NAMES",
    "ENTRY_RE",
    "HEX64_RE",
    "KIND_RE",
    "MANIFEST_NAME",
    "MAX_LIST",
    "MAX_MANIFEST",
    "MAX_MEMBERS",
    "MAX_PATH",
    "MAX_TEMPLATES",
    "PACK_NAME_RE",
    "PORT_RE",
    "SEGMENT_RE",
    "TEMPLATE_ID_RE",
    "TRIPLE_RE",
    "VERSION_RE",
    "check_hash",
    "check_json_like",
    "check_keys",
    "check_member_path",
    "fail",
    "field_strings",
    "field_value",
]

#: The manifest's member name, fixed by the format (the member every failure here names).
MANIFEST_NAME = "manifest.toml"

PACK_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}(/[a-z0-9][a-z0-9._-]{0,63})?")
VERSION_RE = re.compile(
    r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})"
    r"(-[0-9A-Za-z.-]{1,64})?(\+[0-9A-Za-z.-]{1,64})?"
)
ABI_RE = re.compile(r"[0-9]{1,5}\.[0-9]{1,5}")
TEMPLATE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./:-]{0,127}")
ENTRY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
KIND_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
TRIPLE_RE = re.compile(r"[a-z0-9_.]+(-[a-z0-9_.]+){1,3}")
PORT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
HEX64_RE = re.compile(r"[0-9a-f]{64}")
SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
MAX_PATH = 255
DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)
#: Most templates, and most artifacts + files, a manifest may list (bounded validation time;
#: a bundle holds at most 4096 members anyway).
MAX_TEMPLATES = 4096
MAX_MEMBERS = 4096
#: Most strings in one list field (ports, authors, capabilities, hosts).
MAX_LIST = 1024
MAX_MANIFEST = 1 << 20


def check_member_path(path: str, where: str) -> str:
    """``path`` if it is a safe relative POSIX path inside the pack, else PackFormatError.

    Safe on every filesystem the cache may live on: segments of ``[A-Za-z0-9_.+-]`` that do
    not start or end with ``.`` and are no Windows device name (``con``, ``nul.txt``, ...),
    at most 255 bytes, and short enough for a ustar header (100 bytes, or a ``/`` splitting
    it into at most 155 + 100)."""
    if not isinstance(path, str) or not path:
        raise fail(where, "a path must be a non-empty string")
    if len(path) > MAX_PATH:
        raise fail(where, f"path {path[:40]!r}... is over {MAX_PATH} chars")
    for seg in path.split("/"):
        if seg in ("", ".", "..") or not SEGMENT_RE.fullmatch(seg) or seg.endswith("."):
            raise fail(
                where,
                f"{path!r} is not a safe relative path (segments of letters, digits and _.+-, "
                "not starting or ending with '.', no '..', no leading '/')",
            )
        if seg.split(".", 1)[0].lower() in DEVICE_NAMES:
            raise fail(where, f"{path!r} has segment {seg!r}, a reserved device name on Windows")
    if len(path) > 100:
        cut = path.rfind("/", 0, 156)
        if cut <= 0 or len(path) - cut - 1 > 100:
            raise fail(
                where,
                f"path {path[:40]!r}... does not fit a ustar header (over 100 "
                "bytes and no '/' splitting it into at most 155 + 100)",
            )
    return path


def fail(where: str, what: str) -> PackFormatError:
    """The PackFormatError for manifest field ``where``: ``what`` is wrong with it."""
    return PackFormatError(f"manifest field {where}: {what}", member=MANIFEST_NAME, field=where)


def field_value(
    table: Mapping[str, Any], key: str, typ: type | tuple[type, ...], where: str, default: Any = ...
) -> Any:
    """``table[key]`` checked to be a ``typ`` (a bool is no int); ``default`` when absent,
    else absent is an error."""
    if key not in table:
        if default is ...:
            raise fail(f"{where}{key}", "is required")
        return default
    value = table[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        name = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise fail(
            f"{where}{key}", f"must be a {_TOML_TYPES.get(name, name)}, got {type(value).__name__}"
        )
    return value


_TOML_TYPES = {
    "str": "string",
    "int": "integer",
    "bool": "boolean",
    "list": "array",
    "dict": "table",
}


def field_strings(
    table: Mapping[str, Any],
    key: str,
    where: str,
    pattern: re.Pattern[str] | None = None,
    unique: bool = True,
) -> tuple[str, ...]:
    """``table[key]``: a list of at most MAX_LIST strings (each matching ``pattern``, no
    repeats when ``unique``), as a tuple; ``()`` when absent."""
    items = field_value(table, key, list, where, [])
    if len(items) > MAX_LIST:
        raise fail(f"{where}{key}", f"lists {len(items)} items, over the limit of {MAX_LIST}")
    seen: set[str] = set()
    for i, v in enumerate(items):
        if not isinstance(v, str):
            raise fail(f"{where}{key}[{i}]", f"must be a string, got {type(v).__name__}")
        if pattern is not None and not pattern.fullmatch(v):
            raise fail(f"{where}{key}[{i}]", f"{v!r} is not a valid name")
        if unique and v in seen:
            raise fail(f"{where}{key}", f"lists {v[:80]!r} twice")
        seen.add(v)
    return tuple(items)


def check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """No key of ``table`` outside ``allowed``: the first unknown one (sorted) is named."""
    extra = sorted(set(table) - allowed)
    if extra:
        raise fail(f"{where}{extra[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def check_json_like(doc: Any, where: str) -> None:
    """A config schema is JSON Schema: only values JSON can hold (TOML's dates cannot be),
    at most MAX_DEPTH deep. Iterative, so no input can exhaust the stack."""
    todo: list[tuple[Any, str, int]] = [(doc, where, 0)]
    while todo:
        obj, at, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise fail(where, f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(obj, Mapping):
            for k, v in obj.items():
                if not isinstance(k, str):
                    raise fail(at, f"has a key of type {type(k).__name__}; keys are strings")
                todo.append((v, f"{at}.{k}" if len(at) < 200 else at, depth + 1))
        elif isinstance(obj, (list, tuple)):
            todo.extend(
                (v, f"{at}[{i}]" if len(at) < 200 else at, depth + 1) for i, v in enumerate(obj)
            )
        elif obj is not None and not isinstance(obj, (str, int, float, bool)):
            raise fail(
                at,
                f"is a {type(obj).__name__}; a config schema holds only JSON "
                "values (strings, numbers, booleans, arrays, tables)",
            )


def check_hash(sha: str, size: int, where: str) -> None:
    """An artifact's or file's ``sha256`` (64 lowercase hex digits) and ``size`` (not negative)."""
    if not HEX64_RE.fullmatch(sha):
        raise fail(f"{where}.sha256", "must be 64 lowercase hex digits")
    if size < 0:
        raise fail(f"{where}.size", "must not be negative")
