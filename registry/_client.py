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
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import functools
import hashlib
import ipaddress
import json
import math
import os
import random
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
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
from .._loader._trust import TrustStore
from ..abi._bundle import BundleLimits, read_bundle
from ..abi._manifest import PORTABLE_TRIPLE, host_triples, parse_manifest
from ..abi._signing import parse_signatures
from ._names import is_valid_name
from ._semver import RegistrySpecError, VersionRange, parse_spec, pick_version
from ._transport import DeadlineExceeded, Pace, PacedTransport

__all__ = [
    "InstalledPack",
    "Progress",
    "RegistryClient",
    "default_cache_dir",
    "install_pack",
]

#: ``progress(done_bytes, total_bytes_or_None)``, called as a transfer advances.
Progress = Callable[[int, "int | None"], None]
#: ``notify(line)``: what the client tells its user while it works (retries, cache answers).
Notify = Callable[[str], None]
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_CHUNK = 1 << 20
#: The largest pack ``install`` downloads unless told otherwise: what ``read_bundle`` would
#: accept anyway. The size in the version metadata is the registry's word, not signed.
DEFAULT_MAX_DOWNLOAD = BundleLimits().max_total
#: The largest JSON answer: a version's metadata carries its manifest (at most 1 MiB, as
#: base64) and signature; a version list of thousands of versions is well under it.
DEFAULT_MAX_METADATA = 8 << 20
DEFAULT_DEADLINE = 600.0
DEFAULT_MIN_RATE = 1024.0
DEFAULT_RATE_WINDOW = 10.0
DEFAULT_MAX_RETRY_AFTER = 10.0
#: How much of an error answer is read (to find its code and message); the rest is dropped.
_ERROR_BODY = 1 << 20
#: How many characters of anything the registry said an error message quotes.
_QUOTE = 200
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)")
_TOKEN_HINT = "pass --token TOKEN or set $REFLOW_REGISTRY_TOKEN"
_INDEX = "_index"  # never a namespace: names start with a letter or digit

_P = ParamSpec("_P")
_T = TypeVar("_T")


