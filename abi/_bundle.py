"""The ``.rflpack`` container (PACK_FORMAT.md §2): one zstd frame holding a POSIX ustar stream.

Members, in this order: ``manifest.toml``, then ``signature.toml`` if the pack is signed, then
every artifact and file the pack carries, sorted by path. Every header is written with mtime 0,
uid/gid 0, mode 0644 and empty owner names, and the frame with a fixed compression level, so
the same manifest and files always give the same bytes.

Reading is strict and bounded (:class:`BundleLimits`). The tar layer is parsed here rather than
with :mod:`tarfile`, so no extension header, link, device or path that escapes the pack is
ever acted on: only plain files with safe relative names that the manifest lists are accepted,
each at most its size limit, with the total decompressed bytes bounded both absolutely and
relative to the compressed size (decompression bombs). Every member present is checked against
the manifest's sha256 and size. A member the manifest lists may be absent: that is a stripped
pack. Errors from ``zstandard`` are translated here.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import zstandard

from .._errors import PackFormatError, PackIntegrityError, UnsafeArchiveError
from ._manifest import (
    MANIFEST_NAME,
    PORTABLE_TRIPLE,
    SIGNATURE_NAME,
    Artifact,
    PackFile,
    PackManifest,
    check_member_path,
    parse_manifest,
)
from ._signing import Signature, parse_signatures, signatures_to_toml

__all__ = [
    "COMPRESSION_LEVEL",
    "Bundle",
    "BundleLimits",
    "add_signatures",
    "artifact_entry",
    "build_bundle",
    "file_entry",
    "read_bundle",
    "sha256_hex",
    "strip_bundle",
    "write_bundle",
]

#: zstd level used for every pack (part of the determinism promise: never derived from input).
COMPRESSION_LEVEL = 15
_BLOCK = 512
_MTIME = 0
_MODE = 0o644
_REG = (b"0", b"\x00")


@dataclass(frozen=True)
class BundleLimits:
    """What reading a bundle may cost. Anything beyond is an UnsafeArchiveError."""

    max_manifest: int = 1 << 20
    max_signature: int = 64 << 10
    max_member: int = 256 << 20
    max_total: int = 1 << 30
    max_members: int = 4096
    #: Decompressed/compressed ratio allowed once more than ``ratio_floor`` bytes came out.
    max_ratio: int = 250
    ratio_floor: int = 16 << 20
    max_window: int = 1 << 25


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- writing ---------------------------------------------------------------------------------


def _octal(value: int, width: int) -> bytes:
    text = f"{value:o}".encode("ascii")
    if len(text) > width - 1:
        raise PackFormatError(f"value {value} does not fit a ustar field of {width} bytes")
    return text.rjust(width - 1, b"0") + b"\x00"


def _header(name: str, size: int) -> bytes:
    raw = name.encode("utf-8")
    prefix = b""
    if len(raw) > 100:
        cut = raw.rfind(b"/", 0, 156)
        if cut <= 0 or len(raw) - cut - 1 > 100:
            raise PackFormatError(f"member path {name!r} is too long for the container")
        prefix, raw = raw[:cut], raw[cut + 1:]
    h = bytearray(_BLOCK)
    h[0:len(raw)] = raw
    h[100:108] = _octal(_MODE, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(_MTIME, 12)
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    h[345:345 + len(prefix)] = prefix
    h[148:156] = f"{sum(h):06o}".encode("ascii") + b"\x00 "
    return bytes(h)


def _tar(members: Iterable[tuple[str, bytes]]) -> bytes:
    out = bytearray()
    for name, data in members:
        out += _header(name, len(data))
        out += data
        out += b"\x00" * (-len(data) % _BLOCK)
    out += b"\x00" * (2 * _BLOCK)
    return bytes(out)


def write_bundle(
    manifest_bytes: bytes, contents: Mapping[str, bytes], signature_bytes: bytes | None = None
) -> bytes:
    """Low-level: the container bytes for exactly these members (no checks on contents)."""
    members: list[tuple[str, bytes]] = [(MANIFEST_NAME, manifest_bytes)]
    if signature_bytes is not None:
        members.append((SIGNATURE_NAME, signature_bytes))
    members += sorted(contents.items())
    cctx = zstandard.ZstdCompressor(
        level=COMPRESSION_LEVEL, write_checksum=True, write_content_size=True, threads=0
    )
    return cctx.compress(_tar(members))


def build_bundle(
    manifest: PackManifest | bytes,
    contents: Mapping[str, bytes],
    signatures: Iterable[Signature] = (),
) -> bytes:
    """A full pack: every member the manifest lists must be in ``contents`` with its hash."""
    manifest_bytes = manifest.to_toml() if isinstance(manifest, PackManifest) else manifest
    parsed = parse_manifest(manifest_bytes)
    expected = parsed.members()
    extra = sorted(set(contents) - set(expected))
    if extra:
        raise PackFormatError(f"{extra[0]!r} is not listed in the manifest", member=extra[0])
    for path, sha in expected.items():
        if path not in contents:
            raise PackFormatError(f"the manifest lists {path!r} but no content was given",
                                  member=path)
        _check_member(path, contents[path], sha, parsed.sizes()[path], parsed.name)
    sigs = list(signatures)
    return write_bundle(manifest_bytes, contents, signatures_to_toml(sigs) if sigs else None)


def _check_member(path: str, data: bytes, sha: str, size: int, pack: str) -> None:
    if len(data) != size:
        raise PackIntegrityError(
            f"{pack}: {path} is {len(data)} bytes but the manifest says {size}",
            pack=pack, file=path, expected=str(size), actual=str(len(data)),
        )
    actual = sha256_hex(data)
    if actual != sha:
        raise PackIntegrityError(
            f"{pack}: {path} does not match the manifest: sha256 expected {sha}, got {actual}",
            pack=pack, file=path, expected=sha, actual=actual,
        )


# -- reading ---------------------------------------------------------------------------------


@dataclass
class Bundle:
    """A parsed pack: the manifest (raw bytes as signed, and parsed), its signatures, and the
    members present, each already checked against the manifest's hash and size."""

    manifest: PackManifest
    manifest_bytes: bytes
    signature_bytes: bytes | None
    signatures: list[Signature]
    contents: dict[str, bytes] = field(default_factory=dict)
    source: str = ""
    compressed_size: int = 0

    def present_triples(self) -> tuple[str, ...]:
        """Triples with at least one artifact present (portable first)."""
        got = {a.triple for a in self.manifest.artifacts if a.path in self.contents}
        return tuple(t for t in self.manifest.triples() if t in got)

    def is_stripped(self) -> bool:
        return any(a.path not in self.contents for a in self.manifest.artifacts)


