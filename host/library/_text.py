"""Text templates: templates with placeholders, case, split/join, replace, encodings, and
regular expressions (Python's :mod:`re` syntax; inputs longer than ``max_length`` characters,
default 1 MiB, are refused so a pathological pattern cannot stall the graph on a huge text).

Placeholders (``{user.name}``) are field paths as in the data templates
(see :func:`reflow.library._expr.parse_path`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import (
    LibraryActor,
    config_bool,
    config_choice,
    config_int,
    config_str,
    input_array,
    input_text,
    input_value,
)
from ._data import _ABSENT, _json_text
from ._expr import ExpressionError, get_path, parse_path

__all__ = ["TEXT_TEMPLATES"]


# -- text ---------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


class TextTemplate(LibraryActor):
    """Fills ``{path}`` placeholders of a template with fields of the payload.

    Ports: in ``in`` (Object, Array or any value; ``{}`` or ``{$}`` is the whole payload) →
    out ``out`` (String). Config: ``template`` (required, e.g. ``"Hi {user.name}, {count}
    new"``; ``{{`` and ``}}`` are literal braces), ``missing`` (``"error"``, default: a missing
    field fails the tick; ``"empty"``: it becomes ``""``). Strings are inserted as they are,
    other values as JSON.
    """

    component = "tpl_text_template"
    inports = ["in"]
    outports = ["out"]
    outport_types = {"out": "String"}

    def run(self, ctx: ActorContext) -> None:
        template = config_str(ctx, "template")
        missing = config_choice(ctx, "missing", ("error", "empty"), "error")
        data = input_value(ctx, "in")

        def fill(m: re.Match[str]) -> str:
            if m[0] == "{{":
                return "{"
            if m[0] == "}}":
                return "}"
            try:
                parts = parse_path(m[1])
            except ExpressionError as exc:
                raise ActorError(f"config 'template': placeholder {m[0]}: {exc}") from exc
            value = get_path(data, parts, _ABSENT)
            if value is _ABSENT:
                if missing == "empty":
                    return ""
                raise ActorError(
                    f"config 'template': placeholder {m[0]} names a field that "
                    "in-port 'in' does not have"
                )
            return value if isinstance(value, str) else _json_text(value)

        ctx.done({"out": Message.string(_PLACEHOLDER.sub(fill, template))})


class TextCase(LibraryActor):
    """Changes letter case or trims whitespace.

    Ports: in ``in`` (String) → out ``out`` (String). Config: ``mode`` (``"upper"``,
    ``"lower"``, ``"title"``, ``"capitalize"``, ``"trim"``, ``"snake"``; default ``"lower"``).
    """

    component = "tpl_text_case"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "String"}
    outport_types = {"out": "String"}
    _MODES: dict[str, Callable[[str], str]] = {
        "upper": str.upper,
        "lower": str.lower,
        "title": str.title,
        "capitalize": str.capitalize,
        "trim": str.strip,
        "snake": lambda s: (
            re.sub(r"[^0-9a-zA-Z]+", "_", re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", s))
            .strip("_")
            .lower()
        ),
    }

    def run(self, ctx: ActorContext) -> None:
        mode = config_choice(ctx, "mode", tuple(self._MODES), "lower")
        ctx.done({"out": Message.string(self._MODES[mode](input_text(ctx, "in")))})


class TextSplit(LibraryActor):
    """Splits text on a separator (or on runs of whitespace).

    Ports: in ``in`` (String) → out ``out`` (Array of String). Config: ``separator`` (string,
    default: whitespace), ``limit`` (int ≥ 0, default 0: no limit on splits), ``trim`` (bool,
    default false: strip each part and drop empty ones).
    """

    component = "tpl_text_split"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "String"}
    outport_types = {"out": "Array"}

    def run(self, ctx: ActorContext) -> None:
        sep = config_str(ctx, "separator", "") or None
        limit = config_int(ctx, "limit", 0, minimum=0)
        parts = input_text(ctx, "in").split(sep, limit or -1)
        if config_bool(ctx, "trim", False):
            parts = [p.strip() for p in parts if p.strip()]
        ctx.done({"out": Message.array(parts)})


class TextJoin(LibraryActor):
    """Joins the items of an Array into one String.

    Ports: in ``in`` (Array; strings as they are, other items as JSON) → out ``out``
    (String). Config: ``separator`` (string, default ``""``).
    """

    component = "tpl_text_join"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Array"}
    outport_types = {"out": "String"}

    def run(self, ctx: ActorContext) -> None:
        sep = config_str(ctx, "separator", "")
        items = input_array(ctx, "in")
        text = sep.join(v if isinstance(v, str) else _json_text(v) for v in items)
        ctx.done({"out": Message.string(text)})


class TextReplace(LibraryActor):
    """Replaces every occurrence of a substring.

    Ports: in ``in`` (String) → out ``out`` (String). Config: ``find`` (non-empty string,
    required), ``replace`` (string, default ``""``), ``count`` (int ≥ 0, default 0: all).
    """

    component = "tpl_text_replace"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "String"}
    outport_types = {"out": "String"}

    def run(self, ctx: ActorContext) -> None:
        find = config_str(ctx, "find")
        if not find:
            raise ActorError("config 'find' must not be empty")
        repl = config_str(ctx, "replace", "")
        count = config_int(ctx, "count", 0, minimum=0)
        ctx.done({"out": Message.string(input_text(ctx, "in").replace(find, repl, count or -1))})


class TextEncode(LibraryActor):
    """Converts between String and Bytes.

    Ports: in ``in`` (String → encoded, or Bytes → decoded) → out ``out`` (Bytes or String).
    Config: ``encoding`` (default ``"utf-8"``; also ``"base64"`` and ``"hex"``, which encode
    Bytes to text and decode text to Bytes), ``errors`` (``"strict"``, default, or
    ``"replace"``).
    """

    component = "tpl_text_encode"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: ActorContext) -> None:
        import base64
        import binascii
        import codecs

        encoding = config_str(ctx, "encoding", "utf-8").lower()
        errors = config_choice(ctx, "errors", ("strict", "replace"), "strict")
        msg = ctx.inputs["in"]
        if msg["type"] not in ("String", "Bytes"):
            raise ActorError(f"in-port 'in': expected a String or Bytes, got {msg['type']}")
        data = msg["data"]
        if encoding in ("base64", "hex"):
            if msg["type"] == "Bytes":
                text = base64.b64encode(data).decode() if encoding == "base64" else data.hex()
                ctx.done({"out": Message.string(text)})
                return
            try:
                raw = (
                    base64.b64decode(data, validate=True)
                    if encoding == "base64"
                    else bytes.fromhex(data)
                )
            except (binascii.Error, ValueError) as exc:
                raise ActorError(f"in-port 'in': not valid {encoding}: {exc}") from exc
            ctx.done({"out": Message.bytes(raw)})
            return
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise ActorError(f"config 'encoding': unknown encoding {encoding!r}") from exc
        try:
            if msg["type"] == "String":
                ctx.done({"out": Message.bytes(data.encode(encoding, errors))})
            else:
                ctx.done({"out": Message.string(data.decode(encoding, errors))})
        except UnicodeError as exc:
            raise ActorError(f"in-port 'in': cannot convert with {encoding!r}: {exc}") from exc


# -- regular expressions ------------------------------------------------------------------------

_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def _regex(ctx: ActorContext) -> re.Pattern[str]:
    pattern = config_str(ctx, "pattern")
    flags_text = config_str(ctx, "flags", "")
    flags = 0
    for f in flags_text:
        if f not in _FLAGS:
            raise ActorError(f"config 'flags': unknown flag {f!r}; use any of i, m, s, x")
        flags |= _FLAGS[f]
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ActorError(f"config 'pattern': invalid regular expression: {exc}") from exc


def _regex_input(ctx: ActorContext) -> str:
    text = input_text(ctx, "in")
    limit = config_int(ctx, "max_length", 1 << 20, minimum=0)
    if len(text) > limit:
        raise ActorError(
            f"in-port 'in': text of {len(text)} characters is longer than config "
            f"'max_length' ({limit})"
        )
    return text


def _match_object(m: re.Match[str]) -> dict[str, Any]:
    return {
        "match": m[0],
        "start": m.start(),
        "end": m.end(),
        "groups": list(m.groups()),
        "named": m.groupdict(),
    }


class RegexMatch(LibraryActor):
    """Tests text against a regular expression (searching anywhere unless ``full``).

    Ports: in ``in`` (String) → out ``matched`` (Object ``{match, start, end, groups,
    named}``), ``unmatched`` (the input String), ``result`` (Boolean, always).
    Config: ``pattern`` (required), ``flags`` (any of ``i m s x``), ``full`` (bool, default
    false: the whole text must match), ``max_length`` (int, default 1048576).
    """

    component = "tpl_regex_match"
    inports = ["in"]
    outports = ["matched", "unmatched", "result"]
    inport_types = {"in": "String"}
    outport_types = {"matched": "Object", "unmatched": "String", "result": "Boolean"}

    def run(self, ctx: ActorContext) -> None:
        rx = _regex(ctx)
        text = _regex_input(ctx)
        m = rx.fullmatch(text) if config_bool(ctx, "full", False) else rx.search(text)
        if m is None:
            ctx.done({"unmatched": ctx.inputs["in"], "result": Message.boolean(False)})
        else:
            ctx.done({"matched": Message.object(_match_object(m)), "result": Message.boolean(True)})


class RegexExtract(LibraryActor):
    """Every match of a regular expression.

    Ports: in ``in`` (String) → out ``out`` (Array: the whole matches, or with ``group`` set
    that group of each match; ``detail``: match Objects as ``tpl_regex_match`` sends).
    Config: ``pattern`` (required), ``flags``, ``group`` (int or name), ``detail`` (bool,
    default false), ``max_length``.
    """

    component = "tpl_regex_extract"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "String"}
    outport_types = {"out": "Array"}

    def run(self, ctx: ActorContext) -> None:
        rx = _regex(ctx)
        text = _regex_input(ctx)
        group = ctx.config.get("group", 0)
        if isinstance(group, bool) or not isinstance(group, (int, str)):
            raise ActorError(f"config 'group' must be a group number or name, got {group!r}")
        if (isinstance(group, int) and not 0 <= group <= rx.groups) or (
            isinstance(group, str) and group not in rx.groupindex
        ):
            raise ActorError(f"config 'group': the pattern has no group {group!r}")
        matches = list(rx.finditer(text))
        if config_bool(ctx, "detail", False):
            ctx.done({"out": Message.array([_match_object(m) for m in matches])})
        else:
            ctx.done({"out": Message.array([m[group] for m in matches])})


class RegexReplace(LibraryActor):
    """Replaces matches of a regular expression.

    Ports: in ``in`` (String) → out ``out`` (String). Config: ``pattern`` (required),
    ``replace`` (string with ``\\1`` / ``\\g<name>`` references, default ``""``), ``count``
    (int ≥ 0, default 0: all), ``flags``, ``max_length``.
    """

    component = "tpl_regex_replace"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "String"}
    outport_types = {"out": "String"}

    def run(self, ctx: ActorContext) -> None:
        rx = _regex(ctx)
        repl = config_str(ctx, "replace", "")
        count = config_int(ctx, "count", 0, minimum=0)
        text = _regex_input(ctx)
        try:
            out = rx.sub(repl, text, count=count)
        except (re.error, IndexError) as exc:
            raise ActorError(f"config 'replace': {exc}") from exc
        ctx.done({"out": Message.string(out)})


TEXT_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (
        TextTemplate,
        TextCase,
        TextSplit,
        TextJoin,
        TextReplace,
        TextEncode,
        RegexMatch,
        RegexExtract,
        RegexReplace,
    )
}
