"""A small deterministic generator of JSON values valid against a JSON Schema.

Used by the local spec server to answer an operation with a body its response schema accepts
(and by tests for minimal valid requests). It covers what API descriptions use: ``type`` (or
type lists), ``enum``/``const`` and ``default`` (each used only where it fits the schema's own
type and bounds), ``properties``/``required``/``minProperties`` (more keys from the optional
properties, ``propertyNames`` or ``additionalProperties``), ``items``/``minItems`` (distinct
items under ``uniqueItems``), string and number bounds, common ``format`` values, ``pattern``
(a shortest match built from the regex's parse tree, checked with ``re.search``), ``allOf``
(merged: same-named properties joined, types and enums intersected, bounds tightened),
``oneOf``/``anyOf`` (the first branch that validates) and ``$ref`` into the table's shared
schemas. A value that still breaks its schema (``not``, contradicting parts) then loses the
optional properties and array items that the validator points at, while that lowers the
error count. Recursion stops at a fixed depth. The same schema always gives the same value.
"""

from __future__ import annotations

import re
from itertools import islice
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


def _emit(tree: Any, extra: int, out: list[str], variant: int = 0) -> None:
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
                _emit(sub, extra, out, variant)
        elif name in ("SUBPATTERN", "ATOMIC_GROUP"):
            _emit(arg[-1], extra, out, variant)
        elif name == "BRANCH":
            _emit(arg[1][variant % len(arg[1])], extra, out, variant)
        elif name in ("AT", "ASSERT", "ASSERT_NOT", "GROUPREF", "GROUPREF_EXISTS"):
            continue
        else:
            raise ValueError(f"unsupported regex node {name}")


def string_matching(
    pattern: str, min_len: int = 0, max_len: int | None = None, variant: int = 0
) -> str | None:
    """A short string that ``re.search(pattern, ...)`` accepts within the length bounds, or
    None when none is found (a pattern Python cannot parse, or one this walk cannot meet).
    ``variant`` > 0 picks other alternatives and longer repeats (distinct array items)."""
    if not isinstance(pattern, str) or len(pattern) > _MAX_PATTERN:
        return None
    try:
        tree = _sre.parse(pattern)
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None
    extras = (0, 1, 2, max(0, min_len), max(0, min_len) * 2)
    for extra in (variant, *extras) if variant else extras:
        out: list[str] = []
        try:
            _emit(tree, extra, out, variant)
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


_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _valid(schema: Any, value: Any, schemas: dict[str, Any]) -> bool:
    try:
        root = {**schema, "schemas": schemas} if isinstance(schema, dict) else schema
        return bool(Draft202012Validator(root).is_valid(value))
    except Exception:  # a schema jsonschema cannot evaluate: take the value as it is
        return True


def _types(schema: dict[str, Any]) -> list[str] | None:
    t = schema.get("type")
    if isinstance(t, str):
        return [t]
    return [x for x in t if isinstance(x, str)] if isinstance(t, list) else None


def _type_ok(schema: dict[str, Any], value: Any) -> bool:
    """A cheap look at ``value`` against the schema's own ``type``, ``enum``, ``const``,
    string and number bounds (a ``default: null`` on a schema that does not allow null, or
    a ``default: ""`` under a ``pattern``, fails here)."""
    if "const" in schema and schema["const"] != value:
        return False
    if isinstance(schema.get("enum"), list) and value not in schema["enum"]:
        return False
    if isinstance(value, str) and not _string_ok(schema, value):
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if (isinstance(lo, (int, float)) and value < lo) or (
            isinstance(hi, (int, float)) and value > hi
        ):
            return False
    kinds = _types(schema)
    if kinds is None:
        return True
    for k in kinds:
        if k in ("integer", "number"):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if number and (k == "number" or float(value).is_integer()):
                return True
        elif isinstance(value, _JSON_TYPES.get(k, object)) and not (
            k != "boolean" and isinstance(value, bool)
        ):
            return True
    return False


def _string_ok(schema: dict[str, Any], value: str) -> bool:
    low, high, pattern = schema.get("minLength"), schema.get("maxLength"), schema.get("pattern")
    if (isinstance(low, int) and len(value) < low) or (isinstance(high, int) and len(value) > high):
        return False
    if isinstance(pattern, str) and len(pattern) <= _MAX_PATTERN:
        try:
            return re.search(pattern, value) is not None
        except (re.error, RecursionError, OverflowError):
            return True
    return True


