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

import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from ._storage import (
    StorageConfigError,
    StorageConflict,
    StorageUnavailable,
    VariantRecord,
    VersionRecord,
)
from ._storage_sql import (
    VERSION_COLS,
    VERSION_VALUES,
    SqlIndex,
    check_precedence,
    variant_rows,
    version_record,
    version_row,
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


def _pg(sql: str) -> str:
    """A statement written with ``?`` placeholders (see ``_storage_sql``) in psycopg's style."""
    return sql.replace("?", "%s")


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


class PostgresIndex(SqlIndex):
    """The index in the PostgreSQL database at ``url`` (libpq URL, no password in it).
    Holds up to ``pool_size`` connections, opened as needed."""

    _COLLATE = ' COLLATE "C"'

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
            return list(conn.execute(_pg(sql), args).fetchall())

    def _write(self, sql: str, args: Sequence[Any] = ()) -> int:
        if _unmatchable(args):
            raise ValueError("PostgreSQL text cannot hold NUL characters or unpaired surrogates")
        with self._conn() as conn:
            try:
                cur = conn.execute(_pg(sql), args)
            except self._psycopg.errors.IntegrityError as exc:
                raise StorageConflict(str(exc).strip()) from exc
            return int(cur.rowcount)

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
                    published = conn.execute(
                        "SELECT version FROM versions WHERE namespace = %s AND name = %s",
                        (r.namespace, r.name),
                    ).fetchall()
                    check_precedence(r, (v for (v,) in published))
                    conn.execute(
                        f"INSERT INTO versions ({VERSION_COLS}) VALUES {_pg(VERSION_VALUES)}",
                        version_row(r),
                    )
                    if r.variants:
                        with conn.cursor() as cur:
                            cur.executemany(
                                "INSERT INTO variants VALUES (%s, %s, %s, %s, %s, %s)",
                                variant_rows(r),
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
                f"SELECT {VERSION_COLS} FROM versions WHERE {_pg(where)}", args
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
        return [version_record(row, found.get((row[0], row[1], row[2]), ())) for row in rows]
