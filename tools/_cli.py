"""``reflow-pack``: build, strip, inspect, sign and verify ``.rflpack`` packs; manage trust.

Every verb has ``--help``. A failure prints one line, ``error: ...``, on stderr and exits
with status 1 (2 for usage errors); ``--debug`` anywhere shows the traceback instead; every
verb that reports something takes ``--json`` (its result, or its error, as JSON on stdout).
The conventions are :mod:`reflow.tools._term`'s.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .._loader._trust import TrustStore
from ..abi._bundle import add_signatures, read_bundle, strip_bundle
from ..abi._manifest import KNOWN_TRIPLES
from ..abi._signing import (
    key_id,
    load_private_key,
    load_public_key,
    sign_manifest,
    verify_manifest,
    write_keypair,
)
from ..abi._version import ABI_VERSION, check_abi_compatible
from ._cli_options import out_dir_option, sign_option
from ._openapi_sdk_alias import add_compat_commands
from ._registry_cli import add_registry_commands
from ._term import ReflowGroup, echo, echo_json, sanitize

__all__ = ["main"]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


_json = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (errors too)."
)

_trust_dir = click.option(
    "--trust-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Trust store directory (default: $REFLOW_TRUST_DIR or ~/.config/reflow/trust).",
)


@click.group(cls=ReflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="reflow", prog_name="reflow-pack")
def main(debug: bool) -> None:
    """Build, sign, strip, inspect and verify reflow packs (.rflpack)."""


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", help="Pack name (default: the directory name).")
@click.option(
    "--lang",
    type=click.Choice(["c"]),
    default="c",
    show_default=True,
    help="Language of the starter actor.",
)
@_json
def new(directory: Path, name: str | None, lang: str, as_json: bool) -> None:
    """Create a working pack project in DIRECTORY."""
    from ._pack_build import new_project

    root = new_project(directory, name=name, lang=lang)
    if as_json:
        echo_json({"created": str(root)})
        return
    echo(f"created {root}: edit src/, then 'reflow-pack build {root}'")


@main.command()
@click.argument(
    "project", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path(".")
)
@out_dir_option
@sign_option()
@click.option(
    "--triple",
    "triples",
    multiple=True,
    type=click.Choice(KNOWN_TRIPLES),
    help="Build only these triples (repeatable; default: the project's targets).",
)
@click.option(
    "--jobs", type=click.IntRange(min=1), default=None, help="Parallel compiler processes."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds one compiler run may take (default: $REFLOW_BUILD_TIMEOUT or 300; "
    "a target's first build on this machine, which fills zig's cache, gets at "
    "least $REFLOW_FIRST_BUILD_TIMEOUT or 900).",
)
@_json
def build(
    project: Path,
    out_dir: Path,
    key_path: Path | None,
    triples: tuple[str, ...],
    jobs: int | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Compile PROJECT's modules with the guest SDK and write a .rflpack."""
    from ._pack_build import build_pack

    key = load_private_key(key_path) if key_path else None
    path = build_pack(
        project,
        out_dir=out_dir,
        key=key,
        triples=triples or None,
        progress=lambda m: echo(m, err=True),
        jobs=jobs,
        timeout=timeout,
    )
    if as_json:
        echo_json({"path": str(path), "signed": key is not None})
        return
    if key is None:
        echo(
            "warning: the pack is unsigned; load_pack refuses it by default "
            "(sign it with 'reflow-pack sign')",
            err=True,
        )
    echo(str(path))


