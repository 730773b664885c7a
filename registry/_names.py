"""Names the registry accepts in URLs and the index: namespaces and pack names.

The same rule as a pack manifest's name parts (PACK_FORMAT.md §3): lowercase letters,
digits and ``._-``, starting with a letter or digit, at most 64 characters. So ``..``,
``/``, ``%2f`` and empty names can never reach the storage layer.
"""

from __future__ import annotations

import re

__all__ = ["NAME_PATTERN", "is_valid_name"]

NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
_NAME = re.compile(NAME_PATTERN)


def is_valid_name(text: str) -> bool:
    return _NAME.fullmatch(text) is not None
