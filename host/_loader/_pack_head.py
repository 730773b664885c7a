"""The head of a pack (manifest and signature): found, read within limits, and verified.

``load_pack`` is given a ``.rflpack`` file, its bytes, or the name of a pack installed in the
cache (``name`` or ``name@version``; a ``reflow_resolve_pack`` plugin may answer a name). A
file is read once, whole, and hashed, so what is checked is what is loaded; a cached head is
read without following links, each part within its limit. :func:`verify_head` checks the
signature against the trust store (``allow_unsigned`` loads an unverified pack's sandboxed
code only, with a warning).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import (
    PackFormatError,
    PackIntegrityError,
    PackNotFoundError,
    PackSignatureError,
    UnsafeArchiveError,
    UntrustedKeyError,
)
from ..abi._bundle import BundleLimits, read_bundle
from ..abi._manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    PackManifest,
    parse_manifest,
)
from ..abi._manifest_rules import PACK_NAME_RE as _PACK_NAME
from ..abi._signing import Signature, parse_signatures
from ._plugins import plugin_manager
from ._trust import TrustStore

__all__ = [
    "COMPLETE",
    "PackHead",
    "cache_root",
    "check_cached_dir",
    "dir_name",
    "installed_dir",
    "looks_like_path",
    "read_head",
    "read_small",
    "verify_head",
]

log = logging.getLogger("reflow.packs")

#: Marks a cache directory whose extraction finished.
COMPLETE = ".complete"
_PIN = re.compile(r"[0-9A-Za-z.+-]{1,200}")


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where extracted packs live: ``cache_dir``, else ``$REFLOW_CACHE_DIR/packs``, else
    ``~/.cache/reflow/packs``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("REFLOW_CACHE_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "reflow"
    return base / "packs"


@dataclass
class PackHead:
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


def looks_like_path(text: str) -> bool:
    if text.endswith(".rflpack"):
        return True
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # NUL in it, a name too long for the OS
        return False


def read_pack_file(path: Path, limits: BundleLimits) -> bytes:
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
            raise UnsafeArchiveError(
                f"{path} is {st.st_size} bytes, over the limit of {limits.max_total}",
                pack=str(path),
            )
        try:
            data = fh.read(limits.max_total + 1)
        except OSError as exc:
            raise PackFormatError(f"cannot read {path}: {exc.strerror}", pack=str(path)) from exc
    if len(data) > limits.max_total:
        raise UnsafeArchiveError(
            f"{path} grew past the limit of {limits.max_total} bytes while being read",
            pack=str(path),
        )
    return data


def file_head(data: bytes, source: str, label: str, limits: BundleLimits) -> PackHead:
    b = read_bundle(data, limits=limits, head_only=True, label=label)
    return PackHead(
        b.manifest,
        b.manifest_bytes,
        b.signatures,
        source,
        None,
        data,
        hashlib.sha256(data).hexdigest(),
        label,
        b.signature_bytes,
    )


def read_head(
    path_or_name: str | os.PathLike[str] | bytes, root: Path, limits: BundleLimits
) -> PackHead:
    if isinstance(path_or_name, (bytes, bytearray, memoryview)):
        return file_head(bytes(path_or_name), "<bytes>", "<bytes>", limits)
    if isinstance(path_or_name, os.PathLike) or looks_like_path(str(path_or_name)):
        path = Path(path_or_name)
        return file_head(read_pack_file(path, limits), str(path), path.name, limits)
    name = str(path_or_name)
    found = installed_dir(name, root)
    if found is None:
        bare, _, version = name.partition("@")
        resolved = plugin_manager().hook.reflow_resolve_pack(name=bare, version=version or None)
        if resolved is not None:
            rpath = Path(resolved)
            return file_head(read_pack_file(rpath, limits), str(rpath), rpath.name, limits)
        raise PackNotFoundError(
            f"no pack {name[:200]!r}: not a file, and not installed in {root} "
            "(load it once from its .rflpack file)",
            pack=name[:200],
        )
    return read_cached_head(found, limits)


def check_cached_dir(head: PackHead, digest: str) -> None:
    """A verified manifest read from a cache directory must be the one the directory was
    made for (its name and digest are in the path), not another signed manifest put there."""
    d = head.cached_dir
    assert d is not None
    m = head.manifest
    if d.parent.name != dir_name(m.name) or d.name != f"{m.version}-{digest[:16]}":
        raise PackIntegrityError(
            f"cached pack {d}: its manifest is that of {m.name!r} {m.version} "
            f"(sha256 {digest[:16]}...), not the one the directory was made for; delete {d} "
            "and load the pack from its file again",
            pack=m.name,
            file=str(d / MANIFEST_NAME),
            expected=d.name,
            actual=f"{m.version}-{digest[:16]}",
        )


def read_small(path: Path, limit: int, d: Path, member: str) -> bytes:
    """A cached manifest or signature, without following links, at most ``limit`` bytes."""
    try:
        fd = os.open(
            path,
            os.O_RDONLY
            | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_NONBLOCK", 0)
            | getattr(os, "O_BINARY", 0),
        )
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(0, "not a plain file")
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise PackIntegrityError(
            f"cached {member} {path} cannot be read ({exc.strerror}); delete {d} and load "
            "the pack from its file again",
            pack=str(d),
            file=str(path),
            expected="a plain file",
            actual="unreadable",
        ) from exc
    if len(data) > limit:
        raise UnsafeArchiveError(
            f"{path}: cached {member} is over its limit of {limit} bytes",
            pack=str(d),
            member=member,
        )
    return data


def read_cached_head(d: Path, limits: BundleLimits) -> PackHead:
    mbytes = read_small(d / MANIFEST_NAME, limits.max_manifest, d, MANIFEST_NAME)
    spath = d / SIGNATURE_NAME
    sbytes = (
        read_small(spath, limits.max_signature, d, SIGNATURE_NAME)
        if os.path.lexists(spath)
        else None
    )
    try:
        manifest = parse_manifest(mbytes, max_size=limits.max_manifest)
        sigs = parse_signatures(sbytes, max_size=limits.max_signature) if sbytes is not None else []
    except PackFormatError as exc:
        exc.pack = str(d)
        exc.args = (f"cached pack {d}: {exc.args[0]}",)
        raise
    return PackHead(manifest, mbytes, sigs, str(d), d, signature_bytes=sbytes)


def dir_name(name: str) -> str:
    return name.replace("/", "+")


def installed_dir(name: str, root: Path) -> Path | None:
    """The newest complete cache directory of pack ``name`` (``name@version`` pins one)."""
    version = None
    if "@" in name:
        name, version = name.split("@", 1)
    if not _PACK_NAME.fullmatch(name) or (version is not None and not _PIN.fullmatch(version)):
        return None  # not a name a cache directory can have ('..', '/x', NUL, ...)
    base = root / dir_name(name)
    if not base.is_dir():
        return None
    best: tuple[tuple[Any, ...], Path] | None = None
    for d in base.iterdir():
        if not (d / COMPLETE).is_file():
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


def verify_head(head: PackHead, trust: TrustStore, allow_unsigned: bool) -> str | None:
    name = head.manifest.name
    try:
        signer = trust.verify(
            head.manifest_bytes, head.signatures, pack=f"pack {name!r} ({head.source})"
        )
    except PackSignatureError as exc:
        # a trusted key whose signature does not verify: altered, never loaded. A trusted key
        # not allowed to sign this name counts as untrusted (allow_unsigned may load it).
        tampered = (
            bool(exc.key_id) and exc.key_id in trust and not isinstance(exc, UntrustedKeyError)
        )
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
