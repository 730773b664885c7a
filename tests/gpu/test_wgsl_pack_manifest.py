"""The ``[templates.wgsl]`` manifest table and the kernel it describes, checked without a GPU:
bad tables name their field; a manifest that does not match its shader is refused at load
naming both declarations; hostile kernel text is refused in bounded time; ``pack.toml``
``[[kernels]]`` mistakes are named."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _wgsl_pack_support import (
    DOUBLE,
    DOUBLE_WGSL,
    KERNEL_PATH,
    Keys,
    make_keys,
    manifest_doc,
    pack_bytes,
    template,
)

from reflow._errors import PackFormatError, ReflowError
from reflow._gpu import GpuKernelError
from reflow._loader._packs import list_packs, load_pack, unload_pack
from reflow.abi._bundle import artifact_entry, read_bundle
from reflow.abi._manifest import manifest_from_dict, parse_manifest
from reflow.tools._pack_build import build_pack

Edit = Callable[[dict[str, Any]], None]


def _wgsl(edit: Callable[[dict[str, Any]], None]) -> Edit:
    """An edit of the first template's wgsl table."""

    def apply(doc: dict[str, Any]) -> None:
        edit(doc["templates"][0]["wgsl"])

    return apply


def _binding(i: int, **changes: Any) -> Edit:
    def edit(w: dict[str, Any]) -> None:
        for k, v in changes.items():
            if v is None:
                w["bindings"][i].pop(k, None)
            else:
                w["bindings"][i][k] = v

    return _wgsl(edit)


def _set(**changes: Any) -> Edit:
    def edit(w: dict[str, Any]) -> None:
        for k, v in changes.items():
            if v is None:
                w.pop(k, None)
            else:
                w[k] = v

    return _wgsl(edit)


def _dup_binding(w: dict[str, Any]) -> None:
    w["bindings"][2] = {**w["bindings"][2], "binding": 1}


def _no_wgsl_table(doc: dict[str, Any]) -> None:
    del doc["templates"][0]["wgsl"]


def _wasm_entry_with_table(doc: dict[str, Any]) -> None:
    doc["artifacts"][0]["kind"] = "wasm"
    doc["artifacts"][0]["path"] = "artifacts/wasm32-unknown-unknown/k.wasm"


def _native_triple(doc: dict[str, Any]) -> None:
    doc["artifacts"][0]["triple"] = "x86_64-unknown-linux-gnu"


def _unbound_inport(doc: dict[str, Any]) -> None:
    doc["templates"][0]["inports"] = ["x", "extra"]


def _unbound_outport(doc: dict[str, Any]) -> None:
    doc["templates"][0]["outports"] = ["out", "spare"]


def _self_fallback(doc: dict[str, Any]) -> None:
    doc["templates"][0]["wgsl"]["fallback"] = "t/k"


def _image_out_of_array(w: dict[str, Any]) -> None:
    w["bindings"][1]["format"] = "image"


def _image_elements_differ(w: dict[str, Any]) -> None:
    w["bindings"][0]["format"] = w["bindings"][1]["format"] = "image"
    w["bindings"][1]["element"] = "vec4<f32>"


