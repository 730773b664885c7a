"""Helpers for the http-api engine tests (imported by tests/services/*): hand-written
operation tables modelled on the shared specs, and signed packs built from them (real
Ed25519 signatures, real bundles)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reflow import Network
from reflow._core._catalog import template_actor
from reflow._loader._packs import list_packs, load_pack, unload_pack
from reflow._loader._trust import TrustStore
from reflow._services import HttpApiGrants
from reflow.abi._bundle import artifact_entry, build_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
from reflow.abi._signing import generate_key, sign_manifest

RESERVED_IN = ("trigger", "request")


def op(
    method: str,
    path: str,
    params: list[dict[str, Any]] | None = None,
    *,
    body: dict[str, Any] | None = None,
    responses: dict[str, Any] | None = None,
    security: list[dict[str, list[str]]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "operation_id": None,
        "method": method,
        "path": path,
        "parameters": params or [],
        "body": body,
        "responses": responses
        or {"200": {"content": {"application/json": {"schema": {"type": "object"}}}}},
        "security": security,
        **extra,
    }


def param(name: str, where: str, schema: dict[str, Any], **kw: Any) -> dict[str, Any]:
    p = {
        "name": name,
        "in": where,
        "key": kw.pop("key", name.lower().replace("-", "_")),
        "required": where == "path",
        "schema": schema,
    }
    p.update(kw)
    return p


def table(
    operations: dict[str, Any],
    *,
    servers: list[dict[str, Any]] | None = None,
    schemes: dict[str, Any] | None = None,
    security: list[dict[str, list[str]]] | None = None,
    schemas: dict[str, Any] | None = None,
    name: str = "acme/svc",
) -> dict[str, Any]:
    return {
        "format": "reflow-http-api/1",
        "service": {"name": name, "title": name, "version": "1.0"},
        "servers": servers if servers is not None else [{"url": "https://api.example.com"}],
        "security_schemes": schemes or {},
        "security": security or [],
        "schemas": schemas or {},
        "operations": operations,
    }


def ports(t: dict[str, Any], suffix: str, item: bool = False) -> tuple[tuple[str, ...], ...]:
    o = t["operations"][suffix]
    keys = [p["key"] for p in o["parameters"]]
    if o.get("body"):
        keys += [f["key"] for f in o["body"].get("fields", []) if f["key"] not in keys]
        keys.append("body")
    outs = ("response", "error", "item") if item else ("response", "error")
    return (*RESERVED_IN, *keys), outs


class Packs:
    def __init__(self, tmp: Path, store: TrustStore) -> None:
        self.tmp, self.store = tmp, store
        self.key = generate_key()
        store.add(self.key.public_key())
        self.n = 0

    def build(
        self,
        t: dict[str, Any] | bytes,
        hosts: list[str],
        *,
        name: str = "acme/svc",
        item: bool = False,
    ) -> Path:
        data = t if isinstance(t, bytes) else json.dumps(t, sort_keys=True).encode()
        path_in = "artifacts/wasm32-unknown-unknown/api.json"
        art = artifact_entry("api", PORTABLE_TRIPLE, "http-api", path_in, data)
        specs = []
        if isinstance(t, dict):
            for suffix in t["operations"]:
                ins, outs = ports(t, suffix, item)
                specs.append(TemplateSpec(f"{name}/{suffix}", "api", ins, outs, engine="http-api"))
        m = PackManifest(
            name=name,
            version=f"1.0.{self.n}",
            abi="1.0",
            templates=tuple(specs),
            artifacts=(art,),
            capabilities={"http": tuple(hosts)},
        )
        self.n += 1
        out = self.tmp / f"svc{self.n}.rflpack"
        out.write_bytes(build_bundle(m, {path_in: data}, [sign_manifest(m.to_toml(), self.key)]))
        return out

    def load(
        self,
        t: dict[str, Any],
        url: str,
        *,
        name: str = "acme/svc",
        item: bool = False,
        grants: Any = None,
        hosts: list[str] | None = None,
    ) -> Any:
        host = url.split("://", 1)[1]
        path = self.build(t, hosts or [host], name=name, item=item)
        return load_pack(path, trust=self.store, grants=grants)


@pytest.fixture
def packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Packs]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    yield Packs(tmp_path, TrustStore(tmp_path / "trust"))
    for p in list_packs():
        if p.name.startswith("acme/"):
            unload_pack(p.name)


def run_node(
    template: str,
    config: dict[str, Any] | None = None,
    *,
    ports: tuple[str, ...] = ("response", "error"),
    initial: dict[str, Any] | None = None,
    timeout: float = 20,
    wire_error: bool = True,
) -> tuple[dict[str, list[Any]], list[Any]]:
    """One node of ``template``, triggered once; returns messages per port and failures."""
    from reflow import Message

    net = Network()
    net.register_actor("t", template_actor(template))
    net.add_node("n", "t", config or {})
    colls = {p: net.collect("n", p) for p in ports if wire_error or p != "error"}
    for port, msg in (initial or {"trigger": Message.flow()}).items():
        net.add_initial("n", port, msg)
    try:
        summary = net.run(timeout=timeout)
    finally:
        net.shutdown()
    return {p: list(c.messages) for p, c in colls.items()}, list(summary.failures)


__all__ = ["HttpApiGrants", "Packs", "op", "param", "run_node", "table"]
