"""Blobs on S3-compatible object storage (boto3; the ``s3`` extra).

``s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1`` keeps the blob
``sha256`` at ``prefix/sha256/ab/abcd...``. Credentials come from boto3's usual chain
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, a profile, an
instance role), never from the URL. With an ``endpoint`` the client uses path-style
addressing, which every S3-compatible server speaks.

An upload is spooled to a local temp file under ``spool`` (the registry's size limit holds
as it arrives; the verifier reads the pack as a file), then sent by boto3's transfer manager:
one PUT below :data:`PART_SIZE`, a multipart upload of :data:`PART_SIZE` parts above it. Both
are atomic on S3: the object appears whole or not at all. A blob already there (same sha256:
same bytes) is not sent again. Downloads are ranged GETs, streamed in chunks.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._storage import (
    CHUNK,
    BlobStore,
    BlobUpload,
    StorageConfigError,
    StorageUnavailable,
    check_sha256,
)

__all__ = ["PART_SIZE", "S3Blobs"]

#: Multipart threshold and part size (S3's minimum part is 5 MiB).
PART_SIZE = 8 << 20
#: An unreferenced blob younger than this may belong to a publish still committing (in
#: this or another registry process): garbage collection leaves it.
GC_GRACE = 3600.0


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SEGMENT = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,200}")


def _parse(url: str) -> tuple[str, str, dict[str, str]]:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StorageConfigError(f"blob store URL is malformed: {exc}") from None
    if parts.scheme != "s3" or not parts.hostname:
        raise StorageConfigError(
            f"blob store URL {url[:200]!r}: expected s3://bucket/prefix[?endpoint=URL&region=R]"
        )
    if parts.username is not None or parts.password is not None:
        raise StorageConfigError(
            "blob store URL has credentials in it; pass them in AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or a profile) instead"
        )
    bucket, prefix = parts.netloc, parts.path.strip("/")  # netloc: not case-folded
    if not _BUCKET.fullmatch(bucket):
        raise StorageConfigError(
            f"blob store URL: {bucket[:70]!r} is not a bucket name (3-63 lowercase letters, "
            "digits, dots and hyphens)"
        )
    if prefix and not all(_SEGMENT.fullmatch(seg) for seg in prefix.split("/")):
        raise StorageConfigError(
            f"blob store URL: prefix {prefix[:100]!r} must be /-separated names of letters, "
            "digits and ._- (no empty, '.' or '..' parts)"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - {"endpoint", "region"})
    if unknown:
        raise StorageConfigError(
            f"blob store URL {url[:200]!r}: unknown option(s) {', '.join(unknown)} "
            "(expected endpoint, region)"
        )
    endpoint = query.get("endpoint")
    if endpoint is not None:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.hostname:
            raise StorageConfigError(
                f"blob store endpoint {endpoint[:200]!r}: expected http(s)://host[:port]"
            )
    return bucket, prefix, query


class S3Blobs(BlobStore):
    """Content-addressed blobs in ``s3://bucket/prefix``; uploads spooled under ``spool``."""

    local_reads = False

    def __init__(self, url: str, spool: str | os.PathLike[str]) -> None:
        self.bucket, self.prefix, query = _parse(url)
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError as exc:  # pragma: no cover - the extra is in `test`
            raise StorageConfigError("S3 blobs need boto3: pip install 'reflow[s3]'") from exc
        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
        self._store_errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError, OSError)
        self._client_error = ClientError
        self.endpoint = query.get("endpoint")
        config = Config(
            # Checksums in trailers (aws-chunked) only where a request needs one: servers
            # other than AWS often do not speak them. Integrity is the sha256 we keep.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"} if self.endpoint else {},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=32,
        )
        region = query.get("region") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self._s3: Any = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=region, config=config
        )
        self._transfer = TransferConfig(
            multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4
        )
        self.gc_grace = GC_GRACE
        self.spool = Path(spool).expanduser()
        self.spool.mkdir(parents=True, exist_ok=True)
        self._check_bucket()

    def __repr__(self) -> str:
        return f"S3Blobs({self.url!r})"

    @property
    def url(self) -> str:
        ep = f"?endpoint={self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}/{self.prefix}{ep}"

    def _fail(
        self, exc: Exception, what: str, kind: type[StorageUnavailable] = StorageUnavailable
    ) -> StorageUnavailable:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return kind(f"S3 blob store {self.url}: cannot {what}: {detail[:300]}")

    def _check_bucket(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except self._errors as exc:
            raise self._fail(
                exc,
                f"reach bucket {self.bucket!r} (does it exist, and do the credentials fit?)",
                StorageConfigError,
            ) from None

    def key(self, sha256: str) -> str:
        check_sha256(sha256)
        stem = f"sha256/{sha256[:2]}/{sha256}"
        return f"{self.prefix}/{stem}" if self.prefix else stem

    def new_upload(self) -> BlobUpload:
        return BlobUpload(self.spool / f"upload-{secrets.token_hex(12)}")

    def commit_blob(self, upload: BlobUpload) -> str:
        upload.finish()
        sha = upload.sha256
        if not self._size_is(sha, upload.size):
            try:
                self._s3.upload_file(
                    str(upload.path),
                    self.bucket,
                    self.key(sha),
                    ExtraArgs={
                        "ContentType": "application/vnd.reflow.rflpack",
                        "Metadata": {"sha256": sha},
                    },
                    Config=self._transfer,
                )
            except self._store_errors as exc:
                raise self._fail(exc, f"store blob {sha}") from exc
        upload.discard()
        return sha

    def _size_is(self, sha256: str, size: int | None) -> bool:
        """Whether the blob exists (with ``size`` bytes, when given)."""
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except self._client_error as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail(exc, f"look up blob {sha256}") from exc
        except self._errors as exc:
            raise self._fail(exc, f"look up blob {sha256}") from exc
        return size is None or int(head.get("ContentLength", -1)) == size

    def has_blob(self, sha256: str) -> bool:
        return self._size_is(sha256, None)

    def read_blob(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        """The ranged GET is made here, before the first chunk is asked for: a store that is
        gone fails the call (and the app can still answer 503), not the stream."""
        if end <= start:
            return iter(())
        try:
            got = self._s3.get_object(
                Bucket=self.bucket, Key=self.key(sha256), Range=f"bytes={start}-{end - 1}"
            )
        except self._errors as exc:
            raise self._fail(exc, f"read blob {sha256}") from exc
        return self._stream(sha256, got["Body"], end - start)

    def _stream(self, sha256: str, body: Any, left: int) -> Iterator[bytes]:
        try:
            for chunk in body.iter_chunks(CHUNK):
                chunk = chunk[:left]
                left -= len(chunk)
                yield chunk
                if left <= 0:
                    break
        except self._errors as exc:
            raise self._fail(exc, f"read blob {sha256}") from exc
        finally:
            body.close()

    def _objects(self) -> Iterator[dict[str, Any]]:
        base = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
        for page in pages:
            yield from page.get("Contents", ())

    def list_blobs(self) -> list[str]:
        try:
            return sorted(obj["Key"].rsplit("/", 1)[-1] for obj in self._objects())
        except self._errors as exc:
            raise self._fail(exc, "list blobs") from exc

    def delete_blob(self, sha256: str) -> None:
        """Remove one blob (maintenance and tests; the index must not name it)."""
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self.key(sha256))
        except self._errors as exc:
            raise self._fail(exc, f"delete blob {sha256}") from exc

    def collect_garbage(self, used: set[str]) -> tuple[int, int]:
        """Empty the spool, and delete unreferenced blobs older than :data:`GC_GRACE`
        (several registry processes may share the bucket: a younger one may belong to a
        publish that has committed its blob and not yet its row)."""
        temps = 0
        for p in self.spool.iterdir():
            if p.name.startswith("upload-"):
                p.unlink(missing_ok=True)
                temps += 1
        blobs = 0
        cutoff = time.time() - self.gc_grace
        try:
            for obj in list(self._objects()):
                name = obj["Key"].rsplit("/", 1)[-1]
                if name not in used and obj["LastModified"].timestamp() < cutoff:
                    self._s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
                    blobs += 1
        except self._errors as exc:
            raise self._fail(exc, "list blobs for garbage collection") from exc
        return temps, blobs

    def close(self) -> None:
        close = getattr(self._s3, "close", None)
        if close is not None:
            close()
