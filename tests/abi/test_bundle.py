"""reflow.abi._bundle: the .rflpack container — layout, determinism, strip, safe reading."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import zstandard

from reflow._errors import PackFormatError, PackIntegrityError, UnsafeArchiveError
from reflow.abi._bundle import (
    BundleLimits,
    add_signatures,
    artifact_entry,
    build_bundle,
    file_entry,
    read_bundle,
    strip_bundle,
    write_bundle,
)
from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
from reflow.abi._signing import generate_key, key_id, sign_manifest, verify_manifest

TRIPLES = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-gnu",
]


def fake_pack() -> tuple[PackManifest, dict[str, bytes]]:
    contents = {f"artifacts/{PORTABLE_TRIPLE}/m.wasm": b"\0asm" + b"w" * 100}
    arts = [artifact_entry("m", PORTABLE_TRIPLE, "wasm", *next(iter(contents.items())))]
    for i, t in enumerate(TRIPLES):
        path, data = f"artifacts/{t}/libm.so", bytes([i]) * 2000 + t.encode() * 50
        contents[path] = data
        arts.append(artifact_entry("m", t, "native", path, data))
    contents["README.md"] = b"# m\n"
    manifest = PackManifest(
        name="acme/m",
        version="0.1.0",
        abi="1.0",
        templates=(TemplateSpec("acme/m/t", "m", ("in",), ("out",)),),
        artifacts=tuple(arts),
        files=(file_entry("README.md", contents["README.md"]),),
        readme="README.md",
    )
    return manifest, contents


def members(data: bytes) -> list[str]:
    raw = zstandard.ZstdDecompressor().decompress(data)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        return tf.getnames()


def test_layout_and_round_trip() -> None:
    manifest, contents = fake_pack()
    key = generate_key()
    data = build_bundle(manifest, contents, [sign_manifest(manifest.to_toml(), key)])
    names = members(data)  # a standard tar reader sees a plain tar
    assert names[:2] == ["manifest.toml", "signature.toml"]
    assert names[2:] == sorted(contents)
    b = read_bundle(data)
    assert b.manifest == manifest and b.contents == contents
    assert b.present_triples() == (PORTABLE_TRIPLE, *sorted(TRIPLES))
    assert not b.is_stripped()
    assert verify_manifest(b.manifest_bytes, b.signatures, {key_id(key): key.public_key()})


def test_deterministic() -> None:
    manifest, contents = fake_pack()
    a = build_bundle(manifest, contents)
    b = build_bundle(manifest, dict(reversed(list(contents.items()))))
    assert a == b


def test_strip_keeps_signature_valid_and_shrinks() -> None:
    manifest, contents = fake_pack()
    key = generate_key()
    full = build_bundle(manifest, contents, [sign_manifest(manifest.to_toml(), key)])
    slim = strip_bundle(full, "x86_64-unknown-linux-gnu")
    b = read_bundle(slim)
    assert b.present_triples() == (PORTABLE_TRIPLE, "x86_64-unknown-linux-gnu")
    assert b.is_stripped()
    assert "README.md" in b.contents
    assert verify_manifest(b.manifest_bytes, b.signatures, {key_id(key): key.public_key()})
    assert len(slim) * 3 <= len(full) or len(slim) < len(full)
    assert strip_bundle(full, "x86_64-unknown-linux-gnu") == slim
    with pytest.raises(PackFormatError, match="no artifacts for 'riscv64gc-unknown-linux-gnu'"):
        strip_bundle(full, "riscv64gc-unknown-linux-gnu")
    with pytest.raises(PackFormatError, match="already stripped"):
        strip_bundle(slim, "aarch64-apple-darwin")


def test_head_only_and_files(tmp_path: Path) -> None:
    manifest, contents = fake_pack()
    key = generate_key()
    path = tmp_path / "p.rflpack"
    path.write_bytes(build_bundle(manifest, contents))
    signed = add_signatures(path, [sign_manifest(manifest.to_toml(), key)])
    assert add_signatures(signed, [sign_manifest(manifest.to_toml(), key)]) == signed
    path.write_bytes(signed)
    head = read_bundle(path, head_only=True)
    assert head.contents == {} and head.signatures[0].key_id == key_id(key)
    assert head.source == "p.rflpack"
    with pytest.raises(PackFormatError, match="cannot read"):
        read_bundle(tmp_path / "missing.rflpack")


def test_build_checks_contents() -> None:
    manifest, contents = fake_pack()
    with pytest.raises(PackFormatError, match="no content was given"):
        build_bundle(manifest, {k: v for k, v in contents.items() if k != "README.md"})
    with pytest.raises(PackFormatError, match="not listed in the manifest"):
        build_bundle(manifest, {**contents, "extra.txt": b"x"})
    with pytest.raises(PackIntegrityError, match=r"README\.md is 5 bytes"):
        build_bundle(manifest, {**contents, "README.md": b"# m!\n"})


# -- hostile containers ------------------------------------------------------------------------


def raw_tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def reg(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def z(raw: bytes, level: int = 3) -> bytes:
    return zstandard.ZstdCompressor(level=level).compress(raw)


def hostile(extra: list[tuple[tarfile.TarInfo, bytes | None]], first: bool = True) -> bytes:
    manifest, _ = fake_pack()
    head = [reg("manifest.toml", manifest.to_toml())] if first else []
    return z(raw_tar(head + extra))


def bomb() -> bytes:
    """A pack whose manifest claims a 64 MiB artifact of zeros: a few KB compressed."""
    big = bytes(64 << 20)
    arts = (artifact_entry("m", PORTABLE_TRIPLE, "wasm", "big.wasm", big),)
    m = PackManifest(
        name="b", version="0.1.0", abi="1.0", templates=(TemplateSpec("b/t", "m"),), artifacts=arts
    )
    cctx = zstandard.ZstdCompressor(level=1)
    return cctx.compress(raw_tar([reg("manifest.toml", m.to_toml()), reg("big.wasm", big)]))


MANIFEST_OK = fake_pack()[0].to_toml()


def signed_size(size_field: bytes) -> bytes:
    """A first member whose header says size ``size_field`` (e.g. b"-1"), then 64 MiB of
    zeros: a negative size must be refused before any of them is decompressed."""
    raw = bytearray(raw_tar([reg("manifest.toml", MANIFEST_OK)]))
    raw[124:136] = size_field.ljust(11, b" ") + b"\0"
    raw[148:156] = b"        "
    raw[148:155] = b"%06o\0" % sum(raw[:512])
    return z(bytes(raw[:512]) + bytes(64 << 20), level=1)


HOSTILE = [
    ("negative size", signed_size(b"-1"), PackFormatError, "malformed size"),
    ("signed size", signed_size(b"+7"), PackFormatError, "malformed size"),
    ("traversal", hostile([reg("../../etc/evil", b"x")]), UnsafeArchiveError, "unsafe path"),
    ("absolute", hostile([reg("/etc/evil", b"x")]), UnsafeArchiveError, "unsafe path"),
    (
        "symlink",
        hostile([link("README.md", "/etc/passwd")]),
        UnsafeArchiveError,
        "is a symbolic link (to '/etc/passwd')",
    ),
    (
        "hardlink",
        hostile([link("README.md", "manifest.toml", tarfile.LNKTYPE)]),
        UnsafeArchiveError,
        "is a hard link",
    ),
    (
        "directory",
        hostile([link("artifacts", "", tarfile.DIRTYPE)]),
        UnsafeArchiveError,
        "tar type '5'",
    ),
    ("fifo", hostile([link("fifo", "", tarfile.FIFOTYPE)]), UnsafeArchiveError, "tar type '6'"),
    (
        "unlisted member",
        hostile([reg("extra.txt", b"x")]),
        UnsafeArchiveError,
        "'extra.txt' is not listed in the manifest",
    ),
    (
        "duplicate",
        hostile([reg("README.md", b"# m\n"), reg("README.md", b"# m\n")]),
        UnsafeArchiveError,
        "appears twice",
    ),
    (
        "oversize member",
        hostile([reg("README.md", b"# m\n" * 10)]),
        UnsafeArchiveError,
        "member 'README.md' declares 40 bytes, over its limit of 4",
    ),
    (
        "manifest not first",
        hostile([reg("README.md", b"# m\n"), reg("manifest.toml", MANIFEST_OK)], first=False),
        PackFormatError,
        "first member must be manifest.toml",
    ),
    (
        "signature not second",
        hostile([reg("README.md", b"# m\n"), reg("signature.toml", b"")]),
        PackFormatError,
        "must directly follow",
    ),
    (
        "100 MB manifest",
        z(raw_tar([reg("manifest.toml", b"#" * (100 << 20))]), 1),
        UnsafeArchiveError,
        "the manifest declares 104857600 bytes, over its limit",
    ),
    ("zstd bomb", bomb(), UnsafeArchiveError, "decompression bomb"),
    ("not zstd", b"PK\x03\x04 zip file", PackFormatError, "no zstd frame"),
    (
        "corrupt zstd",
        hostile([])[:20] + b"\xff" * 8 + hostile([])[28:],
        PackFormatError,
        "zstd stream is corrupt",
    ),
    ("truncated", hostile([reg("README.md", b"# m\n")])[:-30], PackFormatError, ""),
    ("empty", z(b"\0" * 1024), PackFormatError, "empty archive"),
    (
        "flipped artifact",
        hostile([reg("README.md", b"# M\n")]),
        PackIntegrityError,
        "README.md does not match the manifest: sha256 expected",
    ),
    (
        "bad manifest",
        z(raw_tar([reg("manifest.toml", b"format = 1\n")])),
        PackFormatError,
        "manifest field templates: is required",
    ),
]


@pytest.mark.parametrize(
    ("data", "error", "fragment"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_containers(data: bytes, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        read_bundle(data)
    assert fragment in str(info.value)


def test_bad_header_checksum() -> None:
    raw = bytearray(raw_tar([reg("manifest.toml", MANIFEST_OK)]))
    raw[0] ^= 1
    with pytest.raises(PackFormatError, match="bad checksum"):
        read_bundle(z(bytes(raw)))


def test_integrity_error_names_file_and_hashes() -> None:
    manifest, contents = fake_pack()
    path = f"artifacts/{PORTABLE_TRIPLE}/m.wasm"
    bad = dict(contents)
    bad[path] = b"\0asm" + b"x" * 100
    with pytest.raises(PackIntegrityError) as info:
        read_bundle(write_bundle(manifest.to_toml(), bad))
    err = info.value
    assert err.file == path
    assert err.expected == manifest.members()[path]
    assert err.actual != err.expected and err.actual in str(err)


def test_limits_are_configurable() -> None:
    manifest, contents = fake_pack()
    data = build_bundle(manifest, contents)
    with pytest.raises(UnsafeArchiveError, match="more than 2 members"):
        read_bundle(data, limits=BundleLimits(max_members=2))
    with pytest.raises(UnsafeArchiveError, match="over its limit of 100"):
        read_bundle(data, limits=BundleLimits(max_member=100))
