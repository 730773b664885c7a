"""Build a pack project (a folder with ``pack.toml``) into a ``.rflpack``; scaffold new ones.

A project's ``pack.toml`` (PACK_FORMAT.md §6)::

    [pack]
    name = "my-pack"
    version = "0.1.0"
    description = "..."
    license = "MIT"
    authors = ["Me <me@example.com>"]
    readme = "README.md"            # optional, shipped in the pack
    license_file = "LICENSE"        # optional, shipped in the pack
    targets = ["wasm32-unknown-unknown", "x86_64-unknown-linux-gnu"]   # default: all

    [capabilities]
    http = ["api.example.com"]

    [[modules]]                     # one compiled module per entry; several templates each
    name = "my_pack"
    language = "c"
    sources = ["src/my_pack.c"]

    [[kernels]]                     # a WGSL compute kernel (PACK_FORMAT.md §3.1)
    name = "saxpy"
    source = "kernels/saxpy.wgsl"   # its templates are listed in [[templates]]

Templates (ids, ports, config schema) come from the module itself — its describe document,
read from the freshly built WebAssembly (or the host's native library) — unless the project
lists ``[[templates]]`` explicitly. Building the same sources twice gives the same bytes.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import GuestBuildError, PackFormatError
from ..abi._bounded import load_toml
from ..abi._bundle import artifact_entry, build_bundle, file_entry
from ..abi._manifest import (
    KNOWN_TRIPLES,
    PORTABLE_TRIPLE,
    Artifact,
    PackFile,
    PackManifest,
    TemplateSpec,
    host_triples,
    manifest_from_dict,
    templates_from_describe,
)
from ..abi._manifest_rules import check_member_path
from ..abi._signing import sign_manifest
from ..abi._version import pack_abi_version
from ._guest_build import NATIVE_TARGETS, WASM_TARGET, artifact_name, build_guest

__all__ = [
    "BUILD_TARGETS",
    "PackProject",
    "build_pack",
    "new_project",
    "pack_file_name",
    "read_project",
]

#: Rust triple -> target name of reflow.tools._guest_build.
BUILD_TARGETS: dict[str, str] = {
    PORTABLE_TRIPLE: WASM_TARGET,
    "x86_64-unknown-linux-gnu": "x86_64-linux-gnu",
    "aarch64-unknown-linux-gnu": "aarch64-linux-gnu",
    "x86_64-apple-darwin": "x86_64-macos",
    "aarch64-apple-darwin": "aarch64-macos",
    "x86_64-pc-windows-gnu": "x86_64-windows",
}
assert set(BUILD_TARGETS.values()) == {WASM_TARGET, *NATIVE_TARGETS}
assert set(BUILD_TARGETS) == set(KNOWN_TRIPLES)

PROJECT_FILE = "pack.toml"


_MODULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?")
_MAX_PROJECT_FILE = 1 << 20


def module_entry(name: str) -> str:
    """The manifest entry (and artifact file stem) of module ``name``: a namespaced name
    (``acme/my-pack``) gets ``-`` for ``/``, as the pack file name does, so no build output
    or pack member gains a directory level from it."""
    return name.replace("/", "-")


@dataclass
class PackModule:
    name: str
    sources: list[Path]
    language: str = "c"

    @property
    def entry(self) -> str:
        return module_entry(self.name)


@dataclass
class PackProject:
    root: Path
    meta: dict[str, Any]
    modules: list[PackModule]
    targets: list[str]
    capabilities: dict[str, list[str]] = field(default_factory=dict)
    templates: list[dict[str, Any]] = field(default_factory=list)
    kernels: list[PackKernel] = field(default_factory=list)


@dataclass
class PackKernel:
    """A ``[[kernels]]`` table: WGSL source shipped as an artifact of kind ``wgsl``."""

    name: str
    source: Path

    @property
    def entry(self) -> str:
        return module_entry(self.name)


def _bad(project: Path, what: str) -> PackFormatError:
    return PackFormatError(f"{project / PROJECT_FILE}: {what}", member=PROJECT_FILE)


def read_project(root: str | os.PathLike[str]) -> PackProject:
    """Parse and check ``root/pack.toml``."""
    root = Path(root)
    path = root / PROJECT_FILE
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_PROJECT_FILE + 1)
    except FileNotFoundError:
        raise PackFormatError(
            f"{root} is not a pack project: no {PROJECT_FILE} (create one with 'reflow-pack new')"
        ) from None
    except OSError as exc:
        raise _bad(root, f"cannot be read: {exc.strerror}") from exc
    doc = load_toml(raw, str(path), max_size=_MAX_PROJECT_FILE)
    extra = sorted(set(doc) - {"pack", "capabilities", "modules", "templates", "kernels"})
    if extra:
        raise _bad(root, f"unknown table [{extra[0]}]")
    meta = doc.get("pack")
    if not isinstance(meta, dict):
        raise _bad(root, "needs a [pack] table with name and version")
    targets = meta.pop("targets", list(KNOWN_TRIPLES))
    if not isinstance(targets, list) or not all(t in BUILD_TARGETS for t in targets):
        raise _bad(root, f"pack.targets must list triples from: {', '.join(KNOWN_TRIPLES)}")
    modules = []
    entries: dict[str, int] = {}
    mods = doc.get("modules", [])
    for i, mod in enumerate(mods if isinstance(mods, list) else [mods]):
        if not isinstance(mod, dict) or not isinstance(mod.get("name"), str):
            raise _bad(root, f"modules[{i}] needs a name")
        if not _MODULE.fullmatch(mod["name"]):
            raise _bad(
                root,
                f"modules[{i}].name {mod['name'][:80]!r} is not a module name "
                "(letters, digits, _.-, optionally 'namespace/name')",
            )
        entry = module_entry(mod["name"])
        if entry in entries:
            raise _bad(
                root,
                f"modules[{i}].name {mod['name']!r} gives entry {entry!r}, as "
                f"modules[{entries[entry]}] does",
            )
        entries[entry] = i
        if mod.get("language", "c") != "c":
            raise _bad(
                root,
                f"modules[{i}].language {mod.get('language')!r}: only 'c' is "
                "supported by this build",
            )
        srcs = mod.get("sources")
        if not isinstance(srcs, list) or not srcs or not all(isinstance(s, str) for s in srcs):
            raise _bad(root, f"modules[{i}].sources must list source files")
        modules.append(PackModule(mod["name"], [root / s for s in srcs]))
    kernels = _read_kernels(root, doc.get("kernels", []), entries)
    if not modules and not kernels:
        raise _bad(root, "needs at least one [[modules]] or [[kernels]] table")
    templates = doc.get("templates", [])
    if kernels and not templates:
        raise _bad(
            root,
            f"kernel {kernels[0].name!r} needs its templates listed in [[templates]] "
            f"(entry = {kernels[0].entry!r}, with a [templates.wgsl] table)",
        )
    return PackProject(
        root, meta, modules, list(targets), doc.get("capabilities", {}), templates, kernels
    )


def _read_kernels(root: Path, raw: Any, entries: dict[str, int]) -> list[PackKernel]:
    kernels = []
    for i, k in enumerate(raw if isinstance(raw, list) else [raw]):
        if not isinstance(k, dict) or not isinstance(k.get("name"), str):
            raise _bad(root, f"kernels[{i}] needs a name")
        extra = sorted(set(k) - {"name", "source"})
        if extra:
            raise _bad(root, f"kernels[{i}].{extra[0]}: unknown key (allowed: name, source)")
        if not _MODULE.fullmatch(k["name"]):
            raise _bad(root, f"kernels[{i}].name {k['name'][:80]!r} is not a module name")
        entry = module_entry(k["name"])
        if entry in entries:
            raise _bad(root, f"kernels[{i}].name {k['name']!r} gives entry {entry!r} twice")
        entries[entry] = i
        src = k.get("source")
        if not isinstance(src, str) or not src.endswith(".wgsl"):
            raise _bad(root, f"kernels[{i}].source must name a .wgsl file")
        try:
            check_member_path(src, f"kernels[{i}].source")
        except PackFormatError as exc:
            raise _bad(root, str(exc)) from exc
        kernels.append(PackKernel(k["name"], root / src))
    return kernels


def _kernel_artifacts(
    proj: PackProject, contents: dict[str, bytes], say: Callable[[str], None]
) -> list[Artifact]:
    """Every ``[[kernels]]`` source as a portable ``wgsl`` artifact, read within its limit."""
    from .._gpu._wgsl_source import MAX_SOURCE, decode_source, read_shader

    out = []
    for kernel in proj.kernels:
        try:
            with kernel.source.open("rb") as fh:
                data = fh.read(MAX_SOURCE + 1)
        except OSError as exc:
            raise _bad(
                proj.root, f"kernel {kernel.name!r}: cannot read {kernel.source}: {exc.strerror}"
            ) from exc
        read_shader(decode_source(data, f"kernel {kernel.name!r}"), f"kernel {kernel.name!r}")
        path = f"artifacts/{PORTABLE_TRIPLE}/{kernel.entry}.wgsl"
        contents[path] = data
        out.append(artifact_entry(kernel.entry, PORTABLE_TRIPLE, "wgsl", path, data))
        say(f"  {path} ({len(data)} bytes)")
    return out


def _check_kernels(manifest: PackManifest, contents: dict[str, bytes]) -> None:
    """Each kernel's declarations against its templates' wgsl tables, as load_pack will."""
    from .._gpu._wgsl_source import check_against_manifest, read_shader

    for art in manifest.artifacts:
        if art.kind != "wgsl":
            continue
        what = f"kernel {art.path}"
        info = read_shader(contents[art.path].decode("utf-8"), what)
        for t in manifest.templates:
            if t.entry == art.entry and t.wgsl is not None:
                check_against_manifest(info, t.wgsl, f"{what} (template {t.id!r})")


def _describe(built: dict[str, Path], entry: str) -> list[TemplateSpec]:
    """Templates from the module's own describe document (the author's code, at build time)."""
    if WASM_TARGET in built:
        from .._sandbox._wasm_engine import WasmEngine

        engine = WasmEngine(cache_dir=False)
        try:
            module = engine.load(built[WASM_TARGET].read_bytes(), name=entry)
            return templates_from_describe(
                sorted(module.templates.values(), key=lambda t: t.index), entry
            )
        finally:
            engine.close()
    for triple in host_triples():
        target = BUILD_TARGETS.get(triple)
        if target in built:
            from .._sandbox._native_engine import NativeLibrary

            lib = NativeLibrary(built[target])
            return templates_from_describe(
                sorted(lib.templates.values(), key=lambda t: t.index), entry
            )
    raise GuestBuildError(
        f"cannot read the templates of module {entry!r}: build {PORTABLE_TRIPLE} or this "
        "host's triple, or list [[templates]] in pack.toml"
    )


def _compile(
    mod: PackModule,
    out: Path,
    targets: list[str],
    jobs: int | None,
    say: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> dict[str, Path]:
    """build_guest, with macOS libraries given a fixed install name: the linker would
    otherwise record the (temporary) output path, and the same sources would not give the
    same bytes."""
    macos = [t for t in targets if t.endswith("-macos")]
    others = [t for t in targets if t not in macos]
    built: dict[str, Path] = {}
    if others:
        built.update(
            build_guest(
                mod.sources,
                out,
                name=mod.entry,
                targets=others,
                jobs=jobs,
                progress=say,
                timeout=timeout,
            )
        )
    if macos:
        flags = [f"-Wl,-install_name,@rpath/{artifact_name(mod.entry, macos[0])}"]
        built.update(
            build_guest(
                mod.sources,
                out,
                name=mod.entry,
                targets=macos,
                jobs=jobs,
                extra_flags=flags,
                progress=say,
                timeout=timeout,
            )
        )
    return built


def pack_file_name(manifest: PackManifest, triple: str | None = None) -> str:
    stem = f"{manifest.name.replace('/', '-')}-{manifest.version}"
    return f"{stem}-{triple}.rflpack" if triple else f"{stem}.rflpack"


def build_pack(
    project_dir: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    key: Any = None,
    triples: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
) -> Path:
    """Compile every module for every target, write ``out_dir/<name>-<version>.rflpack``
    (default ``project/dist``), signed with ``key`` (an Ed25519 private key) if given.
    ``timeout``: seconds one compiler run may take (see ``build_guest``)."""
    say = progress or (lambda _msg: None)
    proj = read_project(project_dir)
    wanted = list(triples) if triples else proj.targets
    for t in wanted:
        if t not in BUILD_TARGETS:
            raise GuestBuildError(
                f"unknown triple {t!r}; known: {', '.join(KNOWN_TRIPLES)}", target=t
            )
    wanted = sorted(set(wanted), key=lambda t: KNOWN_TRIPLES.index(t))
    contents: dict[str, bytes] = {}
    artifacts: list[Artifact] = []
    templates: list[TemplateSpec] = []
    with tempfile.TemporaryDirectory(prefix="reflow-build-") as tmp:
        for mod in proj.modules:
            say(f"compiling {mod.name} for {', '.join(wanted)}")
            built = _compile(
                mod, Path(tmp) / mod.entry, [BUILD_TARGETS[t] for t in wanted], jobs, say, timeout
            )
            for triple in wanted:
                target = BUILD_TARGETS[triple]
                data = built[target].read_bytes()
                path = f"artifacts/{triple}/{artifact_name(mod.entry, target)}"
                kind = "wasm" if triple == PORTABLE_TRIPLE else "native"
                contents[path] = data
                artifacts.append(artifact_entry(mod.entry, triple, kind, path, data))
                say(f"  {path} ({len(data)} bytes)")
            if not proj.templates:
                templates += _describe(built, mod.entry)
        artifacts += _kernel_artifacts(proj, contents, say)
    files: list[PackFile] = []
    for key_name in ("readme", "license_file"):
        rel = proj.meta.get(key_name)
        if rel:
            if not isinstance(rel, str):
                raise _bad(proj.root, f"pack.{key_name} must be a path (a string)")
            try:
                check_member_path(rel, f"pack.{key_name}")
                data = (proj.root / rel).read_bytes()
            except PackFormatError as exc:
                raise _bad(proj.root, f"pack.{key_name}: {exc}") from exc
            except OSError as exc:
                raise _bad(
                    proj.root, f"pack.{key_name}: cannot read {rel!r}: {exc.strerror}"
                ) from exc
            contents[rel] = data
            files.append(file_entry(rel, data))
    doc: dict[str, Any] = {
        "format": 1,
        "abi": pack_abi_version(),
        **proj.meta,
        "capabilities": proj.capabilities,
        "templates": [t.to_dict() for t in templates] if templates else proj.templates,
        "artifacts": [a.to_dict() for a in sorted(artifacts, key=lambda a: (a.entry, a.triple))],
        "files": [f.to_dict() for f in files],
    }
    manifest = manifest_from_dict(doc)
    _check_kernels(manifest, contents)
    mbytes = manifest.to_toml()
    sigs = [sign_manifest(mbytes, key)] if key is not None else []
    data = build_bundle(mbytes, contents, sigs)
    out = Path(out_dir) if out_dir is not None else proj.root / "dist"
    out.mkdir(parents=True, exist_ok=True)
    target_path = out / pack_file_name(manifest)
    tmp_path = target_path.with_name(target_path.name + ".tmp")
    tmp_path.write_bytes(data)
    os.replace(tmp_path, target_path)
    say(f"wrote {target_path} ({len(data)} bytes{', signed' if sigs else ', UNSIGNED'})")
    return target_path


_C_TEMPLATE = """\
/* {module}: a starter actor. Integer in -> Integer + config "add" (default 1) out. */
#include "reflow.h"

