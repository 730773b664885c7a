"""reflow._loader._packs: load_pack / inspect_pack / list_packs — the round trip from sources to a
running graph, and a table of hostile packs, each refused with its error class and message."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from reflow import Actor, Message, Network, template_actor, template_list
from reflow._core._catalog import register_template, template_owner, unregister_template
from reflow._errors import (
    ABIVersionError,
    PackError,
    PackFormatError,
    PackIntegrityError,
    PackNotFoundError,
    PackSignatureError,
    PackVetoError,
    PlatformError,
    TemplateConflictError,
    UnsafeArchiveError,
    UntrustedKeyError,
)
from reflow._loader._packs import (
    _grants_for,
    cache_root,
    inspect_pack,
    installed_packs,
    list_packs,
    load_pack,
    unload_pack,
)
from reflow._loader._plugins import register_plugin, unregister_plugin
from reflow._loader._trust import TrustStore
from reflow._sandbox._guest_host import GuestGrants
from reflow.abi._bundle import read_bundle, strip_bundle, write_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, host_triples, parse_manifest
from reflow.abi._signing import (
    generate_key,
    key_id,
    load_private_key,
    sign_manifest,
    signatures_to_toml,
    write_keypair,
)
from reflow.abi._version import pack_abi_version
from reflow.hookspecs import hookimpl
from reflow.tools._pack_build import build_pack

PACKS = Path(__file__).resolve().parent.parent / "packs"
HOST = host_triples()[0] if host_triples() else None


@dataclass
class Built:
    key: Any
    pub: Path
    bytes_pack: Path  # reflow/bytes: wasm + 5 native triples
    math_pack: Path  # reflow/math: wasm only, 4 templates


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("packs")
    priv, pub, _ = write_keypair(root / "keys" / "publisher")
    key = load_private_key(priv)
    return Built(
        key,
        pub,
        build_pack(PACKS / "bytes-native", out_dir=root / "dist", key=key),
        build_pack(PACKS / "math-wasm", out_dir=root / "dist", key=key),
    )


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    yield
    for p in list_packs():
        unload_pack(p.name)


@pytest.fixture
def trusted(built: Built) -> TrustStore:
    store = TrustStore()
    store.add(built.pub)
    return store


def run_one(
    template: str, inputs: dict[str, Any], config: dict[str, Any] | None = None, out: str = "out"
) -> list[Any]:
    net = Network()
    net.register_actor("t", template_actor(template))
    net.add_node("n", "t", config or {})
    coll = net.collect("n", out)
    for port, msg in inputs.items():
        net.add_initial("n", port, msg)
    net.run(timeout=20)
    net.shutdown()
    return list(coll.messages)


# -- round trip ------------------------------------------------------------------------------


def test_round_trip_build_strip_verify_load_run(
    built: Built, trusted: TrustStore, tmp_path: Path
) -> None:
    full = built.bytes_pack
    info = inspect_pack(full)
    assert info.signer == key_id(built.key) and info.signature_status.startswith("valid")
    assert len(info.present_triples) == 6 and not info.stripped
    assert HOST is None or info.loads_as == {"bytes": f"native ({HOST})"}
    assert HOST is not None
    slim = tmp_path / f"slim-{HOST}.rflpack"
    slim.write_bytes(strip_bundle(full, HOST))
    assert slim.stat().st_size * 3 <= full.stat().st_size  # target: stripped <= 1/3 of full
    sinfo = inspect_pack(slim)  # verifies without re-signing
    assert sinfo.stripped and sinfo.signer == key_id(built.key)
    assert sinfo.present_triples == (PORTABLE_TRIPLE, HOST)

    pack = load_pack(slim)
    assert pack.artifacts["bytes"].kind == "native" and pack.signer == key_id(built.key)
    assert {"reflow/bytes/length", "reflow/bytes/fnv1a", "reflow/bytes/reverse"} <= set(
        template_list()
    )
    assert list_packs() == [pack]
    load_pack(built.math_pack)

    # one graph with a native node and sandboxed nodes side by side
    net = Network()
    for tid in ("reflow/bytes/length", "reflow/math/add", "reflow/math/sum"):
        net.register_actor(tid, template_actor(tid))
    net.add_node("len", "reflow/bytes/length")
    net.add_node("add", "reflow/math/add", {"add": 100})
    net.add_node("sum", "reflow/math/sum")
    net.add_connection("len", "out", "add", "in")
    net.add_connection("add", "out", "sum", "in")
    coll = net.collect("sum", "out")
    for text in ("hello", "wasm!", "xyz"):
        net.add_initial("len", "in", Message.string(text))
    net.run(timeout=20)
    net.shutdown()
    assert [m["data"] for m in coll.messages] == [105, 210, 313]


def test_wasm_preferred_and_stripped_to_foreign_triple(
    built: Built, trusted: TrustStore, tmp_path: Path
) -> None:
    foreign = next(t for t in ("aarch64-apple-darwin", "x86_64-apple-darwin") if t != HOST)
    slim = tmp_path / "foreign.rflpack"
    slim.write_bytes(strip_bundle(built.bytes_pack, foreign))
    pack = load_pack(slim)  # no host library in it: falls back to the portable wasm
    assert pack.artifacts["bytes"].kind == "wasm"
    assert run_one("reflow/bytes/reverse", {"in": Message.string("abc")}) == [Message.bytes(b"cba")]
    unload_pack("reflow/bytes")
    pack = load_pack(built.bytes_pack, prefer="wasm")
    assert pack.artifacts["bytes"].kind == "wasm"


def test_math_templates_run(built: Built, trusted: TrustStore) -> None:
    load_pack(built.math_pack)
    assert run_one("reflow/math/clamp", {"in": Message.integer(500)}, {"max": 42}) == [
        Message.integer(42)
    ]
    assert run_one("reflow/math/multiply", {"a": Message.integer(6), "b": Message.integer(7)}) == [
        Message.integer(42)
    ]


# -- keys limited to pack names (trust add --for) ---------------------------------------------


@pytest.mark.parametrize(
    "patterns, loads",
    [
        (("reflow/*",), True),
        (("other/tools", "reflow/math"), True),
        (("*",), True),
        (("other/*",), False),
        (("reflow/bytes",), False),
        (("reflow",), False),
    ],
)
def test_key_limited_to_pack_names(
    built: Built, tmp_path: Path, patterns: tuple[str, ...], loads: bool
) -> None:
    store = TrustStore(tmp_path / "scoped")
    kid = store.add(built.pub, names=patterns)
    if loads:
        assert load_pack(built.math_pack, trust=store).signer == kid
        return
    with pytest.raises(UntrustedKeyError) as info:
        load_pack(built.math_pack, trust=store)
    msg = str(info.value)
    assert kid in msg and "'reflow/math'" in msg and all(repr(p) in msg for p in patterns)
    assert info.value.key_id == kid and list_packs() == []
    # out of scope is "untrusted", not "tampered": allow_unsigned loads it, sandboxed only
    with pytest.warns(UserWarning, match="WITHOUT a verified signature"):
        assert load_pack(built.math_pack, trust=store, allow_unsigned=True).signer is None
    assert inspect_pack(built.math_pack, trust=store).signer is None


def test_unlimited_key_still_loads_and_warns_once(
    built: Built,
    trusted: TrustStore,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reflow._loader import _trust

    monkeypatch.setattr(_trust, "_warned_unscoped", set())
    kid = key_id(built.key)
    with caplog.at_level("WARNING", logger=_trust.log.name):
        load_pack(built.math_pack)
        load_pack(built.bytes_pack, prefer="wasm")
    warned = [r.getMessage() for r in caplog.records if "ANY name" in r.getMessage()]
    assert len(warned) == 1 and kid in warned[0] and "--for" in warned[0]


def test_a_second_signer_in_scope_is_enough(built: Built, tmp_path: Path) -> None:
    """A pack signed by two trusted keys loads when one of them may sign its name."""
    b = read_bundle(built.math_pack)
    other = generate_key()
    sigs = [*b.signatures, sign_manifest(b.manifest_bytes, other)]
    both = tmp_path / "both.rflpack"
    both.write_bytes(write_bundle(b.manifest_bytes, b.contents, signatures_to_toml(sigs)))
    store = TrustStore(tmp_path / "scoped")
    store.add(built.pub, names=("other/*",))
    oid = store.add(other.public_key(), names=("reflow/math",))
    assert load_pack(both, trust=store).signer == oid


def test_build_is_deterministic(built: Built, tmp_path: Path) -> None:
    again = build_pack(PACKS / "bytes-native", out_dir=tmp_path, key=built.key)
    assert again.read_bytes() == built.bytes_pack.read_bytes()
    assert strip_bundle(again, PORTABLE_TRIPLE) == strip_bundle(built.bytes_pack, PORTABLE_TRIPLE)


def test_idempotent_load_and_by_name(built: Built, trusted: TrustStore) -> None:
    a = load_pack(built.math_pack)
    assert load_pack(built.math_pack) is a
    assert load_pack("reflow/math") is a
    assert unload_pack("reflow/math") and not unload_pack("reflow/math")
    assert "reflow/math/add" not in template_list()
    b = load_pack("reflow/math")  # from the cache, verified again
    assert b is not a and b.digest == a.digest and b.source == str(a.directory)
    assert installed_packs() == [("reflow/math", "0.1.0")]
    assert cache_root().name == "packs"
    with pytest.raises(PackNotFoundError, match="no pack 'reflow/nope'"):
        load_pack("reflow/nope")


def test_other_version_of_a_loaded_pack(built: Built, trusted: TrustStore, tmp_path: Path) -> None:
    load_pack(built.math_pack)
    b = read_bundle(built.math_pack)
    m2 = b.manifest.with_(version="0.2.0").to_toml()
    other = tmp_path / "math-0.2.0.rflpack"
    other.write_bytes(
        write_bundle(m2, b.contents, signatures_to_toml([sign_manifest(m2, built.key)]))
    )
    with pytest.raises(PackError, match=r"'reflow/math' 0\.1\.0 is already loaded"):
        load_pack(other)


def test_allow_unsigned_is_loud_and_sandboxed_only(built: Built, tmp_path: Path) -> None:
    unsigned = tmp_path / "unsigned.rflpack"
    b = read_bundle(built.bytes_pack)
    unsigned.write_bytes(write_bundle(b.manifest_bytes, b.contents))
    with pytest.warns(UserWarning, match="WITHOUT a verified signature"):
        pack = load_pack(unsigned, allow_unsigned=True)
    assert pack.signer is None and pack.artifacts["bytes"].kind == "wasm"


def test_cached_artifact_is_rehashed(built: Built, trusted: TrustStore) -> None:
    pack = load_pack(built.math_pack)
    unload_pack("reflow/math")
    art = pack.directory / pack.artifacts["math"].path
    data = bytearray(art.read_bytes())
    data[-1] ^= 0xFF
    art.write_bytes(bytes(data))
    with pytest.raises(PackIntegrityError, match="modified after extraction") as info:
        load_pack(built.math_pack)
    assert info.value.expected == pack.artifacts["math"].sha256
    assert info.value.file == str(art)


def test_grants_are_limited_to_requested_hosts(built: Built) -> None:
    m = read_bundle(built.math_pack, head_only=True).manifest
    m = m.with_(capabilities={"http": ("api.example.com",)})
    g = _grants_for(m, GuestGrants(http_hosts=("api.example.com", "evil.example")))
    assert g.http_hosts == ("api.example.com",)
    assert _grants_for(m, None) is None


def test_veto_and_after_hooks(built: Built, trusted: TrustStore) -> None:
    seen: list[str] = []

    class Policy:
        @hookimpl
        def reflow_before_pack_load(
            self, manifest: Any, source: str, signer: str | None
        ) -> str | None:
            return "math is forbidden here" if manifest.name == "reflow/math" else None

        @hookimpl
        def reflow_after_pack_load(self, pack: Any) -> None:
            seen.append(pack.name)

    name = register_plugin(Policy(), name="test-policy")
    try:
        with pytest.raises(PackVetoError, match="plugin 'test-policy' refused") as info:
            load_pack(built.math_pack)
        assert info.value.reason == "math is forbidden here"
        load_pack(built.bytes_pack)
        assert seen == ["reflow/bytes"]
    finally:
        unregister_plugin(name)


# -- hostile packs -----------------------------------------------------------------------------


def resign(
    b: Any, key: Any, manifest: bytes | None = None, contents: dict[str, bytes] | None = None
) -> bytes:
    mb = manifest if manifest is not None else b.manifest_bytes
    sig = signatures_to_toml([sign_manifest(mb, key)]) if key is not None else None
    return write_bundle(mb, contents if contents is not None else b.contents, sig)


def flip_member(member: str) -> Callable[[Built], bytes]:
    def make(bt: Built) -> bytes:
        b = read_bundle(bt.bytes_pack)
        if member == "manifest.toml":
            mb = b.manifest_bytes.replace(b"Byte-level", b"Byte-levEl")
            return write_bundle(mb, b.contents, b.signature_bytes)
        if member == "signature.toml":
            sig = bytearray(b.signature_bytes or b"")
            i = sig.index(b'signature = "') + len(b'signature = "')
            sig[i] = ord("A") if sig[i] != ord("A") else ord("B")
            return write_bundle(b.manifest_bytes, b.contents, bytes(sig))
        contents = dict(b.contents)
        data = bytearray(contents[member])
        data[len(data) // 2] ^= 0x01
        contents[member] = bytes(data)
        return write_bundle(b.manifest_bytes, contents, b.signature_bytes)

    return make


def wrong_key(bt: Built) -> bytes:
    return resign(read_bundle(bt.bytes_pack), generate_key())


def unsigned(bt: Built) -> bytes:
    return resign(read_bundle(bt.bytes_pack), None)


def no_host_triple(bt: Built) -> bytes:
    b = read_bundle(bt.bytes_pack)
    arts = tuple(a for a in b.manifest.artifacts if a.triple not in (PORTABLE_TRIPLE, HOST))
    m = b.manifest.with_(artifacts=arts).to_toml()
    keep = {a.path for a in arts} | {f.path for f in b.manifest.files}
    return resign(b, bt.key, m, {k: v for k, v in b.contents.items() if k in keep})


def abi(version: str) -> Callable[[Built], bytes]:
    def make(bt: Built) -> bytes:
        b = read_bundle(bt.bytes_pack)
        return resign(b, bt.key, b.manifest.with_(abi=version).to_toml())

    return make


def raw_tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(
    name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE, target: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    info.size = len(data or b"")
    return info, data


def crafted(
    extra: Callable[[Any], list[tuple[tarfile.TarInfo, bytes | None]]],
) -> Callable[[Built], bytes]:
    def make(bt: Built) -> bytes:
        b = read_bundle(bt.bytes_pack)
        head = [
            entry("manifest.toml", b.manifest_bytes),
            entry("signature.toml", b.signature_bytes),
        ]
        return zstandard.ZstdCompressor(level=1).compress(raw_tar(head + extra(b)))

    return make


def bomb(bt: Built) -> bytes:
    b = read_bundle(bt.bytes_pack)
    big = bytes(64 << 20)  # a manifest that claims it: only the limits stop it
    wasm = f"artifacts/{PORTABLE_TRIPLE}/bytes.wasm"
    m = b.manifest_bytes.replace(str(len(b.contents[wasm])).encode(), str(len(big)).encode())
    sig = signatures_to_toml([sign_manifest(m, bt.key)])  # a trusted publisher gone rogue
    return zstandard.ZstdCompressor(level=1).compress(
        raw_tar([entry("manifest.toml", m), entry("signature.toml", sig), entry(wasm, big)])
    )


def huge_manifest(bt: Built) -> bytes:
    return zstandard.ZstdCompressor(level=1).compress(
        raw_tar([entry("manifest.toml", b"#" * (100 << 20))])
    )


def corrupt_frame(bt: Built) -> bytes:
    data = bytearray(bt.bytes_pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


MEMBERS = [
    "manifest.toml",
    "signature.toml",
    f"artifacts/{PORTABLE_TRIPLE}/bytes.wasm",
    "artifacts/x86_64-unknown-linux-gnu/libbytes.so",
    "artifacts/aarch64-apple-darwin/libbytes.dylib",
    "artifacts/x86_64-pc-windows-gnu/bytes.dll",
    "README.md",
    "LICENSE",
]

HOSTILE: list[tuple[str, Callable[[Built], bytes], type[Exception], str]] = [
    (
        "flip manifest.toml",
        flip_member("manifest.toml"),
        PackSignatureError,
        "does not match signature.toml",
    ),
    (
        "flip signature.toml",
        flip_member("signature.toml"),
        PackSignatureError,
        "manifest or signature was altered",
    ),
    *[
        (
            f"flip {m}",
            flip_member(m),
            PackIntegrityError,
            f"{m} does not match the manifest: sha256 expected",
        )
        for m in MEMBERS[2:]
    ],
    ("flip a compressed byte", corrupt_frame, PackError, ""),
    ("wrong key", wrong_key, UntrustedKeyError, "which is not in the trust store"),
    ("unsigned", unsigned, PackSignatureError, "is not signed"),
    ("missing host triple", no_host_triple, PlatformError, "available triples: "),
    (
        "ABI major mismatch",
        abi("2.0"),
        ABIVersionError,
        f"built for guest ABI 2.0 but this host speaks ABI {pack_abi_version()}",
    ),
    (
        "ABI minor newer",
        abi("1.9"),
        ABIVersionError,
        f"newer than this host's ABI {pack_abi_version()}",
    ),
    (
        "path traversal",
        crafted(lambda b: [entry("../../escape.so", b"x")]),
        UnsafeArchiveError,
        "unsafe path",
    ),
    (
        "absolute path",
        crafted(lambda b: [entry("/tmp/escape.so", b"x")]),
        UnsafeArchiveError,
        "unsafe path",
    ),
    (
        "symlink entry",
        crafted(lambda b: [entry("README.md", kind=tarfile.SYMTYPE, target="/etc/passwd")]),
        UnsafeArchiveError,
        "is a symbolic link",
    ),
    (
        "hardlink entry",
        crafted(lambda b: [entry("README.md", kind=tarfile.LNKTYPE, target="manifest.toml")]),
        UnsafeArchiveError,
        "is a hard link",
    ),
    (
        "duplicate member",
        crafted(lambda b: [entry("README.md", b.contents["README.md"])] * 2),
        UnsafeArchiveError,
        "appears twice",
    ),
    ("zstd bomb", bomb, UnsafeArchiveError, "decompression bomb"),
    ("100 MB manifest", huge_manifest, UnsafeArchiveError, "the manifest declares 104857600"),
]


@pytest.mark.parametrize(
    ("make", "error", "fragment"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_packs(
    built: Built,
    trusted: TrustStore,
    tmp_path: Path,
    make: Callable[[Built], bytes],
    error: type[Exception],
    fragment: str,
) -> None:
    if HOST is None:
        pytest.skip("no native triple for this machine")
    path = tmp_path / "hostile.rflpack"
    path.write_bytes(make(built))
    before = set(template_list())
    with pytest.raises(error) as info:
        load_pack(path)
    assert fragment in str(info.value)
    assert set(template_list()) == before and list_packs() == []
    assert not list((tmp_path / "cache" / "packs").glob("*/*/*.so"))


def test_integrity_error_attributes(built: Built, trusted: TrustStore, tmp_path: Path) -> None:
    member = f"artifacts/{PORTABLE_TRIPLE}/bytes.wasm"
    path = tmp_path / "p.rflpack"
    path.write_bytes(flip_member(member)(built))
    with pytest.raises(PackIntegrityError) as info:
        load_pack(path)
    err = info.value
    expected = parse_manifest(
        read_bundle(built.bytes_pack, head_only=True).manifest_bytes
    ).members()[member]
    assert (err.file, err.expected) == (member, expected)
    assert err.actual != expected and err.actual in str(err)


def test_tampered_is_refused_even_with_allow_unsigned(
    built: Built, trusted: TrustStore, tmp_path: Path
) -> None:
    path = tmp_path / "p.rflpack"
    path.write_bytes(flip_member("manifest.toml")(built))
    with warnings.catch_warnings(), pytest.raises(PackSignatureError, match="was altered"):
        warnings.simplefilter("error")
        load_pack(path, allow_unsigned=True)


def test_a_pack_cannot_take_another_packs_template_ids(
    built: Built, trusted: TrustStore, tmp_path: Path
) -> None:
    # template ids are bound to the signed pack name: a trusted publisher renaming a copy of
    # reflow/math cannot squat 'reflow/math/add'
    b = read_bundle(built.math_pack)
    with pytest.raises(
        PackFormatError,
        match="template id 'reflow/math/add' must be the pack name or start with 'someone/else/'",
    ):
        b.manifest.with_(name="someone/else")
    load_pack(built.math_pack)
    assert template_owner("reflow/math/add") == "reflow/math"


class _Echo(Actor):
    component = "echo"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": ctx.inputs["in"]})


def test_template_id_taken_by_a_python_plugin_is_a_conflict(
    built: Built, trusted: TrustStore
) -> None:
    register_template("reflow/math/add", _Echo(), owner="plugin:squatter")
    try:
        with pytest.raises(TemplateConflictError, match="'reflow/math/add'") as info:
            load_pack(built.math_pack)
        assert info.value.template == "reflow/math/add"
    finally:
        unregister_template("reflow/math/add")


def test_manifest_ports_must_match_module(
    built: Built, trusted: TrustStore, tmp_path: Path
) -> None:
    b = read_bundle(built.math_pack)
    m = b.manifest
    t0 = m.templates[0]
    lying = m.with_(
        templates=(t0.__class__(**{**t0.__dict__, "outports": ("result",)}), *m.templates[1:])
    ).to_toml()
    path = tmp_path / "lying.rflpack"
    path.write_bytes(resign(b, built.key, lying))
    with pytest.raises(PackFormatError, match=r"declares ports in=\['in'\] out=\['result'\]"):
        load_pack(path)


def test_inspect_runs_no_code_and_reports_trust(built: Built, tmp_path: Path) -> None:
    info = inspect_pack(built.bytes_pack)  # empty trust store
    assert info.signer is None and "not in the trust store" in info.signature_status
    d = info.to_dict()
    assert d["name"] == "reflow/bytes" and d["abi_compatible"]
    assert d["members"]["manifest.toml"] > 0 and len(d["artifacts"]) == 6
    assert all(a["present"] for a in d["artifacts"])
    assert [t["id"] for t in d["templates"]] == [
        "reflow/bytes/length",
        "reflow/bytes/fnv1a",
        "reflow/bytes/reverse",
    ]
    path = tmp_path / "abi2.rflpack"
    path.write_bytes(abi("2.0")(built))
    assert not inspect_pack(path).abi_ok


def test_resolve_hook_supplies_a_pack_by_name(built: Built, trusted: TrustStore) -> None:
    asked: list[tuple[str, str | None]] = []

    class Registry:
        @hookimpl
        def reflow_resolve_pack(self, name: str, version: str | None) -> Path | None:
            asked.append((name, version))
            return built.math_pack if name == "reflow/math" else None

    register_plugin(Registry(), name="test-registry")
    try:
        pack = load_pack("reflow/math@^0.1")
        assert asked == [("reflow/math", "^0.1")] and pack.source == str(built.math_pack)
        with pytest.raises(PackNotFoundError):
            load_pack("reflow/other")
    finally:
        unregister_plugin("test-registry")


def test_tampered_cache_is_refused_by_name(built: Built, trusted: TrustStore) -> None:
    pack = load_pack(built.math_pack)
    unload_pack("reflow/math")
    cached = pack.directory / "manifest.toml"
    cached.write_bytes(cached.read_bytes().replace(b"Integer arithmetic", b"Integer arithmetiX"))
    with pytest.raises(PackSignatureError, match="was altered"):
        load_pack("reflow/math")
    assert load_pack(built.math_pack).directory == pack.directory  # the file still verifies
    unload_pack("reflow/math")
    assert load_pack("reflow/math").digest == pack.digest  # and repaired the cached manifest


# -- the engine loads exactly the bytes that were re-hashed (no re-read of the cache) -------


def _swap_after_rehash(
    monkeypatch: pytest.MonkeyPatch, evil: Callable[[bytes], bytes]
) -> list[Path]:
    """Make rehash_artifact's caller race the worst way: right after the cached artifact
    verified, its file is replaced by other bytes. Returns the files swapped."""
    import reflow._loader._packs as packs

    orig = packs.rehash_artifact
    swapped: list[Path] = []

    def rehash(d: Path, art: Any, pack: str) -> bytes:
        data = orig(d, art, pack)
        target = d.joinpath(*art.path.split("/"))
        tmp = target.with_name(target.name + ".evil")
        tmp.write_bytes(evil(data))
        tmp.replace(target)
        swapped.append(target)
        return data

    monkeypatch.setattr(packs, "rehash_artifact", rehash)
    return swapped


def test_wasm_engine_gets_the_verified_bytes_not_the_swapped_file(
    built: Built, trusted: TrustStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reflow._sandbox._wasm_engine import WasmEngine

    received: list[Any] = []
    orig_load = WasmEngine.load

    def spy(self: WasmEngine, wasm: Any, *, name: str | None = None) -> Any:
        received.append(wasm)
        return orig_load(self, wasm, name=name)

    monkeypatch.setattr(WasmEngine, "load", spy)
    # still a valid module (a custom section appended), but other bytes
    swapped = _swap_after_rehash(monkeypatch, lambda good: good + b"\x00\x05\x04evil")
    pack = load_pack(built.math_pack)
    art = pack.artifacts["math"]
    assert swapped and swapped[0].read_bytes() != b""  # the cache file really was replaced
    assert sha256_of(swapped[0].read_bytes()) != art.sha256
    assert len(received) == 1 and isinstance(received[0], bytes)
    assert sha256_of(received[0]) == art.sha256
    actor: Any = pack.templates["reflow/math/add"]
    assert actor.module.sha256 == art.sha256  # what runs is what the manifest signed
    assert run_one("reflow/math/add", {"in": Message.integer(1)}, {"add": 41}) == [
        Message.integer(42)
    ]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_native_library_loads_a_private_copy_of_the_verified_bytes(
    built: Built, trusted: TrustStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if HOST is None:
        pytest.skip("no native triple for this machine")
    import ctypes
    import stat

    opened: list[tuple[Path, str, int]] = []
    real_cdll = ctypes.CDLL

    def cdll(name: Any, *args: Any, **kwargs: Any) -> Any:
        p = Path(name)
        opened.append((p, sha256_of(p.read_bytes()), stat.S_IMODE(p.parent.stat().st_mode)))
        return real_cdll(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    swapped = _swap_after_rehash(monkeypatch, lambda good: b"\x7fELF not this library")
    pack = load_pack(built.bytes_pack)
    art = pack.artifacts["bytes"]
    assert art.kind == "native" and swapped
    assert swapped[0].read_bytes() == b"\x7fELF not this library"
    assert len(opened) == 1
    path, digest, mode = opened[0]
    assert digest == art.sha256  # dlopen'ed bytes are the manifest's
    assert not path.resolve().is_relative_to(cache_root().resolve())
    assert os.name != "posix" or mode == 0o700
    actor: Any = pack.templates["reflow/bytes/length"]
    assert actor.library.loaded_from == path and actor.library.path == swapped[0]
    assert [m["data"] for m in run_one("reflow/bytes/length", {"in": Message.string("hello")})] == [
        5
    ]
    # the same verified bytes again: the same private copy (and library), not a new one
    unload_pack("reflow/bytes")
    swapped[0].write_bytes(path.read_bytes())  # (the swapped cache file would not verify)
    load_pack(built.bytes_pack)
    assert len(opened) == 2 and opened[-1][0] == path


def test_extism_engine_loads_the_verified_bytes_not_the_cache_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    import reflow._sandbox._extism_engine as ext
    from reflow._loader._plugins import engine_for

    seen: list[Any] = []

    def load(wasm: Any, *, name: str | None = None, grants: Any = None) -> Any:
        seen.append(wasm if isinstance(wasm, bytes) else Path(wasm).read_bytes())
        return SimpleNamespace(has_metadata=True)

    monkeypatch.setattr(ext.ExtismModule, "load", staticmethod(load))
    cached = tmp_path / "cache" / "plugin.wasm"
    cached.parent.mkdir()
    cached.write_bytes(b"swapped")
    engine = engine_for("extism")
    assert (
        engine.load_artifact(
            cached,
            artifact=SimpleNamespace(entry="e"),
            templates=[],
            manifest=SimpleNamespace(name="p"),
            grants=None,
            data=b"verified",
        )
        == {}
    )
    assert seen == [b"verified"]
    engine.load_artifact(
        cached,
        artifact=SimpleNamespace(entry="e"),
        templates=[],
        manifest=SimpleNamespace(name="p"),
        grants=None,
    )
    assert seen[-1] == b"swapped"  # without data=: the path, as before


def test_rehash_refuses_links_and_fifos_without_blocking(
    built: Built, trusted: TrustStore, tmp_path: Path
) -> None:
    from reflow._loader._pack_cache import rehash_artifact

    pack = load_pack(built.math_pack)
    art = pack.artifacts["math"]
    assert sha256_of(rehash_artifact(pack.directory, art, pack.name)) == art.sha256
    target = pack.directory / art.path
    good = tmp_path / "good.wasm"
    good.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(good)
    with pytest.raises(PackIntegrityError, match="not a plain file"):
        rehash_artifact(pack.directory, art, pack.name)
    if hasattr(os, "mkfifo"):
        target.unlink()
        os.mkfifo(target)
        with pytest.raises(PackIntegrityError, match="not a plain file"):
            rehash_artifact(pack.directory, art, pack.name)
