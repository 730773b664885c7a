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
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import logging
import os
import re
import stat
import tempfile
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core._actor import Actor
from .._core._catalog import register_template, unregister_template
from .._errors import (
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
from ..abi._bounded import load_json
from ..abi._bundle import Bundle, BundleLimits, read_bundle, sha256_hex
from ..abi._manifest import _NAME as _PACK_NAME
from ..abi._manifest import (
    MANIFEST_NAME,
    PORTABLE_TRIPLE,
    SIGNATURE_NAME,
    Artifact,
    PackManifest,
    check_member_path,
    host_triples,
    parse_manifest,
)
from ..abi._signing import Signature, parse_signatures
from ..abi._version import ABI_VERSION, check_abi_compatible
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

_COMPLETE = ".complete"
#: Which whole files (sha256) were verified in full and extracted into a cache directory.
_RECORD = ".verified"
_RECORD_MAX = 32
_PIN = re.compile(r"[0-9A-Za-z.+-]{1,200}")
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
    cached_dir: Path | None
    #: The whole file (or bytes) given: checked against the cache record, or verified fully.
    data: bytes | None = None
    file_digest: str = ""
    label: str = ""
    signature_bytes: bytes | None = None


def _looks_like_path(text: str) -> bool:
    if text.endswith(".rflpack"):
        return True
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # NUL in it, a name too long for the OS
        return False


def _read_file(path: Path, limits: BundleLimits) -> bytes:
    """The whole pack file, read once (what is checked is what is loaded), bounded."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise PackNotFoundError(f"no pack file {path}", pack=str(path)) from None
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise PackFormatError(f"cannot read {path}: {why}", pack=str(path)) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise PackFormatError(f"{path} is not a plain file", pack=str(path))
    with os.fdopen(fd, "rb") as fh:
        if st.st_size > limits.max_total:
            raise UnsafeArchiveError(f"{path} is {st.st_size} bytes, over the limit of "
                                     f"{limits.max_total}", pack=str(path))
        try:
            data = fh.read(limits.max_total + 1)
        except OSError as exc:
            raise PackFormatError(f"cannot read {path}: {exc.strerror}", pack=str(path)) from exc
    if len(data) > limits.max_total:
        raise UnsafeArchiveError(f"{path} grew past the limit of {limits.max_total} bytes "
                                 "while being read", pack=str(path))
    return data


def _file_head(data: bytes, source: str, label: str, limits: BundleLimits) -> _Head:
    b = read_bundle(data, limits=limits, head_only=True, label=label)
    return _Head(b.manifest, b.manifest_bytes, b.signatures, source, None, data,
                 hashlib.sha256(data).hexdigest(), label, b.signature_bytes)


def _head(path_or_name: str | os.PathLike[str] | bytes, root: Path,
          limits: BundleLimits) -> _Head:
    if isinstance(path_or_name, (bytes, bytearray, memoryview)):
        return _file_head(bytes(path_or_name), "<bytes>", "<bytes>", limits)
    if isinstance(path_or_name, os.PathLike) or _looks_like_path(str(path_or_name)):
        path = Path(path_or_name)
        return _file_head(_read_file(path, limits), str(path), path.name, limits)
    name = str(path_or_name)
    found = _installed_dir(name, root)
    if found is None:
        bare, _, version = name.partition("@")
        resolved = plugin_manager().hook.reflow_resolve_pack(name=bare, version=version or None)
        if resolved is not None:
            rpath = Path(resolved)
            return _file_head(_read_file(rpath, limits), str(rpath), rpath.name, limits)
        raise PackNotFoundError(
            f"no pack {name[:200]!r}: not a file, and not installed in {root} "
            "(load it once from its .rflpack file)",
            pack=name[:200],
        )
    return _read_cached_head(found, limits)


def _check_cached_dir(head: _Head, digest: str) -> None:
    """A verified manifest read from a cache directory must be the one the directory was
    made for (its name and digest are in the path), not another signed manifest put there."""
    d = head.cached_dir
    assert d is not None
    m = head.manifest
    if d.parent.name != _dir_name(m.name) or d.name != f"{m.version}-{digest[:16]}":
        raise PackIntegrityError(
            f"cached pack {d}: its manifest is that of {m.name!r} {m.version} "
            f"(sha256 {digest[:16]}...), not the one the directory was made for; delete {d} "
            "and load the pack from its file again",
            pack=m.name, file=str(d / MANIFEST_NAME), expected=d.name,
            actual=f"{m.version}-{digest[:16]}",
        )


def _read_small(path: Path, limit: int, d: Path, member: str) -> bytes:
    """A cached manifest or signature, without following links, at most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(0, "not a plain file")
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise PackIntegrityError(
            f"cached {member} {path} cannot be read ({exc.strerror}); delete {d} and load "
            "the pack from its file again", pack=str(d), file=str(path),
            expected="a plain file", actual="unreadable",
        ) from exc
    if len(data) > limit:
        raise UnsafeArchiveError(f"{path}: cached {member} is over its limit of {limit} bytes",
                                 pack=str(d), member=member)
    return data


def _read_cached_head(d: Path, limits: BundleLimits) -> _Head:
    mbytes = _read_small(d / MANIFEST_NAME, limits.max_manifest, d, MANIFEST_NAME)
    spath = d / SIGNATURE_NAME
    sbytes = (_read_small(spath, limits.max_signature, d, SIGNATURE_NAME)
              if os.path.lexists(spath) else None)
    try:
        manifest = parse_manifest(mbytes, max_size=limits.max_manifest)
        sigs = (parse_signatures(sbytes, max_size=limits.max_signature)
                if sbytes is not None else [])
    except PackFormatError as exc:
        exc.pack = str(d)
        exc.args = (f"cached pack {d}: {exc.args[0]}",)
        raise
    return _Head(manifest, mbytes, sigs, str(d), d, signature_bytes=sbytes)


def _dir_name(name: str) -> str:
    return name.replace("/", "+")


def _installed_dir(name: str, root: Path) -> Path | None:
    """The newest complete cache directory of pack ``name`` (``name@version`` pins one)."""
    version = None
    if "@" in name:
        name, version = name.split("@", 1)
    if not _PACK_NAME.fullmatch(name) or (version is not None
                                          and not _PIN.fullmatch(version)):
        return None  # not a name a cache directory can have ('..', '/x', NUL, ...)
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
    return signer  # (an unscoped signer was warned about once, by TrustStore.verify)


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


def _safe_write(root: Path, rel: str, data: bytes, *, replace: bool = False) -> None:
    """Create ``root/rel`` exclusively, never through a link. ``replace``: write a hidden
    sibling (a name no member can have) and rename it over ``rel``."""
    check_member_path(rel, "member")
    target = root.joinpath(*rel.split("/"))
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"member {rel!r} escapes the pack directory", member=rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    dest = target.with_name(f".{target.name}.{os.getpid()}.tmp") if replace else target
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(
        os, "O_BINARY", 0)
    if replace and os.path.lexists(dest):
        os.unlink(dest)
    fd = os.open(dest, flags, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    if replace:
        os.replace(dest, target)


def _extract(bundle: Bundle, pack_dir: Path) -> None:
    """Write the bundle's members into ``pack_dir`` (created atomically; a directory from an
    earlier, stripped copy of the same pack gets the missing members added). A cache that
    cannot be written is a PackError naming it."""
    try:
        _extract_into(bundle, pack_dir)
    except OSError as exc:
        raise PackError(f"pack {bundle.manifest.name!r}: cannot extract into the cache "
                        f"{pack_dir}: {exc.strerror or exc}", pack=bundle.manifest.name) from exc


def _extract_into(bundle: Bundle, pack_dir: Path) -> None:
    pack_dir.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(pack_dir):
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
            if not pack_dir.is_dir():
                raise
    for rel, data in bundle.contents.items():
        if not os.path.lexists(pack_dir.joinpath(*rel.split("/"))):
            _safe_write(pack_dir, rel, data, replace=True)
    if bundle.signature_bytes is not None and not os.path.lexists(pack_dir / SIGNATURE_NAME):
        _safe_write(pack_dir, SIGNATURE_NAME, bundle.signature_bytes)
    if not (pack_dir / _COMPLETE).is_file():
        (pack_dir / _COMPLETE).write_bytes(b"")


def _repair_head(pack_dir: Path, head: _Head) -> None:
    """Put the verified manifest and signature back if the cached copies were altered, so a
    later load by name (which trusts only what verifies) finds the pack again. Best effort:
    a cache that cannot be repaired fails that later load with its own error."""
    for name, good in ((MANIFEST_NAME, head.manifest_bytes),
                       (SIGNATURE_NAME, head.signature_bytes)):
        if good is None:
            continue
        try:
            if _read_small(pack_dir / name, len(good), pack_dir, name) == good:
                continue
        except PackError:
            pass
        try:
            _safe_write(pack_dir, name, good, replace=True)
        except OSError as exc:
            log.warning("pack %s: cannot repair the cached %s in %s: %s", head.manifest.name,
                        name, pack_dir, exc)
            continue
        log.warning("pack %s: repaired the altered cached %s in %s", head.manifest.name, name,
                    pack_dir)


def _record_key(create: bool) -> bytes | None:
    """The per-user secret that authenticates ``.verified`` records (the one the wasm engine's
    compiled-module cache uses, ``$REFLOW_CONFIG_DIR/cache.key``), so whoever can write the
    cache cannot vouch for a file; None (no fast path: always verify in full) if unusable.
    Only a file verified in full creates it (``create``): looking records up, as every load
    does before it has verified anything, writes nothing."""
    try:
        from .._sandbox._wasm_engine import default_cache_key_file, load_cache_key

        path = default_cache_key_file()
        key = _record_keys.get(str(path))
        if key is None:
            if not create and not os.path.lexists(path):
                return None
            key = _record_keys[str(path)] = load_cache_key(path)
        return key
    except (ImportError, OSError, ValueError) as exc:
        log.debug("pack cache records disabled: %s", exc)
        return None


_record_keys: dict[str, bytes] = {}


def _record_tag(key: bytes, pack_dir: Path, file_digest: str, members: list[str]) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(b"reflow-pack-verified-v1\x00")
    mac.update(f"{pack_dir.parent.name}/{pack_dir.name}\x00{file_digest}\x00".encode())
    mac.update("\n".join(members).encode())
    return mac.hexdigest()


def _read_record(pack_dir: Path) -> dict[str, list[str]]:
    """The cache directory's record of fully verified files (file sha256 -> the members the
    file carries), each entry authenticated. Anything unreadable or not authentic counts as
    no record: the file is verified again."""
    key = _record_key(create=False)
    if key is None:
        return {}
    try:
        data = _read_small(pack_dir / _RECORD, 1 << 20, pack_dir, _RECORD)
        doc = load_json(data, _RECORD, max_size=1 << 20, max_depth=3)
    except PackError:
        return {}
    if not isinstance(doc, dict):
        return {}
    out: dict[str, list[str]] = {}
    for digest, entry in doc.items():
        if not isinstance(entry, dict):
            continue
        members, tag = entry.get("members"), entry.get("tag")
        if (isinstance(members, list) and all(isinstance(p, str) for p in members)
                and isinstance(tag, str) and hmac.compare_digest(
                    tag, _record_tag(key, pack_dir, digest, members))):
            out[digest] = members
    return out


def _write_record(pack_dir: Path, file_digest: str, members: list[str]) -> None:
    key = _record_key(create=True)
    if key is None:
        return
    record = _read_record(pack_dir)
    record.pop(file_digest, None)
    record[file_digest] = members
    keep = {d: {"members": m, "tag": _record_tag(key, pack_dir, d, m)}
            for d, m in list(record.items())[-_RECORD_MAX:]}
    tmp = pack_dir / f"{_RECORD}.{os.getpid()}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(keep, fh)
        os.replace(tmp, pack_dir / _RECORD)
    except OSError as exc:  # only an optimisation: the next load verifies the file again
        log.debug("cannot write %s: %s", pack_dir / _RECORD, exc)


def _check_file(head: _Head, pack_dir: Path, limits: BundleLimits) -> set[str]:
    """The file ``load_pack`` was handed, checked — never stood in for by the cache: either
    it is byte for byte (sha256) a file already verified in full into ``pack_dir``, whose
    members are all there, or it is verified in full now (every member against the signed
    manifest, the container's every limit) and its members added to the cache. Returns the
    members the file carries. (A member changed in the cache is not replaced: re-hashing
    refuses it before it loads.)"""
    assert head.data is not None
    members = _read_record(pack_dir).get(head.file_digest)
    if members is not None and (pack_dir / _COMPLETE).is_file() and all(
            os.path.lexists(pack_dir.joinpath(*p.split("/"))) for p in members):
        return set(members) & set(head.manifest.members())
    bundle = read_bundle(head.data, limits=limits, label=head.label)
    _extract(bundle, pack_dir)
    _write_record(pack_dir, head.file_digest, sorted(bundle.contents))
    return set(bundle.contents)


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
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses a directory
        os.close(fd)
        raise missing()
    with os.fdopen(fd, "rb") as fh:
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
    with _lock:
        if not given_bytes and not isinstance(path_or_name, os.PathLike):
            loaded = _loaded.get(str(path_or_name).split("@", 1)[0])
            if loaded is not None and not _looks_like_path(str(path_or_name)):
                return loaded
        if registry is not None and not given_bytes and not _looks_like_path(
                str(path_or_name)):
            from ..registry._client import install_pack

            options = dict(registry_options or {})
            options.setdefault("trust", store)
            path_or_name = install_pack(str(path_or_name), registry, **options).path
        head = _head(path_or_name, root, limits)
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
        signer = _verify(head, store, allow_unsigned)
        if head.cached_dir is not None:
            _check_cached_dir(head, digest)
        if loaded is not None:
            # Loaded already, but this file is checked all the same: a tampered or cut copy
            # of a loaded pack is refused, not answered with the good one.
            _check_file(head, loaded.directory, limits)
            return loaded
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
        carried: set[str] = set()
        if head.data is not None:
            carried = _check_file(head, pack_dir, limits)
            _repair_head(pack_dir, head)
        present = _present_in_cache(pack_dir, m) if (pack_dir / _COMPLETE).is_file() else set()
        present |= carried  # one the cache lost since is refused by re-hashing, not skipped
        chosen = _choose(m, present, signer is not None, prefer, host_triples(), head.source)
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