def _parts(schema: Any, schemas: dict[str, Any], depth: int = 0) -> list[dict[str, Any]]:
    """``schema`` and its ``allOf`` parts, nested ``allOf`` flattened, refs resolved."""
    schema = _resolve(schema, schemas)
    if not isinstance(schema, dict):
        return []
    out = [{k: v for k, v in schema.items() if k != "allOf"}]
    subs = schema.get("allOf")
    if isinstance(subs, list) and depth < MAX_DEPTH:
        for sub in subs:
            out += _parts(sub, schemas, depth + 1)
    return out


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One schema meeting every part as far as a generator needs: properties of the same
    name joined under ``allOf``, ``required`` united, ``type`` and ``enum`` intersected,
    bounds tightened, several ``not`` as one ``not: {anyOf}``; other keywords: the first."""
    out: dict[str, Any] = {}
    props: dict[str, list[Any]] = {}
    required: list[str] = []
    nots: list[Any] = []
    for part in parts:
        for name, sub in (part.get("properties") or {}).items():
            seen = props.setdefault(name, [])
            if sub not in seen:
                seen.append(sub)
        required += [r for r in part.get("required") or [] if r not in required]
        if "not" in part:
            nots.append(part["not"])
        for k, v in part.items():
            if k in ("properties", "required", "not"):
                continue
            if k not in out:
                out[k] = v
            elif k == "type":
                mine = _types(out) or []
                theirs = _types(part) or []
                both = [t for t in mine if t in theirs or (t == "integer" and "number" in theirs)]
                out[k] = both or mine
            elif k == "enum" and isinstance(v, list) and isinstance(out[k], list):
                out[k] = [e for e in out[k] if e in v] or out[k]
            elif k in _LOWER and isinstance(v, (int, float)) and isinstance(out[k], (int, float)):
                out[k] = max(out[k], v)
            elif k in _UPPER and isinstance(v, (int, float)) and isinstance(out[k], (int, float)):
                out[k] = min(out[k], v)
    if props:
        out["properties"] = {n: s[0] if len(s) == 1 else {"allOf": s} for n, s in props.items()}
    if required:
        out["required"] = required
    if nots:
        out["not"] = nots[0] if len(nots) == 1 else {"anyOf": nots}
    return out


def _first_branch(
    schema: dict[str, Any], key: str, schemas: dict[str, Any], depth: int, variant: int
) -> Any:
    """The first ``oneOf``/``anyOf`` branch that, joined with the rest of the schema (its
    type, properties, an enclosing ``allOf``), gives a value the whole schema accepts."""
    rest = {k: v for k, v in schema.items() if k != key}
    first = None
    for branch in schema[key][:8]:
        joined = {"allOf": [rest, branch]} if rest else branch
        value = _build(joined, schemas, depth + 1, variant)
        if first is None:
            first = value
        if _valid(schema, value, schemas):
            return value
    return first


def _distinct(schema: Any, schemas: dict[str, Any], depth: int, n: int) -> list[Any]:
    """Up to ``n`` different instances of ``schema`` (for ``uniqueItems``)."""
    out: list[Any] = []
    for variant in range(4 * n + 4):
        value = _build(schema, schemas, depth, variant)
        if value not in out:
            out.append(value)
            if len(out) >= n:
                break
    return out


def _key_names(schema: dict[str, Any], n: int) -> list[str]:
    """Names for ``n`` more properties: ``propertyNames``' enum or pattern, else key<i>."""
    names = schema.get("propertyNames")
    names = names if isinstance(names, dict) else {}
    if isinstance(names.get("enum"), list):
        return [str(e) for e in names["enum"]][:n]
    out = []
    for i in range(n):
        pattern = names.get("pattern")
        found = string_matching(pattern, variant=i) if isinstance(pattern, str) else None
        out.append(found if found is not None else f"key{i}")
    return out


