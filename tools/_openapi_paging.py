"""Pagination inference for one normalized operation (abi/HTTP_API.md, "Pagination").

Rules, from the parameters and the 2xx response only — no service is named here:

- ``link``: a ``page`` query parameter with a ``Link`` response header, or ``page`` and
  ``per_page`` together (RFC 8288 ``rel="next"``, GitHub style);
- ``cursor``: a ``starting_after`` parameter and a response object with a boolean
  ``has_more`` and an array of objects with an ``id`` (Stripe style);
- ``token``: a cursor-like parameter (``cursor``, ``page_token``, ``continue``, ...) and a
  response holding a next-token property at most two levels down (Slack's
  ``response_metadata.next_cursor``, Kubernetes' ``metadata.continue``);
- ``page``: a ``page`` query parameter alone, with an array response (or array property).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["infer_pagination"]

_TOKEN_PARAMS = ("cursor", "page_token", "pagetoken", "next_token", "nexttoken", "continue")
_TOKEN_NEXT = (
    "next_cursor",
    "nextcursor",
    "next_page_token",
    "nextpagetoken",
    "next_token",
    "nexttoken",
    "continue",
)

Resolve = Callable[[Any], Any]


def _ok_schema(op: dict[str, Any], resolve: Resolve) -> Any:
    for code in sorted(op["responses"]):
        if code.startswith("2") or code == "2XX":
            content = op["responses"][code].get("content") or {}
            for mt, media in content.items():
                if "json" in mt:
                    return resolve(media.get("schema"))
            return None
    return None


def _props(schema: Any, resolve: Resolve, depth: int = 0) -> dict[str, Any]:
    schema = resolve(schema)
    if not isinstance(schema, dict) or depth > 8:
        return {}
    props = dict(schema.get("properties") or {})
    for sub in schema.get("allOf") or []:
        props.update(_props(sub, resolve, depth + 1))
    return props


def _is_array(schema: Any, resolve: Resolve) -> bool:
    schema = resolve(schema)
    if not isinstance(schema, dict):
        return False
    t = schema.get("type")
    return t == "array" or (isinstance(t, list) and "array" in t)


def _first_array(props: dict[str, Any], resolve: Resolve) -> str | None:
    for prefer in ("data", "items"):
        if prefer in props and _is_array(props[prefer], resolve):
            return prefer
    return next((k for k, v in props.items() if _is_array(v, resolve)), None)


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def infer_pagination(op: dict[str, Any], resolve: Resolve) -> dict[str, Any] | None:
    query = {p["name"].lower(): p["name"] for p in op["parameters"] if p["in"] == "query"}
    fields = {f["property"].lower(): f["property"] for f in (op["body"] or {}).get("fields", [])}
    headers = {
        h.lower()
        for code, r in op["responses"].items()
        if code.startswith("2")
        for h in r.get("headers") or {}
    }
    if "page" in query and ("link" in headers or "per_page" in query):
        return {"style": "link"}
    schema = _ok_schema(op, resolve)
    props = _props(schema, resolve)
    if "starting_after" in query and "has_more" in props:
        items = _first_array(props, resolve)
        item_schema = resolve(props[items]).get("items") if items else None
        if items and "id" in _props(item_schema, resolve):
            return {
                "style": "cursor",
                "param": query["starting_after"],
                "next": _pointer(items, "-1", "id"),
                "has_more": "/has_more",
                "items": _pointer(items),
            }
    for name in _TOKEN_PARAMS:
        param = query.get(name) or fields.get(name)
        if param is None:
            continue
        nxt = _find_next(props, resolve)
        if nxt is not None:
            items = _first_array(props, resolve)
            return {
                "style": "token",
                "param": param,
                "next": nxt,
                "items": _pointer(items) if items else "",
            }
    if "page" in query and op["method"] == "GET":
        if _is_array(schema, resolve):
            return {"style": "page", "param": query["page"], "items": ""}
        items = _first_array(props, resolve)
        if items:
            return {"style": "page", "param": query["page"], "items": _pointer(items)}
    return None


def _find_next(props: dict[str, Any], resolve: Resolve) -> str | None:
    for key in props:
        if key.lower() in _TOKEN_NEXT:
            return _pointer(key)
    for key, sub in props.items():
        for inner in _props(sub, resolve):
            if inner.lower() in _TOKEN_NEXT:
                return _pointer(key, inner)
    return None
