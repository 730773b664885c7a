"""reflow.registry._auth: scoped, hashed, expiring tokens; namespaces with owners."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflow.registry._auth import AuthDenied, Authenticator, parse_token
from reflow.registry._storage_sqlite import LocalStorage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def auth(tmp_path: Path) -> Authenticator:
    storage = LocalStorage(tmp_path / "d")
    a = Authenticator(storage, clock=Clock())
    a.create_namespace("acme", "acme team")
    a.create_namespace("other", "other team")
    return a


def test_token_is_stored_hashed(auth: Authenticator) -> None:
    rec, token = auth.create_token("acme", "publish")
    token_id, secret = parse_token(token)
    assert token_id == rec.token_id
    raw = (auth.storage.root / "index.sqlite3").read_bytes()  # type: ignore[attr-defined]
    assert secret.encode() not in raw
    assert auth.require(f"Bearer {token}", "publish", "acme") == rec


@pytest.mark.parametrize(
    ("header", "scope", "ns", "status", "fragment"),
    [
        (None, "publish", "acme", 401, "needs a token"),
        ("Basic abc", "read", "acme", 401, "Bearer"),
        ("Bearer nope", "read", "acme", 401, "malformed"),
        ("Bearer rfl_0000000000000000_" + "a" * 43, "read", "acme", 401, "not valid"),
        ("WRONGSECRET", "read", "acme", 401, "not valid"),
        ("READ", "publish", "acme", 403, "scope 'read'"),
        ("PUBLISH", "publish", "other", 403, "namespace 'acme'"),
        ("PUBLISH", "admin", "acme", 403, "needs 'admin'"),
        ("PUBLISH", "publish", "*", 403, "whole registry"),
    ],
)
def test_denials(
    auth: Authenticator, header: str | None, scope: str, ns: str, status: int, fragment: str
) -> None:
    _, read = auth.create_token("acme", "read")
    _, pub = auth.create_token("acme", "publish")
    if header == "READ":
        header = f"Bearer {read}"
    elif header == "PUBLISH":
        header = f"Bearer {pub}"
    elif header == "WRONGSECRET":
        header = f"Bearer {pub[:-4]}AAAA"
    with pytest.raises(AuthDenied, match=fragment) as info:
        auth.require(header, scope, ns)
    assert info.value.status == status
    assert info.value.code == ("unauthorized" if status == 401 else "forbidden")


def test_scopes_are_ordered_and_admin_star_covers_all(auth: Authenticator) -> None:
    _, admin = auth.create_token("*", "admin")
    for scope in ("read", "publish", "admin"):
        for ns in ("acme", "other", "*"):
            assert auth.require(f"Bearer {admin}", scope, ns) is not None


def test_expiry_and_revocation(auth: Authenticator) -> None:
    _, token = auth.create_token("acme", "read", ttl=60)
    assert auth.require(f"Bearer {token}", "read", "acme")
    auth.clock.now += 61  # type: ignore[attr-defined]
    with pytest.raises(AuthDenied, match="expired"):
        auth.require(f"Bearer {token}", "read", "acme")
    rec2, token2 = auth.create_token("acme", "read")
    auth.storage.revoke_token(rec2.token_id)
    with pytest.raises(AuthDenied, match="revoked"):
        auth.require(f"Bearer {token2}", "read", "acme")


def test_anonymous_read_is_configurable(auth: Authenticator) -> None:
    assert auth.require(None, "read", "acme") is None
    auth.anonymous_read = False
    with pytest.raises(AuthDenied) as info:
        auth.require(None, "read", "acme")
    assert info.value.status == 401


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda a: a.create_token("acme", "root"), "scope must be"),
        (lambda a: a.create_token("nope", "read"), "no namespace"),
        (lambda a: a.create_token("../x", "read"), "not a namespace"),
        (lambda a: a.create_token("acme", "read", ttl=-1), "positive"),
        (lambda a: a.create_namespace("acme", "x"), "already exists"),
        (lambda a: a.create_namespace("Bad!", "x"), "not a namespace"),
        (lambda a: a.create_namespace("fine", " "), "owner"),
    ],
)
def test_bad_requests(auth: Authenticator, call: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        call(auth)  # type: ignore[operator]
