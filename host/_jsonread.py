"""Bounded JSON reading: how deep a value nests is checked before the host recurses into it.

The readers of user JSON in the host (messages, graphs, compositions, subgraphs, a guest's
``http_request`` document, the ``json_parse`` and ``http_request`` actors) go through
:func:`loads` for text and :func:`check_depth` for values built in Python, so text like
``[[[[...`` or a value nested a million levels deep is refused with :class:`JSONDepthError` —
naming how deep it goes, the limit and where — in time linear in its size and little memory,
instead of a ``RecursionError`` from somewhere below. Huge but shallow input is not limited
here.

Depth counts containers (objects and arrays): ``1`` and ``"x"`` are 0 deep, ``[1]`` is 1,
``{"a": [1]}`` is 2. :data:`MAX_DEPTH` is low enough that everything downstream (``deepcopy``,
``json.dumps``, ``repr``, the readers' own recursion) stays far from Python's recursion limit.

:class:`JSONDepthError` is a ``ValueError`` on purpose: callers that already turn a JSON
``ValueError`` into their own :class:`~reflow.ReflowError` subclass keep doing so; the message
and graph readers catch it and raise ``MessageError`` / ``GraphFormatError`` with its path.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_DEPTH", "JSONDepthError", "check_depth", "loads", "measure_depth"]

#: Deepest nesting of objects and arrays any host JSON reader accepts.
MAX_DEPTH = 200

#: JSON string tokens (one that never closes runs to the end of the text) and runs of opening
#: or closing brackets. Possessive, and a string matches from every quote it starts at, so a
#: scan of hostile text stays linear; finditer keeps it in constant memory.
_STRING_RE = r'"(?:[^"\\]++|\\[\s\S]?+)*+(?:"|\Z)'
_DEPTH_TOKEN = re.compile(_STRING_RE + r"|[\[{]++|[\]}]++")
_TOKEN = re.compile(_STRING_RE + r"|[\[\]{},:]")
_CONTAINERS = (dict, list, tuple)
_SHOWN_SEGMENTS = 8  # a path deeper than this is shortened in messages


class JSONDepthError(ValueError):
    """JSON (text or value) nests deeper than ``limit``.

    ``depth`` is how deep it goes (None: not known, or ``cyclic``: a Python value that contains
    itself), ``path`` the JSON path of the first container past the limit (shortened when
    long), ``position`` ``"line L column C"`` for text, else ``""``.
    """

    def __init__(
        self,
        *,
        depth: int | None,
        limit: int,
        path: str,
        position: str = "",
        what: str = "JSON",
        cyclic: bool = False,
    ) -> None:
        self.depth = depth
        self.limit = limit
        path = shorten_path(path)
        self.path = path
        self.position = position
        how = (
            "without end (it contains itself)"
            if cyclic
            else f"{depth} levels deep"
            if depth is not None
            else f"more than {limit} levels deep"
        )
        at = f" ({position})" if position else ""
        #: the message without the path, for errors that print their path themselves
        self.detail = f"{what} nests {how}, deeper than {limit} (the limit){at}"
        super().__init__(f"{what} nests {how}, deeper than {limit} (the limit), at {path}{at}")


_SEGMENT = re.compile(r"\.[^.\[]+|\[[^\]]*\]")


def shorten_path(path: str) -> str:
    """``path`` itself, or, when it is very deep, its start and end with the middle left out:
    ``$.data.data[...190 levels...].data``."""
    if len(path) <= 80:
        return path
    root = path[: len(path) - len(path.lstrip("$"))] or ""
    segments = _SEGMENT.findall(path, len(root))
    if len(segments) <= _SHOWN_SEGMENTS + 2:
        return path
    head = "".join(segments[:_SHOWN_SEGMENTS])
    return f"{root}{head}[...{len(segments) - _SHOWN_SEGMENTS - 1} levels...]{segments[-1]}"


def short_path(segments: list[str], root: str = "$") -> str:
    """``root`` + segments, shortened by :func:`shorten_path`."""
    return shorten_path(root + "".join(segments))


def segment(key: Any) -> str:
    """The JSON path segment for ``key``: ``.name``, ``["odd key"]`` or ``[3]``."""
    if isinstance(key, int):
        return f"[{key}]"
    text = str(key)
    return f".{text}" if text.isidentifier() else f"[{json.dumps(text)}]"


# -- text --------------------------------------------------------------------------------------


def text_depth(text: str) -> int:
    """How deep the objects and arrays of JSON ``text`` nest (strings skipped), in linear time
    and constant memory. For text that is not JSON the answer is only an estimate."""
    depth = deepest = 0
    for match in _DEPTH_TOKEN.finditer(text):
        token = match.group()
        if token[0] in "[{":
            depth += len(token)
            deepest = max(deepest, depth)
        elif token[0] != '"':
            depth = max(0, depth - len(token))
    return deepest


def _text_error(text: str, depth: int, limit: int, what: str) -> JSONDepthError:
    """Where in ``text`` nesting first goes past ``limit``: its JSON path and line/column."""
    stack: list[list[Any]] = []  # per open container: [is_object, key or index, last string]
    for match in _TOKEN.finditer(text):
        tok = match.group()
        if tok in "[{":
            if len(stack) >= limit:
                segments = [segment(frame[1]) for frame in stack if frame[1] is not None]
                line = text.count("\n", 0, match.start()) + 1
                column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
                return JSONDepthError(
                    depth=depth,
                    limit=limit,
                    path=short_path(segments),
                    position=f"line {line} column {column}",
                    what=what,
                )
            stack.append([tok == "{", None if tok == "{" else 0, None])
        elif tok in "]}":
            if stack:
                stack.pop()
        elif not stack:
            continue
        elif tok == ",":
            top = stack[-1]
            top[1] = None if top[0] else top[1] + 1
        elif tok == ":":
            top = stack[-1]
            if top[0] and top[2] is not None:
                try:
                    top[1] = json.loads(top[2])
                except ValueError:
                    top[1] = top[2]
        else:  # a string: maybe the key of the next value
            stack[-1][2] = tok
    return JSONDepthError(depth=depth, limit=limit, path="$", what=what)  # pragma: no cover


def loads(
    text: str | bytes | bytearray, *, limit: int = MAX_DEPTH, what: str = "JSON", **kwargs: Any
) -> Any:
    """``json.loads(text, **kwargs)``, refusing text that nests deeper than ``limit`` with
    :class:`JSONDepthError`. Other bad text raises ``ValueError`` as ``json.loads`` does
    (``UnicodeDecodeError`` included, for bytes).

    The parser itself gives up on very deep text early (its own recursion guard), in little
    memory; only then, when the text is not JSON, or when the parsed value turns out too deep,
    is the text scanned to say how deep and where. Shallow text costs one walk over the parsed
    containers."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode(json.detect_encoding(text), "surrogatepass")
    if not isinstance(text, str):
        raise TypeError(f"JSON text must be str or bytes, not {type(text).__name__}")
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        depth = text_depth(text)
        if depth <= limit:  # the parser ran out of stack for another reason: say so
            raise JSONDepthError(depth=None, limit=limit, path="$", what=what) from None
        raise _text_error(text, depth, limit, what) from None
    except ValueError:
        depth = text_depth(text)  # bad text that is also too deep: the depth is the news
        if depth > limit:
            raise _text_error(text, depth, limit, what) from None
        raise
    if isinstance(value, _CONTAINERS) and _too_deep(value, limit):
        raise _text_error(text, measure_depth(value) or limit + 1, limit, what)
    return value


