"""Operation tables of format 2 (``host/_services/_table_shared.py``, abi/HTTP_API.md): shared
parameters, responses and bodies named by index, and the shared schemas as lazily decoded
text. A generated table reads back exactly as its expanded (format 1) form does, on real
specs; every bad reference is refused at load naming the field; lazy parts fail their own
operation's first use with a PackFormatError; a tampered table is refused by its pack's
signed digests, warm or cold; and a warm load validates the manifest at most once."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from allops import minimal_config
from svctest import op, param, ports, run_node, table

from reflow._errors import (
    HttpApiError,
    PackFormatError,
    PackIntegrityError,
    PackSignatureError,
    UnsafeArchiveError,
)
from reflow._loader._packs import load_pack, unload_pack
from reflow._loader._trust import TrustStore
from reflow._services import load_table
from reflow._services._table import ApiTable, Operation
from reflow._services._table_shared import FORMAT_1, FORMAT_2, expand_table, share_table
from reflow._services._validate import validate_keys
from reflow.abi import _manifest
from reflow.abi._bundle import artifact_entry, build_bundle, read_bundle, write_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
from reflow.abi._signing import generate_key, sign_manifest
from reflow.tools._openapi_load import dumps_json, load_spec
from reflow.tools._openapi_table import build_table

SPECS = Path(__file__).resolve().parents[3] / "shared" / "openapi"
HOSTS = ("api.example.com",)
TABLE_PATH = f"artifacts/{PORTABLE_TRIPLE}/api.json"


# -- round trip on real specs -------------------------------------------------------------


def _fields(o: Operation) -> dict[str, Any]:
    return {f.name: getattr(o, f.name) for f in dataclasses.fields(o) if not f.name.startswith("_")}


def _outcome(t: ApiTable, o: Operation, values: dict[str, Any]) -> str:
    try:
        validate_keys(t, o, values)
    except HttpApiError as exc:
        return str(exc)
    return "ok"


ROUND_TRIP = [
    ("petstore/openapi.yaml", 1),
    ("slack/slack_web_openapi_v2.json", 1),
    ("twilio/twilio_api_v2010.json", 3),
    pytest.param("stripe/spec3.yaml", 9, marks=pytest.mark.slow),
    pytest.param("kubernetes/swagger.json.unprocessed", 7, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("spec", "every"), ROUND_TRIP)
def test_a_generated_table_reads_back_as_its_expanded_form(spec: str, every: int) -> None:
    """Format 2 (what packs carry) against format 1 (the same table written inline): every
    operation identical, the same ports, and validation (of a minimal request and of one
    with a value of the wrong type) answering the same, on every ``every``-th operation."""
    path = SPECS / spec
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    gen = build_table(load_spec(path), name="acme/rt")
    v1 = dumps_json(gen.table)
    v2 = gen.to_bytes()
    assert json.loads(v1)["format"] == FORMAT_1 and json.loads(v2)["format"] == FORMAT_2
    assert len(v2) < len(v1)
    old = load_table(v1, pack="acme/rt", hosts=("*",))
    new = load_table(v2, pack="acme/rt", hosts=("*",))
    assert new.suffixes == old.suffixes
    assert new.schemas == old.schemas
    assert (new.servers, new.security, new.security_schemes) == (
        old.servers,
        old.security,
        old.security_schemes,
    )
    expanded = expand_table(json.loads(v2))
    for i, suffix in enumerate(old.suffixes):
        a, b = old.operation(suffix), new.operation(suffix)
        assert _fields(a) == _fields(b), suffix
        assert ports(expanded, suffix) == ports(gen.table, suffix)
        if i % every:
            continue
        good = minimal_config(old, a)
        assert _outcome(old, a, good) == _outcome(new, b, good), suffix
        if a.parameters:
            bad = {**good, a.parameters[0].key: {"not": ["what", "it", "expects"]}}
            assert _outcome(old, a, bad) == _outcome(new, b, bad), suffix


# -- bad references: refused at load --------------------------------------------------------


def _v2(**edits: Any) -> dict[str, Any]:
    """A small format-2 table, written by hand, with ``edits`` applied to it (``op.<k>``
    edits the operation ``get_x``)."""
    t: dict[str, Any] = {
        "format": FORMAT_2,
        "service": {"name": "acme/svc"},
        "servers": [{"url": "https://api.example.com"}],
        "security_schemes": {},
        "security": [],
        "schemas": '{"Pet":{"type":"object"}}',
        "parameters": [
            {"name": "id", "in": "path", "key": "id", "required": True, "schema": {}},
            {"name": "q", "in": "query", "key": "q", "schema": {"type": "integer"}},
        ],
        "responses": [{"description": "OK"}],
        "bodies": [{"content": {"application/json": {"schema": {}}}}],
        "operations": {
            "get_x": {
                "method": "POST",
                "path": "/x/{id}",
                "parameters": [0, 1],
                "responses": {"200": 0},
                "body": 0,
            }
        },
    }
    for key, value in edits.items():
        if key.startswith("op_"):
            t["operations"]["get_x"][key[3:]] = value
        else:
            t[key] = value
    return t


def _text(t: dict[str, Any]) -> bytes:
    return json.dumps(t).encode()


LOAD_ROWS = [
    (_v2(op_parameters=[0, 2]), "get_x.parameters[1]: index 2 is out of range: the table has 2"),
    (_v2(op_parameters=[-1]), "get_x.parameters[0]: index -1 is out of range"),
    (_v2(op_parameters=[10**40]), "parameters[0]: index 1000000000000000000000000000000000"),
    (_v2(op_parameters=["0"]), "expected an object or an index into parameters, got a string"),
    (_v2(op_parameters=[True]), "get_x.parameters[0]: expected an object or an index into "),
    (
        _v2(op_parameters=[0.0]),
        "parameters[0]: expected an object or an index into parameters, got a number",
    ),
    (
        _v2(op_parameters=[None]),
        "parameters[0]: expected an object or an index into parameters, got null",
    ),
    (
        _v2(op_parameters=[[0]]),
        "parameters[0]: expected an object or an index into parameters, got an array",
    ),
    (_v2(op_responses={"200": 1}), "get_x.responses.200: index 1 is out of range: the table has 1"),
    (
        _v2(op_responses={"200": "0"}),
        "responses.200: expected an object or an index into responses",
    ),
    (_v2(op_body=3), "get_x.body: index 3 is out of range: the table has 1 shared bodies"),
    (_v2(op_body=False), "get_x.body: expected an object or an index into bodies, got a boolean"),
    (
        _v2(parameters={"0": {}}),
        "parameters: expected an array of shared parameters, got an object",
    ),
    (_v2(responses="[]"), "responses: expected an array of shared responses, got a string"),
    (_v2(bodies=None), "bodies: expected an array of shared bodies, got null"),
    # a shared entry that is itself a reference: how a cycle would start
    (
        _v2(parameters=[1, 0]),
        "parameters[0]: expected an object, got an integer (a shared entry cannot refer to",
    ),
    (_v2(responses=[0]), "responses[0]: expected an object, got an integer (a shared entry"),
    (_v2(bodies=["{}"]), "bodies[0]: expected an object, got a string"),
    (_v2(schemas=["Pet"]), "schemas: expected an object or a string, got an array"),
    (
        _v2(format=FORMAT_1, schemas={}),
        "parameters: a 'reflow-http-api/1' table has no shared parameters",
    ),
    (
        {**_v2(format=FORMAT_1, schemas={}), "parameters": None, "responses": None, "bodies": None},
        "a 'reflow-http-api/1' table has no shared",
    ),
    (
        json.loads(_text(table({"get_x": {**op("GET", "/x"), "parameters": [0]}}))),
        "get_x.parameters[0]: is an index, but a 'reflow-http-api/1' table has no shared",
    ),
    (
        json.loads(_text(table({"get_x": {**op("GET", "/x"), "body": 0}}))),
        "get_x.body: is an index, but a 'reflow-http-api/1' table has no shared bodies",
    ),
    (
        {**json.loads(_text(table({}))), "schemas": "{}"},
        "schemas: expected an object, got a string",
    ),
]


@pytest.mark.parametrize(("doc", "fragment"), LOAD_ROWS)
def test_bad_references_are_refused_at_load(doc: dict[str, Any], fragment: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(PackFormatError) as info:
        load_table(_text(doc), pack="acme/svc", hosts=HOSTS)
    assert fragment in str(info.value)
    assert str(info.value).startswith("pack 'acme/svc': operation table: ")
    assert time.monotonic() - t0 < 2


def test_many_bad_references_are_refused_in_bounded_time() -> None:
    """Half a million indexes, the last one out of range: found by the fast path's range
    check, named exactly, within a generous bound."""
    refs = [0] * 500_000 + [2]
    ops = {f"op_{i}": {"method": "GET", "path": "/x", "parameters": refs} for i in range(2)}
    doc = _v2(operations=ops, parameters=[{"name": "q", "in": "query", "key": "q"}])
    t0 = time.monotonic()
    with pytest.raises(PackFormatError, match=r"op_0\.parameters\[500000\]: index 2 is out"):
        load_table(_text(doc), pack="acme/svc", hosts=HOSTS)
    assert time.monotonic() - t0 < 5


def test_a_good_hand_written_table_resolves_its_references() -> None:
    t = load_table(_text(_v2()), pack="acme/svc", hosts=HOSTS)
    o = t.operation("get_x")
    assert [p.key for p in o.parameters] == ["id", "q"]
    assert o.responses == {"200": {"description": "OK"}}
    assert o.body is not None and o.body.media_type == "application/json"
    assert t.schemas == {"Pet": {"type": "object"}}
    inline = _v2(
        op_parameters=[{"name": "id", "in": "path", "key": "id", "required": True}],
        op_responses={"200": {"description": "inline"}},
    )
    o = load_table(_text(inline), pack="acme/svc", hosts=HOSTS).operation("get_x")
    assert [p.key for p in o.parameters] == ["id"] and o.responses["200"]["description"] == "inline"


# -- lazy parts: a clear error at first use -------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
LAZY_SCHEMAS = [
    ("{", "schemas: is not the JSON text of an object"),
    ("\ud800", "schemas: is not the JSON text of an object"),
    ("[]", "schemas: is the JSON text of an array, not of an object"),
    ('"x"', "schemas: is the JSON text of a string, not of an object"),
    (DEEP, "schemas: nests too deep"),
    ('{"a":' + "[" * 80 + "]" * 80 + "}", "schemas: nests too deep"),
]


@pytest.mark.parametrize(("text", "fragment"), LAZY_SCHEMAS)
def test_bad_schema_text_fails_its_first_use(text: str, fragment: str) -> None:
    t = load_table(_text(_v2(schemas=text)), pack="acme/svc", hosts=HOSTS)  # loads
    t0 = time.monotonic()
    for _ in range(2):  # and fails the same way every time, not once
        with pytest.raises(PackFormatError) as info:
            _ = t.schemas
        assert fragment in str(info.value)
    assert time.monotonic() - t0 < 2


def test_bad_schema_text_is_decoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused schemas text is not parsed again by every later tick."""
    from reflow._services import _table

    t = load_table(
        _text(_v2(schemas='{"a": ' + " " * 1_000_000 + "]")), pack="acme/svc", hosts=HOSTS
    )
    calls: list[int] = []
    real = _table.json.loads

    def counting(*a: Any, **k: Any) -> Any:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(_table.json, "loads", counting)
    for _ in range(5):
        with pytest.raises(PackFormatError, match="schemas: is not the JSON text"):
            _ = t.schemas
    assert len(calls) == 1


