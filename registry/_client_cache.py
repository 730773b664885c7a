"""The registry client's pack cache: downloads, verified before they are kept or returned.

:class:`_PackCache` is the part of :class:`~reflow.registry.RegistryClient` that fetches a
version's file into ``<cache>/<ns>/<name>/<version>/<variant>.rflpack`` and answers from it.
Before a download is kept as usable it checks the published manifest's signature against the
trust store (and that it names the pack asked for), the file's size and sha256 against the
metadata, and the file itself against the signed manifest (``read_bundle``). A download goes
to ``<file>.part`` and resumes with ``Range``/``If-Range``; it never grows past the size the
registry published. Every cached pack is verified again before it is returned.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .._errors import (
    PackFormatError,
    PackIntegrityError,
    PackSignatureError,
    RegistryError,
    RegistryHTTPError,
    RegistryIntegrityError,
    RegistrySignatureError,
    RegistryUnavailableError,
)
from .._loader._trust import TrustStore
from ..abi._bundle import read_bundle
from ..abi._manifest import PORTABLE_TRIPLE, parse_manifest
from ..abi._signing import parse_signatures
from ._client_exchange import _Exchange
from ._client_wire import (
    SHA256_HEX,
    Progress,
    clean,
    describe_age,
    raw_bytes,
    resumes_at,
    sha256_file,
    why_unavailable,
)
from ._semver import VersionRange, pick_version


@dataclass(frozen=True)
class InstalledPack:
    """A verified pack file in the cache, ready for ``load_pack(path)``."""

    name: str
    version: str
    variant: str  # "full", a native triple, or the portable triple
    path: Path
    sha256: str
    signer: str
    from_cache: bool


class _PackCache(_Exchange):
    """Fetching, verifying and re-verifying cached packs (attributes set by ``RegistryClient``)."""

    trust: TrustStore
    max_download: int

    def _fetch(
        self,
        meta: dict[str, Any],
        triple: str,
        progress: Progress | None,
        *,
        variant: str | None = None,
    ) -> InstalledPack:
        """``variant``: the one to fetch (default: the best for ``triple`` in ``meta``)."""
        ns, short, version = meta["namespace"], meta["name"], meta["version"]
        url = f"{self.url}/api/v1/packs/{ns}/{short}/{version}"
        manifest, signer = self._verify_meta(meta, url)
        variant = variant or self._variant(meta, triple)
        expect = meta["variants"][variant]
        self._check_expect(expect, f"{url}/download")
        d = self._dir(ns, short, version)
        final = d / f"{variant}.rflpack"
        if final.is_file():
            try:
                return self._check_cached(d, variant, from_cache=True)
            except RegistryError:
                final.unlink(missing_ok=True)  # damaged in the cache: fetch it again
        d.mkdir(parents=True, exist_ok=True)
        part = final.with_name(final.name + ".part")
        self._download(
            f"/api/v1/packs/{ns}/{short}/{version}/download",
            {} if variant == "full" else {"triple": variant},
            part,
            int(expect["size"]),
            f'"{expect["sha256"]}"',
            progress,
            ns,
        )
        self._check_file(part, expect, manifest, f"{url}/download")
        (d / "metadata.json").write_text(json.dumps(meta, sort_keys=True))
        os.replace(part, final)
        return InstalledPack(
            f"{ns}/{short}", version, variant, final, expect["sha256"], signer, from_cache=False
        )

    def _variant(self, meta: dict[str, Any], triple: str) -> str:
        variants = meta["variants"]
        if triple in variants:
            return triple
        if PORTABLE_TRIPLE in variants:
            return PORTABLE_TRIPLE
        return "full"

    def _dir(self, ns: str, short: str, version: str) -> Path:
        return self.cache / ns / short / version

    def _verify_meta(self, meta: dict[str, Any], url: str) -> tuple[bytes, str]:
        """Check the published manifest's signature and that it is the pack asked for;
        return the signed manifest bytes and the signer.

        The signed name must be the full ``namespace/name``, or exactly ``name`` for a pack
        named without a namespace (API.md, "Packs named without a namespace")."""
        full = clean(f"{meta['namespace']}/{meta['name']}", 140)
        version = clean(meta["version"], 64)
        try:
            manifest = base64.b64decode(meta["manifest_b64"], validate=True)
            sigs = parse_signatures(base64.b64decode(meta["signature_b64"], validate=True))
            signer = self.trust.verify(manifest, sigs, pack=f"{full} {version}")
            parsed = parse_manifest(manifest)
        except PackSignatureError as exc:
            raise RegistrySignatureError(
                f"{clean(exc, 400)} (from {url})", key_id=exc.key_id, url=url
            ) from exc
        except (PackFormatError, ValueError, KeyError, TypeError) as exc:
            raise RegistrySignatureError(
                f"{full} {version}: the published manifest or "
                f"signature is unreadable: {clean(exc)}",
                url=url,
            ) from exc
        short_ok = "/" not in parsed.name and parsed.name == meta["name"]
        if (
            parsed.name != f"{meta['namespace']}/{meta['name']}" and not short_ok
        ) or parsed.version != meta["version"]:
            raise RegistrySignatureError(
                f"the registry served the signed manifest of {clean(parsed.name, 140)} "
                f"{clean(parsed.version, 64)} as {full} {version}: refusing a mixed-up pack",
                url=url,
            )
        return manifest, signer

    def _check_expect(self, expect: Any, url: str) -> None:
        """The (unsigned) size and sha256 the registry publishes for a variant: sane, and
        the size within ``max_download``, before a byte is downloaded."""
        size = expect.get("size") if isinstance(expect, dict) else None
        sha = expect.get("sha256") if isinstance(expect, dict) else None
        if not isinstance(sha, str) or SHA256_HEX.fullmatch(sha) is None:
            raise RegistryIntegrityError(
                f"{url}: the registry published {clean(repr(sha), 80)} as the sha256",
                what="sha256",
                expected="64 lowercase hex digits",
                actual=repr(sha)[:80],
                url=url,
            )
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RegistryIntegrityError(
                f"{url}: the registry published {clean(repr(size), 80)} as the size",
                what="size",
                expected="a byte count",
                actual=repr(size)[:80],
                url=url,
            )
        if size > self.max_download:
            raise RegistryIntegrityError(
                f"{url}: the registry says the pack is {size} bytes, over this client's "
                f"limit of {self.max_download} (RegistryClient(max_download=...)); refusing "
                "to download it",
                what="size",
                expected=f"<= {self.max_download}",
                actual=str(size),
                url=url,
            )

    def _download(
        self,
        path: str,
        params: dict[str, str],
        part: Path,
        size: int,
        etag: str,
        progress: Progress | None,
        ns: str,
    ) -> None:
        """Fill ``part`` with the file, resuming from what it already holds (the registry's
        ETag is the blob's sha256, so ``If-Range`` never splices two different files).
        Each attempt resumes where the last one stopped; retried like every request.

        Never writes past ``size``: a body longer than that stops the download with a
        RegistryIntegrityError (and deletes ``part``). A ``206`` whose ``Content-Range``
        does not start where ``part`` ends (or is for another length) is not appended:
        the download starts again from byte 0."""
        url = f"{self.url}{path}"

        def attempt() -> None:
            have = part.stat().st_size if part.exists() else 0
            if have > size:
                part.unlink()
                have = 0
            if have == size and size > 0:
                return
            resp = self._get_from(path, params, have, etag, ns)
            try:
                if resp.status_code == 206 and not resumes_at(resp, have, size):
                    resp.close()
                    part.unlink(missing_ok=True)
                    have = 0
                    resp = self._get_from(path, params, 0, etag, ns)
                    if resp.status_code == 206 and not resumes_at(resp, 0, size):
                        raise RegistryIntegrityError(
                            f"{url}: asked for the whole file, the registry answered 206 "
                            "with Content-Range "
                            f"{clean(repr(resp.headers.get('content-range')), 80)}",
                            what="size",
                            expected=f"bytes 0-{size - 1}/{size}",
                            actual=str(resp.headers.get("content-range"))[:80],
                            url=url,
                        )
                encoding = resp.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise RegistryHTTPError(
                        f"GET {url}: the registry sent a {clean(encoding, 40)!r}-encoded "
                        "download, although the client asked for 'identity'",
                        status=resp.status_code,
                        code="bad_response",
                        url=url,
                    )
                mode = "ab" if resp.status_code == 206 else "wb"
                done = have if resp.status_code == 206 else 0
                with part.open(mode) as fh:
                    for chunk in raw_bytes(resp):
                        if done + len(chunk) > size:
                            fh.close()
                            part.unlink(missing_ok=True)
                            raise RegistryIntegrityError(
                                f"{url}: the download is longer than the {size} bytes the "
                                "registry published; stopped",
                                what="size",
                                expected=str(size),
                                actual=f">{size} ({done + len(chunk)} so far)",
                                url=url,
                            )
                        fh.write(chunk)
                        done += len(chunk)
                        self._pace.check_deadline()
                        if progress is not None:
                            progress(done, size)
            finally:
                resp.close()

        self._retrying("GET", path, attempt)

    def _get_from(
        self, path: str, params: dict[str, str], have: int, etag: str, ns: str
    ) -> httpx.Response:
        headers = {"Range": f"bytes={have}-", "If-Range": etag} if have else {}
        return self._exchange("GET", path, params=params, headers=headers, ok=(200, 206), ns=ns)

    def _check_file(self, path: Path, expect: dict[str, Any], manifest: bytes, url: str) -> str:
        """Size, sha256, then the bundle itself against the signed manifest; return the
        signer. A file that fails is deleted."""
        try:
            size = path.stat().st_size
            if size != int(expect["size"]):
                raise RegistryIntegrityError(
                    f"{url}: downloaded {size} bytes, the registry published {expect['size']}",
                    what="size",
                    expected=str(expect["size"]),
                    actual=str(size),
                    url=url,
                )
            sha = sha256_file(path)
            if sha != expect["sha256"]:
                raise RegistryIntegrityError(
                    f"{url}: sha256 of the download is {sha}, the registry published "
                    f"{expect['sha256']}",
                    what="sha256",
                    expected=expect["sha256"],
                    actual=sha,
                    url=url,
                )
            try:
                bundle = read_bundle(path)
            except PackIntegrityError as exc:
                raise RegistryIntegrityError(
                    f"{url}: {exc}",
                    what="sha256",
                    expected=exc.expected,
                    actual=exc.actual,
                    url=url,
                ) from exc
            except PackFormatError as exc:
                raise RegistryIntegrityError(
                    f"{url}: not a valid pack: {exc}",
                    what="format",
                    expected=".rflpack",
                    actual="garbage",
                    url=url,
                ) from exc
            if bundle.manifest_bytes != manifest:
                raise RegistrySignatureError(
                    f"{url}: the file's manifest is not the one its publisher signed", url=url
                )
            try:
                return self.trust.verify(
                    bundle.manifest_bytes, bundle.signatures, pack=bundle.manifest.name
                )
            except PackSignatureError as exc:
                raise RegistrySignatureError(f"{url}: {exc}", key_id=exc.key_id, url=url) from exc
        except RegistryError:
            path.unlink(missing_ok=True)
            raise

    def _cached_meta(self, d: Path) -> dict[str, Any] | None:
        """A cached version's metadata, or None when it is unreadable or not metadata."""
        try:
            meta = json.loads((d / "metadata.json").read_text())
            return self._check_meta("GET", f"cache:{d}", meta)
        except (OSError, ValueError, RecursionError, RegistryError):
            return None

    def _check_cached(self, d: Path, variant: str, *, from_cache: bool) -> InstalledPack:
        url = f"cache:{d}"
        meta = self._cached_meta(d)
        if meta is None or not isinstance(meta["variants"].get(variant), dict):
            raise RegistryIntegrityError(
                f"{url}: the cached metadata.json is unreadable",
                what="format",
                expected="version metadata",
                actual="unreadable",
                url=url,
            )
        manifest, _ = self._verify_meta(meta, url)
        path = d / f"{variant}.rflpack"
        expect = meta["variants"][variant]
        self._check_expect(expect, url)
        signer = self._check_file(path, expect, manifest, url)
        return InstalledPack(
            f"{meta['namespace']}/{meta['name']}",
            meta["version"],
            variant,
            path,
            expect["sha256"],
            signer,
            from_cache=from_cache,
        )

    def _from_cache(
        self, ns: str, short: str, rng: VersionRange, triple: str, cause: RegistryError | None
    ) -> InstalledPack:
        base = self.cache / ns / short
        metas: dict[str, dict[str, Any]] = {}
        if base.is_dir():
            for d in base.iterdir():
                meta = self._cached_meta(d)
                if meta is not None and (d / f"{self._variant(meta, triple)}.rflpack").is_file():
                    metas[meta["version"]] = meta
        found = pick_version(rng, metas, [v for v, m in metas.items() if m.get("yanked")])
        if found is None:
            why = f" ({cause})" if cause else ""
            shown = sorted(metas)
            listed = ", ".join(clean(v, 64) for v in shown[:20]) or "none"
            more = f" and {len(shown) - 20} more" if len(shown) > 20 else ""
            raise RegistryUnavailableError(
                f"{'offline' if cause is None else why_unavailable(cause)}, and no cached "
                f"version of {ns}/{short} matches {rng}{why}; cached: {listed}{more}",
                url=self.url,
            ) from cause
        d = self._dir(ns, short, found)
        got = self._check_cached(d, self._variant(metas[found], triple), from_cache=True)
        if cause is not None:
            try:
                age = describe_age(time.time() - (d / "metadata.json").stat().st_mtime)
            except OSError:
                age = "an unknown time"
            self._note(
                f"{why_unavailable(cause)} ({cause}); using cached {ns}/{short} {found} "
                f"({got.variant}) from {age} ago"
            )
        return got
