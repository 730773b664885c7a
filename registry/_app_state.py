"""What every endpoint of the registry app shares: its configuration, state and helpers.

:class:`RegistryConfig` (limits and policies), the per-app :class:`RegistryState` (storage,
authenticator, upload slots), :class:`APIError` (an error answer with a stable ``code``), and
the small helpers the endpoint modules use to read a request (names, scopes, JSON bodies) and
write an answer (a version's metadata document, error bodies).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ._auth import Authenticator
from ._names import is_valid_name
from ._semver import Version
from ._storage import (
    Storage,
    VersionRecord,
)

__all__ = [
    "CHUNK",
    "DRAIN_LIMIT",
    "PACK_MEDIA_TYPE",
    "APIError",
    "RegistryConfig",
    "RegistryState",
    "base_url",
    "error_response",
    "iso_time",
    "json_body",
    "names_of",
    "registry_of",
    "require",
    "version_doc",
    "version_or_404",
]

#: Content type of a pack download.
PACK_MEDIA_TYPE = "application/vnd.reflow.rflpack"
CHUNK = 1 << 20
#: After a 413 the server still reads (and drops) up to this many bytes, so an HTTP/1.1
#: client that sends its whole body before reading gets the 413 instead of a reset socket.
DRAIN_LIMIT = 64 << 20


class APIError(Exception):
    """An error response: HTTP ``status``, machine-readable ``code``, human ``message``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra


@dataclass(frozen=True)
class RegistryConfig:
    """Server settings.

    ``max_upload``: largest accepted pack in bytes. ``max_uploads``: publishes that may
    receive or process a body at once (more: 503 with ``Retry-After: retry_after``).
    ``max_builds``: publishes that may build slim variants at once (each holds a zstd
    context of about 64 MiB; the others wait). ``body_timeout``: longest wait in seconds for
    the next piece of any request body; ``min_body_rate``: bytes per second a body must
    average once ``body_timeout`` seconds of grace are used up (each byte buys
    ``1 / min_body_rate`` seconds). A body that falls behind is ``408 request_timeout``.
    ``None`` turns a bound off.
    """

    max_upload: int = 256 << 20
    anonymous_read: bool = True
    max_uploads: int = 16
    max_builds: int = 2
    body_timeout: float | None = 30.0
    min_body_rate: int | None = 16 << 10
    retry_after: int = 5

    def __post_init__(self) -> None:
        for name in ("max_upload", "max_uploads", "max_builds", "retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RegistryConfig.{name} must be a positive integer, not {value!r}")
        for name in ("body_timeout", "min_body_rate"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"RegistryConfig.{name} must be positive or None, not {value!r}")


@dataclass
class RegistryState:
    storage: Storage
    auth: Authenticator
    config: RegistryConfig
    #: The signed metadata (a ``TufRepository``), or None for a registry without it.
    tuf: Any = None
    #: Held from the "not published elsewhere" check to the index commit (publishes run in
    #: worker threads), so two namespaces cannot both take the same un-namespaced manifest.
    publish_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Publishes receiving or processing a body now (only the event loop thread counts).
    uploads: int = 0
    builds: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self.builds = threading.BoundedSemaphore(self.config.max_builds)


def registry_of(request: Request) -> RegistryState:
    reg: RegistryState = request.app.state.registry
    return reg


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers
    )


def names_of(request: Request, *, version: bool = False) -> tuple[str, str, str]:
    p = request.path_params
    ns, name, ver = p.get("ns", ""), p.get("name", ""), p.get("version", "")
    for key, label, value in (("ns", "namespace", ns), ("name", "pack name", name)):
        if key in p and not is_valid_name(value):
            raise APIError(
                400,
                "invalid_name",
                f"{value!r} is not a valid {label} (lowercase letters, digits, "
                "._-, starting with a letter or digit, at most 64 characters)",
            )
    if version and not Version.is_valid(ver):
        raise APIError(400, "invalid_version", f"{ver!r} is not a semantic version")
    return ns, name, ver


def require(request: Request, scope: str, namespace: str | None = "*") -> str:
    """Check the token; return who is acting (token id, or "anonymous")."""
    token = registry_of(request).auth.require(
        request.headers.get("authorization"), scope, namespace
    )
    return token.token_id if token else "anonymous"


def version_or_404(reg: RegistryState, ns: str, name: str, ver: str) -> VersionRecord:
    rec = reg.storage.get_version(ns, name, ver)
    if rec is None:
        if not reg.storage.list_versions(ns, name):
            raise APIError(404, "pack_not_found", f"no pack {ns}/{name}")
        raise APIError(404, "version_not_found", f"{ns}/{name} has no version {ver}")
    return rec


def iso_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def version_doc(request: Request, r: VersionRecord) -> dict[str, Any]:
    url = f"{base_url(request)}/api/v1/packs/{r.namespace}/{r.name}/{r.version}/download"
    variants = {"full": {"sha256": r.sha256, "size": r.size, "url": url}}
    for v in r.variants:
        variants[v.triple] = {"sha256": v.sha256, "size": v.size, "url": f"{url}?triple={v.triple}"}
    return {
        "namespace": r.namespace,
        "name": r.name,
        "full_name": r.full_name,
        "version": r.version,
        "abi": r.abi,
        "description": r.description,
        "templates": list(r.templates),
        "triples": list(r.triples),
        "key_id": r.key_id,
        "sha256": r.sha256,
        "size": r.size,
        "manifest_b64": base64.b64encode(r.manifest).decode("ascii"),
        "signature_b64": base64.b64encode(r.signature).decode("ascii"),
        "manifest_sha256": hashlib.sha256(r.manifest).hexdigest(),
        "published_at": iso_time(r.published_at),
        "yanked": r.yanked,
        "yank_reason": r.yank_reason,
        "variants": variants,
    }


async def json_body(request: Request, limit: int = 64 << 10) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, "too_large", f"a JSON body is limited to {limit} bytes")
    if not body:
        return {}
    try:
        doc = json.loads(body)
    except RecursionError:
        raise APIError(400, "bad_json", "the body is not JSON: nested too deeply") from None
    except ValueError as exc:
        raise APIError(400, "bad_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise APIError(400, "bad_json", "the body must be a JSON object")
    for key, value in doc.items():
        # Text an index cannot keep (PostgreSQL has no NUL in text; UTF-8 has no lone
        # surrogates): refused here, the same on every backend.
        for what, text in (("a field name", key), (f"field {key[:50]!r}", value)):
            if isinstance(text, str) and not _storable(text):
                raise APIError(
                    400,
                    "bad_json",
                    f"{what} holds a NUL character or an unpaired surrogate; expected plain text",
                )
    return doc


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