BAD_MANIFESTS = [
    (_binding(0, type="texture"), "templates[0].wgsl.bindings[0].type", "not one of storage"),
    (_binding(0, element="f64"), "templates[0].wgsl.bindings[0].element", "not one of f32"),
    (_binding(0, element=3), "templates[0].wgsl.bindings[0].element", "must be a string"),
    (_binding(0, inport="nope"), "templates[0].wgsl.bindings[0].inport", "not an in-port"),
    (_binding(1, outport="nope"), "templates[0].wgsl.bindings[1].outport", "not an out-port"),
    (_unbound_inport, "templates[0].inports", "'extra' has no binding"),
    (_unbound_outport, "templates[0].outports", "'spare' has no binding"),
    (_wgsl(_dup_binding), "templates[0].wgsl.bindings[2].binding", "already declared"),
    (_binding(0, group=4), "templates[0].wgsl.bindings[0].group", "outside 0..3"),
    (_binding(0, group=True), "templates[0].wgsl.bindings[0].group", "must be an integer"),
    (_binding(0, binding=None), "templates[0].wgsl.bindings[0].binding", "is required"),
    (_binding(0, binding=1000), "templates[0].wgsl.bindings[0].binding", "outside 0..999"),
    (_binding(0, access="write"), "templates[0].wgsl.bindings[0].access", "not one of read"),
    (_binding(1, access="read"), "templates[0].wgsl.bindings[1].access", "binds an in-port"),
    (_binding(0, access="read_write"), "templates[0].wgsl.bindings[0].access", "out-port"),
    (_binding(0, config="k"), "templates[0].wgsl.bindings[0]", "exactly one of"),
    (_binding(0, inport=None), "templates[0].wgsl.bindings[0]", "got none"),
    (_binding(2, access="read"), "templates[0].wgsl.bindings[2].access", "storage bindings only"),
    (_binding(2, config=None, inport="x"), "templates[0].wgsl.bindings[2].inport", "config"),
    (_binding(1, size=None), "templates[0].wgsl.bindings[1].size", "is required"),
    (_binding(1, size="in:nope"), "templates[0].wgsl.bindings[1].size", "no in-port"),
    (_binding(1, size="len(x)"), "templates[0].wgsl.bindings[1].size", "not a size rule"),
    (_binding(1, size=0), "templates[0].wgsl.bindings[1].size", "outside 1.."),
    (_binding(0, size=4), "templates[0].wgsl.bindings[0].size", "out-port bindings only"),
    (_binding(0, format="png"), "templates[0].wgsl.bindings[0].format", "not one of array"),
    (_binding(0, format="image", element="u32"), "bindings[0].format", "f32 or vec4<f32>"),
    (_wgsl(_image_out_of_array), "templates[0].wgsl.bindings[1].size", "image input"),
    (_wgsl(_image_elements_differ), "templates[0].wgsl.bindings[1].element", "holds what"),
    (_binding(0, colour="red"), "templates[0].wgsl.bindings[0].colour", "unknown key"),
    (_set(workgroup_size=[512]), "templates[0].wgsl.workgroup_size[0]", "outside 1..256"),
    (_set(workgroup_size=[1, 1, 65]), "templates[0].wgsl.workgroup_size[2]", "outside 1..64"),
    (_set(workgroup_size=[16, 16, 2]), "templates[0].wgsl.workgroup_size", "512 invocations"),
    (_set(workgroup_size=[0]), "templates[0].wgsl.workgroup_size[0]", "outside 1..256"),
    (_set(workgroup_size=[1, 1, 1, 1]), "templates[0].wgsl.workgroup_size", "1 to 3"),
    (_set(workgroup_size=None), "templates[0].wgsl.workgroup_size", "is required"),
    (_set(workgroup_size=[64.0]), "templates[0].wgsl.workgroup_size[0]", "must be an integer"),
    (_set(dispatch=None), "templates[0].wgsl.dispatch", "1 to 3 size rules"),
    (_set(dispatch=[]), "templates[0].wgsl.dispatch", "1 to 3 size rules"),
    (_set(dispatch=["in:y"]), "templates[0].wgsl.dispatch[0]", "no in-port"),
    (_set(dispatch=[1, "cfg:n"]), "templates[0].wgsl.dispatch[1]", "not a size rule"),
    (_set(entry_point="1main"), "templates[0].wgsl.entry_point", "not a WGSL function name"),
    (_set(fallback="bad id!"), "templates[0].wgsl.fallback", "not a template id"),
    (_self_fallback, "templates[0].wgsl.fallback", "names the template itself"),
    (_set(bindings=[]), "templates[0].wgsl.bindings", "at least one binding"),
    (_set(bindings=[1]), "templates[0].wgsl.bindings[0]", "must be a table"),
    (_set(threads=4), "templates[0].wgsl.threads", "unknown key"),
    (_no_wgsl_table, "templates[0].wgsl", "is required"),
    (_wasm_entry_with_table, "templates[0].wgsl", "no artifact of kind 'wgsl'"),
    (_native_triple, "artifacts[0].triple", "belongs under wasm32-unknown-unknown"),
]


@pytest.mark.parametrize(("edit", "field", "fragment"), BAD_MANIFESTS)
def test_bad_wgsl_tables_name_their_field(edit: Edit, field: str, fragment: str) -> None:
    doc = manifest_doc(DOUBLE, [template(DOUBLE_WGSL)])
    edit(doc)
    with pytest.raises(PackFormatError) as info:
        manifest_from_dict(doc)
    assert field in str(info.value) and fragment in str(info.value)
    assert info.value.field.endswith(field)  # type: ignore[attr-defined]


def test_wgsl_table_not_a_table() -> None:
    doc = manifest_doc(DOUBLE, [{**template(None), "wgsl": "main"}])
    with pytest.raises(PackFormatError, match=r"templates\[0\]\.wgsl: must be a table"):
        manifest_from_dict(doc)


