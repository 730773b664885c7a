"""Checkpoint stores on shared engines: PostgreSQL (psycopg 3) and Redis (redis-py).

Same contract as the SQLite store (``_checkpoint_store``): one transaction per checkpoint
(a PostgreSQL transaction; a Redis ``MULTI``/``EXEC``), the newest ``keep`` per run kept,
every engine error translated into :class:`~reflow.CheckpointStoreError` naming the store
(its URL without the password), connects bounded by ``STORE_TIMEOUT_S``. Both engines are
optional extras (``reflow[postgres]``, ``reflow[redis]``), imported only when a store is made.
"""

from __future__ import annotations

import threading
from typing import Any

from .._errors import CheckpointStoreError
from ._checkpoint_store import (
    STORE_TIMEOUT_S,
    CheckpointStore,
    SqlCheckpointStore,
    StoredCheckpoint,
    check_keep,
    redact,
)

__all__ = ["PostgresCheckpointStore", "RedisCheckpointStore"]


def _missing(extra: str, module: str, name: str) -> CheckpointStoreError:
    return CheckpointStoreError(
        f"checkpoint store {name} needs the {module} package: pip install 'reflow[{extra}]'",
        store=name,
    )


_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS reflow_checkpoints (
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (run_id, seq)
)
"""


class PostgresCheckpointStore(SqlCheckpointStore):
    """Checkpoints in a PostgreSQL table ``reflow_checkpoints`` (made if missing)."""

    _PH = "%s"

    def __init__(self, dsn: str, *, keep: int = 2) -> None:
        self.name = redact(dsn)
        check_keep(keep)
        self.keep = keep
        self._lock = threading.Lock()
        try:
            import psycopg
        except ImportError:
            raise _missing("postgres", "psycopg", self.name) from None
        self._errors: Any = psycopg.Error
        try:
            self._db: Any = psycopg.connect(
                dsn, connect_timeout=max(1, int(STORE_TIMEOUT_S)), autocommit=True
            )
            self._db.execute(_PG_SCHEMA)
        except (psycopg.Error, ValueError, OSError) as exc:
            raise CheckpointStoreError(
                f"checkpoint store {self.name} cannot be reached: {type(exc).__name__}: {exc}",
                store=self.name,
            ) from exc

    def put(self, run_id: str, seq: int, data: bytes) -> None:
        with self._lock:
            db = self._conn()
            try:
                with db.transaction():
                    db.execute(
                        "INSERT INTO reflow_checkpoints VALUES (%s, %s, %s) "
                        "ON CONFLICT (run_id, seq) DO UPDATE SET data = EXCLUDED.data",
                        (run_id, seq, data),
                    )
                    db.execute(  # the newest ``keep`` stay: sequence numbers only grow
                        "DELETE FROM reflow_checkpoints WHERE run_id = %s AND seq <= %s",
                        (run_id, seq - self.keep),
                    )
            except self._errors as exc:
                raise self._fail("writing a checkpoint", exc, run_id) from exc


class RedisCheckpointStore(CheckpointStore):
    """Checkpoints in Redis: ``{prefix}{run_id}`` is a sorted set of sequence numbers and
    ``{prefix}{run_id}:{seq}`` holds each checkpoint's bytes. A write is one ``MULTI``/``EXEC``
    (the new value, its index entry, the dropped ones), so readers never see half of it."""

    def __init__(self, url: str, *, keep: int = 2, prefix: str = "reflow:ckpt:") -> None:
        self.name = redact(url)
        check_keep(keep)
        self.keep = keep
        self.prefix = prefix
        try:
            import redis
        except ImportError:
            raise _missing("redis", "redis", self.name) from None
        self._errors: Any = redis.RedisError
        try:
            self._db: Any = redis.Redis.from_url(
                url,
                socket_connect_timeout=STORE_TIMEOUT_S,
                socket_timeout=STORE_TIMEOUT_S * 2,
            )
            self._db.ping()
        except (redis.RedisError, ValueError, OSError) as exc:
            raise CheckpointStoreError(
                f"checkpoint store {self.name} cannot be reached: {type(exc).__name__}: {exc}",
                store=self.name,
            ) from exc

    def _conn(self) -> Any:
        if self._db is None:
            raise self._closed()
        return self._db

    def _key(self, run_id: str, seq: int | None = None) -> str:
        base = f"{self.prefix}{run_id}"
        return base if seq is None else f"{base}:{seq}"

    def put(self, run_id: str, seq: int, data: bytes) -> None:
        db = self._conn()
        index = self._key(run_id)
        try:
            held = [int(s) for s in db.zrange(index, 0, -1)]
            drop = sorted({*held, seq})[: -self.keep]
            with db.pipeline(transaction=True) as pipe:
                pipe.set(self._key(run_id, seq), data)
                pipe.zadd(index, {str(seq): seq})
                for old in drop:
                    pipe.delete(self._key(run_id, old))
                    pipe.zrem(index, str(old))
                pipe.execute()
        except self._errors as exc:
            raise self._fail("writing a checkpoint", exc, run_id) from exc

    def latest(self, run_id: str) -> StoredCheckpoint | None:
        db = self._conn()
        try:
            for _ in range(3):  # a writer may drop the newest between the two reads: again
                top = db.zrevrange(self._key(run_id), 0, 0)
                if not top:
                    return None
                seq = int(top[0])
                data = db.get(self._key(run_id, seq))
                if data is not None:
                    return StoredCheckpoint(run_id, seq, bytes(data))
        except self._errors as exc:
            raise self._fail("reading a checkpoint", exc, run_id) from exc
        return None

    def list(self, run_id: str) -> list[int]:
        try:
            return [int(s) for s in self._conn().zrange(self._key(run_id), 0, -1)]
        except self._errors as exc:
            raise self._fail("listing checkpoints", exc, run_id) from exc

    def delete(self, run_id: str) -> int:
        db = self._conn()
        try:
            seqs = [int(s) for s in db.zrange(self._key(run_id), 0, -1)]
            with db.pipeline(transaction=True) as pipe:
                for seq in seqs:
                    pipe.delete(self._key(run_id, seq))
                pipe.delete(self._key(run_id))
                pipe.execute()
        except self._errors as exc:
            raise self._fail("deleting checkpoints", exc, run_id) from exc
        return len(seqs)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
