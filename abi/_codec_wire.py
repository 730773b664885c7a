"""The constants of the guest ABI v1 wire format (see ``abi/ABI.md``): kind bytes, result
statuses, the fixed-width ``struct`` layouts and the JSON limits, shared by the encoder and
the decoder."""

from __future__ import annotations

import json
import re
import struct

__all__ = ["BATCH_HEAD", "KIND_CODES", "MAX_JSON_DEPTH", "STATUS_DONE", "STATUS_FAIL"]

#: Kind byte of every message kind. Stream (13) is reserved: ABI 1.0 cannot carry a live
#: stream across the boundary, and both sides refuse it.
KIND_CODES: dict[str, int] = {
    "Null": 0,
    "Flow": 1,
    "Boolean": 2,
    "Integer": 3,
    "Float": 4,
    "String": 5,
    "Bytes": 6,
    "Error": 7,
    "Object": 8,
    "Array": 9,
    "Event": 10,
    "Optional": 11,
    "Any": 12,
    "Stream": 13,
}
_KIND_NAMES = {code: name for name, code in KIND_CODES.items()}

STATUS_DONE = 0
STATUS_FAIL = 1

_INT = struct.Struct("<Bq")
_FLOAT = struct.Struct("<Bd")
_LEN = struct.Struct("<BI")  # kind + u32 length prefix
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_RESULT_HEAD = struct.Struct("<BH")
#: The batch frame header: count (host), done, results pointer, results length (guest), 0.
_BATCH_HEAD = struct.Struct("<IIQII")
BATCH_HEAD = _BATCH_HEAD.size  # 24

_B_NULL = b"\x00"
_B_FLOW = b"\x01"
_B_FALSE = b"\x02\x00"
_B_TRUE = b"\x02\x01"

_new = dict.__new__
_JSON_SHAPE = {8: "object", 9: "array", 10: "object"}
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_loads = json.loads

#: How deeply the JSON text of one message (or the open frame's config) may nest: objects and
#: arrays, nested messages in Optional/Any included (ABI.md, section 3). Deeper text is
#: refused by the decoder, so nothing recursive on either side can run out of stack.
MAX_JSON_DEPTH = 64
#: A number literal that could overflow a float to infinity: an exponent, or 300+ digits.
_RISKY_NUMBER = re.compile(r"[0-9][eE]|[0-9]{300}")
