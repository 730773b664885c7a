"""The client side of the registry's signed metadata: ``tuf.ngclient`` over the client's
own httpx connection, and the one boundary where python-tuf's exceptions become ours.

:class:`TrustedMetadata` keeps, per registry, the metadata the client has verified under
``<cache>/_tuf/`` (``root.json`` first of all: pinned by an explicit step,
:meth:`TrustedMetadata.pin`, never taken from the network). :meth:`~TrustedMetadata.refresh`
runs ``Updater.refresh()`` (root rotation, timestamp, snapshot, targets: rollback, freeze,
mix-and-match and endless data are python-tuf's checks), and
:meth:`~TrustedMetadata.namespace` gives the verified targets metadata of one namespace,
signed by its publishers: the version list, the sha256 and length of every variant, and the
yank state. Offline, :meth:`~TrustedMetadata.offline_namespace` verifies the same chain from
the files on disk (expiry aside) and says how old it is.

A cached-up-to-date install costs two round trips here: ``{N+1}.root.json`` (404) and
``timestamp.json``; snapshot and targets come from disk while their versions hold.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from .._errors import RegistryError, RegistryHTTPError, RegistryUnavailableError
from ._client_wire import clean, describe_age, raw_bytes
from ._transport import DeadlineExceeded
from ._tuf_errors import (
    FreezeError,
    KeyRevokedError,
    MetadataError,
    RollbackError,
    UntrustedRegistryError,
)

if TYPE_CHECKING:
    from ._client_exchange import _Exchange

__all__ = ["TUF_DIR", "TrustedMetadata"]

TUF_DIR = "_tuf"  # never a namespace: names start with a letter or digit
_TOP = ("root", "timestamp", "snapshot", "targets")


class _Fetcher(FetcherInterface):
    """python-tuf's fetcher on the registry client's httpx connection: its retries, its
    deadline and minimum rate, its error translation. Remembers the last role fetched (for
    error messages) and the last bytes of each, bounded by python-tuf's length limits."""

    def __init__(self, client: _Exchange) -> None:
        self.client = client
        self.role = ""
        self.url = ""
        self.count = 0
        self.bodies: dict[str, bytes] = {}

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = url.rsplit("/", 1)[-1]
        self.role = _role_of(name)
        self.url = url
        path = url[len(self.client.url) :] if url.startswith(self.client.url) else url
        client = self.client
        self.count += 1
        try:
            resp = client._retrying("GET", path, lambda: client._exchange("GET", path, ok=(200,)))
        except RegistryHTTPError as exc:
            if exc.status in (403, 404):
                raise tuf_errors.DownloadHTTPError(str(exc), exc.status) from exc
            raise
        body = bytearray()
        try:
            for chunk in raw_bytes(resp):
                client._pace.check_deadline()
                if len(body) < (1 << 21):
                    body += chunk
                yield chunk
        except (httpx.TransportError, DeadlineExceeded) as exc:
            raise RegistryUnavailableError(
                f"GET {url}: the registry stopped sending signed metadata in time "
                f"({type(exc).__name__}: {clean(exc, 120)}); a slow-retrieval attack or a "
                "bad connection",
                url=url,
            ) from exc
        finally:
            resp.close()
        self.bodies[self.role] = bytes(body)


def _role_of(filename: str) -> str:
    stem = filename.removesuffix(".json")
    head, _, rest = stem.partition(".")
    return rest if head.isdigit() and rest else stem


