"""Where a registry keeps things: an :class:`Index` (namespaces, keys, tokens, versions,
variants, yanks, signed metadata) and a :class:`BlobStore` (content-addressed pack bytes),
composed into the :class:`Storage` the app and the auth layer use. Each half has backends:

=====  ========================================  ==============================
index  ``_storage_sqlite.SQLiteIndex`` (default)  ``_storage_pg.PostgresIndex``
blobs  ``_storage_files.LocalBlobs`` (default)    ``_storage_s3.S3Blobs``
=====  ========================================  ==============================

:class:`LocalStorage` is the embedded default, everything under one data directory::

    data/index.sqlite3             the index (WAL mode)
    data/blobs/sha256/ab/abcd...   immutable blobs, named by their sha256
    data/tmp/                      uploads in progress (emptied at start-up)

:func:`~reflow.registry._storage_open.open_storage` picks the backends from ``--index`` /
``--blobs`` URLs; :class:`LocalStorage` lives in :mod:`._storage_sqlite`.

Durability promise: a blob is spooled to a temp file, made durable under its content address
(local: fsynced, renamed, directory fsynced; S3: one PUT or a completed multipart upload,
both atomic) *before* the index row that mentions it is committed. A process killed at any
point leaves either no version row (and at most an unreferenced, complete blob, removed by
:meth:`Storage.collect_garbage`) or a complete version. Nothing serves a blob that no
committed row points to, so a partial upload is never visible.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .._errors import RegistryError
from ._semver import Version, precedence

#: Environment variables naming the index and blob backends (``--index`` / ``--blobs``).
INDEX_ENV, BLOBS_ENV = "REFLOW_REGISTRY_INDEX", "REFLOW_REGISTRY_BLOBS"
#: Largest chunk a blob read yields.
CHUNK = 256 << 10

__all__ = [
    "BLOBS_ENV",
    "CHUNK",
    "INDEX_ENV",
    "BlobStore",
    "BlobUpload",
    "Index",
    "KeyRecord",
    "NamespaceRecord",
    "Storage",
    "StorageConfigError",
    "StorageConflict",
    "StorageFull",
    "StorageUnavailable",
    "TokenRecord",
    "VariantRecord",
    "VersionConflict",
    "VersionRecord",
]


class StorageConflict(Exception):
    """A uniqueness rule was broken (version already published, namespace exists, ...)."""


class VersionConflict(StorageConflict):
    """Another version of the pack has the same semver precedence (``1.0.10`` and
    ``1.0.10+rebuild``): ranges could not tell them apart. ``existing`` is its text."""

    def __init__(self, message: str, existing: str) -> None:
        super().__init__(message)
        self.existing = existing


class StorageFull(Exception):
    """The disk (or a quota, or the process's file size limit) has no room for a write.
    Whatever the failed operation had written is removed again; ``__cause__`` is the
    ``OSError`` or ``sqlite3`` error."""


class StorageUnavailable(RegistryError):
    """The index or blob store could not be reached or answered with an error (a database
    or an S3 server that went away): the message names the location (never its
    credentials). The app answers ``503 storage_unavailable``."""


class StorageConfigError(StorageUnavailable):
    """An ``--index`` or ``--blobs`` location is malformed, unreachable or refuses us:
    the message names the location (never its credentials) and what was expected."""


#: errno values that mean "no room": disk full, quota exceeded, file size limit reached.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _no_room(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _NO_ROOM
    return (
        isinstance(exc, sqlite3.Error)
        and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    )


def _full(exc: BaseException, what: str) -> StorageFull:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StorageFull(f"no room to store {what}: {reason}")


@dataclass(frozen=True)
class NamespaceRecord:
    name: str
    owner: str
    created_at: float


@dataclass(frozen=True)
class KeyRecord:
    namespace: str
    key_id: str
    pem: bytes
    added_at: float


@dataclass(frozen=True)
class TokenRecord:
    """A token as stored: never the secret, only its sha256."""

    token_id: str
    secret_sha256: str
    namespace: str  # "*" = every namespace
    scope: str  # read | publish | admin
    label: str
    created_at: float
    expires_at: float | None
    revoked: bool = False
    #: The token that created this one over the API (None: made by the command line).
    #: Revoking a token revokes every token it created, transitively.
    parent_id: str | None = None


@dataclass(frozen=True)
class VariantRecord:
    """A downloadable file of a version: ``triple`` is ``"full"`` for the whole pack, a
    native triple for the slim pack keeping that triple's and the portable artifacts, or the
    portable triple for the slim pack keeping only portable artifacts."""

    triple: str
    sha256: str
    size: int


@dataclass(frozen=True)
class VersionRecord:
    namespace: str
    name: str
    version: str
    sha256: str
    size: int
    manifest: bytes  # manifest.toml exactly as signed
    signature: bytes  # signature.toml exactly as published
    key_id: str
    abi: str
    description: str
    templates: tuple[str, ...]
    triples: tuple[str, ...]
    published_at: float
    published_by: str
    yanked: bool = False
    yank_reason: str = ""
    variants: tuple[VariantRecord, ...] = field(default=())

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


class BlobUpload:
    """A blob being written: bytes go to a temp file while their sha256 and size are
    counted. :meth:`Storage.commit_blob` makes it durable; :meth:`discard` drops it. A write
    that finds no room raises :class:`StorageFull` (then :meth:`discard` still cleans up)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fh: IO[bytes] | None = open(path, "xb")  # noqa: SIM115 - closed by finish/discard
        except OSError as exc:
            if _no_room(exc):
                raise _full(exc, "an upload") from exc
            raise
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        assert self._fh is not None, "upload already finished"
        try:
            self._fh.write(data)
        except OSError as exc:
            if _no_room(exc):
                raise _full(exc, "the upload") from exc
            raise
        self._hash.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """Flush and fsync the temp file (idempotent)."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                try:
                    fh.flush()
                    os.fsync(fh.fileno())
                finally:
                    fh.close()
            except OSError as exc:
                if _no_room(exc):
                    raise _full(exc, "the upload") from exc
                raise

    def discard(self) -> None:
        """Close and delete the temp file (idempotent; never raises for a full disk: the
        bytes that did not fit are dropped with the file)."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            with contextlib.suppress(OSError):  # buffered bytes with no room: dropped
                fh.close()
        self.path.unlink(missing_ok=True)


class BlobStore(ABC):
    """Content-addressed, immutable pack bytes. An upload is spooled to a local temp file
    (hashed and counted as it arrives, within the registry's size limit: the verifier reads
    it as a file); :meth:`commit_blob` makes it durable under its sha256, all or nothing."""

    #: Reads are local file reads (cheap enough inline in the event loop).
    local_reads: bool = True

    @abstractmethod
    def new_upload(self) -> BlobUpload: ...

    @abstractmethod
    def commit_blob(self, upload: BlobUpload) -> str:
        """Make the upload durable under its content address; return its sha256."""

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` durably; return its sha256."""
        up = self.new_upload()
        try:
            up.write(data)
            return self.commit_blob(up)
        except BaseException:
            up.discard()
            raise

    @abstractmethod
    def has_blob(self, sha256: str) -> bool: ...

    @abstractmethod
    def read_blob(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of the blob, in chunks of at most :data:`CHUNK` bytes
        (a remote store asks for just that range)."""

    def blob_path(self, sha256: str) -> Path:
        """A local file with the blob's bytes (only stores that keep blobs as files)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no blobs as local files")

    #: Where uploads in progress are spooled (emptied by :meth:`collect_garbage`).
    spool: Path

    @abstractmethod
    def list_blobs(self) -> list[str]:
        """The sha256 of every committed blob (maintenance and tests)."""

    @abstractmethod
    def collect_garbage(self, used: set[str]) -> tuple[int, int]:
        """Remove abandoned uploads and blobs not in ``used`` (a shared store only those
        old enough that no publish can still be committing them). Returns (temp files,
        blobs) removed."""

    def close(self) -> None:  # noqa: B027 - optional for stores without resources
        """Release resources (idempotent)."""


class Index(ABC):
    """The index: namespaces, keys, tokens, versions with their variants and yanks, and the
    signed (TUF) metadata rows. Methods are blocking and thread-safe."""

    # -- namespaces and keys --
    @abstractmethod
    def create_namespace(self, name: str, owner: str) -> NamespaceRecord: ...

    @abstractmethod
    def get_namespace(self, name: str) -> NamespaceRecord | None: ...

    @abstractmethod
    def list_namespaces(self) -> list[NamespaceRecord]: ...

    @abstractmethod
    def add_key(self, namespace: str, key_id: str, pem: bytes) -> KeyRecord: ...

    @abstractmethod
    def list_keys(self, namespace: str) -> list[KeyRecord]: ...

    @abstractmethod
    def remove_key(self, namespace: str, key_id: str) -> bool: ...

    # -- tokens --
    @abstractmethod
    def add_token(self, record: TokenRecord) -> None: ...

    @abstractmethod
    def get_token(self, token_id: str) -> TokenRecord | None: ...

    @abstractmethod
    def list_tokens(self) -> list[TokenRecord]: ...

    @abstractmethod
    def revoke_token(self, token_id: str) -> bool:
        """Revoke the token and every token it created, transitively (``parent_id``);
        False if there is no such token."""

    # -- versions --
    @abstractmethod
    def add_version(self, record: VersionRecord) -> None:
        """Commit a version row (and its variants) in one transaction. Raises
        StorageConflict if the version exists, and its subclass VersionConflict if another
        version of the pack has the same precedence (checked under a lock on the pack, so
        two racing publishers cannot both pass)."""

    @abstractmethod
    def get_version(self, namespace: str, name: str, version: str) -> VersionRecord | None: ...

    @abstractmethod
    def list_versions(self, namespace: str, name: str) -> list[VersionRecord]: ...

    @abstractmethod
    def find_versions(self, name: str, version: str) -> list[VersionRecord]:
        """``name`` at ``version`` in every namespace (pack names without a namespace may
        be published in several)."""

    @abstractmethod
    def set_yanked(
        self, namespace: str, name: str, version: str, yanked: bool, reason: str = ""
    ) -> bool: ...

    @abstractmethod
    def search(self, query: str, limit: int, offset: int) -> list[VersionRecord]:
        """The newest non-yanked version of each pack whose name, description or template
        ids contain ``query`` (case-insensitive), ordered by name."""

    @abstractmethod
    def used_blobs(self) -> set[str]:
        """Every sha256 a committed row names (for garbage collection)."""

    # -- signed metadata (TUF): each role's versions, as signed bytes --
    @abstractmethod
    def put_metadata(self, files: Sequence[tuple[str, int, bytes]]) -> None:
        """Store ``(role, version, signed bytes)`` rows in one transaction: all or none. A
        role version that exists already is a :class:`StorageConflict` (two writers racing
        for the next snapshot: one wins)."""

    @abstractmethod
    def get_metadata(self, role: str, version: int | None = None) -> tuple[int, bytes] | None:
        """``(version, bytes)`` of ``role`` at ``version`` (None: the newest), or None."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release resources (idempotent)."""


class Storage:
    """What a registry needs from its storage: an :class:`Index` and a :class:`BlobStore`,
    each with backends of its own (SQLite or PostgreSQL; local files or S3). Methods are
    blocking and thread-safe; the index methods are the index's, the blob methods the
    store's, and :meth:`add_version` checks that every blob a row names is committed."""

    def __init__(self, index: Index, blob_store: BlobStore, root: Path | None = None) -> None:
        self.index, self.blob_store = index, blob_store
        #: The local data directory (online TUF keys, upload spool), when there is one.
        self.root = root

    def __repr__(self) -> str:
        return f"Storage({self.index!r}, {self.blob_store!r})"

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- blobs --
    @property
    def local_reads(self) -> bool:
        return self.blob_store.local_reads

    def new_upload(self) -> BlobUpload:
        return self.blob_store.new_upload()

    def commit_blob(self, upload: BlobUpload) -> str:
        return self.blob_store.commit_blob(upload)

    def put_blob(self, data: bytes) -> str:
        return self.blob_store.put_blob(data)

    def blob_path(self, sha256: str) -> Path:
        return self.blob_store.blob_path(sha256)

    def has_blob(self, sha256: str) -> bool:
        return self.blob_store.has_blob(sha256)

    def read_blob(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        return self.blob_store.read_blob(sha256, start, end)

    @property
    def spool(self) -> Path:
        return self.blob_store.spool

    def list_blobs(self) -> list[str]:
        return self.blob_store.list_blobs()

    def collect_garbage(self) -> tuple[int, int]:
        """Remove abandoned uploads and unreferenced blobs (the server does at start-up).
        Returns (temp files, blobs) removed."""
        return self.blob_store.collect_garbage(self.index.used_blobs())

    # -- namespaces and keys --
    def create_namespace(self, name: str, owner: str) -> NamespaceRecord:
        return self.index.create_namespace(name, owner)

    def get_namespace(self, name: str) -> NamespaceRecord | None:
        return self.index.get_namespace(name)

    def list_namespaces(self) -> list[NamespaceRecord]:
        return self.index.list_namespaces()

    def add_key(self, namespace: str, key_id: str, pem: bytes) -> KeyRecord:
        return self.index.add_key(namespace, key_id, pem)

    def list_keys(self, namespace: str) -> list[KeyRecord]:
        return self.index.list_keys(namespace)

    def remove_key(self, namespace: str, key_id: str) -> bool:
        return self.index.remove_key(namespace, key_id)

    # -- tokens --
    def add_token(self, record: TokenRecord) -> None:
        self.index.add_token(record)

    def get_token(self, token_id: str) -> TokenRecord | None:
        return self.index.get_token(token_id)

    def list_tokens(self) -> list[TokenRecord]:
        return self.index.list_tokens()

    def revoke_token(self, token_id: str) -> bool:
        return self.index.revoke_token(token_id)

    # -- versions --
    def add_version(self, record: VersionRecord) -> None:
        """Commit a version row; every blob it names must already be committed."""
        for sha in [record.sha256, *(v.sha256 for v in record.variants)]:
            if not self.blob_store.has_blob(sha):
                raise ValueError(f"blob {sha} is not committed; commit blobs before the row")
        self.index.add_version(record)

    def get_version(self, namespace: str, name: str, version: str) -> VersionRecord | None:
        return self.index.get_version(namespace, name, version)

    def list_versions(self, namespace: str, name: str) -> list[VersionRecord]:
        return self.index.list_versions(namespace, name)

    def find_versions(self, name: str, version: str) -> list[VersionRecord]:
        return self.index.find_versions(name, version)

    def set_yanked(
        self, namespace: str, name: str, version: str, yanked: bool, reason: str = ""
    ) -> bool:
        return self.index.set_yanked(namespace, name, version, yanked, reason)

    def search(self, query: str, limit: int, offset: int) -> list[VersionRecord]:
        return self.index.search(query, limit, offset)

    # -- signed metadata --
    def put_metadata(self, files: Sequence[tuple[str, int, bytes]]) -> None:
        self.index.put_metadata(files)

    def get_metadata(self, role: str, version: int | None = None) -> tuple[int, bytes] | None:
        return self.index.get_metadata(role, version)

    def close(self) -> None:
        """Release both halves (idempotent)."""
        try:
            self.index.close()
        finally:
            self.blob_store.close()


def sort_key(version: str) -> tuple[object, ...]:
    """Order of versions in a list; rows an older registry stored with non-ASCII digits
    still sort (and never crash a list)."""
    key = precedence(version)
    return (0, key, version) if key is not None else (1, (), version)


def newest_per_pack(rows: Iterable[VersionRecord], limit: int, offset: int) -> list[VersionRecord]:
    """The search result over matching rows: the newest version of each pack, by name."""
    newest: dict[tuple[str, str], tuple[tuple[object, ...], VersionRecord]] = {}
    for r in rows:
        if not Version.is_valid(r.version):
            continue  # stored by an older registry, no longer addressable (_semver)
        v = Version.parse(r.version)
        rank = (not v.pre, v.key())  # a release beats any pre-release
        cur = newest.get((r.namespace, r.name))
        if cur is None or rank > cur[0]:
            newest[(r.namespace, r.name)] = (rank, r)
    ordered = [newest[k][1] for k in sorted(newest)]
    return ordered[offset : offset + limit]


def like_pattern(query: str) -> str:
    """``query`` as a case-folded LIKE pattern matching it anywhere (escape: backslash)."""
    return "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def check_sha256(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"{sha256!r} is not a sha256 hex digest")
    return sha256
