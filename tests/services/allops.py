"""Firing every operation of a generated API-service pack at its spec server (shared by
``test_all_operations.py`` and the bench): minimal valid inputs from each operation's
required keys, one node per operation, one network per pack."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from reflow import Message, Network
from reflow._core._catalog import template_actor
from reflow._loader._packs import load_pack, unload_pack
from reflow._loader._trust import TrustStore
from reflow._services import HttpApiGrants
from reflow._services._auth import env_name
from reflow._services._instances import instance_for
from reflow._services._spec_server import SpecServer, spec_server
from reflow._services._table import ApiTable, Operation, load_table
from reflow._services._table_shared import expand_table
from reflow.abi._bundle import read_bundle

TABLE = "artifacts/wasm32-unknown-unknown/api.json"


def pack_table(path: Path) -> dict[str, Any]:
    return expand_table(json.loads(read_bundle(path).contents[TABLE]))


def secrets_for(table: dict[str, Any]) -> dict[str, str]:
    """A made-up secret per scheme (``id:secret`` form fits basic and client credentials)."""
    return {name: f"id-{i}:s3cr3t-{i}" for i, name in enumerate(table["security_schemes"])}


@contextmanager
def serving(table: dict[str, Any], pack: str) -> Iterator[SpecServer]:
    """The table's spec server, and the environment holding its secrets."""
    secrets = secrets_for(table)
    names = [env_name(pack, s) for s in secrets]
    old = {n: os.environ.get(n) for n in names}
    for scheme, value in secrets.items():
        os.environ[env_name(pack, scheme)] = value
    try:
        with spec_server(table, secrets=secrets, pack=pack) as server:
            yield server
    finally:
        for n, v in old.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def minimal_config(table: ApiTable, op: Operation) -> dict[str, Any]:
    """The required keys of ``op``, each an instance of its schema."""
    config: dict[str, Any] = {}
    for p in op.parameters:
        if p.required:
            config[p.key] = instance_for(p.schema, table.schemas)
    if op.body is not None and op.body.required:
        schema = op.body.content[op.body.media_type].get("schema", {})
        config["body"] = instance_for(schema, table.schemas)
    return config


@dataclass
class Outcome:
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _response_schema(op: Operation, status: int) -> tuple[str, Any] | None:
    entry = op.responses.get(str(status)) or op.responses.get(f"{str(status)[0]}XX")
    if entry is None:
        return None
    content = entry.get("content") or {}
    if not content:
        return None
    media = next(iter(content))
    return media, (content[media] or {}).get("schema", {})


def check_response(table: ApiTable, op: Operation, data: Any) -> str | None:
    """None when ``data`` (the response object) is a 2xx valid against the spec."""
    if not isinstance(data, dict):
        return f"response is {type(data).__name__}, not an object"
    status = data.get("status")
    if not isinstance(status, int) or not 200 <= status < 300:
        return f"status {status}: {str(data.get('body'))[:300]}"
    found = _response_schema(op, status)
    if found is None:
        return None
    media, schema = found
    base = media.split(";")[0].strip()
    if not (base == "application/json" or base.endswith("+json")):
        return None
    doc = {"$ref": "#/$defs/x", "$defs": {"x": schema}, "schemas": table.schemas}
    v = Draft202012Validator({**doc, "$ref": "#/$defs/x"})
    err = next(iter(v.iter_errors(data.get("body"))), None)
    return None if err is None else f"response body: {err.message[:300]}"


def fire_all(
    pack_path: Path,
    trust: TrustStore,
    *,
    suffixes: list[str] | None = None,
    timeout: float = 120,
) -> Outcome:
    """Every operation of the pack at ``pack_path`` once, against its own spec server."""
    raw = pack_table(pack_path)
    name = raw["service"]["name"]
    out = Outcome()
    with serving(raw, name) as server:
        loaded = load_pack(pack_path, trust=trust, grants=HttpApiGrants(base_urls=(server.url,)))
        table = load_table(json.dumps(raw), pack=name, hosts=("*",))
        try:
            net = Network()
            colls = {}
            ops = {}
            for i, suffix in enumerate(suffixes or table.suffixes):
                op = table.operation(suffix)
                tid = f"{name}/{suffix}"
                node = f"n{i}"
                net.register_actor(tid, template_actor(tid))
                config = minimal_config(table, op)
                config["_http"] = {"base_url": server.url, "retries": 0, "timeout_s": 30}
                net.add_node(node, tid, config)
                colls[node] = (net.collect(node, "response"), net.collect(node, "error"))
                ops[node] = op
                net.add_initial(node, "trigger", Message.flow())
            try:
                summary = net.run(timeout=timeout)
            finally:
                net.shutdown()
            failures = {f.node: str(f) for f in summary.failures}
            for node, op in ops.items():
                resp, err = colls[node]
                if node in failures:
                    out.failed[op.suffix] = failures[node][:500]
                elif err.messages:
                    out.failed[op.suffix] = "error port: " + str(err.messages[0])[:500]
                elif not resp.messages:
                    out.failed[op.suffix] = "no response"
                else:
                    msg = resp.messages[0]
                    if msg.get("type") == "Stream":
                        out.passed.append(op.suffix)
                        continue
                    problem = check_response(table, op, msg.get("data"))
                    if problem is None:
                        out.passed.append(op.suffix)
                    else:
                        out.failed[op.suffix] = problem
        finally:
            unload_pack(loaded.name if hasattr(loaded, "name") else name)
    return out
