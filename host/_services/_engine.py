"""The ``http-api`` engine: an operation table in, one template actor per operation out.

:class:`HttpApiEngine` is registered like the built-in ``wasm``/``native`` engines (through
``reflow_pack_engine``). ``load_artifact`` reads the table (:mod:`._table`, checked and lazy)
and returns a :class:`OperationTemplate` per manifest template; the network calls
``open_node`` for each node, which gets its own :class:`OperationNode` remembering the
parameter packets it was sent. A tick (``async``, on the scheduler's loop) merges
config ← remembered ← this tick's packets, prepares and validates the request
(:mod:`._request`), sends it (:mod:`._client`) and emits ``response`` (or ``error``; or one
``response`` per page, or each ``item``, when ``_http.paginate`` asks).

The user grants extra base URLs and a per-service rate limit at ``load_pack``:
``grants=HttpApiGrants(base_urls=("https://ghe.example.com/api/v3",), rate_limit=10)``, and
a cap on its requests in flight at once (``max_connections``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .._core._actor import Actor, ActorContext
from .._errors import HttpApiError, PackFormatError
from ._client import RateLimiter, read_result, send_operation
from ._outputs import emit_result
from ._paginate import paginate
from ._pool import ConnectionLimit
from ._request import prepare
from ._table import ApiTable, Operation, load_table

if TYPE_CHECKING:
    from ..abi._manifest import Artifact, PackManifest, TemplateSpec

__all__ = ["HttpApiEngine", "HttpApiGrants", "OperationNode", "OperationTemplate", "Service"]

_OUTPORTS = frozenset({"response", "error", "item"})


@dataclass(frozen=True)
class HttpApiGrants:
    """What a user grants an API-service pack at ``load_pack``: ``base_urls`` it may use
    instead of its spec's servers (``_http.base_url``), a per-service ``rate_limit``
    (requests per second, bursts of ``rate_burst``; ``None``: unlimited), and
    ``max_connections``: at most that many of its requests in flight at once on a network's
    loop, the others waiting in line (their ``_http.timeout_s`` starts when sent; ``None``:
    no cap)."""

    base_urls: tuple[str, ...] = ()
    rate_limit: float | None = None
    rate_burst: int = 1
    http_hosts: tuple[str, ...] = ()
    max_connections: int | None = None


def _grant_fields(grants: Any) -> tuple[tuple[str, ...], float | None, int]:
    if grants is None:
        return (), None, 1
    get = grants.get if isinstance(grants, Mapping) else lambda k, d=None: getattr(grants, k, d)
    base_urls = get("base_urls", ()) or ()
    if isinstance(base_urls, str):
        base_urls = (base_urls,)
    rate = get("rate_limit", None)
    burst = get("rate_burst", 1) or 1
    return tuple(str(u) for u in base_urls), rate, int(burst)


def _max_connections(grants: Any, pack: str) -> int | None:
    """The granted ``max_connections``: None, or an int from 1 to 1,000,000."""
    if grants is None:
        return None
    if isinstance(grants, Mapping):
        value = grants.get("max_connections")
    else:
        value = getattr(grants, "max_connections", None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise PackFormatError(
            f"pack {pack!r}: grants max_connections must be an int from 1 to 1000000 or "
            f"None, got {value!r:.60}",
            pack=pack,
            field="grants.max_connections",
        )
    return value


class Service:
    """One loaded table with what the user granted it; shared by its templates."""

    def __init__(
        self,
        table: ApiTable,
        base_urls: tuple[str, ...],
        rate: float | None,
        burst: int,
        max_connections: int | None = None,
    ) -> None:
        self.table = table
        self.base_urls = base_urls
        self.limiter = RateLimiter(rate, burst) if rate else None
        self.connections = ConnectionLimit(max_connections) if max_connections else None
        hosts = []
        for u in base_urls:
            try:
                url = httpx.URL(u)
            except (httpx.InvalidURL, ValueError):
                continue
            if url.host:
                hosts.append(f"{url.host}:{url.port}" if url.port else url.host)
        self.allowed_hosts = (*table.hosts, *hosts)


def _describe_schema(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    out: dict[str, Any] = {}
    for k in ("type", "enum", "default", "format"):
        if k in schema:
            out[k] = schema[k]
    if "$ref" in schema:
        out["ref"] = schema["$ref"]
    return out


class OperationTemplate(Actor):
    """The template actor of one operation (shared; nodes get an :class:`OperationNode`)."""

    execution = "async"

    def __init__(self, service: Service, spec: TemplateSpec, suffix: str) -> None:
        self.service = service
        self.spec = spec
        self.suffix = suffix
        self.component = spec.id
        self.inports = list(spec.inports)
        self.outports = list(spec.outports)
        self._checked = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.component}>"

    def operation(self) -> Operation:
        op = self.service.table.operation(self.suffix)
        if not self._checked:
            allowed = {"trigger", "request", *op.keys, *op.field_keys()}
            if op.body is not None:
                allowed.add("body")
            bad_in = [p for p in self.inports if p not in allowed]
            bad_out = [p for p in self.outports if p not in _OUTPORTS]
            if bad_in or bad_out or "response" not in self.outports:
                raise PackFormatError(
                    f"pack {self.service.table.pack!r}: template {self.component!r} declares "
                    f"ports the operation does not have: in={bad_in} out={bad_out} (in-ports "
                    f"may be {sorted(allowed)}; out-ports response, error, item)",
                    pack=self.service.table.pack,
                    field=f"templates.{self.component}",
                )
            self._checked = True
        return op

    def open_node(self, node_id: str, config: dict[str, Any]) -> Actor:
        self.operation()
        node = OperationNode(self.service, self.spec, self.suffix)
        node.accept_undeclared_inports = self.accept_undeclared_inports  # compat ids only
        return node

    def describe(self) -> dict[str, Any]:
        """Ports, parameters and documentation, for ``describe_template``."""
        op = self.operation()
        config: dict[str, Any] = {}
        for p in op.parameters:
            entry = {
                **_describe_schema(p.schema),
                "in": p.location,
                "name": p.name,
                "required": p.required,
                "description": p.description,
            }
            if p.deprecated:
                entry["deprecated"] = True
            config[p.key] = entry
        if op.body is not None:
            props = {}
            schema = op.body.content[op.body.media_type].get("schema")
            if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
                props = schema["properties"]
            for key, prop in op.field_keys().items():
                required = any(k == key and r for k, _, r in op.body.fields)
                config[key] = {
                    **_describe_schema(props.get(prop)),
                    "in": "body",
                    "name": prop,
                    "required": required,
                    "description": str((props.get(prop) or {}).get("description", ""))[:4096]
                    if isinstance(props.get(prop), dict)
                    else "",
                }
            config["body"] = {
                "type": "object",
                "in": "body",
                "media_type": op.body.media_type,
                "required": op.body.required,
                "description": op.body.description,
            }
        doc = "\n\n".join(x for x in (op.summary, op.description) if x)
        return {
            "component": self.component,
            "inports": list(self.inports),
            "outports": list(self.outports),
            "inport_types": {"request": "Object"},
            "outport_types": {},
            "await_all_inports": False,
            "config": config,
            "doc": doc,
            "method": op.method,
            "path": op.path,
            "operation_id": op.operation_id,
            "deprecated": op.deprecated,
        }

    async def run(self, ctx: ActorContext) -> None:  # the shared template is never ticked
        raise HttpApiError(f"{self.component}: a node must be opened first")


def _payload(msg: Any) -> Any:
    if not isinstance(msg, dict):
        return msg
    kind = msg.get("type")
    if kind in ("Flow", "Null"):
        return None
    return msg.get("data")


class OperationNode(OperationTemplate):
    """One node of an operation: remembers parameter packets from tick to tick."""

    def __init__(self, service: Service, spec: TemplateSpec, suffix: str) -> None:
        super().__init__(service, spec, suffix)
        self._checked = True
        self.remembered: dict[str, Any] = {}

    def open_node(self, node_id: str, config: dict[str, Any]) -> Actor:
        return self

    async def run(self, ctx: ActorContext) -> None:
        op = self.operation()
        table = self.service.table
        request_layer: dict[str, Any] = {}
        for port, msg in ctx.inputs.items():
            if port == "trigger":
                continue
            value = _payload(msg)
            if port == "request":
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise HttpApiError(
                        f"{op.template_id}: in-port 'request' takes an Object of keys, got "
                        f"{msg.get('type') if isinstance(msg, dict) else type(msg).__name__}",
                        operation=op.template_id,
                        key="request",
                    )
                request_layer.update(value)
            else:
                self.remembered[port] = value
        layers = [ctx.config or {}, self.remembered, request_layer]
        req, http = prepare(table, op, layers, granted=self.service.base_urls)
        routes = getattr(getattr(ctx, "_node", None), "routes", {}) or {}
        error_wired = bool(routes.get("error"))
        mode = http.get("paginate")
        if mode is not None:
            await paginate(self, ctx, op, req, http, mode, error_wired)
            return
        resp = await send_operation(
            table, op, req, http, limiter=self.service.limiter, connections=self.service.connections
        )
        result = await read_result(resp, op, ctx.node)
        await emit_result(ctx, op, result, error_wired, final=True)


class HttpApiEngine:
    """The engine for artifacts of ``kind = "http-api"``: operation tables."""

    kind = "http-api"

    def load_artifact(
        self,
        path: Path,
        *,
        artifact: Artifact,
        templates: Sequence[TemplateSpec],
        manifest: PackManifest,
        grants: Any,
        data: bytes | None = None,
    ) -> Mapping[str, Actor]:
        text = data if data is not None else path.read_bytes()
        base_urls, rate, burst = _grant_fields(grants)
        for u in base_urls:
            try:
                ok = httpx.URL(u).scheme in ("http", "https") and bool(httpx.URL(u).host)
            except (httpx.InvalidURL, ValueError):
                ok = False
            if not ok:
                raise PackFormatError(
                    f"pack {manifest.name!r}: granted base URL {u[:200]!r} is not an absolute "
                    "http(s) URL",
                    pack=manifest.name,
                    field="grants.base_urls",
                )
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0
        ):
            raise PackFormatError(
                f"pack {manifest.name!r}: grants rate_limit must be a number > 0, got {rate!r}",
                pack=manifest.name,
                field="grants.rate_limit",
            )
        table = load_table(
            text,
            pack=manifest.name,
            hosts=tuple(manifest.capabilities.get("http", ())),
        )
        service = Service(table, base_urls, rate, burst, _max_connections(grants, manifest.name))
        known = set(table.suffixes)
        out: dict[str, Actor] = {}
        prefix = manifest.name + "/"
        for spec in templates:
            suffix = spec.id[len(prefix) :] if spec.id.startswith(prefix) else ""
            if suffix not in known:
                raise PackFormatError(
                    f"pack {manifest.name!r}: template {spec.id!r} names no operation of "
                    f"{artifact.path} (expected {prefix}<suffix> for one of its operations)",
                    pack=manifest.name,
                    member=artifact.path,
                )
            out[spec.id] = OperationTemplate(service, spec, suffix)
        return out
