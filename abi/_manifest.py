"""The pack manifest: what a ``.rflpack`` holds, as TOML (``manifest.toml``, PACK_FORMAT.md §3).

:class:`PackManifest` is parsed with :mod:`tomllib` and written with ``tomli_w`` in a fixed key
order, so the same manifest always serialises to the same bytes — the bytes the signature
covers. Validation is strict: an unknown key, a wrong type or a malformed value is a
:class:`~reflow.PackFormatError` whose message and ``field`` name the offending field
(``templates[2].inports``).

Platforms are named by Rust target triples (``x86_64-unknown-linux-gnu``); the portable
WebAssembly lives under :data:`PORTABLE_TRIPLE` (``wasm32-unknown-unknown``).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import platform
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import tomli_w

from .._errors import PackFormatError
from ._bounded import load_toml
from ._manifest_rules import (
    ABI_RE,
    ENTRY_RE,
    KIND_RE,
    MANIFEST_NAME,
    MAX_MANIFEST,
    MAX_MEMBERS,
    MAX_TEMPLATES,
    PACK_NAME_RE,
    PORT_RE,
    TEMPLATE_ID_RE,
    TRIPLE_RE,
    VERSION_RE,
    check_hash,
    check_json_like,
    check_keys,
    check_member_path,
    fail,
    field_strings,
    field_value,
)
from ._manifest_wgsl import WgslKernelSpec, check_wgsl_artifact, check_wgsl_template, parse_wgsl

__all__ = [
    "FORMAT_VERSION",
    "KNOWN_TRIPLES",
    "MANIFEST_NAME",
    "PORTABLE_TRIPLE",
    "SIGNATURE_NAME",
    "Artifact",
    "ManifestMemo",
    "PackFile",
    "PackManifest",
    "TemplateSpec",
    "host_triples",
    "parse_manifest",
    "use_manifest_memo",
]

#: Version of the manifest/bundle layout described in PACK_FORMAT.md.
FORMAT_VERSION = 1
#: Member names fixed by the format (``MANIFEST_NAME`` is ``_manifest_rules``', which names it
#: in every failure).
SIGNATURE_NAME = "signature.toml"
#: The key under which the portable WebAssembly artifacts live.
PORTABLE_TRIPLE = "wasm32-unknown-unknown"
#: Triples the first-party tooling builds; any well-formed triple is accepted in a manifest.
KNOWN_TRIPLES = (
    PORTABLE_TRIPLE,
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-gnu",
)


def host_triples() -> tuple[str, ...]:
    """Triples whose native artifacts this Python can load, best first (may be empty)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
        machine
    )
    if arch is None:
        return ()
    if sys.platform.startswith("linux"):
        libc = platform.libc_ver()[0]
        return (f"{arch}-unknown-linux-{'musl' if libc == 'musl' else 'gnu'}",)
    if sys.platform == "darwin":
        return (f"{arch}-apple-darwin",)
    if sys.platform == "win32":
        # A DLL with a C ABI loads the same whichever toolchain built it.
        return (f"{arch}-pc-windows-msvc", f"{arch}-pc-windows-gnu")
    return ()


@dataclass(frozen=True)
class TemplateSpec:
    """One actor template the pack provides. ``entry`` is the module (artifact group) that
    implements it; ``engine`` is ``"auto"`` (host native artifact, else portable wasm) or an
    artifact kind to insist on."""

    id: str
    entry: str
    inports: tuple[str, ...] = ()
    outports: tuple[str, ...] = ()
    await_all_inports: bool = False
    description: str = ""
    engine: str = "auto"
    capabilities: tuple[str, ...] = ()
    config_schema: Mapping[str, Any] = field(default_factory=dict)
    #: The kernel contract of a template whose entry is a ``wgsl`` artifact (§3.1).
    wgsl: WgslKernelSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "entry": self.entry,
            "engine": self.engine,
            "description": self.description,
            "inports": list(self.inports),
            "outports": list(self.outports),
            "await_all_inports": self.await_all_inports,
            "capabilities": list(self.capabilities),
        }
        if self.config_schema:
            d["config_schema"] = dict(self.config_schema)
        if self.wgsl is not None:
            d["wgsl"] = self.wgsl.to_dict()
        return d


