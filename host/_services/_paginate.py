"""Opt-in pagination (``_http.paginate``): follow a paginated list, sending each page on
``response`` (``"pages"``) or each item on ``item`` (``"items"``), then end the tick.

Styles (the table's ``pagination``): ``link`` follows RFC 8288 ``Link: <…>; rel="next"``
(only to a host granted to the pack); ``cursor`` sets ``param`` from the JSON pointer ``next``
while ``has_more`` is true; ``token`` sets ``param`` from ``next`` until it is empty; ``page``
counts ``param`` up from 1 (or the value given) until a page has no items. At most
``_http.max_pages`` pages (default 100) are fetched.
"""

from __future__ import annotations

import re
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import HttpApiError
from ._client import read_result, send_operation
from ._outputs import emit_result
from ._request import PreparedRequest, _enc
from ._table import Operation

__all__ = ["json_pointer", "next_link", "paginate"]

DEFAULT_MAX_PAGES = 100
_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")


def json_pointer(doc: Any, pointer: str) -> Any:
    """The value at an RFC 6901 pointer, or None where the path does not exist."""
    if pointer == "":
        return doc
    cur = doc
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list):
            if part == "-1" and cur:
                cur = cur[-1]
            elif part.isdigit() and int(part) < len(cur):
                cur = cur[int(part)]
            else:
                return None
        else:
            return None
    return cur


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` target of a Link header."""
    if not header:
        return None
    for m in _LINK.finditer(header[:16384]):
        params = m.group(2)
        if re.search(r';\s*rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?', params):
            return m.group(1)
    return None


def _with_param(req: PreparedRequest, name: str, value: Any) -> None:
    enc = _enc(name)
    req.query = [(k, v) for k, v in req.query if k != enc]
    req.query.append((enc, _enc(str(value))))


async def paginate(
    node: Any,
    ctx: ActorContext,
    op: Operation,
    req: PreparedRequest,
    http: dict[str, Any],
    mode: Any,
    error_wired: bool,
) -> None:
    if mode not in ("pages", "items"):
        raise HttpApiError(
            f"{op.template_id}: '_http.paginate' must be 'pages' or 'items', got {mode!r}",
            operation=op.template_id,
            key="_http",
        )
    spec = op.pagination
    if spec is None:
        raise HttpApiError(
            f"{op.template_id}: '_http.paginate' is set but this operation is not paginated",
            operation=op.template_id,
            key="_http",
        )
    if mode == "items" and "item" not in node.outports:
        raise HttpApiError(
            f"{op.template_id}: '_http.paginate': 'items' needs an 'item' out-port",
            operation=op.template_id,
            key="_http",
        )
    max_pages = http.get("max_pages", DEFAULT_MAX_PAGES)
    if isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1:
        raise HttpApiError(
            f"{op.template_id}: '_http.max_pages' must be an integer >= 1",
            operation=op.template_id,
            key="_http",
        )
    style = spec["style"]
    service = node.service
    url: str | None = None
    page_no = 1
    if style == "page":
        given = [v for k, v in req.query if k == _enc(spec["param"])]
        page_no = int(given[0]) if given and given[0].isdigit() else 1
        _with_param(req, spec["param"], page_no)
    for _ in range(max_pages):
        resp = await send_operation(
            service.table,
            op,
            req,
            http,
            limiter=service.limiter,
            connections=service.connections,
            url=url,
            allowed_hosts=service.allowed_hosts,
        )
        link = resp.headers.get("link")
        result = await read_result(resp, op, ctx.node)
        if result.stream is not None:
            result.stream.close()
            raise HttpApiError(
                f"{op.template_id}: a paginated response must not be a stream",
                operation=op.template_id,
            )
        ok = 200 <= result.status < 300
        if not ok:
            await emit_result(ctx, op, result, error_wired, final=True)
            return
        body = result.body
        items = (
            json_pointer(body, spec.get("items") or "") if spec.get("items") is not None else body
        )
        if mode == "pages":
            await ctx.asend({"response": Message.object(result.as_object())})
        elif isinstance(items, list):
            for item in items:
                await ctx.asend({"item": Message.any(item)})
        if style == "link":
            url = next_link(link)
            if url is None:
                break
            url = str(resp.request.url.join(url))
        elif style in ("cursor", "token"):
            nxt = json_pointer(body, spec["next"])
            more = json_pointer(body, spec["has_more"]) if spec.get("has_more") else bool(nxt)
            if not more or nxt in (None, ""):
                break
            _with_param(req, spec["param"], nxt)
        else:
            if not isinstance(items, list) or not items:
                break
            page_no += 1
            _with_param(req, spec["param"], page_no)
    ctx.done()
