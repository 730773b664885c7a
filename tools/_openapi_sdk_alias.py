"""``reflow-pack compat api-services``: offbit_reflow's ``reflow.pack.api_services``, rebuilt.

offbit_reflow ships its API actors as one pack, ``reflow.pack.api_services``, whose
templates are ``api_<service>_<op>`` (``api_github_list_issues``, ``api_slack_send_message``).
This builds a pack of that name from the OpenAPI descriptions under ``../shared/openapi``:
for each id of the alias table (:data:`reflow._loader._sdk_ids.ALIASES`) the generated
operation with the same method and path, renamed to the SDK's id, declaring the SDK's in-ports
as well as the generated ones. One ``http-api`` artifact per service; each service's security
scheme is named after the SDK's credential variable (``GITHUB_API_KEY``, ``SLACK_API_KEY``).

``servers`` replaces a service's servers (``{"github": "http://127.0.0.1:8123"}``: a local spec
server or an enterprise install); the pack's ``http`` capability follows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from .._errors import OpenApiError
from .._loader._sdk_ids import ALIASES, SDK_PACK, SERVICES, SdkAlias
from .._services._table_shared import share_table
from ..abi._bundle import artifact_entry, build_bundle
from ..abi._manifest import PORTABLE_TRIPLE, manifest_from_dict
from ..abi._signing import load_private_key, sign_manifest
from ..abi._version import pack_abi_version
from ._cli_options import out_dir_option, sign_option
from ._openapi_load import LoadLimits, dumps_json, load_spec
from ._openapi_pack import OpenApiPack, _check_with_engine
from ._openapi_table import build_table, server_hosts
from ._pack_build import pack_file_name
from ._term import echo, echo_json

__all__ = [
    "add_compat_commands",
    "build_sdk_api_services_pack",
    "sdk_alias_rows",
    "sdk_service_tables",
]

_RESERVED = ("trigger", "request")


def _rename_scheme(table: dict[str, Any], new: str) -> None:
    """Name the table's one security scheme ``new`` (the SDK's credential variable)."""
    schemes = table["security_schemes"]
    if len(schemes) != 1:
        raise OpenApiError(
            f"the {new} service has {len(schemes)} security schemes; the compat pack takes one"
        )
    (old,) = schemes
    table["security_schemes"] = {new: schemes[old]}

    def requirement(req: Any) -> Any:
        if not isinstance(req, list):
            return req
        return [{(new if k == old else k): v for k, v in r.items()} for r in req]

    table["security"] = requirement(table.get("security"))
    for op in table["operations"].values():
        op["security"] = requirement(op.get("security"))
        for c in op.get("credentials") or ():
            if c.get("scheme") == old:
                c["scheme"] = new


def _service_table(
    spec_root: Path,
    service: str,
    aliases: Sequence[SdkAlias],
    server: str | None,
    report: list[str],
) -> tuple[dict[str, Any], dict[str, tuple[list[str], list[str], str]], list[str]]:
    svc = SERVICES[service]
    spec = load_spec(spec_root / svc.spec, limits=LoadLimits())
    gen = build_table(spec, name=SDK_PACK, auth=svc.auth)
    by_route = {(op["method"], op["path"]): s for s, op in gen.table["operations"].items()}
    operations: dict[str, Any] = {}
    ports: dict[str, tuple[list[str], list[str], str]] = {}
    for a in aliases:
        suffix = by_route.get((a.method, a.path))
        if suffix is None:  # an older description: the id is left out, and said so
            report.append(f"{a.sdk_id}: {svc.spec} has no operation {a.method} {a.path}")
            continue
        op = dict(gen.table["operations"][suffix])
        ins, outs, line = gen.ports[suffix]
        keys = {p["key"] for p in op["parameters"]}
        keys |= {f["key"] for f in (op.get("body") or {}).get("fields", [])}
        extra = [p for p in a.inports if p in keys and p not in ins]
        operations[a.sdk_id] = op
        ports[a.sdk_id] = ([*ins, *extra], list(outs), f"{line} (offbit_reflow {a.sdk_id})")
    table = {**gen.table, "operations": operations}
    if server is not None:
        table["servers"] = [{"url": server}]
        for op in operations.values():
            op["servers"] = None
    _rename_scheme(table, svc.env)
    hosts = [h for s in table["servers"] for h in server_hosts(s)]
    return table, ports, hosts


def build_sdk_api_services_pack(
    spec_root: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str],
    key: Any = None,
    servers: Mapping[str, str] | None = None,
    version: str = "0.2.0",
) -> OpenApiPack:
    """Write ``out_dir/reflow.pack.api_services-<version>.rflpack`` (signed with ``key``)."""
    start = time.perf_counter()
    root = Path(spec_root)
    servers = dict(servers or {})
    unknown = sorted(set(servers) - set(SERVICES))
    if not root.is_dir():
        raise OpenApiError(f"{root}: not a folder of OpenAPI descriptions", file=str(root))
    if unknown:
        raise OpenApiError(
            f"--server names no service of the compat pack: {', '.join(unknown)} "
            f"(services: {', '.join(sorted(SERVICES))})"
        )
    templates: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    hosts: list[str] = []
    report: list[str] = []
    for service in SERVICES:
        aliases = [a for a in ALIASES if a.service == service]
        table, ports, svc_hosts = _service_table(
            root, service, aliases, servers.get(service), report
        )
        data = dumps_json(share_table(table))
        _check_with_engine(data, SDK_PACK, str(root / SERVICES[service].spec))
        path = f"artifacts/{PORTABLE_TRIPLE}/{service}.json"
        files[path] = data
        artifacts.append(artifact_entry(service, PORTABLE_TRIPLE, "http-api", path, data).to_dict())
        hosts += [h for h in svc_hosts if h not in hosts]
        for sdk_id, (ins, outs, line) in ports.items():
            templates.append(
                {
                    "id": f"{SDK_PACK}/{sdk_id}",
                    "entry": service,
                    "engine": "http-api",
                    "description": line,
                    "inports": ins,
                    "outports": outs,
                }
            )
    doc: dict[str, Any] = {
        "format": 1,
        "name": SDK_PACK,
        "version": version,
        "abi": pack_abi_version(),
        "description": "offbit_reflow's api_services ids over generated operation tables "
        f"({', '.join(SERVICES)})",
        "capabilities": {"http": hosts},
        "templates": templates,
        "artifacts": artifacts,
    }
    manifest = manifest_from_dict(doc)
    mbytes = manifest.to_toml()
    sigs = [sign_manifest(mbytes, key)] if key is not None else []
    bundle = build_bundle(mbytes, files, sigs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / pack_file_name(manifest)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(bundle)
    os.replace(tmp, target)
    return OpenApiPack(
        path=target,
        name=SDK_PACK,
        version=manifest.version,
        operations=len(templates),
        table_bytes=sum(len(b) for b in files.values()),
        manifest_bytes=len(mbytes),
        hosts=hosts,
        signed=bool(sigs),
        seconds=time.perf_counter() - start,
        report=report,
    )


def sdk_service_tables(spec_root: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The compat pack's operation table per service, with the descriptions' own servers
    (what ``reflow.testing.spec_server`` serves in tests)."""
    root = Path(spec_root)
    return {
        service: _service_table(
            root, service, [a for a in ALIASES if a.service == service], None, []
        )[0]
        for service in SERVICES
    }