static int add_tick(reflow_ctx *ctx) {{
    reflow_msg in;
    if (!reflow_input(ctx, "in", &in) || in.kind != REFLOW_INTEGER)
        return reflow_fail(ctx, "{name}: expected an Integer on 'in'");
    reflow_output(ctx, "out", reflow_integer(in.i + reflow_config_int(ctx, "add", 1)));
    return reflow_done(ctx);
}}

REFLOW_TEMPLATES(
    {{.id = "{name}/add",
     .description = "Adds config.add (default 1) to an Integer.",
     .inports = "in",
     .outports = "out",
     .config_schema = "{{\\"type\\":\\"object\\","
                      "\\"properties\\":{{\\"add\\":{{\\"type\\":\\"integer\\"}}}}}}",
     .tick = add_tick}},
)
"""


def new_project(
    directory: str | os.PathLike[str],
    *,
    name: str | None = None,
    lang: str = "c",
    targets: Iterable[str] | None = None,
) -> Path:
    """Scaffold a working pack project in ``directory`` (which must not exist or be empty)."""
    root = Path(directory)
    if lang != "c":
        raise GuestBuildError(f"language {lang!r} is not supported yet; use --lang c")
    if root.exists() and any(root.iterdir()):
        raise PackFormatError(f"{root} exists and is not empty")
    name = name or root.name
    module = name.replace("-", "_").replace(".", "_").replace("/", "_")
    # Validate the name the way the manifest will.
    manifest_from_dict(
        {
            "format": 1,
            "name": name,
            "version": "0.1.0",
            "abi": pack_abi_version(),
            "templates": [{"id": f"{name}/add", "entry": module}],
            "artifacts": [
                {
                    "entry": module,
                    "triple": PORTABLE_TRIPLE,
                    "kind": "wasm",
                    "path": "a.wasm",
                    "sha256": "0" * 64,
                    "size": 0,
                }
            ],
        }
    )
    (root / "src").mkdir(parents=True, exist_ok=True)
    tlist = ", ".join(f'"{t}"' for t in (targets or KNOWN_TRIPLES))
    (root / PROJECT_FILE).write_text(
        f'[pack]\nname = "{name}"\nversion = "0.1.0"\ndescription = "A reflow pack."\n'
        f'license = "MIT"\nauthors = []\nreadme = "README.md"\nlicense_file = "LICENSE"\n'
        f"targets = [{tlist}]\n\n[capabilities]\n\n"
        f'[[modules]]\nname = "{module}"\nlanguage = "c"\nsources = ["src/{module}.c"]\n',
        "utf-8",
    )
    (root / "src" / f"{module}.c").write_text(_C_TEMPLATE.format(module=module, name=name), "utf-8")
    (root / "README.md").write_text(
        f"# {name}\n\nA reflow pack. Build it with `reflow-pack build .`; its template "
        f"`{name}/add` adds config `add` to an Integer.\n",
        "utf-8",
    )
    (root / "LICENSE").write_text("MIT License\n", "utf-8")
    return root