@dataclass(frozen=True)
class Artifact:
    """One compiled module for one triple: ``kind`` picks the engine (``wasm``, ``native``,
    or a kind a plugin contributes)."""

    entry: str
    triple: str
    kind: str
    path: str
    sha256: str
    size: int

    @property
    def portable(self) -> bool:
        return self.triple == PORTABLE_TRIPLE

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "triple": self.triple,
            "kind": self.kind,
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
        }


@dataclass(frozen=True)
class PackFile:
    """A non-code file the pack carries (README, licence), hashed like an artifact."""

    path: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class PackManifest:
    """The parsed, validated ``manifest.toml`` of a pack."""

    name: str
    version: str
    abi: str
    templates: tuple[TemplateSpec, ...]
    artifacts: tuple[Artifact, ...]
    files: tuple[PackFile, ...] = ()
    description: str = ""
    license: str = ""
    authors: tuple[str, ...] = ()
    readme: str = ""
    license_file: str = ""
    #: Requested capabilities: ``{"http": ["api.example.com"]}``. The user grants them.
    capabilities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _validate(self)

    # -- queries --------------------------------------------------------------------------
    @property
    def abi_version(self) -> tuple[int, int]:
        major, minor = self.abi.split(".")
        return int(major), int(minor)

    def triples(self) -> tuple[str, ...]:
        """Every triple the manifest lists an artifact for, portable first, then sorted."""
        ts = {a.triple for a in self.artifacts}
        return tuple(sorted(ts, key=lambda t: (t != PORTABLE_TRIPLE, t)))

    def members(self) -> dict[str, str]:
        """Member path -> expected sha256, for every artifact and file."""
        out = {a.path: a.sha256 for a in self.artifacts}
        out.update({f.path: f.sha256 for f in self.files})
        return out

    def sizes(self) -> dict[str, int]:
        out = {a.path: a.size for a in self.artifacts}
        out.update({f.path: f.size for f in self.files})
        return out

    def entries(self) -> tuple[str, ...]:
        return tuple(sorted({a.entry for a in self.artifacts}))

    def template(self, template_id: str) -> TemplateSpec:
        for t in self.templates:
            if t.id == template_id:
                return t
        raise KeyError(template_id)

    def with_(self, **changes: Any) -> PackManifest:
        """A copy with ``changes`` applied (and validated again)."""
        return replace(self, **changes)

    # -- TOML -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": self.format,
            "name": self.name,
            "version": self.version,
            "abi": self.abi,
            "description": self.description,
            "license": self.license,
            "authors": list(self.authors),
        }
        if self.readme:
            d["readme"] = self.readme
        if self.license_file:
            d["license_file"] = self.license_file
        d["capabilities"] = {k: list(v) for k, v in sorted(self.capabilities.items())}
        d["templates"] = [t.to_dict() for t in self.templates]
        d["artifacts"] = [a.to_dict() for a in self.artifacts]
        if self.files:
            d["files"] = [f.to_dict() for f in self.files]
        return d

    def to_toml(self) -> bytes:
        """The canonical bytes: same manifest, same bytes (the signature covers them)."""
        return tomli_w.dumps(self.to_dict()).encode("utf-8")

    @classmethod
    def from_toml(cls, data: bytes | str) -> PackManifest:
        return parse_manifest(data)


# -- parsing ---------------------------------------------------------------------------------

_TOP = {
    "format",
    "name",
    "version",
    "abi",
    "description",
    "license",
    "authors",
    "readme",
    "license_file",
    "capabilities",
    "templates",
    "artifacts",
    "files",
}
_TEMPLATE_KEYS = {
    "id",
    "entry",
    "engine",
    "description",
    "inports",
    "outports",
    "await_all_inports",
    "capabilities",
    "config_schema",
    "wgsl",
}
_ARTIFACT_KEYS = {"entry", "triple", "kind", "path", "sha256", "size"}
_FILE_KEYS = {"path", "sha256", "size"}


class ManifestMemo(Protocol):
    """Where parsed manifests are remembered between processes (installed by the pack loader:
    an authenticated store in the pack cache). ``get`` returns the parsed TOML document of the
    manifest whose bytes have this SHA-256, or ``None``; ``put`` remembers one. A memo must
    only ever answer with what ``put`` was given for exactly those bytes. ``validated`` and
    ``remember`` do the same for the validated :class:`PackManifest` itself (in memory), so
    one load that reads a manifest twice (the bundle's head, a scoped signer's name) builds
    it once."""

    def get(self, digest: str) -> Mapping[str, Any] | None: ...

    def put(self, digest: str, doc: Mapping[str, Any]) -> None: ...

    def validated(self, digest: str) -> PackManifest | None: ...

    def remember(self, digest: str, manifest: PackManifest) -> None: ...


