"""OpenAPI 3.0 / 3.1 / Swagger 2.0 schemas to JSON Schema draft 2020-12 (abi/HTTP_API.md,
"Schema").

Every ``$ref`` met in a schema is re-homed: its target is converted once, stored under a
stable key in :attr:`SchemaConverter.schemas`, and the reference becomes
``{"$ref": "#/schemas/<key>"}``, so a shared schema is written once however often it is used
and a recursive one stays a reference. Keys come from the reference itself (``Issue`` for
``#/components/schemas/Issue`` of the root file; a tree's other files get their path and a
short hash), so they do not depend on the order schemas are met in.

Conversion: ``nullable`` becomes a type list with ``"null"`` (or an ``anyOf`` with
``{"type": "null"}`` where there is no type); type lists are kept; ``type: file`` becomes a
binary string; OpenAPI 3.0's boolean ``exclusiveMinimum``/``Maximum`` become numbers; a
Swagger 2.0 tuple ``items`` list becomes ``prefixItems``. ``example``, ``examples``, ``xml``,
``discriminator``, ``externalDocs``, ``x-*``, ``$id``-like keys and unknown keys are dropped;
a known keyword with a value of the wrong type is dropped and reported (a validator would
reject the whole schema). The work is bounded by :data:`MAX_NODES`, and the nesting by the
loader's depth limit.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import urldefrag, urljoin

from .._errors import OpenApiError
from .._jsonread import segment
from ._openapi_load import SpecTree

__all__ = ["MAX_DESCRIPTION", "MAX_NODES", "SchemaConverter", "clip"]

#: Most schema objects one description may convert into (GitHub's needs about 0.2 M).
MAX_NODES = 5_000_000
#: Longest description kept (characters); longer ones are cut and end in "…".
MAX_DESCRIPTION = 4096

_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})
_ONE = (
    "additionalProperties",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)
_MAPS = ("properties", "patternProperties", "dependentSchemas")
_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_STR = ("format", "pattern", "title", "contentMediaType", "contentEncoding")
_NUM = ("minimum", "maximum", "multipleOf")
_COUNT = (
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
)
_BOOL = ("uniqueItems", "readOnly", "writeOnly", "deprecated")
_DATA = ("enum", "const", "default")
_KEY_OK = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_KEY_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def clip(text: Any, limit: int = MAX_DESCRIPTION) -> str:
    """``text`` as a string of at most ``limit`` characters."""
    s = text if isinstance(text, str) else "" if text is None else str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class SchemaConverter:
    """Converts the schemas of one :class:`SpecTree`, collecting the shared ones."""

    def __init__(self, spec: SpecTree, report: list[str]) -> None:
        self.spec = spec
        self.report = report
        self.schemas: dict[str, Any] = {}
        self.nodes = 0
        self._keys: dict[str, str] = {}  # absolute uri -> key
        self._owner: dict[str, str] = {}  # key -> absolute uri
        self._pending: list[tuple[str, str, str]] = []  # (key, absolute uri, where)
        self._inlining: list[str] = []  # maps given by $ref, being converted

    # -- references ------------------------------------------------------------------------

    def _key_for(self, absolute: str) -> str:
        rel = self.spec.relative(absolute)
        file, _, frag = rel.partition("#")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in frag.split("/") if p]
        plain = (
            not file
            and len(parts) in (2, 3)
            and parts[-2] in ("schemas", "definitions")
            and bool(_KEY_OK.fullmatch(parts[-1]))
        )
        if plain:
            key = parts[-1]
        else:
            stem = re.sub(r"\.(ya?ml|json)$", "", file)
            raw = ".".join(x for x in [*stem.split("/"), *parts[-2:]] if x)
            slug = _KEY_BAD.sub("_", raw).strip("_.")[:80] or "schema"
            key = f"{slug}-{hashlib.sha256(rel.encode()).hexdigest()[:8]}"
        other = self._owner.get(key)
        if other is not None and other != absolute:  # same slug and hash: practically never
            key = f"{key}-{hashlib.sha256(absolute.encode()).hexdigest()[:16]}"
        return key

    def ref(self, ref: str, base: str, where: str) -> dict[str, Any]:
        """The re-homed reference for ``$ref: ref`` met in file ``base``."""
        absolute = urljoin(base, ref) if not ref.startswith("#") else base + ref
        key = self._keys.get(absolute)
        if key is None:
            if self.spec.lookup(ref, base, where) is None:
                self._keys[absolute] = ""
                return {}
            key = self._key_for(absolute)
            self._keys[absolute] = key
            self._owner[key] = absolute
            self._pending.append((key, absolute, where))
        return {"$ref": f"#/schemas/{key}"} if key else {}

    def drain(self) -> None:
        """Convert every schema referenced so far (and those they reference)."""
        while self._pending:
            key, absolute, where = self._pending.pop()
            doc = urldefrag(absolute).url
            frag = absolute[len(doc) :]
            got = self.spec.lookup(frag or "#", doc, where)
            target, tbase = got if got is not None else ({}, doc)
            self.schemas[key] = self.convert(target, tbase, f"{where}->{frag or doc}")
        self._check_ref_cycles()

    def _check_ref_cycles(self) -> None:
        limit = self.spec.limits.max_ref_chain
        for key in sorted(self.schemas):
            seen = [key]
            cur = self.schemas[key]
            while isinstance(cur, dict) and set(cur) == {"$ref"}:
                nxt = cur["$ref"].rpartition("/")[2]
                if nxt in seen:
                    raise OpenApiError(
                        "$ref cycle: the schemas "
                        f"{' -> '.join(self._owner.get(k, k) for k in [*seen, nxt][-4:])} "
                        "only refer to each other",
                        file=self.spec.shown(self._owner.get(key, "")),
                    )
                seen.append(nxt)
                if len(seen) > limit:
                    raise OpenApiError(
                        f"$ref chain longer than {limit} references starting at "
                        f"{self._owner.get(key, key)}",
                        file=self.spec.shown(self._owner.get(key, "")),
                    )
                cur = self.schemas.get(nxt)

    # -- conversion ------------------------------------------------------------------------

    def _drop(self, where: str, key: str, why: str) -> None:
        if len(self.report) < 1000:
            self.report.append(f"{where}.{key}: {why}; dropped")

    def convert(self, node: Any, base: str, where: str) -> Any:
        """``node`` (a schema in the file ``base``) as draft 2020-12."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise OpenApiError(
                f"the schemas expand to more than {MAX_NODES} objects (YAML aliases or "
                "a very large description)",
                file=self.spec.shown(base),
                path=where,
            )
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            self._drop(where, "", f"a schema must be a mapping, not {type(node).__name__}")
            return {}
        ref = node.get("$ref")
        out: dict[str, Any] = {}
        if isinstance(ref, str):
            out.update(self.ref(ref, base, where))
        for key, value in node.items():
            if key == "$ref" or key.startswith("x-"):
                continue
            at = f"{where}{segment(key)}"
            if key in _MAPS:
                if (
                    isinstance(value, dict)
                    and set(value) == {"$ref"}
                    and isinstance(value["$ref"], str)
                ):
                    # a whole map given by $ref
                    out[key] = self._inline_map(value, base, at)
                elif isinstance(value, dict):
                    out[key] = {
                        str(k): self.convert(v, base, f"{at}{segment(k)}") for k, v in value.items()
                    }
                else:
                    self._drop(where, key, "not a mapping")
            elif key in _ONE:
                if isinstance(value, dict | bool):
                    out[key] = self.convert(value, base, at)
                else:
                    self._drop(where, key, "not a schema")
            elif key == "items":
                if isinstance(value, list):
                    out["prefixItems"] = [
                        self.convert(v, base, f"{at}[{i}]") for i, v in enumerate(value)
                    ]
                elif isinstance(value, dict | bool):
                    out["items"] = self.convert(value, base, at)
                else:
                    self._drop(where, key, "not a schema")
            elif key in _LISTS:
                if isinstance(value, list) and value:
                    out[key] = [self.convert(v, base, f"{at}[{i}]") for i, v in enumerate(value)]
                else:
                    self._drop(where, key, "not a non-empty list of schemas")
            elif key == "type":
                self._type(out, value, where)
            elif key == "description":
                if isinstance(value, str):
                    out[key] = clip(value)
            elif key in _STR:
                if isinstance(value, str):
                    out[key] = value
                else:
                    self._drop(where, key, "not a string")
            elif key in _NUM:
                if _number(value):
                    out[key] = value
                else:
                    self._drop(where, key, "not a number")
            elif key in _COUNT:
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    out[key] = value
                else:
                    self._drop(where, key, "not a non-negative integer")
            elif key in _BOOL:
                if isinstance(value, bool):
                    out[key] = value
            elif key in _DATA:
                if key == "enum" and not (isinstance(value, list) and value):
                    self._drop(where, key, "not a non-empty list")
                else:
                    out[key] = value
            elif key == "required":
                if isinstance(value, list) and all(isinstance(v, str) for v in value):
                    out[key] = list(dict.fromkeys(value))
                elif not isinstance(value, bool):  # Swagger-style "required: true": a slip
                    self._drop(where, key, "not a list of property names")
            elif key == "dependentRequired":
                if isinstance(value, dict):
                    out[key] = value
            elif key in ("exclusiveMinimum", "exclusiveMaximum") and _number(value):
                out[key] = value
        for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if node.get(key) is True and bound in out:  # OpenAPI 3.0 / Swagger 2.0 booleans
                out[key] = out.pop(bound)
        if node.get("nullable") is True:
            out = self._nullable(out)
        return out

    def _inline_map(self, node: dict[str, Any], base: str, where: str) -> Any:
        """A ``properties`` (or similar) map given as a ``$ref``: converted in place; a
        reference back into one being converted is a cycle, and the nesting is bounded."""
        ref = node["$ref"]
        absolute = urljoin(base, ref) if not ref.startswith("#") else base + ref
        if absolute in self._inlining or len(self._inlining) >= self.spec.limits.max_ref_chain:
            raise OpenApiError(
                f"$ref cycle: {ref!r} is used inside its own target"
                if absolute in self._inlining
                else f"$ref chain longer than {self.spec.limits.max_ref_chain} references",
                file=self.spec.shown(base),
                path=where,
            )
        value, mbase = self.spec.deref(node, base, where)
        if not isinstance(value, dict):
            self._drop(where, "", "not a mapping")
            return {}
        self._inlining.append(absolute)
        try:
            return {
                str(k): self.convert(v, mbase, f"{where}{segment(k)}") for k, v in value.items()
            }
        finally:
            self._inlining.pop()

    def _type(self, out: dict[str, Any], value: Any, where: str) -> None:
        types = value if isinstance(value, list) else [value]
        mapped: list[str] = []
        for t in types:
            if t == "file":
                mapped.append("string")
                out["format"] = "binary"
            elif t in _TYPES:
                mapped.append(t)
            else:
                self._drop(where, "type", f"{str(t)[:40]!r} is not a JSON Schema type")
                return
        mapped = list(dict.fromkeys(mapped))
        if mapped:
            out["type"] = mapped[0] if isinstance(value, str) else mapped

    @staticmethod
    def _nullable(out: dict[str, Any]) -> dict[str, Any]:
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"] if t != "null" else t
        elif isinstance(t, list):
            if "null" not in t:
                out["type"] = [*t, "null"]
        elif out:
            return {"anyOf": [{"type": "null"}, out]}
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        return out
