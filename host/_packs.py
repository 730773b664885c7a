"""Loading packs: verify, extract safely, pick an artifact, create actors, fill the catalog.

``load_pack(path_or_name)`` does, in this order, and stops at the first problem:

1. read the manifest and signature (the head of the bundle, or an installed pack's cache);
2. verify the signature against the trust store — unsigned, untrusted and tampered packs are
   refused unless ``allow_unsigned=True`` (which warns loudly, and never lets native code of
   an unverified pack load);
3. check the pack's ABI version against the host's;
4. ask ``reflow_before_pack_load`` plugins (a veto stops here);
5. choose, per entry, the host triple's artifact or the portable WebAssembly;
6. extract the bundle into the pack cache (limits and path checks of ``reflow.abi._bundle``,
   files created exclusively, never following links), unless already cached;
7. re-hash every chosen artifact in the cache, then hand exactly the bytes that were hashed
   to the engine a plugin contributes for its kind (as ``data=``, when its ``load_artifact``
   takes it: the built-in engines do), and check the actors' ports against the manifest;
8. register the templates (owner = pack name); a template id another owner has is an error.

Loading is idempotent: loading the same pack again returns the same :class:`LoadedPack`.
``inspect_pack`` reads and checks a pack without running any of its code.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import stat
import tempfile
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._actor import Actor
from ._catalog import register_template, unregister_template
from ._errors import (
    ABIVersionError,
    GuestABIError,
    PackError,
    PackFormatError,
    PackIntegrityError,
    PackNotFoundError,
    PackSignatureError,
    PlatformError,
    TemplateConflictError,
    UnsafeArchiveError,
    UntrustedKeyError,
)
from ._plugins import before_pack_load, engine_for, plugin_manager, template_owner
from ._trust import TrustStore
from .abi._bundle import Bundle, BundleLimits, read_bundle, sha256_hex
from .abi._manifest import (
    MANIFEST_NAME,
    PORTABLE_TRIPLE,
    SIGNATURE_NAME,
    Artifact,
    PackManifest,
    check_member_path,
    host_triples,
    parse_manifest,
)
from .abi._signing import Signature, parse_signatures
from .abi._version import ABI_VERSION, check_abi_compatible

__all__ = [
    "LoadedPack",
    "PackInspection",
    "cache_root",
    "inspect_pack",
    "installed_packs",
    "list_packs",
    "load_pack",
    "unload_pack",
]

log = logging.getLogger("reflow.packs")

_COMPLETE = ".complete"
_lock = threading.RLock()
_loaded: dict[str, LoadedPack] = {}


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where extracted packs live: ``cache_dir``, else ``$REFLOW_CACHE_DIR/packs``, else
    ``~/.cache/reflow/packs``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("REFLOW_CACHE_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "reflow"
    return base / "packs"


@dataclass
class LoadedPack:
    """A pack whose templates are in the catalog."""

    name: str
    version: str
    manifest: PackManifest
    digest: str
    signer: str | None
    source: str
    directory: Path
    artifacts: dict[str, Artifact]
    templates: dict[str, Actor] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"<LoadedPack {self.name} {self.version} templates={sorted(self.templates)} "
                f"signer={self.signer}>")


# -- reading the head: manifest + signature --------------------------------------------------


@dataclass
class _Head:
    manifest: PackManifest
    manifest_bytes: bytes
    signatures: list[Signature]
    source: str
    bundle_path: Path | None
    cached_dir: Path | None


def _looks_like_path(text: str) -> bool:
    return text.endswith(".rflpack") or Path(text).is_file()


def _head(path_or_name: str | os.PathLike[str], root: Path, limits: BundleLimits) -> _Head:
    if isinstance(path_or_name, os.PathLike) or _looks_like_path(str(path_or_name)):
        path = Path(path_or_name)
        if not path.is_file():
            raise PackNotFoundError(f"no pack file {path}", pack=str(path))
        head = read_bundle(path, limits=limits, head_only=True)
        return _Head(head.manifest, head.manifest_bytes, head.signatures, str(path), path, None)
    name = str(path_or_name)
    found = _installed_dir(name, root)
    if found is None:
        bare, _, version = name.partition("@")
        resolved = plugin_manager().hook.reflow_resolve_pack(name=bare, version=version or None)
        if resolved is not None:
            head = read_bundle(resolved, limits=limits, head_only=True)
            return _Head(head.manifest, head.manifest_bytes, head.signatures, str(resolved),
                         Path(resolved), None)
        raise PackNotFoundError(
            f"no pack {name!r}: not a file, and not installed in {root} "
            "(load it once from its .rflpack file)",
            pack=name,
        )
    return _read_cached_head(found, limits)


def _read_cached_head(d: Path, limits: BundleLimits) -> _Head:
    mpath = d / MANIFEST_NAME
    size = mpath.stat().st_size
    if size > limits.max_manifest:
        raise UnsafeArchiveError(f"{mpath}: manifest is {size} bytes, over its limit",
                                 pack=str(d), member=MANIFEST_NAME)
    mbytes = mpath.read_bytes()
    spath = d / SIGNATURE_NAME
    sigs = parse_signatures(spath.read_bytes()) if spath.is_file() else []
    return _Head(parse_manifest(mbytes), mbytes, sigs, str(d), None, d)


def _dir_name(name: str) -> str:
    return name.replace("/", "+")


def _installed_dir(name: str, root: Path) -> Path | None:
    """The newest complete cache directory of pack ``name`` (``name@version`` pins one)."""
    version = None
    if "@" in name:
        name, version = name.split("@", 1)
    base = root / _dir_name(name)
    if not base.is_dir():
        return None
    best: tuple[tuple[Any, ...], Path] | None = None
    for d in base.iterdir():
        if not (d / _COMPLETE).is_file():
            continue
        ver = d.name.rsplit("-", 1)[0]
        if version is not None and ver != version:
            continue
        key = (_version_key(ver), d.stat().st_mtime)
        if best is None or key > best[0]:
            best = (key, d)
    return best[1] if best else None


def _version_key(v: str) -> tuple[Any, ...]:
    core, _, pre = v.split("+")[0].partition("-")
    nums = tuple(int(x) if x.isdigit() else 0 for x in core.split("."))
    return (*nums, pre == "", pre)


# -- verification ----------------------------------------------------------------------------


def _verify(head: _Head, trust: TrustStore, allow_unsigned: bool) -> str | None:
    name = head.manifest.name
    try:
        signer = trust.verify(head.manifest_bytes, head.signatures,
                              pack=f"pack {name!r} ({head.source})")
    except PackSignatureError as exc:
        # a trusted key whose signature does not verify: altered, never loaded. A trusted key
        # not allowed to sign this name counts as untrusted (allow_unsigned may load it).
        tampered = (bool(exc.key_id) and exc.key_id in trust
                    and not isinstance(exc, UntrustedKeyError))
        if not allow_unsigned or tampered:
            raise
        warnings.warn(
            f"loading pack {name!r} WITHOUT a verified signature ({exc}); its WebAssembly "
            "runs sandboxed, its native code will not be loaded. Never do this in production.",
            stacklevel=3,
        )
        log.warning("pack %s loaded with allow_unsigned=True: %s", name, exc)
        return None
    _warn_unscoped(trust, signer, name)
    return signer


_warned_unscoped: set[str] = set()


def _warn_unscoped(trust: TrustStore, signer: str, name: str) -> None:
    """Once per key: a key trusted for every pack name can sign any pack (say so)."""
    if signer in _warned_unscoped:
        return
    if any(k.key_id == signer and k.names is None for k in trust):
        _warned_unscoped.add(signer)
        log.warning(
            "trusted key %s (which signed pack %r) may sign packs of ANY name; limit it to its "
            "publisher's own packs: 'reflow-pack trust add KEY.pub --for \"NAMESPACE/*\"'",
            signer, name)


# -- choosing artifacts ----------------------------------------------------------------------


def _choose(
    manifest: PackManifest,
    present: set[str],
    verified: bool,
    prefer: str,
    triples: tuple[str, ...],
    source: str,
) -> dict[str, Artifact]:
    """entry -> the artifact to load for it."""
    chosen: dict[str, Artifact] = {}
    for entry in sorted({t.entry for t in manifest.templates}):
        kinds = {t.engine for t in manifest.templates if t.entry == entry} - {"auto"}
        arts = [a for a in manifest.artifacts if a.entry == entry and a.path in present]
        if kinds:
            arts = [a for a in arts if a.kind in kinds]
        native = [a for t in triples for a in arts if a.triple == t]
        if not verified:
            native = [a for a in native if a.kind != "native"]
        portable = [a for a in arts if a.portable]
        order = native + portable if prefer == "native" else portable + native
        if order:
            chosen[entry] = order[0]
            continue
        listed = sorted({a.triple for a in manifest.artifacts if a.entry == entry})
        here = sorted({a.triple for a in manifest.artifacts
                       if a.entry == entry and a.path in present})
        stripped = f" ({source} carries only: {', '.join(here) or 'none'})" if here != listed \
            else ""
        why = "" if verified else " (native artifacts need a verified signature)"
        raise PlatformError(
            f"pack {manifest.name!r} {manifest.version} has no artifact this host can run for "
            f"entry {entry!r}: wanted {', '.join(triples) or 'no native triple'} or "
            f"{PORTABLE_TRIPLE}{why}; available triples: {', '.join(listed)}{stripped}",
            pack=manifest.name,
            wanted=(*triples, PORTABLE_TRIPLE),
            available=tuple(listed),
        )
    return chosen


# -- the cache -------------------------------------------------------------------------------


def _pack_dir(root: Path, manifest: PackManifest, digest: str) -> Path:
    return root / _dir_name(manifest.name) / f"{manifest.version}-{digest[:16]}"


def _safe_write(root: Path, rel: str, data: bytes) -> None:
    check_member_path(rel, "member")
    target = root.joinpath(*rel.split("/"))
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"member {rel!r} escapes the pack directory", member=rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(
        os, "O_BINARY", 0)
    fd = os.open(target, flags, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _extract(bundle: Bundle, pack_dir: Path) -> None:
    """Write the bundle's members into ``pack_dir`` (created atomically; a directory from an
    earlier, stripped copy of the same pack gets the missing members added)."""
    pack_dir.parent.mkdir(parents=True, exist_ok=True)
    if not pack_dir.exists():
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=pack_dir.parent))
        try:
            _safe_write(tmp, MANIFEST_NAME, bundle.manifest_bytes)
            if bundle.signature_bytes is not None:
                _safe_write(tmp, SIGNATURE_NAME, bundle.signature_bytes)
            for rel, data in bundle.contents.items():
                _safe_write(tmp, rel, data)
            (tmp / _COMPLETE).write_bytes(b"")
            os.replace(tmp, pack_dir)
            return
        except OSError:
            _rmtree(tmp)
            if not pack_dir.exists():
                raise
    for rel, data in bundle.contents.items():
        target = pack_dir.joinpath(*rel.split("/"))
        if not target.is_file():
            tmp_name = f"{rel}.{os.getpid()}.tmp"
            _safe_write(pack_dir, tmp_name, data)
            os.replace(pack_dir.joinpath(*tmp_name.split("/")), target)
    if bundle.signature_bytes is not None and not (pack_dir / SIGNATURE_NAME).is_file():
        _safe_write(pack_dir, SIGNATURE_NAME, bundle.signature_bytes)


def _repair_head(pack_dir: Path, head: _Head) -> None:
    """Put the verified manifest back if the cached copy was altered, so a later load by name
    (which trusts only what verifies) finds the pack again."""
    mpath = pack_dir / MANIFEST_NAME
    try:
        if mpath.read_bytes() == head.manifest_bytes:
            return
    except OSError:
        return
    tmp = pack_dir / f"{MANIFEST_NAME}.{os.getpid()}.tmp"
    tmp.write_bytes(head.manifest_bytes)
    os.replace(tmp, mpath)
    log.warning("pack %s: repaired the altered cached manifest in %s", head.manifest.name,
                pack_dir)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _present_in_cache(d: Path, manifest: PackManifest) -> set[str]:
    return {p for p in manifest.members() if d.joinpath(*p.split("/")).is_file()}


def _rehash(d: Path, art: Artifact, pack: str) -> bytes:
    """The cached artifact's bytes, read once and checked against the manifest. Engines that
    take ``data=`` (the built-in ones) load these bytes and never read the path again, so
    swapping the file after the check changes nothing."""
    path = d.joinpath(*art.path.split("/"))

    def missing() -> PackIntegrityError:
        return PackIntegrityError(
            f"pack {pack!r}: cached artifact {path} is missing or not a plain file",
            pack=pack, file=str(path), expected=art.sha256, actual="missing",
        )

    try:
        # no link followed; a FIFO put there must not block the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError:
        raise missing() from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise missing()
        data = fh.read(art.size + 1)  # a longer file is wrong anyway: do not read all of it
    actual = sha256_hex(data)
    if actual != art.sha256 or len(data) != art.size:
        raise PackIntegrityError(
            f"pack {pack!r}: cached artifact {path} was modified after extraction: sha256 "
            f"expected {art.sha256}, got {actual}; delete {d} and load the pack again",
            pack=pack, file=str(path), expected=art.sha256, actual=actual,
        )
    return data


def _takes_data(engine: Any) -> bool:
    """Whether ``engine.load_artifact`` accepts the verified bytes as ``data=``."""
    try:
        params = inspect.signature(engine.load_artifact).parameters
    except (TypeError, ValueError):
        return False
    p = params.get("data")
    return p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)


# -- loading ---------------------------------------------------------------------------------


def load_pack(
    path_or_name: str | os.PathLike[str],
    *,
    trust: TrustStore | str | os.PathLike[str] | None = None,
    allow_unsigned: bool = False,
    grants: Any = None,
    prefer: str = "native",
    cache_dir: str | os.PathLike[str] | None = None,
    limits: BundleLimits | None = None,
    registry: str | None = None,
    registry_options: Mapping[str, Any] | None = None,
) -> LoadedPack:
    """Verify and load a pack (a ``.rflpack`` file, or the name of an installed pack) and
    register its templates in the catalog. Idempotent; see the module docstring.

    With ``registry`` (a URL), ``path_or_name`` may be ``"namespace/name@range"``: the
    variant for this machine is downloaded (or taken from the download cache when the
    registry cannot be reached), verified against ``trust`` and loaded.
    ``registry_options`` go to ``reflow.registry.RegistryClient`` (``token``, ``cache_dir``,
    ``offline``, ...).

    ``trust``: the trust store (default: ``TrustStore()``). ``allow_unsigned``: development
    only — accept unsigned or untrusted packs (sandboxed code only), with a warning.
    ``grants``: capabilities granted to the pack's guests (``GuestGrants``); HTTP hosts the
    manifest did not request are not granted. ``prefer``: ``"native"`` (the host triple's
    library when the pack is verified, else WebAssembly) or ``"wasm"``.
    """
    if prefer not in ("native", "wasm"):
        raise ValueError(f"prefer must be 'native' or 'wasm', not {prefer!r}")
    store = trust if isinstance(trust, TrustStore) else TrustStore(trust)
    root = cache_root(cache_dir)
    limits = limits or BundleLimits()
    with _lock:
        if not isinstance(path_or_name, os.PathLike):
            loaded = _loaded.get(str(path_or_name).split("@", 1)[0])
            if loaded is not None and not _looks_like_path(str(path_or_name)):
                return loaded
        if registry is not None and not _looks_like_path(str(path_or_name)):
            from .registry._client import install_pack

            options = dict(registry_options or {})
            options.setdefault("trust", store)
            path_or_name = install_pack(str(path_or_name), registry, **options).path
        head = _head(path_or_name, root, limits)
        m = head.manifest
        digest = hashlib.sha256(head.manifest_bytes).hexdigest()
        loaded = _loaded.get(m.name)
        if loaded is not None:
            if loaded.digest == digest:
                return loaded
            raise PackError(
                f"pack {m.name!r} {loaded.version} is already loaded (from {loaded.source}); "
                f"call unload_pack({m.name!r}) before loading {m.version}",
                pack=m.name,
            )
        signer = _verify(head, store, allow_unsigned)
        check_abi_compatible(m.abi_version, ABI_VERSION, what=f"pack {m.name!r} {m.version}")
        before_pack_load(m, head.source, signer)
        for t in m.templates:
            owner = template_owner(t.id)
            if owner is not None and owner != m.name:
                raise TemplateConflictError(
                    f"pack {m.name!r} provides template {t.id!r}, which {owner} already "
                    "provides; unload one of them first",
                    pack=m.name, template=t.id, owner=owner,
                )
        pack_dir = head.cached_dir or _pack_dir(root, m, digest)
        triples = host_triples()
        present = _present_in_cache(pack_dir, m) if (pack_dir / _COMPLETE).is_file() else set()
        try:
            chosen = _choose(m, present, signer is not None, prefer, triples, head.source)
        except PlatformError:
            if head.bundle_path is None:
                raise
            bundle = read_bundle(head.bundle_path, limits=limits)
            if bundle.manifest_bytes != head.manifest_bytes:
                raise PackFormatError(f"{head.source} changed while it was being loaded",
                                      pack=m.name) from None
            chosen = _choose(m, set(bundle.contents), signer is not None, prefer, triples,
                             head.source)
            _extract(bundle, pack_dir)
        if head.bundle_path is not None:
            _repair_head(pack_dir, head)
        actors = _create_actors(m, pack_dir, chosen, grants)
        for tid, actor in actors.items():
            register_template(tid, actor, owner=m.name)
        pack = LoadedPack(m.name, m.version, m, digest, signer, head.source, pack_dir, chosen,
                          actors)
        _loaded[m.name] = pack
    plugin_manager().hook.reflow_after_pack_load(pack=pack)
    return pack


def _grants_for(manifest: PackManifest, grants: Any) -> Any:
    if grants is None:
        return None
    hosts = tuple(getattr(grants, "http_hosts", ()) or ())
    if not hosts or "*" in manifest.capabilities.get("http", ()):
        return grants
    requested = set(manifest.capabilities.get("http", ()))
    allowed = tuple(h for h in hosts if h in requested)
    dropped = sorted(set(hosts) - set(allowed))
    if dropped:
        log.info("pack %s did not request http to %s; not granted", manifest.name, dropped)
    from dataclasses import replace

    return replace(grants, http_hosts=allowed)


def _create_actors(
    m: PackManifest, pack_dir: Path, chosen: Mapping[str, Artifact], grants: Any
) -> dict[str, Actor]:
    effective = _grants_for(m, grants)
    actors: dict[str, Actor] = {}
    for entry, art in chosen.items():
        data = _rehash(pack_dir, art, m.name)
        specs = [t for t in m.templates if t.entry == entry]
        engine = engine_for(art.kind)
        path = pack_dir.joinpath(*art.path.split("/"))
        kwargs: dict[str, Any] = {"artifact": art, "templates": specs, "manifest": m,
                                  "grants": effective}
        if _takes_data(engine):
            # The engine loads exactly the bytes that were hashed; ``path`` only names them.
            kwargs["data"] = data
        else:
            # A third-party engine that only takes a path reads the cache file again itself
            # (the ArtifactEngine protocol); it should accept ``data=`` to close that window.
            log.debug("engine for kind %r takes no data=; it re-reads %s", art.kind, path)
        try:
            made = dict(engine.load_artifact(path, **kwargs))
        except ABIVersionError:
            raise
        except GuestABIError as exc:
            raise PackFormatError(
                f"pack {m.name!r}: {art.path} does not match its manifest: {exc}",
                pack=m.name, member=art.path,
            ) from exc
        for spec in specs:
            actor = made.get(spec.id)
            if actor is None:
                raise PackFormatError(f"pack {m.name!r}: the {art.kind} engine made no actor "
                                      f"for template {spec.id!r}", pack=m.name)
            got = (tuple(actor.inports), tuple(actor.outports))
            if got != (spec.inports, spec.outports):
                raise PackFormatError(
                    f"pack {m.name!r}: template {spec.id!r} declares ports in={list(spec.inports)}"
                    f" out={list(spec.outports)} in the manifest but {art.path} has "
                    f"in={list(got[0])} out={list(got[1])}",
                    pack=m.name, member=art.path,
                )
            actors[spec.id] = actor
    return actors


def unload_pack(name: str) -> bool:
    """Remove a loaded pack's templates from the catalog. Nodes already built keep running.
    Returns False if no pack of that name was loaded."""
    with _lock:
        pack = _loaded.pop(name, None)
        if pack is None:
            return False
        for tid in pack.templates:
            unregister_template(tid)
        return True


def list_packs() -> list[LoadedPack]:
    """The packs loaded in this process, by name."""
    with _lock:
        return [_loaded[k] for k in sorted(_loaded)]


def installed_packs(cache_dir: str | os.PathLike[str] | None = None) -> list[tuple[str, str]]:
    """(name, version) of every pack extracted into the cache."""
    root = cache_root(cache_dir)
    out = set()
    if root.is_dir():
        for d in root.glob("*/*"):
            if (d / _COMPLETE).is_file():
                out.add((d.parent.name.replace("+", "/"), d.name.rsplit("-", 1)[0]))
    return sorted(out)


# -- inspection ------------------------------------------------------------------------------


@dataclass
class PackInspection:
    """What ``inspect_pack`` found. No pack code was run to find it."""

    path: str
    size: int
    manifest: PackManifest
    digest: str
    members: dict[str, int]
    present_triples: tuple[str, ...]
    stripped: bool
    signatures: list[str]
    signature_status: str
    signer: str | None
    abi_ok: bool
    abi_message: str
    loads_as: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": self.path,
            "size": self.size,
            "name": m.name,
            "version": m.version,
            "abi": m.abi,
            "abi_compatible": self.abi_ok,
            "abi_message": self.abi_message,
            "description": m.description,
            "license": m.license,
            "authors": list(m.authors),
            "capabilities": {k: list(v) for k, v in m.capabilities.items()},
            "manifest_sha256": self.digest,
            "signatures": self.signatures,
            "signature_status": self.signature_status,
            "signer": self.signer,
            "stripped": self.stripped,
            "triples": list(m.triples()),
            "present_triples": list(self.present_triples),
            "loads_as": self.loads_as,
            "templates": [t.to_dict() for t in m.templates],
            "artifacts": [{**a.to_dict(), "present": a.path in self.members}
                          for a in m.artifacts],
            "members": self.members,
        }


def inspect_pack(
    path: str | os.PathLike[str],
    *,
    trust: TrustStore | str | os.PathLike[str] | None = None,
    limits: BundleLimits | None = None,
) -> PackInspection:
    """Read a pack completely and check it — container, manifest, every member's hash, the
    signature against the trust store, the ABI — without running any of its code.

    Container and integrity problems raise; signature and ABI problems are reported in
    ``signature_status`` / ``abi_message``, so a pack from an unknown publisher can be looked
    at before deciding to trust it.
    """
    store = trust if isinstance(trust, TrustStore) else TrustStore(trust)
    p = Path(path)
    b = read_bundle(p, limits=limits)
    m = b.manifest
    signer = None
    try:
        signer = store.verify(b.manifest_bytes, b.signatures, pack=f"pack {m.name!r}")
        status = f"valid, trusted key {signer}"
    except PackSignatureError as exc:
        status = str(exc)
    try:
        check_abi_compatible(m.abi_version, ABI_VERSION, what=f"pack {m.name!r} {m.version}")
        abi_ok, abi_msg = True, f"pack ABI {m.abi}, host ABI {ABI_VERSION[0]}.{ABI_VERSION[1]}"
    except ABIVersionError as exc:
        abi_ok, abi_msg = False, str(exc)
    try:
        chosen = _choose(m, set(b.contents), signer is not None, "native", host_triples(),
                         b.source)
        loads_as = {e: f"{a.kind} ({a.triple})" for e, a in chosen.items()}
    except PlatformError as exc:
        loads_as = {"error": str(exc)}
    members = {MANIFEST_NAME: len(b.manifest_bytes)}
    if b.signature_bytes is not None:
        members[SIGNATURE_NAME] = len(b.signature_bytes)
    members.update({k: len(v) for k, v in sorted(b.contents.items())})
    return PackInspection(
        path=str(p), size=b.compressed_size, manifest=m,
        digest=hashlib.sha256(b.manifest_bytes).hexdigest(), members=members,
        present_triples=b.present_triples(), stripped=b.is_stripped(),
        signatures=[s.key_id for s in b.signatures], signature_status=status, signer=signer,
        abi_ok=abi_ok, abi_message=abi_msg, loads_as=loads_as,
    )
