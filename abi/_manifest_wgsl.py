"""The ``wgsl`` table of a manifest template: a WGSL kernel's contract (PACK_FORMAT.md §3.1).

A template whose entry is an artifact of ``kind = "wgsl"`` (portable triple only) declares in
``[templates.wgsl]`` how the host runs the kernel: the entry point, its workgroup size, the
dispatch rule and every binding — group/binding number, ``storage`` (``read`` or
``read_write``) or ``uniform``, the element type, and the in-port, out-port or config value it
binds to, plus each output's size rule. :func:`parse_wgsl` reads the table,
:func:`check_wgsl_template` checks it against the template's ports. Every error is a
:class:`~reflow.PackFormatError` naming the field (``templates[0].wgsl.bindings[1].type``).

Size rules (an output's ``size``, each ``dispatch`` axis) are an integer (a fixed count), or
``"in:<port>"`` (the element count of what that in-port carries) or ``"config:<key>"`` (an
integer in the node's config). A dispatch axis gives ``ceil(size / workgroup_size[axis])``
workgroups.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._manifest_rules import PORT_RE as _PORT
from ._manifest_rules import TEMPLATE_ID_RE as _TEMPLATE_ID
from ._manifest_rules import fail as _fail

__all__ = [
    "ELEMENTS",
    "MAX_INVOCATIONS",
    "MAX_WORKGROUP_SIZE",
    "SizeRule",
    "WgslBinding",
    "WgslKernelSpec",
    "check_wgsl_artifact",
    "check_wgsl_template",
    "parse_wgsl",
]

#: Element types a binding may hold -> (bytes per element, WGSL spellings).
ELEMENTS: dict[str, tuple[int, tuple[str, ...]]] = {
    "f32": (4, ("f32",)),
    "u32": (4, ("u32", "atomic<u32>")),
    "i32": (4, ("i32", "atomic<i32>")),
    "vec4<f32>": (16, ("vec4<f32>", "vec4f")),
}
TYPES = ("storage", "uniform")
ACCESS = ("read", "read_write")
FORMATS = ("array", "image")
#: WebGPU's guaranteed limits (every adapter offers at least these): per-axis workgroup size,
#: invocations per workgroup, bind groups, binding numbers, buffers per shader stage.
MAX_WORKGROUP_SIZE = (256, 256, 64)
MAX_INVOCATIONS = 256
MAX_GROUPS = 4
MAX_BINDING = 999
MAX_STORAGE = 8
MAX_UNIFORM = 12
MAX_FIXED = (1 << 31) - 1
_KEYS = ("entry_point", "workgroup_size", "dispatch", "fallback", "bindings")
_BINDING_KEYS = (
    "group",
    "binding",
    "type",
    "access",
    "element",
    "format",
    "inport",
    "outport",
    "config",
    "size",
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

#: A size rule: a fixed count, or ("in", port) / ("config", key).
SizeRule = int | tuple[str, str]


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise _fail(where, f"{value} is outside {lo}..{hi}")
    return value


def _str(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    if key not in table:
        if default is None:
            raise _fail(where + key, "is required")
        return default
    value = table[key]
    if not isinstance(value, str):
        raise _fail(where + key, f"must be a string, got {type(value).__name__}")
    return value


def _choice(
    table: Mapping[str, Any],
    key: str,
    where: str,
    options: Sequence[str],
    default: str | None = None,
) -> str:
    value = _str(table, key, where, default)
    if value not in options:
        raise _fail(where + key, f"{value[:40]!r} is not one of {', '.join(options)}")
    return value


def _unknown(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise _fail(
            where + str(extra[0])[:64], f"unknown key (allowed: {', '.join(sorted(allowed))})"
        )


def parse_size(value: Any, where: str) -> SizeRule:
    """A size rule from its manifest form (an integer, ``"in:<port>"``, ``"config:<key>"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _int(value, where, 1, MAX_FIXED)
    if isinstance(value, str):
        source, _, name = value.partition(":")
        if source == "in" and _PORT.fullmatch(name):
            return ("in", name)
        if source == "config" and _IDENT.fullmatch(name):
            return ("config", name)
    raise _fail(
        where,
        f"{str(value)[:60]!r} is not a size rule (an integer, 'in:<in-port>' or 'config:<key>')",
    )


def size_text(rule: SizeRule) -> int | str:
    return rule if isinstance(rule, int) else f"{rule[0]}:{rule[1]}"


@dataclass(frozen=True)
class WgslBinding:
    """One ``@group(g) @binding(b)`` resource of the kernel and what feeds it."""

    group: int
    binding: int
    type: str
    element: str
    access: str = ""
    format: str = "array"
    inport: str = ""
    outport: str = ""
    config: str = ""
    size: SizeRule | None = None

    @property
    def port(self) -> str:
        return self.inport or self.outport

    @property
    def source(self) -> str:
        """What feeds it, as written: ``in:x``, ``out:y``, ``config:a``."""
        if self.inport:
            return f"in:{self.inport}"
        if self.outport:
            return f"out:{self.outport}"
        return f"config:{self.config}"

    def describe(self) -> str:
        space = f"storage, {self.access}" if self.type == "storage" else "uniform"
        size = f" size={size_text(self.size)}" if self.size is not None else ""
        fmt = " image" if self.format == "image" else ""
        head = f"@group({self.group}) @binding({self.binding}) var<{space}>"
        return f"{head} {self.element}{fmt} <- {self.source}{size}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "group": self.group,
            "binding": self.binding,
            "type": self.type,
        }
        if self.type == "storage":
            d["access"] = self.access
        d["element"] = self.element
        if self.type == "storage":
            d["format"] = self.format
        for key in ("inport", "outport", "config"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        if self.size is not None:
            d["size"] = size_text(self.size)
        return d


@dataclass(frozen=True)
class WgslKernelSpec:
    """The parsed ``[templates.wgsl]`` table."""

    workgroup_size: tuple[int, int, int]
    dispatch: tuple[SizeRule, ...]
    bindings: tuple[WgslBinding, ...]
    entry_point: str = "main"
    fallback: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "entry_point": self.entry_point,
            "workgroup_size": list(self.workgroup_size),
            "dispatch": [size_text(r) for r in self.dispatch],
        }
        if self.fallback:
            d["fallback"] = self.fallback
        d["bindings"] = [b.to_dict() for b in self.bindings]
        return d

    def describe(self) -> dict[str, Any]:
        """What ``describe_template`` shows of the kernel."""
        return {**self.to_dict(), "bindings_text": [b.describe() for b in self.bindings]}