class TrustedMetadata:
    """The verified TUF metadata of one registry for one client."""

    def __init__(self, client: _Exchange) -> None:
        self.client = client
        self.dir = client.cache / TUF_DIR
        self.fetcher = _Fetcher(client)
        self._updater: Updater | None = None

    @property
    def pinned(self) -> bool:
        return (self.dir / "root.json").is_file()

    def pin(self, root_json: bytes, *, replace: bool = False) -> Metadata[Root]:
        """Trust ``root_json`` (the registry's root metadata, from its operator) from now
        on. It must be root metadata signed by its own root keys. Replacing a different
        pinned root needs ``replace`` (a rotation reaches clients by itself)."""
        where = f"{self.client.url} (root metadata to pin)"
        try:
            md: Metadata[Any] = Metadata.from_bytes(root_json)
            if not isinstance(md.signed, Root):
                raise ValueError(f"it is {md.signed.type} metadata, not root")
            md.verify_delegate("root", md)
        except Exception as exc:  # python-tuf's DeserializationError, UnsignedMetadataError
            raise MetadataError(
                f"{where}: not usable root metadata: {type(exc).__name__}: {clean(exc)}",
                role="root",
                url=self.client.url,
            ) from exc
        current = self.dir / "root.json"
        if current.is_file() and current.read_bytes() != root_json and not replace:
            raise MetadataError(
                f"a different root is already pinned for {self.client.url} (version "
                f"{Metadata.from_bytes(current.read_bytes()).signed.version}); root rotations "
                "reach this client by themselves. Replace it only if the registry was "
                "re-created: 'reflow-pack registry add URL --root root.json --replace'",
                role="root",
                url=self.client.url,
            )
        if replace and self.dir.is_dir():
            for old in self.dir.iterdir():
                if old.is_file():
                    old.unlink()
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = current.with_name(f"root.json.{os.getpid()}.tmp")
        tmp.write_bytes(root_json)
        os.replace(tmp, current)
        self._updater = None
        return md

    def _require_pinned(self) -> None:
        if not self.pinned:
            raise UntrustedRegistryError(
                f"no trusted root is pinned for {self.client.url}: get the registry's "
                "root.json from its operator and run 'reflow-pack registry add "
                f"{self.client.url} --root root.json'",
                role="root",
                url=self.client.url,
            )

    # -- online --------------------------------------------------------------------------------

    def refresh(self) -> Updater:
        """Run python-tuf's update of root, timestamp, snapshot and targets."""
        self._require_pinned()
        base = self.client.url
        updater = Updater(
            str(self.dir),
            f"{base}/tuf/",
            None,
            f"{base}/tuf/targets/",
            self.fetcher,
            UpdaterConfig(max_root_rotations=64, targets_max_length=4 << 20),
            bootstrap=None,
        )
        with self._translated():
            updater.refresh()
        self._updater = updater
        return updater

    def namespace(self, ns: str, *, refresh: bool = True) -> Targets | None:
        """The verified targets metadata signed by ``ns``'s publishers (None: it has not
        signed any yet)."""
        updater = self.refresh() if refresh or self._updater is None else self._updater
        snap = self._local("snapshot")
        if snap is None or f"{ns}.json" not in snap.signed.meta:
            return None
        with self._translated():
            updater.get_targetinfo(f"{ns}/_/_/_")  # walks into the namespace's role
        md = self._local(ns)
        if md is None or not isinstance(md.signed, Targets):
            raise MetadataError(
                f"{self.client.url}: namespace {ns!r} metadata did not verify", role=ns
            )
        return md.signed

    # -- offline -------------------------------------------------------------------------------

    def offline_namespace(self, ns: str) -> tuple[Targets | None, str]:
        """The namespace's targets from the verified files on disk (signatures and versions
        checked again; expiry reported, not enforced) and a line saying how old they are."""
        self._require_pinned()
        try:
            root = self._local("root")
            ts = self._local("timestamp")
            snap = self._local("snapshot")
            top = self._local("targets")
            if root is None or ts is None or snap is None or top is None:
                raise MetadataError(
                    f"no verified metadata of {self.client.url} is cached yet, so namespace "
                    f"{ns!r} cannot be resolved without the network (offline, or the registry "
                    "is unavailable): install once online first",
                    role="timestamp",
                )
            root.verify_delegate("timestamp", ts)
            root.verify_delegate("snapshot", snap)
            root.verify_delegate("targets", top)
            if ts.signed.snapshot_meta.version != snap.signed.version:
                raise MetadataError(
                    f"the cached snapshot of {self.client.url} is not the one its cached "
                    "timestamp lists (a cache changed or half-written): refresh online",
                    role="snapshot",
                )
            if snap.signed.meta["targets.json"].version != top.signed.version:
                raise MetadataError(
                    f"the cached targets of {self.client.url} are not the ones its cached "
                    "snapshot lists (a cache changed or half-written): refresh online",
                    role="targets",
                )
            mine = None
            if f"{ns}.json" in snap.signed.meta:
                md = self._local(ns)
                if md is None:
                    raise MetadataError(
                        f"namespace {ns!r} of {self.client.url} has no verified metadata "
                        "cached: install from it once online first",
                        role=ns,
                    )
                top.verify_delegate(ns, md)
                if md.signed.version != snap.signed.meta[f"{ns}.json"].version:
                    raise MetadataError(
                        f"the cached {ns!r} metadata of {self.client.url} is not what its "
                        "cached snapshot lists (a cache changed or half-written): refresh online",
                        role=ns,
                    )
                mine = md.signed
        except MetadataError:
            raise
        except Exception as exc:
            raise MetadataError(
                f"the cached signed metadata of {self.client.url} does not verify: "
                f"{type(exc).__name__}: {clean(exc)}",
                role=ns,
            ) from exc
        age = time.time() - (self.dir / "timestamp.json").stat().st_mtime
        left = (ts.signed.expires - datetime.now(UTC)).total_seconds()
        state = (
            f"expires in {describe_age(left)}" if left > 0 else f"expired {describe_age(-left)} ago"
        )
        return mine, f"signed metadata last verified {describe_age(age)} ago ({state})"

    # -- helpers -------------------------------------------------------------------------------

    def _local(self, role: str) -> Metadata[Any] | None:
        path = self.dir / f"{quote(role, '')}.json"
        try:
            return Metadata.from_bytes(path.read_bytes())
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise MetadataError(
                f"the cached {role} metadata of {self.client.url} is unreadable: {clean(exc)}",
                role=role,
            ) from exc

    def _translated(self) -> _Translate:
        return _Translate(self)


