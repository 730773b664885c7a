"""The Merkle result cache of a workflow run.

A result's key is the SHA-256 of its job's code hash (source and ``version``), its parameter
values, and the keys of the results it was computed from — so a key names the whole history
of a value, and changing a job's code or version changes its key and every key downstream of
it, while untouched branches keep theirs. Results are pickled under
``<run_dir>/.reflow-cache/<k[:2]>/<k>.pkl`` (written to a temporary file and renamed, so a
crash never leaves half a result) with the pickle's SHA-256 beside it; ``verify=True``
re-hashes a stored result before trusting it.

The cache is the user's own directory: it is read with ``pickle``, so do not point a run at a
cache directory you did not write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from ._errors import CacheError

__all__ = ["MISS", "ResultCache", "merkle", "value_digest"]

log = logging.getLogger("reflow.workflow")

MISS = object()


def merkle(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def value_digest(value: Any) -> str:
    """A digest of a parameter value: canonical JSON where the value is JSON, else its pickle."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        return "j" + hashlib.sha256(text.encode()).hexdigest()
    except (TypeError, ValueError):
        pass
    try:
        return "p" + hashlib.sha256(pickle.dumps(value, protocol=5)).hexdigest()
    except Exception:
        return "r" + hashlib.sha256(repr(value).encode()).hexdigest()


class ResultCache:
    def __init__(self, root: Path, *, verify: bool = False) -> None:
        self.root = root
        self.verify = verify
        self.corrupt = 0
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"cannot create the result cache {str(root)!r}: {exc.strerror or exc}",
                path=str(root),
            ) from exc

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pkl"

    def get(self, key: str) -> Any:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return MISS
        except OSError as exc:
            log.warning("result cache: cannot read %s: %s", path, exc)
            return MISS
        if self.verify:
            try:
                want = path.with_suffix(".sha256").read_text().strip()
            except OSError:
                want = ""
            if hashlib.sha256(data).hexdigest() != want:
                self.corrupt += 1
                log.warning("result cache: %s does not match its checksum; recomputing", path)
                return MISS
        try:
            return pickle.loads(data)
        except Exception as exc:
            self.corrupt += 1
            log.warning("result cache: %s cannot be read back (%s); recomputing", path, exc)
            return MISS

    def put(self, key: str, value: Any) -> bool:
        """Store a result; ``False`` (and a warning) when it cannot be pickled or written."""
        try:
            data = pickle.dumps(value, protocol=5)
        except Exception as exc:
            log.warning(
                "result cache: a result of type %s cannot be pickled (%s)", type(value), exc
            )
            return False
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for target, payload in (
                (path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode()),
                (path, data),
            ):
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(payload)
                    os.replace(tmp, target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
        except OSError as exc:
            log.warning("result cache: cannot write %s: %s", path, exc)
            return False
        return True
