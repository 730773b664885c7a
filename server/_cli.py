"""``reflow-server``: serve the execution server with uvicorn on embedded defaults.

It binds 127.0.0.1:8765 unless told otherwise. The bearer token is ``--token``, the first line
of ``--token-file`` or ``$REFLOW_SERVER_TOKEN``; with none of them a random token is made and
printed. ``--no-auth`` is refused unless the address is loopback. A refusal prints one line,
``error: ...``, and exits 2. ``--otlp URL`` (or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``)
exports a trace per execution over OTLP/HTTP.
"""

from __future__ import annotations

import errno
import socket
import sys

import click

from reflow import ReflowError

from ._app import ServerConfig, create_app
from ._auth import check_bind, resolve_token
from ._errors import ServerConfigError
from ._limits import ServerLimits, ws_protocol

__all__ = ["main"]


def _check_port(host: str, port: int) -> None:
    """Refuse, in one ``error:`` line and before the banner, an address that cannot be bound
    (uvicorn would print its own lines after ours and exit 3)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ServerConfigError(f"cannot serve on {host}:{port}: unknown address ({exc})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(addr)
        except OSError as exc:
            busy = exc.errno == errno.EADDRINUSE
            why = "is already in use; pick another --port" if busy else f"cannot be bound: {exc}"
            raise ServerConfigError(f"address {host}:{port} {why}", option="--port") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", default=None, help="bearer token (else --token-file, env, random)")
@click.option("--token-file", default=None, help="a file whose first line is the token")
@click.option("--no-auth", is_flag=True, help="no token at all (loopback addresses only)")
@click.option("--trust", default=None, help="trust store directory packs are verified against")
@click.option("--registry", default=None, help="pack registry URL for packs given by name")
@click.option(
    "--otlp",
    default=None,
    metavar="URL",
    help="export a trace per execution to this OTLP/HTTP endpoint (e.g. http://127.0.0.1:4318; "
    "default: $OTEL_EXPORTER_OTLP_ENDPOINT, else no traces)",
)
@click.option("--max-running", default=ServerLimits.max_running, show_default=True, type=int)
@click.option("--max-queued", default=ServerLimits.max_queued, show_default=True, type=int)
@click.option(
    "--max-run-seconds", default=ServerLimits.max_run_seconds, show_default=True, type=float
)
@click.option("--max-body-bytes", default=ServerLimits.max_body_bytes, show_default=True, type=int)
@click.option("--max-pack-bytes", default=ServerLimits.max_pack_bytes, show_default=True, type=int)
@click.option("--max-nodes", default=ServerLimits.max_nodes, show_default=True, type=int)
@click.option("--max-edges", default=ServerLimits.max_edges, show_default=True, type=int)
@click.option(
    "--client-queue",
    default=ServerLimits.client_queue,
    show_default=True,
    type=int,
    help="events buffered per WebSocket client before it loses some",
)
def main(
    host: str,
    port: int,
    token: str | None,
    token_file: str | None,
    no_auth: bool,
    trust: str | None,
    registry: str | None,
    otlp: str | None,
    max_running: int,
    max_queued: int,
    max_run_seconds: float,
    max_body_bytes: int,
    max_pack_bytes: int,
    max_nodes: int,
    max_edges: int,
    client_queue: int,
) -> None:
    """Run graphs over HTTP, stream their events over WebSocket, watch them at /."""
    try:
        check_bind(host, no_auth)
        _check_port(host, port)
        made = False
        chosen: str | None = None
        if not no_auth:
            chosen, made = resolve_token(token, token_file)
        limits = ServerLimits(
            max_running=max_running,
            max_queued=max_queued,
            max_run_seconds=max_run_seconds,
            max_body_bytes=max_body_bytes,
            max_pack_bytes=max_pack_bytes,
            max_nodes=max_nodes,
            max_edges=max_edges,
            client_queue=client_queue,
        )
        app = create_app(
            ServerConfig(token=chosen, limits=limits, trust=trust, registry=registry, otlp=otlp)
        )
    except ReflowError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    import uvicorn

    shown = f"[{host}]" if ":" in host else host
    click.echo(f"reflow-server: http://{shown}:{port}/ (live view), API at /api/v1", err=True)
    if made:
        click.echo(f"reflow-server: token (made for this run): {chosen}", err=True)
    elif no_auth:
        click.echo("reflow-server: auth is off (loopback only)", err=True)
    if app.state.tracing is not None:
        click.echo("reflow-server: exporting a trace per execution over OTLP/HTTP", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", ws=ws_protocol())


if __name__ == "__main__":
    main()