def _parse_binding(b: Any, where: str) -> WgslBinding:
    if not isinstance(b, Mapping):
        raise _fail(where.rstrip("."), "must be a table")
    _unknown(b, _BINDING_KEYS, where)
    if "group" not in b:
        raise _fail(where + "group", "is required")
    if "binding" not in b:
        raise _fail(where + "binding", "is required")
    group = _int(b["group"], where + "group", 0, MAX_GROUPS - 1)
    number = _int(b["binding"], where + "binding", 0, MAX_BINDING)
    kind = _choice(b, "type", where, TYPES)
    element = _choice(b, "element", where, tuple(ELEMENTS))
    sources = [k for k in ("inport", "outport", "config") if k in b]
    if len(sources) != 1:
        raise _fail(
            where.rstrip("."),
            "needs exactly one of inport, outport or config (what the binding binds to), "
            f"got {', '.join(sources) or 'none'}",
        )
    source = sources[0]
    name = _str(b, source, where)
    pattern = _IDENT if source == "config" else _PORT
    if not pattern.fullmatch(name):
        raise _fail(
            where + source,
            f"{name[:64]!r} is not a {'config key' if source == 'config' else 'port name'}",
        )
    if kind == "uniform":
        for key in ("access", "format", "size"):
            if key in b:
                raise _fail(where + key, "applies to storage bindings only, not to a uniform")
        if source != "config":
            raise _fail(
                where + source, "a uniform binding binds a config value: use config = '<key>'"
            )
        return WgslBinding(group, number, kind, element, config=name)
    access = _choice(b, "access", where, ACCESS)
    fmt = _choice(b, "format", where, FORMATS, "array")
    if fmt == "image" and element not in ("f32", "vec4<f32>"):
        raise _fail(
            where + "format", f"an image binding holds f32 or vec4<f32> values, not {element}"
        )
    if source == "config":
        raise _fail(
            where + "config",
            "a storage binding binds an in-port (read) or an out-port (read_write)",
        )
    if access == "read" and source != "inport":
        raise _fail(
            where + "access", f"a read-only storage binding binds an in-port, not out-port {name!r}"
        )
    if access == "read_write" and source != "outport":
        raise _fail(
            where + "access",
            f"a read_write storage binding binds an out-port, not in-port {name!r}",
        )
    size: SizeRule | None = None
    if source == "outport":
        if "size" not in b:
            raise _fail(
                where + "size",
                "is required for an out-port binding ('in:<port>', an integer or 'config:<key>')",
            )
        size = parse_size(b["size"], where + "size")
    elif "size" in b:
        raise _fail(
            where + "size", "applies to out-port bindings only (an input's size is its data's)"
        )
    return WgslBinding(
        group,
        number,
        kind,
        element,
        access=access,
        format=fmt,
        inport=name if source == "inport" else "",
        outport=name if source == "outport" else "",
        size=size,
    )