LAZY_ENTRIES = [
    (
        _v2(op_parameters=[0], parameters=[{"name": "id", "in": "body", "key": "id"}]),
        "get_x.parameters[0].in: 'body' is not path, query, header or cookie",
    ),
    (
        _v2(op_parameters=[0], parameters=[{"name": "id", "in": "path", "key": "id"}]),
        "get_x.parameters[0].required: a path parameter must be required",
    ),
    (
        _v2(op_parameters=[0], parameters=[{"in": "path", "key": "id"}]),
        "get_x.parameters[0].name: is required",
    ),
    (_v2(responses=[{"x": 1}, "bad"]), "responses[1]: expected an object, got a string"),
    (_v2(bodies=[{"content": {}}]), "get_x.body.content: names no media type"),
    (_v2(op_parameters=[0, 0]), "get_x.parameters[1].key: 'id' is used twice"),
]


@pytest.mark.parametrize(("doc", "fragment"), LAZY_ENTRIES)
def test_bad_shared_entries_fail_their_operation(doc: dict[str, Any], fragment: str) -> None:
    """A shared entry is checked with each operation that uses it, at that operation's first
    use (or, for a malformed section, at load)."""
    with pytest.raises(PackFormatError) as info:
        load_table(_text(doc), pack="acme/svc", hosts=HOSTS).operation("get_x")
    assert fragment in str(info.value)


