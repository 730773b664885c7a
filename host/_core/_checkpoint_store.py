"""Where a durable run's checkpoints are kept: the store interface and the SQLite default.

A store keeps, per ``run_id``, the last few checkpoints as opaque bytes under increasing
sequence numbers (what the bytes mean is ``_checkpoint_format``'s business). ``put`` writes one
checkpoint and drops the ones before the last ``keep`` in a single transaction, so a crash
mid-write leaves the previous checkpoint whole. Errors of the engine underneath (sqlite3,
psycopg, redis) are translated here and in ``_checkpoint_remote`` into
:class:`~reflow.CheckpointStoreError` naming the store, and every call is bounded in time
(connect and lock timeouts).

:func:`~reflow._core._checkpoint_open.open_store` turns a URL into a store.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._errors import CheckpointConfigError, CheckpointStoreError

__all__ = ["CheckpointStore", "SqliteCheckpointStore", "StoredCheckpoint", "check_run_id", "redact"]

#: Longest a store waits to connect, or for a lock another writer holds, in seconds.
STORE_TIMEOUT_S = 5.0
MAX_RUN_ID = 200


@dataclass(frozen=True)
class StoredCheckpoint:
    """One checkpoint as a store holds it: the run, its sequence number and its bytes."""

    run_id: str
    seq: int
    data: bytes


def check_run_id(run_id: Any) -> str:
    if (
        not isinstance(run_id, str)
        or not 0 < len(run_id) <= MAX_RUN_ID
        or not run_id.isprintable()
        or run_id != run_id.strip()
    ):
        raise CheckpointConfigError(
            f"run_id {run_id!r:.80}: expected a printable string of 1 to {MAX_RUN_ID} "
            f"characters without leading or trailing spaces"
        )
    return run_id


def redact(url: str) -> str:
    """``url`` without its password, for error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit(parts._replace(netloc=user + host))
    except ValueError:
        return "<unparseable URL>"


class CheckpointStore(ABC):
    """Keeps the checkpoints of durable runs (see the module docstring).

    Subclasses implement the five methods; each raises :class:`~reflow.CheckpointStoreError`
    for a failure of the engine underneath. ``close()`` is idempotent; a closed store raises.
    """

    #: How many checkpoints per run ``put`` keeps (the newest).
    keep: int = 2
    #: What error messages call this store (a path or a URL without its password).
    name: str = ""

    @abstractmethod
    def put(self, run_id: str, seq: int, data: bytes) -> None:
        """Write checkpoint ``seq`` of ``run_id`` and drop all but the newest ``keep``, in
        one transaction."""

    @abstractmethod
    def latest(self, run_id: str) -> StoredCheckpoint | None:
        """The newest checkpoint of ``run_id``, or None."""

    @abstractmethod
    def list(self, run_id: str) -> list[int]:
        """The sequence numbers held for ``run_id``, oldest first."""

    @abstractmethod
    def delete(self, run_id: str) -> int:
        """Drop every checkpoint of ``run_id``; returns how many there were."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection. Idempotent."""

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, what: str, exc: BaseException, run_id: str = "") -> CheckpointStoreError:
        return CheckpointStoreError(
            f"checkpoint store {self.name}: {what} failed: {type(exc).__name__}: {exc}",
            run_id=run_id,
            store=self.name,
        )

    def _closed(self) -> CheckpointStoreError:
        return CheckpointStoreError(f"checkpoint store {self.name} is closed", store=self.name)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS reflow_checkpoints (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
)
"""


def check_keep(keep: Any) -> None:
    """``keep`` (how many checkpoints per run a store keeps) must be 1 to 1000."""
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= 1000:
        raise CheckpointConfigError(f"checkpoint store keep={keep!r}: expected 1 to 1000")


class SqlCheckpointStore(CheckpointStore):
    """What the SQL stores share: the ``reflow_checkpoints`` table read and pruned with the
    same statements, written with ``?`` placeholders (``_PH`` is the engine's own), engine
    errors (``_errors``) translated into :class:`CheckpointStoreError`. A store sets ``_db``,
    ``_lock`` and ``keep``, and writes its own ``put`` (transactions differ)."""

    _PH = "?"
    _errors: Any = sqlite3.Error
    _db: Any
    _lock: threading.Lock
    keep: int

    def _sql(self, statement: str) -> str:
        return statement if self._PH == "?" else statement.replace("?", self._PH)

    def _conn(self) -> Any:
        if self._db is None:
            raise self._closed()
        return self._db

    def latest(self, run_id: str) -> StoredCheckpoint | None:
        with self._lock:
            try:
                row = (
                    self._conn()
                    .execute(
                        self._sql(
                            "SELECT seq, data FROM reflow_checkpoints WHERE run_id = ? "
                            "ORDER BY seq DESC LIMIT 1"
                        ),
                        (run_id,),
                    )
                    .fetchone()
                )
            except self._errors as exc:
                raise self._fail("reading a checkpoint", exc, run_id) from exc
        return None if row is None else StoredCheckpoint(run_id, int(row[0]), bytes(row[1]))

    def list(self, run_id: str) -> list[int]:
        with self._lock:
            try:
                rows = (
                    self._conn()
                    .execute(
                        self._sql(
                            "SELECT seq FROM reflow_checkpoints WHERE run_id = ? ORDER BY seq"
                        ),
                        (run_id,),
                    )
                    .fetchall()
                )
            except self._errors as exc:
                raise self._fail("listing checkpoints", exc, run_id) from exc
        return [int(r[0]) for r in rows]

    def delete(self, run_id: str) -> int:
        with self._lock:
            try:
                cur = self._conn().execute(
                    self._sql("DELETE FROM reflow_checkpoints WHERE run_id = ?"), (run_id,)
                )
            except self._errors as exc:
                raise self._fail("deleting checkpoints", exc, run_id) from exc
        return int(cur.rowcount)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class SqliteCheckpointStore(SqlCheckpointStore):
    """Checkpoints in a SQLite file (the default store): WAL journal, one transaction per
    checkpoint. ``synchronous="NORMAL"`` (the default) survives a crash of the process, as
    ``kill -9``; ``"FULL"`` also a power cut, at an fsync per checkpoint. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str], *, keep: int = 2, synchronous: str = "NORMAL"):
        if synchronous not in ("NORMAL", "FULL"):
            raise CheckpointConfigError(
                f"SqliteCheckpointStore synchronous={synchronous!r}: expected 'NORMAL' or 'FULL'"
            )
        check_keep(keep)
        self.path = os.fspath(path)
        self.name = f"sqlite://{self.path}" if os.path.isabs(self.path) else self.path
        self.keep = keep
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=STORE_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise CheckpointStoreError(
                f"checkpoint store {self.name} cannot be opened: {exc} (expected a writable "
                f"SQLite file in an existing directory)",
                store=self.name,
            ) from exc

    def put(self, run_id: str, seq: int, data: bytes) -> None:
        with self._lock:
            db = self._conn()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute(
                        "INSERT OR REPLACE INTO reflow_checkpoints VALUES (?, ?, ?)",
                        (run_id, seq, data),
                    )
                    db.execute(  # the newest ``keep`` stay: sequence numbers only grow
                        "DELETE FROM reflow_checkpoints WHERE run_id = ? AND seq <= ?",
                        (run_id, seq - self.keep),
                    )
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._fail("writing a checkpoint", exc, run_id) from exc
