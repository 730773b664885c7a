"""Where a registry keeps things: an index (namespaces, keys, tokens, versions) and blobs.

:class:`Storage` is the interface the app and the auth layer use; :class:`LocalStorage` is
the embedded default — an SQLite index and a content-addressed blob store on disk under one
data directory::

    data/index.sqlite3             the index (WAL mode)
    data/blobs/sha256/ab/abcd...   immutable blobs, named by their sha256
    data/tmp/                      uploads in progress (emptied at start-up)

A PostgreSQL index or an S3-compatible blob store implement the same methods.

Durability promise: a blob is written to ``tmp/``, fsynced, renamed to its content address
and the directory fsynced *before* the index row that mentions it is committed. A process
killed at any point leaves either no version row (and at most an unreferenced, complete blob,
removed by :meth:`LocalStorage.collect_garbage` at start-up) or a complete version. Nothing
serves a blob that no committed row points to, so a partial upload is never visible.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._semver import Version, precedence

__all__ = [
    "BlobUpload",
    "KeyRecord",
    "LocalStorage",
    "NamespaceRecord",
    "Storage",
    "StorageConflict",
    "StorageFull",
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


class Storage(ABC):
    """What a registry needs from its storage. Methods are blocking and thread-safe."""

    # -- blobs --
    @abstractmethod
    def new_upload(self) -> BlobUpload: ...

    @abstractmethod
    def commit_blob(self, upload: BlobUpload) -> str:
        """Make the upload durable under its content address; return its sha256."""

    @abstractmethod
    def put_blob(self, data: bytes) -> str:
        """Store ``data`` durably; return its sha256."""

    @abstractmethod
    def blob_path(self, sha256: str) -> Path:
        """A local file with the blob's bytes (a remote store would download or redirect)."""

    @abstractmethod
    def has_blob(self, sha256: str) -> bool: ...

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
        """Commit a version row (and its variants). Every blob it names must already be
        committed. Raises StorageConflict if the version exists, and its subclass
        VersionConflict if another version of the pack has the same precedence."""

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

    # -- signed metadata (TUF): each role's versions, as signed bytes --
    def put_metadata(self, files: Sequence[tuple[str, int, bytes]]) -> None:
        """Store ``(role, version, signed bytes)`` rows in one transaction: all or none. A
        role version that exists already is a :class:`StorageConflict` (two writers racing
        for the next snapshot: one wins)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no signed metadata")

    def get_metadata(self, role: str, version: int | None = None) -> tuple[int, bytes] | None:
        """``(version, bytes)`` of ``role`` at ``version`` (None: the newest), or None."""
        raise NotImplementedError(f"{type(self).__name__} keeps no signed metadata")

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release resources (idempotent)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    namespace TEXT NOT NULL REFERENCES namespaces(name), key_id TEXT NOT NULL,
    pem BLOB NOT NULL, added_at REAL NOT NULL, PRIMARY KEY (namespace, key_id));
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, namespace TEXT NOT NULL,
    scope TEXT NOT NULL, label TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL,
    revoked INTEGER NOT NULL DEFAULT 0, parent_id TEXT);
CREATE TABLE IF NOT EXISTS versions (
    namespace TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, manifest BLOB NOT NULL,
    signature BLOB NOT NULL, key_id TEXT NOT NULL, abi TEXT NOT NULL,
    description TEXT NOT NULL, templates TEXT NOT NULL, triples TEXT NOT NULL,
    published_at REAL NOT NULL, published_by TEXT NOT NULL,
    yanked INTEGER NOT NULL DEFAULT 0, yank_reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (namespace, name, version));
CREATE TABLE IF NOT EXISTS variants (
    namespace TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, triple TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (namespace, name, version, triple));
CREATE TABLE IF NOT EXISTS tuf_metadata (
    role TEXT NOT NULL, version INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (role, version));
"""

_TOKEN_COLS = (
    "token_id, secret_sha256, namespace, scope, label, created_at, expires_at, revoked, parent_id"
)
_VERSION_COLS = (
    "namespace, name, version, sha256, size, manifest, signature, key_id, abi, "
    "description, templates, triples, published_at, published_by, yanked, "
    "yank_reason"
)


