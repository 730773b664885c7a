"""One set of member rules: ``read_bundle`` and ``scan_bundle`` give the same verdict.

Both read through ``_bundle_members.MemberWalk``; before the split each had its own copy of the
rules and they disagreed (``scan_bundle`` accepted data after the end-of-archive marker and an
empty ``signature.toml``, and parsed the manifest and signature without their size limits).
Every container here is assembled by hand (ustar headers field by field); each row is run
through both readers on the same file and must give the same class and the same message.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
import zstandard

from reflow._errors import PackFormatError, PackIntegrityError, UnsafeArchiveError
from reflow.abi._bundle import BundleLimits, read_bundle, scan_bundle, sha256_hex, stream_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE

WASM = b"\0asm\x01\0\0\0" + b"w" * 300
README = b"# m\n"
MANIFEST = tomli_w.dumps(
    {
        "format": 1,
        "name": "acme/m",
        "version": "0.1.0",
        "abi": "1.0",
        "templates": [{"id": "acme/m/t", "entry": "m", "inports": ["in"], "outports": ["out"]}],
        "artifacts": [
            {
                "entry": "m",
                "triple": PORTABLE_TRIPLE,
                "kind": "wasm",
                "path": "a/m.wasm",
                "sha256": sha256_hex(WASM),
                "size": len(WASM),
            }
        ],
        "files": [{"path": "README.md", "sha256": sha256_hex(README), "size": len(README)}],
    }
).encode()


def ustar(name: bytes, data: bytes, kind: bytes = b"0", size_field: bytes | None = None) -> bytes:
    h = bytearray(512)
    h[0 : len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % len(data) if size_field is None else size_field
    h[136:148] = b"00000000000\0"
    h[148:156] = b" " * 8
    h[156:157] = kind
    if kind == b"2":
        h[157:165] = b"/etc/pwd"
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h) + data + b"\0" * (-len(data) % 512)


M = ustar(b"manifest.toml", MANIFEST)
W = ustar(b"a/m.wasm", WASM)
R = ustar(b"README.md", README)
END = b"\0" * 1024


def pack(tar: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True).compress(
        tar
    )


TIGHT = BundleLimits(max_members=2)
SMALL_MANIFEST = BundleLimits(max_manifest=64)
ROWS: list[tuple[str, bytes, BundleLimits | None, type[Exception], str]] = [
    (
        "data after the end marker",
        M + R + W + END + b"\0" * 512 + b"x" + b"\0" * 511,
        None,
        PackFormatError,
        "data after the tar end-of-archive marker",
    ),
    (
        "one zero block then a header",
        M + R + b"\0" * 512 + W + END,
        None,
        PackFormatError,
        "end-of-archive marker is not two zero blocks",
    ),
    ("no end marker", M + R + W, None, PackFormatError, "ends without the end-of-archive marker"),
    ("cut inside a header", M + R[:300], None, PackFormatError, "ends without a tar header"),
    ("empty archive", END, None, PackFormatError, "empty archive, no manifest.toml"),
    (
        "manifest not first",
        R + M + W + END,
        None,
        PackFormatError,
        "the first member must be manifest.toml",
    ),
    (
        "signature not second",
        M + R + ustar(b"signature.toml", b"") + END,
        None,
        PackFormatError,
        "signature.toml must directly follow",
    ),
    ("member twice", M + R + R + END, None, UnsafeArchiveError, "appears twice"),
    (
        "unlisted member",
        M + ustar(b"extra.txt", b"x") + END,
        None,
        UnsafeArchiveError,
        "'extra.txt' is not listed in the manifest",
    ),
    (
        "member larger than listed",
        M + ustar(b"README.md", README + b"!") + END,
        None,
        UnsafeArchiveError,
        "declares 5 bytes, over its limit of 4",
    ),
    (
        "member smaller than listed",
        M + ustar(b"README.md", b"# m") + END,
        None,
        PackIntegrityError,
        "README.md is 3 bytes but the manifest says 4",
    ),
    (
        "member bytes changed",
        M + ustar(b"README.md", b"# n\n") + END,
        None,
        PackIntegrityError,
        "README.md does not match the manifest: sha256 expected",
    ),
    (
        "symbolic link",
        M + ustar(b"README.md", b"", kind=b"2") + END,
        None,
        UnsafeArchiveError,
        "is a symbolic link",
    ),
    (
        "directory",
        M + ustar(b"a/", b"", kind=b"5") + END,
        None,
        UnsafeArchiveError,
        "packs may only hold plain files",
    ),
    (
        "path escapes",
        M + ustar(b"../README.md", README) + END,
        None,
        UnsafeArchiveError,
        "unsafe path",
    ),
    (
        "empty signature",
        M + ustar(b"signature.toml", b"") + R + END,
        None,
        PackFormatError,
        "signature",
    ),
    ("too many members", M + R + W + END, TIGHT, UnsafeArchiveError, "more than 2 members"),
    (
        "manifest over its limit",
        M + R + W + END,
        SMALL_MANIFEST,
        UnsafeArchiveError,
        "the manifest declares",
    ),
    (
        "size field with a sign",
        M + ustar(b"README.md", README, size_field=b"-0000000004\0") + END,
        None,
        PackFormatError,
        "malformed size",
    ),
]


def _verdict(fn: object, *args: object, **kw: object) -> tuple[type[Exception], str]:
    try:
        fn(*args, **kw)  # type: ignore[operator]
    except Exception as exc:  # the verdict is what is compared
        return type(exc), str(exc)
    raise AssertionError(f"{fn} accepted the pack")


@pytest.mark.parametrize(
    ("tar", "limits", "cls", "fragment"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_read_and_scan_give_one_verdict(
    tmp_path: Path, tar: bytes, limits: BundleLimits | None, cls: type[Exception], fragment: str
) -> None:
    path = tmp_path / "m.rflpack"
    path.write_bytes(pack(tar))
    read = _verdict(read_bundle, path, limits=limits)
    scan = _verdict(scan_bundle, path, limits=limits)
    assert read == scan
    assert read[0] is cls and fragment in read[1], read
    assert "m.rflpack" in read[1] or "acme/m" in read[1]  # the file, or the pack it names


def test_a_good_pack_reads_and_scans_alike(tmp_path: Path) -> None:
    path = tmp_path / "m.rflpack"
    path.write_bytes(pack(M + R + W + END))
    b, s = read_bundle(path), scan_bundle(path)
    assert (b.manifest, b.manifest_bytes, b.signatures) == (
        s.manifest,
        s.manifest_bytes,
        s.signatures,
    )
    assert tuple(b.contents) == s.present and b.present_triples() == s.present_triples()
    slim = read_bundle(b"".join(stream_bundle(path, s, ["README.md"])))
    assert slim.contents == {"README.md": README} and slim.is_stripped()


def test_stream_checks_the_end_of_the_archive_again(tmp_path: Path) -> None:
    path = tmp_path / "m.rflpack"
    path.write_bytes(pack(M + R + W + END))
    scan = scan_bundle(path)
    path.write_bytes(pack(M + R + W + END + b"x" + b"\0" * 511))
    with pytest.raises(PackFormatError, match="data after the tar end-of-archive marker"):
        b"".join(stream_bundle(path, scan, ["README.md"]))
