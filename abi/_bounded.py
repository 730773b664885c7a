"""Bounded reading of the TOML and JSON documents a pack carries (PACK_FORMAT.md §2, §3).

``tomllib`` and ``json`` recurse once per nested array or table, ``tomllib`` takes quadratic
time over long dotted keys, and both turn an integer of more than 4300 digits into a
``ValueError``. A pack is hostile input, so before either parser sees a document it is checked
here, cheaply and in one pass: its size against a cap, then its nesting — arrays, tables,
header segments and dotted-key segments all count — and the length of every number, outside
strings and comments. Anything the parser can still raise is translated too. Every problem is
a :class:`~reflow.PackFormatError` naming the member and, where the scan knows it, the field.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from .._errors import PackFormatError

__all__ = ["MAX_DEPTH", "MAX_NUMBER_DIGITS", "load_json", "load_toml"]

#: Deepest nesting a pack document may have (a JSON Schema in a template's config_schema is
#: the deepest legitimate part; 64 levels is far beyond any real one).
MAX_DEPTH = 64
#: Longest run of digits a number may have (a 64-bit integer has 20).
MAX_NUMBER_DIGITS = 100

_LONG = "{" + str(MAX_NUMBER_DIGITS + 1) + ",}"
_TOML_TOKEN = re.compile(r"[\"'#\[\]{}=,.\n]|[0-9_]" + _LONG)
_JSON_TOKEN = re.compile(r"[\"\[\]{}]|[0-9]" + _LONG)
_LABEL = 60


def _fail(member: str, field: str, what: str) -> PackFormatError:
    where = f" field {field}:" if field else ""
    return PackFormatError(f"{member}:{where} {what}", member=member, field=field)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _LABEL else text[:_LABEL] + "..."


def _text(data: bytes | str, member: str, max_size: int, kind: str) -> str:
    size = len(data)
    if size > max_size:
        raise _fail(member, "", f"is {size} bytes, over its limit of {max_size}")
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(member, "", f"not valid {kind}: not UTF-8 ({exc})") from exc


def _backslashes_before(text: str, k: int, start: int) -> int:
    b = 0
    while k - 1 - b >= start and text[k - 1 - b] == "\\":
        b += 1
    return b


def _skip_string(text: str, i: int, multiline: bool = True) -> int:
    """Index just after the string starting at ``i``; -1 if it never ends (the parser then
    fails on it, and reads nothing after it). ``multiline``: TOML's triple-quoted strings."""
    n = len(text)
    for quote in ('"""', "'''") if multiline else ():
        if text.startswith(quote, i):
            j = i + 3
            while True:
                k = text.find(quote, j)
                if k < 0:
                    return -1
                if quote == '"""' and _backslashes_before(text, k, i + 3) % 2:
                    j = k + 1
                    continue
                end = k + 3
                while end < n and end - k - 3 < 2 and text[end] == quote[0]:
                    end += 1
                return end
    q = text[i]
    nl = text.find("\n", i + 1)
    stop = n if nl < 0 else nl
    j = i + 1
    while True:
        k = text.find(q, j, stop)
        if k < 0:
            return -1
        if q == '"' and _backslashes_before(text, k, i + 1) % 2:
            j = k + 1
            continue
        return k + 1


