"""The registry client (httpx): publish, search, resolve, install, yank.

``RegistryClient(url)`` talks to one registry. Tests inject ``transport=`` (the app
in-process, or a transport that fails on purpose).

What the client trusts, and why: the version list and search results are *hints*. What it
acts on is the pack's manifest and signature exactly as the publisher signed them: before a
download is written to the cache as usable, the client checks

1. the published manifest's signature against the local :class:`~reflow._loader._trust.TrustStore`
   (and that the signed manifest names the pack and version that was asked for — the full
   ``ns/name``, or exactly ``name`` for a pack named without a namespace — so a registry
   cannot pass one signed pack off as another);
2. the downloaded file's size and sha256 against the metadata (:class:`RegistryIntegrityError`
   — never raised for an HTTP error: a 404 is a :class:`RegistryNotFoundError`);
3. the file's own manifest bytes equal the signed ones, its signature verifies, and every
   member matches its hash in the manifest (``read_bundle``).

What a hostile or broken registry can cost, and the bound on it:

- time: each public call is one operation with a deadline (``deadline``, 600 s), and while
  bytes flow they must keep above ``min_rate`` bytes/s over every ``rate_window`` seconds
  (:mod:`._transport` enforces both on every socket read and write, so a server dripping a
  byte a second into the headers stops too);
- memory: every JSON answer is read as a stream and refused past ``max_metadata`` bytes
  (8 MiB) — nested too deeply, the wrong shape, or compressed although the client asked for
  ``identity``, it is a ``bad_response``; a download never passes the size the metadata
  declares, nor ``max_download``;
- retries: connection errors, timeouts, 429 and 5xx are retried with exponential backoff and
  jitter, each wait announced through ``notify`` (stderr by default). ``Retry-After`` is
  honoured up to ``max_retry_after`` (10 s); a longer one, or any wait past the deadline,
  ends the retries at once;
- error text: what the registry says is quoted at most ~200 characters, control and
  formatting characters escaped, so an error line stays one readable line.

When the registry cannot answer (unreachable, timeouts, 429, 5xx), the client answers from
its cache where it can — ``install`` from the verified packs it holds, ``search``,
``versions`` and ``metadata`` from the answers it last got (the *index* cache) — and says so
through ``notify`` with the age of what it used. ``offline=True`` never asks the network.
Every cached pack is verified again before it is returned.

A bearer token is never sent over plain ``http://`` to a host other than loopback unless the
client is made with ``insecure=True`` (``--insecure``): anyone on the path could read it.

Downloads go to ``<file>.part`` and resume with ``Range``/``If-Range`` after a dropped
connection. Errors from httpx are translated in :meth:`RegistryClient._retrying` and
chained.

The class is built in layers, each its own module: :mod:`._client_wire` (error answers,
quoting, constants), :mod:`._client_exchange` (one request retried, JSON answers, the index
cache), :mod:`._client_cache` (downloads and the verified pack cache), :mod:`._client_signed`
(installing from and signing the TUF metadata); this module holds the public calls (search,
versions, metadata, resolve, publish, yank, install).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import httpx

from .._errors import (
    PackFormatError,
    RegistryError,
    RegistryHTTPError,
    RegistryNotFoundError,
    RegistrySignatureError,
)
from .._loader._trust import TrustStore
from ..abi._bundle import read_bundle
from ..abi._manifest import PORTABLE_TRIPLE, host_triples
from ._client_cache import InstalledPack
from ._client_signed import _SignedClient
from ._client_wire import (
    CHUNK,
    DEFAULT_DEADLINE,
    DEFAULT_MAX_DOWNLOAD,
    DEFAULT_MAX_METADATA,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_MIN_RATE,
    DEFAULT_RATE_WINDOW,
    TOKEN_HINT,
    Notify,
    Progress,
    clean,
    falls_back,
    is_loopback,
    no_match,
    sha256_file,
    stderr_line,
)
from ._names import is_valid_name
from ._semver import RegistrySpecError, VersionRange, parse_spec, pick_version, precedence
from ._transport import Pace, PacedTransport
from ._tuf_client import TrustedMetadata
from ._variants import variant_digests

__all__ = [
    "InstalledPack",
    "Progress",
    "RegistryClient",
    "default_cache_dir",
    "install_pack",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")


def default_cache_dir() -> Path:
    """``$REFLOW_CACHE_DIR/registry``, else ``~/.cache/reflow/registry``."""
    env = os.environ.get("REFLOW_CACHE_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "reflow"
    return base / "registry"


def _operation(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """A public call of the client: one deadline for everything it does."""

    @functools.wraps(method)
    def bounded(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        self = args[0]
        assert isinstance(self, RegistryClient)
        with self._pace.operation():
            return method(*args, **kwargs)

    return bounded


class RegistryClient(_SignedClient):
    """A client for one registry at ``url``. Close it (or use ``with``) when done.

    ``token``: bearer token (default ``$REFLOW_REGISTRY_TOKEN``); refused for a plain
    ``http://`` registry that is not on loopback unless ``insecure=True``. ``trust``: the
    trust store downloads are verified against. ``cache_dir``: where verified packs (and the
    last answers to searches and version lists) are kept. ``offline``: never use the
    network, answer from the cache. ``retries``/``backoff``/``max_backoff``: attempts after
    the first, the base delay and the longest delay in seconds; ``max_retry_after``: the
    longest ``Retry-After`` it waits (a longer one ends the retries). ``timeout``: for one
    socket read or write. ``deadline``: seconds one public call may take in all, retries
    included; ``min_rate``/``rate_window``: while bytes flow, at least ``min_rate`` bytes/s
    over every ``rate_window`` seconds. ``max_metadata``: the largest JSON answer, in bytes.
    ``max_download``: the largest pack file it downloads, in bytes (the size a registry
    publishes is not signed; a bigger one is refused before any byte is fetched, and no
    download is ever written past the published size). ``notify``: called with one line
    for each retry wait and each answer taken from the cache (default: printed on stderr;
    None: silent). ``sleep`` is injectable for tests.
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
        insecure: bool = False,
        retries: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        timeout: float = 60.0,
        deadline: float = DEFAULT_DEADLINE,
        min_rate: float = DEFAULT_MIN_RATE,
        rate_window: float = DEFAULT_RATE_WINDOW,
        max_metadata: int = DEFAULT_MAX_METADATA,
        max_download: int = DEFAULT_MAX_DOWNLOAD,
        notify: Notify | None = stderr_line,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.max_download = max_download
        self.max_metadata = max_metadata
        try:
            parsed = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            raise RegistrySpecError(f"{url!r} is not a registry URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise RegistrySpecError(f"{url!r} is not a registry URL (e.g. http://127.0.0.1:8700)")
        for label, value, least in (
            ("deadline", deadline, 0),
            ("timeout", timeout, 0),
            ("rate_window", rate_window, 0),
            ("min_rate", min_rate, -1),
            ("backoff", backoff, -1),
            ("max_backoff", max_backoff, -1),
            ("max_retry_after", max_retry_after, -1),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= least
                or value < 0
            ):
                raise RegistrySpecError(
                    f"RegistryClient({label}=...) must be a finite number "
                    f"{'above' if least == 0 else 'of at least'} 0, not {value!r}"
                )
        for label, count in (
            ("retries", retries),
            ("max_metadata", max_metadata),
            ("max_download", max_download),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise RegistrySpecError(
                    f"RegistryClient({label}=...) must be a whole number >= 0, not {count!r}"
                )
        token = token if token is not None else os.environ.get("REFLOW_REGISTRY_TOKEN")
        if token and parsed.scheme == "http" and not is_loopback(parsed.host) and not insecure:
            raise RegistrySpecError(
                f"refusing to send the registry token to {self.url} over plain http: anyone "
                "on the way could read it and act as you. Use the registry's https:// URL, "
                "or pass --insecure (RegistryClient(insecure=True)) on a network you trust"
            )
        headers = {"User-Agent": "reflow-registry-client/1", "Accept-Encoding": "identity"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.has_token = bool(token)
        self.insecure = insecure
        self._pace = Pace(float(deadline), float(min_rate), float(rate_window))
        self._http: httpx.Client | None = httpx.Client(
            base_url=self.url,
            headers=headers,
            transport=transport if transport is not None else PacedTransport(self._pace),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )
        self.trust = trust if isinstance(trust, TrustStore) else TrustStore(trust)
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        parts = urlsplit(self.url)
        site = (parts.netloc + parts.path).replace(":", "_").replace("/", "+").strip("+")
        self.cache = root / (site or "default")
        #: The registry's signed metadata this client verified (TUF); used for every
        #: version list, range and download once a root is pinned (:meth:`pin_root`).
        self.tuf = TrustedMetadata(self)
        self.offline = offline
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._notify = notify
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"RegistryClient({self.url!r})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pin_root(self, root_json: bytes, *, replace: bool = False) -> dict[str, Any]:
        """Trust the registry's root metadata ``root_json`` (from its operator, never from
        the network) from now on: versions, yanks and downloads are then checked against
        the signed metadata (``reflow-pack registry add URL --root root.json``)."""
        md = self.tuf.pin(root_json, replace=replace)
        return {
            "url": self.url,
            "root_version": md.signed.version,
            "expires": md.signed.expires.isoformat(),
            "keys": sorted(md.signed.roles["root"].keyids),
        }

    # -- queries -----------------------------------------------------------------------------

    @_operation
    def search(self, query: str = "", *, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """Packs whose name, description or templates contain ``query`` (hints, unsigned)."""
        path = "/api/v1/search"
        doc = self._json(
            "GET", path, cache=True, params={"q": query, "limit": str(limit), "offset": str(offset)}
        )
        results = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(results, list) or not all(
            isinstance(r, dict)
            and all(isinstance(r.get(k), str) for k in ("full_name", "version", "description"))
            for r in results
        ):
            raise self._shape(
                "GET", path, "search results (full_name, version, description of each)"
            )
        return [dict(r) for r in results]

    @_operation
    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``namespace/name`` (with yanked flags), oldest first."""
        ns, short, _ = parse_spec(name)
        if self.tuf.pinned:
            listed, yanked = self._signed(ns, short)
            return [
                {"version": v, "yanked": v in yanked}
                for v in sorted(listed, key=lambda v: precedence(v) or ())
            ]
        return self._versions(ns, short, cache=True)

    def _versions(self, ns: str, short: str, *, cache: bool) -> list[dict[str, Any]]:
        path = f"/api/v1/packs/{ns}/{short}"
        doc = self._json("GET", path, cache=cache, ns=ns)
        listed = doc.get("versions") if isinstance(doc, dict) else None
        if not isinstance(listed, list) or not all(
            isinstance(v, dict)
            and isinstance(v.get("version"), str)
            and isinstance(v.get("yanked"), bool)
            for v in listed
        ):
            raise self._shape("GET", path, "a version list (version and yanked of each)")
        return [dict(v) for v in listed]

    @_operation
    def metadata(self, name: str, version: str) -> dict[str, Any]:
        ns, short, _ = parse_spec(name)
        return self._metadata(ns, short, version, cache=True)

    @_operation
    def whoami(self) -> dict[str, Any]:
        """What the registry knows about this client's token: ``token_id``, ``namespace``
        (``*`` for every namespace), ``scope``, ``label``, ``expires_at``."""
        doc = self._json("GET", "/api/v1/token", scope="any")
        if not isinstance(doc, dict):
            raise self._shape("GET", "/api/v1/token", "a token description")
        return dict(doc)

    @_operation
    def resolve(self, spec: str) -> str:
        """The version ``namespace/name@range`` resolves to on the registry."""
        ns, short, rng = parse_spec(spec)
        return self._resolve(ns, short, rng, cache=True)

    def _resolve(self, ns: str, short: str, rng: VersionRange, *, cache: bool) -> str:
        if self.tuf.pinned:
            signed, yanked = self._signed(ns, short)
            found = pick_version(rng, list(signed), yanked)
            if found is None:
                raise no_match(
                    ns, short, rng, list(signed), f"{self.url}/tuf (signed targets)", signed=True
                )
            return found
        listed = self._versions(ns, short, cache=cache)
        found = pick_version(
            rng, [v["version"] for v in listed], [v["version"] for v in listed if v["yanked"]]
        )
        if found is None:
            raise no_match(
                ns,
                short,
                rng,
                [v["version"] for v in listed],
                f"{self.url}/api/v1/packs/{ns}/{short}",
            )
        return found

    # -- publishing --------------------------------------------------------------------------

    @_operation
    def publish(
        self,
        path: str | os.PathLike[str],
        *,
        namespace: str | None = None,
        progress: Progress | None = None,
        key: Any = None,
    ) -> dict[str, Any]:
        """Upload a full ``.rflpack``; returns the published version's metadata. Publishing
        the identical file again is not an error (a retried upload may have landed): the answer
        then has ``"unchanged": True``.

        A pack named ``ns/name`` goes to ``ns`` (``namespace``, if given, must agree). A pack
        named without a namespace (``my-pack``, as ``reflow-pack new`` makes it) goes to
        ``namespace``, else to the namespace of the token (:meth:`whoami`); a token for
        every namespace (``*``) needs ``namespace``.

        On a registry whose root is pinned, ``key`` (the publisher's ed25519 private key,
        or its PEM file) signs the namespace's new targets metadata, uploaded after the
        pack: only then do clients see the version."""
        p = Path(path)
        try:
            head = read_bundle(p, head_only=True)
        except PackFormatError as exc:
            raise RegistryError(f"{p} is not a publishable pack: {exc}") from exc
        ns, short = self.publish_target(head.manifest.name, namespace)
        version = head.manifest.version
        signing = self._signing_key(key)
        digests = variant_digests(p) if signing is not None else {}
        size = p.stat().st_size
        sha = sha256_file(p)

        def body() -> Iterator[bytes]:
            done = 0
            with p.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    self._pace.check_deadline()
                    done += len(chunk)
                    if progress is not None:
                        progress(done, size)
                    yield chunk

        route = f"/api/v1/packs/{ns}/{short}/{version}"
        try:
            doc = self._json(
                "PUT",
                route,
                content=body,
                ok=(200, 201),
                scope="publish",
                ns=ns,
                headers={
                    "Content-Type": "application/vnd.reflow.rflpack",
                    "Content-Length": str(size),
                },
            )
        except RegistryHTTPError as exc:
            if exc.code != "version_exists":
                raise
            existing = self._metadata(ns, short, version, cache=False)
            if existing.get("sha256") != sha:
                raise
            doc = {**self._check_meta("GET", route, existing, published=True), "unchanged": True}
        checked = self._check_meta("PUT", route, doc, published=True)
        if isinstance(doc, dict) and doc.get("unchanged") is True:  # 200: identical re-publish
            checked = {**checked, "unchanged": True}
        if signing is not None:
            checked["metadata_version"] = self._sign_release(
                ns, short, version, digests, checked, signing
            )
        return checked

    def publish_target(self, pack_name: str, namespace: str | None = None) -> tuple[str, str]:
        """``(namespace, name)`` a pack whose manifest says ``pack_name`` is published as
        (see :meth:`publish`)."""
        if namespace is not None and not is_valid_name(namespace):
            raise RegistrySpecError(
                f"{namespace!r} is not a valid namespace (lowercase letters, digits and ._-, "
                "starting with a letter or digit)"
            )
        if "/" in pack_name:
            ns, short, _ = parse_spec(pack_name)
            if namespace is not None and namespace != ns:
                raise RegistrySpecError(
                    f"the pack is named {pack_name!r}, so it is published in namespace "
                    f"{ns!r}, not {namespace!r}; drop --namespace or rename the pack"
                )
            return ns, short
        if not is_valid_name(pack_name):
            raise RegistrySpecError(f"{pack_name!r} is not a valid pack name")
        if namespace is not None:
            return namespace, pack_name
        if not self.has_token:
            raise RegistrySpecError(
                f"the pack is named {pack_name!r}, without a namespace: pass --namespace NS "
                f"(and a publish token: {TOKEN_HINT})"
            )
        try:
            token_ns = self.whoami()["namespace"]
        except RegistryNotFoundError as exc:
            raise RegistrySpecError(
                f"the pack is named {pack_name!r}, without a namespace, and this registry "
                "does not say which namespace the token is for: pass --namespace NS"
            ) from exc
        except KeyError as exc:
            raise self._shape("GET", "/api/v1/token", "a token description") from exc
        if token_ns == "*":
            raise RegistrySpecError(
                f"the pack is named {pack_name!r}, without a namespace, and the token is for "
                "every namespace ('*'): pass --namespace NS to choose one"
            )
        if not isinstance(token_ns, str) or not is_valid_name(token_ns):
            raise self._shape("GET", "/api/v1/token", "a token description with a valid namespace")
        return token_ns, pack_name

    @_operation
    def yank(self, spec: str, reason: str = "", *, key: Any = None) -> dict[str, Any]:
        """Withdraw ``namespace/name@version``: ranges skip it; exact pins still install.
        On a registry with a pinned root the yank is signed with ``key`` (see publish)."""
        ns, short, version = self._exact(spec)
        signing = self._signing_key(key)
        if signing is not None:
            return self._signed_yank(ns, short, version, True, reason, signing)
        path = f"/api/v1/packs/{ns}/{short}/{version}/yank"
        return self._check_yank(
            "POST",
            path,
            self._json(
                "POST",
                path,
                content=lambda: json.dumps({"reason": reason}).encode(),
                headers={"Content-Type": "application/json"},
                scope="publish",
                ns=ns,
            ),
        )

    @_operation
    def unyank(self, spec: str, *, key: Any = None) -> dict[str, Any]:
        ns, short, version = self._exact(spec)
        signing = self._signing_key(key)
        if signing is not None:
            return self._signed_yank(ns, short, version, False, "", signing)
        path = f"/api/v1/packs/{ns}/{short}/{version}/yank"
        return self._check_yank("DELETE", path, self._json("DELETE", path, scope="publish", ns=ns))

    def _check_yank(self, method: str, path: str, doc: Any) -> dict[str, Any]:
        if not (
            isinstance(doc, dict)
            and isinstance(doc.get("yanked"), bool)
            and isinstance(doc.get("full_name"), str)
            and isinstance(doc.get("version"), str)
        ):
            raise self._shape(method, path, "a yank state (full_name, version, yanked)")
        return dict(doc)

    @staticmethod
    def _exact(spec: str) -> tuple[str, str, str]:
        ns, short, rng = parse_spec(spec)
        if rng.exact is None:
            raise RegistrySpecError(f"{spec!r}: name one exact version, e.g. {ns}/{short}@1.2.0")
        return ns, short, str(rng.exact)

    # -- installing --------------------------------------------------------------------------

    @_operation
    def install(
        self, spec: str, *, triple: str | None = None, progress: Progress | None = None
    ) -> InstalledPack:
        """Resolve ``namespace/name@range``, download the variant for ``triple`` (default:
        this host's), verify it and cache it. When the registry cannot answer (unreachable,
        timeouts, 429, 5xx) a verified cached version that satisfies the range answers
        instead, and ``notify`` says so; ``offline=True`` uses only the cache."""
        ns, short, rng = parse_spec(spec)
        if triple is None:
            triple = host_triples()[0] if host_triples() else PORTABLE_TRIPLE
        if self.tuf.pinned:
            return self._install_signed(ns, short, rng, triple, progress)
        if self.offline:
            return self._from_cache(ns, short, rng, triple, None)
        try:
            version = self._resolve(ns, short, rng, cache=False)
            meta = self._metadata(ns, short, version, cache=False)
            served = (meta["namespace"], meta["name"], meta["version"])
            if served != (ns, short, version):
                raise RegistrySignatureError(
                    f"asked the registry for {ns}/{short} {version}, it answered with "
                    f"{clean(served[0], 64)}/{clean(served[1], 64)} {clean(served[2], 64)}:"
                    " refusing a mixed-up pack",
                    url=f"{self.url}/api/v1/packs/{ns}/{short}/{version}",
                )
            return self._fetch(meta, triple, progress)
        except RegistryError as exc:
            if not falls_back(exc):
                raise
            return self._from_cache(ns, short, rng, triple, exc)


def install_pack(spec: str, registry: str, **client_options: Any) -> InstalledPack:
    """Install ``namespace/name@range`` from ``registry`` (see :meth:`RegistryClient.install`);
    ``client_options`` go to :class:`RegistryClient` (``token``, ``trust``, ``cache_dir``,
    ``offline``, ``insecure``, ``deadline``, ``transport``, ...) except ``triple`` and
    ``progress``."""
    triple = client_options.pop("triple", None)
    progress = client_options.pop("progress", None)
    with RegistryClient(registry, **client_options) as client:
        return client.install(spec, triple=triple, progress=progress)
