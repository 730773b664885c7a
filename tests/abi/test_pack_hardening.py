"""Issue #8, pack files: hostile TOML/JSON documents, member paths and zstd frames.

Every input here is written by hand — TOML text, ustar headers and zstd frames assembled byte
by byte (raw blocks) — not only through the project's own writers. Each row: the input, the
error class, a fragment of its message; rows about bounds also prove the refusal is quick
(a generous bound) and, for decompression, that memory stays small (RSS in a child).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest
import tomli_w
import zstandard

from reflow._errors import PackFormatError, UnsafeArchiveError
from reflow.abi._bounded import MAX_DEPTH, load_json, load_toml
from reflow.abi._bundle import BundleLimits, read_bundle, sha256_hex, write_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, parse_manifest
from reflow.abi._signing import generate_key, parse_signatures, sign_manifest, signatures_to_toml

WASM = b"\0asm\x01\0\0\0" + b"w" * 200
README = b"# m\n"


def manifest_doc(**extra_files: bytes) -> dict[str, Any]:
    files = {"README.md": README, **extra_files}
    return {
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
        "files": [{"path": p, "sha256": sha256_hex(d), "size": len(d)} for p, d in files.items()],
    }


MANIFEST = tomli_w.dumps(manifest_doc()).encode()


# -- hand-made containers ----------------------------------------------------------------------


def ustar(name: bytes, data: bytes, kind: bytes = b"0", prefix: bytes = b"") -> bytes:
    """One ustar header (written field by field) plus the data, padded to 512."""
    h = bytearray(512)
    h[0 : len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % len(data)
    h[136:148] = b"00000000000\0"
    h[148:156] = b" " * 8
    h[156:157] = kind
    h[257:265] = b"ustar\x0000"
    h[345 : 345 + len(prefix)] = prefix
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h) + data + b"\0" * (-len(data) % 512)


def tar(*members: bytes, end: bytes = b"\0" * 1024) -> bytes:
    return b"".join(members) + end


def good_tar(manifest: bytes = MANIFEST, signature: bytes | None = None, **extra: bytes) -> bytes:
    parts = [ustar(b"manifest.toml", manifest)]
    if signature is not None:
        parts.append(ustar(b"signature.toml", signature))
    contents = {"README.md": README, "a/m.wasm": WASM, **extra}
    parts += [ustar(k.encode(), v) for k, v in sorted(contents.items())]
    return tar(*parts)


def frame(
    content: bytes,
    *,
    size: int | None = -1,
    block: int = 100_000,
    window_log: int = 20,
    dict_id: int = 0,
) -> bytes:
    """A zstd frame of raw blocks, by hand. ``size=None``: no content size recorded (then a
    window descriptor); ``size=N``: record N whatever the content is."""
    fcs = len(content) if size == -1 else size
    out = bytearray(b"\x28\xb5\x2f\xfd")
    if fcs is None:
        out.append(0x01 if dict_id else 0x00)  # FCS flag 0, no single segment
        out.append((window_log - 10) << 3)
        if dict_id:
            out.append(dict_id)
    else:
        out.append(0xC0 | (0x01 if dict_id else 0))  # 8-byte FCS, with a window descriptor
        out.append((window_log - 10) << 3)
        if dict_id:
            out.append(dict_id)
        out += fcs.to_bytes(8, "little")
    chunks = [content[i : i + block] for i in range(0, len(content), block)] or [b""]
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        out += ((len(chunk) << 3) | int(last)).to_bytes(3, "little") + chunk
    return bytes(out)


def skippable(payload: bytes = b"hidden") -> bytes:
    return (0x184D2A50).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload


def test_hand_made_frame_is_a_valid_pack() -> None:
    b = read_bundle(frame(good_tar()))
    assert b.manifest.name == "acme/m" and b.contents == {"README.md": README, "a/m.wasm": WASM}
    assert zstandard.ZstdDecompressor().decompress(frame(good_tar())) == good_tar()


def test_writer_output_is_accepted_and_has_what_the_spec_says() -> None:
    data = write_bundle(MANIFEST, {"README.md": README, "a/m.wasm": WASM})
    params = zstandard.get_frame_parameters(data)
    assert params.has_checksum and zstandard.frame_content_size(data) > 0
    assert read_bundle(data).contents["a/m.wasm"] == WASM


# -- the frame: exactly one, with its content size (row 9) -------------------------------------

GOOD = frame(good_tar())
Z = zstandard.ZstdCompressor(level=3, write_checksum=True)

FRAMES: list[tuple[str, bytes, type[Exception], str]] = [
    ("trailing bytes", GOOD + b"junk", PackFormatError, "trailing bytes after the zstd frame"),
    ("trailing zeros", GOOD + b"\0" * 4, PackFormatError, "trailing bytes after the zstd"),
    ("second frame", GOOD + frame(b"\0" * 1024), PackFormatError, "a second zstd frame"),
    (
        "second frame, compressed",
        GOOD + Z.compress(b"x" * 100),
        PackFormatError,
        "a second zstd frame",
    ),
    ("skippable frame after", GOOD + skippable(), PackFormatError, "a skippable zstd frame after"),
    (
        "skippable frame first",
        skippable() + GOOD,
        PackFormatError,
        "starts with a skippable zstd frame",
    ),
    (
        "no content size",
        frame(good_tar(), size=None),
        PackFormatError,
        "does not record its content size",
    ),
    (
        "content size over max_total",
        frame(good_tar(), size=(1 << 30) + 1),
        UnsafeArchiveError,
        "over the limit of 1073741824",
    ),
    (
        "content size larger than content",
        frame(good_tar(), size=len(good_tar()) + 512),
        PackFormatError,
        "zstd stream is corrupt",
    ),
    (
        "content size smaller than content",
        frame(good_tar(), size=len(good_tar()) - 512),
        PackFormatError,
        "zstd stream is corrupt",
    ),
    ("dictionary", frame(good_tar(), dict_id=7), PackFormatError, "needs dictionary 7"),
    (
        "window over 32 MiB",
        frame(good_tar(), window_log=26),
        UnsafeArchiveError,
        "window, over the limit of 33554432",
    ),
    (
        "reserved block type",
        GOOD[:14] + bytes([GOOD[14] | 0x06]) + GOOD[15:],
        PackFormatError,
        "zstd stream is corrupt",
    ),
    ("tiny blocks", frame(good_tar(), block=8), UnsafeArchiveError, "blocks for"),
    (
        "no end-of-archive marker",
        frame(good_tar()[:-1024]),
        PackFormatError,
        "without the end-of-archive marker",
    ),
    (
        "half an end marker",
        frame(good_tar()[:-512]),
        PackFormatError,
        "end-of-archive marker is not two zero blocks",
    ),
    (
        "data after the end marker",
        frame(good_tar() + b"\0" * 511 + b"x"),
        PackFormatError,
        "data after the tar end-of-archive marker",
    ),
    (
        "end marker of junk",
        frame(good_tar()[:-512] + b"x" * 512),
        PackFormatError,
        "end-of-archive marker is not two zero blocks",
    ),
    (
        "checksum flipped",
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]))(Z.compress(good_tar())),
        PackFormatError,
        "zstd stream is corrupt",
    ),
    ("empty file", b"", PackFormatError, "no zstd frame at the start"),
    ("magic only", b"\x28\xb5\x2f\xfd", PackFormatError, "frame header is truncated"),
]


@pytest.mark.parametrize(
    ("data", "error", "fragment"), [f[1:] for f in FRAMES], ids=[f[0] for f in FRAMES]
)
def test_frames(data: bytes, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        read_bundle(data)
    assert fragment in str(info.value)


def test_zero_padding_after_the_end_marker_is_accepted() -> None:
    """What `tar` writes (records of 10240 bytes) reads; the spec says so."""
    padded = good_tar() + b"\0" * (10240 - len(good_tar()) % 10240)
    assert read_bundle(frame(padded)).contents["README.md"] == README


SIGNED = write_bundle(
    MANIFEST,
    {"README.md": README, "a/m.wasm": WASM},
    signatures_to_toml([sign_manifest(MANIFEST, generate_key())]),
)


def cut_points() -> list[tuple[str, int]]:
    n = len(SIGNED)
    return [
        ("in the magic", 2),
        ("in the frame header", 6),
        ("after the frame header", 14),
        ("in the first block", 40),
        ("in the middle", n // 2),
        ("in the checksum", n - 2),
        ("before the checksum", n - 4),
        ("one byte short", n - 1),
    ]


@pytest.mark.parametrize("cut", [c[1] for c in cut_points()], ids=[c[0] for c in cut_points()])
@pytest.mark.parametrize("head_only", [False, True], ids=["full", "head"])
def test_truncated_anywhere(cut: int, head_only: bool) -> None:
    with pytest.raises(PackFormatError, match=r"truncated|no zstd frame"):
        read_bundle(SIGNED[:cut], head_only=head_only)


def test_every_cut_of_a_hand_made_pack_is_refused() -> None:
    """All cut points of a small pack, both on a block boundary and inside one."""
    data = frame(
        good_tar(signature=signatures_to_toml([sign_manifest(MANIFEST, generate_key())])),
        block=1000,
    )
    t0 = time.perf_counter()
    for cut in range(len(data)):
        with pytest.raises(PackFormatError):
            read_bundle(data[:cut])
    assert time.perf_counter() - t0 < 30


def test_decompression_streams_with_bounded_memory() -> None:
    """A frame declaring (and holding) 200 MiB of one member, 30 KB compressed: the bomb
    limit stops it after 16 MiB, so memory stays small (RSS measured in a child)."""
    code = textwrap.dedent("""
        import psutil, zstandard, tomli_w
        from reflow.abi._bundle import read_bundle, sha256_hex
        from reflow._errors import UnsafeArchiveError
        big = 200 << 20
        doc = {"format": 1, "name": "acme/m", "version": "0.1.0", "abi": "1.0",
               "templates": [{"id": "acme/m/t", "entry": "m"}],
               "artifacts": [{"entry": "m", "triple": "wasm32-unknown-unknown", "kind": "wasm",
                              "path": "m.wasm", "sha256": "0" * 64, "size": big}]}
        m = tomli_w.dumps(doc).encode()
        def header(name, size):
            h = bytearray(512); h[0:len(name)] = name; h[100:108] = b"0000644\\0"
            h[108:116] = h[116:124] = b"0000000\\0"; h[124:136] = b"%011o\\0" % size
            h[136:148] = b"00000000000\\0"; h[148:156] = b" " * 8; h[156:157] = b"0"
            h[257:265] = b"ustar\\x0000"; h[148:156] = b"%06o\\0 " % sum(h); return bytes(h)
        head = header(b"manifest.toml", len(m)) + m + b"\\0" * (-len(m) % 512)
        head += header(b"m.wasm", big)
        total = len(head) + big + 1024
        chunk = bytes(1 << 20)
        cctx = zstandard.ZstdCompressor(level=1)
        import io
        buf = io.BytesIO()
        with cctx.stream_writer(buf, size=total, closefd=False) as w:
            w.write(head)
            for _ in range(big >> 20):
                w.write(chunk)
            w.write(bytes(1024))
        data = buf.getvalue()
        del buf
        import threading
        rss = psutil.Process().memory_info().rss
        peak = [rss]
        done = threading.Event()
        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], psutil.Process().memory_info().rss)
                done.wait(0.002)
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            read_bundle(data)
        except UnsafeArchiveError as exc:
            assert "decompression bomb" in str(exc), exc
        else:
            raise SystemExit("not refused")
        finally:
            done.set()
            sampler.join()
        print(len(data), peak[0] - rss)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    compressed, grew = map(int, out.stdout.split())
    assert compressed < 1 << 20
    assert grew < 64 << 20, f"peak RSS grew {grew} bytes"


