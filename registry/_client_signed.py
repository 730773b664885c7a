"""The registry client's signed-metadata (TUF) path: installing from publisher-signed
targets, and signing a namespace's targets when publishing or yanking.

A layer of :class:`~reflow.registry._client.RegistryClient` (see its module docstring),
used when the client has a pinned root: the version, the variant and its sha256 and length
all come from the namespace's publisher-signed targets, refreshed through
:class:`~reflow.registry._tuf_client.TrustedMetadata`; the registry's own metadata is only
checked against them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tuf.api.metadata import Metadata, Targets

from .._errors import (
    ReflowError,
    RegistryError,
    RegistryHTTPError,
    RegistryNotFoundError,
    RegistryUnavailableError,
)
from ..abi._signing import load_private_key
from ._client_cache import InstalledPack, _PackCache
from ._client_wire import Progress, clean, falls_back, no_match, sha256_file
from ._semver import RegistrySpecError, VersionRange, pick_version
from ._tuf_client import TrustedMetadata, signed_versions, yank_of
from ._tuf_errors import KeyRevokedError, MetadataError, TargetMismatchError
from ._tuf_publish import next_namespace_metadata, target_file
from ._tuf_repo import target_path

__all__: list[str] = []


class _SignedClient(_PackCache):
    """Signed-metadata installs and signing (attributes set by ``RegistryClient``)."""

    tuf: TrustedMetadata
    offline: bool

    def _signed(self, ns: str, short: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The signed versions of ``ns/short`` (refreshing the metadata) and the yanked ones."""
        listed = signed_versions(self.tuf.namespace(ns), ns, short)
        yanked = [v for v, ts in listed.items() if any(yank_of(t)[0] for t in ts.values())]
        return listed, yanked

    def _metadata(self, ns: str, short: str, version: str, *, cache: bool) -> dict[str, Any]:
        path = f"/api/v1/packs/{ns}/{short}/{version}"
        return self._check_meta("GET", path, self._json("GET", path, cache=cache, ns=ns))

    def _signing_key(self, key: Any) -> Ed25519PrivateKey | None:
        """The publisher key for signed metadata; None on a registry without a pinned root.
        A pinned root needs one: the version stays invisible to clients until signed."""
        if key is None:
            if self.tuf.pinned:
                raise RegistrySpecError(
                    f"{self.url} publishes through signed metadata: pass the publisher key "
                    "(reflow-pack publish --key KEY, RegistryClient.publish(..., key=))"
                )
            return None
        if isinstance(key, Ed25519PrivateKey):
            return key
        try:
            return load_private_key(key)
        except (OSError, ValueError, ReflowError) as exc:
            raise RegistrySpecError(f"cannot read the publisher key {key}: {exc}") from exc

    def _sign_release(
        self,
        ns: str,
        short: str,
        version: str,
        digests: dict[str, tuple[str, int]],
        doc: dict[str, Any],
        key: Ed25519PrivateKey,
    ) -> int:
        """Sign the namespace's targets with this version's variants (as built here, and
        checked against what the registry built)."""
        served = {
            k: (v.get("sha256"), v.get("size"))
            for k, v in doc["variants"].items()
            if isinstance(v, dict)
        }
        if served != digests:
            raise TargetMismatchError(
                f"{self.url}: the registry built other variants of {ns}/{short} {version} than "
                f"this pack gives ({sorted(served)} vs {sorted(digests)}, or other hashes); "
                "not signing them",
                path=f"{ns}/{short}/{version}",
                what="sha256",
                expected=str(sorted(digests.items()))[:200],
                actual=clean(sorted(served.items())),
            )

        # A version first signed now keeps the yank the registry already holds (one made
        # before the registry had signed metadata): signing it as not yanked would undo it.
        yanked = doc.get("yanked") is True
        reason = (
            doc.get("yank_reason") if yanked and isinstance(doc.get("yank_reason"), str) else ""
        )

        def changes(current: Any) -> dict[str, Any]:
            have = current.targets if current is not None else {}
            out = {}
            for variant, (sha, size) in digests.items():
                path = target_path(ns, short, version, variant)
                if path not in have:
                    out[path] = target_file(path, sha, size, yanked, str(reason)[:1000])
            return out

        return self._sign_namespace(ns, changes, key)

    def _sign_namespace(
        self, ns: str, changes: Callable[[Any], dict[str, Any]], key: Ed25519PrivateKey
    ) -> int:
        """Upload the namespace's next targets metadata with ``changes(current)`` applied
        (retried when another publisher signed a version in between). Its version."""
        for attempt in range(3):
            try:
                current = self.tuf.namespace(ns)
            except KeyRevokedError:
                current = self._revoked_namespace(ns)
            todo = changes(current)
            if not todo:
                return int(current.version) if current is not None else 0
            data = next_namespace_metadata(current, todo, key)
            route = f"/api/v1/namespaces/{ns}/metadata"
            try:
                doc = self._json(
                    "PUT",
                    route,
                    content=lambda data=data: data,
                    ok=(201,),
                    scope="publish",
                    ns=ns,
                    headers={"Content-Type": "application/json"},
                )
            except RegistryHTTPError as exc:
                if exc.code == "metadata_version" and attempt < 2:
                    continue
                raise
            if not isinstance(doc, dict) or not isinstance(doc.get("version"), int):
                raise self._shape("PUT", route, "the stored metadata version")
            return int(doc["version"])
        raise AssertionError("unreachable")

    def _revoked_namespace(self, ns: str) -> Any:
        """The namespace's current targets, signed by a key no longer delegated to it (a
        rotation or revocation): the base this publisher re-signs, saying so."""
        snap = self.tuf._local("snapshot")
        if snap is None or f"{ns}.json" not in snap.signed.meta:
            return None
        route = f"/tuf/{snap.signed.meta[f'{ns}.json'].version}.{ns}.json"
        doc = self._json("GET", route)
        try:
            signed = Metadata.from_dict(doc).signed
            if not isinstance(signed, Targets):
                raise ValueError(f"{signed.type} metadata")
        except Exception as exc:  # python-tuf's ValueError, KeyError, TypeError, ...
            raise MetadataError(
                f"{self.url}{route}: not targets metadata: {clean(exc)}", role=ns, url=self.url
            ) from exc
        self._note(
            f"namespace {ns!r} was signed by a key no longer delegated to it; re-signing its "
            f"{len(signed.targets)} targets with this key (after a key compromise, review "
            "them and yank what you did not publish)"
        )
        return signed

    def _signed_yank(
        self, ns: str, short: str, version: str, yanked: bool, reason: str, key: Ed25519PrivateKey
    ) -> dict[str, Any]:
        def changes(current: Any) -> dict[str, Any]:
            mine = signed_versions(current, ns, short).get(version)
            if not mine:
                raise RegistryNotFoundError(
                    f"{ns}/{short} {version} is not in the namespace's signed metadata",
                    status=404,
                    code="version_not_found",
                    url=self.url,
                )
            return {
                t.path: target_file(t.path, t.hashes["sha256"], t.length, yanked, reason[:1000])
                for t in mine.values()
                if yank_of(t) != (yanked, reason[:1000])
            }

        self._sign_namespace(ns, changes, key)
        return {
            "full_name": f"{ns}/{short}",
            "version": version,
            "yanked": yanked,
            "yank_reason": reason,
        }

    def _install_signed(
        self, ns: str, short: str, rng: VersionRange, triple: str, progress: Progress | None
    ) -> InstalledPack:
        """``install`` against the signed metadata: the version, the variant and its sha256
        and length all come from the namespace's publisher-signed targets."""
        if self.offline:
            targets, age = self.tuf.offline_namespace(ns)
            self._note(f"offline: using {self.url}'s {age}")
            return self._from_signed_cache(ns, short, rng, triple, targets, None)
        try:
            signed, yanked = self._signed(ns, short)
        except RegistryError as exc:
            if not falls_back(exc):
                raise
            try:
                targets, age = self.tuf.offline_namespace(ns)
            except RegistryError:
                raise exc from None  # nothing verified is cached: the registry's failure
            self._note(f"{exc}; using the {age}")
            return self._from_signed_cache(ns, short, rng, triple, targets, exc)
        version = pick_version(rng, list(signed), yanked)
        if version is None:
            raise no_match(
                ns, short, rng, list(signed), f"{self.url}/tuf (signed targets)", signed=True
            )
        variant = self._variant({"variants": signed[version]}, triple)
        target = signed[version][variant]
        d = self._dir(ns, short, version)
        if (d / f"{variant}.rflpack").is_file():
            try:
                got = self._check_cached(d, variant, from_cache=True)
                if self._matches(got.path, target):
                    return got
            except RegistryError:
                pass  # damaged or stale in the cache: fetch it again
            (d / f"{variant}.rflpack").unlink(missing_ok=True)
        meta = self._metadata(ns, short, version, cache=False)
        url = f"{self.url}/api/v1/packs/{ns}/{short}/{version}"
        served = (meta["namespace"], meta["name"], meta["version"])
        expect = meta["variants"].get(variant)
        if served != (ns, short, version) or not isinstance(expect, dict):
            raise TargetMismatchError(
                f"{url}: the registry's metadata is not for the signed target {target.path}",
                path=target.path,
                what="metadata",
                expected=target.path,
                actual=clean(f"{served[0]}/{served[1]} {served[2]} {sorted(meta['variants'])}"),
                url=url,
            )
        sha = target.hashes.get("sha256", "")
        if (expect.get("sha256"), expect.get("size")) != (sha, target.length):
            raise TargetMismatchError(
                f"{url}: the registry offers {clean(expect.get('size'), 24)} bytes with "
                f"sha256 {clean(expect.get('sha256'), 70)} for {target.path}, but the "
                f"namespace's publishers signed {target.length} bytes with sha256 {sha}: "
                "refusing a pack the publisher did not sign",
                path=target.path,
                what="sha256",
                expected=sha,
                actual=clean(expect.get("sha256"), 70),
                url=url,
            )
        got = self._fetch(meta, triple, progress, variant=variant)
        if not self._matches(got.path, target):  # a second check, on the file itself
            got.path.unlink(missing_ok=True)
            raise TargetMismatchError(
                f"{got.path}: the downloaded file is not the signed target {target.path}",
                path=target.path,
                what="sha256",
                expected=sha,
                actual=sha256_file(got.path) if got.path.is_file() else "",
                url=url,
            )
        return got

    @staticmethod
    def _matches(path: Path, target: Any) -> bool:
        try:
            with path.open("rb") as fh:
                target.verify_length_and_hashes(fh)
        except Exception:  # python-tuf's LengthOrHashMismatchError, OSError
            return False
        return True

    def _from_signed_cache(
        self,
        ns: str,
        short: str,
        rng: VersionRange,
        triple: str,
        targets: Any,
        cause: RegistryError | None,
    ) -> InstalledPack:
        """A cached pack that the cached, verified signed metadata lists (with its yank
        state and hashes from there)."""
        signed = signed_versions(targets, ns, short)
        cached = {v for v in signed if (self._dir(ns, short, v) / "metadata.json").is_file()}
        yanked = [v for v in cached if any(yank_of(t)[0] for t in signed[v].values())]
        found = pick_version(rng, sorted(cached), yanked)
        if found is None:
            why = f" ({cause})" if cause else ""
            raise RegistryUnavailableError(
                f"{'offline' if cause is None else 'registry unavailable'}, and no cached, "
                f"signed version of {ns}/{short} matches {rng}{why}; cached: "
                f"{', '.join(sorted(cached)) or 'none'}",
                url=self.url,
            ) from cause
        variant = self._variant({"variants": signed[found]}, triple)
        got = self._check_cached(self._dir(ns, short, found), variant, from_cache=True)
        if not self._matches(got.path, signed[found][variant]):
            raise TargetMismatchError(
                f"{got.path}: the cached file is not the signed target",
                path=signed[found][variant].path,
                what="sha256",
                expected=signed[found][variant].hashes.get("sha256", ""),
                actual=got.sha256,
                url=self.url,
            )
        return got