_memo: contextvars.ContextVar[ManifestMemo | None] = contextvars.ContextVar(
    "reflow_manifest_memo", default=None
)


@contextlib.contextmanager
def use_manifest_memo(memo: ManifestMemo | None) -> Iterator[None]:
    """Within the block, ``parse_manifest`` (in this thread or task) consults ``memo``."""
    token = _memo.set(memo)
    try:
        yield
    finally:
        _memo.reset(token)


def parse_manifest(data: bytes | str, *, max_size: int = MAX_MANIFEST) -> PackManifest:
    """Parse and validate manifest TOML; raises PackFormatError naming the field at fault.
    The document is size- and depth-checked before ``tomllib`` sees it (``_bounded``).

    Inside ``use_manifest_memo(memo)``, a manifest whose exact bytes were parsed
    before skips the scan and ``tomllib`` (the slow part for a pack of a thousand templates)
    and is rebuilt from the remembered document — validated again like any other — or, when
    the memo holds the manifest those bytes gave already (validated), is that manifest."""
    memo = _memo.get()
    if memo is None or len(data) > max_size:
        return manifest_from_dict(load_toml(data, MANIFEST_NAME, max_size=max_size))
    raw = data.encode() if isinstance(data, str) else bytes(data)
    digest = hashlib.sha256(raw).hexdigest()
    known = memo.validated(digest)
    if known is not None:
        return known
    doc = memo.get(digest)
    if doc is not None:
        try:
            manifest = manifest_from_dict(doc)
        except PackFormatError:
            pass  # not what this version accepts any more: parse the bytes
        else:
            memo.remember(digest, manifest)
            return manifest
    doc = load_toml(raw, MANIFEST_NAME, max_size=max_size)
    manifest = manifest_from_dict(doc)
    memo.put(digest, doc)
    memo.remember(digest, manifest)
    return manifest


def manifest_from_dict(doc: Mapping[str, Any]) -> PackManifest:
    """Build a manifest from a parsed TOML document (validated)."""
    check_keys(doc, _TOP, "")
    fmt = field_value(doc, "format", int, "")
    if fmt != FORMAT_VERSION:
        raise fail(
            "format",
            f"this reflow reads pack format {FORMAT_VERSION}, not {fmt}; "
            "upgrade reflow to read newer packs",
        )
    templates = []
    for i, t in enumerate(field_value(doc, "templates", list, "")):
        where = f"templates[{i}]."
        if not isinstance(t, dict):
            raise fail(f"templates[{i}]", "must be a table")
        check_keys(t, _TEMPLATE_KEYS, where)
        templates.append(
            TemplateSpec(
                id=field_value(t, "id", str, where),
                entry=field_value(t, "entry", str, where),
                engine=field_value(t, "engine", str, where, "auto"),
                description=field_value(t, "description", str, where, ""),
                inports=field_strings(t, "inports", where),
                outports=field_strings(t, "outports", where),
                await_all_inports=field_value(t, "await_all_inports", bool, where, False),
                capabilities=field_strings(t, "capabilities", where),
                config_schema=field_value(t, "config_schema", dict, where, {}),
                wgsl=parse_wgsl(t["wgsl"], f"{where}wgsl") if "wgsl" in t else None,
            )
        )
    artifacts = []
    for i, a in enumerate(field_value(doc, "artifacts", list, "")):
        where = f"artifacts[{i}]."
        if not isinstance(a, dict):
            raise fail(f"artifacts[{i}]", "must be a table")
        check_keys(a, _ARTIFACT_KEYS, where)
        artifacts.append(
            Artifact(
                entry=field_value(a, "entry", str, where),
                triple=field_value(a, "triple", str, where),
                kind=field_value(a, "kind", str, where),
                path=field_value(a, "path", str, where),
                sha256=field_value(a, "sha256", str, where),
                size=field_value(a, "size", int, where),
            )
        )
    files = []
    for i, f in enumerate(field_value(doc, "files", list, "", [])):
        where = f"files[{i}]."
        if not isinstance(f, dict):
            raise fail(f"files[{i}]", "must be a table")
        check_keys(f, _FILE_KEYS, where)
        files.append(
            PackFile(
                path=field_value(f, "path", str, where),
                sha256=field_value(f, "sha256", str, where),
                size=field_value(f, "size", int, where),
            )
        )
    caps_doc = field_value(doc, "capabilities", dict, "", {})
    caps = {k: field_strings(caps_doc, k, "capabilities.") for k in caps_doc}
    return PackManifest(
        format=fmt,
        name=field_value(doc, "name", str, ""),
        version=field_value(doc, "version", str, ""),
        abi=field_value(doc, "abi", str, ""),
        description=field_value(doc, "description", str, "", ""),
        license=field_value(doc, "license", str, "", ""),
        authors=field_strings(doc, "authors", "", unique=False),
        readme=field_value(doc, "readme", str, "", ""),
        license_file=field_value(doc, "license_file", str, "", ""),
        capabilities=caps,
        templates=tuple(templates),
        artifacts=tuple(artifacts),
        files=tuple(files),
    )


