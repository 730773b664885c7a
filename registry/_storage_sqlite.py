"""The embedded index: SQLite (WAL mode, ``BEGIN IMMEDIATE`` around every multi-row write,
so concurrent writers in several processes are serialised by the database lock), and
:class:`LocalStorage`, the default :class:`~reflow.registry._storage.Storage`: this index
plus :class:`~reflow.registry._storage_files.LocalBlobs` under one data directory."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._semver import precedence
from ._storage import (
    Index,
    KeyRecord,
    NamespaceRecord,
    Storage,
    StorageConflict,
    TokenRecord,
    VariantRecord,
    VersionConflict,
    VersionRecord,
    _full,
    _no_room,
    like_pattern,
    newest_per_pack,
    sort_key,
)
from ._storage_files import LocalBlobs

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

_TOKEN_COLS = (
    "token_id, secret_sha256, namespace, scope, label, created_at, expires_at, revoked, parent_id"
)
_VERSION_COLS = (
    "namespace, name, version, sha256, size, manifest, signature, key_id, abi, "
    "description, templates, triples, published_at, published_by, yanked, "
    "yank_reason"
)


class SQLiteIndex(Index):
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

    def used_blobs(self) -> set[str]:
        used = {r[0] for r in self._query("SELECT sha256 FROM versions")}
        return used | {r[0] for r in self._query("SELECT sha256 FROM variants")}

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
        return sorted(found, key=lambda r: sort_key(r.version))

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
        like = like_pattern(query)
        rows = self._versions(
            "yanked = 0 AND (lower(namespace || '/' || name) LIKE ? ESCAPE '\\' OR "
            "lower(description) LIKE ? ESCAPE '\\' OR lower(templates) LIKE ? ESCAPE '\\')",
            (like, like, like),
        )
        return newest_per_pack(rows, limit, offset)


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
