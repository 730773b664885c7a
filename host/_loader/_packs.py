"""Loading packs: verify, extract safely, pick an artifact, create actors, fill the catalog.

``load_pack(path_or_name)`` does, in this order, and stops at the first problem:

1. read the manifest and signature (the head of the bundle, or an installed pack's cache);
   a file is read once, whole, and hashed, so what is checked is what is loaded;
2. verify the signature against the trust store — unsigned, untrusted and tampered packs are
   refused unless ``allow_unsigned=True`` (which warns loudly, and never lets native code of
   an unverified pack load);
3. check the pack's ABI version against the host's;
4. ask ``reflow_before_pack_load`` plugins (a veto stops here);
5. choose, per entry, the host triple's artifact or the portable WebAssembly;
6. check the file given: byte for byte one verified in full before into this pack's cache
   directory (its sha256 is in the directory's ``.verified`` record), or else verified in
   full now — every member against the signed manifest, every container limit — and its
   members extracted into the cache (limits and path checks of ``reflow.abi._bundle``,
   files created exclusively, never following links);
7. re-hash every chosen artifact in the cache, then hand exactly the bytes that were hashed
   to the engine a plugin contributes for its kind (as ``data=``, when its ``load_artifact``
   takes it: the built-in engines do), and check the actors' ports against the manifest;
8. register the templates (owner = pack name); a template id another owner has is an error.

Loading is idempotent: loading the same pack again returns the same :class:`LoadedPack`.
``inspect_pack`` reads and checks a pack without running any of its code.

Steps 1 and 2 live in :mod:`._pack_head`, step 5 and inspection in :mod:`._pack_inspect`,
the cache of steps 6 and 7 (extraction, ``.verified`` records, re-hashing) in
:mod:`._pack_cache`; this module runs the steps in order and keeps the table of loaded packs.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core._actor import Actor
from .._core._catalog import register_template, unregister_template
from .._core._gcdefer import bulk
from .._errors import (
    ABIVersionError,
    GuestABIError,
    PackError,
    PackFormatError,
    TemplateConflictError,
)
from ..abi._bundle import BundleLimits
from ..abi._manifest import (
    Artifact,
    PackManifest,
    host_triples,
    use_manifest_memo,
)
from ..abi._version import ABI_VERSION, check_abi_compatible
from ._manifest_memo import CachedManifests
from ._pack_cache import check_file, pack_dir_for, present_in_cache, rehash_artifact, repair_head
from ._pack_head import (
    COMPLETE,
    cache_root,
    check_cached_dir,
    looks_like_path,
    read_head,
    verify_head,
)
from ._pack_inspect import PackInspection, choose_artifacts, inspect_pack
from ._plugins import before_pack_load, engine_for, plugin_manager, template_owner
from ._trust import TrustStore

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

_lock = threading.RLock()
_loaded: dict[str, LoadedPack] = {}

#: How many template ids a LoadedPack's repr shows (an API-service pack has hundreds).
_REPR_TEMPLATES = 8


def _shown(ids: list[str]) -> str:
    if len(ids) <= _REPR_TEMPLATES:
        return repr(ids)
    head = ", ".join(repr(i) for i in ids[:_REPR_TEMPLATES])
    return f"[{head}, ... ({len(ids)} in all)]"


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
        return (
            f"<LoadedPack {self.name} {self.version} templates={_shown(sorted(self.templates))} "
            f"signer={self.signer}>"
        )


def _takes_data(engine: Any) -> bool:
    """Whether ``engine.load_artifact`` accepts the verified bytes as ``data=``."""
    try:
        params = inspect.signature(engine.load_artifact).parameters
    except (TypeError, ValueError):
        return False
    p = params.get("data")
    return p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)


def load_pack(
    path_or_name: str | os.PathLike[str] | bytes,
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
    """Verify and load a pack (a ``.rflpack`` file, its bytes, or the name of an installed
    pack) and register its templates in the catalog. Idempotent; see the module docstring.

    A file or bytes given is always checked itself, even when that pack is cached or loaded
    already: it must be byte for byte a file verified in full before (its sha256 is in the
    cache directory's record) or verify in full now, so a tampered or truncated copy of a
    good pack is refused, never answered with the cached one.

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
    given_bytes = isinstance(path_or_name, (bytes, bytearray, memoryview))
    memo = CachedManifests(root)
    with _lock, use_manifest_memo(memo):
        if not given_bytes and not isinstance(path_or_name, os.PathLike):
            loaded = _loaded.get(str(path_or_name).split("@", 1)[0])
            if loaded is not None and not looks_like_path(str(path_or_name)):
                _check_loaded_range(loaded, str(path_or_name))
                return loaded
        if registry is not None and not given_bytes and not looks_like_path(str(path_or_name)):
            from ..registry._client import install_pack

            options = dict(registry_options or {})
            options.setdefault("trust", store)
            path_or_name = install_pack(str(path_or_name), registry, **options).path
        with _collector_paused():
            head = read_head(path_or_name, root, limits)
        m = head.manifest
        digest = hashlib.sha256(head.manifest_bytes).hexdigest()
        loaded = _loaded.get(m.name)
        if loaded is not None and loaded.digest != digest:
            raise PackError(
                f"pack {m.name!r} {loaded.version} is already loaded (from {loaded.source}); "
                f"call unload_pack({m.name!r}) before loading {m.version}",
                pack=m.name,
            )
        if loaded is not None and head.data is None:
            return loaded
        signer = verify_head(head, store, allow_unsigned)
        if head.cached_dir is not None:
            check_cached_dir(head, digest)
        if loaded is not None:
            # Loaded already, but this file is checked all the same: a tampered or cut copy
            # of a loaded pack is refused, not answered with the good one.
            check_file(head, loaded.directory, limits)
            return loaded
        check_abi_compatible(m.abi_version, ABI_VERSION, what=f"pack {m.name!r} {m.version}")
        before_pack_load(m, head.source, signer)
        for t in m.templates:
            owner = template_owner(t.id)
            if owner is not None and owner != m.name:
                raise TemplateConflictError(
                    f"pack {m.name!r} provides template {t.id!r}, which {owner} already "
                    "provides; unload one of them first",
                    pack=m.name,
                    template=t.id,
                    owner=owner,
                )
        pack_dir = head.cached_dir or pack_dir_for(root, m, digest)
        carried: set[str] = set()
        if head.data is not None:
            carried = check_file(head, pack_dir, limits)
            repair_head(pack_dir, head)
        present = present_in_cache(pack_dir, m) if (pack_dir / COMPLETE).is_file() else set()
        present |= carried  # one the cache lost since is refused by re-hashing, not skipped
        chosen = choose_artifacts(
            m, present, signer is not None, prefer, host_triples(), head.source
        )
        with _collector_paused():
            actors = _create_actors(m, pack_dir, chosen, grants)
        for tid, actor in actors.items():
            register_template(tid, actor, owner=m.name)
        pack = LoadedPack(
            m.name, m.version, m, digest, signer, head.source, pack_dir, chosen, actors
        )
        _loaded[m.name] = pack
        memo.flush()  # verified and loaded: what was parsed on the way may be remembered
    plugin_manager().hook.reflow_after_pack_load(pack=pack)
    return pack


def _check_loaded_range(loaded: LoadedPack, spec: str) -> None:
    """``"ns/x@range"`` asked while ``ns/x`` is loaded: the loaded version must satisfy the
    range (another version of a pack cannot be loaded next to it)."""
    if "@" not in spec:
        return
    from ..registry._semver import RegistrySpecError, Version, parse_spec

    _ns, _short, rng = parse_spec(spec)
    try:
        version = Version.parse(loaded.version)
    except (RegistrySpecError, ValueError):
        version = None
    if version is None or not rng.matches(version):
        raise PackError(
            f"pack {loaded.name!r} {loaded.version} is loaded (from {loaded.source}) and does "
            f"not satisfy {str(rng)!r}; call unload_pack({loaded.name!r}) before loading "
            f"{spec!r}",
            pack=loaded.name,
        )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Full collections held off while a pack's manifest and tables are parsed. A parse builds
    tens of thousands of long-lived objects (a manifest of a thousand templates, an operation
    table) and no garbage cycles; left alone, the collector's full collections walk everything
    the process holds many times over (a third of a warm load of the Kubernetes API pack in a
    fresh process).

    Only the oldest generation waits (:func:`reflow._core._gcdefer.bulk`): young collections
    go on, so other threads' short-lived cyclic garbage is freed as usual, the hold is shared
    with graph builds and ends within ``MAX_HOLD_S``, and the threshold is put back only if
    nobody changed it meanwhile; and only around the two parses, not a registry download,
    the verification or plugin hooks. (It was ``gc.disable()`` around the whole load: as
    fast, measured 2026-12-07 on the generated Kubernetes pack, warm, fresh process, 21 runs:
    medians 55.4 ms against 56.5 ms here, 87.1 ms with the collector left alone.)"""
    with bulk():
        yield


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
        data = rehash_artifact(pack_dir, art, m.name)
        specs = [t for t in m.templates if t.entry == entry]
        engine = engine_for(art.kind)
        path = pack_dir.joinpath(*art.path.split("/"))
        kwargs: dict[str, Any] = {
            "artifact": art,
            "templates": specs,
            "manifest": m,
            "grants": effective,
        }
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
                pack=m.name,
                member=art.path,
            ) from exc
        for spec in specs:
            actor = made.get(spec.id)
            if actor is None:
                raise PackFormatError(
                    f"pack {m.name!r}: the {art.kind} engine made no actor "
                    f"for template {spec.id!r}",
                    pack=m.name,
                )
            got = (tuple(actor.inports), tuple(actor.outports))
            if got != (spec.inports, spec.outports):
                raise PackFormatError(
                    f"pack {m.name!r}: template {spec.id!r} declares ports in={list(spec.inports)}"
                    f" out={list(spec.outports)} in the manifest but {art.path} has "
                    f"in={list(got[0])} out={list(got[1])}",
                    pack=m.name,
                    member=art.path,
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
            if (d / COMPLETE).is_file():
                out.add((d.parent.name.replace("+", "/"), d.name.rsplit("-", 1)[0]))
    return sorted(out)
