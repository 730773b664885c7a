"""Hostile descriptions for the OpenAPI loader and normalizer (reflow.tools._openapi_load):
hand-written files, each refused with an OpenApiError naming the file (and the JSON path
where one is known) in bounded time, or — for what a real description may legitimately
hold (remote and dangling references) — generated with ``{}`` and a report line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from reflow import OpenApiError, ReflowError
from reflow.tools._openapi_load import LoadLimits, load_spec, parse_document
from reflow.tools._openapi_table import build_table


def _v3(paths: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1.0.0"},
        "paths": paths if paths is not None else {},
    }
    doc.update(extra)
    return doc


def _op_with_params(params: list[Any], **components: Any) -> dict[str, Any]:
    return _v3(
        {"/x": {"get": {"parameters": params, "responses": {"200": {"description": "ok"}}}}},
        components=components,
    )


def _chain(n: int) -> dict[str, Any]:
    params = {f"p{i}": {"$ref": f"#/components/parameters/p{i + 1}"} for i in range(n)}
    params[f"p{n}"] = {"name": "q", "in": "query", "schema": {"type": "string"}}
    return _op_with_params([{"$ref": "#/components/parameters/p0"}], parameters=params)


def _schema_op(schema: Any, **schemas: Any) -> dict[str, Any]:
    ok = {"description": "ok", "content": {"application/json": {"schema": schema}}}
    return _v3({"/x": {"get": {"responses": {"200": ok}}}}, components={"schemas": schemas})


BOMB = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths: {}\nx-a: &a [x,x,x,x,x,x,x,x,x,x]\n"
BOMB += "".join(
    f"x-{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9)
)

# (name, {file: content (str: written as is; else JSON)}, error fragment[s, ' | ' between])
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("root is a list", {"api.json": [1, 2]}, "the root is a list, expected a mapping"),
    ("root is a YAML string", {"api.yaml": "just text\n"}, "the root is a string"),
    ("root is null", {"api.yaml": "~\n"}, "the root is null"),
    ("no openapi key", {"api.json": {"paths": {}}}, "not OpenAPI 3.0/3.1 or Swagger 2.0"),
    ("openapi 4", {"api.json": {"openapi": "4.0.0", "paths": {}}}, "openapi/swagger is '4.0.0'"),
    ("paths a list", {"api.json": _v3(paths=[1])}, "expected a mapping, got list"),  # type: ignore[arg-type]
    (
        "parameter not a mapping",
        {"api.json": _op_with_params([5])},
        "a parameter must be a mapping",
    ),
    ("bad JSON", {"api.json": '{"openapi": "3.0.0",'}, "is not valid JSON"),
    ("bad YAML", {"api.yaml": "openapi: [\n"}, "is not valid YAML"),
    ("complex YAML key", {"api.yaml": "? [a, b]\n: c\n"}, "a mapping key must be a plain value"),
    ("5000-digit JSON number", {"api.json": '{"a": ' + "9" * 5000 + "}"}, "is not valid JSON"),
    ("5000-digit YAML number", {"api.yaml": "a: " + "9" * 5000 + "\n"}, "is not valid YAML"),
    ("deep JSON", {"api.json": "[" * 200_000}, "nests deeper than 128 levels"),
    (
        "deep YAML flow",
        {"api.yaml": "a: " + "[" * 200_000},
        "nests deeper than 128 levels | exceeded maximum nesting depth",  # libyaml's own cap
    ),
    ("deep YAML block", {"api.yaml": "- " * 200_000 + "x\n"}, "nests deeper than 128 levels"),
    ("deep YAML mappings", {"api.yaml": "".join(" " * i + "k:\n" for i in range(300))}, "deeper"),
    ("alias bomb", {"api.yaml": BOMB}, "once its YAML aliases are expanded"),
    ("recursive alias", {"api.yaml": "a: &a [1, *a]\n"}, "refers to its own enclosing anchor"),
    (
        "ref to /etc/passwd by ..",
        {"api.json": _op_with_params([{"$ref": "../../../../../../etc/passwd"}])},
        "leaves the description's folder",
    ),
    (
        "ref to file:///etc/passwd",
        {"api.json": _op_with_params([{"$ref": "file:///etc/passwd#/x"}])},
        "leaves the description's folder",
    ),
    (
        "schema ref outside the tree",
        {"api.json": _schema_op({"$ref": "../outside.json"})},
        "leaves the description's folder",
    ),
    (
        "parameter ref cycle",
        {
            "api.json": _op_with_params(
                [{"$ref": "#/components/parameters/a"}],
                parameters={
                    "a": {"$ref": "#/components/parameters/b"},
                    "b": {"$ref": "#/components/parameters/a"},
                },
            )
        },
        "$ref cycle",
    ),
    (
        "path item refers to itself",
        {"api.json": _v3({"/x": {"$ref": "#/paths/~1x"}})},
        "$ref cycle",
    ),
    (
        "cycle across files",
        {
            "api.json": _op_with_params([{"$ref": "a.json"}]),
            "a.json": {"$ref": "b.json"},
            "b.json": {"$ref": "a.json"},
        },
        "$ref cycle",
    ),
    (
        "schemas that only refer to each other",
        {
            "api.json": _schema_op(
                {"$ref": "#/components/schemas/A"},
                A={"$ref": "#/components/schemas/B"},
                B={"$ref": "#/components/schemas/A"},
            )
        },
        "only refer to each other",
    ),
    ("ref chain too long", {"api.json": _chain(40)}, "$ref chain longer than 32"),
    (
        "properties map by $ref inside itself",
        {
            "api.json": _schema_op(
                {"properties": {"$ref": "#/x-props"}},
            )
            | {"x-props": {"a": {"type": "object", "properties": {"$ref": "#/x-props"}}}}
        },
        "is used inside its own target",
    ),
    (
        "bad file in the tree",
        {"api.json": _op_with_params([{"$ref": "p.yaml"}]), "p.yaml": "a: [\n"},
        "p.yaml: is not valid YAML",
    ),
    (
        "bad --auth",
        {"api.json": _v3()},
        "--auth 'token:x': expected 'bearer', 'basic' or 'apikey",
    ),
]


def _write(root: Path, files: dict[str, Any]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, "utf-8")
        else:
            path.write_text(json.dumps(content), "utf-8")
    return root / next(iter(files))


@pytest.mark.parametrize(("name", "files", "fragment"), REFUSED, ids=[r[0] for r in REFUSED])
def test_hostile_description_is_refused(
    tmp_path: Path, name: str, files: dict[str, Any], fragment: str
) -> None:
    tree = tmp_path / "spec"
    root = _write(tree, files)
    auth = ("token:x",) if name == "bad --auth" else ()
    start = time.perf_counter()
    with pytest.raises(OpenApiError) as info:
        build_table(load_spec(root), name="acme/t", auth=auth)
    assert time.perf_counter() - start < 10  # bounded: no parser or walker runs away
    assert any(f in str(info.value) for f in fragment.split(" | ")), str(info.value)
    assert isinstance(info.value, ReflowError)
    if name != "bad --auth":  # names the file it is about
        assert info.value.file and Path(info.value.file).name in {*files, "passwd", "outside.json"}


def test_errors_name_the_json_path(tmp_path: Path) -> None:
    root = _write(tmp_path, {"api.json": _op_with_params([5])})
    with pytest.raises(OpenApiError) as info:
        build_table(load_spec(root), name="acme/t")
    assert info.value.path == '$.paths["/x"].get.parameters[0]'
    assert str(info.value).startswith(f"{tmp_path.name}/api.json: $.paths")


def test_size_limit_refuses_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "api.json"
    with big.open("wb") as fh:  # sparse: 64 MiB that take no disk and must not be read
        fh.truncate(64 << 20)
    start = time.perf_counter()
    with pytest.raises(OpenApiError, match="over the limit of"):
        load_spec(big)
    assert time.perf_counter() - start < 2


def test_referenced_file_over_the_size_limit(tmp_path: Path) -> None:
    root = _write(tmp_path, {"api.json": _op_with_params([{"$ref": "big.json"}])})
    (tmp_path / "big.json").write_text(json.dumps({"x": "y" * 5000}))
    with pytest.raises(OpenApiError, match=r"big\.json: is \d+ bytes, over the limit of 4096"):
        build_table(load_spec(root, limits=LoadLimits(max_file_bytes=4096)), name="acme/t")


def test_too_many_files(tmp_path: Path) -> None:
    params = [{"$ref": f"p{i}.json"} for i in range(5)]
    files: dict[str, Any] = {"api.json": _op_with_params(params)}
    files.update({f"p{i}.json": {"name": f"q{i}", "in": "query"} for i in range(5)})
    root = _write(tmp_path, files)
    with pytest.raises(OpenApiError, match="more than 3 files"):
        build_table(load_spec(root, limits=LoadLimits(max_files=3)), name="acme/t")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    root = _write(tmp_path, {"api.json": _op_with_params([{"$ref": "pipe.json"}])})
    os.mkfifo(tmp_path / "pipe.json")
    start = time.perf_counter()
    with pytest.raises(OpenApiError, match=r"pipe\.json: is not a regular file"):
        build_table(load_spec(root), name="acme/t")
    assert time.perf_counter() - start < 2


def test_symlink_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    outside.write_text(json.dumps({"name": "q", "in": "query"}))
    tree = tmp_path / "spec"
    root = _write(tree, {"api.json": _op_with_params([{"$ref": "link.json"}])})
    (tree / "link.json").symlink_to(outside)
    with pytest.raises(OpenApiError, match="leaves the description's folder"):
        build_table(load_spec(root), name="acme/t")
    # --tree widens the folder on purpose
    table = build_table(load_spec(root, tree=tmp_path), name="acme/t").table
    assert table["operations"]["get_x"]["parameters"][0]["name"] == "q"


# (name, files, report fragment): generated, the reference replaced by {} and reported
REPORTED: list[tuple[str, dict[str, Any], str]] = [
    (
        "remote https schema",
        {"api.json": _schema_op({"$ref": "https://example.com/s.json#/Foo"})},
        "remote reference https://example.com/s.json (never fetched)",
    ),
    (
        "remote http parameter",
        {"api.json": _op_with_params([{"$ref": "http://127.0.0.1:9/p.json"}])},
        "never fetched",
    ),
    (
        "dangling file",
        {"api.json": _schema_op({"$ref": "models/missing.yaml"})},
        "dangling reference: no file",
    ),
    (
        "dangling pointer",
        {"api.json": _schema_op({"$ref": "#/components/schemas/Nope"})},
        "'#/components/schemas/Nope' not resolved",
    ),
]


@pytest.mark.parametrize(("name", "files", "fragment"), REPORTED, ids=[r[0] for r in REPORTED])
def test_unresolvable_reference_becomes_empty_and_is_reported(
    tmp_path: Path, name: str, files: dict[str, Any], fragment: str
) -> None:
    root = _write(tmp_path, files)
    gen = build_table(load_spec(root), name="acme/t")
    assert any(fragment in line for line in gen.report), gen.report
    op = gen.table["operations"]["get_x"]
    if "parameter" in name:  # a parameter that resolved to {} has no name: dropped
        assert op["parameters"] == []
    else:
        assert op["responses"]["200"]["content"]["application/json"]["schema"] == {}
    assert gen.table["schemas"] == {}


def test_a_schema_that_is_not_a_mapping_is_dropped_and_reported(tmp_path: Path) -> None:
    root = _write(tmp_path, {"api.json": _schema_op({"$ref": "#/components/schemas/L"}, L=[1, 2])})
    gen = build_table(load_spec(root), name="acme/t")
    assert gen.table["schemas"] == {"L": {}}
    assert any("a schema must be a mapping, not list" in line for line in gen.report)


def test_refs_inside_examples_are_data(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "example": {"$ref": "../../etc/passwd", "schemas": [{"$ref": "https://x.test/"}]},
        "properties": {"a": {"type": "string", "examples": [{"$ref": "#/nowhere"}]}},
    }
    media = {"schema": schema, "examples": {"scim": {"value": {"$ref": "/etc/shadow"}}}}
    doc = _v3(
        {
            "/x": {
                "get": {
                    "responses": {
                        "200": {"description": "ok", "content": {"application/json": media}}
                    }
                }
            }
        }
    )
    root = _write(tmp_path, {"api.json": doc})
    gen = build_table(load_spec(root), name="acme/t")
    assert gen.report == []
    out = gen.table["operations"]["get_x"]["responses"]["200"]["content"]["application/json"]
    assert out == {"schema": {"type": "object", "properties": {"a": {"type": "string"}}}}


def test_recursive_schema_stays_a_reference(tmp_path: Path) -> None:
    node = {
        "type": "object",
        "properties": {
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}
        },
    }
    root = _write(
        tmp_path, {"api.json": _schema_op({"$ref": "#/components/schemas/Node"}, Node=node)}
    )
    table = build_table(load_spec(root), name="acme/t").table
    assert table["schemas"]["Node"]["properties"]["children"]["items"] == {"$ref": "#/schemas/Node"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200: ok\n404: missing\n", {"200": "ok", "404": "missing"}),  # asana's integer keys
        ("on: 1\nnull: 2\n1.5: 3\n", {"on": 1, "null": 2, "1.5": 3}),  # keys as written
        (
            "d: 2020-01-01\nt: 2001-12-14t21:59:43.10-05:00\n",
            {"d": "2020-01-01", "t": "2001-12-14t21:59:43.10-05:00"},
        ),
        ("n: .nan\ni: -.inf\nf: 1.5\n", {"n": ".nan", "i": "-.inf", "f": 1.5}),
        ("b: !!binary aGk=\n", {"b": "aGk="}),
        ("s: !!set {a, b}\n", {"s": {"a": None, "b": None}}),
        ("base: &b {x: 1}\nm: {<<: *b, y: 2}\n", {"base": {"x": 1}, "m": {"x": 1, "y": 2}}),
    ],
)
def test_yaml_loads_as_json_data(text: str, expected: Any) -> None:
    value = parse_document(text.encode(), "f.yaml")
    assert value == expected
    json.dumps(value, allow_nan=False)


def test_yaml_python_tags_are_refused() -> None:
    with pytest.raises(OpenApiError, match="is not valid YAML"):
        parse_document(b"a: !!python/object/apply:os.system ['true']\n", "f.yaml")


_CHILD = textwrap.dedent(
    """
    import json, sys, psutil
    from pathlib import Path
    from reflow import OpenApiError
    from reflow.tools._openapi_load import load_spec
    from reflow.tools._openapi_table import build_table
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = base
    for path in sys.argv[1:]:
        try:
            build_table(load_spec(path), name="acme/t")
        except OpenApiError:
            pass
        peak = max(peak, proc.memory_info().rss)
    print(json.dumps({"grew": peak - base}))
    """
)


def test_hostile_inputs_stay_within_memory(tmp_path: Path) -> None:
    """Deep nesting, an alias bomb and a 10 MiB description of one string: RSS grows by
    far less than the expanded or recursed size would need."""
    files = {
        "deep.json": "[" * 2_000_000,
        "deep.yaml": "- " * 2_000_000,
        "bomb.yaml": BOMB,
        "flat.json": json.dumps(_v3(**{"x-s": "y" * (10 << 20)})),
    }
    paths = [
        str(_write(tmp_path / name.replace(".", "_"), {name: text})) for name, text in files.items()
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *paths], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    grew = json.loads(proc.stdout)["grew"]
    assert grew < 200 << 20, grew