# -- packs: lazy failures in a tick, tampering refused --------------------------------------


class V2Packs:
    """Signed packs whose table is written in format 2 (ports from the expanded form)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.key = generate_key()
        self.store = TrustStore(tmp / "trust")
        self.store.add(self.key.public_key(), names=("acme/*",))
        self.n = 0

    def build(self, expanded: dict[str, Any], data: bytes | None = None) -> Path:
        data = data if data is not None else dumps_json(share_table(expanded))
        art = artifact_entry("api", PORTABLE_TRIPLE, "http-api", TABLE_PATH, data)
        name = expanded["service"]["name"]
        specs = tuple(
            TemplateSpec(f"{name}/{s}", "api", *ports(expanded, s), engine="http-api")
            for s in expanded["operations"]
        )
        m = PackManifest(
            name=name,
            version=f"1.0.{self.n}",
            abi="1.0",
            templates=specs,
            artifacts=(art,),
            capabilities={"http": HOSTS},
        )
        self.n += 1
        out = self.tmp / f"v2-{self.n}.rflpack"
        out.write_bytes(build_bundle(m, {TABLE_PATH: data}, [sign_manifest(m.to_toml(), self.key)]))
        return out


@pytest.fixture
def v2packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> V2Packs:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFLOW_CONFIG_DIR", str(tmp_path / "config"))
    yield V2Packs(tmp_path)
    unload_pack("acme/svc")


def _svc() -> dict[str, Any]:
    return table(
        {
            "get_x": op("GET", "/x/{id}", [param("id", "path", {"$ref": "#/schemas/Id"})]),
            "get_y": op("GET", "/y", [param("q", "query", {"type": "integer"})]),
        },
        schemas={"Id": {"type": "string", "minLength": 3}},
    )


def test_bad_schema_text_in_a_pack_fails_the_tick_not_the_load(v2packs: V2Packs) -> None:
    """The pack loads (the schemas are decoded at first use); the tick that validates a
    request fails with the PackFormatError naming ``schemas``; nothing is sent."""
    expanded = _svc()
    doc = share_table(expanded)
    doc["schemas"] = '{"Id": {"type": "string"'  # cut short
    path = v2packs.build(expanded, json.dumps(doc).encode())
    load_pack(path, trust=v2packs.store)
    config = {"id": "abcd", "_http": {"base_url": "http://127.0.0.1:9"}}
    out, failures = run_node("acme/svc/get_x", config, timeout=10)
    assert not out["response"] and failures
    assert "schemas: is not the JSON text of an object" in str(failures[0])
    assert "Traceback" not in str(failures[0])


def test_a_good_v2_pack_validates_through_the_shared_schemas(v2packs: V2Packs) -> None:
    load_pack(v2packs.build(_svc()), trust=v2packs.store)
    config = {"id": "ab", "_http": {"base_url": "http://127.0.0.1:9"}}
    out, failures = run_node("acme/svc/get_x", config, timeout=10)
    assert not out["response"] and len(failures) == 1
    assert "id" in str(failures[0]) and "too short" in str(failures[0])


def _swap_shared(data: bytes) -> bytes:
    """The shared parameter ``q`` made to take any number instead of an integer (same size)."""
    assert data.count(b'"integer"') == 1
    return data.replace(b'"integer"', b'"number" ')


def _grow_shared(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["parameters"][0]["schema"] = {}  # drop the check the publisher signed
    return json.dumps(doc).encode()


def _tampered(change: Any) -> Any:
    def tamper(path: Path) -> bytes:
        b = read_bundle(path)
        data = change(b.contents[TABLE_PATH])
        return write_bundle(b.manifest_bytes, {TABLE_PATH: data}, b.signature_bytes)

    return tamper


def _tampered_and_rehashed(path: Path) -> bytes:
    """The table changed and the manifest's digest of it updated: the signature breaks."""
    b = read_bundle(path)
    data = _grow_shared(b.contents[TABLE_PATH])
    art = artifact_entry("api", PORTABLE_TRIPLE, "http-api", TABLE_PATH, data)
    m = b.manifest.with_(artifacts=(art,))
    return write_bundle(m.to_toml(), {TABLE_PATH: data}, b.signature_bytes)