@main.command()
@click.argument("spec", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--name", help="Pack name, e.g. acme/github (required for one SPEC).")
@click.option(
    "--all",
    "all_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Build every description found under this folder's service folders.",
)
@click.option(
    "--namespace", help="With --all: the namespace of every pack (acme -> acme/<service>)."
)
@out_dir_option
@click.option("--version", "pack_version", help="Pack version (default: from info.version).")
@sign_option("Private key to sign the pack(s) with.")
@click.option(
    "--auth",
    multiple=True,
    metavar="SCHEME",
    help="For a description that declares no securitySchemes: bearer, basic or "
    "apikey:<header|query|cookie>:<name> (repeatable: alternatives).",
)
@click.option(
    "--tree",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder that referenced files must lie in (default: SPEC's folder).",
)
@_json
def openapi(
    spec: Path | None,
    name: str | None,
    all_dir: Path | None,
    namespace: str | None,
    out_dir: Path,
    pack_version: str | None,
    key_path: Path | None,
    auth: tuple[str, ...],
    tree: Path | None,
    as_json: bool,
) -> None:
    """Generate an API-service pack from an OpenAPI 3.x / Swagger 2.0 description SPEC
    (JSON or YAML; a multi-file tree's root file), or one pack per description with --all."""
    from ._openapi_pack import build_all, build_openapi_pack

    key = load_private_key(key_path) if key_path else None
    if all_dir is not None:
        if spec is not None or name is not None or tree is not None:
            raise click.UsageError("--all takes no SPEC, --name or --tree (use --namespace)")
        if not namespace:
            raise click.UsageError("--all needs --namespace (e.g. --namespace acme)")
        packs = build_all(
            all_dir,
            namespace=namespace,
            out_dir=out_dir,
            key=key,
            version=pack_version,
            auth=auth,
            progress=None if as_json else (lambda m: echo(m, err=True)),
        )
    else:
        if spec is None or not name:
            raise click.UsageError("give SPEC and --name (or --all FOLDER --namespace NS)")
        packs = [
            build_openapi_pack(
                spec,
                name=name,
                out_dir=out_dir,
                key=key,
                version=pack_version,
                auth=auth,
                tree=tree,
            )
        ]
    if as_json:
        echo_json([p.to_dict() for p in packs] if all_dir is not None else packs[0].to_dict())
        return
    for p in packs:
        if p.report:
            echo(f"{p.name}: {len(p.report)} note(s), e.g. {sanitize(p.report[0])}", err=True)
        echo(f"{p.path} ({p.operations} operations{'' if p.signed else ', UNSIGNED'})")
    if key is None:
        echo("warning: unsigned; load_pack refuses it by default (--sign KEY)", err=True)


@main.command()
@click.argument("pack", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--triple", required=True, help="The triple to keep (portable parts are kept).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file (default: PACK with -TRIPLE before .rflpack).",
)
@_json
def strip(pack: Path, triple: str, out: Path | None, as_json: bool) -> None:
    """Keep the portable artifacts plus one TRIPLE; the signature stays valid."""
    data = strip_bundle(pack, triple)
    stem = pack.name[: -len(".rflpack")] if pack.name.endswith(".rflpack") else pack.name
    out = out or pack.with_name(f"{stem}-{triple}.rflpack")
    was = pack.stat().st_size
    _write(out, data)
    if as_json:
        echo_json({"path": str(out), "size": len(data), "was": was})
        return
    echo(f"{out} ({len(data)} bytes, was {was})")


@main.command()
@click.argument("pack", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_trust_dir
def inspect(pack: Path, as_json: bool, trust_dir: Path | None) -> None:
    """Show what PACK holds and whether it verifies. Runs none of its code."""
    from .._loader._packs import inspect_pack

    info = inspect_pack(pack, trust=TrustStore(trust_dir))
    if as_json:
        echo_json(info.to_dict())
        return
    m = info.manifest
    rows = [
        ("pack", f"{m.name} {m.version}"),
        ("file", f"{info.path} ({info.size} bytes{', stripped' if info.stripped else ''})"),
        ("description", m.description),
        ("license", m.license),
        ("authors", ", ".join(m.authors)),
        ("abi", f"{m.abi} ({'ok' if info.abi_ok else info.abi_message})"),
        ("signature", info.signature_status),
        (
            "capabilities",
            ", ".join(f"{k}: {', '.join(v)}" for k, v in m.capabilities.items()) or "none",
        ),
        ("loads as", ", ".join(f"{k}: {v}" for k, v in info.loads_as.items())),
    ]
    width = max(len(k) for k, _ in rows)
    # one line per field: a pack's newline must not start a line of its own ("signature ok")
    for k, v in rows:
        echo(sanitize(f"{k:<{width}}  {v}"))
    echo("\ntemplates:")
    for t in m.templates:
        echo(
            sanitize(
                f"  {t.id:<32} in={','.join(t.inports) or '-'} "
                f"out={','.join(t.outports) or '-'}  [{t.entry}]  {t.description}"
            )
        )
        if t.wgsl is not None:  # a WGSL kernel: how it is dispatched and what it binds
            k = t.wgsl
            rules = ", ".join(str(r) for r in k.to_dict()["dispatch"])
            echo(
                sanitize(
                    f"    wgsl {k.entry_point} @workgroup_size"
                    f"({','.join(map(str, k.workgroup_size))}) dispatch=[{rules}]"
                )
            )
            for b in k.bindings:
                echo(sanitize(f"      {b.describe()}"))
    echo("\nartifacts:")
    for a in m.artifacts:
        here = "present" if a.path in info.members else "stripped"
        echo(sanitize(f"  {a.triple:<28} {a.kind:<7} {a.size:>9}  {here:<8} {a.path}"))


@main.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key file to write (the public key goes to OUT.pub).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing key.")
@_json
def keygen(out: Path, force: bool, as_json: bool) -> None:
    """Create an Ed25519 signing key pair."""
    priv, pub, kid = write_keypair(out, overwrite=force)
    if as_json:
        echo_json({"key_id": kid, "private_key": str(priv), "public_key": str(pub)})
        return
    echo(
        f"key id {kid}\nprivate key {priv} (keep it secret)\npublic key  {pub} "
        "(share it: 'reflow-pack trust add')"
    )


@main.command()
@click.argument("pack", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private key to sign with.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file (default: sign PACK in place).",
)
@_json
def sign(pack: Path, key_path: Path, out: Path | None, as_json: bool) -> None:
    """Sign PACK's manifest (other signatures are kept)."""
    key = load_private_key(key_path)
    head = read_bundle(pack, head_only=True)
    sig = sign_manifest(head.manifest_bytes, key)
    data = add_signatures(pack, [sig])
    _write(out or pack, data)
    if as_json:
        echo_json({"path": str(out or pack), "key_id": sig.key_id})
        return
    echo(f"signed {out or pack} with key {sig.key_id}")


@main.command()
@click.argument("pack", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "pub_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify against this public key instead of the trust store.",
)
@_trust_dir
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (errors too).")
def verify(pack: Path, pub_path: Path | None, trust_dir: Path | None, as_json: bool) -> None:
    """Check PACK's container, every member's hash, its signature and its ABI."""
    b = read_bundle(pack)
    m = b.manifest
    if pub_path is not None:
        pub = load_public_key(pub_path)
        signer = verify_manifest(
            b.manifest_bytes, b.signatures, {key_id(pub): pub}, pack=f"pack {m.name!r}"
        )
    else:
        signer = TrustStore(trust_dir).verify(
            b.manifest_bytes, b.signatures, pack=f"pack {m.name!r}"
        )
    check_abi_compatible(m.abi_version, ABI_VERSION, what=f"pack {m.name!r} {m.version}")
    if as_json:
        echo_json(
            {
                "ok": True,
                "name": m.name,
                "version": m.version,
                "signer": signer,
                "members": len(b.contents),
                "present_triples": b.present_triples(),
            }
        )
        return
    present = ", ".join(b.present_triples())
    echo(
        f"OK {m.name} {m.version}: signed by {signer}, {len(b.contents)} members "
        f"match the manifest, triples present: {present}"
    )


@main.group()
def trust() -> None:
    """Manage the trust store of publisher keys."""


@trust.command("add")
@click.argument("key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--for",
    "names",
    multiple=True,
    metavar="PATTERN",
    help="Trust the key only for packs whose name matches PATTERN (fnmatch-style, "
    "e.g. 'acme/*'); repeatable, added to the key's existing patterns.",
)
@click.option(
    "--any-name",
    is_flag=True,
    help="Trust the key for packs of ANY name (it can then sign as any publisher).",
)
@_trust_dir
@_json
def trust_add(
    key: Path, names: tuple[str, ...], any_name: bool, trust_dir: Path | None, as_json: bool
) -> None:
    """Trust the public key in KEY (a .pub file) for the pack names given with --for
    (or, explicitly, for any name with --any-name)."""
    if not names and not any_name:
        raise click.UsageError(
            "say which packs KEY may sign: --for PATTERN (e.g. --for 'acme/*'; repeatable), "
            "or --any-name to trust it for every pack name"
        )
    if names and any_name:
        raise click.UsageError("--for and --any-name exclude each other")
    store = TrustStore(trust_dir)
    try:
        kid = store.add(key, names=names, any_name=any_name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--for'") from exc
    entry = next(k for k in store if k.key_id == kid)
    if as_json:
        echo_json({"key_id": kid, "names": list(entry.names or ()), "path": str(store.path)})
        return
    where = (
        "for ANY pack name (limit it with --for 'namespace/*')"
        if entry.any_name
        else f"for {', '.join(entry.names or ()) or 'no pack names'}"
    )
    echo(f"trusted key {kid} {where} ({store.path})")


@trust.command("list")
@_trust_dir
@click.option("--json", "as_json", is_flag=True, help="Print JSON (errors too).")
def trust_list(trust_dir: Path | None, as_json: bool) -> None:
    """List trusted keys."""
    store = TrustStore(trust_dir)
    keys = store.list()
    if as_json:
        echo_json(
            [
                {
                    "key_id": k.key_id,
                    "path": str(k.path),
                    "names": None if k.names is None else list(k.names),
                    "scoped": k.names is not None,
                }
                for k in keys
            ]
        )
        return
    if not keys:
        echo(f"no trusted keys in {store.path}", err=True)
    for k in keys:
        if k.names is None:
            scope = "*  (any pack name; unscoped: bind it with 'trust add KEY.pub --for ...')"
        elif k.names == ("*",):
            scope = "*  (any pack name)"
        else:
            scope = " ".join(k.names) or "(no names)"
        echo(f"{k.key_id}  {k.path}  {scope}")


@trust.command("remove")
@click.argument("key_id")
@_trust_dir
@_json
def trust_remove(key_id: str, trust_dir: Path | None, as_json: bool) -> None:
    """Stop trusting KEY_ID (a key id or an unambiguous prefix)."""
    removed = TrustStore(trust_dir).remove(key_id)
    if as_json:
        echo_json({"removed": removed})
        return
    echo(f"removed key {removed}")


add_registry_commands(main)  # publish, install, search, yank (reflow.registry client)
add_compat_commands(main)  # compat api-services (offbit_reflow's api_* ids)

if __name__ == "__main__":  # python -m reflow.tools._cli
    sys.exit(main())