class _Reader:
    """Decompressed bytes from a zstd frame, with the bomb limits applied as they come."""

    def __init__(self, fh: IO[bytes], compressed: int, limits: BundleLimits, label: str) -> None:
        dctx = zstandard.ZstdDecompressor(max_window_size=limits.max_window)
        self._stream = dctx.stream_reader(fh, read_across_frames=False, closefd=False)
        self._limit = max(limits.ratio_floor, limits.max_ratio * max(compressed, 1))
        self._limit = min(self._limit, limits.max_total)
        self.total = 0
        self._label = label
        self._limits = limits

    def read(self, n: int) -> bytes:
        if n < 0:
            raise PackFormatError(f"{self._label}: negative read of {n} bytes", pack=self._label)
        chunks = []
        want = n
        while want:
            try:
                chunk = self._stream.read(min(want, 1 << 20))
            except zstandard.ZstdError as exc:
                raise PackFormatError(
                    f"{self._label}: the zstd stream is corrupt ({exc}); the file is damaged or "
                    "not a .rflpack", pack=self._label,
                ) from exc
            if not chunk:
                break
            self.total += len(chunk)
            if self.total > self._limit:
                raise UnsafeArchiveError(
                    f"{self._label}: decompresses to more than {self._limit} bytes (from "
                    f"{self._limits.max_total} max total, {self._limits.max_ratio}x ratio): "
                    "refusing a possible decompression bomb",
                    pack=self._label,
                )
            chunks.append(chunk)
            want -= len(chunk)
        return b"".join(chunks)

    def exact(self, n: int, what: str) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise PackFormatError(f"{self._label}: truncated while reading {what}",
                                  pack=self._label, member=what)
        return data