def test_the_table_round_trips_through_toml() -> None:
    m = manifest_from_dict(manifest_doc(DOUBLE, [template(DOUBLE_WGSL)]))
    again = parse_manifest(m.to_toml())
    assert again == m and again.to_toml() == m.to_toml()
    assert again.templates[0].wgsl is not None
    assert again.templates[0].wgsl.workgroup_size == (64, 1, 1)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("wgsl-keys"))


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    yield
    for p in list_packs():
        unload_pack(p.name)


def _sub(old: bytes, new: bytes) -> bytes:
    assert old in DOUBLE
    return DOUBLE.replace(old, new)


MISMATCHED = [
    (
        _sub(b"@group(0) @binding(2) var<uniform> add: f32;", b"const add: f32 = 1.0;"),
        ["manifest declares", "@group(0) @binding(2) var<uniform> f32 <- config:add", "shader"],
    ),
    (
        _sub(
            b"var<uniform> add: f32;",
            b"var<uniform> add: f32;\n@group(1) @binding(0) var<uniform> more: f32;",
        ),
        ["shader declares @group(1) @binding(0) var<uniform> more: f32", "does not declare"],
    ),
    (
        _sub(b"var<storage, read> x", b"var<storage, read_write> x"),
        ["var<storage, read> f32 <- in:x", "var<storage, read_write> x: array<f32>"],
    ),
    (
        _sub(b"x: array<f32>", b"x: array<u32>"),
        ["var<storage, read> f32 <- in:x", "x: array<u32>"],
    ),
    (
        _sub(b"var<uniform> add: f32", b"var<storage, read> add: array<f32>"),
        ["var<uniform> f32 <- config:add", "var<storage, read> add"],
    ),
    (_sub(b"fn main(", b"fn start("), ["entry_point 'main'", "compute entry points: start"]),
    (_sub(b"@compute ", b""), ["entry_point 'main'", "compute entry points: none"]),
    (
        _sub(b"@workgroup_size(64)", b"@workgroup_size(32)"),
        ["workgroup_size [64, 1, 1]", "(32, 1, 1)"],
    ),
    (_sub(b"@workgroup_size(64)", b"@workgroup_size(N)"), ["must be integer literals"]),
    (_sub(b"@binding(1)", b"@binding(ONE)"), ["@binding(ONE) is not an integer literal"]),
    (_sub(b"@group(0) @binding(1)", b"@binding(1)"), ["without @group"]),
    (_sub(b"fn main", b"/* unclosed\nfn main"), ["comment is never closed"]),
    (DOUBLE + b"\xff\xfe", ["not UTF-8"]),
    (b"   \n", ["empty"]),
    (DOUBLE + b"\0", ["NUL"]),
    (DOUBLE + b"//" + b"x" * (1 << 20), ["over the limit of 1048576"]),
]


@pytest.mark.parametrize(("kernel", "fragments"), MISMATCHED)
def test_a_kernel_that_does_not_match_its_manifest_is_refused_at_load(
    keys: Keys, kernel: bytes, fragments: list[str]
) -> None:
    with pytest.raises(GpuKernelError) as info:
        load_pack(pack_bytes(kernel, key=keys.key), trust=keys.store)
    text = str(info.value)
    assert "pack 't' kernel " + KERNEL_PATH in text
    for fragment in fragments:
        assert fragment in text
    assert list_packs() == []


def test_comments_and_attribute_spacing_are_read_like_wgsl(keys: Keys) -> None:
    kernel = (
        b"/* header /* nested */ still comment @group(9) @binding(9) var<uniform> no: f32; */\n"
        b"// @group(7) @binding(7) var<uniform> nor: f32;\n"
        + DOUBLE.replace(b"@group(0) @binding(0)", b"@binding( 0u ) @group(0i)\n")
    )
    assert load_pack(pack_bytes(kernel, key=keys.key), trust=keys.store).name == "t"


def _in_main(code: bytes) -> bytes:
    return DOUBLE.replace(b"out[i] = x[i] * 2.0 + add;", code)


def _chain(n: int, calls: int = 1) -> bytes:
    """Functions f1..fn, each calling the one before ``calls`` times."""
    fns = [b"fn f0(v: f32) -> f32 { return v; }"]
    for k in range(1, n + 1):
        body = b" + ".join(b"f%d(v)" % (k - 1) for _ in range(calls))
        fns.append(b"fn f%d(v: f32) -> f32 { return %s; }" % (k, body))
    return b"\n".join(fns) + _in_main(b"out[i] = f%d(x[i]);" % n)