def default_cache_dir() -> Path:
    """``$REFLOW_CACHE_DIR/registry``, else ``~/.cache/reflow/registry``."""
    env = os.environ.get("REFLOW_CACHE_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "reflow"
    return base / "registry"


def _stderr(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # a broken stderr fails nothing
        print(line, file=sys.stderr, flush=True)


def _clean(text: object, limit: int = _QUOTE) -> str:
    """``text`` fit for one error line: control and formatting characters (escape
    sequences, bidi overrides, newlines) escaped, at most ``limit`` characters."""
    s = str(text)
    over = len(s) - limit
    if over > 0:
        s = s[:limit]
    out = "".join(ch if unicodedata.category(ch)[0] != "C" and ch not in "\u2028\u2029"
                  else ch.encode("unicode_escape").decode("ascii") for ch in s)
    return f"{out}… ({over} more characters)" if over > 0 else out


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _falls_back(exc: RegistryError) -> bool:
    """Whether the cache may answer instead: the registry could not, not 'no'."""
    if isinstance(exc, RegistryUnavailableError):
        return True
    return isinstance(exc, RegistryHTTPError) and (exc.status == 429 or exc.status >= 500)


def _operation(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """A public call of the client: one deadline for everything it does."""

    @functools.wraps(method)
    def bounded(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        self = args[0]
        assert isinstance(self, RegistryClient)
        with self._pace.operation():
            return method(*args, **kwargs)

    return bounded


class _Retry(Exception):
    """An answer worth asking again for (429, 5xx): the error it would be, and how long the
    registry asked to wait (None: it did not say)."""

    def __init__(self, error: RegistryHTTPError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


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
        notify: Notify | None = _stderr,
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
            raise RegistrySpecError(
                f"{url!r} is not a registry URL (e.g. http://127.0.0.1:8700)")
        for label, value, least in (
                ("deadline", deadline, 0), ("timeout", timeout, 0), ("rate_window", rate_window, 0),
                ("min_rate", min_rate, -1), ("backoff", backoff, -1),
                ("max_backoff", max_backoff, -1), ("max_retry_after", max_retry_after, -1)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value <= least or value < 0:
                raise RegistrySpecError(
                    f"RegistryClient({label}=...) must be a finite number "
                    f"{'above' if least == 0 else 'of at least'} 0, not {value!r}")
        for label, count in (("retries", retries), ("max_metadata", max_metadata),
                             ("max_download", max_download)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise RegistrySpecError(
                    f"RegistryClient({label}=...) must be a whole number >= 0, not {count!r}")
        token = token if token is not None else os.environ.get("REFLOW_REGISTRY_TOKEN")
        if token and parsed.scheme == "http" and not _is_loopback(parsed.host) \
                and not insecure:
            raise RegistrySpecError(
                f"refusing to send the registry token to {self.url} over plain http: anyone "
                "on the way could read it and act as you. Use the registry's https:// URL, "
                "or pass --insecure (RegistryClient(insecure=True)) on a network you trust")
        headers = {"User-Agent": "reflow-registry-client/1", "Accept-Encoding": "identity"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.has_token = bool(token)
        self.insecure = insecure
        self._pace = Pace(float(deadline), float(min_rate), float(rate_window))
        self._http: httpx.Client | None = httpx.Client(
            base_url=self.url, headers=headers,
            transport=transport if transport is not None else PacedTransport(self._pace),
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
        self.max_retry_after = max_retry_after
        self._notify = notify
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

    def _note(self, line: str) -> None:
        if self._notify is not None:
            self._notify(line)

    # -- transport: the one boundary where httpx errors become ours --------------------------

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff * 2 ** attempt * (0.5 + random.random()), self.max_backoff)

    @staticmethod
    def _retry_after(resp: httpx.Response) -> float | None:
        """The wait ``Retry-After`` asks for, in seconds (None when absent or unreadable)."""
        value = resp.headers.get("retry-after", "").strip()
        if not value:
            return None
        if value.isascii() and value.isdigit():
            return float(value[:12]) if len(value) <= 12 else math.inf
        try:
            wait = float(value)
        except ValueError:
            try:
                wait = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, OverflowError, IndexError):
                return None
        return max(wait, 0.0) if math.isfinite(wait) else None

    def _retrying(self, method: str, path: str, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt`` (one request and the reading of its answer) until it succeeds,
        retrying connection errors, timeouts, 429 and 5xx with backoff, within the
        operation's deadline. Every wait is announced; a wait the deadline (or
        ``max_retry_after``) does not allow ends the retries with the last error."""
        url = f"{self.url}{path}"
        attempts = self.retries + 1
        for n in range(attempts):
            last = n == self.retries
            if (left := self._pace.left()) is not None and left <= 0:
                raise RegistryUnavailableError(
                    f"{method} {url}: no answer within the {self._pace.deadline:g} s deadline "
                    "(RegistryClient(deadline=...))", url=url)
            try:
                return attempt()
            except DeadlineExceeded as exc:
                raise RegistryUnavailableError(f"{method} {url}: {exc}", url=url) from exc
            except httpx.TransportError as exc:
                error: RegistryError = RegistryUnavailableError(
                    f"{method} {url}: cannot reach the registry after {n + 1} attempt"
                    f"{'s' if n else ''}: {type(exc).__name__}: {_clean(exc)}", url=url)
                if last:
                    raise error from exc
                why = f"cannot reach the registry ({type(exc).__name__}: {_clean(exc, 80)})"
                wait = self._backoff(n)
                cause: BaseException = exc
            except _Retry as r:
                if r.retry_after is not None and r.retry_after > self.max_retry_after:
                    raise RegistryHTTPError(
                        f"{r.error}; it asks to retry after {r.retry_after:g} s, longer than "
                        f"this client waits ({self.max_retry_after:g} s, "
                        "RegistryClient(max_retry_after=...))", status=r.error.status,
                        code=r.error.code, url=url) from None
                if last:
                    raise r.error from None
                error, cause = r.error, r.error
                why = f"the registry answered {r.error.status} to {method} {path}"
                wait = self._backoff(n) if r.retry_after is None else r.retry_after
            left = self._pace.left()
            if left is not None and wait >= left:
                raise RegistryUnavailableError(
                    f"{error}; not retrying: waiting {wait:.1f} s would pass the "
                    f"{self._pace.deadline:g} s deadline (RegistryClient(deadline=...))",
                    url=url) from cause
            self._note(f"{why}; retrying in {wait:.1f} s (attempt {n + 2} of {attempts})")
            self._sleep(wait)
        raise AssertionError("unreachable")

    def _exchange(
        self, method: str, path: str, *, content: Callable[[], Any] | None = None,
        headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,), scope: str = "read", ns: str | None = None,
    ) -> httpx.Response:
        """One request; its answer streamed (the caller reads and closes it). 429/5xx raise
        :class:`_Retry`, any other status outside ``ok`` its RegistryHTTPError."""
        self._pace.new_exchange()
        req = self.http.build_request(method, path, headers=headers, params=params,
                                      content=content() if content else None)
        resp = self.http.send(req, stream=True)
        if resp.status_code in ok:
            return resp
        try:
            error = _http_error(method, f"{self.url}{path}", resp, _read_some(resp),
                                scope=scope, ns=ns, has_token=self.has_token)
        finally:
            resp.close()
        if resp.status_code in _RETRY_STATUS:
            raise _Retry(error, self._retry_after(resp))
        raise error

    def _read_json(self, method: str, path: str, resp: httpx.Response) -> Any:
        """The answer's JSON, read as a stream and refused past ``max_metadata`` bytes."""
        url = f"{self.url}{path}"

        def bad(why: str, code: str = "bad_response") -> RegistryHTTPError:
            return RegistryHTTPError(f"{method} {url}: {why}", status=resp.status_code,
                                     code=code, url=url)

        cap = self.max_metadata
        try:
            encoding = resp.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise bad(f"the registry sent a {_clean(encoding, 40)!r}-encoded answer, "
                          "although the client asked for 'identity'")
            declared = resp.headers.get("content-length", "").strip()
            if declared.isascii() and declared.isdigit() and (
                    len(declared) > 19 or int(declared) > cap):
                raise bad(f"the registry announces a {_clean(declared, 24)}-byte answer, over "
                          f"the {cap}-byte limit for metadata "
                          "(RegistryClient(max_metadata=...)); not reading it", "too_large")
            body = bytearray()
            for chunk in _raw(resp):
                body += chunk
                if len(body) > cap:
                    raise bad(f"the answer passed the {cap}-byte limit for metadata "
                              "(RegistryClient(max_metadata=...)); stopped reading it",
                              "too_large")
                self._pace.check_deadline()
        finally:
            resp.close()
        try:
            return json.loads(bytes(body))
        except RecursionError:
            raise bad("the registry answered with JSON nested too deeply") from None
        except ValueError as exc:
            raise bad(f"the registry answered with something that is not JSON "
                      f"({_clean(exc, 80)})") from None

    def _json(self, method: str, path: str, *, cache: bool = False, **kw: Any) -> Any:
        """``method path`` answered with JSON, retried. ``cache``: keep the answer in the
        index cache, and answer from it (saying so) when the registry cannot."""
        key = _index_key(path, kw.get("params"))
        try:
            doc = self._retrying(method, path, lambda: self._read_json(
                method, path, self._exchange(method, path, **kw)))
        except RegistryError as exc:
            if not cache or not _falls_back(exc):
                raise
            hit = self._index_get(key)
            if hit is None:
                raise
            doc, age = hit
            self._note(f"{_why(exc)} ({exc}); using cached index from {_age(age)} ago")
            return doc
        if cache:
            self._index_put(key, doc)
        return doc

    # -- the index cache: the last answer to each search and version list -----------------------

    def _index_get(self, key: str) -> tuple[Any, float] | None:
        path = self.cache / _INDEX / f"{key}.json"
        try:
            if path.stat().st_size > self.max_metadata:
                return None
            return json.loads(path.read_bytes()), time.time() - path.stat().st_mtime
        except (OSError, ValueError, RecursionError):
            return None

    def _index_put(self, key: str, doc: Any) -> None:
        path = self.cache / _INDEX / f"{key}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except (OSError, ValueError, RecursionError):
            pass  # the index cache is a convenience: failing to keep it fails nothing

    # -- queries -----------------------------------------------------------------------------

    @_operation
    def search(self, query: str = "", *, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """Packs whose name, description or templates contain ``query`` (hints, unsigned)."""
        path = "/api/v1/search"
        doc = self._json("GET", path, cache=True,
                         params={"q": query, "limit": str(limit), "offset": str(offset)})
        results = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(results, list) or not all(
                isinstance(r, dict) and all(isinstance(r.get(k), str)
                                            for k in ("full_name", "version", "description"))
                for r in results):
            raise self._shape("GET", path, "search results (full_name, version, "
                              "description of each)")
        return [dict(r) for r in results]

    @_operation
    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``namespace/name`` (with yanked flags), oldest first."""
        ns, short, _ = parse_spec(name)
        return self._versions(ns, short, cache=True)

    def _versions(self, ns: str, short: str, *, cache: bool) -> list[dict[str, Any]]:
        path = f"/api/v1/packs/{ns}/{short}"
        doc = self._json("GET", path, cache=cache, ns=ns)
        listed = doc.get("versions") if isinstance(doc, dict) else None
        if not isinstance(listed, list) or not all(
                isinstance(v, dict) and isinstance(v.get("version"), str)
                and isinstance(v.get("yanked"), bool) for v in listed):
            raise self._shape("GET", path, "a version list (version and yanked of each)")
        return [dict(v) for v in listed]

    @_operation
    def metadata(self, name: str, version: str) -> dict[str, Any]:
        ns, short, _ = parse_spec(name)
        return self._metadata(ns, short, version, cache=True)

    def _metadata(self, ns: str, short: str, version: str, *, cache: bool) -> dict[str, Any]:
        path = f"/api/v1/packs/{ns}/{short}/{version}"
        return self._check_meta("GET", path, self._json("GET", path, cache=cache, ns=ns))

    def _check_meta(self, method: str, path: str, doc: Any, *,
                    published: bool = False) -> dict[str, Any]:
        """A version's metadata with the fields the client uses, of the types it uses
        (``published``: also those a publish reports)."""
        strings = ("namespace", "name", "version", "manifest_b64", "signature_b64") + (
            ("full_name", "key_id") if published else ())
        if not (isinstance(doc, dict)
                and all(isinstance(doc.get(k), str) for k in strings)
                and (not published or isinstance(doc.get("size"), int))
                and isinstance(doc.get("yanked", False), bool)
                and isinstance(doc.get("variants"), dict)
                and all(isinstance(k, str) and isinstance(v, dict)
                        for k, v in doc["variants"].items())):
            raise self._shape(method, path, "version metadata (namespace, name, version, "
                              "manifest_b64, signature_b64, variants, ...)")
        return dict(doc)

    def _shape(self, method: str, path: str, expected: str) -> RegistryHTTPError:
        url = f"{self.url}{path}"
        return RegistryHTTPError(f"{method} {url}: the registry's answer is not {expected}",
                                 status=200, code="bad_response", url=url)

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
        listed = self._versions(ns, short, cache=cache)
        found = pick_version(rng, [v["version"] for v in listed],
                             [v["version"] for v in listed if v["yanked"]])
        if found is None:
            raise _no_match(ns, short, rng, [v["version"] for v in listed],
                            f"{self.url}/api/v1/packs/{ns}/{short}")
        return found

    # -- publishing --------------------------------------------------------------------------

    @_operation
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
                    self._pace.check_deadline()
                    done += len(chunk)
                    if progress is not None:
                        progress(done, size)
                    yield chunk

        route = f"/api/v1/packs/{ns}/{short}/{version}"
        try:
            doc = self._json("PUT", route, content=body, ok=(200, 201), scope="publish",
                             ns=ns, headers={"Content-Type": "application/vnd.reflow.rflpack",
                                             "Content-Length": str(size)})
        except RegistryHTTPError as exc:
            if exc.code != "version_exists":
                raise
            existing = self._metadata(ns, short, version, cache=False)
            if existing.get("sha256") != sha:
                raise
            return {**self._check_meta("GET", route, existing, published=True),
                    "unchanged": True}
        checked = self._check_meta("PUT", route, doc, published=True)
        if isinstance(doc, dict) and doc.get("unchanged") is True:  # 200: identical re-publish
            checked = {**checked, "unchanged": True}
        return checked

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
                f"(and a publish token: {_TOKEN_HINT})")
        try:
            token_ns = self.whoami()["namespace"]
        except RegistryNotFoundError as exc:
            raise RegistrySpecError(
                f"the pack is named {pack_name!r}, without a namespace, and this registry "
                "does not say which namespace the token is for: pass --namespace NS") from exc
        except KeyError as exc:
            raise self._shape("GET", "/api/v1/token", "a token description") from exc
        if token_ns == "*":
            raise RegistrySpecError(
                f"the pack is named {pack_name!r}, without a namespace, and the token is for "
                "every namespace ('*'): pass --namespace NS to choose one")
        if not isinstance(token_ns, str) or not is_valid_name(token_ns):
            raise self._shape("GET", "/api/v1/token", "a token description with a valid "
                              "namespace")
        return token_ns, pack_name

    @_operation
    def yank(self, spec: str, reason: str = "") -> dict[str, Any]:
        """Withdraw ``namespace/name@version``: ranges skip it; exact pins still install."""
        ns, short, version = self._exact(spec)
        path = f"/api/v1/packs/{ns}/{short}/{version}/yank"
        return self._check_yank("POST", path, self._json(
            "POST", path, content=lambda: json.dumps({"reason": reason}).encode(),
            headers={"Content-Type": "application/json"}, scope="publish", ns=ns))

    @_operation
    def unyank(self, spec: str) -> dict[str, Any]:
        ns, short, version = self._exact(spec)
        path = f"/api/v1/packs/{ns}/{short}/{version}/yank"
        return self._check_yank("DELETE", path,
                                self._json("DELETE", path, scope="publish", ns=ns))

    def _check_yank(self, method: str, path: str, doc: Any) -> dict[str, Any]:
        if not (isinstance(doc, dict) and isinstance(doc.get("yanked"), bool)
                and isinstance(doc.get("full_name"), str)
                and isinstance(doc.get("version"), str)):
            raise self._shape(method, path, "a yank state (full_name, version, yanked)")
        return dict(doc)

    @staticmethod
    def _exact(spec: str) -> tuple[str, str, str]:
        ns, short, rng = parse_spec(spec)
        if rng.exact is None:
            raise RegistrySpecError(
                f"{spec!r}: name one exact version, e.g. {ns}/{short}@1.2.0")
        return ns, short, str(rng.exact)

    # -- installing --------------------------------------------------------------------------

    @_operation
    def install(self, spec: str, *, triple: str | None = None,
                progress: Progress | None = None) -> InstalledPack:
        """Resolve ``namespace/name@range``, download the variant for ``triple`` (default:
        this host's), verify it and cache it. When the registry cannot answer (unreachable,
        timeouts, 429, 5xx) a verified cached version that satisfies the range answers
        instead, and ``notify`` says so; ``offline=True`` uses only the cache."""
        ns, short, rng = parse_spec(spec)
        if triple is None:
            triple = host_triples()[0] if host_triples() else PORTABLE_TRIPLE
        if self.offline:
            return self._from_cache(ns, short, rng, triple, None)
        try:
            version = self._resolve(ns, short, rng, cache=False)
            meta = self._metadata(ns, short, version, cache=False)
            served = (meta["namespace"], meta["name"], meta["version"])
            if served != (ns, short, version):
                raise RegistrySignatureError(
                    f"asked the registry for {ns}/{short} {version}, it answered with "
                    f"{_clean(served[0], 64)}/{_clean(served[1], 64)} {_clean(served[2], 64)}:"
                    " refusing a mixed-up pack",
                    url=f"{self.url}/api/v1/packs/{ns}/{short}/{version}")
            return self._fetch(meta, triple, progress)
        except RegistryError as exc:
            if not _falls_back(exc):
                raise
            return self._from_cache(ns, short, rng, triple, exc)

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
        full = _clean(f"{meta['namespace']}/{meta['name']}", 140)
        version = _clean(meta["version"], 64)
        try:
            manifest = base64.b64decode(meta["manifest_b64"], validate=True)
            sigs = parse_signatures(base64.b64decode(meta["signature_b64"], validate=True))
            signer = self.trust.verify(manifest, sigs, pack=f"{full} {version}")
            parsed = parse_manifest(manifest)
        except PackSignatureError as exc:
            raise RegistrySignatureError(f"{_clean(exc, 400)} (from {url})",
                                         key_id=exc.key_id, url=url) from exc
        except (PackFormatError, ValueError, KeyError, TypeError) as exc:
            raise RegistrySignatureError(f"{full} {version}: the published manifest or "
                                         f"signature is unreadable: {_clean(exc)}",
                                         url=url) from exc
        short_ok = "/" not in parsed.name and parsed.name == meta["name"]
        if (parsed.name != f"{meta['namespace']}/{meta['name']}" and not short_ok) \
                or parsed.version != meta["version"]:
            raise RegistrySignatureError(
                f"the registry served the signed manifest of {_clean(parsed.name, 140)} "
                f"{_clean(parsed.version, 64)} as {full} {version}: refusing a mixed-up pack",
                url=url)
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
                       int(expect["size"]), f'"{expect["sha256"]}"', progress, ns)
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
                f"{url}: the registry published {_clean(repr(sha), 80)} as the sha256",
                what="sha256", expected="64 lowercase hex digits", actual=repr(sha)[:80],
                url=url)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RegistryIntegrityError(
                f"{url}: the registry published {_clean(repr(size), 80)} as the size",
                what="size", expected="a byte count", actual=repr(size)[:80], url=url)
        if size > self.max_download:
            raise RegistryIntegrityError(
                f"{url}: the registry says the pack is {size} bytes, over this client's "
                f"limit of {self.max_download} (RegistryClient(max_download=...)); refusing "
                "to download it", what="size", expected=f"<= {self.max_download}",
                actual=str(size), url=url)

    def _download(self, path: str, params: dict[str, str], part: Path, size: int,
                  etag: str, progress: Progress | None, ns: str) -> None:
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
                if resp.status_code == 206 and not _resumes_at(resp, have, size):
                    resp.close()
                    part.unlink(missing_ok=True)
                    have = 0
                    resp = self._get_from(path, params, 0, etag, ns)
                    if resp.status_code == 206 and not _resumes_at(resp, 0, size):
                        raise RegistryIntegrityError(
                            f"{url}: asked for the whole file, the registry answered 206 "
                            "with Content-Range "
                            f"{_clean(repr(resp.headers.get('content-range')), 80)}",
                            what="size", expected=f"bytes 0-{size - 1}/{size}",
                            actual=str(resp.headers.get("content-range"))[:80], url=url)
                encoding = resp.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise RegistryHTTPError(
                        f"GET {url}: the registry sent a {_clean(encoding, 40)!r}-encoded "
                        "download, although the client asked for 'identity'",
                        status=resp.status_code, code="bad_response", url=url)
                mode = "ab" if resp.status_code == 206 else "wb"
                done = have if resp.status_code == 206 else 0
                with part.open(mode) as fh:
                    for chunk in _raw(resp):
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
                        self._pace.check_deadline()
                        if progress is not None:
                            progress(done, size)
            finally:
                resp.close()

        self._retrying("GET", path, attempt)

    def _get_from(self, path: str, params: dict[str, str], have: int,
                  etag: str, ns: str) -> httpx.Response:
        headers = {"Range": f"bytes={have}-", "If-Range": etag} if have else {}
        return self._exchange("GET", path, params=params, headers=headers, ok=(200, 206),
                              ns=ns)

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
            raise RegistryIntegrityError(f"{url}: the cached metadata.json is unreadable",
                                         what="format", expected="version metadata",
                                         actual="unreadable", url=url)
        manifest, _ = self._verify_meta(meta, url)
        path = d / f"{variant}.rflpack"
        expect = meta["variants"][variant]
        self._check_expect(expect, url)
        signer = self._check_file(path, expect, manifest, url)
        return InstalledPack(f"{meta['namespace']}/{meta['name']}", meta["version"], variant,
                             path, expect["sha256"], signer, from_cache=from_cache)

    def _from_cache(self, ns: str, short: str, rng: VersionRange, triple: str,
                    cause: RegistryError | None) -> InstalledPack:
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
            listed = ", ".join(_clean(v, 64) for v in shown[:20]) or "none"
            more = f" and {len(shown) - 20} more" if len(shown) > 20 else ""
            raise RegistryUnavailableError(
                f"{'offline' if cause is None else _why(cause)}, and no cached version of "
                f"{ns}/{short} matches {rng}{why}; cached: {listed}{more}",
                url=self.url) from cause
        d = self._dir(ns, short, found)
        got = self._check_cached(d, self._variant(metas[found], triple), from_cache=True)
        if cause is not None:
            try:
                age = _age(time.time() - (d / "metadata.json").stat().st_mtime)
            except OSError:
                age = "an unknown time"
            self._note(f"{_why(cause)} ({cause}); using cached {ns}/{short} {found} "
                       f"({got.variant}) from {age} ago")
        return got


def _why(exc: RegistryError) -> str:
    if isinstance(exc, RegistryHTTPError):
        return "registry unavailable"
    return "registry unreachable"


def _index_key(path: str, params: dict[str, str] | None) -> str:
    query = json.dumps(sorted((params or {}).items()))
    return hashlib.sha256(f"{path}?{query}".encode()).hexdigest()


def _raw(resp: httpx.Response) -> Iterator[bytes]:
    """The answer's bytes as they came (no decoding): streamed, or all at once when the
    transport already read them (an in-process transport does)."""
    if resp.is_stream_consumed:
        yield resp.content
    else:
        yield from resp.iter_raw()


def _read_some(resp: httpx.Response, limit: int = _ERROR_BODY) -> bytes:
    """Up to ``limit`` bytes of an (error) answer; the rest is never read."""
    body = bytearray()
    try:
        for chunk in _raw(resp):
            body += chunk
            if len(body) >= limit:
                break
    except httpx.TransportError:
        pass  # the status is the answer; a body cut short only loses its detail
    return bytes(body[:limit])


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
    shown = ", ".join(_clean(v, 64) for v in versions[-20:]) or "none"
    more = f" (and {len(versions) - 20} older)" if len(versions) > 20 else ""
    return RegistryNotFoundError(
        f"no version of {ns}/{short} matches {rng}; published: {shown}{more} "
        "(yanked versions need an exact pin)",
        status=404, code="no_matching_version", url=url)


def _http_error(method: str, url: str, resp: httpx.Response, body: bytes, *,
                scope: str = "read", ns: str | None = None,
                has_token: bool = False) -> RegistryHTTPError:
    """The error an error answer is: its code and message (quoted at most ~200 characters,
    control characters escaped) and, for 401/403, what to do about it on the command line."""
    code, message = f"http_{resp.status_code}", _clean(resp.reason_phrase, 80)
    try:
        err = json.loads(body)["error"]
        if isinstance(err, dict) and isinstance(err.get("code"), str):
            code = err["code"] if re.fullmatch(r"[a-z0-9_]{1,40}", err["code"]) \
                else f"http_{resp.status_code}"
            message = _clean(err.get("message", ""))
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        pass
    status = resp.status_code
    text = f"{method} {url}: {status} {code}: {message}"
    cls: type[RegistryHTTPError] = RegistryHTTPError
    if status in (401, 403):
        cls = RegistryAuthError
        need = "a valid token" if scope == "any" else f"a token with scope {scope!r}"
        if ns:
            need += f" for namespace {ns!r}"
        if status == 401 and not has_token:
            text = f"{method} {url}: 401 {code}: this needs {need}; {_TOKEN_HINT}"
        elif status == 401:
            said = "" if "authorization" in message.lower() else f" ({message})"
            text = (f"{method} {url}: 401 {code}: the registry refused the token{said}; "
                    f"this needs {need}: {_TOKEN_HINT}")
        else:
            text = f"{text}; this needs {need}: {_TOKEN_HINT}"
    elif status == 404:
        cls = RegistryNotFoundError
    return cls(text, status=status, code=code, url=url)


def install_pack(spec: str, registry: str, **client_options: Any) -> InstalledPack:
    """Install ``namespace/name@range`` from ``registry`` (see :meth:`RegistryClient.install`);
    ``client_options`` go to :class:`RegistryClient` (``token``, ``trust``, ``cache_dir``,
    ``offline``, ``insecure``, ``deadline``, ``transport``, ...) except ``triple`` and
    ``progress``."""
    triple = client_options.pop("triple", None)
    progress = client_options.pop("progress", None)
    with RegistryClient(registry, **client_options) as client:
        return client.install(spec, triple=triple, progress=progress)
