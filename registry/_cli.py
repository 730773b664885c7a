"""``reflow-registry``: run a registry and administer its data directory.

``serve`` runs the app with uvicorn on the embedded defaults (SQLite + blobs under
``--data``), or with the index on PostgreSQL (``--index postgresql://...``) and the blobs on
S3-compatible storage (``--blobs s3://...``); credentials come from the backends' usual
environment variables, never from the command line. ``token``, ``key`` and ``namespace``
work directly on the storage (``$REFLOW_REGISTRY_INDEX`` / ``$REFLOW_REGISTRY_BLOBS`` name
the same backends as ``serve``'s flags), so they need no running server (and are safe while
one runs: SQLite in WAL mode, PostgreSQL transactions). The data
directory is ``--data``, else ``$REFLOW_REGISTRY_DATA``, else ``./registry-data``. Only
``init`` and ``serve`` create a missing data directory; every other command refuses one, and
a directory that holds no registry index (a typo must not start an empty registry).

A failure prints one line, ``error: ...``, and exits 1 (a :class:`RegistryAdminError` for a
refused administration command); ``--debug`` anywhere shows the traceback; ``--json`` prints
the result or the error as JSON (the conventions of :mod:`reflow.tools._term`).
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path

import click

from .._errors import RegistryError
from ..tools._term import ReflowGroup, echo, echo_json
from ._auth import SCOPES, Authenticator
from ._storage import BLOBS_ENV, INDEX_ENV, Storage
from ._storage_open import open_storage

__all__ = ["RegistryAdminError", "main"]

_INDEX = "index.sqlite3"


class RegistryAdminError(RegistryError):
    """An administration command was refused: a missing or foreign data directory, an
    unknown token or key, an invalid name, an address ``serve`` cannot bind, ..."""


class _Group(ReflowGroup):
    """ReflowGroup, with the storage's and authenticator's refusals (``ValueError``) and a
    damaged index (``sqlite3.Error``) shown as the administration errors they are."""

    def translate(self, exc: Exception) -> Exception:
        from ._tuf_repo import RepositoryRefusal

        if isinstance(exc, RepositoryRefusal):  # the signed metadata's refusals (tuf ...)
            return RegistryAdminError(str(exc))
        if isinstance(exc, (ValueError, sqlite3.Error)) and not isinstance(exc, RegistryError):
            return RegistryAdminError(str(exc))
        psycopg = sys.modules.get("psycopg")
        if psycopg is not None and isinstance(exc, psycopg.Error):  # a PostgreSQL index
            return RegistryAdminError(f"the PostgreSQL index failed: {str(exc).strip()[:500]}")
        return exc


def _backends() -> tuple[str | None, str | None]:
    return os.environ.get(INDEX_ENV) or None, os.environ.get(BLOBS_ENV) or None


def _storage(data: Path) -> Storage:
    """The registry in ``data``, which must exist (only ``init`` and ``serve`` create one),
    or on the backends ``$REFLOW_REGISTRY_INDEX`` / ``$REFLOW_REGISTRY_BLOBS`` name."""
    index, blobs = _backends()
    if index is not None:
        return open_storage(data, index, blobs)
    if not data.is_dir():
        raise RegistryAdminError(
            f"registry data directory {data} does not exist (a typo? 'reflow-registry init "
            f"--data {data}' creates it)"
        )
    if not (data / _INDEX).is_file():
        raise RegistryAdminError(
            f"{data} is not a registry data directory (it has no {_INDEX}; "
            f"'reflow-registry init --data {data}' makes it one)"
        )
    return open_storage(data, None, blobs)


def _check_address(host: str, port: int) -> None:
    """Refuse, in one line, an address the server could not bind (uvicorn itself logs a few
    lines and exits); a race with another process is still caught around the server."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise RegistryAdminError(
            f"cannot serve on {host}:{port}: unknown address ({exc})"
        ) from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        if os.name != "nt":  # as asyncio does for a server socket
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError as exc:
            why = (
                "is already in use (another registry or server listens there; pick another --port)"
                if exc.errno == errno.EADDRINUSE
                else f"cannot be bound: {exc.strerror or exc}"
            )
            raise RegistryAdminError(f"address {host}:{port} {why}") from None


