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
    #: how long a write waits for another process's lock on the file
    BUSY_S = 30.0
    #: pickles from this size on are written and read in pieces of ``PIECE`` bytes
    STREAM_AT = 8 << 20
    PIECE = 4 << 20

    def __init__(self, root: Path, *, verify: bool = False) -> None:
        self.root = root
        self.verify = verify
        self.corrupt = 0
        self._lock = threading.Lock()
        path = root / "results.sqlite"
        try:
            root.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                path, timeout=self.BUSY_S, isolation_level=None, check_same_thread=False
            )
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
            if "locked" in str(exc) or "busy" in str(exc):
                raise CacheError(
                    f"the result cache {str(path)!r} is locked by another process, still after "
                    f"{self.BUSY_S:g} s: try again when it ends",
                    path=str(path),
                ) from exc
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
        out: dict[str, Any] = {}
        try:
            with self._lock:
                for i in range(0, len(keys), self.BATCH):
                    part = list(keys[i : i + self.BATCH])
                    marks = ",".join("?" * len(part))
                    rows = self._db.execute(
                        "SELECT key, sha256, CASE WHEN length(data) < ? THEN data END, rowid"
                        f" FROM results WHERE key IN ({marks})",
                        [self.STREAM_AT, *part],
                    ).fetchall()
                    for key, sha, data, rowid in rows:
                        out[key] = (
                            self._decode(key, sha, data)
                            if data is not None
                            else self._read_blob(key, sha, rowid)
                        )
        except sqlite3.Error as exc:
            log.warning("result cache: cannot read %s: %s", self.root, exc)
            return [MISS] * len(keys)
        return [out.get(k, MISS) for k in keys]

    def _decode(self, key: str, sha: str, data: bytes) -> Any:
        if self.verify and hashlib.sha256(data).hexdigest() != sha:
            return self._damaged(key, "does not match its checksum")
        try:
            return pickle.loads(data)
        except Exception as exc:
            return self._damaged(key, f"cannot be read back ({exc})")

    def _read_blob(self, key: str, sha: str, rowid: int) -> Any:
        """A large pickle read in pieces (and hashed in pieces under ``verify``), so reading
        one back holds it once, not the stored bytes besides."""
        with self._db.blobopen("results", "data", rowid, readonly=True) as blob:
            if self.verify:
                h = hashlib.sha256()
                while piece := blob.read(self.PIECE):
                    h.update(piece)
                if h.hexdigest() != sha:
                    return self._damaged(key, "does not match its checksum")
                blob.seek(0)
            try:
                return pickle.load(_BlobFile(blob))
            except Exception as exc:
                return self._damaged(key, f"cannot be read back ({exc})")

    def _damaged(self, key: str, why: str) -> Any:
        self.corrupt += 1
        log.warning("result cache: %s %s; recomputing", key, why)
        return MISS

    def put(self, key: str, value: Any, *, refused: list[str] | None = None) -> bool:
        """Store a result; ``False`` (and a warning) when it cannot be pickled or written."""
        return self.put_many([(key, value)], refused=refused) == 1

    def put_many(
        self, items: Iterable[tuple[str, Any]], *, refused: list[str] | None = None
    ) -> int:
        """Store results in one transaction; returns how many were stored (a result that
        cannot be pickled is left out, why appended to ``refused``, else logged as a warning;
        a failed write stores none). Each value is pickled and written before the next is
        pickled: one pickle in memory at a time."""
        stored = 0
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for key, value in items:
                        try:
                            data = pickle.dumps(value, protocol=5)
                        except Exception as exc:
                            why = (
                                f"a result of type {type(value).__qualname__} cannot be "
                                f"pickled ({type(exc).__name__}: {_short(exc)})"
                            )
                            if refused is None:
                                log.warning("result cache: %s", why)
                            else:
                                refused.append(why)
                            continue
                        sha = hashlib.sha256(data).hexdigest()
                        if len(data) < self.STREAM_AT:
                            self._db.execute(
                                "INSERT OR REPLACE INTO results (key, sha256, data)"
                                " VALUES (?, ?, ?)",
                                (key, sha, data),
                            )
                        else:
                            self._write_blob(key, sha, data)
                        del data
                        stored += 1
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            log.warning("result cache: cannot write to %s: %s", self.root, exc)
            return 0
        return stored

    def _write_blob(self, key: str, sha: str, data: bytes) -> None:
        """A large pickle written in pieces into a blob of its size: binding it as a parameter
        would copy it twice more inside SQLite (4x the value at the peak, measured)."""
        cur = self._db.execute(
            "INSERT OR REPLACE INTO results (key, sha256, data) VALUES (?, ?, zeroblob(?))",
            (key, sha, len(data)),
        )
        rowid = cur.lastrowid
        assert rowid is not None
        view = memoryview(data)
        with self._db.blobopen("results", "data", rowid) as blob:
            for i in range(0, len(view), self.PIECE):
                blob.write(view[i : i + self.PIECE])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _short(exc: BaseException) -> str:
    try:
        text = " ".join(str(exc).split())
    except Exception:
        text = "<its str() raised>"
    return text if len(text) <= 200 else text[:197] + "..."


class _BlobFile:
    """The file API ``pickle.load`` needs over a SQLite blob (``read``, ``readline``)."""

    def __init__(self, blob: sqlite3.Blob) -> None:
        self._blob = blob

    def read(self, n: int = -1) -> bytes:
        return self._blob.read(n)

    def readinto(self, buf: Any) -> int:
        data = self._blob.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:  # only the text protocols use it; byte by byte is fine
        line = bytearray()
        while (c := self._blob.read(1)) and c != b"\n":
            line += c
        return bytes(line + c)
