"""The HTTP request template (httpx, async).

Requests run on the scheduler's event loop with :class:`httpx.AsyncClient`, so a node waiting
on a slow server holds no thread. httpx errors are translated here, at this one boundary,
into failed ticks whose message names the method, the URL and what went wrong (timeout,
connection refused, an error status).
"""

from __future__ import annotations

from typing import Any

import httpx

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from .._jsonread import loads
from ._base import LibraryActor, config_bool, config_int, config_number, config_str
from ._sdk_config import with_sdk_config
from ._sdk_support import payload

__all__ = ["HTTP_TEMPLATES"]

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise ActorError(f"{where} must be an object of string values, got {value!r}")
    return {k: str(v) for k, v in value.items()}


class HttpRequest(LibraryActor):
    """Sends one HTTP request per packet and emits the response.

    Ports: in ``in`` — a String (the URL) or an Object ``{url, method, headers, query, json,
    body}`` (each optional, overriding config; ``body`` a String; ``json`` any JSON value,
    sent as ``application/json``), or Flow/Null (use config only) → out ``response`` (Object
    ``{status, reason, url, headers, body, json}``: ``body`` the text, ``json`` the parsed
    body when the response is JSON, else null), ``body`` (Bytes: the raw response body).

    Config: ``url`` (string; the base that a relative in-packet URL joins), ``method``
    (default ``GET``), ``headers``, ``query`` (objects of strings), ``timeout_ms`` (number
    > 0, default 10000: connect, read, write and pool each), ``fail_on_status`` (bool,
    default true: a 4xx/5xx status fails the tick; false: it is emitted like any response),
    ``max_bytes`` (int, default 10485760: larger responses fail the tick),
    ``follow_redirects`` (bool, default true).

    Failures name the request: ``GET http://host/x timed out after 200 ms (config
    'timeout_ms')``, ``... connection failed: ...``, ``... answered 404 Not Found``.

    As offbit_reflow (Zeal naming): a packet on ``data_in`` (any: its payload is sent as the
    JSON body) or ``headers_in`` (Object of header strings) sends config ``method`` to config
    ``url`` → out ``response_out`` (Object ``{status, headers, body, url, method}``, ``body``
    the parsed JSON or the text; any status), ``error_out`` (Error, when the request fails;
    the tick fails too). Config for this form: ``timeout`` (ms, default 30000), ``headers``,
    ``body`` (JSON, sent instead of ``data_in``'s payload), ``max_bytes`` as above.
    """

    component = "tpl_http_request"
    inports = ["in", "data_in", "headers_in"]
    outports = ["response", "body", "response_out", "error_out"]
    outport_types = {
        "response": "Object",
        "body": "Bytes",
        "response_out": "Object",
        "error_out": "Error",
    }

    #: Injectable transport (tests, or a proxy); ``None``: httpx's default network transport.
    transport: httpx.AsyncBaseTransport | None = None

    def _request(self, ctx: ActorContext) -> dict[str, Any]:
        msg = ctx.inputs["in"]
        config = ctx.config
        req: dict[str, Any] = {
            "url": config_str(ctx, "url", ""),
            "method": config_str(ctx, "method", "GET").upper(),
            "headers": _str_map(config.get("headers"), "config 'headers'"),
            "query": _str_map(config.get("query"), "config 'query'"),
            "content": None,
            "json": None,
        }
        kind = msg["type"]
        if kind == "String":
            req["url"] = self._join(req["url"], msg["data"])
        elif kind in ("Object", "Event"):
            data = msg["data"]
            unknown = set(data) - {"url", "method", "headers", "query", "json", "body"}
            if unknown:
                raise ActorError(
                    f"in-port 'in': unknown request field(s) {', '.join(sorted(unknown))}"
                )
            if "url" in data:
                if not isinstance(data["url"], str):
                    raise ActorError("in-port 'in': field 'url' must be a string")
                req["url"] = self._join(req["url"], data["url"])
            if "method" in data:
                if not isinstance(data["method"], str):
                    raise ActorError("in-port 'in': field 'method' must be a string")
                req["method"] = data["method"].upper()
            req["headers"].update(_str_map(data.get("headers"), "in-port 'in': field 'headers'"))
            req["query"].update(_str_map(data.get("query"), "in-port 'in': field 'query'"))
            if "body" in data:
                if not isinstance(data["body"], str):
                    raise ActorError("in-port 'in': field 'body' must be a string")
                req["content"] = data["body"].encode()
            if "json" in data:
                req["json"] = data["json"]
        elif kind not in ("Flow", "Null"):
            raise ActorError(f"in-port 'in': expected a URL String or a request Object, got {kind}")
        if req["method"] not in _METHODS:
            raise ActorError(
                f"request method {req['method']!r} is not one of "
                f"{', '.join(_METHODS)} (config 'method' or field 'method')"
            )
        if not req["url"]:
            raise ActorError("no URL: set config 'url' or send one on in-port 'in'")
        try:
            url = httpx.URL(req["url"])
        except httpx.InvalidURL as exc:
            raise ActorError(f"invalid URL {req['url']!r}: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ActorError(f"URL {req['url']!r} must be absolute http:// or https://")
        return req

    @staticmethod
    def _join(base: str, url: str) -> str:
        if not base or "://" in url:
            return url
        try:
            return str(httpx.URL(base).join(url))
        except httpx.InvalidURL as exc:
            raise ActorError(f"config 'url' {base!r} is not a valid URL: {exc}") from exc

    async def _zeal(self, ctx: ActorContext) -> None:
        url = config_str(ctx, "url")
        method = config_str(ctx, "method", "GET").upper()
        if method not in _METHODS:
            raise ActorError(f"config 'method': {method!r} is not one of {', '.join(_METHODS)}")
        timeout_ms = config_int(ctx, "timeout", 30_000, minimum=1)
        max_bytes = config_int(ctx, "max_bytes", 10 << 20, minimum=0)
        headers = _str_map(ctx.config.get("headers"), "config 'headers'")
        extra = ctx.inputs.get("headers_in")
        if extra is not None and extra["type"] == "Object":
            headers = {**_str_map(extra["data"], "in-port 'headers_in'"), **headers}
        body: Any = None
        has_body = False
        if "body" in ctx.config:
            body, has_body = ctx.config["body"], True
        elif "data_in" in ctx.inputs:
            body, has_body = payload(ctx.inputs["data_in"]), True
        try:
            parsed_url = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ActorError(f"config 'url' {url!r} is not a valid URL: {exc}") from exc
        if parsed_url.scheme not in ("http", "https") or not parsed_url.host:
            raise ActorError(f"config 'url' {url!r} must be absolute http:// or https://")
        what = f"{method} {url}"
        try:
            async with httpx.AsyncClient(
                timeout=timeout_ms / 1000, transport=self.transport
            ) as client:
                kwargs: dict[str, Any] = {"headers": headers}
                if has_body:
                    kwargs["json"] = body
                response = await client.send(
                    client.build_request(method, url, **kwargs), stream=True
                )
                try:
                    raw = bytearray()
                    async for chunk in response.aiter_bytes():
                        raw += chunk
                        if len(raw) > max_bytes:
                            raise ActorError(
                                f"{what}: response is larger than config "
                                f"'max_bytes' ({max_bytes} bytes)"
                            )
                finally:
                    await response.aclose()
        except (httpx.HTTPError, ActorError) as exc:
            text = (
                f"{what} timed out after {timeout_ms} ms (config 'timeout')"
                if isinstance(exc, httpx.TimeoutException)
                else str(exc)
                if isinstance(exc, ActorError)
                else f"HTTP request failed: {exc or type(exc).__name__} (url: {url}, method: "
                f"{method})"
            )
            ctx.send({"error_out": Message.error(text)})
            raise ActorError(text) from None
        text = bytes(raw).decode(response.encoding or "utf-8", "replace")
        try:
            data: Any = loads(text)
        except ValueError:
            data = text
        ctx.done(
            {
                "response_out": Message.object(
                    {
                        "status": response.status_code,
                        "headers": dict(response.headers.items()),
                        "body": data,
                        "url": url,
                        "method": method,
                    }
                )
            }
        )

    async def run(self, ctx: ActorContext) -> None:
        if "in" not in ctx.inputs:
            await self._zeal(ctx)
            return
        req = self._request(ctx)
        timeout_ms = config_number(ctx, "timeout_ms", 10_000, minimum=0, exclusive_minimum=True)
        fail_on_status = config_bool(ctx, "fail_on_status", True)
        max_bytes = config_int(ctx, "max_bytes", 10 << 20, minimum=0)
        follow = config_bool(ctx, "follow_redirects", True)
        what = f"{req['method']} {req['url']}"
        try:
            async with httpx.AsyncClient(
                timeout=timeout_ms / 1000, follow_redirects=follow, transport=self.transport
            ) as client:
                request = client.build_request(
                    req["method"],
                    req["url"],
                    headers=req["headers"],
                    params=req["query"] or None,
                    content=req["content"],
                    json=req["json"],
                )
                response = await client.send(request, stream=True)
                try:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise ActorError(
                                f"{what}: response is larger than config "
                                f"'max_bytes' ({max_bytes} bytes)"
                            )
                finally:
                    await response.aclose()
        except httpx.TimeoutException as exc:
            raise ActorError(
                f"{what} timed out after {timeout_ms:g} ms (config 'timeout_ms')"
                f" [{type(exc).__name__}]"
            ) from exc
        except httpx.TooManyRedirects as exc:
            raise ActorError(f"{what}: too many redirects") from exc
        except httpx.TransportError as exc:
            raise ActorError(f"{what}: connection failed: {exc or type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise ActorError(f"{what}: {exc}") from exc
        status = response.status_code
        if fail_on_status and status >= 400:
            snippet = bytes(body[:200]).decode("utf-8", "replace")
            raise ActorError(
                f"{what} answered {status} {response.reason_phrase}"
                + (f": {snippet}" if snippet else "")
                + " (set config 'fail_on_status' false to receive it)"
            )
        raw = bytes(body)
        text = raw.decode(response.encoding or "utf-8", "replace")
        parsed = None
        if "json" in response.headers.get("content-type", ""):
            try:
                parsed = loads(text)  # too deep: kept as text, like bad JSON
            except ValueError:
                parsed = None
        ctx.done(
            {
                "response": Message.object(
                    {
                        "status": status,
                        "reason": response.reason_phrase,
                        "url": str(response.url),
                        "headers": dict(response.headers.items()),
                        "body": text,
                        "json": parsed,
                    }
                ),
                "body": Message.bytes(raw),
            }
        )


HTTP_TEMPLATES: dict[str, type[LibraryActor]] = with_sdk_config(
    {HttpRequest.component: HttpRequest}
)
