"""The ``.rflpack`` container (PACK_FORMAT.md §2): one zstd frame holding a POSIX ustar stream.

Members, in this order: ``manifest.toml``, then ``signature.toml`` if the pack is signed, then
every artifact and file the pack carries, sorted by path. Headers are deterministic
(:mod:`._bundle_tar`) and the frame has a fixed compression level (:mod:`._bundle_frame`), so
the same manifest and files always give the same bytes.

Reading is strict and bounded (:class:`BundleLimits`): the frame is checked whole before it
is decompressed, the bytes coming out are bounded absolutely and relative to the compressed
size (decompression bombs), and the members pass the rules of :mod:`._bundle_members` (only
plain files with safe relative names that the manifest lists, each within its size limit and
matching the manifest's sha256 and size). A member the manifest lists may be absent: that is
a stripped pack. :mod:`._bundle_stream` reads and re-packs with the same rules in bounded
memory.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .._errors import PackFormatError
from ._bundle_frame import COMPRESSION_LEVEL, BundleLimits, check_frame, compressor
from ._bundle_members import MemberWalk, check_member, sha256_hex
from ._bundle_stream import BundleScan, scan_bundle, stream_bundle
from ._bundle_tar import tar_stream
from ._manifest import (
    MANIFEST_NAME,
    PORTABLE_TRIPLE,
    SIGNATURE_NAME,
    Artifact,
    PackFile,
    PackManifest,
    parse_manifest,
)
from ._signing import Signature, signatures_to_toml

__all__ = [
    "COMPRESSION_LEVEL",
    "Bundle",
    "BundleLimits",
    "BundleScan",
    "add_signatures",
    "artifact_entry",
    "build_bundle",
    "file_entry",
    "read_bundle",
    "scan_bundle",
    "sha256_hex",
    "stream_bundle",
    "strip_bundle",
    "write_bundle",
]


# -- writing ---------------------------------------------------------------------------------


def write_bundle(
    manifest_bytes: bytes, contents: Mapping[str, bytes], signature_bytes: bytes | None = None
) -> bytes:
    """Low-level: the container bytes for exactly these members (no checks on contents)."""
    members: list[tuple[str, bytes]] = [(MANIFEST_NAME, manifest_bytes)]
    if signature_bytes is not None:
        members.append((SIGNATURE_NAME, signature_bytes))
    members += sorted(contents.items())
    return compressor().compress(tar_stream(members))


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
            raise PackFormatError(
                f"the manifest lists {path!r} but no content was given", member=path
            )
        check_member(path, contents[path], sha, parsed.sizes()[path], parsed.name)
    sigs = list(signatures)
    return write_bundle(manifest_bytes, contents, signatures_to_toml(sigs) if sigs else None)


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


def _read(
    fh: IO[bytes], compressed: int, label: str, limits: BundleLimits, head_only: bool
) -> Bundle:
    content = check_frame(fh, compressed, label, limits)
    walk = MemberWalk(fh, compressed, label, limits, content=content, head_only=head_only)
    contents: dict[str, bytes] = {}
    for name, _, chunks in walk.members():
        data = b"".join(chunks)
        if name not in (MANIFEST_NAME, SIGNATURE_NAME):
            contents[name] = data
    assert walk.manifest is not None  # the walk refuses a pack without one
    return Bundle(
        walk.manifest,
        walk.manifest_bytes,
        walk.signature_bytes,
        walk.signatures(),
        contents,
        label,
        compressed,
    )


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
    source: bytes | str | os.PathLike[str],
    signatures: Iterable[Signature],
    *,
    limits: BundleLimits | None = None,
) -> bytes:
    """The same pack with ``signatures`` added (a key's earlier signature is replaced)."""
    b = read_bundle(source, limits=limits)
    merged = {s.key_id: s for s in b.signatures}
    merged.update({s.key_id: s for s in signatures})
    return write_bundle(b.manifest_bytes, b.contents, signatures_to_toml(merged.values()))


def artifact_entry(entry: str, triple: str, kind: str, path: str, data: bytes) -> Artifact:
    """The manifest's :class:`Artifact` record for ``data`` stored at ``path``."""
    return Artifact(
        entry=entry, triple=triple, kind=kind, path=path, sha256=sha256_hex(data), size=len(data)
    )


def file_entry(path: str, data: bytes) -> PackFile:
    """The manifest's :class:`PackFile` record for ``data`` stored at ``path``."""
    return PackFile(path=path, sha256=sha256_hex(data), size=len(data))