def _parse_header(block: bytes, label: str) -> tuple[str, int] | None:
    if block == b"\x00" * _BLOCK:
        return None
    stored = block[148:156]
    check = sum(block[:148]) + 32 * 8 + sum(block[156:])
    try:
        want = int(stored.rstrip(b"\x00 ").decode("ascii") or "x", 8)
    except ValueError:
        want = -1
    if want != check:
        raise PackFormatError(f"{label}: a tar header has a bad checksum; not a .rflpack",
                              pack=label)
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
            pack=label, member=name,
        )
    if kind not in _REG:
        raise UnsafeArchiveError(
            f"{label}: member {name!r} has tar type {kind.decode('latin-1')!r}; packs may only "
            "hold plain files (no directories, devices or extension headers)",
            pack=label, member=name,
        )
    raw = block[124:136].rstrip(b"\x00 ")
    # octal digits only: int(..., 8) would also take a sign, and a negative size would
    # make the reader decompress everything that follows before any limit applies
    if raw and raw.strip(b"01234567"):
        raise PackFormatError(f"{label}: member {name!r} has a malformed size {raw!r}",
                              pack=label, member=name)
    size = int(raw or b"0", 8)
    try:
        check_member_path(name, "member")
    except PackFormatError as exc:
        raise UnsafeArchiveError(
            f"{label}: member {name!r} has an unsafe path (absolute, '..' or odd characters); "
            "refusing to extract it", pack=label, member=name,
        ) from exc
    return name, size


def read_bundle(
    source: bytes | str | os.PathLike[str],
    *,
    limits: BundleLimits | None = None,
    head_only: bool = False,
    label: str | None = None,
) -> Bundle:
    """Parse and check a pack. ``head_only`` stops after the manifest and signature (cheap:
    what ``inspect`` and a warm load need); the frame's structure is checked either way.
    ``label`` names bytes in errors (default ``<bytes>``)."""
    limits = limits or BundleLimits()
    if isinstance(source, (bytes, bytearray, memoryview)):
        import io

        label = label or "<bytes>"
        data = bytes(source)
        with io.BytesIO(data) as fh:
            return _read(fh, len(data), label, limits, head_only)
    path = Path(source)
    label = label or path.name
    try:
        # non-blocking: a FIFO put where a pack should be must not hang the reader
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise PackFormatError(f"cannot read {path}: {why}", pack=label) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise PackFormatError(f"cannot read {path}: not a plain file", pack=label)
    try:
        with os.fdopen(fd, "rb") as fh:
            return _read(fh, st.st_size, label, limits, head_only)
    except OSError as exc:
        raise PackFormatError(f"cannot read {path}: {exc.strerror}", pack=label) from exc


_MAGIC = b"\x28\xb5\x2f\xfd"
_BLOCK_MAX = 128 << 10


def _describe_tail(tail: bytes) -> str:
    if tail[:4] == _MAGIC:
        return "a second zstd frame"
    if len(tail) >= 4 and 0x184D2A50 <= int.from_bytes(tail[:4], "little") <= 0x184D2A5F:
        return "a skippable zstd frame"
    return "trailing bytes"


