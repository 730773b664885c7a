"""The registry verbs of ``reflow-pack``: publish, install, search, yank.

They are plain click commands; ``add_registry_commands(group)`` adds them to the
``reflow-pack`` group (whose error handling turns a ReflowError into one ``error: ...`` line).
``main`` is the same commands as a group of their own, for tests and for use without the
rest of the CLI.

The registry is ``--registry``, else ``$REFLOW_REGISTRY``, else ``http://127.0.0.1:8700``;
the token ``--token``, else ``$REFLOW_REGISTRY_TOKEN``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ._term import ReflowGroup, echo, echo_json, sanitize

__all__ = ["COMMANDS", "add_registry_commands", "install", "main", "publish", "search", "yank"]

DEFAULT_REGISTRY = "http://127.0.0.1:8700"

_registry = click.option(
    "--registry",
    envvar="REFLOW_REGISTRY",
    default=DEFAULT_REGISTRY,
    show_default=True,
    help="Registry URL (env REFLOW_REGISTRY).",
)
_token = click.option(
    "--token",
    envvar="REFLOW_REGISTRY_TOKEN",
    default=None,
    help="API token (env REFLOW_REGISTRY_TOKEN).",
)
_insecure = click.option(
    "--insecure",
    is_flag=True,
    expose_value=False,
    callback=lambda ctx, _param, value: ctx.meta.__setitem__("reflow.insecure", value),
    help="Send the token even over plain http:// to a registry that is not on loopback.",
)
_trust = click.option(
    "--trust-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Trust store directory (default: $REFLOW_TRUST_DIR or ~/.config/reflow/trust).",
)
_cache = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Download cache (default: $REFLOW_CACHE_DIR/registry or ~/.cache/reflow/registry).",
)


def _client(registry: str, token: str | None, **kw: Any) -> Any:
    from ..registry._client import RegistryClient

    insecure = bool(click.get_current_context().meta.get("reflow.insecure"))
    return RegistryClient(registry, token=token, insecure=insecure, **kw)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int | None], None]]:
    """A progress callback drawing a bar on stderr (silent when stderr is not a terminal)."""
    bar: Any = None
    last = 0

    def update(done: int, total: int | None) -> None:
        nonlocal bar, last
        if bar is None:
            if not _isatty(sys.stderr):
                return  # click would still print the label once: keep logs clean
            bar = click.progressbar(
                length=total or 0, label=label, file=sys.stderr, show_pos=False, show_percent=True
            )
            bar.__enter__()
        bar.update(done - last)
        last = done

    try:
        yield update
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


class _BadSpec(click.BadParameter):
    """A usage error (exit status 2) shown as one line, like every other error here."""

    def show(self, file: Any = None) -> None:
        echo(f"error: {sanitize(self.format_message())}", err=True)


def _spec(spec: str) -> str:
    from ..registry._semver import parse_spec

    try:
        parse_spec(spec)
    except ValueError as exc:
        raise _BadSpec(str(exc), param_hint="SPEC") from None
    return spec


_json = click.option("--json", "as_json", is_flag=True, help="Print JSON (errors too).")
_key = click.option(
    "--key",
    "key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Publisher private key: signs the namespace's metadata on a registry with a pinned root.",
)


@click.command()
@click.argument(
    "packs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_registry
@_token
@_insecure
@click.option(
    "--namespace",
    default=None,
    metavar="NS",
    help="Namespace for a pack named without one (e.g. 'my-pack'); default: the "
    "token's namespace. A pack named 'ns/name' always goes to 'ns'.",
)
@_key
@_cache
@_json
def publish(
    packs: tuple[Path, ...],
    registry: str,
    token: str | None,
    namespace: str | None,
    key: Path | None,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """Upload PACKS (full, signed .rflpack files, e.g. dist/*.rflpack) to the registry.

    A pack named 'acme/my-pack' is published as acme/my-pack. A pack named just 'my-pack'
    (as 'reflow-pack new' makes it) is published in --namespace, else in the namespace of
    the token; namespaced names are recommended for published packs (see registry/API.md).
    With several PACKS each is tried: a failure is one 'error: FILE: ...' line, the others
    still go, and the exit status is 1 (publishing again is safe: unchanged packs say so)."""
    if len(packs) > 1:
        _publish_many(packs, registry, token, namespace, key, cache_dir, as_json)
        return
    (pack,) = packs
    with (
        _client(registry, token, cache_dir=cache_dir) as client,
        _progress(f"uploading {pack.name}") as bar,
    ):
        doc = client.publish(pack, namespace=namespace, progress=bar, key=key)
    if as_json:
        echo_json({**doc, "unchanged": bool(doc.get("unchanged"))})
        return
    _say_published(doc)


def _publish_many(
    packs: tuple[Path, ...],
    registry: str,
    token: str | None,
    namespace: str | None,
    key: Path | None,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    from .._errors import ReflowError

    results: list[dict[str, Any]] = []
    with _client(registry, token, cache_dir=cache_dir) as client:
        for pack in packs:
            try:
                with _progress(f"uploading {pack.name}") as bar:
                    doc = client.publish(pack, namespace=namespace, progress=bar, key=key)
            except ReflowError as exc:
                results.append(
                    {"path": str(pack), "error": {"type": type(exc).__name__, "message": str(exc)}}
                )
                if not as_json:
                    echo(f"error: {sanitize(f'{pack}: {exc}')}", err=True)
                continue
            results.append({"path": str(pack), **doc, "unchanged": bool(doc.get("unchanged"))})
            if not as_json:
                _say_published(doc)
    failed = sum(1 for r in results if "error" in r)
    if as_json:
        echo_json(results)
    elif failed:
        echo(f"error: {failed} of {len(packs)} packs not published", err=True)
    if failed:
        raise click.exceptions.Exit(1)


def _say_published(doc: dict[str, Any]) -> None:
    variants = ", ".join(sorted(k for k in doc["variants"] if k != "full")) or "none"
    done = "already published, unchanged:" if doc.get("unchanged") else "published"
    echo(
        sanitize(
            f"{done} {doc['full_name']} {doc['version']} ({doc['size']} bytes, signed "
            f"by {doc['key_id']}; slim variants: {variants})"
        )
    )


@click.command()
@click.argument("spec")
@_registry
@_token
@_insecure
@click.option(
    "--triple", default=None, help="Download the variant for this triple (default: this machine's)."
)
@_trust
@_cache
@click.option("--offline", is_flag=True, help="Use only the local cache.")
@click.option("--load", "do_load", is_flag=True, help="Also load it now (checks it runs here).")
@_json
def install(
    spec: str,
    registry: str,
    token: str | None,
    triple: str | None,
    trust_dir: Path | None,
    cache_dir: Path | None,
    offline: bool,
    do_load: bool,
    as_json: bool,
) -> None:
    """Install SPEC (namespace/name@range, e.g. acme/tools@^1.2): resolve, download the
    variant for this machine, verify it against the trust store, and cache it."""
    _spec(spec)
    with (
        _client(registry, token, trust=trust_dir, cache_dir=cache_dir, offline=offline) as client,
        _progress(f"downloading {spec}") as bar,
    ):
        got = client.install(spec, triple=triple, progress=bar)
    source = "cache" if got.from_cache else registry
    templates = None
    if do_load:
        from .._loader._packs import load_pack

        templates = sorted(load_pack(got.path, trust=trust_dir).templates)
    if as_json:
        echo_json(
            {
                "name": got.name,
                "version": got.version,
                "variant": got.variant,
                "from_cache": got.from_cache,
                "signer": got.signer,
                "path": str(got.path),
                "templates": templates,
            }
        )
        return
    echo(
        sanitize(
            f"installed {got.name} {got.version} ({got.variant}) from {source}, signed "
            f"by {got.signer}: {got.path}"
        )
    )
    if templates is not None:
        echo(sanitize(f"loaded templates: {', '.join(templates)}"))


@click.command()
@click.argument("query", default="")
@_registry
@_token
@_insecure
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def search(query: str, registry: str, token: str | None, limit: int, as_json: bool) -> None:
    """Find packs whose name, description or templates contain QUERY."""
    with _client(registry, token) as client:
        hits = client.search(query, limit=limit)
    if as_json:
        echo_json(hits)
        return
    if not hits:
        echo(f"no packs match {query!r}", err=True)
        return
    width = max(len(h["full_name"]) for h in hits)
    for h in hits:
        echo(sanitize(f"{h['full_name']:<{width}}  {h['version']:<10}  {h['description'][:70]}"))


@click.command()
@click.argument("spec")
@_registry
@_token
@_insecure
@click.option("--reason", default="", help="Why (shown to anyone who looks at the version).")
@click.option("--undo", is_flag=True, help="Unyank: make the version installable by ranges again.")
@_key
@_cache
@_json
def yank(
    spec: str,
    registry: str,
    token: str | None,
    reason: str,
    undo: bool,
    key: Path | None,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """Withdraw SPEC (namespace/name@version): ranges stop choosing it; exact pins still
    install it, so nothing that depends on it breaks."""
    _spec(spec)
    with _client(registry, token, cache_dir=cache_dir) as client:
        try:
            doc = client.unyank(spec, key=key) if undo else client.yank(spec, reason, key=key)
        except ValueError as exc:
            raise _BadSpec(str(exc), param_hint="SPEC") from None
    if as_json:
        echo_json(doc)
        return
    state = "yanked" if doc["yanked"] else "restored"
    echo(sanitize(f"{state} {doc['full_name']} {doc['version']}"))


@click.group("registry")
def registry_group() -> None:
    """Registries this machine trusts (their signed metadata's root)."""


@registry_group.command("add")
@click.argument("url")
@click.option(
    "--root",
    "root",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The registry's root.json, from its operator ('reflow-registry tuf init' wrote it).",
)
@click.option("--replace", is_flag=True, help="Replace a different root pinned before.")
@_cache
@_json
def registry_add(
    url: str, root: Path, replace: bool, cache_dir: Path | None, as_json: bool
) -> None:
    """Pin ROOT as the trusted root of the registry at URL: from now on versions, yanks and
    downloads from it are checked against its signed metadata. The root is never taken
    from the network; rotations signed by it reach this machine by themselves."""
    from ..registry._client import RegistryClient

    with RegistryClient(url, cache_dir=cache_dir) as client:
        doc = client.pin_root(root.read_bytes(), replace=replace)
    if as_json:
        echo_json(doc)
        return
    echo(
        sanitize(
            f"trusting {doc['url']}: root version {doc['root_version']}, expires "
            f"{doc['expires']}, root keys {', '.join(k[:16] for k in doc['keys'])}"
        )
    )


COMMANDS: tuple[click.Command, ...] = (publish, install, search, yank, registry_group)


def add_registry_commands(group: click.Group) -> None:
    """Add publish / install / search / yank to ``group`` (the ``reflow-pack`` CLI)."""
    for command in COMMANDS:
        group.add_command(command)


@click.group(cls=ReflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def main(debug: bool) -> None:
    """Publish, install, search and yank packs on a reflow registry."""


add_registry_commands(main)
