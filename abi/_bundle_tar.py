"""The tar layer of a ``.rflpack`` (PACK_FORMAT.md §2): POSIX ustar headers, written and read.

Writing gives every header mtime 0, uid/gid 0, mode 0644 and empty owner names, so the same
members always give the same bytes. Reading is parsed here rather than with :mod:`tarfile`,
so no extension header, link, device or path that escapes the pack is ever acted on: a header
is a plain file with a safe relative name, or an error naming the member.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._errors import PackFormatError, UnsafeArchiveError
from ._manifest_rules import check_member_path

__all__ = ["BLOCK", "ZERO_BLOCK", "header", "parse_header", "tar_stream"]

#: The tar block size: headers are one block, member data is padded to a whole number.
BLOCK = 512
ZERO_BLOCK = b"\x00" * BLOCK
_MTIME = 0
_MODE = 0o644
_REG = (b"0", b"\x00")


def _octal(value: int, width: int) -> bytes:
    text = f"{value:o}".encode("ascii")
    if len(text) > width - 1:
        raise PackFormatError(f"value {value} does not fit a ustar field of {width} bytes")
    return text.rjust(width - 1, b"0") + b"\x00"


def header(name: str, size: int) -> bytes:
    raw = name.encode("utf-8")
    prefix = b""
    if len(raw) > 100:
        cut = raw.rfind(b"/", 0, 156)
        if cut <= 0 or len(raw) - cut - 1 > 100:
            raise PackFormatError(f"member path {name!r} is too long for the container")
        prefix, raw = raw[:cut], raw[cut + 1 :]
    h = bytearray(BLOCK)
    h[0 : len(raw)] = raw
    h[100:108] = _octal(_MODE, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(_MTIME, 12)
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    h[345 : 345 + len(prefix)] = prefix
    h[148:156] = f"{sum(h):06o}".encode("ascii") + b"\x00 "
    return bytes(h)


def tar_stream(members: Iterable[tuple[str, bytes]]) -> bytes:
    out = bytearray()
    for name, data in members:
        out += header(name, len(data))
        out += data
        out += b"\x00" * (-len(data) % BLOCK)
    out += b"\x00" * (2 * BLOCK)
    return bytes(out)


def parse_header(block: bytes, label: str) -> tuple[str, int] | None:
    if block == ZERO_BLOCK:
        return None
    stored = block[148:156]
    check = sum(block[:148]) + 32 * 8 + sum(block[156:])
    try:
        want = int(stored.rstrip(b"\x00 ").decode("ascii") or "x", 8)
    except ValueError:
        want = -1
    if want != check:
        raise PackFormatError(
            f"{label}: a tar header has a bad checksum; not a .rflpack", pack=label
        )
    if block[257:263] != b"ustar\x00":
        raise UnsafeArchiveError(f"{label}: only POSIX ustar headers are accepted", pack=label)
    raw_name = block[0:100].split(b"\x00", 1)[0]
    prefix = block[345:500].split(b"\x00", 1)[0]
    full = (prefix + b"/" + raw_name) if prefix else raw_name
    try:
        name = full.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeArchiveError(f"{label}: a member name is not UTF-8", pack=label) from exc
    kind = block[156:157]
    if kind in (b"1", b"2"):
        target = block[157:257].split(b"\x00", 1)[0].decode("utf-8", "replace")
        raise UnsafeArchiveError(
            f"{label}: member {name!r} is a {'hard' if kind == b'1' else 'symbolic'} link "
            f"(to {target!r}); packs may only hold plain files",
            pack=label,
            member=name,
        )
    if kind not in _REG:
        raise UnsafeArchiveError(
            f"{label}: member {name!r} has tar type {kind.decode('latin-1')!r}; packs may only "
            "hold plain files (no directories, devices or extension headers)",
            pack=label,
            member=name,
        )
    raw = block[124:136].rstrip(b"\x00 ")
    # octal digits only: int(..., 8) would also take a sign, and a negative size would
    # make the reader decompress everything that follows before any limit applies
    if raw and raw.strip(b"01234567"):
        raise PackFormatError(
            f"{label}: member {name!r} has a malformed size {raw!r}", pack=label, member=name
        )
    size = int(raw or b"0", 8)
    try:
        check_member_path(name, "member")
    except PackFormatError as exc:
        raise UnsafeArchiveError(
            f"{label}: member {name!r} has an unsafe path (absolute, '..' or odd characters); "
            "refusing to extract it",
            pack=label,
            member=name,
        ) from exc
    return name, size