def _frame(fh: IO[bytes], size: int, label: str, limits: BundleLimits) -> int:
    """Check that the file is exactly one zstd frame as §2 requires, by walking its block
    headers (no decompression); return the content size the frame records.

    Refused: a first frame that is skippable, a dictionary, a window over ``max_window``, no
    recorded content size or one over ``max_total``, a reserved block type or an oversize
    block, more than one block per KiB of content (plus 64), a frame cut short, and anything
    after the frame (a second frame, a skippable frame, trailing bytes)."""
    def bad(what: str, cls: type[PackFormatError] = PackFormatError) -> PackFormatError:
        return cls(f"{label}: {what}", pack=label)

    head = fh.read(18)
    if head[:4] != _MAGIC:
        if len(head) >= 4 and _describe_tail(head) == "a skippable zstd frame":
            raise bad("starts with a skippable zstd frame; a .rflpack is exactly one zstd "
                      "frame")
        raise PackFormatError(f"{label} is not a .rflpack (no zstd frame at the start)",
                              pack=label)
    try:
        header_size = zstandard.frame_header_size(head)
        params = zstandard.get_frame_parameters(head)
        content = zstandard.frame_content_size(head)
    except zstandard.ZstdError as exc:
        raise bad(f"the zstd frame header is truncated or corrupt ({exc})") from exc
    if header_size > size:
        raise bad("truncated inside the zstd frame header")
    if params.dict_id:
        raise bad(f"the zstd frame needs dictionary {params.dict_id}; packs use none")
    if params.window_size > limits.max_window:
        raise bad(f"the zstd frame asks for a {params.window_size}-byte window, over the "
                  f"limit of {limits.max_window}", UnsafeArchiveError)
    if content < 0:
        raise bad("the zstd frame does not record its content size (PACK_FORMAT.md §2 "
                  "requires it)")
    if content > limits.max_total:
        raise bad(f"the zstd frame declares {content} bytes of content, over the limit of "
                  f"{limits.max_total}: refusing a possible decompression bomb",
                  UnsafeArchiveError)
    max_blocks = 64 + content // 1024
    block_max = min(_BLOCK_MAX, max(params.window_size, 1))
    pos, blocks = header_size, 0
    while True:
        fh.seek(pos)
        raw = fh.read(3)
        if len(raw) < 3:
            raise bad(f"truncated: the zstd frame is cut off at byte {size} (block "
                      f"{blocks} has no header)")
        value = int.from_bytes(raw, "little")
        last, kind, bsize = value & 1, (value >> 1) & 3, value >> 3
        if kind == 3 or bsize > block_max:
            raise bad(f"the zstd stream is corrupt (block {blocks} at byte {pos} has "
                      f"{'a reserved type' if kind == 3 else f'{bsize} bytes'})")
        pos += 3 + (1 if kind == 1 else bsize)
        blocks += 1
        if blocks > max_blocks:
            raise bad(f"the zstd frame has more than {max_blocks} blocks for {content} bytes "
                      "of content", UnsafeArchiveError)
        if pos > size:
            raise bad(f"truncated: the zstd frame needs {pos - size} more bytes than the "
                      f"{size} there are")
        if last:
            break
    if params.has_checksum:
        pos += 4
        if pos > size:
            raise bad("truncated: the zstd frame's checksum is cut off")
    if pos != size:
        fh.seek(pos)
        what = _describe_tail(fh.read(4))
        raise bad(f"{what} after the zstd frame ({size - pos} bytes from byte {pos}); a "
                  ".rflpack is exactly one frame")
    fh.seek(0)
    return content


