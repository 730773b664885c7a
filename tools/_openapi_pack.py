"""``reflow-pack openapi``: an OpenAPI / Swagger description -> a signed API-service
``.rflpack`` (abi/HTTP_API.md, "In the pack"), one pack per description or all of a folder.

The pack holds one artifact, the operation table ``api.json`` (kind ``http-api``, under the
portable triple), and one small template per operation; it goes through the same manifest
validation, bundle writer and signing as every pack (:mod:`reflow.tools._pack_build`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import OpenApiError
from ..abi._bundle import artifact_entry, build_bundle
from ..abi._manifest import PORTABLE_TRIPLE, manifest_from_dict
from ..abi._manifest_rules import MAX_LIST, MAX_MANIFEST, MAX_TEMPLATES
from ..abi._signing import sign_manifest
from ..abi._version import pack_abi_version
from ._openapi_load import LoadLimits, load_spec
from ._openapi_table import build_table
from ._pack_build import pack_file_name

__all__ = ["OpenApiPack", "build_all", "build_openapi_pack", "find_specs", "pack_version"]

ENTRY = "api"
TABLE_PATH = f"artifacts/{PORTABLE_TRIPLE}/api.json"
_SEMVER = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
_SPEC_EXT = (".json", ".yaml", ".yml", ".json.unprocessed")
_SNIFF_YAML = re.compile(rb"^(openapi|swagger)\s*:", re.M)
_SNIFF_JSON = re.compile(rb'"(openapi|swagger)"\s*:\s*"[23]\.')


def pack_version(text: Any) -> str:
    """The pack version for ``info.version``: itself when it starts with ``X.Y.Z``, else its
    first three numbers (``2023-08-16`` -> ``2023.8.16``, ``v2`` -> ``2.0.0``, ``""`` ->
    ``0.0.0``)."""
    s = str(text or "").strip()
    m = _SEMVER.match(s)
    if m and (len(s) == m.end() or not s[m.end()].isdigit()):
        return m.group(0)
    nums = [str(int(n[:9])) for n in re.findall(r"[0-9]+", s)][:3]
    return ".".join([*nums, "0", "0", "0"][:3])


@dataclass
class OpenApiPack:
    """What one build wrote and measured."""

    path: Path
    name: str
    version: str
    operations: int
    table_bytes: int
    manifest_bytes: int
    hosts: list[str]
    signed: bool
    seconds: float
    report: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.name,
            "version": self.version,
            "operations": self.operations,
            "table_bytes": self.table_bytes,
            "manifest_bytes": self.manifest_bytes,
            "hosts": self.hosts,
            "signed": self.signed,
            "seconds": round(self.seconds, 3),
            "report": self.report,
        }


def build_openapi_pack(
    spec_path: str | os.PathLike[str],
    *,
    name: str,
    out_dir: str | os.PathLike[str],
    key: Any = None,
    version: str | None = None,
    auth: Sequence[str] = (),
    tree: str | os.PathLike[str] | None = None,
    limits: LoadLimits | None = None,
) -> OpenApiPack:
    """Generate the table of ``spec_path`` and write ``out_dir/<name>-<version>.rflpack``,
    signed with ``key`` (an Ed25519 private key) when given."""
    start = time.perf_counter()
    spec = load_spec(spec_path, tree=tree, limits=limits or LoadLimits())
    gen = build_table(spec, name=name, auth=auth)
    table = gen.to_bytes()
    _check_with_engine(table, name, str(spec_path))
    if len(gen.ports) > MAX_TEMPLATES:
        raise OpenApiError(
            f"{len(gen.ports)} operations, over the limit of {MAX_TEMPLATES} templates a pack "
            "may hold (split the description)",
            file=str(spec_path),
        )
    hosts = gen.hosts[:MAX_LIST]
    doc: dict[str, Any] = {
        "format": 1,
        "name": name,
        "version": version or pack_version(gen.table["service"]["version"]),
        "abi": pack_abi_version(),
        "description": f"{gen.table['service']['title']} (HTTP API, {len(gen.ports)} operations)",
        "capabilities": {"http": hosts} if hosts else {},
        "templates": [
            {
                "id": f"{name}/{suffix}",
                "entry": ENTRY,
                "engine": "http-api",
                "description": line,
                "inports": inports,
                "outports": outports,
            }
            for suffix, (inports, outports, line) in gen.ports.items()
        ],
        "artifacts": [
            artifact_entry(ENTRY, PORTABLE_TRIPLE, "http-api", TABLE_PATH, table).to_dict()
        ],
    }
    license_ = (spec.root.get("info") or {}).get("license")
    if isinstance(license_, dict) and isinstance(license_.get("name"), str):
        doc["license"] = license_["name"][:200]
    manifest = manifest_from_dict(doc)
    mbytes = manifest.to_toml()
    if len(mbytes) > MAX_MANIFEST:
        raise OpenApiError(
            f"the manifest would be {len(mbytes)} bytes, over the limit of {MAX_MANIFEST}",
            file=str(spec_path),
        )
    sigs = [sign_manifest(mbytes, key)] if key is not None else []
    data = build_bundle(mbytes, {TABLE_PATH: table}, sigs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / pack_file_name(manifest)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return OpenApiPack(
        path=target,
        name=name,
        version=manifest.version,
        operations=len(gen.ports),
        table_bytes=len(table),
        manifest_bytes=len(mbytes),
        hosts=hosts,
        signed=bool(sigs),
        seconds=time.perf_counter() - start,
        report=list(gen.report),
    )


def _check_with_engine(table: bytes, name: str, spec: str) -> None:
    """Read every operation back with the engine's own checks, so a table the engine would
    refuse at run time is an error here, at generation."""
    from .._errors import PackFormatError
    from .._services._table import load_table

    try:
        checked = load_table(table, pack=name, hosts=("*",))
        _ = checked.schemas  # decoded lazily by the engine: checked here, at generation
        for suffix in checked.suffixes:
            checked.operation(suffix)
    except PackFormatError as exc:
        raise OpenApiError(
            f"the generated table is not one the engine accepts: {exc}", file=spec
        ) from None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64] or "api"


def _is_root(path: Path, limit: int) -> bool:
    try:
        if path.stat().st_size > limit or not path.is_file():
            return False
        data = path.read_bytes()
    except OSError:
        return False
    if data.lstrip()[:1] in (b"{", b"["):
        return bool(_SNIFF_JSON.search(data))
    return bool(_SNIFF_YAML.search(data))


def find_specs(
    folder: str | os.PathLike[str], limits: LoadLimits | None = None
) -> list[tuple[str, Path]]:
    """``(pack base name, root file)`` for every description under each service folder of
    ``folder``: files whose top level has an ``openapi`` or ``swagger`` key. One in a service
    folder: the folder's name; several: ``<folder>-<file stem>`` (the stem alone when it
    starts with the folder's name), plus the extension where stems collide."""
    root = Path(folder)
    if not root.is_dir():
        raise OpenApiError(f"{root} is not a folder of service folders")
    found: list[tuple[str, Path]] = []
    for service in sorted(p for p in root.iterdir() if p.is_dir()):
        specs = sorted(
            p
            for p in service.rglob("*")
            if p.name.endswith(_SPEC_EXT) and _is_root(p, (limits or LoadLimits()).max_file_bytes)
        )
        if len(specs) == 1:
            found.append((_slug(service.name), specs[0]))
            continue
        stems = [p.name.split(".")[0] for p in specs]
        for p, stem in zip(specs, stems, strict=True):
            base = stem if stem.startswith(service.name) else f"{service.name}-{stem}"
            if stems.count(stem) > 1:
                base += "-" + p.name.split(".", 1)[1]
            found.append((_slug(base), p))
    return found


def build_all(
    folder: str | os.PathLike[str],
    *,
    namespace: str,
    out_dir: str | os.PathLike[str],
    key: Any = None,
    version: str | None = None,
    auth: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> list[OpenApiPack]:
    """One pack ``<namespace>/<base name>`` per description :func:`find_specs` finds."""
    say = progress or (lambda _m: None)
    built = []
    for base, path in find_specs(folder):
        pack = build_openapi_pack(
            path, name=f"{namespace}/{base}", out_dir=out_dir, key=key, version=version, auth=auth
        )
        say(f"{pack.name}: {pack.operations} operations -> {pack.path}")
        built.append(pack)
    if not built:
        raise OpenApiError(f"no OpenAPI or Swagger description found under {folder}")
    return built
