"""Names the generator derives from a description: template id suffixes and parameter keys
(abi/HTTP_API.md, "Template ids" and "Parameter"). Pure functions of their inputs, so the
same description always gives the same names."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

__all__ = ["RESERVED_KEYS", "assign_suffixes", "param_keys", "snake", "suffix_from_path"]

#: Keys a parameter may not take (the node's own ports and config).
RESERVED_KEYS = frozenset({"trigger", "request", "body", "_http"})
#: Longest parameter key (a port name holds at most 64 characters).
MAX_KEY = 64

_CAMEL1 = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL2 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_OTHER = re.compile(r"[^a-z0-9]+")


def snake(text: str) -> str:
    """``issues/list-for-repo`` -> ``issues_list_for_repo``; ``getHTTPInfo`` ->
    ``get_http_info``. Every run of characters other than ``[a-z0-9]`` (after splitting
    camelCase and lower-casing) becomes one ``_``; none lead or trail."""
    text = _CAMEL2.sub(r"\1_\2", _CAMEL1.sub(r"\1_\2", text))
    return _OTHER.sub("_", text.lower()).strip("_")


def suffix_from_path(method: str, path: str) -> str:
    """``GET /me/{id}`` -> ``get_me_by_id``."""
    words = [method.lower()]
    for seg in path.split("/"):
        for part in re.split(r"(\{[^}]*\})", seg):
            if part.startswith("{") and part.endswith("}"):
                words.append("by_" + (snake(part[1:-1]) or "param"))
            elif part:
                words.append(snake(part))
    return "_".join(w for w in words if w) or method.lower()


def _hash8(method: str, path: str) -> str:
    return hashlib.sha256(f"{method.upper()} {path}".encode()).hexdigest()[:8]


def _fit(suffix: str, method: str, path: str, limit: int) -> str:
    if len(suffix) <= limit:
        return suffix
    return suffix[: limit - 9].rstrip("_") + "_" + _hash8(method, path)


def _base(operation_id: str | None, method: str, path: str) -> str:
    s = snake(operation_id) if isinstance(operation_id, str) else ""
    if not s:
        s = suffix_from_path(method, path)
    return "op_" + s if s[0].isdigit() else s


def assign_suffixes(ops: Sequence[tuple[str, str, str | None]], limit: int) -> list[str]:
    """One suffix per ``(path, method, operationId)``, unique, each at most ``limit`` long.

    Colliding suffixes: the operation whose ``(path, method)`` sorts first keeps the plain
    one, each other gets ``_<method>_<path slug>``; anything still colliding (or too long) is
    cut and ends in 8 hex digits of the SHA-256 of ``method + " " + path``."""
    bases = [_fit(_base(oid, m, p), m, p, limit) for p, m, oid in ops]
    groups: dict[str, list[int]] = {}
    for i, b in enumerate(bases):
        groups.setdefault(b, []).append(i)
    out = list(bases)
    for b, idx in groups.items():
        if len(idx) < 2:
            continue
        idx.sort(key=lambda i: (ops[i][0], ops[i][1].lower()))
        for i in idx[1:]:
            p, m, _ = ops[i]
            out[i] = _fit(f"{b}_{suffix_from_path(m, p)}", m, p, limit)
    taken: dict[str, int] = {}
    for i in sorted(range(len(ops)), key=lambda i: (ops[i][0], ops[i][1].lower())):
        s = out[i]
        if s in taken and taken[s] != i:
            p, m, _ = ops[i]
            s = s[: limit - 9].rstrip("_") + "_" + _hash8(m, p)
            out[i] = s
        taken[s] = i
    return out


def param_keys(names: Iterable[tuple[str, str]]) -> list[str]:
    """A key per ``(name, in)``: an identifier ``[a-z][a-z0-9_]*`` of at most 64 characters,
    unique in the list, never a reserved key (a clash gets ``_param``; a repeat gets
    ``_<in>``, then a number)."""
    out: list[str] = []
    used: set[str] = set()
    for name, where in names:
        k = snake(name) or "param"
        if not k[0].isalpha():
            k = "p_" + k
        k = k[:MAX_KEY].rstrip("_")
        if k in RESERVED_KEYS:
            k += "_param"
        if k in used:
            k = f"{k[: MAX_KEY - len(where) - 1]}_{snake(where) or 'x'}"
        n = 2
        base = k
        while k in used:
            k = f"{base[: MAX_KEY - 4]}_{n}"
            n += 1
        used.add(k)
        out.append(k)
    return out