def _object(
    schema: dict[str, Any], schemas: dict[str, Any], depth: int, variant: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    props = schema.get("properties") or {}
    required = schema.get("required") or []
    if depth < MAX_DEPTH:
        for name, sub in props.items():
            if name in required or depth < 3:
                out[name] = _build(sub, schemas, depth + 1, variant)
    for name in required:
        if name not in out:
            out[name] = _build(props.get(name, {}), schemas, depth + 1, variant)
    low, high = schema.get("minProperties"), schema.get("maxProperties")
    if isinstance(high, int) and len(out) > high:
        for name in [k for k in out if k not in required][: len(out) - high]:
            del out[name]
    if isinstance(low, int) and len(out) < low:
        for name in props:
            if name not in out and len(out) < low:
                out[name] = _build(props[name], schemas, depth + 1, variant)
        extra = schema.get("additionalProperties", True)
        if extra is not False and len(out) < low:
            sub = extra if isinstance(extra, dict) else {}
            for name in _key_names(schema, low - len(out)):
                if name not in out:
                    out[name] = _build(sub, schemas, depth + 1, variant)
    return out


def _array(schema: dict[str, Any], schemas: dict[str, Any], depth: int, variant: int) -> Any:
    n = int(schema.get("minItems") or (1 if depth < MAX_DEPTH else 0))
    high = schema.get("maxItems")
    if isinstance(high, int):
        n = max(0, min(n, high))
    if n == 0:
        return []
    items = schema.get("items", {})
    if schema.get("uniqueItems") and n > 1:
        return _distinct(items, schemas, depth + 1, n)
    return [_build(items, schemas, depth + 1, variant)] * n


def _string(schema: dict[str, Any], variant: int) -> str:
    fmt = schema.get("format")
    if fmt == "binary":
        return ""
    text = _FORMATS.get(str(fmt), "string")
    if variant and fmt in (None, "email", "uuid", "hostname"):
        tag = str(variant)
        text = {
            "email": f"user{tag}@example.com",
            "uuid": text[: -len(tag)] + tag,
            "hostname": f"h{tag}.example.com",
        }.get(str(fmt), text + tag)
    min_len = int(schema.get("minLength") or 0)
    max_len = schema.get("maxLength")
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and (variant or not re.search(pattern, text)):
        found = string_matching(
            pattern, min_len, max_len if isinstance(max_len, int) else None, variant
        )
        if found is not None:
            return found
    if len(text) < min_len:
        text = text + "x" * (min_len - len(text))
    if isinstance(max_len, int) and len(text) > max_len:
        text = text[-max_len:] if variant else text[:max_len]
    return text


def _number(schema: dict[str, Any], kind: str, variant: int) -> int | float:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    value: float = 0
    if isinstance(lo, (int, float)):
        value = lo + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    value += variant
    hi = schema.get("maximum")
    if isinstance(hi, (int, float)) and value > hi:
        value = hi
    mult = schema.get("multipleOf")
    if isinstance(mult, (int, float)) and mult > 0:
        value = (value // mult) * mult
    return int(value) if kind == "integer" else float(value)


def _build(schema: Any, schemas: dict[str, Any], depth: int, variant: int = 0) -> Any:
    schema = _resolve(schema, schemas)
    if schema is True or not isinstance(schema, dict):
        return None if schema is False else {}
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("allOf"), list) and depth < 4 * MAX_DEPTH:
        return _build(_merge(_parts(schema, schemas)), schemas, depth, variant)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        rest = {k: v for k, v in schema.items() if k != "enum"}
        ok = [e for e in enum if _type_ok(rest, e)] or enum
        return ok[variant % len(ok)]
    if "default" in schema and not variant and _type_ok(schema, schema["default"]):
        return schema["default"]
    for key in ("oneOf", "anyOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _first_branch(schema, key, schemas, depth, variant)
    kinds = _types(schema)
    kind = None
    if kinds is not None:
        real = [k for k in kinds if k != "null"]
        kind = real[0] if real else "null" if kinds else None
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else None
    if kind == "object":
        return _object(schema, schemas, depth, variant)
    if kind == "array":
        return _array(schema, schemas, depth, variant)
    if kind == "string":
        return _string(schema, variant)
    if kind in ("integer", "number"):
        return _number(schema, kind, variant)
    if kind == "boolean":
        return variant % 2 == 1
    if kind == "null":
        return None
    return {}


def _without(value: Any, path: list[Any]) -> Any:
    """A copy of ``value`` with the key or item at ``path`` taken out (copies along the
    path only), or :data:`_MISSING` when there is nothing there."""
    if not path:
        return _MISSING
    head, rest = path[0], path[1:]
    if isinstance(value, dict) and head in value:
        if not rest:
            return {k: v for k, v in value.items() if k != head}
        inner = _without(value[head], rest)
        return _MISSING if inner is _MISSING else {**value, head: inner}
    if isinstance(value, list) and isinstance(head, int) and 0 <= head < len(value):
        if not rest:
            return value[:head] + value[head + 1 :]
        inner = _without(value[head], rest)
        return _MISSING if inner is _MISSING else [*value[:head], inner, *value[head + 1 :]]
    return _MISSING


_MISSING = object()
MAX_REPAIRS = 32


def _prune(schema: Any, value: Any, schemas: dict[str, Any]) -> Any:
    """Take out of ``value`` what its schema refuses and need not be there: an optional
    property (or array item) the generator could not meet — a default or enum contradicting
    its type, a ``not``, an unsatisfiable item — while the error count goes down."""
    try:
        root = {**schema, "schemas": schemas} if isinstance(schema, dict) else schema
        validator = Draft202012Validator(root)

        def count(v: Any) -> int:
            return sum(1 for _ in islice(validator.iter_errors(v), 64))

        errors = count(value)
        for _ in range(MAX_REPAIRS):
            if errors == 0:
                break
            better = None
            for err in islice(validator.iter_errors(value), 8):
                path = list(err.absolute_path)
                for cut in range(len(path), 0, -1):
                    trial = _without(value, path[:cut])
                    if trial is not _MISSING and (n := count(trial)) < errors:
                        better = (trial, n)
                        break
                if better is not None:
                    break
            if better is None:
                break
            value, errors = better
    except Exception:  # a schema jsonschema cannot evaluate: keep the value as built
        return value
    return value


def instance_for(schema: Any, schemas: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value valid against ``schema`` (best effort for exotic keywords)."""
    schemas = schemas or {}
    value = _build(schema, schemas, depth)
    if depth == 0:
        value = _prune(_resolve(schema, schemas), value, schemas)
    return value