_data = click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="REFLOW_REGISTRY_DATA",
    default=Path("registry-data"),
    show_default=True,
    help="Registry data directory (index + blobs; with --index/--blobs: the upload spool "
    "and online TUF keys); env REFLOW_REGISTRY_DATA.",
)
_index = click.option(
    "--index",
    "index",
    envvar=INDEX_ENV,
    default=None,
    metavar="URL",
    help="Keep the index in PostgreSQL: postgresql://user@host:port/dbname (password from "
    f"PGPASSWORD or ~/.pgpass); default: SQLite under --data; env {INDEX_ENV}.",
)
_blobs = click.option(
    "--blobs",
    "blobs",
    envvar=BLOBS_ENV,
    default=None,
    metavar="URL",
    help="Keep pack blobs on S3-compatible storage: s3://bucket/prefix?endpoint=URL&region=R "
    "(credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile); default: "
    f"files under --data; env {BLOBS_ENV}.",
)
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON (errors too).")


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    mult = units.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except (ValueError, OverflowError):
        raise click.BadParameter(f"{text!r} is not a size (e.g. 256M)") from None


def _ensure_namespace(auth: Authenticator, name: str, owner: str | None) -> None:
    if name != "*" and auth.storage.get_namespace(name) is None:
        who = owner or os.environ.get("USER") or "admin"
        auth.create_namespace(name, who)
        echo(f"created namespace {name!r} (owner {who})", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--debug",
    is_flag=True,
    help="Show tracebacks on errors (accepted anywhere on the command line).",
)
@click.version_option(package_name="reflow", prog_name="reflow-registry")
def main(debug: bool) -> None:
    """Run and administer a private reflow pack registry.

    The data directory is --data, else $REFLOW_REGISTRY_DATA, else ./registry-data. Only
    'init' and 'serve' create it; the other commands refuse a missing one."""


@main.command()
@_data
@_json
def init(data: Path, as_json: bool) -> None:
    """Create an empty registry in DATA (harmless if it is one already)."""
    if data.exists() and not data.is_dir():
        raise RegistryAdminError(f"{data} exists and is not a directory")
    fresh = not (data / _INDEX).is_file()
    if fresh and data.is_dir() and any(data.iterdir()):
        raise RegistryAdminError(
            f"{data} is not empty and holds no registry ({_INDEX}); pick an empty or new directory"
        )
    index, blobs = _backends()
    with open_storage(data, index, blobs) as storage:
        root = storage.root
    if as_json:
        echo_json({"data": str(root), "created": fresh})
        return
    echo(f"registry data directory {root} is {'ready' if fresh else 'already a registry'}")