# (kernel, loads, message fragment): the classes that took wgpu-native down or made it
# compile for minutes are refused before wgpu sees them, naming the limit.
HOSTILE_TEXT = [
    (b"/*" * 250_000 + b"*/" * 250_000 + DOUBLE, True, ""),  # deep comments, good kernel
    (b"@a " * 300_000 + DOUBLE, False, "more than 4096 tokens"),
    (b"@group(" + b"(" * 500_000, False, "nest deeper than 64"),
    (b"@group(0) @binding(0) var<" + b"<" * 500_000, False, ""),
    (b"@group(0) @binding(0) var<storage> x: " + b"array<" * 150_000, False, "types nest"),
    (b"fn " * 300_000, False, "more than 4096 tokens"),
    (b"/*" * 500_000, False, "never closed"),
    (_in_main(b"out[i] = " + b"(" * 3000 + b"x[i]" + b")" * 3000 + b";"), False, "deeper"),
    (_in_main(b"out[i] = x[i]" + b" + 1.0" * 20_000 + b";"), False, "4096 tokens"),
    (b"alias T = " + b"array<" * 5000 + b"f32" + b", 1>" * 5000 + b";\n" + DOUBLE, False, "types"),
    (_chain(2000), False, "more than 128 functions"),
    (_chain(12, calls=4), False, "with its calls inlined"),  # 4^12 copies once inlined
    (_chain(3, calls=2), True, ""),
    # local arrays: llvmpipe took 27 s for one array<vec4<f32>, 1024>, 16 GB for 16 M
    (
        _in_main(b"var big: array<vec4<f32>, 1024>; big[i % 7u] = vec4f(x[i]); out[i] = big[3].x;"),
        False,
        "over 1024 scalars",
    ),
    (b"var<private> big: array<f32, 16777216>;\n" + DOUBLE, False, "over 1024 scalars"),
    (
        b"alias A = array<f32, 100>;\nvar<private> big: array<A, 100>;\n" + DOUBLE,
        False,
        "over 1024",
    ),
    (
        b"struct S { a: array<f32, 600> }\nvar<private> p: S;\nvar<private> q: S;\n" + DOUBLE,
        False,
        "over 1024",
    ),
    (b"const N = 5000u;\nvar<private> big: array<f32, N>;\n" + DOUBLE, False, "over 1024"),
    (
        b"override N: u32 = 4u;\nvar<private> big: array<f32, N>;\n" + DOUBLE,
        False,
        "integer literal or a const",
    ),
    (
        b"struct A { b: B }\nstruct B { a: A }\nvar<private> p: A;\n" + DOUBLE,
        False,
        "contains itself",
    ),
    (b"const W = array<f32, 9>(1, 2, 1, 2, 4, 2, 1, 2, 1);\n" + DOUBLE, True, ""),
    (
        b"@group(1) @binding(0) var<uniform> lut: array<vec4<f32>, 4096>;\n" + DOUBLE,
        False,
        "the shader declares @group(1)",
    ),
    (
        _in_main(
            b"var v = x[i]; if (v > 1.0) { v = 1.0; }"
            + b" else if (v > 1.0) { v = 1.0; }" * 20_000
            + b" out[i] = v;"
        ),
        False,
        "more than 256 'else if'",
    ),
    (
        b"fn a(v: f32) -> f32 { return b(v); }\nfn b(v: f32) -> f32 { return a(v); }\n" + DOUBLE,
        False,
        "no recursion",
    ),
    (
        _in_main(
            b"var v0 = x[i];"
            + b"".join(b"let v%d = v%d + 1.0;" % (k + 1, k) for k in range(9000))
            + b"out[i] = v9000;"
        ),
        False,
        "with its calls inlined",
    ),
]


@pytest.mark.parametrize(
    ("kernel", "loads", "fragment"), HOSTILE_TEXT, ids=range(len(HOSTILE_TEXT))
)
def test_hostile_kernel_text_is_read_in_bounded_time(
    keys: Keys, kernel: bytes, loads: bool, fragment: str
) -> None:
    start = time.perf_counter()
    try:
        load_pack(pack_bytes(kernel, key=keys.key), trust=keys.store)
        refused = None
    except ReflowError as exc:
        refused = exc
    assert time.perf_counter() - start < 10  # linear passes; generous for a loaded machine
    assert (refused is None) is loads, refused
    if refused is not None:
        assert isinstance(refused, (GpuKernelError, PackFormatError))
        assert fragment in str(refused)


