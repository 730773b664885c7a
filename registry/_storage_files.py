"""Blobs as files: ``blobs/sha256/ab/abcd...`` under a directory, uploads spooled in
``tmp/`` (fsynced, renamed to their content address, the directory fsynced)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ._storage import CHUNK, BlobStore, BlobUpload, _full, _no_room, check_sha256

__all__ = ["LocalBlobs"]


class LocalBlobs(BlobStore):
    """Content-addressed blob files under ``root`` (created if missing)."""

    local_reads = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.blobs = self.root / "blobs" / "sha256"
        self.tmp = self.spool = self.root / "tmp"
        for d in (self.blobs, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobs({str(self.root)!r})"

    def new_upload(self) -> BlobUpload:
        return BlobUpload(self.tmp / f"upload-{secrets.token_hex(12)}")

    def _address(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.blobs / sha256[:2] / sha256

    def commit_blob(self, upload: BlobUpload) -> str:
        upload.finish()
        target = self._address(upload.sha256)
        try:
            target.parent.mkdir(exist_ok=True)
            # Same content, same name: replacing an existing blob changes nothing visible.
            os.replace(upload.path, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            if _no_room(exc):
                raise _full(exc, f"blob {upload.sha256}") from exc
            raise
        return upload.sha256

    def blob_path(self, sha256: str) -> Path:
        return self._address(sha256)

    def has_blob(self, sha256: str) -> bool:
        return self._address(sha256).is_file()

    def read_blob(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        with open(self._address(sha256), "rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    raise RuntimeError(f"blob {sha256} is shorter than recorded")
                left -= len(chunk)
                yield chunk

    def list_blobs(self) -> list[str]:
        return sorted(p.name for p in self.blobs.glob("*/*"))

    def collect_garbage(self, used: set[str]) -> tuple[int, int]:
        """Run it only while nothing publishes into this directory (the server does at
        start-up)."""
        temps = 0
        for p in self.tmp.iterdir():
            p.unlink(missing_ok=True)
            temps += 1
        blobs = 0
        for p in self.blobs.glob("*/*"):
            if p.name not in used:
                p.unlink(missing_ok=True)
                blobs += 1
        return temps, blobs


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