# -- TOML and JSON bombs (row 7) ---------------------------------------------------------------

BIG = 1 << 20
TOML_BOMBS: list[tuple[str, str, str]] = [
    ("100k nested arrays", "x = " + "[" * 100_000 + "]" * 100_000, "field x: nests deeper"),
    (
        "50k nested inline tables",
        "x = " + "{a = " * 50_000 + "1" + "}" * 50_000,
        "field x: nests deeper",
    ),
    ("50k nested table header", "[" + ".".join(["t"] * 50_000) + "]\n", "t.t.t.t"),
    ("50k nested array-of-tables header", "[[" + ".".join(["t"] * 50_000) + "]]\n", "nests deeper"),
    ("50k dotted key", ".".join(["k"] * 50_000) + " = 1\n", "field k.k.k"),
    (
        "dotted key in an inline table",
        "x = {" + ".".join(["k"] * 50_000) + " = 1}\n",
        "field x: nests deeper",
    ),
    (
        "arrays after a table",
        "[[templates]]\nconfig_schema = " + "[" * 5000,
        "field templates[0].config_schema: nests deeper",
    ),
    (
        "5000-digit integer",
        "[[templates]]\nid = 'a'\n[[templates]]\nsize = " + "9" * 5000,
        "field templates[1].size: has a number of more than 100 digits",
    ),
    ("5000-digit float", "x = 1." + "9" * 5000, "more than 100 digits"),
    ("one level too deep", "x = " + "[" * MAX_DEPTH + "]" * MAX_DEPTH, "nests deeper than 64"),
    ("not TOML", "x = = 1", "not valid TOML"),
    ("not UTF-8", "x = '\udcff'", "not valid TOML: not UTF-8"),
    ("over the size cap", "#" * (BIG + 1), "over its limit of 1048576"),
]


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("text", "fragment"), [b[1:] for b in TOML_BOMBS], ids=[b[0] for b in TOML_BOMBS]
)
@pytest.mark.parametrize("reader", ["manifest", "signature", "bundle manifest", "bundle signature"])
def test_toml_bombs(reader: str, text: str, fragment: str) -> None:
    data = _bytes(text)
    member = "signature.toml" if "signature" in reader else "manifest.toml"
    cap = (64 << 10) if member == "signature.toml" else BIG
    if len(data) > cap:
        fragment = "over its limit of"
    t0 = time.perf_counter()
    with pytest.raises(PackFormatError) as info:
        if reader == "manifest":
            parse_manifest(data)
        elif reader == "signature":
            parse_signatures(data)
        elif reader == "bundle manifest":
            read_bundle(frame(tar(ustar(b"manifest.toml", data))))
        else:
            read_bundle(
                frame(tar(ustar(b"manifest.toml", MANIFEST), ustar(b"signature.toml", data)))
            )
    assert time.perf_counter() - t0 < 2.0
    err = info.value
    assert fragment in str(err)
    assert err.member == member


