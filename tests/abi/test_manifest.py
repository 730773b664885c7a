"""reflow.abi._manifest: the pack manifest schema, its TOML form and its validation."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
import tomli_w

from reflow._errors import PackFormatError
from reflow.abi._manifest import (
    PORTABLE_TRIPLE,
    Artifact,
    PackManifest,
    TemplateSpec,
    host_triples,
    parse_manifest,
)

SHA = "ab" * 32


def manifest_doc() -> dict[str, Any]:
    return {
        "format": 1,
        "name": "acme/tools",
        "version": "1.2.3",
        "abi": "1.0",
        "description": "tools",
        "license": "MIT",
        "authors": ["A. Author <a@example.com>"],
        "readme": "README.md",
        "capabilities": {"http": ["api.example.com"]},
        "templates": [
            {
                "id": "acme/tools/double",
                "entry": "tools",
                "inports": ["in"],
                "outports": ["out"],
                "config_schema": {"type": "object"},
            },
            {"id": "acme/tools/count", "entry": "tools", "engine": "wasm", "inports": ["in"]},
        ],
        "artifacts": [
            {
                "entry": "tools",
                "triple": PORTABLE_TRIPLE,
                "kind": "wasm",
                "path": "artifacts/wasm32-unknown-unknown/tools.wasm",
                "sha256": SHA,
                "size": 10,
            },
            {
                "entry": "tools",
                "triple": "x86_64-unknown-linux-gnu",
                "kind": "native",
                "path": "artifacts/x86_64-unknown-linux-gnu/libtools.so",
                "sha256": SHA,
                "size": 9,
            },
        ],
        "files": [{"path": "README.md", "sha256": SHA, "size": 3}],
    }


def test_round_trip_is_byte_stable() -> None:
    m = parse_manifest(tomli_w.dumps(manifest_doc()))
    assert m.name == "acme/tools" and m.abi_version == (1, 0)
    assert m.template("acme/tools/double").inports == ("in",)
    assert m.template("acme/tools/count").engine == "wasm"
    assert m.triples() == (PORTABLE_TRIPLE, "x86_64-unknown-linux-gnu")
    assert m.capabilities == {"http": ("api.example.com",)}
    data = m.to_toml()
    again = parse_manifest(data)
    assert again == m
    assert again.to_toml() == data
    assert tomllib.loads(data.decode())["format"] == 1


def test_built_in_code_validates_too() -> None:
    art = Artifact("m", PORTABLE_TRIPLE, "wasm", "a/m.wasm", SHA, 1)
    with pytest.raises(PackFormatError, match=r"templates.*at least one"):
        PackManifest(name="x", version="0.1.0", abi="1.0", templates=(), artifacts=(art,))
    m = PackManifest(
        name="x",
        version="0.1.0",
        abi="1.0",
        templates=(TemplateSpec("x/t", "m"),),
        artifacts=(art,),
    )
    assert m.with_(version="0.2.0").version == "0.2.0"
    with pytest.raises(PackFormatError, match="version"):
        m.with_(version="two")


def _set(path: str, value: Any) -> dict[str, Any]:
    doc = manifest_doc()
    node: Any = doc
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    last = keys[-1]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return doc


BAD = [
    ("name", "Bad Name", "name", "not a pack name"),
    ("name", KeyError, "name", "is required"),
    ("version", "1.0", "version", "semantic version"),
    ("abi", "one", "abi", "major.minor"),
    ("format", 2, "format", "pack format 1, not 2"),
    ("format", "1", "format", "must be a integer"),
    ("extra", 1, "extra", "unknown key"),
    ("templates", [], "templates", "at least one"),
    ("templates.0.id", "", "templates[0].id", "not a template id"),
    ("templates.1.id", "acme/tools/double", "templates[1].id", "appears twice"),
    (
        "templates.0.id",
        "other/tools/double",
        "templates[0].id",
        "must be the pack name or start with 'acme/tools/'",
    ),
    ("version", "1.0.1\u0660", "version", "version"),
    ("templates.0.entry", "nope", "templates[0].entry", "names no artifact entry"),
    ("templates.0.inports", ["in", "in"], "templates[0].inports", "lists 'in' twice"),
    ("templates.0.inports", "in", "templates[0].inports", "must be a array"),
    ("templates.0.outports", ["bad port"], "templates[0].outports", "not a port name"),
    ("templates.0.engine", "extism", "templates[0].engine", "no artifact of kind"),
    ("templates.0.colour", "red", "templates[0].colour", "unknown key"),
    ("artifacts.0.triple", "linux", "artifacts[0].triple", "not a target triple"),
    ("artifacts.0.path", "../evil.wasm", "artifacts[0].path", "not a safe relative path"),
    ("artifacts.0.path", "/etc/passwd", "artifacts[0].path", "not a safe relative path"),
    ("artifacts.0.path", "manifest.toml", "artifacts[0].path", "reserved"),
    (
        "artifacts.1.path",
        "artifacts/wasm32-unknown-unknown/tools.wasm",
        "artifacts[1].path",
        "already used",
    ),
    ("artifacts.0.sha256", "xyz", "artifacts[0].sha256", "64 lowercase hex"),
    ("artifacts.0.size", -1, "artifacts[0].size", "negative"),
    ("artifacts.0.size", True, "artifacts[0].size", "must be a integer"),
    ("artifacts.1.kind", "wasm", "artifacts[1].triple", "belongs under"),
    ("artifacts.1.triple", PORTABLE_TRIPLE, "artifacts[1].kind", "native artifact cannot"),
    ("readme", "README.txt", "readme", "not listed in [[files]]"),
    ("capabilities", {"http": "x"}, "capabilities.http", "must be a array"),
]


@pytest.mark.parametrize(("path", "value", "field", "fragment"), BAD)
def test_bad_manifests(path: str, value: Any, field: str, fragment: str) -> None:
    with pytest.raises(PackFormatError) as info:
        parse_manifest(tomli_w.dumps(_set(path, value)))
    assert fragment in str(info.value)
    assert info.value.field == field
    assert f"manifest field {field}" in str(info.value)


def test_duplicate_entry_triple_pair() -> None:
    doc = manifest_doc()
    doc["artifacts"][1].update(triple=PORTABLE_TRIPLE, kind="wasm", path="a/other.wasm")
    with pytest.raises(PackFormatError, match="second artifact for entry 'tools'"):
        parse_manifest(tomli_w.dumps(doc))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"name = ", "not valid TOML"),
    ],
)
def test_not_toml(data: bytes, fragment: str) -> None:
    with pytest.raises(PackFormatError, match=fragment):
        parse_manifest(data)


def test_host_triples_are_rust_triples() -> None:
    for t in host_triples():
        assert len(t.split("-")) in (3, 4)
