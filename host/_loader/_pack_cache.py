"""The cache of extracted packs: members written safely, verified files recorded, re-hashing.

A pack's members are extracted into ``<root>/<name>/<version>-<digest>/``, each file created
exclusively and never through a link (a stripped copy adds what it carries to the same
directory). The ``.verified`` record there lists, authenticated with a per-user key, which
whole files were verified in full into it, so loading the same file again skips the full
check. An artifact is re-hashed every time it is loaded, and the engine gets exactly the
bytes that were hashed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import stat
import tempfile
from pathlib import Path

from .._errors import (
    PackError,
    PackIntegrityError,
    UnsafeArchiveError,
)
from ..abi._bounded import load_json
from ..abi._bundle import Bundle, BundleLimits, read_bundle, sha256_hex
from ..abi._manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Artifact,
    PackManifest,
)
from ..abi._manifest_rules import check_member_path
from ._pack_head import COMPLETE, PackHead, dir_name, read_small

__all__ = [
    "check_file",
    "pack_dir_for",
    "present_in_cache",
    "rehash_artifact",
    "repair_head",
]

log = logging.getLogger("reflow.packs")

#: Which whole files (sha256) were verified in full and extracted into a cache directory.
_RECORD = ".verified"
_RECORD_MAX = 32


def pack_dir_for(root: Path, manifest: PackManifest, digest: str) -> Path:
    return root / dir_name(manifest.name) / f"{manifest.version}-{digest[:16]}"


def _safe_write(root: Path, rel: str, data: bytes, *, replace: bool = False) -> None:
    """Create ``root/rel`` exclusively, never through a link. ``replace``: write a hidden
    sibling (a name no member can have) and rename it over ``rel``."""
    check_member_path(rel, "member")
    target = root.joinpath(*rel.split("/"))
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"member {rel!r} escapes the pack directory", member=rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    dest = target.with_name(f".{target.name}.{os.getpid()}.tmp") if replace else target
    flags = (
        os.O_WRONLY
        | os.O_CREAT
        | os.O_EXCL
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_BINARY", 0)
    )
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
        raise PackError(
            f"pack {bundle.manifest.name!r}: cannot extract into the cache "
            f"{pack_dir}: {exc.strerror or exc}",
            pack=bundle.manifest.name,
        ) from exc


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
            (tmp / COMPLETE).write_bytes(b"")
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
    if not (pack_dir / COMPLETE).is_file():
        (pack_dir / COMPLETE).write_bytes(b"")


def repair_head(pack_dir: Path, head: PackHead) -> None:
    """Put the verified manifest and signature back if the cached copies were altered, so a
    later load by name (which trusts only what verifies) finds the pack again. Best effort:
    a cache that cannot be repaired fails that later load with its own error."""
    for name, good in (
        (MANIFEST_NAME, head.manifest_bytes),
        (SIGNATURE_NAME, head.signature_bytes),
    ):
        if good is None:
            continue
        try:
            if read_small(pack_dir / name, len(good), pack_dir, name) == good:
                continue
        except PackError:
            pass
        try:
            _safe_write(pack_dir, name, good, replace=True)
        except OSError as exc:
            log.warning(
                "pack %s: cannot repair the cached %s in %s: %s",
                head.manifest.name,
                name,
                pack_dir,
                exc,
            )
            continue
        log.warning(
            "pack %s: repaired the altered cached %s in %s", head.manifest.name, name, pack_dir
        )


def _record_key(create: bool) -> bytes | None:
    """The per-user secret that authenticates ``.verified`` records (the one the wasm engine's
    compiled-module cache uses, ``$REFLOW_CONFIG_DIR/cache.key``), so whoever can write the
    cache cannot vouch for a file; None (no fast path: always verify in full) if unusable.
    Only a file verified in full creates it (``create``): looking records up, as every load
    does before it has verified anything, writes nothing."""
    try:
        from .._sandbox._wasm_cache import default_cache_key_file, load_cache_key

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
        data = read_small(pack_dir / _RECORD, 1 << 20, pack_dir, _RECORD)
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
        if (
            isinstance(members, list)
            and all(isinstance(p, str) for p in members)
            and isinstance(tag, str)
            and hmac.compare_digest(tag, _record_tag(key, pack_dir, digest, members))
        ):
            out[digest] = members
    return out


def _write_record(pack_dir: Path, file_digest: str, members: list[str]) -> None:
    key = _record_key(create=True)
    if key is None:
        return
    record = _read_record(pack_dir)
    record.pop(file_digest, None)
    record[file_digest] = members
    keep = {
        d: {"members": m, "tag": _record_tag(key, pack_dir, d, m)}
        for d, m in list(record.items())[-_RECORD_MAX:]
    }
    tmp = pack_dir / f"{_RECORD}.{os.getpid()}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644
        )
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(keep, fh)
        os.replace(tmp, pack_dir / _RECORD)
    except OSError as exc:  # only an optimisation: the next load verifies the file again
        log.debug("cannot write %s: %s", pack_dir / _RECORD, exc)


def check_file(head: PackHead, pack_dir: Path, limits: BundleLimits) -> set[str]:
    """The file ``load_pack`` was handed, checked — never stood in for by the cache: either
    it is byte for byte (sha256) a file already verified in full into ``pack_dir``, whose
    members are all there, or it is verified in full now (every member against the signed
    manifest, the container's every limit) and its members added to the cache. Returns the
    members the file carries. (A member changed in the cache is not replaced: re-hashing
    refuses it before it loads.)"""
    assert head.data is not None
    members = _read_record(pack_dir).get(head.file_digest)
    if (
        members is not None
        and (pack_dir / COMPLETE).is_file()
        and all(os.path.lexists(pack_dir.joinpath(*p.split("/"))) for p in members)
    ):
        return set(members) & set(head.manifest.members())
    bundle = read_bundle(head.data, limits=limits, label=head.label)
    _extract(bundle, pack_dir)
    _write_record(pack_dir, head.file_digest, sorted(bundle.contents))
    return set(bundle.contents)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def present_in_cache(d: Path, manifest: PackManifest) -> set[str]:
    return {p for p in manifest.members() if d.joinpath(*p.split("/")).is_file()}


def rehash_artifact(d: Path, art: Artifact, pack: str) -> bytes:
    """The cached artifact's bytes, read once and checked against the manifest. Engines that
    take ``data=`` (the built-in ones) load these bytes and never read the path again, so
    swapping the file after the check changes nothing."""
    path = d.joinpath(*art.path.split("/"))

    def missing() -> PackIntegrityError:
        return PackIntegrityError(
            f"pack {pack!r}: cached artifact {path} is missing or not a plain file",
            pack=pack,
            file=str(path),
            expected=art.sha256,
            actual="missing",
        )

    try:
        # no link followed; a FIFO put there must not block the open
        fd = os.open(
            path,
            os.O_RDONLY
            | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_NONBLOCK", 0)
            | getattr(os, "O_BINARY", 0),
        )
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
            pack=pack,
            file=str(path),
            expected=art.sha256,
            actual=actual,
        )
    return data