def _scan_toml(text: str, member: str, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` and over-long numbers, before parsing."""
    line, key, value, header, after = range(5)
    mode = line
    line_start = 0
    stack: list[tuple[str, int]] = []  # open '[' / '{' and the depth inside each
    header_depth = 0
    table = ""
    arrays: dict[str, int] = {}
    line_key = ""
    key_start = 0
    base = segs = cur = 0
    header_start = 0
    header_array = 0

    def field() -> str:
        return ".".join(p for p in (table, _short(line_key)) if p)

    def too_deep(where: str) -> PackFormatError:
        return _fail(
            member,
            where,
            f"nests deeper than {max_depth} levels (arrays, tables and dotted-key segments count)",
        )

    pos = 0
    while True:
        m = _TOML_TOKEN.search(text, pos)
        if m is None:
            return
        i = m.start()
        c = text[i]
        pos = i + 1
        if len(m.group()) > 1:
            raise _fail(member, field(), f"has a number of more than {MAX_NUMBER_DIGITS} digits")
        if c in "\"'":
            if mode == line:
                mode, key_start, base, segs = key, line_start, header_depth, 1
            end = _skip_string(text, i)
            if end < 0:
                return
            pos = end
            continue
        if c == "#":
            nl = text.find("\n", i)
            if nl < 0:
                return
            pos = nl
            continue
        if c == "\n":
            if mode == header:
                mode = line  # an unclosed header: the parser refuses it
            elif not stack:
                mode = line
            if mode == line:
                line_start = i + 1
            continue
        if mode == line:
            if c == "[" and not text[line_start:i].strip():
                mode, header_start, header_array, segs = header, i + 1, 0, 1
                if text.startswith("[", i + 1):
                    header_array, header_start, pos = 1, i + 2, i + 2
                continue
            mode, key_start, base, segs = key, line_start, header_depth, 1
        if mode == header:
            if c == ".":
                segs += 1
                if segs + header_array > max_depth:
                    raise too_deep(_short(text[header_start:i]))
            elif c == "]":
                name = " ".join(text[header_start:i].split())
                header_depth = segs + header_array
                if header_array:
                    arrays[name] = arrays.get(name, -1) + 1
                    table = f"{_short(name)}[{arrays[name]}]"
                    if text.startswith("]", i + 1):
                        pos = i + 2
                else:
                    table = _short(name)
                line_key = ""
                mode = after
            continue
        if mode == after:
            continue
        if mode == key:
            if c == ".":
                segs += 1
                if base + segs > max_depth:
                    if not stack:
                        line_key = text[key_start:i]
                    raise too_deep(field())
            elif c == "=":
                if not stack:
                    line_key = text[key_start:i].strip()
                cur = base + segs
                if cur > max_depth:
                    raise too_deep(field())
                mode = value
            elif c == "}" and stack:
                stack.pop()
                cur = stack[-1][1] if stack else 0
                mode = value
            continue
        # value
        if c in "[{":
            cur += 1
            if cur > max_depth:
                raise too_deep(field())
            stack.append((c, cur))
            if c == "{":
                mode, base, segs = key, cur, 1
        elif c in "]}":
            if stack:
                stack.pop()
            cur = stack[-1][1] if stack else 0
        elif c == "," and stack:
            cur = stack[-1][1]
            if stack[-1][0] == "{":
                mode, base, segs = key, cur, 1


def _depth(doc: Any) -> int:
    """Nesting depth of parsed data, without recursion."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(doc, 0)]
    while todo:
        obj, d = todo.pop()
        if isinstance(obj, dict):
            obj = obj.values()
        elif not isinstance(obj, list):
            continue
        deepest = max(deepest, d)
        todo.extend((v, d + 1) for v in obj)
    return deepest


def load_toml(
    data: bytes | str, member: str, *, max_size: int, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """``member`` (a TOML document) parsed, within ``max_size`` bytes and ``max_depth`` levels.
    Raises PackFormatError naming the member (and the field, where known)."""
    text = _text(data, member, max_size, "TOML")
    _scan_toml(text, member, max_depth)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(member, "", f"not valid TOML: {exc}") from exc
    except (ValueError, RecursionError, OverflowError) as exc:
        raise _fail(member, "", f"not valid TOML ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if _depth(doc) > max_depth:
        raise _fail(member, "", f"nests deeper than {max_depth} levels")
    return doc


def _scan_json(text: str, member: str, max_depth: int) -> None:
    depth = 0
    pos = 0
    while True:
        m = _JSON_TOKEN.search(text, pos)
        if m is None:
            return
        i = m.start()
        c = text[i]
        pos = i + 1
        if len(m.group()) > 1:
            raise _fail(member, "", f"has a number of more than {MAX_NUMBER_DIGITS} digits")
        if c == '"':
            end = _skip_string(text, i, multiline=False)
            if end < 0:
                return
            pos = end
        elif c in "[{":
            depth += 1
            if depth > max_depth:
                raise _fail(member, "", f"nests deeper than {max_depth} levels")
        else:
            depth -= 1


def load_json(data: bytes | str, member: str, *, max_size: int, max_depth: int = MAX_DEPTH) -> Any:
    """``member`` (a JSON document) parsed, within ``max_size`` bytes and ``max_depth``
    levels. Raises PackFormatError naming the member."""
    text = _text(data, member, max_size, "JSON")
    _scan_json(text, member, max_depth)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError, OverflowError) as exc:
        raise _fail(member, "", f"not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if _depth(doc) > max_depth:
        raise _fail(member, "", f"nests deeper than {max_depth} levels")
    return doc