def _too_deep(value: Any, limit: int) -> bool:
    try:
        _walk(value, 1, limit, {})
    except _TooDeep:
        return True
    return False


# -- Python values -----------------------------------------------------------------------------


def measure_depth(value: Any) -> int | None:
    """How deep ``value``'s dicts, lists and tuples nest, without recursion; ``None`` when it
    contains itself. Shared sub-values are measured once, so time is linear in the number of
    distinct containers and their items."""
    if not isinstance(value, _CONTAINERS):
        return 0
    heights: dict[int, int] = {}
    on_path: set[int] = {id(value)}
    # frames: [container, iterator over its items, tallest child so far]
    stack: list[list[Any]] = [[value, iter(_items(value)), 0]]
    while True:
        frame = stack[-1]
        for child in frame[1]:
            if not isinstance(child, _CONTAINERS):
                continue
            known = heights.get(id(child))
            if known is not None:
                frame[2] = max(frame[2], known)
                continue
            if id(child) in on_path:
                return None
            on_path.add(id(child))
            stack.append([child, iter(_items(child)), 0])
            break
        else:
            stack.pop()
            height = frame[2] + 1
            heights[id(frame[0])] = height
            on_path.discard(id(frame[0]))
            if not stack:
                return height
            stack[-1][2] = max(stack[-1][2], height)


def _items(value: Any) -> Any:
    return value.values() if isinstance(value, dict) else value


class _TooDeep(Exception):
    """Unwinds check_depth's recursion, collecting the path on the way out."""

    def __init__(self) -> None:
        self.segments: list[str] = []


def _walk(value: Any, level: int, limit: int, heights: dict[int, int]) -> int:
    """Height of ``value`` (a container at ``level``); raises _TooDeep past ``limit``."""
    known = heights.get(id(value))
    if known is not None:
        if level + known - 1 > limit:
            raise _TooDeep
        return known
    if level > limit:
        raise _TooDeep
    tallest = 0
    if isinstance(value, dict):
        items: Any = value.items()
    else:
        items = enumerate(value)
    for key, child in items:
        if isinstance(child, _CONTAINERS):
            try:
                tallest = max(tallest, _walk(child, level + 1, limit, heights))
            except _TooDeep as exc:
                exc.segments.append(segment(key))
                raise
    heights[id(value)] = tallest + 1
    return tallest + 1


def check_depth(
    value: Any, *, limit: int = MAX_DEPTH, level: int = 1, path: str = "$", what: str = "value"
) -> None:
    """Raise :class:`JSONDepthError` if ``value`` (counted as being at ``level``: 1 for a
    document's root) nests its dicts, lists and tuples past ``limit``; ``path`` is where the
    value sits, for the error. Recursion is bounded by ``limit``; shared sub-values are walked
    once; a value that contains itself is reported, not followed."""
    if not isinstance(value, _CONTAINERS):
        return
    try:
        _walk(value, level, limit, {})
    except _TooDeep as exc:
        height = measure_depth(value)
        depth = None if height is None else height + level - 1
        raise JSONDepthError(
            depth=depth,
            limit=limit,
            what=what,
            cyclic=height is None,
            path=short_path(exc.segments[::-1], path),
        ) from None
