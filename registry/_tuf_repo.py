"""The registry's TUF repository: root, targets, snapshot and timestamp metadata made and
signed with python-tuf, kept behind the :class:`~reflow.registry.Storage` interface.

Roles and keys:

- ``root`` and the top-level ``targets`` are signed by keys the operator can keep offline:
  ``reflow-registry tuf init --keys DIR`` writes them to ``DIR`` (``root.pem``,
  ``targets.pem``) and the commands that change either (root rotation, namespace
  delegations) take ``--keys``; the server never needs them.
- ``targets`` delegates each namespace, as the terminating role named like it, for the
  paths ``{ns}/*/*/*``, to the publisher keys registered for the namespace. A namespace's own
  targets metadata is signed by its publishers' clients and only *checked* here
  (:meth:`TufRepository.accept_namespace`): the operator cannot forge it.
- ``snapshot`` and ``timestamp`` are signed online by keys under ``<data>/tuf-online-keys``;
  each accepted namespace metadata bumps both. The timestamp (and snapshot) is re-signed
  when less than half of its lifetime is left, so a short timestamp expiry needs no cron.

Every role expires (:class:`TufPolicy`); consistent snapshots are on, so every version of
every role but ``timestamp`` is served at ``/tuf/{version}.{role}.json``. Targets are named
``{ns}/{name}/{version}/{variant}.rflpack`` and carry ``{"custom": {"yanked": bool,
"yank_reason": str}}``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, Key, SSlibKey
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    Targets,
    Timestamp,
)

from ..abi._signing import load_public_key
from ._storage import Storage, StorageConflict

__all__ = [
    "ONLINE_DIR",
    "TOP_ROLES",
    "RepositoryRefusal",
    "TufPolicy",
    "TufRepository",
    "delegation_paths",
    "load_signer",
    "publisher_key",
    "target_path",
]

ONLINE_DIR = "tuf-online-keys"
TOP_ROLES = ("root", "targets", "snapshot", "timestamp")
_FILE = re.compile(r"([1-9][0-9]{0,9})\.([a-z0-9][a-z0-9._-]{0,63})\.json")
_TARGET = re.compile(
    r"([a-z0-9][a-z0-9._-]{0,63})/([a-z0-9][a-z0-9._-]{0,63})/([0-9A-Za-z.+-]{1,128})/"
    r"([a-z0-9_.-]{1,64})\.rflpack"
)
#: Largest namespace targets metadata accepted (a few thousand versions' variants).
MAX_NAMESPACE_METADATA = 4 << 20


class RepositoryRefusal(Exception):
    """Signed metadata the repository will not take: ``status``, ``code`` as in the API."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class TufPolicy:
    """How long each role's metadata stays valid, in seconds."""

    root: float = 365 * 86400
    targets: float = 365 * 86400
    snapshot: float = 7 * 86400
    timestamp: float = 86400

    def __post_init__(self) -> None:
        for role in TOP_ROLES:
            value = getattr(self, role)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"TufPolicy.{role} must be a positive number of seconds")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _expiry(seconds: float) -> datetime:
    return _now() + timedelta(seconds=max(1, int(seconds)))


def target_path(ns: str, name: str, version: str, variant: str) -> str:
    return f"{ns}/{name}/{version}/{variant}.rflpack"


def delegation_paths(ns: str) -> list[str]:
    # python-tuf matches path patterns component by component: one "*" per component
    return [f"{ns}/*/*/*"]


