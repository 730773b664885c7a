"""Pages of a paginated answer, for the local spec server (:mod:`._spec_server`).

A paginated operation's answer holds two items per page (marked with their page and index
where the item schema allows those keys, so tests can tell pages apart) and the table's
next-page token, ``has_more`` flag or ``Link`` header, until the server's ``pages`` run out.
Where marked items would break the response schema (an item schema behind ``oneOf``, say),
the items the instance generator made for the whole body are used instead.
"""

from __future__ import annotations

import copy
from typing import Any

from jsonschema import Draft202012Validator
from starlette.requests import Request

from ._instances import _resolve, instance_for

__all__ = ["page_answer"]


def _set(doc: Any, pointer: str, value: Any) -> Any:
    if pointer == "":
        return value
    parts = pointer.lstrip("/").split("/")
    cur = doc if isinstance(doc, dict) else {}
    root = cur
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = cur[part] = {}
        cur = nxt
    cur[parts[-1]] = value
    return root


def _schema_at(schema: Any, pointer: str, schemas: dict[str, Any]) -> Any:
    """The sub-schema that describes ``pointer`` of an instance (through properties,
    ``$ref`` and ``allOf``); ``{}`` where it cannot be told."""
    schema = _resolve(schema, schemas)
    for part in [p for p in pointer.split("/")[1:]]:
        found: Any = {}
        for s in [schema, *(schema.get("allOf") or [] if isinstance(schema, dict) else [])]:
            s = _resolve(s, schemas)
            props = s.get("properties") if isinstance(s, dict) else None
            if isinstance(props, dict) and part in props:
                found = _resolve(props[part], schemas)
                break
        schema = found
    return schema


def _items_schema(schema: Any, pointer: str, schemas: dict[str, Any]) -> Any:
    array = _schema_at(schema, pointer, schemas)
    return _resolve(array.get("items", {}), schemas) if isinstance(array, dict) else {}


def _item(schema: Any, page: int, i: int, schemas: dict[str, Any]) -> Any:
    """One item of a page: valid against the item schema, marked with its page and index
    where the schema allows those keys (so tests can tell the pages apart)."""
    value = instance_for(schema, schemas)
    if not isinstance(value, dict):
        return value
    marked = {**value, "page": page, "i": i}
    validator = Draft202012Validator(
        {**(schema if isinstance(schema, dict) else {}), "schemas": schemas}
    )
    try:
        return marked if validator.is_valid(marked) else value
    except Exception:  # a schema jsonschema cannot evaluate: keep the plain instance
        return value


def _get(doc: Any, pointer: str) -> Any:
    cur = doc
    for part in [p for p in pointer.split("/")[1:]]:
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def _valid(schema: Any, value: Any, schemas: dict[str, Any]) -> bool:
    try:
        root = {**schema, "schemas": schemas} if isinstance(schema, dict) else {"schemas": schemas}
        return bool(Draft202012Validator(root).is_valid(value))
    except Exception:  # a schema jsonschema cannot evaluate: take the value as it is
        return True


def page_answer(
    schemas: dict[str, Any],
    pages: int,
    pag: dict[str, Any],
    pairs: list[tuple[str, str]],
    value: Any,
    request: Request,
    schema: Any = None,
) -> tuple[Any, dict[str, str]]:
    """``value`` (an instance of ``schema``) as page ``n`` of ``pages`` (``n`` from the
    request's page parameter or cursor), and the headers to send with it."""
    style = pag["style"]
    param = pag.get("param", "page")
    given = dict(pairs).get(param if style != "link" else "page", "")
    n = int(given[1:] if given[:1] == "c" else given) if given.lstrip("c").isdigit() else 1
    ptr = pag.get("items") or ""
    item_schema = _items_schema(schema, ptr, schemas)
    marked = [_item(item_schema, n, i, schemas) for i in range(2)]
    array = _schema_at(schema, ptr, schemas)
    unique = isinstance(array, dict) and bool(array.get("uniqueItems"))
    if unique and marked[0] == marked[1]:
        marked = marked[:1]
    own = _get(value, ptr)
    candidates = [marked]
    if isinstance(own, list) and own:
        candidates.append(own if unique else [own[0], own[0]])
    headers: dict[str, str] = {}
    if style == "link" and n < pages:
        nxt = request.url.include_query_params(page=str(n + 1))
        headers["Link"] = f'<{nxt}>; rel="next", <{request.url}>; rel="self"'
    first = None
    for items in candidates:
        body = _assemble(copy.deepcopy(value), items if n <= pages else [], n, pages, pag)
        if first is None:
            first = body
        if _valid(schema, body, schemas):
            return body, headers
    return first, headers


def _assemble(value: Any, items: list[Any], n: int, pages: int, pag: dict[str, Any]) -> Any:
    ptr = pag.get("items")
    if ptr:
        value = _set(value, ptr, items)
    elif isinstance(value, list) or not value:
        # the body itself is the page (an array, or a schema that says nothing of its shape);
        # an object with its own properties pages only through the Link header
        value = items
    if pag["style"] in ("cursor", "token"):
        more = n < pages
        if pag.get("next") and not pag["next"].startswith(ptr or "\x00"):
            value = _set(value, pag["next"], f"c{n + 1}" if more else "")
        if pag.get("has_more"):
            value = _set(value, pag["has_more"], more)
    return value