class _Translate:
    """python-tuf's exceptions, as the registry client's (the one boundary)."""

    def __init__(self, meta: TrustedMetadata) -> None:
        self.meta = meta

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, RegistryError) or not isinstance(exc, Exception):
            return
        raise self.translate(exc) from exc

    def translate(self, exc: Exception) -> RegistryError:
        f = self.meta.fetcher
        url, role = f.url or self.meta.client.url, f.role or "metadata"
        what = f"the registry's {role} metadata ({url})"
        nothing = "; nothing was installed"
        if isinstance(exc, tuf_errors.ExpiredMetadataError):
            expired = _expiry_of(f.bodies.get(role)) or _expiry_of(
                _read(self.meta.dir / f"{quote(role, '')}.json")
            )
            now = datetime.now(UTC)
            stale = (now - expired).total_seconds() if expired else 0.0
            when = f"expired {describe_age(stale)} ago ({expired:%Y-%m-%d %H:%M:%S} UTC)"
            return FreezeError(
                f"{what} {when if expired else 'has expired'}: the registry, or a mirror or "
                "proxy on the way, is serving frozen metadata, so newer versions and yanks "
                f"may be hidden{nothing}. Tell the registry's operator (its timestamp key "
                "re-signs on every request, so a working server never serves it expired); "
                "'--offline' installs from the cache meanwhile",
                role=role,
                expired_at=expired.timestamp() if expired else 0.0,
                stale_for=stale,
                url=url,
            )
        if isinstance(exc, tuf_errors.BadVersionNumberError):
            return RollbackError(
                f"{what} is older than what this client has already verified ({clean(exc)}): "
                f"a rollback attack or a mirror lagging behind{nothing}",
                role=role,
                url=url,
            )
        if isinstance(exc, tuf_errors.UnsignedMetadataError):
            if role not in _TOP:
                return KeyRevokedError(
                    f"namespace {role!r} metadata is not signed by the publisher keys the "
                    "registry delegates it to (a removed, revoked or foreign key, or a "
                    f"registry forging a namespace's packs){nothing}",
                    role=role,
                    url=url,
                )
            return MetadataError(
                f"{what} is not signed by the keys of the root this client trusts (a "
                f"malicious mirror, or keys changed without a root rotation){nothing}",
                role=role,
                url=url,
            )
        if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
            return MetadataError(
                f"{what} is not the version, length or hash the snapshot/timestamp lists "
                f"(mix-and-match of metadata){nothing}: {clean(exc)}",
                role=role,
                url=url,
            )
        if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
            return MetadataError(
                f"{what} is longer than its bound ({clean(exc)}): endless data; stopped "
                f"reading{nothing}",
                role=role,
                url=url,
            )
        if isinstance(exc, tuf_errors.DownloadHTTPError):
            return RegistryUnavailableError(
                f"{what}: the registry does not serve it ({clean(exc)}); is it a registry "
                "with signed metadata ('reflow-registry tuf init')?",
                url=url,
            )
        return MetadataError(
            f"{what} is not valid signed metadata: {type(exc).__name__}: {clean(exc)}{nothing}",
            role=role,
            url=url,
        )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _expiry_of(data: bytes | None) -> datetime | None:
    if not data:
        return None
    try:
        signed = Metadata.from_bytes(data).signed
    except Exception:
        return None
    if isinstance(signed, (Root, Timestamp, Snapshot, Targets)):
        return signed.expires
    return None


def signed_versions(targets: Targets | None, ns: str, short: str) -> dict[str, dict[str, Any]]:
    """``{version: {variant: TargetFile}}`` of ``ns/short`` in a namespace's targets."""
    out: dict[str, dict[str, Any]] = {}
    if targets is None:
        return out
    prefix = f"{ns}/{short}/"
    for path, target in targets.targets.items():
        if not path.startswith(prefix) or not path.endswith(".rflpack"):
            continue
        version, sep, file = path[len(prefix) :].partition("/")
        if sep and "/" not in file:
            out.setdefault(version, {})[file.removesuffix(".rflpack")] = target
    return out


def yank_of(target: Any) -> tuple[bool, str]:
    """A signed target's yank state (anything malformed counts as yanked)."""
    custom = target.unrecognized_fields.get("custom", {})
    if not isinstance(custom, dict):
        return True, "malformed yank state"
    yanked, reason = custom.get("yanked", False), custom.get("yank_reason", "")
    if not isinstance(yanked, bool) or not isinstance(reason, str):
        return True, "malformed yank state"
    return yanked, reason