def _read(fh: IO[bytes], compressed: int, label: str, limits: BundleLimits,
          head_only: bool) -> Bundle:
    content = _frame(fh, compressed, label, limits)
    r = _Reader(fh, compressed, limits, label)
    manifest: PackManifest | None = None
    manifest_bytes = b""
    signature_bytes: bytes | None = None
    contents: dict[str, bytes] = {}
    seen: set[str] = set()
    expected: dict[str, str] = {}
    sizes: dict[str, int] = {}
    index = 0
    while True:
        head = r.read(_BLOCK)
        if len(head) != _BLOCK:
            what = "a tar header" if head or manifest is None else "the end-of-archive marker"
            raise PackFormatError(f"{label}: truncated: the tar stream ends without {what}",
                                  pack=label)
        parsed = _parse_header(head, label)
        if parsed is None:
            if manifest is not None and not head_only:
                _end_of_archive(r, content, label)
            break
        name, size = parsed
        if name in seen:
            raise UnsafeArchiveError(f"{label}: member {name!r} appears twice", pack=label,
                                     member=name)
        seen.add(name)
        if index >= limits.max_members:
            raise UnsafeArchiveError(f"{label}: more than {limits.max_members} members",
                                     pack=label)
        if index == 0 and name != MANIFEST_NAME:
            raise PackFormatError(f"{label}: the first member must be {MANIFEST_NAME}, "
                                  f"found {name!r}", pack=label, member=name)
        if name == MANIFEST_NAME:
            cap = limits.max_manifest
        elif name == SIGNATURE_NAME:
            if index != 1:
                raise PackFormatError(f"{label}: {SIGNATURE_NAME} must directly follow "
                                      f"{MANIFEST_NAME}", pack=label, member=name)
            cap = limits.max_signature
        else:
            if head_only:
                break
            if name not in expected:
                raise UnsafeArchiveError(
                    f"{label}: member {name!r} is not listed in the manifest", pack=label,
                    member=name,
                )
            cap = min(limits.max_member, sizes[name])
        if size > cap:
            what = "the manifest" if name == MANIFEST_NAME else f"member {name!r}"
            raise UnsafeArchiveError(
                f"{label}: {what} declares {size} bytes, over its limit of {cap}", pack=label,
                member=name,
            )
        data = r.exact(size, name)
        r.exact(-size % _BLOCK, name)
        if name == MANIFEST_NAME:
            manifest_bytes = data
            manifest = _with_pack(partial(parse_manifest, max_size=limits.max_manifest), data,
                                  label)
            expected, sizes = manifest.members(), manifest.sizes()
        elif name == SIGNATURE_NAME:
            signature_bytes = data
        else:
            assert manifest is not None
            _check_member(name, data, expected[name], sizes[name], manifest.name)
            contents[name] = data
        index += 1
        if head_only and index == 2:
            break
    if manifest is None:
        raise PackFormatError(f"{label}: empty archive, no {MANIFEST_NAME}", pack=label)
    sigs = (_with_pack(partial(parse_signatures, max_size=limits.max_signature),
                       signature_bytes, label) if signature_bytes is not None else [])
    return Bundle(manifest, manifest_bytes, signature_bytes, sigs, contents, label, compressed)


def _end_of_archive(r: _Reader, content: int, label: str) -> None:
    """After the first zero block: a second one, then only zero padding (as ``tar`` writes)
    up to the content size the frame records, then the frame's end (which checks its
    checksum)."""
    if r.read(_BLOCK) != b"\x00" * _BLOCK:
        raise PackFormatError(f"{label}: the tar stream's end-of-archive marker is not two "
                              "zero blocks", pack=label)
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        if chunk.count(0) != len(chunk):
            raise PackFormatError(f"{label}: data after the tar end-of-archive marker",
                                  pack=label)
    if r.total != content:
        raise PackFormatError(f"{label}: the zstd frame holds {r.total} bytes but records "
                              f"{content}", pack=label)


def _with_pack(fn: Any, data: bytes, label: str) -> Any:
    try:
        return fn(data)
    except PackFormatError as exc:
        exc.pack = label
        exc.args = (f"{label}: {exc.args[0]}",)
        raise


# -- transforming ----------------------------------------------------------------------------