def sdk_alias_rows() -> list[tuple[str, str, str]]:
    """``(sdk id, method path, service)`` for every alias (docs and ``--list``)."""
    return [(a.sdk_id, f"{a.method} {a.path}", a.service) for a in ALIASES]


def _parse_servers(values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        service, sep, url = v.partition("=")
        if not sep or not service or not url:
            raise click.UsageError(f"--server takes SERVICE=URL, got {v!r}")
        out[service] = url
    return out


def add_compat_commands(main: click.Group) -> None:
    """``reflow-pack compat api-services``."""

    @main.group()
    def compat() -> None:
        """Packs that give offbit_reflow programs the ids they ask for."""

    @compat.command("api-services")
    @click.option(
        "--specs",
        "spec_root",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("../shared/openapi"),
        show_default=True,
        help="Folder holding github/ and slack/ descriptions.",
    )
    @out_dir_option
    @sign_option()
    @click.option(
        "--server",
        "server_opts",
        multiple=True,
        metavar="SERVICE=URL",
        help="Send SERVICE's requests to URL instead of its description's server (repeatable).",
    )
    @click.option("--list", "list_only", is_flag=True, help="Print the alias table and exit.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
    def api_services(
        spec_root: Path,
        out_dir: Path,
        key_path: Path | None,
        server_opts: tuple[str, ...],
        list_only: bool,
        as_json: bool,
    ) -> None:
        """Build reflow.pack.api_services: offbit_reflow's api_* ids (GitHub, Slack) as
        templates of operations generated from the OpenAPI descriptions."""
        if list_only:
            rows = sdk_alias_rows()
            if as_json:
                echo_json([{"id": i, "operation": o, "service": s} for i, o, s in rows])
                return
            for i, o, _ in rows:
                echo(f"{i}  {o}")
            return
        key = load_private_key(key_path) if key_path else None
        pack = build_sdk_api_services_pack(
            spec_root, out_dir=out_dir, key=key, servers=_parse_servers(server_opts)
        )
        if as_json:
            echo_json(pack.to_dict())
            return
        for note in pack.report:
            echo(f"note: {note}", err=True)
        echo(f"{pack.path} ({pack.operations} templates{'' if pack.signed else ', UNSIGNED'})")
        if key is None:
            echo("warning: unsigned; load_pack refuses it by default (--sign KEY)", err=True)
