"""The secret that authenticates the compiled-module disk cache, and the cache's format.

``Module.deserialize`` runs cached machine code as is, so the engine
(:mod:`reflow._sandbox._wasm_engine`) uses a cache entry only if it carries an HMAC-SHA256
keyed by a secret kept outside the cache:
``cache.key`` in ``$REFLOW_CONFIG_DIR``, else ``~/.config/reflow`` (created 0600, exclusively;
refused unless this user's and private). This module owns that key file and the constants
of the entry format; the engine owns reading and writing entries.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from pathlib import Path

__all__ = ["default_cache_key_file", "load_cache_key"]

_CACHE_FORMAT = "cwasm-hmac-v1"
_CACHE_MAGIC = b"RFLCWv1\n"
_TAG_SIZE = 32
_KEY_NAME = "cache.key"


def _wasmtime_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("wasmtime")
    except metadata.PackageNotFoundError:  # pragma: no cover - wasmtime is a dependency
        import wasmtime  # here, not above: loading a pack reads the key without wasmtime

        return getattr(wasmtime, "__version__", "unknown")


def default_cache_key_file() -> Path:
    """``$REFLOW_CONFIG_DIR/cache.key``, else ``~/.config/reflow/cache.key``."""
    env = os.environ.get("REFLOW_CONFIG_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".config" / "reflow"
    return base / _KEY_NAME


def load_cache_key(path: str | os.PathLike[str]) -> bytes:
    """The secret in ``path`` (64 hex digits), created with 32 random bytes (mode 0600,
    exclusively) if missing. Raises OSError/ValueError if it cannot be used safely."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0), 0o600)
    except FileExistsError:
        return _read_cache_key(path)
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.hex().encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return key


def _read_cache_key(path: Path) -> bytes:
    deadline = time.monotonic() + 2.0
    while True:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            if os.name == "posix" and (st.st_mode & 0o077 or st.st_uid != os.geteuid()):
                raise ValueError(
                    f"must be owned by this user and private (mode 0600), not "
                    f"{stat.filemode(st.st_mode)} uid {st.st_uid}"
                )
            text = fh.read(200).strip()
        if len(text) == 64:
            try:
                return bytes.fromhex(text.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                pass
        if text or time.monotonic() > deadline:  # empty: another process is writing it
            raise ValueError("not 64 hex digits (delete it to make a new key)")
        time.sleep(0.01)
