"""Typed reading of an operation table's JSON, shared by the table's checks.

:class:`TableReader` gives field access that names the field in every error
(``operations.list_pets.parameters[2].style``), each a :class:`~reflow.PackFormatError`; with
it, the limits and patterns that both the table-level checks (``_table``, ``_table_servers``)
and the operation-level ones use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .._errors import PackFormatError
from ._table_shared import _kind

__all__ = [
    "HEADER_NAME",
    "MAX_DESCRIPTION",
    "MAX_URL",
    "TEMPLATE_VAR",
    "TableReader",
    "table_error",
]

MAX_DESCRIPTION = 4096
MAX_URL = 2048
TEMPLATE_VAR = re.compile(r"\{([^{}]*)\}")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


def table_error(where: str, message: str, pack: str) -> PackFormatError:
    """The PackFormatError for field ``where`` of ``pack``'s table."""
    return PackFormatError(
        f"pack {pack!r}: operation table: {where}: {message}", pack=pack, field=where
    )


class TableReader:
    """Typed field access that names the field in every error."""

    def __init__(self, pack: str) -> None:
        self.pack = pack

    def fail(self, where: str, message: str) -> PackFormatError:
        return table_error(where, message, self.pack)

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {_kind(value)}")
        return value

    def get(
        self,
        d: Mapping[str, Any],
        key: str,
        types: type | tuple[type, ...],
        where: str,
        default: Any = ...,
        *,
        max_len: int | None = None,
    ) -> Any:
        if key not in d or (d[key] is None and default is not ...):
            if default is ...:
                raise self.fail(f"{where}.{key}", "is required")
            return default
        value = d[key]
        if isinstance(value, bool) and bool not in _as_tuple(types):
            raise self.fail(f"{where}.{key}", f"expected {_names(types)}, got a boolean")
        if not isinstance(value, types):
            raise self.fail(f"{where}.{key}", f"expected {_names(types)}, got {_kind(value)}")
        if max_len is not None and isinstance(value, str) and len(value) > max_len:
            raise self.fail(f"{where}.{key}", f"is {len(value)} characters, at most {max_len}")
        return value

    def strings(self, value: Any, where: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, f"expected an array of strings, got {_kind(value)}")
        return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _names(types: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    names.update({int: "an integer", float: "a number", type(None): "null"})
    return " or ".join(names.get(t, t.__name__) for t in _as_tuple(types))