def strip_bundle(
    source: bytes | str | os.PathLike[str], triple: str, *, limits: BundleLimits | None = None
) -> bytes:
    """Keep the portable artifacts, the files and ``triple``'s artifacts; same manifest and
    signatures, so the result verifies without re-signing."""
    b = read_bundle(source, limits=limits)
    triples = b.manifest.triples()
    if triple not in triples:
        raise PackFormatError(
            f"{b.manifest.name} has no artifacts for {triple!r}; it lists: {', '.join(triples)}",
            pack=b.source,
        )
    if triple not in b.present_triples():
        raise PackFormatError(
            f"{b.source} was already stripped of {triple!r}; present: "
            f"{', '.join(b.present_triples()) or 'none'}",
            pack=b.source,
        )
    keep = {a.path for a in b.manifest.artifacts if a.triple in (PORTABLE_TRIPLE, triple)}
    keep |= {f.path for f in b.manifest.files}
    kept = {p: d for p, d in b.contents.items() if p in keep}
    return write_bundle(b.manifest_bytes, kept, b.signature_bytes)


def add_signatures(
    source: bytes | str | os.PathLike[str], signatures: Iterable[Signature],
    *, limits: BundleLimits | None = None,
) -> bytes:
    """The same pack with ``signatures`` added (a key's earlier signature is replaced)."""
    b = read_bundle(source, limits=limits)
    merged = {s.key_id: s for s in b.signatures}
    merged.update({s.key_id: s for s in signatures})
    return write_bundle(b.manifest_bytes, b.contents, signatures_to_toml(merged.values()))


def artifact_entry(entry: str, triple: str, kind: str, path: str, data: bytes) -> Artifact:
    """The manifest's :class:`Artifact` record for ``data`` stored at ``path``."""
    return Artifact(entry=entry, triple=triple, kind=kind, path=path, sha256=sha256_hex(data),
                    size=len(data))


def file_entry(path: str, data: bytes) -> PackFile:
    """The manifest's :class:`PackFile` record for ``data`` stored at ``path``."""
    return PackFile(path=path, sha256=sha256_hex(data), size=len(data))


# -- streaming (bounded memory) --------------------------------------------------------------
#
# The registry checks and re-packs uploads of up to a gigabyte. These helpers apply the same
# rules as ``read_bundle`` while holding at most one chunk of any artifact: member bytes are
# hashed (and, when copying, compressed) as they come out of the zstd stream.

_STREAM_CHUNK = 1 << 20


@dataclass(frozen=True)
class BundleScan:
    """What :func:`scan_bundle` found: a :class:`Bundle` without the member bytes. Every
    member in ``present`` (file order) matched the manifest's sha256 and size."""

    manifest: PackManifest
    manifest_bytes: bytes
    signature_bytes: bytes | None
    signatures: list[Signature]
    present: tuple[str, ...]
    source: str = ""
    compressed_size: int = 0

    def present_triples(self) -> tuple[str, ...]:
        """Triples with at least one artifact present (portable first)."""
        got = {a.triple for a in self.manifest.artifacts if a.path in self.present}
        return tuple(t for t in self.manifest.triples() if t in got)

    def is_stripped(self) -> bool:
        return any(a.path not in self.present for a in self.manifest.artifacts)


