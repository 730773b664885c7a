"""A signed pack of WGSL kernels: built, signed, verified, loaded, run; tampering refused;
no adapter fails the tick (not the load) or runs the declared CPU fallback; a chain of a pack
kernel and library GPU templates uploads once and reads back once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _wgsl_pack_support import (
    DOUBLE,
    DOUBLE_WGSL,
    EXAMPLE,
    KERNEL_PATH,
    Keys,
    make_keys,
    pack_bytes,
    run_node,
    template,
)
from click.testing import CliRunner

from reflow import Actor, Message, Network, template_actor
from reflow._core._catalog import register_template, unregister_template
from reflow._errors import PackIntegrityError, PackSignatureError, UntrustedKeyError
from reflow._gpu import GpuBuffer, NoGpuAdapterError, configure_gpu, gpu_counters, reset_device
from reflow._gpu._wgsl_engine import WgslTemplate
from reflow._loader._packs import list_packs, load_pack, unload_pack
from reflow._loader._plugins import engine_for
from reflow.abi._bundle import read_bundle, write_bundle
from reflow.abi._signing import signatures_to_toml
from reflow.library import decode_image, describe_template, encode_image
from reflow.tools._cli import main as pack_cli
from reflow.tools._pack_build import build_pack

IMAGE = np.random.default_rng(5).integers(0, 256, (24, 40, 4), dtype=np.uint8)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("wgsl-keys"))


@pytest.fixture(scope="module")
def example(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pack(EXAMPLE, out_dir=tmp_path_factory.mktemp("wgsl-dist"), key=keys.key)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    yield
    for p in list_packs():
        unload_pack(p.name)


def f32(values: Any) -> Message:
    return Message.bytes(np.asarray(values, dtype="<f4").tobytes())


def test_the_wgsl_engine_is_a_plugin_like_http_api() -> None:
    assert engine_for("wgsl").kind == "wgsl"


def test_example_builds_the_same_bytes_twice(keys: Keys, example: Path, tmp_path: Path) -> None:
    again = build_pack(EXAMPLE, out_dir=tmp_path, key=keys.key)
    assert again.read_bytes() == example.read_bytes()
    members = read_bundle(example).manifest.members()
    assert sorted(members) == [
        "README.md",
        "artifacts/wasm32-unknown-unknown/invert.wgsl",
        "artifacts/wasm32-unknown-unknown/saxpy.wgsl",
    ]


def test_load_registers_templates_and_describe_shows_bindings(keys: Keys, example: Path) -> None:
    pack = load_pack(example, trust=keys.store)
    assert sorted(pack.templates) == ["wgsl-kernels/invert", "wgsl-kernels/saxpy"]
    assert isinstance(template_actor("wgsl-kernels/saxpy"), WgslTemplate)
    info = describe_template("wgsl-kernels/saxpy")
    assert (info["engine"], info["inports"], info["outports"]) == ("wgsl", ["x", "y"], ["out"])
    assert info["wgsl"]["workgroup_size"] == [64, 1, 1]
    assert info["wgsl"]["dispatch"] == ["in:x"]
    assert info["wgsl"]["bindings_text"][2] == (
        "@group(0) @binding(2) var<storage, read_write> f32 <- out:out size=in:x"
    )
    assert "gpuMaxWorkgroups" in info["gpu_config"]


def test_inspect_shows_the_kernels(keys: Keys, example: Path) -> None:
    result = CliRunner().invoke(
        pack_cli, ["inspect", str(example), "--trust-dir", str(keys.store.path)]
    )
    assert result.exit_code == 0, result.output
    assert "wgsl main @workgroup_size(256,1,1) dispatch=[in:in]" in result.output
    assert "@group(0) @binding(0) var<storage, read> vec4<f32> image <- in:in" in result.output
    assert "wgsl       " in result.output  # the artifact kind column
    as_json = CliRunner().invoke(
        pack_cli, ["inspect", str(example), "--json", "--trust-dir", str(keys.store.path)]
    )
    assert '"workgroup_size": [' in as_json.output


def test_saxpy_and_invert_run_from_the_signed_pack(device: Any, keys: Keys, example: Path) -> None:
    load_pack(example, trust=keys.store)
    x, y = np.arange(300, dtype=np.float32), np.full(300, 0.5, np.float32)
    msgs, failures = run_node("wgsl-kernels/saxpy", {"x": f32(x), "y": f32(y)}, {"a": 3.0})
    assert failures == []
    handle = msgs[0]["data"]
    assert msgs[0]["type"] == "Gpu" and isinstance(handle, GpuBuffer)
    np.testing.assert_array_equal(handle.to_numpy(), 3.0 * x + 0.5)
    msgs, failures = run_node("wgsl-kernels/invert", {"in": encode_image(IMAGE)})
    assert failures == []
    out = decode_image(msgs[0]["data"].to_message(), "out")
    np.testing.assert_array_equal(out[..., :3], 255 - IMAGE[..., :3])
    np.testing.assert_array_equal(out[..., 3], IMAGE[..., 3])


def _retampered(
    data: bytes, *, kernel: bytes | None = None, manifest: bytes | None = None
) -> bytes:
    b = read_bundle(data)
    contents = dict(b.contents)
    if kernel is not None:
        contents[KERNEL_PATH] = kernel
    sig = signatures_to_toml(b.signatures)
    return write_bundle(manifest if manifest is not None else b.manifest_bytes, contents, sig)


def _changed_kernel(good: bytes, keys: Keys, other: Keys) -> bytes:
    return _retampered(good, kernel=DOUBLE.replace(b"2.0", b"3.0"))


def _changed_binding(good: bytes, keys: Keys, other: Keys) -> bytes:
    m = read_bundle(good).manifest_bytes
    assert m.count(b'size = "in:x"') == 1  # a still-valid declaration: the signature fails
    return _retampered(good, manifest=m.replace(b'size = "in:x"', b"size = 64"))


def _changed_workgroup(good: bytes, keys: Keys, other: Keys) -> bytes:
    m = read_bundle(good).manifest_bytes
    return _retampered(
        good, manifest=m.replace(b"workgroup_size = [\n    64,", b"workgroup_size = [\n    32,")
    )


def _wrong_key(good: bytes, keys: Keys, other: Keys) -> bytes:
    return pack_bytes(DOUBLE, key=other.key)


def _unsigned(good: bytes, keys: Keys, other: Keys) -> bytes:
    return pack_bytes(DOUBLE)


@pytest.mark.parametrize(
    ("tamper", "error", "fragment"),
    [
        (_changed_kernel, PackIntegrityError, "k.wgsl"),
        (_changed_binding, PackSignatureError, "signature"),
        (_changed_workgroup, PackSignatureError, "signature"),
        (_wrong_key, UntrustedKeyError, "not in the trust store"),
        (_unsigned, PackSignatureError, "is not signed"),
    ],
)
def test_tampered_kernel_packs_are_refused(
    keys: Keys, tmp_path: Path, tamper: Any, error: type[Exception], fragment: str
) -> None:
    other = make_keys(tmp_path, "stranger")
    good = pack_bytes(DOUBLE, key=keys.key)
    assert load_pack(good, trust=keys.store).name == "t"  # the untampered pack loads
    unload_pack("t")
    with pytest.raises(error) as info:
        load_pack(tamper(good, keys, other), trust=keys.store)
    assert fragment in str(info.value)
    assert list_packs() == []


@pytest.fixture(params=["switched-off", "no-such-adapter"])
def no_gpu(request: pytest.FixtureRequest) -> Iterator[None]:
    """No adapter, two ways: the GPU switched off, or an adapter asked for that no machine
    has (on a machine without any adapter both are simply the truth)."""
    if request.param == "switched-off":
        configure_gpu(enabled=False)
    else:
        configure_gpu(adapter="no-such-adapter-anywhere")
    reset_device()
    yield
    configure_gpu()
    reset_device()


def test_no_adapter_fails_the_tick_not_the_load(keys: Keys, no_gpu: None) -> None:
    load_pack(pack_bytes(DOUBLE, key=keys.key), trust=keys.store)  # loads without a GPU
    msgs, failures = run_node("t/k", {"x": f32([1, 2])})
    assert msgs == []
    (failure,) = failures
    assert isinstance(failure.exception, NoGpuAdapterError)
    assert "fallback='none'" in failure.error and "GPU adapter" in failure.error


class _CpuDouble(Actor):
    component = "t/cpu-double"
    inports = ["x"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        x = np.frombuffer(ctx.inputs["x"]["data"], "<f4")
        add = (ctx.config or {}).get("add", 0.0)
        ctx.done({"out": f32(x * 2 + add)})


def test_cpu_fallback_runs_the_declared_template_with_one_warning(
    keys: Keys, no_gpu: None, caplog: pytest.LogCaptureFixture
) -> None:
    wgsl = {**DOUBLE_WGSL, "fallback": "t/cpu-double"}
    load_pack(pack_bytes(DOUBLE, [template(wgsl)], key=keys.key), trust=keys.store)
    register_template("t/cpu-double", _CpuDouble(), owner="test")
    try:
        net = Network()
        net.register_actor("k", template_actor("t/k"))
        net.add_node("n", "k", {"fallback": "cpu", "add": 1.0})
        coll = net.collect("n", "out")
        with caplog.at_level(logging.WARNING, logger="reflow.gpu.wgsl"):
            net.add_initial("n", "x", f32([1, 2]))
            net.add_initial("n", "x", f32([3]))
            net.run(timeout=30).raise_for_failures()
        net.shutdown()
    finally:
        unregister_template("t/cpu-double")
    got = [np.frombuffer(m["data"], "<f4").tolist() for m in coll.messages]
    assert got == [[3.0, 5.0], [7.0]]
    assert sum("running CPU template t/cpu-double" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("fallback", "config", "fragment"),
    [
        ("", {"fallback": "cpu"}, "declares no CPU template"),
        ("t/missing", {"fallback": "cpu"}, "'t/missing' is not in the catalog"),
        ("", {"fallback": "gpu-please"}, "config 'fallback' must be one of"),
    ],
)
def test_fallback_errors_name_what_is_missing(
    keys: Keys, no_gpu: None, fallback: str, config: dict[str, Any], fragment: str
) -> None:
    wgsl = {**DOUBLE_WGSL, **({"fallback": fallback} if fallback else {})}
    load_pack(pack_bytes(DOUBLE, [template(wgsl)], key=keys.key), trust=keys.store)
    _, failures = run_node("t/k", {"x": f32([1])}, config)
    assert len(failures) == 1 and fragment in failures[0].error


def test_chain_with_library_gpu_templates_uploads_once_and_reads_back_once(
    device: Any, keys: Keys, example: Path
) -> None:
    load_pack(example, trust=keys.store)
    net = Network()
    chain = [
        ("invert", "wgsl-kernels/invert", {}),
        ("blur", "tpl_gpu_image_blur", {"sigma": 1.0}),
        ("again", "wgsl-kernels/invert", {}),
    ]
    for nid, tid, cfg in chain:
        net.register_actor(tid, template_actor(tid))
        net.add_node(nid, tid, cfg)
    net.register_actor("tpl_image_info", template_actor("tpl_image_info"))
    net.add_node("cpu", "tpl_image_info")
    net.add_connection("invert", "out", "blur", "in")
    net.add_connection("blur", "out", "again", "in")
    net.add_connection("again", "out", "cpu", "in")
    info = net.collect("cpu", "out")
    events = net.events()
    net.add_initial("invert", "in", encode_image(IMAGE))
    net.run(timeout=60).raise_for_failures()
    transfers = [e for e in events.drain() if e["_type"] == "GpuTransfer"]
    net.shutdown()
    counters = gpu_counters()
    assert (counters.uploads, counters.readbacks) == (1, 1)
    assert counters.bytes_up == counters.bytes_down == IMAGE.size * 4
    assert [(e["actorId"], e["uploads"], e["readbacks"]) for e in transfers] == [
        ("invert", 1, 0),
        ("again", 0, 1),  # read back by the CPU node, named after the GPU node it came from
    ]
    assert info.messages[0]["data"]["width"] == 40


def _readme_blocks() -> dict[str, list[str]]:
    text = (Path(__file__).resolve().parents[2] / "sdk-guest" / "README.md").read_text("utf-8")
    section = text.split("## Write a WGSL kernel", 1)[1]
    blocks: dict[str, list[str]] = {}
    for chunk in section.split("```")[1::2]:
        lang, _, body = chunk.partition("\n")
        blocks.setdefault(lang.strip(), []).append(body)
    return blocks


def test_the_sdk_guide_kernel_builds_loads_and_runs(
    device: Any, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "Write a WGSL kernel" section of sdk-guest/README.md, as written."""
    blocks = _readme_blocks()
    root = tmp_path / "my-pack"
    (root / "kernels").mkdir(parents=True)
    (root / "kernels" / "scale.wgsl").write_text(blocks["wgsl"][0], "utf-8")
    head = '[pack]\nname = "my-pack"\nversion = "0.1.0"\ntargets = []\n\n'
    (root / "pack.toml").write_text(head + blocks["toml"][0], "utf-8")
    build_pack(root, key=keys.key)
    monkeypatch.chdir(root)
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(keys.store.path))
    scope: dict[str, Any] = {}
    code = blocks["python"][0]
    exec(compile(code, "sdk-guest/README.md", "exec"), scope)
    values = scope["out"].messages[0]["data"].to_numpy()
    np.testing.assert_array_equal(values, np.full(4, 3.0, np.float32))


@pytest.mark.parametrize("upstream", [None, "tpl_gpu_image_grayscale"])
def test_a_vec4_image_kernel_refuses_images_without_four_channels(
    device: Any, keys: Keys, example: Path, upstream: str | None
) -> None:
    """RGB Bytes, or a 1-channel GPU image from a library template (4 x 8 x 4 values would
    pass a plain divisibility check): the tick fails naming the port, nothing is misread."""
    load_pack(example, trust=keys.store)
    net = Network()
    net.register_actor("inv", template_actor("wgsl-kernels/invert"))
    net.add_node("inv", "inv")
    image = IMAGE[:8, :16, :3] if upstream is None else IMAGE[:8, :16]
    first = "inv"
    if upstream is not None:
        net.register_actor(upstream, template_actor(upstream))
        net.add_node("up", upstream)
        net.add_connection("up", "out", "inv", "in")
        first = "up"
    net.add_initial(first, "in", encode_image(np.ascontiguousarray(image)))
    result = net.run(timeout=60)
    net.shutdown()
    (failure,) = result.failures
    assert failure.node == "inv" and "in-port 'in'" in failure.error
    assert "needs RGBA" in failure.error
