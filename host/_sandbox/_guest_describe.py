"""A guest's templates: the describe document, read within limits, and the module file.

:func:`parse_describe` turns a guest's describe JSON (bounded in size and depth) into
:class:`GuestTemplate` records, every problem a :class:`~reflow.GuestABIError` naming the
module and the field; :func:`read_module_file` reads a module or library from disk, bounded;
:func:`pick_template` chooses the template an actor is made from.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import (
    GuestABIError,
    GuestLimitError,
)
from ._guest_limits import GuestLimits


@dataclass(frozen=True)
class GuestTemplate:
    """One template from a guest's describe document."""

    id: str
    inports: tuple[str, ...]
    outports: tuple[str, ...]
    await_all_inports: bool = False
    description: str = ""
    config_schema: dict[str, Any] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()
    index: int = 0


def _names(value: Any, what: str, where: str) -> tuple[str, ...]:
    from .._errors import GuestABIError

    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise GuestABIError(f"describe document: {where}.{what} must be a list of names")
    for v in value:
        if len(v.encode("utf-8")) > 255:
            raise GuestABIError(f"describe document: {where}.{what}: {v[:40]!r}... too long")
    if len(set(value)) != len(value):
        raise GuestABIError(f"describe document: {where}.{what} lists a name twice")
    return tuple(value)


def read_module_file(
    path: str | os.PathLike[str], expected: str = "a WebAssembly module (a .wasm file)"
) -> bytes:
    """The bytes of a guest module at ``path``, or a GuestABIError naming the path, what is
    wrong with it (missing, a directory, unreadable, not a valid path) and ``expected``. Size
    limits are the caller's (``WasmEngine.load`` checks ``GuestLimits.module_bytes`` first)."""
    shown = repr(str(path))  # control characters (a NUL) escaped
    name = Path(str(path)).name
    try:
        p = Path(path)
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            what = "is a directory" if stat.S_ISDIR(st.st_mode) else "is not a regular file"
            raise GuestABIError(
                f"cannot read {shown}: it {what}; expected {expected}", component=name
            )
        return p.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise GuestABIError(
            f"cannot read {shown}: {reason}; expected {expected}", component=name
        ) from exc
    except (ValueError, TypeError) as exc:  # a NUL byte in the path, not a path at all
        raise GuestABIError(
            f"cannot read {shown}: not a valid path ({exc}); expected {expected}", component=name
        ) from exc


def parse_describe(
    raw: bytes, abi: tuple[int, int], limits: GuestLimits | None = None
) -> dict[str, GuestTemplate]:
    """Validate a describe document (ABI.md §4); return templates by id. Its size is checked
    against ``limits.describe_bytes`` before it is parsed (which bounds what parsing costs)
    and its template count against ``describe_templates`` before any template is read."""
    from .._errors import GuestABIError

    limits = limits or GuestLimits()
    if len(raw) > limits.describe_bytes:
        raise GuestLimitError(
            f"describe document is {len(raw)} bytes, more than GuestLimits.describe_bytes="
            f"{limits.describe_bytes}",
            resource="describe_bytes",
            value=len(raw),
            limit=limits.describe_bytes,
        )
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GuestABIError(f"describe document is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("templates"), list):
        raise GuestABIError('describe document must be an object with a "templates" list')
    declared = doc.get("abi")
    if declared != f"{abi[0]}.{abi[1]}":
        raise GuestABIError(
            f"describe document says abi {declared!r} but reflow_abi_version returned "
            f"{abi[0]}.{abi[1]}"
        )
    count = len(doc["templates"])
    if count > limits.describe_templates:
        raise GuestLimitError(
            f"describe document lists {count} templates, more than "
            f"GuestLimits.describe_templates={limits.describe_templates}",
            resource="describe_templates",
            value=count,
            limit=limits.describe_templates,
        )
    out: dict[str, GuestTemplate] = {}
    for i, t in enumerate(doc["templates"]):
        where = f"templates[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("id"), str) or not t["id"]:
            raise GuestABIError(f"describe document: {where} needs a non-empty string id")
        if t["id"] in out:
            raise GuestABIError(f"describe document: template id {t['id']!r} appears twice")
        schema = t.get("config_schema", {})
        out[t["id"]] = GuestTemplate(
            id=t["id"],
            inports=_names(t.get("inports", []), "inports", where),
            outports=_names(t.get("outports", []), "outports", where),
            await_all_inports=bool(t.get("await_all_inports", False)),
            description=str(t.get("description", "")),
            config_schema=schema if isinstance(schema, dict) else {},
            capabilities=_names(t.get("capabilities", []), "capabilities", where),
            index=i,
        )
    if not out:
        raise GuestABIError("describe document lists no templates")
    return out


def pick_template(
    templates: dict[str, GuestTemplate], template: str | None, name: str, owner: str
) -> GuestTemplate:
    """The template named ``template`` of guest ``name`` (``owner`` is how errors name it);
    the only one when ``template`` is None."""
    from .._errors import GuestABIError

    names = ", ".join(sorted(templates))
    if template is None:
        if len(templates) != 1:
            raise GuestABIError(
                f"{owner} has {len(templates)} templates; name one of: {names}", component=name
            )
        template = next(iter(templates))
    spec = templates.get(template)
    if spec is None:
        raise GuestABIError(
            f"{owner} has no template {template!r}; it has: {names}", component=template
        )
    return spec