class _MemberStream:
    """The members of a pack, in file order, with ``read_bundle``'s checks: :meth:`members` gives
    ``(name, size, chunks)``; the manifest and signature come whole (and are kept on the
    object), every other member as chunks of at most ``_STREAM_CHUNK`` bytes whose sha256 and
    size are checked once its last chunk is out. Chunks a consumer leaves unread are still
    read (and checked) before the next member."""

    def __init__(self, fh: IO[bytes], compressed: int, label: str, limits: BundleLimits) -> None:
        if fh.read(4) != b"\x28\xb5\x2f\xfd":
            raise PackFormatError(f"{label} is not a .rflpack (no zstd frame at the start)",
                                  pack=label)
        fh.seek(0)
        self._r = _Reader(fh, compressed, limits, label)
        self._label = label
        self._limits = limits
        self.manifest: PackManifest | None = None
        self.manifest_bytes = b""
        self.signature_bytes: bytes | None = None

    def members(self) -> Iterable[tuple[str, int, Iterable[bytes]]]:
        r, label, limits = self._r, self._label, self._limits
        seen: set[str] = set()
        expected: dict[str, str] = {}
        sizes: dict[str, int] = {}
        index = 0
        while True:
            head = r.read(_BLOCK)
            if len(head) != _BLOCK:  # as read_bundle: the end-of-archive marker is required
                what = ("a tar header" if head or self.manifest is None
                        else "the end-of-archive marker")
                raise PackFormatError(f"{label}: truncated: the tar stream ends without {what}",
                                      pack=label)
            parsed = _parse_header(head, label)
            if parsed is None:
                break
            name, size = parsed
            if name in seen:
                raise UnsafeArchiveError(f"{label}: member {name!r} appears twice", pack=label,
                                         member=name)
            seen.add(name)
            if index >= limits.max_members:
                raise UnsafeArchiveError(f"{label}: more than {limits.max_members} members",
                                         pack=label)
            if index == 0 and name != MANIFEST_NAME:
                raise PackFormatError(f"{label}: the first member must be {MANIFEST_NAME}, "
                                      f"found {name!r}", pack=label, member=name)
            if name == MANIFEST_NAME:
                cap = limits.max_manifest
            elif name == SIGNATURE_NAME:
                if index != 1:
                    raise PackFormatError(f"{label}: {SIGNATURE_NAME} must directly follow "
                                          f"{MANIFEST_NAME}", pack=label, member=name)
                cap = limits.max_signature
            else:
                if name not in expected:
                    raise UnsafeArchiveError(
                        f"{label}: member {name!r} is not listed in the manifest", pack=label,
                        member=name,
                    )
                cap = min(limits.max_member, sizes[name])
            if size > cap:
                what = "the manifest" if name == MANIFEST_NAME else f"member {name!r}"
                raise UnsafeArchiveError(
                    f"{label}: {what} declares {size} bytes, over its limit of {cap}",
                    pack=label, member=name,
                )
            index += 1
            if name in (MANIFEST_NAME, SIGNATURE_NAME):
                data = r.exact(size, name)
                r.exact(-size % _BLOCK, name)
                if name == MANIFEST_NAME:
                    self.manifest_bytes = data
                    self.manifest = _with_pack(parse_manifest, data, label)
                    expected, sizes = self.manifest.members(), self.manifest.sizes()
                else:
                    self.signature_bytes = data
                yield name, size, iter((data,))
                continue
            assert self.manifest is not None
            chunks = self._chunks(name, size, expected[name], sizes[name])
            yield name, size, chunks
            for _ in chunks:
                pass

    def _chunks(self, name: str, size: int, sha: str, want: int) -> Iterable[bytes]:
        assert self.manifest is not None
        pack = self.manifest.name
        if size != want:
            raise PackIntegrityError(
                f"{pack}: {name} is {size} bytes but the manifest says {want}",
                pack=pack, file=name, expected=str(want), actual=str(size),
            )
        digest = hashlib.sha256()
        left = size
        while left:
            chunk = self._r.exact(min(left, _STREAM_CHUNK), name)
            digest.update(chunk)
            left -= len(chunk)
            yield chunk
        self._r.exact(-size % _BLOCK, name)
        actual = digest.hexdigest()
        if actual != sha:
            raise PackIntegrityError(
                f"{pack}: {name} does not match the manifest: sha256 expected {sha}, got "
                f"{actual}", pack=pack, file=name, expected=sha, actual=actual,
            )


def _open_pack(source: str | os.PathLike[str]) -> tuple[IO[bytes], int, str]:
    path = Path(source)
    try:
        fh = path.open("rb")
        return fh, os.fstat(fh.fileno()).st_size, path.name
    except OSError as exc:
        raise PackFormatError(f"cannot read {path}: {exc.strerror}", pack=path.name) from exc


