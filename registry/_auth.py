"""Who may do what: scoped, expiring bearer tokens, and namespaces with owners.

A token reads ``rfl_<id>_<secret>``. The registry stores the id, the sha256 of the secret
(the secret is 256 random bits, so a plain hash is enough: there is nothing to brute-force),
its namespace (``*`` for all), its scope and its expiry; the secret itself is shown once,
when the token is created, and never stored. Scopes are ordered: ``read`` < ``publish`` <
``admin``; a token grants its scope and every lower one, in its namespace only.

A token created over the API by another token records it as its ``parent_id``: it never
outlives an expiring parent (its expiry is clamped to the parent's), and revoking a token
revokes every token it created, transitively (a token whose ancestor is revoked is refused
too, so one created while its parent was being revoked does not survive it).

A request fails with 401 (``unauthorized``) when a token is needed and missing, malformed,
unknown, revoked or expired, and with 403 (``forbidden``) when a valid token lacks the scope
or the namespace.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Callable

from ._names import is_valid_name
from ._storage import NamespaceRecord, Storage, StorageConflict, TokenRecord

__all__ = ["SCOPES", "AuthDenied", "Authenticator", "parse_token"]

SCOPES = ("read", "publish", "admin")
_RANK = {s: i for i, s in enumerate(SCOPES)}
_TOKEN = re.compile(r"rfl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
#: The longest ttl a token may be given (100 years); longer is an error, not "forever".
MAX_TTL = 100 * 365 * 86400.0
#: How many ancestors ``authenticate`` follows at most (a deeper chain is refused).
_MAX_DEPTH = 64


class AuthDenied(Exception):
    """A request is not allowed: ``status`` 401 or 403 with an error ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def parse_token(text: str) -> tuple[str, str] | None:
    """``(token id, secret)`` from a token string, or None if it is not one."""
    m = _TOKEN.fullmatch(text.strip())
    return (m[1], m[2]) if m else None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class Authenticator:
    """Issues and checks tokens against a :class:`Storage`.

    ``anonymous_read``: reading (search, metadata, downloads) needs no token. A private
    registry turns it off, and then every request needs at least a ``read`` token.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        anonymous_read: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.anonymous_read = anonymous_read
        self.clock = clock

    # -- issuing ----------------------------------------------------------------------------
    def create_namespace(self, name: str, owner: str) -> NamespaceRecord:
        if not is_valid_name(name):
            raise ValueError(
                f"{name!r} is not a namespace name (lowercase letters, digits, "
                "._-, at most 64 characters)"
            )
        if not owner.strip():
            raise ValueError("a namespace needs an owner")
        try:
            return self.storage.create_namespace(name, owner.strip())
        except StorageConflict:
            raise ValueError(f"namespace {name!r} already exists") from None

    def create_token(
        self,
        namespace: str,
        scope: str,
        *,
        ttl: float | None = None,
        label: str = "",
        parent: TokenRecord | None = None,
    ) -> tuple[TokenRecord, str]:
        """A new token; returns its record and the token string (shown once, never stored).
        ``ttl`` in seconds (None: it does not expire). ``parent``: the token creating it
        (over the API); the new token expires no later than an expiring parent (a longer or
        missing ``ttl`` is clamped to the parent's expiry), and is revoked with it."""
        if scope not in _RANK:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if namespace != "*":
            if not is_valid_name(namespace):
                raise ValueError(f"{namespace!r} is not a namespace name")
            if self.storage.get_namespace(namespace) is None:
                raise ValueError(f"no namespace {namespace!r}; create it first")
        if ttl is not None and (
            isinstance(ttl, bool) or not math.isfinite(ttl) or ttl <= 0 or ttl > MAX_TTL
        ):
            raise ValueError(
                f"ttl must be a positive number of seconds, at most {MAX_TTL:.0f} "
                f"(100 years), not {ttl!r}; leave it out for no expiry"
            )
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = self.clock()
        expires = None if ttl is None else now + ttl
        if parent is not None and parent.expires_at is not None:
            expires = parent.expires_at if expires is None else min(expires, parent.expires_at)
        record = TokenRecord(
            token_id=token_id,
            secret_sha256=_digest(secret),
            namespace=namespace,
            scope=scope,
            label=label,
            created_at=now,
            expires_at=expires,
            parent_id=parent.token_id if parent is not None else None,
        )
        self.storage.add_token(record)
        return record, f"rfl_{token_id}_{secret}"

    # -- checking ---------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> TokenRecord | None:
        """The token in an ``Authorization: Bearer ...`` header (None if there is no header);
        raises AuthDenied(401) for a bad one."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthDenied(
                401, "unauthorized", "the Authorization header must be 'Bearer <token>'"
            )
        parsed = parse_token(value)
        if parsed is None:
            raise AuthDenied(401, "unauthorized", "the token is malformed")
        token_id, secret = parsed
        record = self.storage.get_token(token_id)
        if record is None or not hmac.compare_digest(record.secret_sha256, _digest(secret)):
            raise AuthDenied(401, "unauthorized", "the token is not valid")
        if record.revoked:
            raise AuthDenied(401, "unauthorized", f"token {token_id} was revoked")
        if record.expires_at is not None and record.expires_at <= self.clock():
            raise AuthDenied(401, "unauthorized", f"token {token_id} has expired")
        self._check_ancestors(record)
        return record

    def _check_ancestors(self, record: TokenRecord) -> None:
        """A token lives only as long as the tokens that created it (revocation cascades in
        storage too; this also covers a token created while its parent was being revoked)."""
        now = self.clock()
        seen = {record.token_id}
        parent_id = record.parent_id
        while parent_id is not None:
            parent = self.storage.get_token(parent_id)
            if (
                parent is None
                or parent.revoked
                or len(seen) > _MAX_DEPTH
                or (parent.expires_at is not None and parent.expires_at <= now)
            ):
                raise AuthDenied(
                    401,
                    "unauthorized",
                    f"token {record.token_id} was created by token {parent_id}, "
                    "which is revoked, expired or gone",
                )
            if parent.token_id in seen:
                break
            seen.add(parent.token_id)
            parent_id = parent.parent_id

    def require(
        self, authorization: str | None, scope: str, namespace: str | None = "*"
    ) -> TokenRecord | None:
        """Check that the request may act with ``scope`` in ``namespace`` (``*``: the
        registry as a whole; None: any namespace, e.g. search). Returns the token (None for
        an allowed anonymous read)."""
        record = self.authenticate(authorization)
        if record is None:
            if scope == "read" and self.anonymous_read:
                return None
            raise AuthDenied(
                401,
                "unauthorized",
                f"this needs a token with scope {scope!r}; pass 'Authorization: Bearer <token>'",
            )
        if _RANK[record.scope] < _RANK[scope]:
            raise AuthDenied(
                403,
                "forbidden",
                f"token {record.token_id} has scope {record.scope!r}; this needs {scope!r}",
            )
        if namespace is None:
            return record
        if record.namespace != "*" and record.namespace != namespace:
            where = "the whole registry" if namespace == "*" else f"namespace {namespace!r}"
            raise AuthDenied(
                403,
                "forbidden",
                f"token {record.token_id} is for namespace {record.namespace!r}, not {where}",
            )
        return record
