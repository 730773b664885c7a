"""The embedded index: SQLite (WAL mode, ``BEGIN IMMEDIATE`` around every multi-row write,
so concurrent writers in several processes are serialised by the database lock), and
:class:`LocalStorage`, the default :class:`~reflow.registry._storage.Storage`: this index
plus :class:`~reflow.registry._storage_files.LocalBlobs` under one data directory."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._storage import (
    Storage,
    StorageConflict,
    VariantRecord,
    VersionRecord,
    _full,
    _no_room,
)
from ._storage_files import LocalBlobs
from ._storage_sql import (
    VERSION_COLS,
    VERSION_VALUES,
    SqlIndex,
    check_precedence,
    variant_rows,
    version_record,
    version_row,
)

__all__ = ["LocalStorage", "SQLiteIndex"]


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


class SQLiteIndex(SqlIndex):
    """The index in the SQLite file ``path`` (created, or migrated, if needed)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path,
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
        return f"SQLiteIndex({str(self.path)!r})"

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

    # -- versions ---------------------------------------------------------------------------
    def add_version(self, record: VersionRecord) -> None:
        r = record
        with self._lock:
            db = self.db
            try:
                db.execute("BEGIN IMMEDIATE")
                published = db.execute(
                    "SELECT version FROM versions WHERE namespace = ? AND name = ?",
                    (r.namespace, r.name),
                ).fetchall()
                check_precedence(r, (v for (v,) in published))
                db.execute(
                    f"INSERT INTO versions ({VERSION_COLS}) VALUES {VERSION_VALUES}",
                    version_row(r),
                )
                db.executemany("INSERT INTO variants VALUES (?, ?, ?, ?, ?, ?)", variant_rows(r))
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
                f"SELECT {VERSION_COLS} FROM versions WHERE {where}", args
            ).fetchall()
            return [
                version_record(
                    row,
                    (
                        VariantRecord(*v)
                        for v in self.db.execute(
                            "SELECT triple, sha256, size FROM variants WHERE namespace = ? AND "
                            "name = ? AND version = ? ORDER BY triple",
                            row[:3],
                        ).fetchall()
                    ),
                )
                for row in rows
            ]


class LocalStorage(Storage):
    """The embedded default: an SQLite index and content-addressed blobs under ``root``
    (created if missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        files = LocalBlobs(self.root)
        super().__init__(SQLiteIndex(self.root / "index.sqlite3"), files, self.root)
        self.root: Path
        self.blobs, self.tmp = files.blobs, files.tmp
        self.sqlite: SQLiteIndex = self.index  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def __enter__(self) -> LocalStorage:
        return self

    @property
    def db(self) -> sqlite3.Connection:
        return self.sqlite.db

    def iter_blob_files(self) -> Iterator[Path]:
        """Every committed blob file (for tests and maintenance)."""
        yield from self.blobs.glob("*/*")


def _rollback(db: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (a full disk does that): a second
    # ROLLBACK would raise and hide the real error.
    if db.in_transaction:
        db.execute("ROLLBACK")