def scan_bundle(source: str | os.PathLike[str], *, limits: BundleLimits | None = None
                ) -> BundleScan:
    """Check a pack file exactly as :func:`read_bundle` does, in memory bounded by the
    manifest, the signature and one chunk, whatever the pack's size."""
    fh, compressed, label = _open_pack(source)
    present: list[str] = []
    lim = limits or BundleLimits()
    with fh:
        try:
            _frame(fh, compressed, label, lim)  # exactly one zstd frame, as read_bundle checks
            members = _MemberStream(fh, compressed, label, lim)
            for name, _, chunks in members.members():
                for _ in chunks:
                    pass
                if name not in (MANIFEST_NAME, SIGNATURE_NAME):
                    present.append(name)
        except OSError as exc:
            raise PackFormatError(f"cannot read {source}: {exc.strerror}", pack=label) from exc
    if members.manifest is None:
        raise PackFormatError(f"{label}: empty archive, no {MANIFEST_NAME}", pack=label)
    sigs = (_with_pack(parse_signatures, members.signature_bytes, label)
            if members.signature_bytes else [])
    return BundleScan(members.manifest, members.manifest_bytes, members.signature_bytes, sigs,
                      tuple(present), label, compressed)


def stream_bundle(source: str | os.PathLike[str], scan: BundleScan, keep: Iterable[str], *,
                  limits: BundleLimits | None = None) -> Iterable[bytes]:
    """The bytes of a pack with ``scan``'s manifest and signature and only the members of
    ``source`` named in ``keep`` (each must be present), in ``source``'s order, as compressed
    chunks. ``scan`` is :func:`scan_bundle` of ``source``; members are checked again as they
    are copied, and memory stays bounded as for :func:`scan_bundle`. The same source and
    ``keep`` always give the same bytes. They hold what :func:`strip_bundle` keeps, but the
    zstd frame is written as a stream, so it need not equal ``write_bundle``'s one-shot
    frame byte for byte."""
    wanted = set(keep)
    missing = sorted(wanted - set(scan.present))
    if missing:
        raise PackFormatError(f"{scan.source}: cannot keep {missing[0]!r}: the pack does not "
                              "carry it", pack=scan.source, member=missing[0])
    sizes = scan.manifest.sizes()
    lengths = [len(scan.manifest_bytes)]
    if scan.signature_bytes is not None:
        lengths.append(len(scan.signature_bytes))
    lengths += [sizes[p] for p in wanted]
    total = 2 * _BLOCK + sum(_BLOCK + n + (-n % _BLOCK) for n in lengths)
    z = zstandard.ZstdCompressor(
        level=COMPRESSION_LEVEL, write_checksum=True, write_content_size=True, threads=0
    ).compressobj(size=total)
    fh, compressed, label = _open_pack(source)
    with fh:
        members = _MemberStream(fh, compressed, label, limits or BundleLimits())
        copied: set[str] = set()
        for name, size, chunks in members.members():
            if name == MANIFEST_NAME and members.manifest_bytes != scan.manifest_bytes:
                raise PackFormatError(f"{label}: the manifest changed since it was checked",
                                      pack=label)
            if name not in (MANIFEST_NAME, SIGNATURE_NAME) and name not in wanted:
                continue
            out = z.compress(_header(name, size))
            for chunk in chunks:
                out += z.compress(chunk)
                if out:
                    yield out
                    out = b""
            out += z.compress(b"\x00" * (-size % _BLOCK))
            if out:
                yield out
            copied.add(name)
        if (members.signature_bytes != scan.signature_bytes
                or copied - {MANIFEST_NAME, SIGNATURE_NAME} != wanted):
            raise PackFormatError(f"{label}: the pack changed since it was checked",
                                  pack=label)
    yield z.compress(b"\x00" * (2 * _BLOCK)) + z.flush()
