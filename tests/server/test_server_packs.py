"""``POST /api/v1/packs`` naming a pack in a registry: a real ``reflow-registry serve`` on
127.0.0.1 with a signed pack published, the execution server fetching it through the registry
client (the resolver ``reflow-pack install`` and ``load_pack("ns/name@range")`` use), verifying
it against its own trust store and loading it; and the bad rows, each an answer naming the pack
and the cause within bounded time."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from exectest import TOKEN, RunningServer, check_schema, wait_done

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
from regtest import Server, free_port, setup_registry

from reflow import TrustStore, list_packs, unload_pack
from reflow.abi._signing import key_id, public_key_pem
from reflow.server import ServerConfig
from reflow.tools._pack_build import build_pack

PACKS = Path(__file__).resolve().parents[2] / "packs"


@dataclass
class Live:
    registry: str
    trusted: RunningServer
    untrusted: RunningServer
    key_id: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("packsreg")
    reg = setup_registry(root / "data")
    reg.auth.create_namespace("reflow", "reflow developers")
    reg.storage.add_key("reflow", key_id(reg.key), public_key_pem(reg.key))
    _, publish = reg.auth.create_token("reflow", "publish")
    reg.storage.close()
    pack = build_pack(PACKS / "math-wasm", out_dir=root / "dist", key=reg.key)
    server = Server(root / "data", free_port()).start()
    try:
        r = httpx.put(
            f"{server.url}/api/v1/packs/reflow/math/0.1.0",
            content=pack.read_bytes(),
            headers={"Authorization": f"Bearer {publish}"},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        TrustStore(root / "trust").add(reg.key.public_key())
        trusted = RunningServer(
            ServerConfig(token=TOKEN, trust=str(root / "trust"), registry_cache=str(root / "c1"))
        ).start()
        untrusted = RunningServer(
            ServerConfig(token=TOKEN, trust=str(root / "none"), registry_cache=str(root / "c2"))
        ).start()
        try:
            yield Live(server.url, trusted, untrusted, key_id(reg.key))
        finally:
            trusted.stop()
            untrusted.stop()
    finally:
        server.stop()
        for p in list_packs():
            unload_pack(p.name)


def post(srv: RunningServer, body: Any) -> tuple[httpx.Response, float]:
    t0 = time.perf_counter()
    with srv.client() as c:
        r = c.post("/api/v1/packs", json=body)
    return r, time.perf_counter() - t0


@pytest.mark.slow
def test_a_pack_named_from_the_registry_installs_loads_and_runs(live: Live) -> None:
    r, _ = post(live.trusted, {"registry": live.registry, "pack": "reflow/math@^0.1"})
    assert r.status_code == 201, r.text
    check_schema(r.json(), "Pack")
    assert r.json()["name"] == "reflow/math" and r.json()["version"] == "0.1.0"
    assert "reflow/math/add" in r.json()["templates"]
    graph = {
        "processes": {"add": {"component": "reflow/math/add"}},
        "connections": [{"data": 41, "tgt": {"process": "add", "port": "in"}}],
    }
    with live.trusted.client() as c:
        created = c.post("/api/v1/executions", json={"graph": graph})
        assert created.status_code == 201, created.text
        done = wait_done(c, created.json()["id"])
    assert done["state"] == "completed", done
    assert done["summary"]["node_ticks"]["add"] == 1
    again, _ = post(live.trusted, {"registry": live.registry, "pack": "reflow/math@0.1.0"})
    assert again.status_code == 201  # idempotent


def _down() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


#: (id, server, body, status, error type, path, fragments of the message)
BAD: list[tuple[str, str, Any, int, str, str, tuple[str, ...]]] = [
    (
        "unknown pack",
        "trusted",
        {"registry": "{reg}", "pack": "reflow/nope@^1"},
        404,
        "RegistryNotFoundError",
        "$.pack",
        ("reflow/nope@^1", "{reg}"),
    ),
    (
        "unknown version",
        "trusted",
        {"registry": "{reg}", "pack": "reflow/math@^7"},
        404,
        "RegistryNotFoundError",
        "$.pack",
        ("reflow/math@^7",),
    ),
    (
        "unknown namespace",
        "trusted",
        {"registry": "{reg}", "pack": "nobody/math@^0.1"},
        404,
        "RegistryNotFoundError",
        "$.pack",
        ("nobody/math",),
    ),
    (
        "signer not trusted by this server",
        "untrusted",
        {"registry": "{reg}", "pack": "reflow/math@^0.1"},
        422,
        "RegistrySignatureError",
        "$.pack",
        ("reflow/math@^0.1", "{key}"),
    ),
    (
        "registry down",
        "trusted",
        {"registry": "{down}", "pack": "reflow/other@^1"},
        502,
        "RegistryUnavailableError",
        "$.registry",
        ("reflow/other@^1", "{down}"),
    ),
    (
        "registry not a URL",
        "trusted",
        {"registry": "ftp://example", "pack": "reflow/math@^0.1"},
        422,
        "RegistrySpecError",
        "$.registry",
        ("ftp://example", "not a registry URL"),
    ),
    (
        "bad range",
        "trusted",
        {"registry": "{reg}", "pack": "reflow/math@>>1"},
        422,
        "RegistrySpecError",
        "$.pack",
        ("reflow/math@>>1",),
    ),
    ("no pack", "trusted", {"registry": "{reg}"}, 422, "UnprocessableError", "$.pack", ("pack",)),
    (
        "pack not a name",
        "trusted",
        {"registry": "{reg}", "pack": "math"},
        422,
        "UnprocessableError",
        "$.pack",
        ("namespace/name",),
    ),
    (
        "pack not a string",
        "trusted",
        {"registry": "{reg}", "pack": 7},
        422,
        "UnprocessableError",
        "$.pack",
        ("must name a pack",),
    ),
    (
        "registry not a string",
        "trusted",
        {"registry": ["x"], "pack": "reflow/math"},
        422,
        "UnprocessableError",
        "$.registry",
        ("must be a URL",),
    ),
    (
        "unknown key",
        "trusted",
        {"registry": "{reg}", "pack": "reflow/math", "verify": False},
        422,
        "UnprocessableError",
        "$",
        ("'verify'",),
    ),
    (
        "both pack and name",
        "trusted",
        {"pack": "reflow/math", "name": "reflow/math"},
        422,
        "UnprocessableError",
        "$.name",
        ("not both",),
    ),
    ("not an object", "trusted", ["reflow/math"], 422, "UnprocessableError", "$", ("expected",)),
    (
        "no registry anywhere",
        "trusted",
        {"pack": "reflow/math@^0.1"},
        422,
        "UnprocessableError",
        "$.pack",
        ("no registry",),
    ),
]


def _fill(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in subs.items():
            value = value.replace(k, v)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, subs) for k, v in value.items()}
    return value


@pytest.mark.slow
@pytest.mark.parametrize(
    ("which", "body", "status", "type_", "path", "fragments"),
    [pytest.param(*row[1:], id=row[0]) for row in BAD],
)
def test_bad_pack_references(
    live: Live,
    which: str,
    body: Any,
    status: int,
    type_: str,
    path: str,
    fragments: tuple[str, ...],
) -> None:
    subs = {"{reg}": live.registry, "{down}": _down(), "{key}": live.key_id}
    srv = live.trusted if which == "trusted" else live.untrusted
    r, took = post(srv, _fill(body, subs))
    assert r.status_code == status, r.text
    check_schema(r.json(), "Error")
    err = r.json()["error"]
    assert (err["type"], err["path"]) == (type_, path), err
    for fragment in fragments:
        assert _fill(fragment, subs) in err["message"], err["message"]
    assert "Traceback" not in err["message"]
    assert took < 20, f"answered in {took:.1f} s"
