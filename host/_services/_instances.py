"""A small deterministic generator of JSON values valid against a JSON Schema.

Used by the local spec server to answer an operation with a body its response schema accepts.
It covers what API descriptions use: ``type`` (or type lists), ``enum``/``const``,
``default``, ``properties``/``required``, ``items``/``minItems``, ``minLength``/``maxLength``,
``minimum``/``maximum``, common ``format`` values, ``pattern`` (a shortest match built from
the regex's parse tree, checked with ``re.search``), ``allOf`` (merged), ``oneOf``/``anyOf``
(the first branch) and ``$ref`` into the table's shared schemas. Recursion stops at a fixed
depth with the smallest value of the type. The same schema always gives the same value.
"""

from __future__ import annotations

import re
from typing import Any

try:  # the stdlib's own regex parser (``sre_parse`` before 3.11)
    import re._parser as _sre
except ImportError:  # pragma: no cover
    import sre_parse as _sre

from jsonschema import Draft202012Validator

__all__ = ["instance_for", "string_matching"]

MAX_DEPTH = 8
_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
    "byte": "AA==",
}


_POOL = "a0A_-. x"
_CATEGORY = {
    "CATEGORY_DIGIT": "0",
    "CATEGORY_NOT_DIGIT": "a",
    "CATEGORY_WORD": "a",
    "CATEGORY_NOT_WORD": "-",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": "a",
}
_MAX_PATTERN = 1000
_MAX_OUT = 4096


def _in_set(ch: str, items: list[Any]) -> bool:
    for op, arg in items:
        name = str(op)
        if name == "LITERAL" and ord(ch) == arg:
            return True
        if name == "RANGE" and arg[0] <= ord(ch) <= arg[1]:
            return True
        if name == "CATEGORY":
            cat = str(arg)
            hit = {
                "CATEGORY_DIGIT": ch.isdigit(),
                "CATEGORY_WORD": ch.isalnum() or ch == "_",
                "CATEGORY_SPACE": ch.isspace(),
            }
            base = cat.replace("_NOT", "")
            if base in hit and hit[base] != ("_NOT" in cat):
                return True
    return False


def _set_char(items: list[Any]) -> str:
    if items and str(items[0][0]) == "NEGATE":
        rest = items[1:]
        return next((c for c in _POOL if not _in_set(c, rest)), "~")
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            return chr(arg)
        if name == "RANGE":
            return chr(arg[0])
        if name == "CATEGORY":
            return _CATEGORY.get(str(arg), "a")
    return "a"


def _emit(tree: Any, extra: int, out: list[str]) -> None:
    for op, arg in tree:
        if len(out) > _MAX_OUT:
            raise ValueError("too long")
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append(next(c for c in _POOL if ord(c) != arg))
        elif name == "ANY":
            out.append("a")
        elif name == "IN":
            out.append(_set_char(arg))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            lo, hi, sub = arg
            n = lo + extra if hi is _sre.MAXREPEAT else min(hi, lo + extra)
            for _ in range(n):
                _emit(sub, extra, out)
        elif name in ("SUBPATTERN", "ATOMIC_GROUP"):
            _emit(arg[-1], extra, out)
        elif name == "BRANCH":
            _emit(arg[1][0], extra, out)
        elif name in ("AT", "ASSERT", "ASSERT_NOT", "GROUPREF", "GROUPREF_EXISTS"):
            continue
        else:
            raise ValueError(f"unsupported regex node {name}")


def string_matching(pattern: str, min_len: int = 0, max_len: int | None = None) -> str | None:
    """A short string that ``re.search(pattern, ...)`` accepts within the length bounds, or
    None when none is found (a pattern Python cannot parse, or one this walk cannot meet)."""
    if not isinstance(pattern, str) or len(pattern) > _MAX_PATTERN:
        return None
    try:
        tree = _sre.parse(pattern)
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None
    for extra in (0, 1, 2, max(0, min_len), max(0, min_len) * 2):
        out: list[str] = []
        try:
            _emit(tree, extra, out)
        except (ValueError, RecursionError, StopIteration):
            return None
        text = "".join(out)
        if len(text) < min_len and compiled.search(text + "a" * (min_len - len(text))):
            text += "a" * (min_len - len(text))
        ok_len = len(text) >= min_len and (max_len is None or len(text) <= max_len)
        if ok_len and compiled.search(text):
            return text
    return None


