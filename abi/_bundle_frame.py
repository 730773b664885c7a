"""The zstd layer of a ``.rflpack`` (PACK_FORMAT.md §2): exactly one frame, read within limits.

:class:`BundleLimits` says what reading a pack may cost. :func:`check_frame` walks the frame's
block headers without decompressing, so a second frame, trailing bytes, a dictionary or an
oversize window is refused before any byte comes out; :class:`FrameReader` then decompresses
with the bomb limits (absolute and relative to the compressed size) applied as bytes come
out. Errors from ``zstandard`` are translated here; :func:`compressor` is the one way packs
are compressed (a fixed level: part of the determinism promise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

import zstandard

from .._errors import PackFormatError, UnsafeArchiveError

__all__ = ["COMPRESSION_LEVEL", "BundleLimits", "FrameReader", "check_frame", "compressor"]

#: zstd level used for every pack (part of the determinism promise: never derived from input).
COMPRESSION_LEVEL = 15


@dataclass(frozen=True)
class BundleLimits:
    """What reading a bundle may cost. Anything beyond is an UnsafeArchiveError."""

    max_manifest: int = 1 << 20
    max_signature: int = 64 << 10
    max_member: int = 256 << 20
    max_total: int = 1 << 30
    max_members: int = 4096
    #: Decompressed/compressed ratio allowed once more than ``ratio_floor`` bytes came out.
    max_ratio: int = 250
    ratio_floor: int = 16 << 20
    max_window: int = 1 << 25


def compressor() -> zstandard.ZstdCompressor:
    """The compressor every pack is written with: fixed level, checksum and content size."""
    return zstandard.ZstdCompressor(
        level=COMPRESSION_LEVEL, write_checksum=True, write_content_size=True, threads=0
    )


class FrameReader:
    """Decompressed bytes from a zstd frame, with the bomb limits applied as they come."""

    def __init__(self, fh: IO[bytes], compressed: int, limits: BundleLimits, label: str) -> None:
        dctx = zstandard.ZstdDecompressor(max_window_size=limits.max_window)
        self._stream = dctx.stream_reader(fh, read_across_frames=False, closefd=False)
        self._limit = max(limits.ratio_floor, limits.max_ratio * max(compressed, 1))
        self._limit = min(self._limit, limits.max_total)
        self.total = 0
        self._label = label
        self._limits = limits

    def read(self, n: int) -> bytes:
        if n < 0:
            raise PackFormatError(f"{self._label}: negative read of {n} bytes", pack=self._label)
        chunks = []
        want = n
        while want:
            try:
                chunk = self._stream.read(min(want, 1 << 20))
            except zstandard.ZstdError as exc:
                raise PackFormatError(
                    f"{self._label}: the zstd stream is corrupt ({exc}); the file is damaged or "
                    "not a .rflpack",
                    pack=self._label,
                ) from exc
            if not chunk:
                break
            self.total += len(chunk)
            if self.total > self._limit:
                raise UnsafeArchiveError(
                    f"{self._label}: decompresses to more than {self._limit} bytes (from "
                    f"{self._limits.max_total} max total, {self._limits.max_ratio}x ratio): "
                    "refusing a possible decompression bomb",
                    pack=self._label,
                )
            chunks.append(chunk)
            want -= len(chunk)
        return b"".join(chunks)

    def exact(self, n: int, what: str) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise PackFormatError(
                f"{self._label}: truncated while reading {what}", pack=self._label, member=what
            )
        return data


_MAGIC = b"\x28\xb5\x2f\xfd"
_BLOCK_MAX = 128 << 10


def _describe_tail(tail: bytes) -> str:
    if tail[:4] == _MAGIC:
        return "a second zstd frame"
    if len(tail) >= 4 and 0x184D2A50 <= int.from_bytes(tail[:4], "little") <= 0x184D2A5F:
        return "a skippable zstd frame"
    return "trailing bytes"


def check_frame(fh: IO[bytes], size: int, label: str, limits: BundleLimits) -> int:
    """Check that the file is exactly one zstd frame as §2 requires, by walking its block
    headers (no decompression); return the content size the frame records.

    Refused: a first frame that is skippable, a dictionary, a window over ``max_window``, no
    recorded content size or one over ``max_total``, a reserved block type or an oversize
    block, more than one block per KiB of content (plus 64), a frame cut short, and anything
    after the frame (a second frame, a skippable frame, trailing bytes)."""

    def bad(what: str, cls: type[PackFormatError] = PackFormatError) -> PackFormatError:
        return cls(f"{label}: {what}", pack=label)

    head = fh.read(18)
    if head[:4] != _MAGIC:
        if len(head) >= 4 and _describe_tail(head) == "a skippable zstd frame":
            raise bad("starts with a skippable zstd frame; a .rflpack is exactly one zstd frame")
        raise PackFormatError(f"{label} is not a .rflpack (no zstd frame at the start)", pack=label)
    try:
        header_size = zstandard.frame_header_size(head)
        params = zstandard.get_frame_parameters(head)
        content = zstandard.frame_content_size(head)
    except zstandard.ZstdError as exc:
        raise bad(f"the zstd frame header is truncated or corrupt ({exc})") from exc
    if header_size > size:
        raise bad("truncated inside the zstd frame header")
    if params.dict_id:
        raise bad(f"the zstd frame needs dictionary {params.dict_id}; packs use none")
    if params.window_size > limits.max_window:
        raise bad(
            f"the zstd frame asks for a {params.window_size}-byte window, over the "
            f"limit of {limits.max_window}",
            UnsafeArchiveError,
        )
    if content < 0:
        raise bad("the zstd frame does not record its content size (PACK_FORMAT.md §2 requires it)")
    if content > limits.max_total:
        raise bad(
            f"the zstd frame declares {content} bytes of content, over the limit of "
            f"{limits.max_total}: refusing a possible decompression bomb",
            UnsafeArchiveError,
        )
    max_blocks = 64 + content // 1024
    block_max = min(_BLOCK_MAX, max(params.window_size, 1))
    pos, blocks = header_size, 0
    while True:
        fh.seek(pos)
        raw = fh.read(3)
        if len(raw) < 3:
            raise bad(
                f"truncated: the zstd frame is cut off at byte {size} (block "
                f"{blocks} has no header)"
            )
        value = int.from_bytes(raw, "little")
        last, kind, bsize = value & 1, (value >> 1) & 3, value >> 3
        if kind == 3 or bsize > block_max:
            raise bad(
                f"the zstd stream is corrupt (block {blocks} at byte {pos} has "
                f"{'a reserved type' if kind == 3 else f'{bsize} bytes'})"
            )
        pos += 3 + (1 if kind == 1 else bsize)
        blocks += 1
        if blocks > max_blocks:
            raise bad(
                f"the zstd frame has more than {max_blocks} blocks for {content} bytes of content",
                UnsafeArchiveError,
            )
        if pos > size:
            raise bad(
                f"truncated: the zstd frame needs {pos - size} more bytes than the {size} there are"
            )
        if last:
            break
    if params.has_checksum:
        pos += 4
        if pos > size:
            raise bad("truncated: the zstd frame's checksum is cut off")
    if pos != size:
        fh.seek(pos)
        what = _describe_tail(fh.read(4))
        raise bad(
            f"{what} after the zstd frame ({size - pos} bytes from byte {pos}); a "
            ".rflpack is exactly one frame"
        )
    fh.seek(0)
    return content