def _validate(m: PackManifest) -> None:
    """Checks that do not depend on where the manifest came from (TOML or code)."""
    if not PACK_NAME_RE.fullmatch(m.name):
        raise fail(
            "name",
            f"{m.name!r} is not a pack name (lowercase letters, digits, ._-, "
            "optionally 'namespace/name', each part at most 64 chars)",
        )
    if not VERSION_RE.fullmatch(m.version):
        raise fail("version", f"{m.version!r} is not a semantic version (e.g. 1.2.0)")
    if not ABI_RE.fullmatch(m.abi):
        raise fail("abi", f"{m.abi!r} is not an ABI version 'major.minor' (e.g. '1.0')")
    if len(m.description) > 4096:
        raise fail("description", "is over 4096 characters")
    for key, hosts in m.capabilities.items():
        if not KIND_RE.fullmatch(key):
            raise fail(f"capabilities.{key}", "is not a capability name")
        if not all(isinstance(h, str) and h and len(h) <= 253 for h in hosts):
            raise fail(f"capabilities.{key}", "must list non-empty strings")
    if len(m.templates) > MAX_TEMPLATES:
        raise fail(
            "templates", f"lists {len(m.templates)} templates, over the limit of {MAX_TEMPLATES}"
        )
    if len(m.artifacts) + len(m.files) > MAX_MEMBERS:
        raise fail(
            "artifacts",
            f"artifacts and files list {len(m.artifacts) + len(m.files)} "
            f"paths, over the limit of {MAX_MEMBERS}",
        )
    # Paths compared case-folded: the cache may sit on a case-insensitive filesystem, where
    # 'README.md' and 'readme.md' are one file, and a file 'docs' leaves no room for 'docs/x'.
    files: dict[str, tuple[str, str]] = {
        n: ("the format", n) for n in (MANIFEST_NAME, SIGNATURE_NAME)
    }
    dirs: dict[str, tuple[str, str]] = {}

    def claim(path: str, where: str) -> None:
        check_member_path(path, where)
        folded = path.lower()
        if folded in (MANIFEST_NAME, SIGNATURE_NAME):
            raise fail(where, f"{path!r} is reserved for the format")
        if folded in files:
            other = files[folded]
            how = "is already used by" if other[1] == path else "differs only in case from"
            raise fail(where, f"path {path!r} {how} {other[0]} ({other[1]!r})")
        if folded in dirs:
            raise fail(
                where,
                f"path {path!r} is a file but also a directory of "
                f"{dirs[folded][0]} ({dirs[folded][1]!r})",
            )
        parts = folded.split("/")
        for n in range(1, len(parts)):
            prefix = "/".join(parts[:n])
            if prefix in files:
                raise fail(
                    where,
                    f"path {path!r} needs {prefix!r} to be a directory, but "
                    f"it is the file of {files[prefix][0]}",
                )
            dirs.setdefault(prefix, (where, path))
        files[folded] = (where, path)

    if not m.artifacts:
        raise fail("artifacts", "a pack needs at least one artifact")
    seen: set[tuple[str, str]] = set()
    for i, a in enumerate(m.artifacts):
        w = f"artifacts[{i}]"
        if not ENTRY_RE.fullmatch(a.entry):
            raise fail(f"{w}.entry", f"{a.entry!r} is not a module name")
        if not TRIPLE_RE.fullmatch(a.triple):
            raise fail(
                f"{w}.triple",
                f"{a.triple!r} is not a target triple (e.g. "
                f"x86_64-unknown-linux-gnu or {PORTABLE_TRIPLE})",
            )
        if not KIND_RE.fullmatch(a.kind):
            raise fail(f"{w}.kind", f"{a.kind!r} is not an artifact kind (e.g. wasm, native)")
        if a.kind == "native" and a.portable:
            raise fail(f"{w}.kind", f"a native artifact cannot be under {PORTABLE_TRIPLE}")
        if a.kind == "wasm" and not a.portable:
            raise fail(f"{w}.triple", f"a wasm artifact belongs under {PORTABLE_TRIPLE}")
        check_wgsl_artifact(a.kind, a.portable, w)
        if (a.entry, a.triple) in seen:
            raise fail(w, f"a second artifact for entry {a.entry!r} and triple {a.triple!r}")
        seen.add((a.entry, a.triple))
        claim(a.path, f"{w}.path")
        check_hash(a.sha256, a.size, w)
    for i, f in enumerate(m.files):
        claim(f.path, f"files[{i}].path")
        check_hash(f.sha256, f.size, f"files[{i}]")
    for key in ("readme", "license_file"):
        ref = getattr(m, key)
        if ref and not any(f.path == ref for f in m.files):
            raise fail(key, f"{ref!r} is not listed in [[files]]")
    if not m.templates:
        raise fail("templates", "a pack needs at least one template")
    entries = {a.entry for a in m.artifacts}
    kinds = {(a.entry, a.kind) for a in m.artifacts}
    entry_kinds: dict[str, set[str]] = {}
    for e, k in kinds:
        entry_kinds.setdefault(e, set()).add(k)
    ids: set[str] = set()
    for i, t in enumerate(m.templates):
        w = f"templates[{i}]"
        if not TEMPLATE_ID_RE.fullmatch(t.id):
            raise fail(f"{w}.id", f"{t.id!r} is not a template id (letters, digits, _./:-)")
        if t.id != m.name and not t.id.startswith(m.name + "/"):
            # ids are bound to the (signed) pack name, so no pack can take another's ids
            raise fail(
                f"{w}.id", f"template id {t.id!r} must be the pack name or start with '{m.name}/'"
            )
        if t.id in ids:
            raise fail(f"{w}.id", f"template id {t.id!r} appears twice")
        ids.add(t.id)
        if t.entry not in entries:
            raise fail(
                f"{w}.entry",
                f"{t.entry!r} names no artifact entry; entries: {', '.join(sorted(entries))}",
            )
        if t.engine != "auto" and not KIND_RE.fullmatch(t.engine):
            raise fail(f"{w}.engine", f"{t.engine!r} is not 'auto' or an artifact kind")
        if t.engine != "auto" and (t.entry, t.engine) not in kinds:
            raise fail(f"{w}.engine", f"entry {t.entry!r} has no artifact of kind {t.engine!r}")
        for port_key in ("inports", "outports"):
            for p in getattr(t, port_key):
                if not PORT_RE.fullmatch(p):
                    raise fail(f"{w}.{port_key}", f"{p!r} is not a port name")
        if t.config_schema:
            check_json_like(t.config_schema, f"{w}.config_schema")
        check_wgsl_template(
            t.wgsl,
            template_id=t.id,
            inports=t.inports,
            outports=t.outports,
            entry_kinds=entry_kinds.get(t.entry, set()),
            where=w,
        )


def templates_from_describe(describe: Iterable[Any], entry: str) -> list[TemplateSpec]:
    """TemplateSpecs from guest describe templates (objects with id, inports, outports, ...)."""
    out = []
    for t in describe:
        out.append(
            TemplateSpec(
                id=t.id,
                entry=entry,
                inports=tuple(t.inports),
                outports=tuple(t.outports),
                await_all_inports=bool(t.await_all_inports),
                description=str(getattr(t, "description", "")),
                capabilities=tuple(getattr(t, "capabilities", ())),
                config_schema=dict(getattr(t, "config_schema", {}) or {}),
            )
        )
    return out
