"""README "Running API-service packs": ``reflow.testing.spec_server`` serves the table of a
pack file the user has just generated, so the walk's five steps run against 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import reflow
from reflow import HttpApiGrants, Message, Network, PackFormatError, ReflowError
from reflow._loader._packs import unload_pack
from reflow._loader._trust import TrustStore
from reflow.abi._bundle import artifact_entry, build_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
from reflow.abi._signing import generate_key
from reflow.testing import spec_server
from reflow.tools._openapi_pack import build_openapi_pack

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "Notes", "version": "2.0.0"},
    "servers": [{"url": "https://api.notes.test"}],
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/notes/{id}": {
            "get": {
                "operationId": "getNote",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "a note",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["id", "text"],
                                    "properties": {
                                        "id": {"type": "string"},
                                        "text": {"type": "string"},
                                    },
                                }
                            }
                        },
                    }
                },
            }
        }
    },
}


@pytest.fixture
def notes_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Any]]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "notes.json"
    spec.write_text(json.dumps(SPEC))
    key = generate_key()
    built = build_openapi_pack(spec, name="walk/notes", out_dir=tmp_path / "dist", key=key)
    trust = TrustStore(tmp_path / "trust")
    trust.add(key.public_key(), names=["walk/*"])
    yield built.path, trust
    if any(p.name == "walk/notes" for p in reflow.list_packs()):
        unload_pack("walk/notes")


def test_spec_server_serves_a_pack_file(
    notes_pack: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, trust = notes_pack
    monkeypatch.setenv("REFLOW_SECRET_WALK_NOTES_BEARER", "t0ken")
    with spec_server(path, secrets={"bearer": "t0ken"}) as server:
        reflow.load_pack(path, trust=trust, grants=HttpApiGrants(base_urls=(server.url,)))
        net = Network()
        net.register_actor("get", reflow.template_actor("walk/notes/get_note"))
        net.add_node("get", "get", {"id": "n1", "_http": {"base_url": server.url}})
        out = net.collect("get", "response")
        net.add_initial("get", "trigger", Message.flow())
        summary = net.run(timeout=30)
        net.shutdown()
    assert summary.ok, summary.failures
    (response,) = out.values()
    assert response["status"] == 200
    assert set(response["body"]) >= {"id", "text"}


@pytest.mark.parametrize(
    ("make", "error", "fragment"),
    [
        (lambda d: d / "missing.rflpack", ReflowError, "missing.rflpack"),
        (lambda d: _write(d / "text.rflpack", b"not a pack"), PackFormatError, "text.rflpack"),
        (lambda d: _write(d / "empty.rflpack", b""), PackFormatError, "empty.rflpack"),
        (lambda d: _write(d / "wasm.rflpack", _wasm_pack()), PackFormatError, "no http-api"),
    ],
)
def test_spec_server_refuses_what_is_not_an_api_pack(
    tmp_path: Path, make: Any, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment), spec_server(make(tmp_path)):
        pass


def _wasm_pack() -> bytes:
    """A pack of one (never run) WebAssembly artifact: no operation table to serve."""
    wasm = b"\0asm\x01\0\0\0"
    path = f"artifacts/{PORTABLE_TRIPLE}/tools.wasm"
    manifest = PackManifest(
        name="walk/tools",
        version="0.1.0",
        abi="1.0",
        templates=(TemplateSpec(id="walk/tools/t", entry="tools", inports=("in",), outports=()),),
        artifacts=(artifact_entry("tools", PORTABLE_TRIPLE, "wasm", path, wasm),),
    )
    return build_bundle(manifest.to_toml(), {path: wasm}, [])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