def test_valid_deep_nesting_still_parses() -> None:
    text = "x = " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert load_toml(text, "m.toml", max_size=BIG)["x"]
    tricky = (
        'a = "[[[[[[[[{{{{{{ # \\" ]"\n'
        "b = '''\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['''\n"
        'c = """x\\""""\n'
        'd = """ok"""""\n'
        "[t.'dotted.in.quotes'.u]\n"
        "e = 1.5e10  # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n"
        "f = [ {g.h = [1, 2]}, {i = 'x'} ]\n"
    )
    doc = load_toml(tricky, "m.toml", max_size=BIG)
    assert doc["c"] == 'x"' and doc["d"] == 'ok""' and doc["t"]["dotted.in.quotes"]["u"]["f"]


def test_worst_case_manifest_is_bounded_in_time() -> None:
    """A full 1 MiB manifest at the depth limit (dotted keys, the costliest case for tomllib)
    parses or is refused in bounded time."""
    line = ".".join(["k"] * (MAX_DEPTH - 2))
    text = "".join(f"{line}.z{i} = 1\n" for i in range(BIG // (len(line) + 12)))[:BIG]
    text = text[: text.rfind("\n") + 1]
    t0 = time.perf_counter()
    with pytest.raises(PackFormatError, match="unknown key"):
        parse_manifest(text.encode())
    assert time.perf_counter() - t0 < 10


JSON_BOMBS = [
    ("100k nested arrays", "[" * 100_000, "nests deeper than 64"),
    ("100k nested objects", '{"a":' * 100_000, "nests deeper than 64"),
    ("5000-digit integer", "1" * 5000, "more than 100 digits"),
    ("not JSON", "{", "not valid JSON"),
    ("over the cap", " " * (BIG + 1), "over its limit"),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [b[1:] for b in JSON_BOMBS], ids=[b[0] for b in JSON_BOMBS]
)
def test_json_bombs(text: str, fragment: str) -> None:
    with pytest.raises(PackFormatError, match=fragment) as info:
        load_json(text, "describe.json", max_size=BIG)
    assert info.value.member == "describe.json"


def test_json_strings_do_not_count() -> None:
    text = '{"a": ["]]]]{{{{\\"[[["]}'
    assert load_json(text, "x.json", max_size=BIG) == {"a": [']]]]{{{{"[[[']}


# -- member paths (row 7) ----------------------------------------------------------------------


def with_paths(*paths: str) -> bytes:
    doc = manifest_doc()
    doc["files"] = [{"path": p, "sha256": sha256_hex(b""), "size": 0} for p in paths]
    doc.pop("readme", None)
    return tomli_w.dumps(doc).encode()


PATHS: list[tuple[str, tuple[str, ...], str]] = [
    ("file then directory", ("docs", "docs/x"), "'docs/x' needs 'docs' to be a directory"),
    ("directory then file", ("docs/x", "docs"), "'docs' is a file but also a directory"),
    ("case-only file/dir", ("Docs/x", "docs"), "'docs' is a file but also a directory"),
    ("artifact dir is a file", ("a",), "'a' is a file but also a directory of artifacts[0]"),
    ("dot-dot", ("../x",), "'../x' is not a safe relative path"),
    ("dot-dot inside", ("a/../../x",), "is not a safe relative path"),
    ("absolute", ("/etc/passwd",), "'/etc/passwd' is not a safe relative path"),
    ("backslash", ("a\\b",), "is not a safe relative path"),
    ("NUL", ("a\0b",), "is not a safe relative path"),
    ("empty segment", ("a//b",), "is not a safe relative path"),
    ("trailing dot", ("x.",), "is not a safe relative path"),
    ("hidden", (".complete",), "is not a safe relative path"),
    ("device name", ("docs/con.txt",), "reserved device name"),
    ("duplicate", ("x", "x"), "path 'x' is already used by files[0].path"),
    ("case-only duplicate", ("README.txt", "readme.TXT"), "differs only in case"),
    ("reserved", ("manifest.toml",), "is reserved for the format"),
    ("reserved, other case", ("Signature.TOML",), "is reserved for the format"),
    ("under a reserved name", ("manifest.toml/x",), "needs 'manifest.toml' to be a directory"),
    ("over 255", ("a/" * 127 + "bb",), "is over 255 chars"),
    ("segment over 128", ("x" * 129,), "is not a safe relative path"),
    ("does not fit ustar", ("a" * 60 + "/" + "b" * 101,), "does not fit a ustar header"),
]


@pytest.mark.parametrize(("paths", "fragment"), [p[1:] for p in PATHS], ids=[p[0] for p in PATHS])
def test_member_paths(paths: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(PackFormatError) as info:
        parse_manifest(with_paths(*paths))
    assert fragment in str(info.value)
    assert info.value.field.endswith(".path")


def raw_name_member(name: bytes) -> Callable[[], bytes]:
    return lambda: frame(tar(ustar(b"manifest.toml", MANIFEST), ustar(name, b"x")))


TAR_NAMES = [
    ("dot-dot", b"../x"),
    ("absolute", b"/x"),
    ("backslash", b"a\\b"),
    ("NUL prefix", b"\0x"),
    ("not UTF-8", b"\xff"),
    ("hidden", b".x"),
    ("trailing dot", b"x."),
    ("device", b"nul"),
]


@pytest.mark.parametrize("name", [n[1] for n in TAR_NAMES], ids=[n[0] for n in TAR_NAMES])
def test_unsafe_tar_names(name: bytes) -> None:
    with pytest.raises(PackFormatError, match=r"member|name"):
        read_bundle(raw_name_member(name)())


def test_tar_prefix_field_names_the_full_path() -> None:
    long_dir = "d" * 120
    path = f"{long_dir}/m.wasm"
    doc = manifest_doc()
    doc["artifacts"][0]["path"] = path
    m = tomli_w.dumps(doc).encode()
    data = frame(
        tar(
            ustar(b"manifest.toml", m),
            ustar(b"README.md", README),
            ustar(b"m.wasm", WASM, prefix=long_dir.encode()),
        )
    )
    assert read_bundle(data).contents[path] == WASM
    assert read_bundle(write_bundle(m, {path: WASM, "README.md": README})).contents[path] == WASM


def test_duplicate_and_unlisted_members_in_the_tar() -> None:
    twice = frame(
        tar(
            ustar(b"manifest.toml", MANIFEST),
            ustar(b"README.md", README),
            ustar(b"README.md", README),
        )
    )
    with pytest.raises(UnsafeArchiveError, match=r"'README\.md' appears twice"):
        read_bundle(twice)
    case = frame(tar(ustar(b"manifest.toml", MANIFEST), ustar(b"readme.md", README)))
    with pytest.raises(UnsafeArchiveError, match=r"'readme\.md' is not listed"):
        read_bundle(case)


def test_limits_still_configurable() -> None:
    with pytest.raises(UnsafeArchiveError, match="window"):
        read_bundle(frame(good_tar(), window_log=20), limits=BundleLimits(max_window=1 << 19))


@pytest.mark.parametrize(
    ("manifest", "fragment"),
    [
        (b"x = " + b"[" * 100_000 + b"]" * 100_000, "manifest.toml: field x: nests deeper"),
        (b"format = " + b"9" * 5000, "field format: has a number of more than 100 digits"),
        (b"[" + b".".join([b"t"] * 50_000) + b"]\n", "manifest.toml: field t.t.t"),
    ],
)
@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_cli_reports_bombs_in_one_line(
    tmp_path: Any, command: str, manifest: bytes, fragment: str
) -> None:
    from click.testing import CliRunner

    from reflow.tools._cli import main

    pack = tmp_path / "bomb.rflpack"
    pack.write_bytes(frame(tar(ustar(b"manifest.toml", manifest))))
    result = CliRunner().invoke(main, [command, str(pack)])
    assert result.exit_code != 0
    assert fragment in result.output and "Traceback" not in result.output
    assert len(result.output.splitlines()) <= 3


def test_reading_a_fifo_or_directory_does_not_hang(tmp_path: Any) -> None:
    import os

    fifo = tmp_path / "p.rflpack"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    for path in (fifo, tmp_path, tmp_path / "missing.rflpack", "a\0b"):
        with pytest.raises(PackFormatError, match="cannot read"):
            read_bundle(path)
    assert time.perf_counter() - t0 < 2
