"""What the registry client sends and accepts on the wire, below any one request.

Error answers become :class:`~reflow.RegistryHTTPError` (and its 401/403/404 subclasses) with
what the registry said quoted at most ~200 characters, control characters escaped
(:func:`clean`); the statuses worth asking again for and how long ``Retry-After`` asks to
wait; reading a body as it came, or only its first bytes; and the client's constants and
defaults. Nothing here holds state.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import ipaddress
import json
import math
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from .._errors import (
    RegistryAuthError,
    RegistryError,
    RegistryHTTPError,
    RegistryNotFoundError,
    RegistryUnavailableError,
)
from ..abi._bundle import BundleLimits
from ._semver import VersionRange

#: ``progress(done_bytes, total_bytes_or_None)``, called as a transfer advances.
Progress = Callable[[int, "int | None"], None]
#: ``notify(line)``: what the client tells its user while it works (retries, cache answers).
Notify = Callable[[str], None]
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
CHUNK = 1 << 20
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
ERROR_BODY = 1 << 20
#: How many characters of anything the registry said an error message quotes.
QUOTE = 200
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)")
TOKEN_HINT = "pass --token TOKEN or set $REFLOW_REGISTRY_TOKEN"
INDEX_DIR = "_index"  # never a namespace: names start with a letter or digit


def stderr_line(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # a broken stderr fails nothing
        print(line, file=sys.stderr, flush=True)


def clean(text: object, limit: int = QUOTE) -> str:
    """``text`` fit for one error line: control and formatting characters (escape
    sequences, bidi overrides, newlines) escaped, at most ``limit`` characters."""
    s = str(text)
    over = len(s) - limit
    if over > 0:
        s = s[:limit]
    out = "".join(
        ch
        if unicodedata.category(ch)[0] != "C" and ch not in "\u2028\u2029"
        else ch.encode("unicode_escape").decode("ascii")
        for ch in s
    )
    return f"{out}… ({over} more characters)" if over > 0 else out


def describe_age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def falls_back(exc: RegistryError) -> bool:
    """Whether the cache may answer instead: the registry could not, not 'no'."""
    if isinstance(exc, RegistryUnavailableError):
        return True
    return isinstance(exc, RegistryHTTPError) and (exc.status == 429 or exc.status >= 500)


class RetryAnswer(Exception):
    """An answer worth asking again for (429, 5xx): the error it would be, and how long the
    registry asked to wait (None: it did not say)."""

    def __init__(self, error: RegistryHTTPError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def retry_after(resp: httpx.Response) -> float | None:
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


def why_unavailable(exc: RegistryError) -> str:
    if isinstance(exc, RegistryHTTPError):
        return "registry unavailable"
    return "registry unreachable"


def index_key(path: str, params: dict[str, str] | None) -> str:
    query = json.dumps(sorted((params or {}).items()))
    return hashlib.sha256(f"{path}?{query}".encode()).hexdigest()


def raw_bytes(resp: httpx.Response) -> Iterator[bytes]:
    """The answer's bytes as they came (no decoding): streamed, or all at once when the
    transport already read them (an in-process transport does)."""
    if resp.is_stream_consumed:
        yield resp.content
    else:
        yield from resp.iter_raw()


def read_some(resp: httpx.Response, limit: int = ERROR_BODY) -> bytes:
    """Up to ``limit`` bytes of an (error) answer; the rest is never read."""
    body = bytearray()
    try:
        for chunk in raw_bytes(resp):
            body += chunk
            if len(body) >= limit:
                break
    except httpx.TransportError:
        pass  # the status is the answer; a body cut short only loses its detail
    return bytes(body[:limit])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def resumes_at(resp: httpx.Response, offset: int, size: int) -> bool:
    """Whether a 206's ``Content-Range`` is ``bytes offset-(size-1)/size`` (the total may be
    ``*``): the rest of this file, from where the part file ends."""
    m = CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
    return (
        m is not None and int(m[1]) == offset and int(m[2]) == size - 1 and m[3] in ("*", str(size))
    )


def no_match(
    ns: str, short: str, rng: VersionRange, versions: list[str], url: str, *, signed: bool = False
) -> RegistryNotFoundError:
    shown = ", ".join(clean(v, 64) for v in versions[-20:]) or "none"
    more = f" (and {len(versions) - 20} older)" if len(versions) > 20 else ""
    hint = "yanked versions need an exact pin"
    if signed and not versions:  # published, maybe, but not yet in the publisher's metadata
        hint = (
            f"the registry's signed metadata lists none: a version shows once the {ns} "
            "publisher signs it with 'reflow-pack publish --key KEY'"
        )
    return RegistryNotFoundError(
        f"no version of {ns}/{short} matches {rng}; published: {shown}{more} ({hint})",
        status=404,
        code="no_matching_version",
        url=url,
    )


def http_error(
    method: str,
    url: str,
    resp: httpx.Response,
    body: bytes,
    *,
    scope: str = "read",
    ns: str | None = None,
    has_token: bool = False,
) -> RegistryHTTPError:
    """The error an error answer is: its code and message (quoted at most ~200 characters,
    control characters escaped) and, for 401/403, what to do about it on the command line."""
    code, message = f"http_{resp.status_code}", clean(resp.reason_phrase, 80)
    try:
        err = json.loads(body)["error"]
        if isinstance(err, dict) and isinstance(err.get("code"), str):
            code = (
                err["code"]
                if re.fullmatch(r"[a-z0-9_]{1,40}", err["code"])
                else f"http_{resp.status_code}"
            )
            message = clean(err.get("message", ""))
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
            text = f"{method} {url}: 401 {code}: this needs {need}; {TOKEN_HINT}"
        elif status == 401:
            said = "" if "authorization" in message.lower() else f" ({message})"
            text = (
                f"{method} {url}: 401 {code}: the registry refused the token{said}; "
                f"this needs {need}: {TOKEN_HINT}"
            )
        else:
            text = f"{text}; this needs {need}: {TOKEN_HINT}"
    elif status == 404:
        cls = RegistryNotFoundError
    return cls(text, status=status, code=code, url=url)