def _resolve(schema: Any, schemas: dict[str, Any], seen: int = 0) -> Any:
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
        ref = schema["$ref"]
        if not ref.startswith("#/schemas/"):
            return {}
        target = schemas.get(ref[len("#/schemas/") :], {})
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **rest} if rest and isinstance(target, dict) else target
        seen += 1
    return schema


def _valid(schema: Any, value: Any, schemas: dict[str, Any]) -> bool:
    try:
        root = {**schema, "schemas": schemas} if isinstance(schema, dict) else schema
        return bool(Draft202012Validator(root).is_valid(value))
    except Exception:  # a schema jsonschema cannot evaluate: take the value as it is
        return True


def _first_branch(schema: dict[str, Any], key: str, schemas: dict[str, Any], depth: int) -> Any:
    """The first ``oneOf``/``anyOf`` branch that, joined with the rest of the schema (its
    type, properties, an enclosing ``allOf``), gives a value the whole schema accepts."""
    rest = {k: v for k, v in schema.items() if k != key}
    first = None
    for branch in schema[key][:8]:
        value = instance_for({"allOf": [rest, branch]} if rest else branch, schemas, depth + 1)
        if first is None:
            first = value
        if _valid(schema, value, schemas):
            return value
    return first


def instance_for(schema: Any, schemas: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value valid against ``schema`` (best effort for exotic keywords)."""
    schemas = schemas or {}
    schema = _resolve(schema, schemas)
    if schema is True or not isinstance(schema, dict):
        return None if schema is False else {}
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        props: dict[str, Any] = dict(schema.get("properties") or {})
        required: list[str] = list(schema.get("required") or [])
        for part in schema["allOf"]:
            part = _resolve(part, schemas)
            if isinstance(part, dict):
                props.update(part.get("properties") or {})
                required += list(part.get("required") or [])
                merged.update(
                    {k: v for k, v in part.items() if k not in ("properties", "required")}
                )
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return instance_for(
            {**merged, **rest, "properties": props, "required": required}, schemas, depth
        )
    for key in ("oneOf", "anyOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _first_branch(schema, key, schemas, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if kinds else "null"
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else None
    if kind == "object":
        out: dict[str, Any] = {}
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        if depth < MAX_DEPTH:
            for name, sub in props.items():
                if name in required or depth < 3:
                    out[name] = instance_for(sub, schemas, depth + 1)
        for name in required:
            out.setdefault(name, instance_for(props.get(name, {}), schemas, depth + 1))
        return out
    if kind == "array":
        n = int(schema.get("minItems") or (1 if depth < MAX_DEPTH else 0))
        item = instance_for(schema.get("items", {}), schemas, depth + 1) if n else None
        if schema.get("uniqueItems") and n > 1:
            return [item]
        return [item] * n
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "binary":
            return ""
        text = _FORMATS.get(str(fmt), "string")
        min_len = int(schema.get("minLength") or 0)
        max_len = schema.get("maxLength")
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and not re.search(pattern, text):
            found = string_matching(pattern, min_len, max_len if isinstance(max_len, int) else None)
            if found is not None:
                return found
        if len(text) < min_len:
            text = text + "x" * (min_len - len(text))
        if isinstance(max_len, int) and len(text) > max_len:
            text = text[:max_len]
        return text
    if kind in ("integer", "number"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        value: float = 0
        if isinstance(lo, (int, float)):
            value = lo + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
        hi = schema.get("maximum")
        if isinstance(hi, (int, float)) and value > hi:
            value = hi
        mult = schema.get("multipleOf")
        if isinstance(mult, (int, float)) and mult > 0:
            value = (value // mult) * mult
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {}
