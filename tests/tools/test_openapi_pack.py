"""``reflow-pack openapi``: signed API-service packs that the existing inspect/verify code
accepts, written deterministically; and all 16 shared specs in one command."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reflow.abi._bundle import read_bundle
from reflow.abi._manifest_rules import MAX_LIST, MAX_MANIFEST, MAX_TEMPLATES
from reflow.abi._signing import generate_key, key_id, load_public_key, verify_manifest
from reflow.tools._cli import main
from reflow.tools._openapi_pack import build_openapi_pack, find_specs, pack_version

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "openapi"
needs_shared = pytest.mark.skipif(
    not (SHARED / "SOURCES.md").is_file(), reason=f"{SHARED} (the shared OpenAPI specs) not found"
)

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Tiny", "version": "2.1.0", "license": {"name": "MIT"}},
    "servers": [{"url": "https://api.tiny.test/v1"}],
    "components": {"securitySchemes": {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}}},
    "security": [{"key": []}],
    "paths": {
        "/items": {
            "get": {
                "operationId": "listItems",
                "summary": "List the items.\nSecond line.",
                "parameters": [
                    {"name": "page", "in": "query", "schema": {"type": "integer"}},
                    {"name": "per_page", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {"200": {"description": "ok"}},
            },
            "post": {
                "operationId": "createItem",
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"201": {"description": "made"}},
            },
        }
    },
}


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def _ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_builds_a_signed_pack_that_inspects_and_verifies(
    runner: CliRunner, tmp_path: Path
) -> None:
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(SPEC))
    _ok(runner, "keygen", "--out", str(tmp_path / "k"))
    out = json.loads(
        _ok(
            runner,
            "openapi",
            str(spec),
            "--name",
            "acme/tiny",
            "--out",
            "dist",
            "--sign",
            str(tmp_path / "k"),
            "--json",
        )
    )
    assert out["operations"] == 2 and out["signed"] is True and out["version"] == "2.1.0"
    pack = Path(out["path"])
    assert pack.name == "acme-tiny-2.1.0.rflpack"
    _ok(runner, "trust", "add", str(tmp_path / "k.pub"), "--for", "acme/*")
    info = json.loads(_ok(runner, "inspect", str(pack), "--json"))
    assert info["signature_status"].startswith("valid, trusted key"), info["signature_status"]
    assert info["loads_as"] == {"api": "http-api (wasm32-unknown-unknown)"}
    assert info["license"] == "MIT"
    assert info["capabilities"] == {"http": ["api.tiny.test"]}
    templates = {t["id"]: t for t in info["templates"]}
    assert set(templates) == {"acme/tiny/list_items", "acme/tiny/create_item"}
    listed = templates["acme/tiny/list_items"]
    assert listed["engine"] == "http-api" and listed["entry"] == "api"
    assert listed["inports"] == ["trigger", "request", "page", "per_page"]
    assert listed["outports"] == ["response", "error", "item"]  # Link pagination inferred
    assert listed["description"] == "List the items. Second line."
    assert templates["acme/tiny/create_item"]["inports"] == ["trigger", "request", "body"]
    assert "OK acme/tiny 2.1.0" in _ok(runner, "verify", str(pack))
    table = json.loads(read_bundle(pack).contents["artifacts/wasm32-unknown-unknown/api.json"])
    assert table["format"] == "reflow-http-api/2"
    assert table["operations"]["list_items"]["pagination"] == {"style": "link"}


def test_same_spec_same_bytes(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(SPEC))
    key = generate_key()
    a = build_openapi_pack(spec, name="acme/tiny", out_dir=tmp_path / "a", key=key)
    b = build_openapi_pack(spec, name="acme/tiny", out_dir=tmp_path / "b", key=key)
    assert a.path.read_bytes() == b.path.read_bytes()


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["openapi", "SPEC"], 2, "give SPEC and --name"),
        (["openapi", "--all", "."], 2, "--all needs --namespace"),
        (["openapi", "SPEC", "--all", ".", "--namespace", "acme"], 2, "--all takes no SPEC"),
        (["openapi", "SPEC", "--name", "Bad Name!"], 1, "is not a pack name"),
        (["openapi", "SPEC", "--name", "acme/t", "--auth", "oauth"], 1, "--auth 'oauth'"),
        (["openapi", "BROKEN", "--name", "acme/t"], 1, "broken.yaml: is not valid YAML"),
    ],
)
def test_cli_errors(
    runner: CliRunner, tmp_path: Path, args: list[str], code: int, fragment: str
) -> None:
    (tmp_path / "spec.json").write_text(json.dumps({**SPEC, "components": {}, "security": []}))
    (tmp_path / "broken.yaml").write_text("openapi: [\n")
    args = [{"SPEC": "spec.json", "BROKEN": "broken.yaml"}.get(a, a) for a in args]
    result = runner.invoke(main, args)
    assert result.exit_code == code, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("1.1.4", "1.1.4"),
        ("2023-08-16", "2023.8.16"),
        ("v2", "2.0.0"),
        ("", "0.0.0"),
        ("1.0.0-beta", "1.0.0"),
        ("10.0", "10.0.0"),
        ("2.15", "2.15.0"),
        ("007.1", "7.1.0"),
    ],
)
def test_pack_version(text: str, version: str) -> None:
    assert pack_version(text) == version


@needs_shared
def test_finds_every_shared_spec_with_stable_names() -> None:
    names = [n for n, _ in find_specs(SHARED)]
    assert len(names) == 19 and len(set(names)) == 19
    assert {"petstore-json", "petstore-yaml", "petstore-expanded", "petstore-openapi"} <= set(names)
    assert "digitalocean" in names and "kubernetes" in names


@needs_shared
@pytest.mark.slow
def test_all_shared_specs_build_in_one_command(runner: CliRunner, tmp_path: Path) -> None:
    _ok(runner, "keygen", "--out", str(tmp_path / "k"))
    out = json.loads(
        _ok(
            runner,
            "openapi",
            "--all",
            str(SHARED),
            "--namespace",
            "acme",
            "--out",
            "dist",
            "--sign",
            str(tmp_path / "k"),
            "--auth",
            "bearer",
            "--json",
        )
    )
    assert len(out) == 19
    assert sum(p["operations"] for p in out) >= 5000
    pk = load_public_key(tmp_path / "k.pub")
    keys = {key_id(pk): pk}
    for p in out:
        b = read_bundle(Path(p["path"]))
        verify_manifest(b.manifest_bytes, b.signatures, keys, pack=p["name"])
        assert len(b.manifest_bytes) <= MAX_MANIFEST
        doc = tomllib.loads(b.manifest_bytes.decode())
        assert len(doc["templates"]) == p["operations"] <= MAX_TEMPLATES
        assert all(len(t["inports"]) <= MAX_LIST for t in doc["templates"])
    by_name = {p["name"]: p for p in out}
    assert by_name["acme/kubernetes"]["operations"] == 1123
    assert by_name["acme/github"]["hosts"] == ["api.github.com", "uploads.github.com"]