def parse_wgsl(table: Any, where: str) -> WgslKernelSpec:
    """The ``wgsl`` table of a template (``where`` is ``templates[i].wgsl``)."""
    if isinstance(table, WgslKernelSpec):
        return table
    if not isinstance(table, Mapping):
        raise _fail(where, f"must be a table, got {type(table).__name__}")
    w = where + "."
    _unknown(table, _KEYS, w)
    entry_point = _str(table, "entry_point", w, "main")
    if not _IDENT.fullmatch(entry_point):
        raise _fail(w + "entry_point", f"{entry_point[:64]!r} is not a WGSL function name")
    if "workgroup_size" not in table:
        raise _fail(w + "workgroup_size", "is required (1 to 3 positive integers)")
    size = table["workgroup_size"]
    if not isinstance(size, list) or not 1 <= len(size) <= 3:
        raise _fail(w + "workgroup_size", "must list 1 to 3 positive integers")
    dims = [
        _int(n, f"{w}workgroup_size[{i}]", 1, MAX_WORKGROUP_SIZE[i]) for i, n in enumerate(size)
    ]
    dims += [1] * (3 - len(dims))
    if dims[0] * dims[1] * dims[2] > MAX_INVOCATIONS:
        raise _fail(
            w + "workgroup_size",
            f"{'x'.join(map(str, dims))} is {dims[0] * dims[1] * dims[2]} invocations per "
            f"workgroup, over WebGPU's guaranteed {MAX_INVOCATIONS}",
        )
    rules = table.get("dispatch")
    if not isinstance(rules, list) or not 1 <= len(rules) <= 3:
        raise _fail(w + "dispatch", "must list 1 to 3 size rules (one per axis)")
    dispatch = tuple(parse_size(r, f"{w}dispatch[{i}]") for i, r in enumerate(rules))
    fallback = _str(table, "fallback", w, "")
    if fallback and not _TEMPLATE_ID.fullmatch(fallback):
        raise _fail(w + "fallback", f"{fallback[:64]!r} is not a template id")
    raw = table.get("bindings")
    if not isinstance(raw, list) or not raw:
        raise _fail(w + "bindings", "must list at least one binding")
    if len(raw) > MAX_STORAGE + MAX_UNIFORM:
        raise _fail(w + "bindings", f"lists {len(raw)} bindings, over {MAX_STORAGE + MAX_UNIFORM}")
    bindings = tuple(_parse_binding(b, f"{w}bindings[{i}].") for i, b in enumerate(raw))
    return WgslKernelSpec(
        workgroup_size=(dims[0], dims[1], dims[2]),
        dispatch=dispatch,
        bindings=bindings,
        entry_point=entry_point,
        fallback=fallback,
    )


def check_wgsl_artifact(kind: str, portable: bool, where: str) -> None:
    """A wgsl artifact is WGSL text: portable, so it lives under the portable triple."""
    if kind == "wgsl" and not portable:
        raise _fail(f"{where}.triple", "a wgsl artifact belongs under wasm32-unknown-unknown")


