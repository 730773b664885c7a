"""reflow-hpc's manifest codec: Python values as JSON that keeps their types.

JSON's own values (``None``, ``bool``, ``int``, ``float``, ``str``, lists, dicts with string
keys) stay as they are; ``tuple``, :class:`~pathlib.Path`, :class:`~datetime.datetime`,
:class:`~uuid.UUID`, non-finite floats, :class:`~enum.Enum` members and dataclass instances
become a tagged object (``{"__reflow_manifest__": true, "type": "path", "value": ...}``),
the tags reflow-hpc writes, so either side reads the other's manifests. Anything else is a
:class:`ManifestError` (a ``TypeError`` too, as reflow-hpc raises), as is a payload that does
not decode, within bounded depth: a value nested deeper than :data:`MAX_DEPTH` or that
contains itself is refused, not a ``RecursionError``.

Enum and dataclass payloads name their class; :meth:`ManifestCodec.load_value` rebuilds one
only from a module already imported (it never imports a module a payload names) and gives
the plain value (the enum's value, the fields as a dict) otherwise.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import fields, is_dataclass
from datetime import datetime
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from ._errors import WorkflowError, shown

__all__ = ["MAX_DEPTH", "ManifestCodec", "ManifestError"]

#: how deeply values may nest
MAX_DEPTH = 200
#: the largest payload :meth:`ManifestCodec.loads` reads (characters)
MAX_PAYLOAD = 64 << 20
_MARKER = "__reflow_manifest__"


class ManifestError(WorkflowError, TypeError):
    """A value the manifest codec cannot encode, or a payload it cannot decode."""


class ManifestCodec:
    """``dump_value``/``load_value`` between Python values and JSON-safe ones;
    ``dumps``/``loads`` to and from JSON text (sorted keys: equal values give equal text)."""

    marker_key = _MARKER

    def dump_value(self, value: Any) -> Any:
        """``value`` as JSON-safe data (see the module docstring)."""
        return self._dump(value, 0, set())

    def load_value(self, value: Any) -> Any:
        """The Python value of JSON-safe data :meth:`dump_value` made."""
        return self._load(value, 0)

    def dumps(self, value: Any, *, pretty: bool = False) -> str:
        data = self.dump_value(value)
        try:
            if pretty:
                return json.dumps(data, sort_keys=True, indent=2, allow_nan=False)
            return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (ValueError, RecursionError) as exc:  # an int past str()'s digit limit
            raise ManifestError(f"cannot write manifest JSON: {exc}") from None

    def canonical_dumps(self, value: Any) -> str:
        """The compact, key-sorted JSON of ``value``, for hashing and comparing."""
        return self.dumps(value)

    def loads(self, payload: str | bytes | bytearray) -> Any:
        if isinstance(payload, (bytes, bytearray)):
            try:
                payload = bytes(payload).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ManifestError(f"manifest payload is not UTF-8 (byte {exc.start})") from None
        if not isinstance(payload, str):
            raise ManifestError(
                f"Unsupported manifest payload: loads() takes JSON text, got {shown(payload)}"
            )
        if len(payload) > MAX_PAYLOAD:
            raise ManifestError(f"manifest payload is larger than {MAX_PAYLOAD} characters")
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest payload is not JSON: {exc}") from None
        except (RecursionError, ValueError) as exc:
            raise ManifestError(f"manifest payload cannot be read: {type(exc).__name__}") from None
        return self.load_value(data)

    # ------------------------------------------------------------------ encoding

    def _tag(self, kind: str, value: Any) -> dict[str, Any]:
        return {self.marker_key: True, "type": kind, "value": value}

    def _dump(self, value: Any, depth: int, seen: set[int]) -> Any:
        if depth > MAX_DEPTH:
            raise ManifestError(f"manifest value nests deeper than {MAX_DEPTH} levels")
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, Enum):
            return {
                self.marker_key: True,
                "type": "enum",
                "class": _qualname(type(value)),
                "value": self._dump(value.value, depth + 1, seen),
            }
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value) if math.isfinite(value) else self._tag("float", repr(value))
        if isinstance(value, PurePath):
            return self._tag("path", str(value))
        if isinstance(value, datetime):
            return self._tag("datetime", value.isoformat())
        if isinstance(value, UUID):
            return self._tag("uuid", str(value))
        if id(value) in seen:
            raise ManifestError(f"manifest value contains itself ({type(value).__name__})")
        if is_dataclass(value) and not isinstance(value, type):
            seen.add(id(value))
            payload = {
                f.name: self._dump(getattr(value, f.name), depth + 1, seen) for f in fields(value)
            }
            seen.discard(id(value))
            return {
                self.marker_key: True,
                "type": "dataclass",
                "class": _qualname(type(value)),
                "fields": payload,
            }
        if isinstance(value, (list, tuple, dict)):
            seen.add(id(value))
            try:
                if isinstance(value, dict):
                    bad = next((k for k in value if not isinstance(k, str)), None)
                    if bad is not None:
                        raise ManifestError(
                            "Manifest dictionaries must use string keys; got key "
                            f"{shown(bad)} of type {type(bad).__name__}"
                        )
                    return {k: self._dump(v, depth + 1, seen) for k, v in value.items()}
                items = [self._dump(v, depth + 1, seen) for v in value]
                return self._tag("tuple", items) if isinstance(value, tuple) else items
            finally:
                seen.discard(id(value))
        raise ManifestError(
            f"Unsupported manifest value type: {type(value).__module__}."
            f"{type(value).__qualname__} (supported: None, bool, int, float, str, list, tuple, "
            "dict with str keys, Path, datetime, UUID, Enum, dataclass)"
        )

    # ------------------------------------------------------------------ decoding

    def _load(self, value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ManifestError(f"manifest payload nests deeper than {MAX_DEPTH} levels")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self._load(v, depth + 1) for v in value]
        if not isinstance(value, dict):
            raise ManifestError(f"Unsupported manifest payload: {type(value).__name__}")
        if value.get(self.marker_key) is not True:
            return {k: self._load(v, depth + 1) for k, v in value.items()}
        kind = value.get("type")
        try:
            if kind == "path":
                from pathlib import Path

                return Path(_field(value, "value", str))
            if kind == "datetime":
                return datetime.fromisoformat(_field(value, "value", str))
            if kind == "uuid":
                return UUID(_field(value, "value", str))
            if kind == "float":
                text = _field(value, "value", str)
                if text not in ("nan", "inf", "-inf"):
                    raise ManifestError(
                        f"manifest float must be nan, inf or -inf, got {shown(text)}"
                    )
                return float(text)
            if kind == "tuple":
                return tuple(self._load(v, depth + 1) for v in _field(value, "value", list))
            if kind == "enum":
                raw = self._load(value.get("value"), depth + 1)
                cls = _loaded_class(_field(value, "class", str))
                if isinstance(cls, type) and issubclass(cls, Enum):
                    return cls(raw)
                return raw
            if kind == "dataclass":
                name = _field(value, "class", str)
                restored = {
                    str(k): self._load(v, depth + 1)
                    for k, v in _field(value, "fields", dict).items()
                }
                cls = _loaded_class(name)
                if isinstance(cls, type) and is_dataclass(cls):
                    return cls(**restored)
                return restored
        except ManifestError:
            raise
        except (ValueError, TypeError) as exc:  # a bad date, UUID, enum value or field
            raise ManifestError(
                f"manifest {shown(kind)} payload cannot be rebuilt: {type(exc).__name__}: "
                f"{str(exc)[:200]}"
            ) from None
        raise ManifestError(f"Unknown manifest payload type {shown(kind)}")


def _field(mapping: dict[str, Any], key: str, kind: type) -> Any:
    got = mapping.get(key)
    if not isinstance(got, kind):
        raise ManifestError(
            f"Manifest field {key!r} must be {kind.__name__}, got {type(got).__name__}"
        )
    return got


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _loaded_class(name: str) -> Any:
    """The class ``module.Qual.Name`` names, from a module already imported (``None``
    otherwise: a payload never makes this process import anything)."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj: Any = module
        for part in parts[cut:]:
            obj = getattr(obj, part, None)
            if obj is None:
                break
        return obj if isinstance(obj, type) else None
    return None
