"""Reading and re-packing ``.rflpack`` files in bounded memory, whatever their size.

The registry checks and re-packs uploads of up to a gigabyte. :func:`scan_bundle` applies
exactly :func:`~reflow.abi._bundle.read_bundle`'s rules (the same
:class:`~reflow.abi._bundle_members.MemberWalk`) while holding at most one chunk of any
artifact, and :func:`stream_bundle` copies the members a caller keeps into a new pack as
compressed chunks, checking them again as they pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .._errors import PackFormatError
from ._bundle_frame import BundleLimits, check_frame, compressor
from ._bundle_members import MemberWalk
from ._bundle_tar import BLOCK, header
from ._manifest import MANIFEST_NAME, SIGNATURE_NAME, PackManifest
from ._signing import Signature

__all__ = ["BundleScan", "scan_bundle", "stream_bundle"]


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


def _open_pack(source: str | os.PathLike[str]) -> tuple[IO[bytes], int, str]:
    path = Path(source)
    try:
        fh = path.open("rb")
        return fh, os.fstat(fh.fileno()).st_size, path.name
    except OSError as exc:
        raise PackFormatError(f"cannot read {path}: {exc.strerror}", pack=path.name) from exc


def scan_bundle(
    source: str | os.PathLike[str], *, limits: BundleLimits | None = None
) -> BundleScan:
    """Check a pack file exactly as :func:`~reflow.abi._bundle.read_bundle` does, in memory
    bounded by the manifest, the signature and one chunk, whatever the pack's size."""
    fh, compressed, label = _open_pack(source)
    present: list[str] = []
    lim = limits or BundleLimits()
    with fh:
        try:
            content = check_frame(fh, compressed, label, lim)
            walk = MemberWalk(fh, compressed, label, lim, content=content)
            for name, _, chunks in walk.members():
                for _ in chunks:
                    pass
                if name not in (MANIFEST_NAME, SIGNATURE_NAME):
                    present.append(name)
        except OSError as exc:
            raise PackFormatError(f"cannot read {source}: {exc.strerror}", pack=label) from exc
    assert walk.manifest is not None  # the walk refuses a pack without one
    return BundleScan(
        walk.manifest,
        walk.manifest_bytes,
        walk.signature_bytes,
        walk.signatures(),
        tuple(present),
        label,
        compressed,
    )


def stream_bundle(
    source: str | os.PathLike[str],
    scan: BundleScan,
    keep: Iterable[str],
    *,
    limits: BundleLimits | None = None,
) -> Iterator[bytes]:
    """The bytes of a pack with ``scan``'s manifest and signature and only the members of
    ``source`` named in ``keep`` (each must be present), in ``source``'s order, as compressed
    chunks. ``scan`` is :func:`scan_bundle` of ``source``; members are checked again as they
    are copied, and memory stays bounded as for :func:`scan_bundle`. The same source and
    ``keep`` always give the same bytes. They hold what ``strip_bundle`` keeps, but the
    zstd frame is written as a stream, so it need not equal ``write_bundle``'s one-shot
    frame byte for byte."""
    wanted = set(keep)
    missing = sorted(wanted - set(scan.present))
    if missing:
        raise PackFormatError(
            f"{scan.source}: cannot keep {missing[0]!r}: the pack does not carry it",
            pack=scan.source,
            member=missing[0],
        )
    sizes = scan.manifest.sizes()
    lengths = [len(scan.manifest_bytes)]
    if scan.signature_bytes is not None:
        lengths.append(len(scan.signature_bytes))
    lengths += [sizes[p] for p in wanted]
    total = 2 * BLOCK + sum(BLOCK + n + (-n % BLOCK) for n in lengths)
    z = compressor().compressobj(size=total)
    fh, compressed, label = _open_pack(source)
    lim = limits or BundleLimits()
    with fh:
        content = check_frame(fh, compressed, label, lim)
        members = MemberWalk(fh, compressed, label, lim, content=content)
        copied: set[str] = set()
        for name, size, chunks in members.members():
            if name == MANIFEST_NAME and members.manifest_bytes != scan.manifest_bytes:
                raise PackFormatError(
                    f"{label}: the manifest changed since it was checked", pack=label
                )
            if name not in (MANIFEST_NAME, SIGNATURE_NAME) and name not in wanted:
                continue
            out = z.compress(header(name, size))
            for chunk in chunks:
                out += z.compress(chunk)
                if out:
                    yield out
                    out = b""
            out += z.compress(b"\x00" * (-size % BLOCK))
            if out:
                yield out
            copied.add(name)
        if (
            members.signature_bytes != scan.signature_bytes
            or copied - {MANIFEST_NAME, SIGNATURE_NAME} != wanted
        ):
            raise PackFormatError(f"{label}: the pack changed since it was checked", pack=label)
    yield z.compress(b"\x00" * (2 * BLOCK)) + z.flush()
