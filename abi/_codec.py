"""The wire format of guest ABI v1: messages and frames as bytes (see ``abi/ABI.md``).

A compact little-endian binary layout: one kind byte per message, fixed-width scalars, and
length-prefixed UTF-8 / raw bytes; structured data (Object, Array, Event, Optional, Any) is
carried as length-prefixed JSON text. It was chosen by measurement (ABI.md, "Why this
encoding"): scalars and Bytes — the hot cases — cost one ``struct`` call each way and no
base64, and a C guest parses it with a few lines of pointer arithmetic instead of a JSON or
msgpack library.

Encoding host values raises :class:`~reflow.MessageError` (a Stream, an Integer outside 64
bits); decoding what a guest produced raises :class:`~reflow.GuestOutputError` naming the byte
offset and what was wrong. Both directions are pure functions with no runtime state;
:class:`TickCodec` is the same codec with one node's port names precomputed, for the hot tick.
Batch frames (ABI 1.1: several ticks in one ``reflow_tick_batch`` call) are a 24-byte header
followed by length-prefixed input frames (:func:`encode_batch`, :func:`decode_batch_head`).
"""

from __future__ import annotations

from ._codec_decode import (
    TickResult,
    decode_message,
    decode_open,
    decode_outputs,
    decode_result,
    decode_tick_input,
)
from ._codec_encode import (
    decode_batch_head,
    decode_batch_results,
    encode_batch,
    encode_message,
    encode_open,
    encode_outputs,
    encode_result_done,
    encode_result_fail,
    encode_tick_input,
)
from ._codec_wire import (
    BATCH_HEAD,
    KIND_CODES,
    MAX_JSON_DEPTH,
)
from ._tick_codec import (
    TickCodec,
    tick_codec,
)

__all__ = [
    "BATCH_HEAD",
    "KIND_CODES",
    "MAX_JSON_DEPTH",
    "TickCodec",
    "TickResult",
    "decode_batch_head",
    "decode_batch_results",
    "decode_message",
    "decode_open",
    "decode_outputs",
    "decode_result",
    "decode_tick_input",
    "encode_batch",
    "encode_message",
    "encode_open",
    "encode_outputs",
    "encode_result_done",
    "encode_result_fail",
    "encode_tick_input",
    "tick_codec",
]
