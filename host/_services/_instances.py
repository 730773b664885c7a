"""A small deterministic generator of JSON values valid against a JSON Schema.

Used by the local spec server to answer an operation with a body its response schema accepts.
It covers what API descriptions use: ``type`` (or type lists), ``enum``/``const``,
``default``, ``properties``/``required``, ``items``/``minItems``, ``minLength``/``maxLength``,
``minimum``/``maximum``, common ``format`` values, ``allOf`` (merged), ``oneOf``/``anyOf``
(the first branch) and ``$ref`` into the table's shared schemas. Recursion stops at a fixed
depth with the smallest value of the type. The same schema always gives the same value.
"""

from __future__ import annotations

from typing import Any

__all__ = ["instance_for"]

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
        props: dict[str, Any] = {}
        required: list[str] = []
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
            return instance_for(schema[key][0], schemas, depth + 1)
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
