"""The index on PostgreSQL (psycopg 3; the ``postgres`` extra).

The schema is created, or migrated, on start under a transaction-scoped advisory lock, so
several registry processes may start against one database at once. Every multi-row write
is one transaction, as in the SQLite index; publishing a version takes an advisory lock on
its pack first, so the same-precedence check and the insert cannot interleave with another
process's (the primary key alone settles two publishes of the very same version: one
commits, the other gets :class:`~reflow.registry._storage.StorageConflict`).

The location is a libpq URL, ``postgresql://user@host:port/dbname?sslmode=...``; its
password is never taken from the URL (it would show in ``ps`` and in shell history): libpq
reads ``PGPASSWORD``, ``~/.pgpass`` or ``PGPASSFILE``, like every PostgreSQL client.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from ._semver import precedence
from ._storage import (
    Index,
    KeyRecord,
    NamespaceRecord,
    StorageConfigError,
    StorageConflict,
    StorageUnavailable,
    TokenRecord,
    VariantRecord,
    VersionConflict,
    VersionRecord,
    like_pattern,
    newest_per_pack,
    sort_key,
)

__all__ = ["PostgresIndex", "redact"]

#: The schema version this code writes (``reflow_schema``); older ones are migrated.
SCHEMA_VERSION = 1
#: Advisory lock keys (``pg_advisory_xact_lock``): the migration, and per-pack publishes.
_MIGRATE_LOCK = 0x7265666C6F77  # "reflow"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reflow_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    namespace TEXT NOT NULL REFERENCES namespaces(name), key_id TEXT NOT NULL,
    pem BYTEA NOT NULL, added_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (namespace, key_id));
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, namespace TEXT NOT NULL,
    scope TEXT NOT NULL, label TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION, revoked INTEGER NOT NULL DEFAULT 0);
ALTER TABLE tokens ADD COLUMN IF NOT EXISTS parent_id TEXT;
CREATE TABLE IF NOT EXISTS versions (
    namespace TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    sha256 TEXT NOT NULL, size BIGINT NOT NULL, manifest BYTEA NOT NULL,
    signature BYTEA NOT NULL, key_id TEXT NOT NULL, abi TEXT NOT NULL,
    description TEXT NOT NULL, templates TEXT NOT NULL, triples TEXT NOT NULL,
    published_at DOUBLE PRECISION NOT NULL, published_by TEXT NOT NULL,
    yanked INTEGER NOT NULL DEFAULT 0, yank_reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (namespace, name, version));
CREATE INDEX IF NOT EXISTS versions_by_name ON versions (name, version);
CREATE TABLE IF NOT EXISTS variants (
    namespace TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, triple TEXT NOT NULL,
    sha256 TEXT NOT NULL, size BIGINT NOT NULL,
    PRIMARY KEY (namespace, name, version, triple));
CREATE TABLE IF NOT EXISTS tuf_metadata (
    role TEXT NOT NULL, version BIGINT NOT NULL, data BYTEA NOT NULL,
    PRIMARY KEY (role, version));
"""

_TOKEN_COLS = (
    "token_id, secret_sha256, namespace, scope, label, created_at, expires_at, revoked, parent_id"
)
_VERSION_COLS = (
    "namespace, name, version, sha256, size, manifest, signature, key_id, abi, "
    "description, templates, triples, published_at, published_by, yanked, yank_reason"
)