class LocalStorage(Storage):
    """SQLite index + content-addressed blobs under ``root`` (created if missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.blobs = self.root / "blobs" / "sha256"
        self.tmp = self.root / "tmp"
        for d in (self.blobs, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.root / "index.sqlite3",
            check_same_thread=False,
            isolation_level=None,
            timeout=30,
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring an index made by an older version up to date (idempotent; safe when two
        processes open the same directory at once)."""
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                cols = {row[1] for row in db.execute("PRAGMA table_info(tokens)")}
                if "parent_id" not in cols:
                    # Existing tokens get NULL: made before tokens could make tokens.
                    db.execute("ALTER TABLE tokens ADD COLUMN parent_id TEXT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def __enter__(self) -> LocalStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"{self!r} is closed")
        return self._db

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()

    def _write(self, sql: str, args: Sequence[Any] = ()) -> int:
        with self._lock:
            try:
                cur = self.db.execute(sql, args)
            except sqlite3.IntegrityError as exc:
                raise StorageConflict(str(exc)) from exc
            return cur.rowcount

    # -- start-up housekeeping --------------------------------------------------------------
    def collect_garbage(self) -> tuple[int, int]:
        """Remove abandoned uploads and blobs no committed row references. Run it only while
        nothing publishes (the server does at start-up). Returns (temp files, blobs) removed."""
        temps = 0
        for p in self.tmp.iterdir():
            p.unlink(missing_ok=True)
            temps += 1
        used = {r[0] for r in self._query("SELECT sha256 FROM versions")}
        used |= {r[0] for r in self._query("SELECT sha256 FROM variants")}
        blobs = 0
        for p in self.blobs.glob("*/*"):
            if p.name not in used:
                p.unlink(missing_ok=True)
                blobs += 1
        return temps, blobs

    # -- blobs ------------------------------------------------------------------------------
    def new_upload(self) -> BlobUpload:
        return BlobUpload(self.tmp / f"upload-{secrets.token_hex(12)}")

    def _address(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"{sha256!r} is not a sha256 hex digest")
        return self.blobs / sha256[:2] / sha256

    def commit_blob(self, upload: BlobUpload) -> str:
        upload.finish()
        target = self._address(upload.sha256)
        try:
            target.parent.mkdir(exist_ok=True)
            # Same content, same name: replacing an existing blob changes nothing visible.
            os.replace(upload.path, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            if _no_room(exc):
                raise _full(exc, f"blob {upload.sha256}") from exc
            raise
        return upload.sha256

    def put_blob(self, data: bytes) -> str:
        up = self.new_upload()
        try:
            up.write(data)
            return self.commit_blob(up)
        except BaseException:
            up.discard()
            raise

    def blob_path(self, sha256: str) -> Path:
        return self._address(sha256)

    def has_blob(self, sha256: str) -> bool:
        return self._address(sha256).is_file()

    # -- namespaces and keys ----------------------------------------------------------------
    def create_namespace(self, name: str, owner: str) -> NamespaceRecord:
        rec = NamespaceRecord(name, owner, time.time())
        self._write("INSERT INTO namespaces VALUES (?, ?, ?)", (name, owner, rec.created_at))
        return rec

    def get_namespace(self, name: str) -> NamespaceRecord | None:
        rows = self._query("SELECT name, owner, created_at FROM namespaces WHERE name = ?", (name,))
        return NamespaceRecord(*rows[0]) if rows else None

    def list_namespaces(self) -> list[NamespaceRecord]:
        return [
            NamespaceRecord(*r)
            for r in self._query("SELECT name, owner, created_at FROM namespaces ORDER BY name")
        ]

    def add_key(self, namespace: str, key_id: str, pem: bytes) -> KeyRecord:
        rec = KeyRecord(namespace, key_id, pem, time.time())
        self._write(
            "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?)",
            (namespace, key_id, pem, rec.added_at),
        )
        return rec

    def list_keys(self, namespace: str) -> list[KeyRecord]:
        return [
            KeyRecord(r[0], r[1], bytes(r[2]), r[3])
            for r in self._query(
                "SELECT namespace, key_id, pem, added_at FROM keys WHERE namespace = ? "
                "ORDER BY key_id",
                (namespace,),
            )
        ]

    def remove_key(self, namespace: str, key_id: str) -> bool:
        return (
            self._write("DELETE FROM keys WHERE namespace = ? AND key_id = ?", (namespace, key_id))
            > 0
        )

    # -- tokens -----------------------------------------------------------------------------
    def add_token(self, record: TokenRecord) -> None:
        r = record
        self._write(
            f"INSERT INTO tokens ({_TOKEN_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                r.token_id,
                r.secret_sha256,
                r.namespace,
                r.scope,
                r.label,
                r.created_at,
                r.expires_at,
                int(r.revoked),
                r.parent_id,
            ),
        )

    def _token(self, row: tuple[Any, ...]) -> TokenRecord:
        return TokenRecord(
            token_id=row[0],
            secret_sha256=row[1],
            namespace=row[2],
            scope=row[3],
            label=row[4],
            created_at=row[5],
            expires_at=row[6],
            revoked=bool(row[7]),
            parent_id=row[8],
        )

    def get_token(self, token_id: str) -> TokenRecord | None:
        rows = self._query(f"SELECT {_TOKEN_COLS} FROM tokens WHERE token_id = ?", (token_id,))
        return self._token(rows[0]) if rows else None

    def list_tokens(self) -> list[TokenRecord]:
        return [
            self._token(r)
            for r in self._query(f"SELECT {_TOKEN_COLS} FROM tokens ORDER BY created_at")
        ]

    def revoke_token(self, token_id: str) -> bool:
        # UNION (not UNION ALL) stops at a token already seen, so even a cycle ends.
        # (The statement starts with UPDATE so sqlite3 reports its rowcount.)
        return (
            self._write(
                "UPDATE tokens SET revoked = 1 WHERE token_id IN ("
                "WITH RECURSIVE tree(id) AS (SELECT token_id FROM tokens WHERE token_id = ? "
                "UNION SELECT t.token_id FROM tokens t JOIN tree ON t.parent_id = tree.id) "
                "SELECT id FROM tree)",
                (token_id,),
            )
            > 0
        )

    # -- signed metadata ----------------------------------------------------------------------
    def put_metadata(self, files: Sequence[tuple[str, int, bytes]]) -> None:
        with self._lock:
            db = self.db
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT INTO tuf_metadata (role, version, data) VALUES (?, ?, ?)",
                    [(role, int(version), bytes(data)) for role, version, data in files],
                )
            except sqlite3.IntegrityError as exc:
                _rollback(db)
                raise StorageConflict(f"signed metadata version exists: {exc}") from exc
            except BaseException as exc:
                _rollback(db)
                if _no_room(exc):
                    raise _full(exc, "signed metadata") from exc
                raise
            db.execute("COMMIT")

    def get_metadata(self, role: str, version: int | None = None) -> tuple[int, bytes] | None:
        if version is None:
            rows = self._query(
                "SELECT version, data FROM tuf_metadata WHERE role = ? "
                "ORDER BY version DESC LIMIT 1",
                (role,),
            )
        else:
            rows = self._query(
                "SELECT version, data FROM tuf_metadata WHERE role = ? AND version = ?",
                (role, int(version)),
            )
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    # -- versions ---------------------------------------------------------------------------
    def add_version(self, record: VersionRecord) -> None:
        r = record
        for sha in [r.sha256, *(v.sha256 for v in r.variants)]:
            if not self.has_blob(sha):
                raise ValueError(f"blob {sha} is not committed; commit blobs before the row")
        with self._lock:
            db = self.db
            try:
                db.execute("BEGIN IMMEDIATE")
                mine = precedence(r.version)
                for (other,) in db.execute(
                    "SELECT version FROM versions WHERE namespace = ? AND name = ?",
                    (r.namespace, r.name),
                ).fetchall():
                    if other != r.version and mine is not None and precedence(other) == mine:
                        raise VersionConflict(
                            f"{r.namespace}/{r.name} {other} is already published, and "
                            f"{r.version} has the same version precedence",
                            other,
                        )
                db.execute(
                    f"INSERT INTO versions ({_VERSION_COLS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.namespace,
                        r.name,
                        r.version,
                        r.sha256,
                        r.size,
                        r.manifest,
                        r.signature,
                        r.key_id,
                        r.abi,
                        r.description,
                        json.dumps(list(r.templates)),
                        json.dumps(list(r.triples)),
                        r.published_at,
                        r.published_by,
                        int(r.yanked),
                        r.yank_reason,
                    ),
                )
                db.executemany(
                    "INSERT INTO variants VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (r.namespace, r.name, r.version, v.triple, v.sha256, v.size)
                        for v in r.variants
                    ],
                )
                db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                _rollback(db)
                raise StorageConflict(
                    f"{r.namespace}/{r.name} {r.version} is already published"
                ) from exc
            except BaseException as exc:
                _rollback(db)
                if _no_room(exc):
                    raise _full(
                        exc, f"the index row of {r.namespace}/{r.name} {r.version}"
                    ) from exc
                raise

    def _versions(self, where: str, args: Sequence[Any]) -> list[VersionRecord]:
        with self._lock:
            rows = self.db.execute(
                f"SELECT {_VERSION_COLS} FROM versions WHERE {where}", args
            ).fetchall()
            out = []
            for row in rows:
                variants = tuple(
                    VariantRecord(*v)
                    for v in self.db.execute(
                        "SELECT triple, sha256, size FROM variants WHERE namespace = ? AND "
                        "name = ? AND version = ? ORDER BY triple",
                        row[:3],
                    ).fetchall()
                )
                out.append(
                    VersionRecord(
                        namespace=row[0],
                        name=row[1],
                        version=row[2],
                        sha256=row[3],
                        size=row[4],
                        manifest=bytes(row[5]),
                        signature=bytes(row[6]),
                        key_id=row[7],
                        abi=row[8],
                        description=row[9],
                        templates=tuple(json.loads(row[10])),
                        triples=tuple(json.loads(row[11])),
                        published_at=row[12],
                        published_by=row[13],
                        yanked=bool(row[14]),
                        yank_reason=row[15],
                        variants=variants,
                    )
                )
            return out

    def get_version(self, namespace: str, name: str, version: str) -> VersionRecord | None:
        found = self._versions(
            "namespace = ? AND name = ? AND version = ?", (namespace, name, version)
        )
        return found[0] if found else None

    def list_versions(self, namespace: str, name: str) -> list[VersionRecord]:
        found = self._versions("namespace = ? AND name = ?", (namespace, name))
        return sorted(found, key=lambda r: _sort_key(r.version))

    def find_versions(self, name: str, version: str) -> list[VersionRecord]:
        return self._versions("name = ? AND version = ?", (name, version))

    def set_yanked(
        self, namespace: str, name: str, version: str, yanked: bool, reason: str = ""
    ) -> bool:
        return (
            self._write(
                "UPDATE versions SET yanked = ?, yank_reason = ? WHERE namespace = ? AND name = ? "
                "AND version = ?",
                (int(yanked), reason if yanked else "", namespace, name, version),
            )
            > 0
        )

    def search(self, query: str, limit: int, offset: int) -> list[VersionRecord]:
        like = (
            "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        rows = self._versions(
            "yanked = 0 AND (lower(namespace || '/' || name) LIKE ? ESCAPE '\\' OR "
            "lower(description) LIKE ? ESCAPE '\\' OR lower(templates) LIKE ? ESCAPE '\\')",
            (like, like, like),
        )
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

    def iter_blob_files(self) -> Iterator[Path]:
        """Every committed blob file (for tests and maintenance)."""
        yield from self.blobs.glob("*/*")


def _sort_key(version: str) -> tuple[object, ...]:
    # Rows an older registry stored with non-ASCII digits still sort (and never crash a list).
    key = precedence(version)
    return (0, key, version) if key is not None else (1, (), version)


def _rollback(db: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (a full disk does that): a second
    # ROLLBACK would raise and hide the real error.
    if db.in_transaction:
        db.execute("ROLLBACK")


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
