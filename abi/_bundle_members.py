"""The member rules of a ``.rflpack`` (PACK_FORMAT.md §2), written once for every reader.

:class:`MemberWalk` is the only code that decides whether a pack's members are acceptable:
``manifest.toml`` first, ``signature.toml`` (if any) directly after it, no name twice, at most
``max_members``, each member within its size limit and listed by the manifest, each one's
bytes matching the manifest's sha256 and size, and after the last member the tar end-of-archive
marker with nothing but zero padding up to the size the zstd frame records.
:func:`~reflow.abi._bundle.read_bundle` (members whole, in memory) and
:func:`~reflow.abi._bundle_stream.scan_bundle` / ``stream_bundle`` (members as bounded chunks)
both read through it, so they cannot disagree about a pack.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import IO, TypeVar

from .._errors import PackFormatError, PackIntegrityError, UnsafeArchiveError
from ._bundle_frame import BundleLimits, FrameReader
from ._bundle_tar import BLOCK, ZERO_BLOCK, parse_header
from ._manifest import MANIFEST_NAME, SIGNATURE_NAME, PackManifest, parse_manifest
from ._signing import Signature, parse_signatures

__all__ = ["CHUNK", "MemberWalk", "check_member", "sha256_hex", "with_pack"]

#: The most bytes of one member a chunked reader holds at a time.
CHUNK = 1 << 20
_MAGIC = b"\x28\xb5\x2f\xfd"
_T = TypeVar("_T")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _size_error(pack: str, path: str, size: int, want: int) -> PackIntegrityError:
    return PackIntegrityError(
        f"{pack}: {path} is {size} bytes but the manifest says {want}",
        pack=pack,
        file=path,
        expected=str(want),
        actual=str(size),
    )


def _hash_error(pack: str, path: str, sha: str, actual: str) -> PackIntegrityError:
    return PackIntegrityError(
        f"{pack}: {path} does not match the manifest: sha256 expected {sha}, got {actual}",
        pack=pack,
        file=path,
        expected=sha,
        actual=actual,
    )


def check_member(path: str, data: bytes, sha: str, size: int, pack: str) -> None:
    """``data`` is what the manifest of ``pack`` says ``path`` holds (size, then sha256)."""
    if len(data) != size:
        raise _size_error(pack, path, len(data), size)
    actual = sha256_hex(data)
    if actual != sha:
        raise _hash_error(pack, path, sha, actual)


def with_pack(fn: Callable[[bytes], _T], data: bytes, label: str) -> _T:
    """``fn(data)``, with a PackFormatError it raises prefixed by and tied to ``label``."""
    try:
        return fn(data)
    except PackFormatError as exc:
        exc.pack = label
        exc.args = (f"{label}: {exc.args[0]}",)
        raise


class MemberWalk:
    """The members of one pack, in file order, each checked by the rules above.

    :meth:`members` gives ``(name, size, chunks)``: the manifest and the signature come whole
    (one chunk, also kept on the object as ``manifest`` / ``manifest_bytes`` /
    ``signature_bytes``), every other member as chunks of at most :data:`CHUNK` bytes whose
    sha256 is checked once its last chunk is out. Chunks a consumer leaves unread are still
    read, and checked, before the next member. ``content`` is the size the zstd frame records
    (from :func:`~reflow.abi._bundle_frame.check_frame`); the end of the archive is checked
    against it. ``head_only`` stops after the manifest and signature, unchecked beyond them."""

    def __init__(
        self,
        fh: IO[bytes],
        compressed: int,
        label: str,
        limits: BundleLimits,
        *,
        content: int,
        head_only: bool = False,
    ) -> None:
        if fh.read(4) != _MAGIC:
            raise PackFormatError(
                f"{label} is not a .rflpack (no zstd frame at the start)", pack=label
            )
        fh.seek(0)
        self._r = FrameReader(fh, compressed, limits, label)
        self._label = label
        self._limits = limits
        self._content = content
        self._head_only = head_only
        self.manifest: PackManifest | None = None
        self.manifest_bytes = b""
        self.signature_bytes: bytes | None = None

    def signatures(self) -> list[Signature]:
        """The signatures the pack carries (parsed within ``max_signature``)."""
        if self.signature_bytes is None:
            return []
        return with_pack(
            partial(parse_signatures, max_size=self._limits.max_signature),
            self.signature_bytes,
            self._label,
        )

    def members(self) -> Iterator[tuple[str, int, Iterator[bytes]]]:
        r, label, limits = self._r, self._label, self._limits
        seen: set[str] = set()
        expected: dict[str, str] = {}
        sizes: dict[str, int] = {}
        index = 0
        while True:
            head = r.read(BLOCK)
            if len(head) != BLOCK:
                what = (
                    "a tar header" if head or self.manifest is None else "the end-of-archive marker"
                )
                raise PackFormatError(
                    f"{label}: truncated: the tar stream ends without {what}", pack=label
                )
            parsed = parse_header(head, label)
            if parsed is None:
                if self.manifest is None:
                    raise PackFormatError(f"{label}: empty archive, no {MANIFEST_NAME}", pack=label)
                if not self._head_only:
                    self._end_of_archive()
                return
            name, size = parsed
            if name in seen:
                raise UnsafeArchiveError(
                    f"{label}: member {name!r} appears twice", pack=label, member=name
                )
            seen.add(name)
            if index >= limits.max_members:
                raise UnsafeArchiveError(
                    f"{label}: more than {limits.max_members} members", pack=label
                )
            if index == 0 and name != MANIFEST_NAME:
                raise PackFormatError(
                    f"{label}: the first member must be {MANIFEST_NAME}, found {name!r}",
                    pack=label,
                    member=name,
                )
            if name == MANIFEST_NAME:
                cap = limits.max_manifest
            elif name == SIGNATURE_NAME:
                if index != 1:
                    raise PackFormatError(
                        f"{label}: {SIGNATURE_NAME} must directly follow {MANIFEST_NAME}",
                        pack=label,
                        member=name,
                    )
                cap = limits.max_signature
            else:
                if self._head_only:
                    return
                if name not in expected:
                    raise UnsafeArchiveError(
                        f"{label}: member {name!r} is not listed in the manifest",
                        pack=label,
                        member=name,
                    )
                cap = min(limits.max_member, sizes[name])
            if size > cap:
                what = "the manifest" if name == MANIFEST_NAME else f"member {name!r}"
                raise UnsafeArchiveError(
                    f"{label}: {what} declares {size} bytes, over its limit of {cap}",
                    pack=label,
                    member=name,
                )
            index += 1
            if name in (MANIFEST_NAME, SIGNATURE_NAME):
                data = r.exact(size, name)
                r.exact(-size % BLOCK, name)
                if name == MANIFEST_NAME:
                    self.manifest_bytes = data
                    self.manifest = with_pack(
                        partial(parse_manifest, max_size=limits.max_manifest), data, label
                    )
                    expected, sizes = self.manifest.members(), self.manifest.sizes()
                else:
                    self.signature_bytes = data
                yield name, size, iter((data,))
                if self._head_only and index == 2:
                    return
                continue
            chunks = self._chunks(name, size, expected[name], sizes[name])
            yield name, size, chunks
            for _ in chunks:
                pass

    def _chunks(self, name: str, size: int, sha: str, want: int) -> Iterator[bytes]:
        assert self.manifest is not None
        pack = self.manifest.name
        if size != want:
            raise _size_error(pack, name, size, want)
        digest = hashlib.sha256()
        left = size
        while left:
            chunk = self._r.exact(min(left, CHUNK), name)
            digest.update(chunk)
            left -= len(chunk)
            yield chunk
        self._r.exact(-size % BLOCK, name)
        actual = digest.hexdigest()
        if actual != sha:
            raise _hash_error(pack, name, sha, actual)

    def _end_of_archive(self) -> None:
        """After the first zero block: a second one, then only zero padding (as ``tar``
        writes) up to the content size the frame records, then the frame's end (which checks
        its checksum)."""
        r, label = self._r, self._label
        if r.read(BLOCK) != ZERO_BLOCK:
            raise PackFormatError(
                f"{label}: the tar stream's end-of-archive marker is not two zero blocks",
                pack=label,
            )
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            if chunk.count(0) != len(chunk):
                raise PackFormatError(
                    f"{label}: data after the tar end-of-archive marker", pack=label
                )
        if r.total != self._content:
            raise PackFormatError(
                f"{label}: the zstd frame holds {r.total} bytes but records {self._content}",
                pack=label,
            )