def _check_rule(rule: SizeRule, where: str, inputs: Mapping[str, WgslBinding]) -> None:
    if isinstance(rule, tuple) and rule[0] == "in" and rule[1] not in inputs:
        raise _fail(
            where,
            f"'in:{rule[1]}' names no in-port with a storage binding; in-ports bound: "
            f"{', '.join(sorted(inputs)) or 'none'}",
        )


def check_wgsl_template(
    spec: WgslKernelSpec | None,
    *,
    template_id: str,
    inports: Sequence[str],
    outports: Sequence[str],
    entry_kinds: set[str],
    where: str,
) -> None:
    """The kernel table against its template: ports, uniqueness, counts, size rules."""
    if spec is None:
        if "wgsl" in entry_kinds:
            raise _fail(
                f"{where}.wgsl",
                "is required: the template's entry is a wgsl kernel (bindings, ports, "
                "workgroup size and dispatch rule)",
            )
        return
    w = f"{where}.wgsl"
    if "wgsl" not in entry_kinds:
        raise _fail(w, "is given, but the template's entry has no artifact of kind 'wgsl'")
    if spec.fallback == template_id:
        raise _fail(f"{w}.fallback", "names the template itself; name a CPU template")
    seen: dict[tuple[int, int], int] = {}
    inputs: dict[str, WgslBinding] = {}
    outputs: dict[str, WgslBinding] = {}
    storage = uniform = 0
    for i, b in enumerate(spec.bindings):
        bw = f"{w}.bindings[{i}]"
        key = (b.group, b.binding)
        if key in seen:
            raise _fail(
                f"{bw}.binding",
                f"group {b.group} binding {b.binding} is already declared by bindings[{seen[key]}]",
            )
        seen[key] = i
        if b.type == "storage":
            storage += 1
        else:
            uniform += 1
        if b.inport:
            if b.inport not in inports:
                raise _fail(
                    f"{bw}.inport",
                    f"{b.inport!r} is not an in-port of the template (inports: "
                    f"{', '.join(inports) or 'none'})",
                )
            if b.inport in inputs:
                raise _fail(f"{bw}.inport", f"in-port {b.inport!r} is bound twice")
            inputs[b.inport] = b
        if b.outport:
            if b.outport not in outports:
                raise _fail(
                    f"{bw}.outport",
                    f"{b.outport!r} is not an out-port of the template (outports: "
                    f"{', '.join(outports) or 'none'})",
                )
            if b.outport in outputs:
                raise _fail(f"{bw}.outport", f"out-port {b.outport!r} is bound twice")
            outputs[b.outport] = b
    if storage > MAX_STORAGE:
        raise _fail(
            f"{w}.bindings", f"{storage} storage bindings, over WebGPU's guaranteed {MAX_STORAGE}"
        )
    if uniform > MAX_UNIFORM:
        raise _fail(
            f"{w}.bindings", f"{uniform} uniform bindings, over WebGPU's guaranteed {MAX_UNIFORM}"
        )
    for port in inports:
        if port not in inputs:
            raise _fail(f"{where}.inports", f"in-port {port!r} has no binding in {w}.bindings")
    for port in outports:
        if port not in outputs:
            raise _fail(f"{where}.outports", f"out-port {port!r} has no binding in {w}.bindings")
    for i, b in enumerate(spec.bindings):
        if b.size is None:
            continue
        bw = f"{w}.bindings[{i}].size"
        _check_rule(b.size, bw, inputs)
        if b.format == "image":
            src = inputs.get(b.size[1]) if isinstance(b.size, tuple) and b.size[0] == "in" else None
            if src is None or src.format != "image":
                raise _fail(
                    bw,
                    "an image output takes its shape from an image input: "
                    "size = 'in:<image in-port>'",
                )
            if src.element != b.element:
                raise _fail(
                    f"{w}.bindings[{i}].element",
                    f"an image output holds what its input {src.inport!r} holds "
                    f"({src.element}), not {b.element}",
                )
    for i, rule in enumerate(spec.dispatch):
        _check_rule(rule, f"{w}.dispatch[{i}]", inputs)
