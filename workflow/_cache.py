"""The Merkle result cache of a workflow run.

A result's key is the SHA-256 of its job's code hash (source and ``version``), its parameter
values, and the keys of the results it was computed from — so a key names the whole history
of a value, and changing a job's code or version changes its key and every key downstream of
it, while untouched branches keep theirs. Results are pickled into one SQLite database,
``<run_dir>/.reflow-cache/results.sqlite`` (a row per key: the pickle and its SHA-256), an
array job's chunk read and written in one statement and one transaction each — so a crash
never leaves half a result, and ten thousand elements cost no twenty thousand files (a file
per result cost ~0.5 ms each, 30x the call itself for a trivial job); ``verify=True``
re-hashes a stored result before trusting it.

The cache is the user's own directory: it is read with ``pickle``, so do not point a run at a
cache directory you did not write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._errors import CacheError

__all__ = ["MISS", "ResultCache", "merkle", "value_digest"]

log = logging.getLogger("reflow.workflow")

MISS = object()


def merkle(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def value_digest(value: Any) -> str:
    """A digest of a parameter value: canonical JSON where the value is JSON, else its pickle."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        return "j" + hashlib.sha256(text.encode()).hexdigest()
    except (TypeError, ValueError):
        pass
    try:
        return "p" + hashlib.sha256(pickle.dumps(value, protocol=5)).hexdigest()
    except Exception:
        return "r" + hashlib.sha256(repr(value).encode()).hexdigest()


class ResultCache:
    """The results of one run directory, shared by the threads of one run (one connection
    behind a lock; SQLite's own locking between processes, WAL mode)."""

    #: keys per ``SELECT ... IN (...)``: below SQLite's variable limit
    BATCH = 500

    def __init__(self, root: Path, *, verify: bool = False) -> None:
        self.root = root
        self.verify = verify
        self.corrupt = 0
        self._lock = threading.Lock()
        path = root / "results.sqlite"
        try:
            root.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS results"
                " (key TEXT PRIMARY KEY, sha256 TEXT NOT NULL, data BLOB NOT NULL)"
            )
        except OSError as exc:
            raise CacheError(
                f"cannot create the result cache {str(root)!r}: {exc.strerror or exc}",
                path=str(root),
            ) from exc
        except sqlite3.Error as exc:
            raise CacheError(
                f"cannot open the result cache {str(path)!r}: {exc} (delete the file to start "
                "afresh: it only holds results that can be computed again)",
                path=str(path),
            ) from exc
        self._db = db

    def get(self, key: str) -> Any:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        """The stored results of ``keys`` in order, :data:`MISS` for each one not stored (or
        unreadable: a warning, and it is computed again)."""
        rows: dict[str, tuple[str, bytes]] = {}
        try:
            with self._lock:
                for i in range(0, len(keys), self.BATCH):
                    part = list(keys[i : i + self.BATCH])
                    marks = ",".join("?" * len(part))
                    for key, sha, data in self._db.execute(
                        f"SELECT key, sha256, data FROM results WHERE key IN ({marks})", part
                    ):
                        rows[key] = (sha, data)
        except sqlite3.Error as exc:
            log.warning("result cache: cannot read %s: %s", self.root, exc)
            return [MISS] * len(keys)
        return [self._decode(k, rows[k]) if k in rows else MISS for k in keys]

    def _decode(self, key: str, row: tuple[str, bytes]) -> Any:
        sha, data = row
        if self.verify and hashlib.sha256(data).hexdigest() != sha:
            self.corrupt += 1
            log.warning("result cache: %s does not match its checksum; recomputing", key)
            return MISS
        try:
            return pickle.loads(data)
        except Exception as exc:
            self.corrupt += 1
            log.warning("result cache: %s cannot be read back (%s); recomputing", key, exc)
            return MISS

    def put(self, key: str, value: Any) -> bool:
        """Store a result; ``False`` (and a warning) when it cannot be pickled or written."""
        return self.put_many([(key, value)]) == 1

    def put_many(self, items: Iterable[tuple[str, Any]]) -> int:
        """Store results in one transaction; returns how many were stored (a result that
        cannot be pickled is left out with a warning; a failed write stores none)."""
        rows = []
        for key, value in items:
            try:
                data = pickle.dumps(value, protocol=5)
            except Exception as exc:
                log.warning(
                    "result cache: a result of type %s cannot be pickled (%s)", type(value), exc
                )
                continue
            rows.append((key, hashlib.sha256(data).hexdigest(), data))
        if not rows:
            return 0
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO results (key, sha256, data) VALUES (?, ?, ?)",
                        rows,
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            log.warning("result cache: cannot write to %s: %s", self.root, exc)
            return 0
        return len(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