def _seconds(text: str) -> float | None:
    """A positive number of seconds, or 0 / "off" for no limit."""
    if text.strip().lower() in ("0", "off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1e9:
        raise click.BadParameter(f"{text!r} is not a number of seconds (or 'off')")
    return value


_POSITIVE = click.IntRange(min=1)


@main.command()
@_data
@_index
@_blobs
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8700, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--max-upload",
    default="256M",
    show_default=True,
    help="Largest pack accepted (bytes, or with K/M/G).",
)
@click.option("--private", is_flag=True, help="Require a read token for search and downloads too.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request head may take to arrive (else 408).",
)
@click.option(
    "--body-timeout",
    default="30",
    show_default=True,
    help="Longest pause in seconds within a request body (else 408); 'off'.",
)
@click.option(
    "--min-body-rate",
    default="16K",
    show_default=True,
    help="Bytes/s a body must average after --body-timeout seconds of grace "
    "(else 408); 0 for none.",
)
@click.option(
    "--keep-alive",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds an idle connection stays open.",
)
@click.option(
    "--max-connections",
    default=512,
    show_default=True,
    type=_POSITIVE,
    help="Open connections at once (more: 503).",
)
@click.option(
    "--backlog",
    default=128,
    show_default=True,
    type=_POSITIVE,
    help="Listen queue, and connections accepted per turn of the event loop.",
)
@click.option(
    "--max-uploads",
    default=16,
    show_default=True,
    type=_POSITIVE,
    help="Publishes in progress at once (more: 503 with Retry-After).",
)
@click.option(
    "--max-builds",
    default=2,
    show_default=True,
    type=_POSITIVE,
    help="Publishes building slim variants at once (~64 MiB each; more wait).",
)
@click.option(
    "--timestamp-expiry",
    default=86400.0,
    show_default=True,
    type=click.FloatRange(min=2),
    help="Seconds a signed timestamp stays valid (re-signed at half-life).",
)
@click.option(
    "--snapshot-expiry",
    default=7 * 86400.0,
    show_default=True,
    type=click.FloatRange(min=2),
    help="Seconds a signed snapshot stays valid.",
)
def serve(
    data: Path,
    index: str | None,
    blobs: str | None,
    host: str,
    port: int,
    max_upload: str,
    private: bool,
    log_level: str,
    header_timeout: float,
    body_timeout: str,
    min_body_rate: str,
    keep_alive: float,
    max_connections: int,
    backlog: int,
    max_uploads: int,
    max_builds: int,
    timestamp_expiry: float,
    snapshot_expiry: float,
) -> None:
    """Serve the registry in DATA (or on --index / --blobs) over HTTP (uvicorn); creates
    DATA if it is missing. Several processes may serve one PostgreSQL index and one bucket,
    each with a --data of its own holding the same online TUF keys."""
    from ._app import RegistryConfig, create_app
    from ._serve import ServerLimits
    from ._serve import serve as run_server

    rate = _size(min_body_rate)
    config = RegistryConfig(
        max_upload=_size(max_upload),
        anonymous_read=not private,
        max_uploads=max_uploads,
        max_builds=max_builds,
        body_timeout=_seconds(body_timeout),
        min_body_rate=rate or None,
    )
    limits = ServerLimits(
        header_timeout=header_timeout,
        keep_alive=keep_alive,
        max_connections=max_connections,
        backlog=backlog,
    )
    _check_address(host, port)  # before DATA is created: a busy port leaves nothing behind
    storage = open_storage(data, index, blobs)
    temps, dropped = storage.collect_garbage()
    if temps or dropped:
        echo(f"removed {temps} abandoned upload(s) and {dropped} unreferenced blob(s)", err=True)
    from ._tuf_repo import ONLINE_DIR, TufPolicy, TufRepository

    policy = TufPolicy(timestamp=timestamp_expiry, snapshot=snapshot_expiry)
    app = create_app(storage, config, tuf=TufRepository(storage, data / ONLINE_DIR, policy))
    where = f"data: {storage.root}" if index is None and blobs is None else repr(storage)
    echo(f"reflow registry on http://{host}:{port} ({where})", err=True)
    try:
        run_server(app, host=host, port=port, limits=limits, log_level=log_level)
    except SystemExit as exc:  # uvicorn gives up with sys.exit(1) (it logged why)
        if exc.code:
            raise RegistryAdminError(
                f"the server on {host}:{port} could not start (uvicorn exit status {exc.code})"
            ) from None
        raise
    finally:
        storage.close()


# -- tokens ------------------------------------------------------------------------------------


@main.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command("create")
@_data
@click.option("--namespace", required=True, help="Namespace the token acts in ('*': all).")
@click.option("--scope", type=click.Choice(SCOPES), required=True)
@click.option(
    "--ttl-days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Expire after this many days.",
)
@click.option("--label", default="", help="What the token is for (shown by 'token list').")
@click.option("--owner", default=None, help="Owner if the namespace must be created.")
@_json
def token_create(
    data: Path,
    namespace: str,
    scope: str,
    ttl_days: float | None,
    label: str,
    owner: str | None,
    as_json: bool,
) -> None:
    """Create a token and print it (once: only its hash is stored)."""
    with _storage(data) as storage:
        auth = Authenticator(storage)
        _ensure_namespace(auth, namespace, owner)
        rec, secret = auth.create_token(
            namespace, scope, label=label, ttl=ttl_days * 86400 if ttl_days else None
        )
    if as_json:
        echo_json(
            {
                "id": rec.token_id,
                "token": secret,
                "namespace": namespace,
                "scope": scope,
                "expires_at": rec.expires_at,
                "label": label,
            }
        )
        return
    expiry = time.strftime("%Y-%m-%d", time.gmtime(rec.expires_at)) if rec.expires_at else "never"
    echo(f"token {rec.token_id}: scope {scope} in {namespace}, expires {expiry}", err=True)
    echo(secret)


