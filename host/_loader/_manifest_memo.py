"""Parsed manifests remembered in the pack cache, so a warm ``load_pack`` of a pack with a
thousand templates does not run the TOML scan and ``tomllib`` again (160-220 ms for the
Kubernetes API pack's 554 KB manifest; the remembered JSON is read in a few).

Each entry, ``<cache root>/.manifests/<sha[:2]>/<sha>.json``, is the parsed document of the
manifest whose bytes have that SHA-256, with an HMAC tag under the per-user cache key (the one
that authenticates ``.verified`` records): whoever can write the cache cannot make a signed
manifest's bytes stand for another document. An entry that is missing, unreadable, too big or
not authentic is a miss; the bytes are parsed as usual and the entry rewritten. The document
is validated again (``manifest_from_dict``) the first time a process uses it.

The validated :class:`~reflow.abi.PackManifest` is remembered too, in memory: for the rest of
one load (which reads the manifest twice: the bundle's head, a scoped signer's name) and, for
later loads in this process, while the entry on disk is the very file it was remembered with
(same inode, size and modification time) — so the cache stays the one source of truth, and
an entry damaged or replaced sends the next load back to parsing the bytes. A manifest is a
pure function of its bytes, which the SHA-256 names; the last :data:`_KEEP` are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._errors import PackError
from ..abi._manifest import PackManifest
from ..abi._manifest_rules import MAX_MANIFEST
from ._pack_cache import _record_key
from ._pack_head import read_small

__all__ = ["CachedManifests"]

log = logging.getLogger("reflow.packs")

_DIR = ".manifests"
#: a parsed manifest as JSON is about as big as its TOML; anything far bigger is not ours
_MAX_ENTRY = 4 * MAX_MANIFEST
#: validated manifests kept in memory between loads of this process
_KEEP = 16

_Stamp = tuple[int, int, int] | None
_validated: OrderedDict[tuple[str, str], tuple[PackManifest, _Stamp]] = OrderedDict()
_validated_lock = threading.Lock()


def _tag(key: bytes, digest: str, body: bytes) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(b"reflow-manifest-memo-v1\x00")
    mac.update(digest.encode() + b"\x00")
    mac.update(body)
    return mac.hexdigest()


class CachedManifests:
    def __init__(self, root: Path) -> None:
        self.root = root / _DIR
        #: documents parsed before the per-user key existed (a first load): written by
        #: :meth:`flush` once a full verification has created it, never by a refused file
        self._pending: dict[str, Mapping[str, Any]] = {}
        #: validated during this load
        self._here: dict[str, PackManifest] = {}

    def _path(self, digest: str) -> Path | None:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            return None
        return self.root / digest[:2] / f"{digest}.json"

    def get(self, digest: str) -> Mapping[str, Any] | None:
        path = self._path(digest)
        key = _record_key(create=False)
        if path is None or key is None or not os.path.lexists(path):
            return None
        try:
            data = read_small(path, _MAX_ENTRY, path.parent, path.name)
        except PackError:
            return None
        tag, sep, body = data.partition(b"\n")
        if not sep or not hmac.compare_digest(
            tag.decode("ascii", "replace"), _tag(key, digest, body)
        ):
            log.debug("manifest memo %s is not authentic: ignored", path)
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def _stamp(self, digest: str) -> _Stamp:
        path = self._path(digest)
        try:
            st = os.lstat(path) if path is not None else None
        except OSError:
            return None
        return None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns)

    def validated(self, digest: str) -> PackManifest | None:
        """The manifest validated from the bytes with this SHA-256 in this load, or in an
        earlier one of this process while the entry on disk is unchanged."""
        manifest = self._here.get(digest)
        if manifest is not None:
            return manifest
        with _validated_lock:
            kept = _validated.get((str(self.root), digest))
        if kept is None or kept[1] != self._stamp(digest):
            return None
        self._here[digest] = kept[0]
        return kept[0]

    def remember(self, digest: str, manifest: PackManifest) -> None:
        self._here[digest] = manifest
        self._keep(digest, manifest)

    def _keep(self, digest: str, manifest: PackManifest) -> None:
        stamp = self._stamp(digest)
        with _validated_lock:
            _validated[(str(self.root), digest)] = (manifest, stamp)
            _validated.move_to_end((str(self.root), digest))
            while len(_validated) > _KEEP:
                _validated.popitem(last=False)

    def put(self, digest: str, doc: Mapping[str, Any]) -> None:
        path = self._path(digest)
        if path is None:
            return
        key = _record_key(create=False)
        if key is None:
            self._pending[digest] = doc
            return
        self._write(path, key, digest, doc)

    def flush(self) -> None:
        """Write what was parsed before the key existed, if it exists now."""
        key = _record_key(create=False) if self._pending else None
        if key is None:
            return
        pending, self._pending = self._pending, {}
        for digest, doc in pending.items():
            path = self._path(digest)
            if path is not None:
                self._write(path, key, digest, doc)
                if digest in self._here:  # now stands for the entry just written
                    self._keep(digest, self._here[digest])

    def _write(self, path: Path, key: bytes, digest: str, doc: Mapping[str, Any]) -> None:
        try:
            body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        except (TypeError, ValueError):
            return  # a TOML date or time: such a manifest is refused anyway
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644
            )
            with os.fdopen(fd, "wb") as fh:
                fh.write(_tag(key, digest, body).encode() + b"\n" + body)
            os.replace(tmp, path)
        except OSError as exc:  # only an optimisation
            log.debug("cannot write %s: %s", path, exc)
            tmp.unlink(missing_ok=True)