TAMPER = [
    (_tampered(_swap_shared), PackIntegrityError, "does not match the manifest: sha256"),
    (_tampered(_grow_shared), UnsafeArchiveError, "declares 725 bytes, over its limit of 678"),
    (_tampered_and_rehashed, PackSignatureError, "does not match"),
]


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize(("tamper", "error", "fragment"), TAMPER)
def test_a_tampered_shared_section_is_refused(
    v2packs: V2Packs, tamper: Any, error: Any, fragment: str, warm: bool
) -> None:
    good = v2packs.build(_svc())
    if warm:  # the cache holds the good pack, verified, and its manifest is remembered
        load_pack(good, trust=v2packs.store)
        unload_pack("acme/svc")
    bad = v2packs.tmp / "bad.rflpack"
    bad.write_bytes(tamper(good))
    with pytest.raises(error) as info:
        load_pack(bad, trust=v2packs.store)
    assert fragment in str(info.value)


def test_a_table_changed_in_the_cache_is_refused_warm(v2packs: V2Packs) -> None:
    good = v2packs.build(_svc())
    loaded = load_pack(good, trust=v2packs.store)
    unload_pack("acme/svc")
    cached = loaded.directory / TABLE_PATH
    cached.write_bytes(_swap_shared(cached.read_bytes()))
    with pytest.raises(PackIntegrityError, match="was modified after extraction"):
        load_pack(good, trust=v2packs.store)


# -- the manifest: validated once per load --------------------------------------------------


def test_a_load_validates_the_manifest_once_and_a_warm_reload_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key trusted for ``acme/*`` only makes the signature check read the manifest's
    name, a second read of it in the same load: one validation. Loading again in the
    process (after ``unload_pack``): none."""
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFLOW_CONFIG_DIR", str(tmp_path / "config"))
    calls: list[int] = []
    real = _manifest.manifest_from_dict

    def counting(doc: Any) -> Any:
        calls.append(1)
        return real(doc)

    monkeypatch.setattr(_manifest, "manifest_from_dict", counting)
    packs = V2Packs(tmp_path)
    path = packs.build(_svc())
    calls.clear()
    try:
        load_pack(path, trust=packs.store)
        assert len(calls) == 1
        for _ in range(2):
            unload_pack("acme/svc")
            calls.clear()
            load_pack(path, trust=packs.store)
            assert calls == []
    finally:
        unload_pack("acme/svc")
