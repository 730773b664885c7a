"""What the two SQL indexes share: the statements both engines understand, and the
conversions between index rows and records.

:class:`SqlIndex` implements every :class:`~reflow.registry._storage.Index` method whose SQL
is the same on SQLite and PostgreSQL, written with ``?`` placeholders; a backend supplies
``_query``/``_write`` (turning ``?`` into its own style), the transactional writes
(``add_version``, ``put_metadata``) and ``_versions`` (how variants are fetched), which differ
in locking and batching. ``_COLLATE`` makes name orderings byte-wise on both engines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ._semver import precedence
from ._storage import (
    Index,
    KeyRecord,
    NamespaceRecord,
    TokenRecord,
    VariantRecord,
    VersionConflict,
    VersionRecord,
    like_pattern,
    newest_per_pack,
    sort_key,
)

__all__ = [
    "TOKEN_COLS",
    "VERSION_COLS",
    "SqlIndex",
    "check_precedence",
    "token_record",
    "variant_rows",
    "version_record",
    "version_row",
]

TOKEN_COLS = (
    "token_id, secret_sha256, namespace, scope, label, created_at, expires_at, revoked, parent_id"
)
VERSION_COLS = (
    "namespace, name, version, sha256, size, manifest, signature, key_id, abi, "
    "description, templates, triples, published_at, published_by, yanked, yank_reason"
)
#: ``VALUES (...)`` of an insert into ``versions``, in ``?`` style.
VERSION_VALUES = "(" + ", ".join("?" * len(VERSION_COLS.split(","))) + ")"


def token_record(row: Sequence[Any]) -> TokenRecord:
    """A ``tokens`` row (in :data:`TOKEN_COLS` order) as a record."""
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


def version_row(r: VersionRecord) -> tuple[Any, ...]:
    """The ``versions`` row of ``r``, in :data:`VERSION_COLS` order."""
    return (
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
    )


def variant_rows(r: VersionRecord) -> list[tuple[Any, ...]]:
    """The ``variants`` rows of ``r``."""
    return [(r.namespace, r.name, r.version, v.triple, v.sha256, v.size) for v in r.variants]


def version_record(row: Sequence[Any], variants: Iterable[VariantRecord]) -> VersionRecord:
    """A ``versions`` row (in :data:`VERSION_COLS` order) and its variants as a record."""
    return VersionRecord(
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
        variants=tuple(variants),
    )


def check_precedence(r: VersionRecord, published: Iterable[str]) -> None:
    """Refuse ``r`` when another published version of its pack has the same precedence
    (``1.0.0+a`` and ``1.0.0+b``): resolving a range could not tell them apart."""
    mine = precedence(r.version)
    if mine is None:
        return
    for other in published:
        if other != r.version and precedence(other) == mine:
            raise VersionConflict(
                f"{r.namespace}/{r.name} {other} is already published, and "
                f"{r.version} has the same version precedence",
                other,
            )


class SqlIndex(Index):
    """The statements SQLite and PostgreSQL share (see the module docstring)."""

    #: Appended to ``ORDER BY`` a name so both engines order byte-wise.
    _COLLATE = ""

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _write(self, sql: str, args: Sequence[Any] = ()) -> int:
        raise NotImplementedError

    def _versions(self, where: str, args: Sequence[Any]) -> list[VersionRecord]:
        raise NotImplementedError

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
        sql = f"SELECT name, owner, created_at FROM namespaces ORDER BY name{self._COLLATE}"
        return [NamespaceRecord(*r) for r in self._query(sql)]

    def add_key(self, namespace: str, key_id: str, pem: bytes) -> KeyRecord:
        rec = KeyRecord(namespace, key_id, pem, time.time())
        self._write(
            "INSERT INTO keys VALUES (?, ?, ?, ?) ON CONFLICT (namespace, key_id) "
            "DO UPDATE SET pem = excluded.pem, added_at = excluded.added_at",
            (namespace, key_id, pem, rec.added_at),
        )
        return rec

    def list_keys(self, namespace: str) -> list[KeyRecord]:
        rows = self._query(
            "SELECT namespace, key_id, pem, added_at FROM keys WHERE namespace = ? "
            f"ORDER BY key_id{self._COLLATE}",
            (namespace,),
        )
        return [KeyRecord(r[0], r[1], bytes(r[2]), r[3]) for r in rows]

    def remove_key(self, namespace: str, key_id: str) -> bool:
        sql = "DELETE FROM keys WHERE namespace = ? AND key_id = ?"
        return self._write(sql, (namespace, key_id)) > 0

    # -- tokens -----------------------------------------------------------------------------
    def add_token(self, record: TokenRecord) -> None:
        r = record
        self._write(
            f"INSERT INTO tokens ({TOKEN_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    def get_token(self, token_id: str) -> TokenRecord | None:
        rows = self._query(f"SELECT {TOKEN_COLS} FROM tokens WHERE token_id = ?", (token_id,))
        return token_record(rows[0]) if rows else None

    def list_tokens(self) -> list[TokenRecord]:
        rows = self._query(f"SELECT {TOKEN_COLS} FROM tokens ORDER BY created_at")
        return [token_record(r) for r in rows]

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
