"""``checkpoint=`` as the user wrote it — a store, a ``pathlib.Path``, a URL — made a store.

``sqlite:///abs/path.db`` (and ``sqlite://relative.db``) open a
:class:`~reflow.SqliteCheckpointStore`, ``postgresql://...`` a
:class:`~reflow.PostgresCheckpointStore`, ``redis://...`` / ``rediss://...`` a
:class:`~reflow.RedisCheckpointStore`; anything else is a :class:`~reflow.CheckpointConfigError`
naming what was given (without a password) and the schemes there are.
"""

from __future__ import annotations

import os
from typing import Any

from .._errors import CheckpointConfigError
from ._checkpoint_remote import PostgresCheckpointStore, RedisCheckpointStore
from ._checkpoint_store import CheckpointStore, SqliteCheckpointStore, redact

__all__ = ["open_store"]

SCHEMES = ("sqlite:///path", "postgresql://...", "redis://...")


def open_store(spec: Any) -> tuple[CheckpointStore, bool]:
    """A store for ``checkpoint=``: a :class:`CheckpointStore` as it is, or a URL string.
    Returns the store and whether it was opened here (and is to be closed by the caller)."""
    if isinstance(spec, CheckpointStore):
        return spec, False
    if isinstance(spec, os.PathLike):
        return SqliteCheckpointStore(spec), True
    if not isinstance(spec, str):
        raise CheckpointConfigError(
            f"checkpoint={type(spec).__name__}: expected a CheckpointStore, a pathlib.Path "
            f"(a SQLite file) or a store URL ({', '.join(SCHEMES)})"
        )
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme == "sqlite":
        path = spec[len("sqlite://") :]
        if not path:
            raise CheckpointConfigError(
                f"checkpoint URL {spec!r}: expected a file path, e.g. sqlite:///tmp/run.db"
            )
        return SqliteCheckpointStore(path), True
    if scheme in ("postgresql", "postgres"):
        return PostgresCheckpointStore(spec), True
    if scheme in ("redis", "rediss"):
        return RedisCheckpointStore(spec), True
    raise CheckpointConfigError(
        f"checkpoint URL {redact(spec)!r:.200}: unknown scheme {scheme or '(none)'!r}; "
        f"expected one of {', '.join(SCHEMES)}"
    )
