"""The registry client (httpx): publish, search, resolve, install, yank.

``RegistryClient(url)`` talks to one registry. Tests inject ``transport=`` (the app
in-process, or a transport that fails on purpose).

What the client trusts, and why: the version list and search results are *hints*. What it
acts on is the pack's manifest and signature exactly as the publisher signed them: before a
download is written to the cache as usable, the client checks

1. the published manifest's signature against the local :class:`~reflow._trust.TrustStore`
   (and that the signed manifest names the pack and version that was asked for — the full
   ``ns/name``, or exactly ``name`` for a pack named without a namespace — so a registry
   cannot pass one signed pack off as another);
2. the downloaded file's size and sha256 against the metadata (:class:`RegistryIntegrityError`
   — never raised for an HTTP error: a 404 is a :class:`RegistryNotFoundError`);
3. the file's own manifest bytes equal the signed ones, its signature verifies, and every
   member matches its hash in the manifest (``read_bundle``).

Downloads go to ``<file>.part`` and resume with ``Range``/``If-Range`` after a dropped
connection. Requests are retried with exponential backoff (and jitter) on connection errors,
429 and 5xx, honouring ``Retry-After``. When the registry cannot be reached, ``install``
answers from the cache if a cached version satisfies the range (``offline=True`` never asks
the network at all); every cache hit is verified again before it is returned.

Errors from httpx are translated in :meth:`RegistryClient._send` (and the download loop) and
chained.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._errors import (
    PackFormatError,
    PackIntegrityError,
    PackSignatureError,
    RegistryAuthError,
    RegistryError,
    RegistryHTTPError,
    RegistryIntegrityError,
    RegistryNotFoundError,
    RegistrySignatureError,
    RegistryUnavailableError,
)
from .._trust import TrustStore
from ..abi._bundle import BundleLimits, read_bundle
from ..abi._manifest import PORTABLE_TRIPLE, host_triples, parse_manifest
from ..abi._signing import parse_signatures
from ._names import is_valid_name
from ._semver import RegistrySpecError, VersionRange, parse_spec, pick_version

__all__ = [
    "InstalledPack",
    "Progress",
    "RegistryClient",
    "default_cache_dir",
    "install_pack",
]

#: ``progress(done_bytes, total_bytes_or_None)``, called as a transfer advances.
Progress = Callable[[int, "int | None"], None]
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_CHUNK = 1 << 20
#: The largest pack ``install`` downloads unless told otherwise: what ``read_bundle`` would
#: accept anyway. The size in the version metadata is the registry's word, not signed.
DEFAULT_MAX_DOWNLOAD = BundleLimits().max_total
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)")


def default_cache_dir() -> Path:
    """``$REFLOW_CACHE_DIR/registry``, else ``~/.cache/reflow/registry``."""
    env = os.environ.get("REFLOW_CACHE_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "reflow"
    return base / "registry"


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


class RegistryClient:
    """A client for one registry at ``url``. Close it (or use ``with``) when done.

    ``token``: bearer token (default ``$REFLOW_REGISTRY_TOKEN``). ``trust``: the trust store
    downloads are verified against. ``cache_dir``: where verified packs are kept.
    ``offline``: never use the network, answer from the cache. ``retries``/``backoff``:
    attempts after the first and the base delay in seconds. ``sleep`` is injectable for tests.
    ``max_download``: the largest pack file it downloads, in bytes (the size a registry
    publishes is not signed; a bigger one is refused before any byte is fetched, and no
    download is ever written past the published size).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        trust: TrustStore | str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool = False,
        retries: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 30.0,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        max_download: int = DEFAULT_MAX_DOWNLOAD,
    ) -> None:
        self.url = url.rstrip("/")
        self.max_download = max_download
        try:
            parsed = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            raise RegistrySpecError(f"{url!r} is not a registry URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise RegistrySpecError(
                f"{url!r} is not a registry URL (e.g. http://127.0.0.1:8700)")
        token = token if token is not None else os.environ.get("REFLOW_REGISTRY_TOKEN")
        headers = {"User-Agent": "reflow-registry-client/1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.has_token = bool(token)
        self._http: httpx.Client | None = httpx.Client(
            base_url=self.url, headers=headers, transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )
        self.trust = trust if isinstance(trust, TrustStore) else TrustStore(trust)
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        parts = urlsplit(self.url)
        site = (parts.netloc + parts.path).replace(":", "_").replace("/", "+").strip("+")
        self.cache = root / (site or "default")
        self.offline = offline
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"RegistryClient({self.url!r})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (idempotent)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            raise RegistryError(f"{self!r} is closed", url=self.url)
        return self._http

    # -- transport: the one boundary where httpx errors become ours --------------------------

    def _delay(self, attempt: int, resp: httpx.Response | None = None) -> float:
        if resp is not None and "retry-after" in resp.headers:
            value = resp.headers["retry-after"].strip()
            try:
                wait = float(value)
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(value).timestamp()
                    wait = when - time.time()
                except (TypeError, ValueError):
                    wait = self.backoff * 2 ** attempt
            return min(max(wait, 0.0), self.max_backoff)
        return min(self.backoff * 2 ** attempt * (0.5 + random.random()), self.max_backoff)

    def _send(
        self, method: str, path: str, *, content: Callable[[], Any] | None = None,
        headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
        stream: bool = False, ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """One request, retried on connection errors, 429 and 5xx. ``content`` is a factory
        so a retry can send the body again. Error statuses raise."""
        url = f"{self.url}{path}"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                req = self.http.build_request(method, path, headers=headers, params=params,
                                              content=content() if content else None)
                resp = self.http.send(req, stream=stream)
            except httpx.TransportError as exc:
                if last:
                    raise RegistryUnavailableError(
                        f"{method} {url}: cannot reach the registry after "
                        f"{self.retries + 1} attempts: {type(exc).__name__}: {exc}",
                        url=url) from exc
                self._sleep(self._delay(attempt))
                continue
            if resp.status_code in _RETRY_STATUS and not last:
                resp.close()
                self._sleep(self._delay(attempt, resp))
                continue
            if resp.status_code not in ok:
                if stream:
                    resp.read()
                resp.close()
                raise _http_error(method, url, resp)
            return resp
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._send(method, path, **kw)
        try:
            return resp.json()
        except ValueError as exc:
            raise RegistryHTTPError(f"{method} {self.url}{path}: the registry answered "
                                    "with something that is not JSON", status=resp.status_code,
                                    code="bad_response", url=f"{self.url}{path}") from exc

    # -- queries -----------------------------------------------------------------------------

    def search(self, query: str = "", *, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """Packs whose name, description or templates contain ``query`` (hints, unsigned)."""
        doc = self._json("GET", "/api/v1/search",
                         params={"q": query, "limit": str(limit), "offset": str(offset)})
        return list(doc["results"])

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``namespace/name`` (with yanked flags), oldest first."""
        ns, short, _ = parse_spec(name)
        return list(self._json("GET", f"/api/v1/packs/{ns}/{short}")["versions"])

    def metadata(self, name: str, version: str) -> dict[str, Any]:
        ns, short, _ = parse_spec(name)
        return dict(self._json("GET", f"/api/v1/packs/{ns}/{short}/{version}"))

    def whoami(self) -> dict[str, Any]:
        """What the registry knows about this client's token: ``token_id``, ``namespace``
        (``*`` for every namespace), ``scope``, ``label``, ``expires_at``."""
        return dict(self._json("GET", "/api/v1/token"))

    def resolve(self, spec: str) -> str:
        """The version ``namespace/name@range`` resolves to on the registry."""
        ns, short, rng = parse_spec(spec)
        listed = self.versions(f"{ns}/{short}")
        found = pick_version(rng, [v["version"] for v in listed],
                             [v["version"] for v in listed if v["yanked"]])
        if found is None:
            raise _no_match(ns, short, rng, [v["version"] for v in listed],
                            f"{self.url}/api/v1/packs/{ns}/{short}")
        return found

    # -- publishing --------------------------------------------------------------------------

    def publish(self, path: str | os.PathLike[str], *, namespace: str | None = None,
                progress: Progress | None = None) -> dict[str, Any]:
        """Upload a full ``.rflpack``; returns the published version's metadata. Publishing
        the identical file again is not an error (a retried upload may have landed): the answer
        then has ``"unchanged": True``.

        A pack named ``ns/name`` goes to ``ns`` (``namespace``, if given, must agree). A pack
        named without a namespace (``my-pack``, as ``reflow-pack new`` makes it) goes to
        ``namespace``, else to the namespace of the token (:meth:`whoami`); a token for
        every namespace (``*``) needs ``namespace``."""
        p = Path(path)
        try:
            head = read_bundle(p, head_only=True)
        except PackFormatError as exc:
            raise RegistryError(f"{p} is not a publishable pack: {exc}") from exc
        ns, short = self.publish_target(head.manifest.name, namespace)
        version = head.manifest.version
        size = p.stat().st_size
        sha = _sha256_file(p)

        def body() -> Iterator[bytes]:
            done = 0
            with p.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    done += len(chunk)
                    if progress is not None:
                        progress(done, size)
                    yield chunk

        route = f"/api/v1/packs/{ns}/{short}/{version}"
        try:
            return dict(self._json("PUT", route, content=body, ok=(200, 201), headers={
                "Content-Type": "application/vnd.reflow.rflpack",
                "Content-Length": str(size)}))
        except RegistryHTTPError as exc:
            if exc.code != "version_exists":
                raise
            existing = self.metadata(f"{ns}/{short}", version)
            if existing.get("sha256") != sha:
                raise
            return {**existing, "unchanged": True}

    def publish_target(self, pack_name: str, namespace: str | None = None) -> tuple[str, str]:
        """``(namespace, name)`` a pack whose manifest says ``pack_name`` is published as
        (see :meth:`publish`)."""
        if namespace is not None and not is_valid_name(namespace):
            raise RegistrySpecError(
                f"{namespace!r} is not a valid namespace (lowercase letters, digits and ._-, "
                "starting with a letter or digit)")
        if "/" in pack_name:
            ns, short, _ = parse_spec(pack_name)
            if namespace is not None and namespace != ns:
                raise RegistrySpecError(
                    f"the pack is named {pack_name!r}, so it is published in namespace "
                    f"{ns!r}, not {namespace!r}; drop --namespace or rename the pack")
            return ns, short
        if not is_valid_name(pack_name):
            raise RegistrySpecError(f"{pack_name!r} is not a valid pack name")
        if namespace is not None:
            return namespace, pack_name
        if not self.has_token:
            raise RegistrySpecError(
                f"the pack is named {pack_name!r}, without a namespace: pass --namespace NS "
                "(and a publish token: --token or $REFLOW_REGISTRY_TOKEN)")
        try:
            token_ns = str(self.whoami()["namespace"])
        except RegistryNotFoundError as exc:
            raise RegistrySpecError(
                f"the pack is named {pack_name!r}, without a namespace, and this registry "
                "does not say which namespace the token is for: pass --namespace NS") from exc
        except (KeyError, TypeError) as exc:
            raise RegistryHTTPError(f"GET {self.url}/api/v1/token: unexpected answer",
                                    status=200, code="bad_response",
                                    url=f"{self.url}/api/v1/token") from exc
        if token_ns == "*":
            raise RegistrySpecError(
                f"the pack is named {pack_name!r}, without a namespace, and the token is for "
                "every namespace ('*'): pass --namespace NS to choose one")
        return token_ns, pack_name

    def yank(self, spec: str, reason: str = "") -> dict[str, Any]:
        """Withdraw ``namespace/name@version``: ranges skip it; exact pins still install."""
        ns, short, version = self._exact(spec)
        return dict(self._json("POST", f"/api/v1/packs/{ns}/{short}/{version}/yank",
                               content=lambda: json.dumps({"reason": reason}).encode(),
                               headers={"Content-Type": "application/json"}))

    def unyank(self, spec: str) -> dict[str, Any]:
        ns, short, version = self._exact(spec)
        return dict(self._json("DELETE", f"/api/v1/packs/{ns}/{short}/{version}/yank"))

    @staticmethod
    def _exact(spec: str) -> tuple[str, str, str]:
        ns, short, rng = parse_spec(spec)
        if rng.exact is None:
            raise RegistrySpecError(
                f"{spec!r}: name one exact version, e.g. {ns}/{short}@1.2.0")
        return ns, short, str(rng.exact)

    # -- installing --------------------------------------------------------------------------

    def install(self, spec: str, *, triple: str | None = None,
                progress: Progress | None = None) -> InstalledPack:
        """Resolve ``namespace/name@range``, download the variant for ``triple`` (default:
        this host's), verify it and cache it. Falls back to the cache when the registry is
        unreachable; ``offline=True`` uses only the cache."""
        ns, short, rng = parse_spec(spec)
        if triple is None:
            triple = host_triples()[0] if host_triples() else PORTABLE_TRIPLE
        if self.offline:
            return self._from_cache(ns, short, rng, triple, None)
        try:
            version = self.resolve(spec)
            meta = self.metadata(f"{ns}/{short}", version)
        except RegistryUnavailableError as exc:
            return self._from_cache(ns, short, rng, triple, exc)
        except RegistryHTTPError as exc:
            if exc.status < 500:
                raise
            return self._from_cache(ns, short, rng, triple, exc)
        served = (meta.get("namespace"), meta.get("name"), meta.get("version"))
        if served != (ns, short, version):
            raise RegistrySignatureError(
                f"asked the registry for {ns}/{short} {version}, it answered with "
                f"{served[0]}/{served[1]} {served[2]}: refusing a mixed-up pack",
                url=f"{self.url}/api/v1/packs/{ns}/{short}/{version}")
        return self._fetch(meta, triple, progress)

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
        full = f"{meta['namespace']}/{meta['name']}"
        try:
            manifest = base64.b64decode(meta["manifest_b64"], validate=True)
            sigs = parse_signatures(base64.b64decode(meta["signature_b64"], validate=True))
            signer = self.trust.verify(manifest, sigs, pack=f"{full} {meta['version']}")
            parsed = parse_manifest(manifest)
        except PackSignatureError as exc:
            raise RegistrySignatureError(f"{exc} (from {url})", key_id=exc.key_id,
                                         url=url) from exc
        except (PackFormatError, ValueError, KeyError) as exc:
            raise RegistrySignatureError(f"{full} {meta.get('version')}: the published "
                                         f"manifest or signature is unreadable: {exc}",
                                         url=url) from exc
        short_ok = "/" not in parsed.name and parsed.name == meta["name"]
        if (parsed.name != full and not short_ok) or parsed.version != meta["version"]:
            raise RegistrySignatureError(
                f"the registry served the signed manifest of {parsed.name} {parsed.version} "
                f"as {full} {meta['version']}: refusing a mixed-up pack", url=url)
        return manifest, signer

    def _fetch(self, meta: dict[str, Any], triple: str,
               progress: Progress | None) -> InstalledPack:
        ns, short, version = meta["namespace"], meta["name"], meta["version"]
        url = f"{self.url}/api/v1/packs/{ns}/{short}/{version}"
        manifest, signer = self._verify_meta(meta, url)
        variant = self._variant(meta, triple)
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
        self._download(f"/api/v1/packs/{ns}/{short}/{version}/download",
                       {} if variant == "full" else {"triple": variant}, part,
                       int(expect["size"]), f'"{expect["sha256"]}"', progress)
        self._check_file(part, expect, manifest, f"{url}/download")
        (d / "metadata.json").write_text(json.dumps(meta, sort_keys=True))
        os.replace(part, final)
        return InstalledPack(f"{ns}/{short}", version, variant, final, expect["sha256"],
                             signer, from_cache=False)

    def _check_expect(self, expect: Any, url: str) -> None:
        """The (unsigned) size and sha256 the registry publishes for a variant: sane, and
        the size within ``max_download``, before a byte is downloaded."""
        size = expect.get("size") if isinstance(expect, dict) else None
        sha = expect.get("sha256") if isinstance(expect, dict) else None
        if not isinstance(sha, str) or _SHA256.fullmatch(sha) is None:
            raise RegistryIntegrityError(
                f"{url}: the registry published {sha!r} as the sha256", what="sha256",
                expected="64 lowercase hex digits", actual=repr(sha)[:80], url=url)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RegistryIntegrityError(
                f"{url}: the registry published {size!r} as the size", what="size",
                expected="a byte count", actual=repr(size)[:80], url=url)
        if size > self.max_download:
            raise RegistryIntegrityError(
                f"{url}: the registry says the pack is {size} bytes, over this client's "
                f"limit of {self.max_download} (RegistryClient(max_download=...)); refusing "
                "to download it", what="size", expected=f"<= {self.max_download}",
                actual=str(size), url=url)

    def _download(self, path: str, params: dict[str, str], part: Path, size: int,
                  etag: str, progress: Progress | None) -> None:
        """Fill ``part`` with the file, resuming from what it already holds (the registry's
        ETag is the blob's sha256, so ``If-Range`` never splices two different files).

        Never writes past ``size``: a body longer than that stops the download with a
        RegistryIntegrityError (and deletes ``part``). A ``206`` whose ``Content-Range``
        does not start where ``part`` ends (or is for another length) is not appended:
        the download starts again from byte 0."""
        url = f"{self.url}{path}"
        for attempt in range(self.retries + 1):
            have = part.stat().st_size if part.exists() else 0
            if have > size:
                part.unlink()
                have = 0
            if have == size and size > 0:
                return
            resp = self._get_from(path, params, have, etag)
            try:
                if resp.status_code == 206 and not _resumes_at(resp, have, size):
                    resp.close()
                    part.unlink(missing_ok=True)
                    have = 0
                    resp = self._get_from(path, params, 0, etag)
                    if resp.status_code == 206 and not _resumes_at(resp, 0, size):
                        raise RegistryIntegrityError(
                            f"{url}: asked for the whole file, the registry answered 206 "
                            f"with Content-Range {resp.headers.get('content-range')!r}",
                            what="size", expected=f"bytes 0-{size - 1}/{size}",
                            actual=str(resp.headers.get("content-range"))[:80], url=url)
                mode = "ab" if resp.status_code == 206 else "wb"
                done = have if resp.status_code == 206 else 0
                with part.open(mode) as fh:
                    for chunk in resp.iter_bytes():
                        if done + len(chunk) > size:
                            fh.close()
                            part.unlink(missing_ok=True)
                            raise RegistryIntegrityError(
                                f"{url}: the download is longer than the {size} bytes the "
                                "registry published; stopped", what="size",
                                expected=str(size), actual=f">{size} ({done + len(chunk)} "
                                "so far)", url=url)
                        fh.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, size)
                return
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise RegistryUnavailableError(
                        f"GET {self.url}{path}: the download kept failing: {exc}",
                        url=f"{self.url}{path}") from exc
                self._sleep(self._delay(attempt))
            finally:
                resp.close()

    def _get_from(self, path: str, params: dict[str, str], have: int,
                  etag: str) -> httpx.Response:
        headers = {"Range": f"bytes={have}-", "If-Range": etag} if have else {}
        return self._send("GET", path, params=params, headers=headers, stream=True,
                          ok=(200, 206))

    def _check_file(self, path: Path, expect: dict[str, Any], manifest: bytes,
                    url: str) -> str:
        """Size, sha256, then the bundle itself against the signed manifest; return the
        signer. A file that fails is deleted."""
        try:
            size = path.stat().st_size
            if size != int(expect["size"]):
                raise RegistryIntegrityError(
                    f"{url}: downloaded {size} bytes, the registry published "
                    f"{expect['size']}", what="size", expected=str(expect["size"]),
                    actual=str(size), url=url)
            sha = _sha256_file(path)
            if sha != expect["sha256"]:
                raise RegistryIntegrityError(
                    f"{url}: sha256 of the download is {sha}, the registry published "
                    f"{expect['sha256']}", what="sha256", expected=expect["sha256"],
                    actual=sha, url=url)
            try:
                bundle = read_bundle(path)
            except PackIntegrityError as exc:
                raise RegistryIntegrityError(f"{url}: {exc}", what="sha256",
                                             expected=exc.expected, actual=exc.actual,
                                             url=url) from exc
            except PackFormatError as exc:
                raise RegistryIntegrityError(f"{url}: not a valid pack: {exc}", what="format",
                                             expected=".rflpack", actual="garbage",
                                             url=url) from exc
            if bundle.manifest_bytes != manifest:
                raise RegistrySignatureError(
                    f"{url}: the file's manifest is not the one its publisher signed", url=url)
            try:
                return self.trust.verify(bundle.manifest_bytes, bundle.signatures,
                                         pack=bundle.manifest.name)
            except PackSignatureError as exc:
                raise RegistrySignatureError(f"{url}: {exc}", key_id=exc.key_id,
                                             url=url) from exc
        except RegistryError:
            path.unlink(missing_ok=True)
            raise

    def _check_cached(self, d: Path, variant: str, *, from_cache: bool) -> InstalledPack:
        meta = json.loads((d / "metadata.json").read_text())
        url = f"cache:{d}"
        manifest, _ = self._verify_meta(meta, url)
        path = d / f"{variant}.rflpack"
        expect = meta["variants"][variant]
        signer = self._check_file(path, expect, manifest, url)
        return InstalledPack(f"{meta['namespace']}/{meta['name']}", meta["version"], variant,
                             path, expect["sha256"], signer, from_cache=from_cache)

    def _from_cache(self, ns: str, short: str, rng: VersionRange, triple: str,
                    cause: RegistryError | None) -> InstalledPack:
        base = self.cache / ns / short
        metas: dict[str, dict[str, Any]] = {}
        if base.is_dir():
            for d in base.iterdir():
                try:
                    meta = json.loads((d / "metadata.json").read_text())
                except (OSError, ValueError):
                    continue
                if (d / f"{self._variant(meta, triple)}.rflpack").is_file():
                    metas[meta["version"]] = meta
        found = pick_version(rng, metas, [v for v, m in metas.items() if m.get("yanked")])
        if found is None:
            why = f" ({cause})" if cause else ""
            raise RegistryUnavailableError(
                f"{'offline' if cause is None else 'the registry is unreachable'}, and no "
                f"cached version of {ns}/{short} matches {rng}{why}; cached: "
                f"{', '.join(sorted(metas)) or 'none'}", url=self.url) from cause
        meta = metas[found]
        return self._check_cached(self._dir(ns, short, found), self._variant(meta, triple),
                                  from_cache=True)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _resumes_at(resp: httpx.Response, offset: int, size: int) -> bool:
    """Whether a 206's ``Content-Range`` is ``bytes offset-(size-1)/size`` (the total may be
    ``*``): the rest of this file, from where the part file ends."""
    m = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
    return (m is not None and int(m[1]) == offset and int(m[2]) == size - 1
            and m[3] in ("*", str(size)))


def _no_match(ns: str, short: str, rng: VersionRange, versions: list[str],
              url: str) -> RegistryNotFoundError:
    return RegistryNotFoundError(
        f"no version of {ns}/{short} matches {rng}; published: "
        f"{', '.join(versions) or 'none'} (yanked versions need an exact pin)",
        status=404, code="no_matching_version", url=url)


def _http_error(method: str, url: str, resp: httpx.Response) -> RegistryHTTPError:
    code, message = f"http_{resp.status_code}", resp.reason_phrase
    try:
        err = resp.json()["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        pass
    text = f"{method} {url}: {resp.status_code} {code}: {message}"
    cls: type[RegistryHTTPError] = RegistryHTTPError
    if resp.status_code in (401, 403):
        cls = RegistryAuthError
    elif resp.status_code == 404:
        cls = RegistryNotFoundError
    return cls(text, status=resp.status_code, code=code, url=url)


def install_pack(spec: str, registry: str, **client_options: Any) -> InstalledPack:
    """Install ``namespace/name@range`` from ``registry`` (see :meth:`RegistryClient.install`);
    ``client_options`` go to :class:`RegistryClient` (``token``, ``trust``, ``cache_dir``,
    ``offline``, ``transport``, ...) except ``triple`` and ``progress``."""
    triple = client_options.pop("triple", None)
    progress = client_options.pop("progress", None)
    with RegistryClient(registry, **client_options) as client:
        return client.install(spec, triple=triple, progress=progress)