@token.command("list")
@_data
@_json
def token_list(data: Path, as_json: bool) -> None:
    """List tokens (ids, never secrets)."""
    now = time.time()
    with _storage(data) as storage:
        tokens = storage.list_tokens()
        if as_json:
            echo_json(
                [
                    {
                        "id": t.token_id,
                        "namespace": t.namespace,
                        "scope": t.scope,
                        "revoked": bool(t.revoked),
                        "expires_at": t.expires_at,
                        "label": t.label,
                        "parent": t.parent_id,
                    }
                    for t in tokens
                ]
            )
            return
        for t in tokens:
            state = (
                "revoked"
                if t.revoked
                else ("expired" if t.expires_at and t.expires_at <= now else "active")
            )
            exp = time.strftime("%Y-%m-%d", time.gmtime(t.expires_at)) if t.expires_at else "-"
            made_by = f" (made by {t.parent_id})" if t.parent_id else ""
            echo(
                f"{t.token_id}  {t.namespace:<16} {t.scope:<8} {state:<8} "
                f"expires {exp:<10} {t.label}{made_by}"
            )


@token.command("revoke")
@_data
@click.argument("token_id")
@_json
def token_revoke(data: Path, token_id: str, as_json: bool) -> None:
    """Revoke a token by its id, and every token it made over the API (transitively)."""
    with _storage(data) as storage:
        if not storage.revoke_token(token_id):
            raise RegistryAdminError(f"no token {token_id!r} in {storage.root}")
    if as_json:
        echo_json({"revoked": token_id})
        return
    echo(f"revoked {token_id}")


# -- keys --------------------------------------------------------------------------------------


@main.group()
def key() -> None:
    """Register the publisher keys a namespace accepts."""


@key.command("add")
@_data
@click.option("--namespace", required=True)
@click.option("--owner", default=None, help="Owner if the namespace must be created.")
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_json
def key_add(data: Path, namespace: str, owner: str | None, public_key: Path, as_json: bool) -> None:
    """Accept packs signed by PUBLIC_KEY (a .pub PEM file) in NAMESPACE."""
    from ..abi._signing import key_id, load_public_key, public_key_pem

    public = load_public_key(public_key)
    with _storage(data) as storage:
        _ensure_namespace(Authenticator(storage), namespace, owner)
        storage.add_key(namespace, key_id(public), public_key_pem(public))
    if as_json:
        echo_json({"key_id": key_id(public), "namespace": namespace})
        return
    echo(key_id(public))


@key.command("list")
@_data
@click.option("--namespace", required=True)
@_json
def key_list(data: Path, namespace: str, as_json: bool) -> None:
    """List a namespace's keys."""
    with _storage(data) as storage:
        keys = storage.list_keys(namespace)
        if as_json:
            echo_json([{"key_id": k.key_id, "added_at": k.added_at} for k in keys])
            return
        for k in keys:
            added = time.strftime("%Y-%m-%d", time.gmtime(k.added_at))
            echo(f"{k.key_id}  added {added}")


@key.command("remove")
@_data
@click.option("--namespace", required=True)
@click.argument("key_id")
@_json
def key_remove(data: Path, namespace: str, key_id: str, as_json: bool) -> None:
    """Stop accepting packs signed by KEY_ID (published versions stay)."""
    with _storage(data) as storage:
        if not storage.remove_key(namespace, key_id):
            raise RegistryAdminError(f"no key {key_id!r} in namespace {namespace!r}")
    if as_json:
        echo_json({"removed": key_id, "namespace": namespace})
        return
    echo(f"removed {key_id}")


# -- namespaces --------------------------------------------------------------------------------


@main.group()
def namespace() -> None:
    """Create and list namespaces."""


@namespace.command("create")
@_data
@click.argument("name")
@click.option("--owner", required=True, help="Who owns it (a team, an email).")
@_json
def namespace_create(data: Path, name: str, owner: str, as_json: bool) -> None:
    """Create namespace NAME."""
    with _storage(data) as storage:
        Authenticator(storage).create_namespace(name, owner)
    if as_json:
        echo_json({"name": name, "owner": owner})
        return
    echo(f"created namespace {name!r} (owner {owner})")


@namespace.command("list")
@_data
@_json
def namespace_list(data: Path, as_json: bool) -> None:
    """List namespaces and owners."""
    with _storage(data) as storage:
        spaces = storage.list_namespaces()
        if as_json:
            echo_json([{"name": ns.name, "owner": ns.owner} for ns in spaces])
            return
        for ns in spaces:
            echo(f"{ns.name:<24} {ns.owner}")


def _add_tuf() -> None:
    from ._cli_tuf import tuf

    main.add_command(tuf)


_add_tuf()

if __name__ == "__main__":
    main()