def redact(url: str) -> str:
    """``url`` without any password (for messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise StorageConfigError(f"index URL {redact(url)!r} is malformed: {exc}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise StorageConfigError(
            f"index URL {redact(url)!r}: expected postgresql://user@host:port/dbname"
        )
    if parts.password is not None:
        raise StorageConfigError(
            f"index URL {redact(url)!r} has a password in it; pass it in PGPASSWORD or a "
            "~/.pgpass file instead (a URL shows in process lists and shell history)"
        )


def _unmatchable(args: Sequence[Any]) -> bool:
    """Whether a text argument holds what PostgreSQL text cannot (NUL, lone surrogates):
    nothing stored can equal or contain it."""
    for a in args:
        if isinstance(a, str):
            if "\x00" in a:
                return True
            try:
                a.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


class PostgresIndex(Index):
    """The index in the PostgreSQL database at ``url`` (libpq URL, no password in it).
    Holds up to ``pool_size`` connections, opened as needed."""

    def __init__(self, url: str, *, pool_size: int = 8, connect_timeout: float = 10.0) -> None:
        _check_url(url)
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - the extra is in `test`
            raise StorageConfigError(
                "a PostgreSQL index needs psycopg 3: pip install 'reflow[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self.url = url
        self._timeout = connect_timeout
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._closed = False
        self._all: list[Any] = []
        self._all_lock = threading.Lock()
        self._migrate()

    def __repr__(self) -> str:
        return f"PostgresIndex({redact(self.url)!r})"

    # -- connections ------------------------------------------------------------------------
    def _connect(self) -> Any:
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self._timeout))
            )
        except psycopg.Error as exc:
            raise StorageConfigError(
                f"cannot reach the PostgreSQL index {redact(self.url)!r}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            ) from None
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        self._slots.acquire()
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            if conn.closed:
                conn = self._connect()
            try:
                yield conn
            except self._psycopg.OperationalError as exc:  # the server went away mid-use
                conn.close()
                raise StorageUnavailable(
                    f"the PostgreSQL index {redact(self.url)!r} failed: "
                    f"{str(exc).strip()[:300] or type(exc).__name__}"
                ) from exc
            except BaseException:
                if conn.closed or conn.info.transaction_status != 0:  # not IDLE: unusable
                    conn.close()
                raise
            if not conn.closed:
                self._idle.put(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def _migrate(self) -> None:
        """Create or migrate the schema (idempotent; safe when several processes start at
        once: the advisory lock runs them one after the other)."""
        with self._conn() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT max(version) FROM reflow_schema").fetchone()
            if row is None or row[0] is None:
                conn.execute("INSERT INTO reflow_schema VALUES (%s)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise StorageConfigError(
                    f"the PostgreSQL index {redact(self.url)!r} has schema version {row[0]}, "
                    f"newer than this registry's {SCHEMA_VERSION}: upgrade reflow"
                )

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if _unmatchable(args):
            return []
        with self._conn() as conn:
            return list(conn.execute(sql, args).fetchall())

    def _write(self, sql: str, args: Sequence[Any] = ()) -> int:
        if _unmatchable(args):
            raise ValueError("PostgreSQL text cannot hold NUL characters or unpaired surrogates")
        with self._conn() as conn:
            try:
                cur = conn.execute(sql, args)
            except self._psycopg.errors.IntegrityError as exc:
                raise StorageConflict(str(exc).strip()) from exc
            return int(cur.rowcount)

    def used_blobs(self) -> set[str]:
        used = {r[0] for r in self._query("SELECT sha256 FROM versions")}
        return used | {r[0] for r in self._query("SELECT sha256 FROM variants")}

    # -- namespaces and keys ----------------------------------------------------------------
    def create_namespace(self, name: str, owner: str) -> NamespaceRecord:
        rec = NamespaceRecord(name, owner, time.time())
        self._write("INSERT INTO namespaces VALUES (%s, %s, %s)", (name, owner, rec.created_at))
        return rec

    def get_namespace(self, name: str) -> NamespaceRecord | None:
        rows = self._query(
            "SELECT name, owner, created_at FROM namespaces WHERE name = %s", (name,)
        )
        return NamespaceRecord(*rows[0]) if rows else None

    def list_namespaces(self) -> list[NamespaceRecord]:
        return [
            NamespaceRecord(*r)
            for r in self._query(
                'SELECT name, owner, created_at FROM namespaces ORDER BY name COLLATE "C"'
            )
        ]

    def add_key(self, namespace: str, key_id: str, pem: bytes) -> KeyRecord:
        rec = KeyRecord(namespace, key_id, pem, time.time())
        self._write(
            "INSERT INTO keys VALUES (%s, %s, %s, %s) ON CONFLICT (namespace, key_id) "
            "DO UPDATE SET pem = EXCLUDED.pem, added_at = EXCLUDED.added_at",
            (namespace, key_id, pem, rec.added_at),
        )
        return rec

    def list_keys(self, namespace: str) -> list[KeyRecord]:
        return [
            KeyRecord(r[0], r[1], bytes(r[2]), r[3])
            for r in self._query(
                "SELECT namespace, key_id, pem, added_at FROM keys WHERE namespace = %s "
                'ORDER BY key_id COLLATE "C"',
                (namespace,),
            )
        ]

    def remove_key(self, namespace: str, key_id: str) -> bool:
        return (
            self._write(
                "DELETE FROM keys WHERE namespace = %s AND key_id = %s", (namespace, key_id)
            )
            > 0
        )

    # -- tokens -----------------------------------------------------------------------------
    def add_token(self, record: TokenRecord) -> None:
        r = record
        self._write(
            f"INSERT INTO tokens ({_TOKEN_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
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

    @staticmethod
    def _token(row: tuple[Any, ...]) -> TokenRecord:
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
        rows = self._query(f"SELECT {_TOKEN_COLS} FROM tokens WHERE token_id = %s", (token_id,))
        return self._token(rows[0]) if rows else None

    def list_tokens(self) -> list[TokenRecord]:
        return [
            self._token(r)
            for r in self._query(f"SELECT {_TOKEN_COLS} FROM tokens ORDER BY created_at")
        ]

    def revoke_token(self, token_id: str) -> bool:
        # UNION (not UNION ALL) stops at a token already seen, so even a cycle ends.
        return (
            self._write(
                "UPDATE tokens SET revoked = 1 WHERE token_id IN ("
                "WITH RECURSIVE tree(id) AS (SELECT token_id FROM tokens WHERE token_id = %s "
                "UNION SELECT t.token_id FROM tokens t JOIN tree ON t.parent_id = tree.id) "
                "SELECT id FROM tree)",
                (token_id,),
            )
            > 0
        )

    # -- signed metadata ----------------------------------------------------------------------
    def put_metadata(self, files: Sequence[tuple[str, int, bytes]]) -> None:
        rows = [(role, int(version), bytes(data)) for role, version, data in files]
        with self._conn() as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO tuf_metadata (role, version, data) VALUES (%s, %s, %s)", rows
                    )
            except self._psycopg.errors.IntegrityError as exc:
                raise StorageConflict(f"signed metadata version exists: {exc}") from exc

    def get_metadata(self, role: str, version: int | None = None) -> tuple[int, bytes] | None:
        if version is None:
            rows = self._query(
                "SELECT version, data FROM tuf_metadata WHERE role = %s "
                "ORDER BY version DESC LIMIT 1",
                (role,),
            )
        else:
            rows = self._query(
                "SELECT version, data FROM tuf_metadata WHERE role = %s AND version = %s",
                (role, int(version)),
            )
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    # -- versions ---------------------------------------------------------------------------
    def add_version(self, record: VersionRecord) -> None:
        r = record
        errors = self._psycopg.errors
        with self._conn() as conn:
            try:
                with conn.transaction():
                    # One publisher per pack at a time, across processes: the precedence
                    # check below sees every committed row of the pack.
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        (f"{r.namespace}/{r.name}",),
                    )
                    mine = precedence(r.version)
                    for (other,) in conn.execute(
                        "SELECT version FROM versions WHERE namespace = %s AND name = %s",
                        (r.namespace, r.name),
                    ).fetchall():
                        if other != r.version and mine is not None and precedence(other) == mine:
                            raise VersionConflict(
                                f"{r.namespace}/{r.name} {other} is already published, and "
                                f"{r.version} has the same version precedence",
                                other,
                            )
                    conn.execute(
                        f"INSERT INTO versions ({_VERSION_COLS}) VALUES "
                        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
                    if r.variants:
                        with conn.cursor() as cur:
                            cur.executemany(
                                "INSERT INTO variants VALUES (%s, %s, %s, %s, %s, %s)",
                                [
                                    (r.namespace, r.name, r.version, v.triple, v.sha256, v.size)
                                    for v in r.variants
                                ],
                            )
            except errors.IntegrityError as exc:
                raise StorageConflict(
                    f"{r.namespace}/{r.name} {r.version} is already published"
                ) from exc

    def _versions(self, where: str, args: Sequence[Any]) -> list[VersionRecord]:
        if _unmatchable(args):
            return []  # no stored text holds it
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT {_VERSION_COLS} FROM versions WHERE {where}", args
            ).fetchall()
            if not rows:
                return []
            keys = [(row[0], row[1], row[2]) for row in rows]
            found: dict[tuple[str, str, str], list[VariantRecord]] = {}
            for ns, name, ver, triple, sha, size in conn.execute(
                "SELECT namespace, name, version, triple, sha256, size FROM variants "
                "WHERE (namespace, name, version) IN (SELECT * FROM unnest("
                '%s::text[], %s::text[], %s::text[])) ORDER BY triple COLLATE "C"',
                ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
            ).fetchall():
                found.setdefault((ns, name, ver), []).append(VariantRecord(triple, sha, size))
        return [
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
                variants=tuple(found.get((row[0], row[1], row[2]), ())),
            )
            for row in rows
        ]

    def get_version(self, namespace: str, name: str, version: str) -> VersionRecord | None:
        found = self._versions(
            "namespace = %s AND name = %s AND version = %s", (namespace, name, version)
        )
        return found[0] if found else None

    def list_versions(self, namespace: str, name: str) -> list[VersionRecord]:
        found = self._versions("namespace = %s AND name = %s", (namespace, name))
        return sorted(found, key=lambda r: sort_key(r.version))

    def find_versions(self, name: str, version: str) -> list[VersionRecord]:
        return self._versions("name = %s AND version = %s", (name, version))

    def set_yanked(
        self, namespace: str, name: str, version: str, yanked: bool, reason: str = ""
    ) -> bool:
        return (
            self._write(
                "UPDATE versions SET yanked = %s, yank_reason = %s WHERE namespace = %s AND "
                "name = %s AND version = %s",
                (int(yanked), reason if yanked else "", namespace, name, version),
            )
            > 0
        )

    def search(self, query: str, limit: int, offset: int) -> list[VersionRecord]:
        like = like_pattern(query)
        rows = self._versions(
            "yanked = 0 AND (lower(namespace || '/' || name) LIKE %s ESCAPE '\\' OR "
            "lower(description) LIKE %s ESCAPE '\\' OR lower(templates) LIKE %s ESCAPE '\\')",
            (like, like, like),
        )
        return newest_per_pack(rows, limit, offset)