def _project(root: Path, pack_toml: str, kernel: bytes = DOUBLE) -> Path:
    (root / "kernels").mkdir(parents=True)
    (root / "kernels" / "k.wgsl").write_bytes(kernel)
    (root / "pack.toml").write_text(pack_toml, "utf-8")
    return root


_HEAD = '[pack]\nname = "t"\nversion = "1.0.0"\ntargets = []\n\n'
_KERNEL = '[[kernels]]\nname = "k"\nsource = "kernels/k.wgsl"\n\n'
_TEMPLATE = """
[[templates]]
id = "t/k"
entry = "k"
inports = ["x"]
outports = ["out"]

[templates.wgsl]
workgroup_size = [64]
dispatch = ["in:x"]

[[templates.wgsl.bindings]]
group = 0
binding = 0
type = "storage"
access = "read"
element = "f32"
inport = "x"

[[templates.wgsl.bindings]]
group = 0
binding = 1
type = "storage"
access = "read_write"
element = "f32"
outport = "out"
size = "in:x"

[[templates.wgsl.bindings]]
group = 0
binding = 2
type = "uniform"
element = "f32"
config = "add"
"""


@pytest.mark.parametrize(
    ("pack_toml", "kernel", "error", "fragment"),
    [
        (_HEAD + _KERNEL, DOUBLE, PackFormatError, "needs its templates listed in [[templates]]"),
        (_HEAD, DOUBLE, PackFormatError, "[[modules]] or [[kernels]]"),
        (_HEAD + _KERNEL.replace("k.wgsl", "k.txt") + _TEMPLATE, DOUBLE, PackFormatError, ".wgsl"),
        (
            _HEAD + _KERNEL.replace("kernels/k.wgsl", "../k.wgsl") + _TEMPLATE,
            DOUBLE,
            PackFormatError,
            "not a safe relative path",
        ),
        (
            _HEAD + _KERNEL.replace('name = "k"', 'name = "k"\nlang = "wgsl"') + _TEMPLATE,
            DOUBLE,
            PackFormatError,
            "kernels[0].lang",
        ),
        (_HEAD + _KERNEL + _KERNEL + _TEMPLATE, DOUBLE, PackFormatError, "twice"),
        (
            _HEAD + _KERNEL.replace("k.wgsl", "gone.wgsl") + _TEMPLATE,
            DOUBLE,
            PackFormatError,
            "cannot read",
        ),
        (_HEAD + _KERNEL + _TEMPLATE, DOUBLE + b"\xff", GpuKernelError, "not UTF-8"),
        (
            _HEAD + _KERNEL + _TEMPLATE,
            DOUBLE.replace(b"@binding(2)", b"@binding(3)"),
            GpuKernelError,
            "the shader has no @group(0) @binding(2)",
        ),
    ],
)
def test_pack_toml_kernel_mistakes_are_named_at_build(
    tmp_path: Path, pack_toml: str, kernel: bytes, error: type[Exception], fragment: str
) -> None:
    root = _project(tmp_path / "proj", pack_toml, kernel)
    with pytest.raises(error) as info:
        build_pack(root, out_dir=tmp_path / "dist")
    assert fragment in str(info.value)
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())


def test_a_kernel_project_builds_without_a_compiler(tmp_path: Path) -> None:
    root = _project(tmp_path / "proj", _HEAD + _KERNEL + _TEMPLATE)
    out = build_pack(root, out_dir=tmp_path / "dist")
    m = read_bundle(out).manifest
    assert [a.to_dict() for a in m.artifacts] == [
        artifact_entry("k", "wasm32-unknown-unknown", "wgsl", KERNEL_PATH, DOUBLE).to_dict()
    ]
    assert copy.deepcopy(m.templates[0].wgsl) == m.templates[0].wgsl


@pytest.mark.parametrize(
    ("attr", "size"),
    [
        (b"@workgroup_size(8, 8)", (8, 8, 1)),
        (b"@workgroup_size(8u, 4i, 2)", (8, 4, 2)),
        (b"@workgroup_size( 256 )", (256, 1, 1)),
        (b"@workgroup_size(4 * 4)", None),
    ],
)
def test_workgroup_sizes_are_read_from_literals(attr: bytes, size: Any) -> None:
    from reflow._gpu._wgsl_source import read_shader

    text = DOUBLE.replace(b"@workgroup_size(64)", attr).decode()
    assert read_shader(text, "k").entry_points == {"main": size}
