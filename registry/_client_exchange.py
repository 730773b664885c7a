"""The registry client's requests: the one boundary where httpx errors become ours.

:class:`_Exchange` is the part of :class:`~reflow.registry.RegistryClient` that sends one
request and reads its answer: retries with backoff and jitter within the operation's deadline
(every wait announced through ``notify``), error answers as RegistryHTTPError, JSON answers
read as a stream and refused past ``max_metadata`` bytes or when not of the expected shape,
and the *index* cache that answers searches and version lists when the registry cannot.
Errors from httpx are translated in :meth:`_Exchange._retrying` and chained.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from .._errors import RegistryError, RegistryHTTPError, RegistryUnavailableError
from ._client_wire import (
    INDEX_DIR,
    RETRY_STATUS,
    Notify,
    RetryAnswer,
    clean,
    describe_age,
    falls_back,
    http_error,
    index_key,
    raw_bytes,
    read_some,
    retry_after,
    why_unavailable,
)
from ._transport import DeadlineExceeded, Pace

_T = TypeVar("_T")


class _Exchange:
    """Requests and answers for one registry (the attributes are set by ``RegistryClient``)."""

    url: str
    max_metadata: int
    has_token: bool
    cache: Path
    retries: int
    backoff: float
    max_backoff: float
    max_retry_after: float
    _pace: Pace
    _http: httpx.Client | None
    _notify: Notify | None
    _sleep: Callable[[float], None]

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

    # -- one request, retried ------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff * 2**attempt * (0.5 + random.random()), self.max_backoff)

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
                    "(RegistryClient(deadline=...))",
                    url=url,
                )
            try:
                return attempt()
            except DeadlineExceeded as exc:
                raise RegistryUnavailableError(f"{method} {url}: {exc}", url=url) from exc
            except httpx.TransportError as exc:
                error: RegistryError = RegistryUnavailableError(
                    f"{method} {url}: cannot reach the registry after {n + 1} attempt"
                    f"{'s' if n else ''}: {type(exc).__name__}: {clean(exc)}",
                    url=url,
                )
                if last:
                    raise error from exc
                why = f"cannot reach the registry ({type(exc).__name__}: {clean(exc, 80)})"
                wait = self._backoff(n)
                cause: BaseException = exc
            except RetryAnswer as r:
                if r.retry_after is not None and r.retry_after > self.max_retry_after:
                    raise RegistryHTTPError(
                        f"{r.error}; it asks to retry after {r.retry_after:g} s, longer than "
                        f"this client waits ({self.max_retry_after:g} s, "
                        "RegistryClient(max_retry_after=...))",
                        status=r.error.status,
                        code=r.error.code,
                        url=url,
                    ) from None
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
                    url=url,
                ) from cause
            self._note(f"{why}; retrying in {wait:.1f} s (attempt {n + 2} of {attempts})")
            self._sleep(wait)
        raise AssertionError("unreachable")

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        content: Callable[[], Any] | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        scope: str = "read",
        ns: str | None = None,
    ) -> httpx.Response:
        """One request; its answer streamed (the caller reads and closes it). 429/5xx raise
        :class:`RetryAnswer`, any other status outside ``ok`` its RegistryHTTPError."""
        self._pace.new_exchange()
        req = self.http.build_request(
            method, path, headers=headers, params=params, content=content() if content else None
        )
        resp = self.http.send(req, stream=True)
        if resp.status_code in ok:
            return resp
        try:
            error = http_error(
                method,
                f"{self.url}{path}",
                resp,
                read_some(resp),
                scope=scope,
                ns=ns,
                has_token=self.has_token,
            )
        finally:
            resp.close()
        if resp.status_code in RETRY_STATUS:
            raise RetryAnswer(error, retry_after(resp))
        raise error

    def _read_json(self, method: str, path: str, resp: httpx.Response) -> Any:
        """The answer's JSON, read as a stream and refused past ``max_metadata`` bytes."""
        url = f"{self.url}{path}"

        def bad(why: str, code: str = "bad_response") -> RegistryHTTPError:
            return RegistryHTTPError(
                f"{method} {url}: {why}", status=resp.status_code, code=code, url=url
            )

        cap = self.max_metadata
        try:
            encoding = resp.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise bad(
                    f"the registry sent a {clean(encoding, 40)!r}-encoded answer, "
                    "although the client asked for 'identity'"
                )
            declared = resp.headers.get("content-length", "").strip()
            if (
                declared.isascii()
                and declared.isdigit()
                and (len(declared) > 19 or int(declared) > cap)
            ):
                raise bad(
                    f"the registry announces a {clean(declared, 24)}-byte answer, over "
                    f"the {cap}-byte limit for metadata "
                    "(RegistryClient(max_metadata=...)); not reading it",
                    "too_large",
                )
            body = bytearray()
            for chunk in raw_bytes(resp):
                body += chunk
                if len(body) > cap:
                    raise bad(
                        f"the answer passed the {cap}-byte limit for metadata "
                        "(RegistryClient(max_metadata=...)); stopped reading it",
                        "too_large",
                    )
                self._pace.check_deadline()
        finally:
            resp.close()
        try:
            return json.loads(bytes(body))
        except RecursionError:
            raise bad("the registry answered with JSON nested too deeply") from None
        except ValueError as exc:
            raise bad(
                f"the registry answered with something that is not JSON ({clean(exc, 80)})"
            ) from None

    def _json(self, method: str, path: str, *, cache: bool = False, **kw: Any) -> Any:
        """``method path`` answered with JSON, retried. ``cache``: keep the answer in the
        index cache, and answer from it (saying so) when the registry cannot."""
        key = index_key(path, kw.get("params"))
        try:
            doc = self._retrying(
                method,
                path,
                lambda: self._read_json(method, path, self._exchange(method, path, **kw)),
            )
        except RegistryError as exc:
            if not cache or not falls_back(exc):
                raise
            hit = self._index_get(key)
            if hit is None:
                raise
            doc, age = hit
            self._note(
                f"{why_unavailable(exc)} ({exc}); using cached index from {describe_age(age)} ago"
            )
            return doc
        if cache:
            self._index_put(key, doc)
        return doc

    # -- the answers' shapes -------------------------------------------------------------------

    def _check_meta(
        self, method: str, path: str, doc: Any, *, published: bool = False
    ) -> dict[str, Any]:
        """A version's metadata with the fields the client uses, of the types it uses
        (``published``: also those a publish reports)."""
        strings = ("namespace", "name", "version", "manifest_b64", "signature_b64") + (
            ("full_name", "key_id") if published else ()
        )
        if not (
            isinstance(doc, dict)
            and all(isinstance(doc.get(k), str) for k in strings)
            and (not published or isinstance(doc.get("size"), int))
            and isinstance(doc.get("yanked", False), bool)
            and isinstance(doc.get("variants"), dict)
            and all(isinstance(k, str) and isinstance(v, dict) for k, v in doc["variants"].items())
        ):
            raise self._shape(
                method,
                path,
                "version metadata (namespace, name, version, "
                "manifest_b64, signature_b64, variants, ...)",
            )
        return dict(doc)

    def _shape(self, method: str, path: str, expected: str) -> RegistryHTTPError:
        url = f"{self.url}{path}"
        return RegistryHTTPError(
            f"{method} {url}: the registry's answer is not {expected}",
            status=200,
            code="bad_response",
            url=url,
        )

    # -- the index cache: the last answer to each search and version list -----------------------

    def _index_get(self, key: str) -> tuple[Any, float] | None:
        path = self.cache / INDEX_DIR / f"{key}.json"
        try:
            if path.stat().st_size > self.max_metadata:
                return None
            return json.loads(path.read_bytes()), time.time() - path.stat().st_mtime
        except (OSError, ValueError, RecursionError):
            return None

    def _index_put(self, key: str, doc: Any) -> None:
        path = self.cache / INDEX_DIR / f"{key}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except (OSError, ValueError, RecursionError):
            pass  # the index cache is a convenience: failing to keep it fails nothing
