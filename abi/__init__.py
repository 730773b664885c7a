"""reflow.abi — the contracts between the host and the code it loads.

The guest ABI version and its compatibility rule, and the v1 wire codec (messages and frames)
described in ``ABI.md`` next to this file, with its test vectors under ``vectors/``. Pure
Python: importable without wasmtime, no runtime state.
"""

from __future__ import annotations

from pathlib import Path

from ._codec import (
    KIND_CODES,
    TickResult,
    decode_message,
    decode_open,
    decode_outputs,
    decode_result,
    decode_tick_input,
    encode_message,
    encode_open,
    encode_outputs,
    encode_result_done,
    encode_result_fail,
    encode_tick_input,
)
from ._version import (
    ABI_VERSION,
    check_abi_compatible,
    pack_abi_version,
    pack_abi_word,
    parse_abi_version,
    unpack_abi_word,
)

__all__ = [
    "ABI_VERSION",
    "KIND_CODES",
    "VECTORS_DIR",
    "TickResult",
    "check_abi_compatible",
    "decode_message",
    "decode_open",
    "decode_outputs",
    "decode_result",
    "decode_tick_input",
    "encode_message",
    "encode_open",
    "encode_outputs",
    "encode_result_done",
    "encode_result_fail",
    "encode_tick_input",
    "pack_abi_version",
    "pack_abi_word",
    "parse_abi_version",
    "unpack_abi_word",
]

#: Folder of the ABI test vectors (``messages.json``, ``frames.json``, ``invalid.json``).
VECTORS_DIR = Path(__file__).parent / "vectors"
