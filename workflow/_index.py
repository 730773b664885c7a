"""The run index: one SQLite file recording every workflow run (Python API or CLI), so that a
run's status can be read, and the run retried, from another process.

A row per run, keyed by its id (``<workflow>-<yyyymmdd>-<4 hex>``), holds the run's snapshot
— the JSON-safe record :meth:`Run.status(as_dict=True) <reflow.workflow.Run.status>` returns,
less reflow-hpc's ``run``/``summary``/``instances`` views, which are computed from it on read —
plus the columns the listing filters on and the process that owns the run (host and pid), so
a run whose owner died while it was ``RUNNING`` can be told apart from one still going. The
status column holds :class:`~reflow.workflow.RunState` values; the lowercase words earlier
versions wrote (``succeeded``, ``running``) read as the same states.

The file is ``<cache dir>/workflow-runs.sqlite`` by default, the cache dir being
``$REFLOW_CACHE_DIR`` or ``~/.cache/reflow`` (as for packs and compiled modules). SQLite's WAL
journal and a busy timeout make it safe for several processes writing at once; every call
opens its own connection, so an index object can be shared between threads. A running run keeps
one :meth:`RunIndex.connect`-ed :class:`IndexConnection` instead, for the record writes and the
cancel polls of its whole run (a connection per poll cost an open, a WAL check and a close
four to eight times a second).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import socket
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._errors import ParamError, RunIndexError, RunNotFoundError
from ._states import RunState, run_state

__all__ = [
    "IndexConnection",
    "RunIndex",
    "default_index_path",
    "owner",
    "owner_alive",
    "process_start",
]

#: how long a writer waits for another process's lock before the index is an error
BUSY_S = 10.0
STATUSES = tuple(s.value for s in RunState)
#: what earlier versions wrote in the status column, read as the same states
_LEGACY = {"SUCCESS": ("succeeded",), "RUNNING": ("running", "pending")}


def _is_id(run_id: object) -> bool:
    """Whether ``run_id`` can be looked up at all: text SQLite can store (no lone surrogate,
    as a run id from undecodable command-line bytes has)."""
    if not isinstance(run_id, str):
        return False
    try:
        run_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_id(run_id: object) -> None:
    if _is_id(run_id):
        return
    what = (
        f"text that is not valid UTF-8 ({run_id[:40]!r})"
        if isinstance(run_id, str)
        else type(run_id).__name__
    )
    raise RunNotFoundError(
        f"a run id is a string like 'wf-20261207-a1b2', got {what}",
        run_id=repr(run_id)[:80],
        close=[],
    )


def _busy(exc: sqlite3.Error) -> bool:
    """Whether SQLite gave up waiting for another connection's lock."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _status(value: object, path: Path) -> RunState:
    try:
        return run_state(value)
    except ParamError as exc:
        raise RunIndexError(str(exc), path=str(path)) from None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    host TEXT,
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    snapshot TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
"""
_PUT = (
    "INSERT INTO runs (run_id, workflow, status, created, updated, host, pid, snapshot) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET "
    "workflow=excluded.workflow, status=excluded.status, updated=excluded.updated, "
    "host=excluded.host, pid=excluded.pid, snapshot=excluded.snapshot"
)
_CANCEL_REQUESTED = "SELECT cancel_requested FROM runs WHERE run_id = ?"


def default_index_path() -> Path:
    """``$REFLOW_CACHE_DIR/workflow-runs.sqlite``, else ``~/.cache/reflow/workflow-runs.sqlite``
    (the cache dir the pack cache uses)."""
    from .._loader._pack_head import cache_root

    return cache_root().parent / "workflow-runs.sqlite"


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux: ``/proc/<pid>/stat``'s start time, in clock
    ticks since boot), so a pid the system has given to a new process is not taken for the
    owner; ``None`` where it cannot be read."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read(4096)
        return stat.rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError, ValueError, OverflowError):
        return None


def owner() -> dict[str, Any]:
    """This process, as a run's record names its owner."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid())}


def owner_alive(host: str | None, pid: int | None, start: str | None = None) -> bool | None:
    """Whether the process that owns a run still exists: ``None`` when it cannot be told (the
    run belongs to another host, or no owner was recorded)."""
    if not host or not pid or host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, TypeError):
        return True
    except OSError:
        return None
    if start is not None:
        now = process_start(int(pid))
        if now is not None and now != start:
            return False  # the pid now names another process
    return True


