"""Opening a registry's storage from ``--index`` / ``--blobs`` locations."""

from __future__ import annotations

from pathlib import Path

from ._storage import BlobStore, Index, Storage
from ._storage_files import LocalBlobs
from ._storage_sqlite import LocalStorage, SQLiteIndex

__all__ = ["open_storage"]


def open_storage(data: Path, index: str | None = None, blobs: str | None = None) -> Storage:
    """The storage a registry serves: the embedded default (SQLite + blob files under
    ``data``) unless ``index`` (``postgresql://user@host:port/db``) or ``blobs``
    (``s3://bucket/prefix?endpoint=...``) name other backends. ``data`` still holds what is
    local to one process: its upload spool (and the online TUF keys)."""
    data = Path(data).expanduser()
    if index is None and blobs is None:
        return LocalStorage(data)
    data.mkdir(parents=True, exist_ok=True)
    if blobs is None:
        store: BlobStore = LocalBlobs(data)
    else:
        from ._storage_s3 import S3Blobs

        store = S3Blobs(blobs, data / "tmp")
    try:
        if index is None:
            idx: Index = SQLiteIndex(data / "index.sqlite3")
        else:
            from ._storage_pg import PostgresIndex

            idx = PostgresIndex(index)
    except BaseException:
        store.close()
        raise
    return Storage(idx, store, data)
