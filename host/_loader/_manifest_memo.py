"""Parsed manifests remembered in the pack cache, so a warm ``load_pack`` of a pack with a
thousand templates does not run the TOML scan and ``tomllib`` again (160-220 ms for the
Kubernetes API pack's 554 KB manifest; the remembered JSON is read in a few).

Each entry, ``<cache root>/.manifests/<sha[:2]>/<sha>.json``, is the parsed document of the
manifest whose bytes have that SHA-256, with an HMAC tag under the per-user cache key (the one
that authenticates ``.verified`` records): whoever can write the cache cannot make a signed
manifest's bytes stand for another document. An entry that is missing, unreadable, too big or
not authentic is a miss; the bytes are parsed as usual and the entry rewritten. The document
is validated again on every use (``manifest_from_dict``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._errors import PackError
from ..abi._manifest import MAX_MANIFEST
from ._pack_cache import _record_key
from ._pack_head import read_small

__all__ = ["CachedManifests"]

log = logging.getLogger("reflow.packs")

_DIR = ".manifests"
#: a parsed manifest as JSON is about as big as its TOML; anything far bigger is not ours
_MAX_ENTRY = 4 * MAX_MANIFEST


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