def publisher_key(pem: bytes) -> Key:
    """A namespace key (the PEM ``reflow-registry key add`` registered) as a TUF key."""
    return SSlibKey.from_crypto(load_public_key(pem))


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def load_signer(path: Path) -> CryptoSigner:
    """The ed25519 signer in the PEM file ``path``."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise RepositoryRefusal(
            400, "bad_key", f"cannot read the signing key {path}: {exc}"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise RepositoryRefusal(400, "bad_key", f"{path} is not an ed25519 private key")
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


def new_key(path: Path) -> CryptoSigner:
    write_private_key(path, Ed25519PrivateKey.generate())
    return load_signer(path)


class TufRepository:
    """The signed metadata of one registry (``storage``), with the online keys in
    ``online_dir``. Thread-safe; writers in several processes are kept apart by the storage
    (a role version is stored once: the loser retries on the new state)."""

    def __init__(self, storage: Storage, online_dir: Path, policy: TufPolicy | None = None) -> None:
        self.storage = storage
        self.online_dir = Path(online_dir)
        self.policy = policy or TufPolicy()
        self._lock = threading.Lock()
        self._signers: dict[str, CryptoSigner] = {}

    # -- state ---------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.storage.get_metadata("root") is not None

    def _signer(self, role: str) -> CryptoSigner:
        if role not in self._signers:
            self._signers[role] = load_signer(self.online_dir / f"{role}.pem")
        return self._signers[role]

    def load(self, role: str, version: int | None = None) -> Metadata[Any] | None:
        got = self.storage.get_metadata(role, version)
        return None if got is None else Metadata.from_bytes(got[1])

    def _must(self, role: str) -> Metadata[Any]:
        md = self.load(role)
        if md is None:
            raise RepositoryRefusal(
                404, "tuf_not_enabled", "this registry keeps no signed metadata"
            )
        return md

    # -- serving -------------------------------------------------------------------------------

    def file(self, name: str) -> bytes | None:
        """The bytes served as ``/tuf/{name}``, or None."""
        if name == "timestamp.json":
            return self.fresh_timestamp()
        m = _FILE.fullmatch(name)
        if m is None or m.group(2) == "timestamp":
            return None
        got = self.storage.get_metadata(m.group(2), int(m.group(1)))
        return None if got is None else got[1]

    def fresh_timestamp(self) -> bytes | None:
        """The newest timestamp, re-signed first (with a new snapshot if that too is past
        half its life) when less than half of its lifetime is left."""
        got = self.storage.get_metadata("timestamp")
        if got is None:
            return None
        ts: Metadata[Timestamp] = Metadata.from_bytes(got[1])
        left = (ts.signed.expires - _now()).total_seconds()
        if left > self.policy.timestamp / 2:
            return got[1]
        snap: Metadata[Snapshot] = self._must("snapshot")
        snap_left = (snap.signed.expires - _now()).total_seconds()
        self._bump({}, new_snapshot=snap_left <= self.policy.snapshot / 2)
        newest = self.storage.get_metadata("timestamp")
        return None if newest is None else newest[1]

    # -- writing -------------------------------------------------------------------------------

    def _bump(self, changed: dict[str, tuple[int, bytes]], *, new_snapshot: bool = True) -> None:
        """Store ``changed`` roles ({role: (version, bytes)}) with a new snapshot listing
        them (unless ``new_snapshot`` is False and nothing changed) and a new timestamp."""
        for _attempt in range(5):
            with self._lock:
                snap: Metadata[Snapshot] = self._must("snapshot")
                ts: Metadata[Timestamp] = self._must("timestamp")
                rows = [(role, v, data) for role, (v, data) in changed.items()]
                if new_snapshot or changed:
                    meta = dict(snap.signed.meta)
                    for role, (v, _) in changed.items():
                        if role != "root":
                            meta[f"{role}.json"] = MetaFile(version=v)
                    snap.signed.meta = meta
                    snap.signed.version += 1
                    snap.signed.expires = _expiry(self.policy.snapshot)
                    snap.sign(self._signer("snapshot"))
                    snap_bytes = snap.to_bytes()
                    rows.append(("snapshot", snap.signed.version, snap_bytes))
                    snap_meta = MetaFile.from_data(snap.signed.version, snap_bytes, ["sha256"])
                    ts.signed.snapshot_meta = snap_meta
                ts.signed.version += 1
                ts.signed.expires = _expiry(self.policy.timestamp)
                ts.sign(self._signer("timestamp"))
                rows.append(("timestamp", ts.signed.version, ts.to_bytes()))
                try:
                    self.storage.put_metadata(rows)
                    return
                except StorageConflict:
                    continue  # another process bumped first: redo on its state
        raise RepositoryRefusal(503, "busy", "signed metadata changed under this write; retry")

    def init(self, keys_dir: Path) -> bytes:
        """Make a new repository: root and targets keys in ``keys_dir``, online keys in
        ``online_dir``, version 1 of every role. Returns the root metadata clients pin."""
        if self.enabled:
            raise RepositoryRefusal(409, "tuf_exists", "this registry already has signed metadata")
        keys_dir.mkdir(parents=True, exist_ok=True)
        self.online_dir.mkdir(parents=True, exist_ok=True)
        for d, names in (
            (keys_dir, ("root", "targets")),
            (self.online_dir, ("snapshot", "timestamp")),
        ):
            for role in names:
                if (d / f"{role}.pem").exists():
                    raise RepositoryRefusal(
                        409,
                        "key_exists",
                        f"{d / f'{role}.pem'} exists; refusing to overwrite a key",
                    )
        signers = {role: new_key(keys_dir / f"{role}.pem") for role in ("root", "targets")}
        signers |= {
            role: new_key(self.online_dir / f"{role}.pem") for role in ("snapshot", "timestamp")
        }
        root = Root(expires=_expiry(self.policy.root), consistent_snapshot=True)
        for role, signer in signers.items():
            root.add_key(signer.public_key, role)
        root_md = Metadata(root)
        root_md.sign(signers["root"])
        targets_md = Metadata(Targets(expires=_expiry(self.policy.targets)))
        targets_md.signed.delegations = self._delegations()
        targets_md.sign(signers["targets"])
        targets_bytes = targets_md.to_bytes()
        snap = Metadata(Snapshot(expires=_expiry(self.policy.snapshot)))
        snap.signed.meta = {"targets.json": MetaFile(version=1)}
        snap.sign(signers["snapshot"])
        snap_bytes = snap.to_bytes()
        ts = Metadata(Timestamp(expires=_expiry(self.policy.timestamp)))
        ts.signed.snapshot_meta = MetaFile.from_data(1, snap_bytes, ["sha256"])
        ts.sign(signers["timestamp"])
        root_bytes = root_md.to_bytes()
        self.storage.put_metadata(
            [
                ("root", 1, root_bytes),
                ("targets", 1, targets_bytes),
                ("snapshot", 1, snap_bytes),
                ("timestamp", 1, ts.to_bytes()),
            ]
        )
        return root_bytes

    def _delegations(self, only: Iterable[str] | None = None) -> Delegations:
        keys: dict[str, Key] = {}
        roles: dict[str, DelegatedRole] = {}
        wanted = None if only is None else set(only)
        for ns in sorted(n.name for n in self.storage.list_namespaces()):
            if ns in TOP_ROLES or (wanted is not None and ns not in wanted):
                continue  # a namespace named like a top-level role cannot be a role name
            ids = []
            for record in self.storage.list_keys(ns):
                key = publisher_key(record.pem)
                keys[key.keyid] = key
                ids.append(key.keyid)
            if ids:
                roles[ns] = DelegatedRole(ns, sorted(ids), 1, True, delegation_paths(ns))
        return Delegations(keys, roles)

    def delegate(self, targets_signer: CryptoSigner) -> int:
        """Re-sign the top-level targets with each namespace delegated to the keys the index
        registers for it now (after ``key add`` / ``key remove``). Returns its version."""
        targets: Metadata[Targets] = self._must("targets")
        root: Metadata[Root] = self._must("root")
        if targets_signer.public_key.keyid not in root.signed.roles["targets"].keyids:
            raise RepositoryRefusal(
                403, "wrong_key", "that key is not this registry's targets key (see 'tuf init')"
            )
        targets.signed.delegations = self._delegations()
        targets.signed.version += 1
        targets.signed.expires = _expiry(self.policy.targets)
        targets.sign(targets_signer)
        self._bump({"targets": (targets.signed.version, targets.to_bytes())})
        return targets.signed.version

    def rotate_root(
        self, old: list[CryptoSigner], new: list[CryptoSigner], threshold: int = 1
    ) -> bytes:
        """Root N+1 whose root role is ``new`` keys with ``threshold``, signed by the old
        root keys (enough for the old threshold) and the new ones (clients verify N+1 with
        both N's and its own). Returns the new root's bytes."""
        root: Metadata[Root] = self._must("root")
        role = root.signed.roles["root"]
        old_ids = {s.public_key.keyid for s in old} & set(role.keyids)
        if len(old_ids) < role.threshold:
            raise RepositoryRefusal(
                403,
                "wrong_key",
                f"rotating root needs {role.threshold} of the current root keys; "
                f"{len(old_ids)} given",
            )
        if not 1 <= threshold <= len(new):
            raise RepositoryRefusal(
                400, "bad_threshold", f"threshold {threshold} of {len(new)} keys"
            )
        for keyid in list(role.keyids):
            root.signed.revoke_key(keyid, "root")
        for s in new:
            root.signed.add_key(s.public_key, "root")
        root.signed.roles["root"] = Role(list(root.signed.roles["root"].keyids), threshold)
        root.signed.version += 1
        root.signed.expires = _expiry(self.policy.root)
        root.signatures.clear()
        for s in [*old, *new]:
            root.sign(s, append=True)
        data = root.to_bytes()
        self.storage.put_metadata([("root", root.signed.version, data)])
        return data

    def accept_namespace(self, ns: str, data: bytes) -> int:
        """Take a namespace's new targets metadata, signed by its publishers; bump snapshot
        and timestamp. Returns its version. :class:`RepositoryRefusal` says why not."""
        if len(data) > MAX_NAMESPACE_METADATA:
            raise RepositoryRefusal(
                413, "too_large", f"namespace metadata is over {MAX_NAMESPACE_METADATA} bytes"
            )
        try:
            md: Metadata[Any] = Metadata.from_bytes(data)
        except Exception as exc:  # python-tuf raises DeserializationError, ValueError, ...
            raise RepositoryRefusal(
                400,
                "bad_metadata",
                f"not TUF targets metadata: {type(exc).__name__}: {str(exc)[:200]}",
            ) from exc
        if not isinstance(md.signed, Targets):
            raise RepositoryRefusal(
                400, "bad_metadata", f"expected targets metadata, got {md.signed.type}"
            )
        if md.signed.delegations is not None:
            raise RepositoryRefusal(
                422, "bad_metadata", f"namespace {ns!r} metadata may not delegate further"
            )
        top: Metadata[Targets] = self._must("targets")
        delegations = top.signed.delegations
        if delegations is None or delegations.roles is None or ns not in delegations.roles:
            raise RepositoryRefusal(
                422,
                "not_delegated",
                f"namespace {ns!r} is not delegated to any publisher key yet; an operator runs "
                f"'reflow-registry tuf delegate --keys DIR' after 'key add'",
            )
        try:
            top.verify_delegate(ns, md)
        except Exception as exc:  # UnsignedMetadataError and friends
            raise RepositoryRefusal(
                422,
                "bad_metadata_signature",
                f"namespace {ns!r} metadata is not signed by its keys: {exc}",
            ) from exc
        current = self.load(ns)
        want = 1 if current is None else current.signed.version + 1
        if md.signed.version != want:
            raise RepositoryRefusal(
                409,
                "metadata_version",
                f"namespace {ns!r} metadata must be version {want}, not {md.signed.version}",
            )
        if md.signed.is_expired():
            raise RepositoryRefusal(
                422, "expired", f"namespace {ns!r} metadata has already expired"
            )
        before = {} if current is None else current.signed.targets
        for path, old in before.items():
            new = md.signed.targets.get(path)
            if new is None or (new.length, new.hashes) != (old.length, old.hashes):
                raise RepositoryRefusal(
                    409,
                    "target_changed",
                    f"target {path} was published and cannot be removed or changed (yank it)",
                )
        yanks: dict[tuple[str, str], tuple[bool, str]] = {}
        for path, target in md.signed.targets.items():
            yanks[self._check_target(ns, path, target)] = _yank_of(path, target)
        self._bump({ns: (md.signed.version, md.to_bytes())})
        for (name, version), (yanked, reason) in yanks.items():
            rec = self.storage.get_version(ns, name, version)
            if rec is not None and (rec.yanked, rec.yank_reason) != (yanked, reason):
                self.storage.set_yanked(ns, name, version, yanked, reason)
        return int(md.signed.version)

    def _check_target(self, ns: str, path: str, target: Any) -> tuple[str, str]:
        m = _TARGET.fullmatch(path)
        if m is None or m.group(1) != ns:
            raise RepositoryRefusal(
                422, "bad_target", f"target {path[:200]!r} is not {ns}/NAME/VERSION/VARIANT.rflpack"
            )
        _, name, version, variant = m.groups()
        rec = self.storage.get_version(ns, name, version)
        if rec is None:
            raise RepositoryRefusal(
                422, "bad_target", f"target {path}: {ns}/{name} {version} is not published here"
            )
        sizes = {"full": (rec.sha256, rec.size)} | {
            v.triple: (v.sha256, v.size) for v in rec.variants
        }
        if variant not in sizes:
            raise RepositoryRefusal(
                422, "bad_target", f"target {path}: the version has no variant {variant!r}"
            )
        sha, size = sizes[variant]
        if target.length != size or target.hashes != {"sha256": sha}:
            raise RepositoryRefusal(
                422,
                "target_mismatch",
                f"target {path}: signed as {target.length} bytes {target.hashes}, the registry "
                f"holds {size} bytes sha256 {sha}",
            )
        _yank_of(path, target)
        return name, version


def _yank_of(path: str, target: Any) -> tuple[bool, str]:
    custom = target.unrecognized_fields.get("custom", {})
    yanked = custom.get("yanked", False) if isinstance(custom, dict) else None
    reason = custom.get("yank_reason", "") if isinstance(custom, dict) else None
    if not isinstance(yanked, bool) or not isinstance(reason, str) or len(reason) > 1000:
        raise RepositoryRefusal(
            422,
            "bad_target",
            f"target {path}: custom must be {{'yanked': bool, 'yank_reason': str}}",
        )
    return yanked, reason