def _iso(value: datetime | str | None, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise RunIndexError(
                f"{what} must be a datetime or an ISO-8601 date, got {text[:60]!r}", path=""
            ) from None
    if not isinstance(value, datetime):
        raise RunIndexError(f"{what} must be a datetime, got {type(value).__name__}", path="")
    if value.tzinfo is None:
        value = value.astimezone()  # a naive time is this machine's local time
    return value.astimezone(UTC).isoformat(timespec="microseconds")


class RunIndex:
    """The run record (see the module doc): ``put`` a snapshot, ``get`` one by id, ``list``
    them newest first."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise RunIndexError(
                f"the run index path must be a file path, got {type(path).__name__}", path=""
            )
        self.path = Path(path).expanduser() if path is not None else default_index_path()
        self._ready = False

    def __repr__(self) -> str:
        return f"RunIndex({str(self.path)!r})"

    # ------------------------------------------------------------------ plumbing

    def _open(self, *, threads: bool = False) -> sqlite3.Connection:
        """A new connection, the file and its schema made the first time (``threads``: one
        that several threads use in turn, under their own lock)."""
        where = str(self.path)
        try:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(
                where, timeout=BUSY_S, isolation_level=None, check_same_thread=not threads
            )
        except (OSError, sqlite3.Error, ValueError) as exc:
            raise RunIndexError(f"cannot open the run index {where!r}: {exc}", path=where) from exc
        try:
            with self._using():
                if not self._ready:
                    con.execute("PRAGMA journal_mode=WAL")
                    con.executescript(_SCHEMA)
                    self._ready = True
        except BaseException:
            con.close()
            raise
        return con

    @contextlib.contextmanager
    def _using(self) -> Iterator[None]:
        """SQLite's and the file system's errors as :class:`RunIndexError` naming the file."""
        where = str(self.path)
        try:
            yield
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise RunIndexError(
                    f"the run index {where!r} cannot be used: {exc} (not a reflow run index, "
                    "or damaged: move it away and a new one is made)",
                    path=where,
                ) from exc
            raise RunIndexError(
                f"the run index {where!r} is locked by another process, still after "
                f"{BUSY_S:g} s (one holding a write transaction open): try again when it ends",
                path=where,
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise RunIndexError(
                f"the run index {where!r} cannot be used: {exc} (not a reflow run index, or "
                "damaged: move it away and a new one is made)",
                path=where,
            ) from exc
        except (OSError, sqlite3.Error) as exc:
            raise RunIndexError(f"cannot use the run index {where!r}: {exc}", path=where) from exc

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        con = self._open()
        try:
            with self._using():
                yield con
        finally:
            con.close()

    def connect(self) -> IndexConnection:
        """One connection kept open for a run's writes and cancel polls (see the module
        doc); close it when the run ends."""
        return IndexConnection(self, self._open(threads=True))

    # ------------------------------------------------------------------ API

    def put(self, snap: dict[str, Any]) -> None:
        """Insert or replace the snapshot keyed by ``snap["run_id"]``; the owner (``host``,
        ``pid``) is taken from the snapshot's ``owner`` entry when it has one."""
        row = self._row(snap)
        with self._db() as con:
            con.execute(_PUT, row)

    def _row(self, snap: dict[str, Any]) -> tuple[Any, ...]:
        """The ``runs`` row :meth:`put` writes for ``snap`` (its errors raised here)."""
        if not isinstance(snap, dict) or not isinstance(snap.get("run_id"), str):
            raise RunIndexError(
                "a run snapshot must be a dict with a string 'run_id'", path=str(self.path)
            )
        status = _status(snap.get("status"), self.path).value
        snap = {**snap, "status": status}
        try:
            text = json.dumps(snap, default=str, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RunIndexError(
                f"run {snap['run_id']!r}: the snapshot is not JSON-safe: {exc}",
                path=str(self.path),
            ) from exc
        owner = snap.get("owner") or {}
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        created = _iso(snap.get("created"), "created") or now
        return (
            snap["run_id"],
            str(snap.get("workflow", "")),
            status,
            created,
            _iso(snap.get("updated"), "updated") or now,
            owner.get("host"),
            owner.get("pid"),
            text,
        )

    def has(self, run_id: str) -> bool:
        """Whether run ``run_id`` is recorded (cheap: no close-match search)."""
        if not _is_id(run_id):
            return False
        with self._db() as con:
            row = con.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row is not None

    def get(self, run_id: str) -> dict[str, Any]:
        """The snapshot of run ``run_id``; an unknown id is a :class:`RunNotFoundError` naming
        the closest ids recorded."""
        _check_id(run_id)
        with self._db() as con:
            row = con.execute(
                "SELECT snapshot, cancel_requested FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                ids = [r[0] for r in con.execute("SELECT run_id FROM runs")]
        if row is None:
            # a run id is short: a long one has no close match worth the search
            close = (
                difflib.get_close_matches(run_id, ids, n=3, cutoff=0.6) if len(run_id) < 200 else []
            )
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise RunNotFoundError(
                f"Unknown run_id {run_id[:80]!r}: no such run in the run index "
                f"{str(self.path)!r}{hint} "
                f"({len(ids)} runs recorded)",
                run_id=run_id,
                close=close,
            )
        return self._load(row[0], bool(row[1]))

    def _load(self, text: str, cancel: bool) -> dict[str, Any]:
        try:
            snap = json.loads(text)
        except ValueError as exc:
            raise RunIndexError(
                f"the run index {str(self.path)!r} holds a damaged snapshot: {exc}",
                path=str(self.path),
            ) from exc
        if cancel:
            snap["cancel_requested"] = True
        if isinstance(snap, dict) and snap.get("status") is not None:
            with contextlib.suppress(ParamError):  # an earlier version's lowercase words
                snap["status"] = run_state(snap["status"]).value
        return dict(snap)

    def list(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Snapshots, newest first: of one ``workflow``, in one ``status``, created at or after
        ``since`` and before ``until`` (datetimes; naive ones are local time), at most
        ``limit``."""
        where: list[str] = []
        args: list[Any] = []
        if workflow is not None:
            where.append("workflow = ?")
            args.append(str(workflow))
        if status is not None:
            state = _status(status, self.path).value
            words = (state, state.lower(), *_LEGACY.get(state, ()))
            where.append(f"status IN ({', '.join('?' * len(words))})")
            args.extend(words)
        for op, value, what in ((">=", since, "since"), ("<", until, "until")):
            stamp = _iso(value, what)
            if stamp is not None:
                where.append(f"created {op} ?")
                args.append(stamp)
        sql = "SELECT snapshot, cancel_requested FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, rowid DESC"
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise RunIndexError(
                    f"limit must be an integer >= 0, got {limit!r}", path=str(self.path)
                )
            sql += " LIMIT ?"
            args.append(limit)
        with self._db() as con:
            rows = con.execute(sql, args).fetchall()
        return [self._load(text, bool(c)) for text, c in rows]

    def request_cancel(self, run_id: str) -> None:
        """Ask the process running ``run_id`` to cancel it (it polls this flag)."""
        self.get(run_id)  # an unknown id is an error
        with self._db() as con:
            con.execute("UPDATE runs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))

    def cancel_requested(self, run_id: str) -> bool:
        if not _is_id(run_id):
            return False
        with self._db() as con:
            row = con.execute(_CANCEL_REQUESTED, (run_id,)).fetchone()
        return bool(row and row[0])

    def clear_cancel(self, run_id: str) -> None:
        _check_id(run_id)
        with self._db() as con:
            con.execute("UPDATE runs SET cancel_requested = 0 WHERE run_id = ?", (run_id,))


class IndexConnection:
    """One open connection to a :class:`RunIndex` (:meth:`RunIndex.connect`): ``put`` and
    ``cancel_requested`` as the index's, without opening a connection each. Several threads
    may use it in turn, never at once (the caller holds a lock); ``close()`` is idempotent,
    and a closed one is a :class:`RunIndexError`."""

    def __init__(self, index: RunIndex, con: sqlite3.Connection) -> None:
        self.index = index
        self._con: sqlite3.Connection | None = con

    def __repr__(self) -> str:
        state = "closed" if self._con is None else "open"
        return f"<IndexConnection {str(self.index.path)!r} {state}>"

    def _live(self) -> sqlite3.Connection:
        if self._con is None:
            where = str(self.index.path)
            raise RunIndexError(f"the connection to the run index {where!r} is closed", path=where)
        return self._con

    def put(self, snap: dict[str, Any]) -> None:
        row = self.index._row(snap)
        with self.index._using():
            self._live().execute(_PUT, row)

    def cancel_requested(self, run_id: str) -> bool:
        with self.index._using():
            row = self._live().execute(_CANCEL_REQUESTED, (run_id,)).fetchone()
        return bool(row and row[0])

    def close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            with contextlib.suppress(sqlite3.Error):
                con.close()

    def __enter__(self) -> IndexConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
