"""Reading a pack's WGSL kernel before any GPU sees it: its text, its resource declarations
and its compute entry points, checked against the manifest's ``[templates.wgsl]`` table.

This is a declaration reader, not a WGSL compiler: it strips comments, splits the text into
tokens (one linear pass, no backtracking regular expressions) and reads the
``@group(g) @binding(b) var<space, access> name: type`` declarations and the
``@compute @workgroup_size(x, y, z) fn name`` entry points. wgpu (naga) validates the whole
kernel when its pipeline is made; this pass exists so that a manifest that does not match its
shader is refused at ``load_pack``, with an error naming both declarations, even on a machine
without a GPU. Group, binding and workgroup-size arguments must be integer literals.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..abi._manifest_wgsl import ELEMENTS, WgslBinding, WgslKernelSpec
from ._errors import GpuKernelError
from ._wgsl_arrays import check_arrays

__all__ = ["MAX_SOURCE", "ShaderBinding", "ShaderInfo", "check_against_manifest", "read_shader"]

#: Largest WGSL kernel a pack may carry (bytes); real kernels are a few KiB.
MAX_SOURCE = 1 << 20
#: Shape limits, far above real kernels and far below what takes wgpu-native down: naga's
#: parser recurses on nested expressions and types (a process-killing stack overflow at a
#: few thousand levels), and llvmpipe inlines every call (a chain of 2000 small functions
#: took 9 s and 3.3 GB to compile here).
MAX_NESTING = 64  # open ( [ { at once
MAX_TYPE_NESTING = 16  # array<vec4<...>> inside one another
MAX_STATEMENT = 4096  # tokens between two of ; { }
MAX_INLINED = 1 << 15  # tokens of a function with every call inlined
MAX_FUNCTIONS = 128  # llvmpipe's compile memory grows with the square of the count
MAX_ELSE_IF = 256  # each "else if" nests one level deeper in naga (20 000 overflowed it)
_GENERICS = frozenset(
    {"array", "vec2", "vec3", "vec4", "ptr", "atomic", "binding_array"}
    | {f"mat{c}x{r}" for c in "234" for r in "234"}
)
_TOKEN = re.compile(r"\s+|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9A-Za-z_.]*|\S")
_INT = re.compile(r"(0|[1-9][0-9]{0,9})[iu]?")


@dataclass(frozen=True)
class ShaderBinding:
    group: int
    binding: int
    space: str  # "storage", "uniform", or "" (a texture or sampler)
    access: str  # "read" / "read_write" for storage
    name: str
    type: str  # without spaces: "array<f32>"
    line: int

    def text(self) -> str:
        space = self.space + (f", {self.access}" if self.space == "storage" else "")
        head = f"var<{space}>" if self.space else "var"
        return f"@group({self.group}) @binding({self.binding}) {head} {self.name}: {self.type}"


@dataclass(frozen=True)
class ShaderInfo:
    bindings: dict[tuple[int, int], ShaderBinding]
    #: compute entry point -> its workgroup size (None when not integer literals)
    entry_points: dict[str, tuple[int, int, int] | None]


def _strip_comments(text: str, what: str) -> str:
    """``text`` with ``//`` and (nested) ``/* */`` comments blanked, newlines kept."""
    out: list[str] = []
    i, n, depth, start = 0, len(text), 0, 0
    a = b = -2  # next "/*" and "*/" at or after i, found again only once passed (linear)
    while i < n:
        if depth == 0:
            j = text.find("/", i)
            if j < 0 or j + 1 >= n:
                break
            nxt = text[j + 1]
            if nxt == "/":
                out.append(text[start:j])
                end = text.find("\n", j)
                i = start = n if end < 0 else end
            elif nxt == "*":
                out.append(text[start:j])
                depth, i = 1, j + 2
                start = i
            else:
                i = j + 1
        else:
            if a != -1 and a < i:
                a = text.find("/*", i)
            if b != -1 and b < i:
                b = text.find("*/", i)
            if b < 0:
                raise GpuKernelError(f"{what}: a /* comment is never closed", kernel=what)
            if 0 <= a < b:
                depth, i = depth + 1, a + 2
            else:
                depth, i = depth - 1, b + 2
            if depth == 0:
                out.append("\n" * text.count("\n", start, i))
                start = i
    out.append(text[start:] if depth == 0 else "")
    return "".join(out)


def _tokens(text: str) -> list[tuple[str, int]]:
    toks: list[tuple[str, int]] = []
    line = 1
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok[0].isspace():
            line += tok.count("\n")
            continue
        toks.append((tok, line))
    return toks


def decode_source(data: bytes, what: str) -> str:
    if len(data) > MAX_SOURCE:
        raise GpuKernelError(
            f"{what}: the WGSL kernel is {len(data)} bytes, over the limit of {MAX_SOURCE}",
            kernel=what,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GpuKernelError(
            f"{what}: the WGSL kernel is not UTF-8 text (byte {exc.start})", kernel=what
        ) from None
    if "\0" in text or not text.strip():
        raise GpuKernelError(f"{what}: the WGSL kernel is empty or holds NUL bytes", kernel=what)
    return text


def check_shape(toks: list[tuple[str, int]], what: str) -> None:
    """Refuse kernels whose nesting, statement length or inlined size passes the limits
    above (one pass over the tokens, then one over the call graph)."""

    def bad(line: int, why: str) -> GpuKernelError:
        return GpuKernelError(f"{what}: line {line}: {why}", kernel=what)

    opened: list[str] = []
    generic = statement = else_if = 0
    pending: str | None = None  # a function whose body has not opened yet
    current: str | None = None
    body_depth = 0
    own: dict[str, int] = {}
    calls: dict[str, dict[str, int]] = {}
    n = len(toks)
    for i, (tok, line) in enumerate(toks):
        if tok in ("(", "[", "{"):
            opened.append(tok)
            if len(opened) > MAX_NESTING:
                raise bad(line, f"brackets nest deeper than {MAX_NESTING} levels")
            if tok == "{" and pending is not None and current is None:
                current, pending, body_depth = pending, None, len(opened)
                own.setdefault(current, 0)
                calls.setdefault(current, {})
        elif tok in (")", "]", "}") and opened:
            opened.pop()
            if tok == "}" and current is not None and len(opened) < body_depth:
                current = None
        if tok == "<" and i and toks[i - 1][0] in _GENERICS:
            generic += 1
            if generic > MAX_TYPE_NESTING:
                raise bad(line, f"types nest deeper than {MAX_TYPE_NESTING} levels")
        elif tok == ">" and generic:
            generic -= 1
        statement = 0 if tok in (";", "{", "}") else statement + 1
        if statement > MAX_STATEMENT:
            raise bad(line, f"a statement of more than {MAX_STATEMENT} tokens")
        if tok == "else" and i + 1 < n and toks[i + 1][0] == "if":
            else_if += 1
            if else_if > MAX_ELSE_IF:
                raise bad(line, f"more than {MAX_ELSE_IF} 'else if' branches")
        if tok == "fn" and i + 1 < n and current is None:
            pending = toks[i + 1][0]
            if len(own) >= MAX_FUNCTIONS:
                raise bad(line, f"more than {MAX_FUNCTIONS} functions")
        if current is not None:
            own[current] += 1
            if i + 1 < n and toks[i + 1][0] == "(" and (tok[0].isalpha() or tok[0] == "_"):
                callee = calls[current]
                callee[tok] = callee.get(tok, 0) + 1
    _check_inlined(own, calls, what)


def _check_inlined(own: dict[str, int], calls: dict[str, dict[str, int]], what: str) -> None:
    """Each function's size with every call inlined (saturating at the limit); WGSL has no
    recursion, so a cycle is refused here rather than followed."""
    size: dict[str, int] = {}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for root in own:
        if root in size:
            continue
        stack = [(root, iter(calls[root].items()))]
        state[root] = 1
        while stack:
            fn, it = stack[-1]
            step = next(it, None)
            if step is None:
                total = own[fn]
                for callee, times in calls[fn].items():
                    if callee in size:
                        total = min(MAX_INLINED + 1, total + times * size[callee])
                size[fn] = total
                state[fn] = 2
                stack.pop()
                if total > MAX_INLINED:
                    raise GpuKernelError(
                        f"{what}: function {fn!r} is over {MAX_INLINED} tokens with its "
                        "calls inlined (as GPU compilers do); split the work across "
                        "dispatches or simplify the kernel",
                        kernel=what,
                    )
                continue
            callee = step[0]
            if callee not in own:
                continue  # a builtin or a type constructor
            if state.get(callee) == 1:
                raise GpuKernelError(
                    f"{what}: function {callee!r} calls itself through {fn!r}; WGSL has no "
                    "recursion",
                    kernel=what,
                )
            if state.get(callee) != 2:
                state[callee] = 1
                stack.append((callee, iter(calls[callee].items())))


def read_shader(text: str, what: str) -> ShaderInfo:
    """The resource declarations and compute entry points of WGSL ``text``."""
    toks = _tokens(_strip_comments(text, what))
    check_shape(toks, what)
    check_arrays(toks, what)
    bindings: dict[tuple[int, int], ShaderBinding] = {}
    entries: dict[str, tuple[int, int, int] | None] = {}
    attrs: dict[str, list[str]] = {}
    attr_line = 0
    i, n = 0, len(toks)

    def bad(line: int, why: str) -> GpuKernelError:
        return GpuKernelError(f"{what}: line {line}: {why}", kernel=what)

    while i < n:
        tok, line = toks[i]
        if tok == "@" and i + 1 < n:
            name = toks[i + 1][0]
            attr_line = attr_line or line
            i += 2
            args: list[str] = []
            if i < n and toks[i][0] == "(":
                depth, j = 1, i + 1
                while j < n and depth:
                    t = toks[j][0]
                    depth += (t == "(") - (t == ")")
                    j += 1
                if depth:
                    raise bad(line, f"@{name}( is never closed")
                args = "".join(t for t, _ in toks[i + 1 : j - 1]).split(",")
                i = j
            attrs[name] = [a for a in args if a]
            continue
        if tok == "var" and ("binding" in attrs or "group" in attrs):
            group = _literal(attrs.get("group"), "group", bad, attr_line)
            number = _literal(attrs.get("binding"), "binding", bad, attr_line)
            j = i + 1
            space, access = "", ""
            if j < n and toks[j][0] == "<":
                k = j + 1
                while k < n and toks[k][0] != ">":
                    k += 1
                parts = "".join(t for t, _ in toks[j + 1 : k]).split(",")
                space = parts[0]
                access = parts[1] if len(parts) > 1 else ("read" if space == "storage" else "")
                j = k + 1
            if j + 1 >= n or toks[j + 1][0] != ":":
                raise bad(line, "a binding declaration without 'name: type'")
            name = toks[j][0]
            k = j + 2
            depth = 0
            while k < n and (depth or toks[k][0] not in (";", "=")):
                depth += (toks[k][0] == "<") - (toks[k][0] == ">")
                k += 1
            typ = "".join(t for t, _ in toks[j + 2 : k])
            key = (group, number)
            if key in bindings:
                raise bad(line, f"@group({group}) @binding({number}) is declared twice")
            bindings[key] = ShaderBinding(group, number, space, access, name, typ, attr_line)
            attrs, attr_line = {}, 0
            i = k
            continue
        if tok == "fn" and i + 1 < n:
            if "compute" in attrs:
                size = attrs.get("workgroup_size", [])
                dims: list[int] = []
                for a in size:
                    m = _INT.fullmatch(a)
                    if m is None:
                        dims = []
                        break
                    dims.append(int(m.group(1)))
                wg: tuple[int, int, int] | None = None
                if 1 <= len(dims) <= 3 and len(dims) == len(size):
                    dims += [1] * (3 - len(dims))
                    wg = (dims[0], dims[1], dims[2])
                entries[toks[i + 1][0]] = wg
            attrs, attr_line = {}, 0
            i += 2
            continue
        if tok in (";", "{", "}"):
            attrs, attr_line = {}, 0
        i += 1
    return ShaderInfo(bindings, entries)


def _literal(
    args: list[str] | None, attr: str, bad: Callable[[int, str], GpuKernelError], line: int
) -> int:
    if args is None:
        raise bad(line, f"a resource declaration without @{attr}(...)")
    m = _INT.fullmatch(args[0]) if len(args) == 1 else None
    if m is None:
        raise bad(
            line,
            f"@{attr}({','.join(args)}) is not an integer literal; a pack kernel writes "
            f"@{attr}(<integer>) so its manifest can be checked",
        )
    return int(m.group(1))


def _element_of(typ: str) -> str:
    """The element WGSL type a binding's type holds: ``array<vec4<f32>,16>`` -> ``vec4<f32>``."""
    if typ.startswith("array<") and typ.endswith(">"):
        inner = typ[len("array<") : -1]
        depth = 0
        for i, ch in enumerate(inner):
            depth += (ch == "<") - (ch == ">")
            if ch == "," and depth == 0:
                return inner[:i]
        return inner
    return typ


def _manifest_text(b: WgslBinding) -> str:
    return f"templates.wgsl bindings {b.describe()}"


def check_against_manifest(info: ShaderInfo, spec: WgslKernelSpec, what: str) -> None:
    """GpuKernelError naming the manifest's and the shader's declaration where they differ."""

    def listing() -> str:
        return "; ".join(sb.text() for sb in info.bindings.values()) or "none"

    if spec.entry_point not in info.entry_points:
        found = ", ".join(sorted(info.entry_points)) or "none"
        raise GpuKernelError(
            f"{what}: the manifest's entry_point {spec.entry_point!r} is no @compute function "
            f"of the shader (compute entry points: {found})",
            kernel=what,
        )
    wg = info.entry_points[spec.entry_point]
    if wg is None:
        raise GpuKernelError(
            f"{what}: @workgroup_size of {spec.entry_point!r} must be integer literals so it "
            f"can be checked against the manifest's workgroup_size {list(spec.workgroup_size)}",
            kernel=what,
        )
    if wg != spec.workgroup_size:
        raise GpuKernelError(
            f"{what}: the manifest says workgroup_size {list(spec.workgroup_size)}, the shader's "
            f"{spec.entry_point!r} says @workgroup_size{wg}",
            kernel=what,
        )
    declared = {(b.group, b.binding): b for b in spec.bindings}
    for key, b in declared.items():
        sb = info.bindings.get(key)
        if sb is None:
            raise GpuKernelError(
                f"{what}: the manifest declares {_manifest_text(b)}, but the shader has no "
                f"@group({b.group}) @binding({b.binding}); the shader declares: {listing()}",
                kernel=what,
            )
        want_access = b.access if b.type == "storage" else ""
        spellings = ELEMENTS[b.element][1]
        element = _element_of(sb.type)
        known = element in {s for _, ss in ELEMENTS.values() for s in ss} or element in (
            "vec2<f32>",
            "vec3<f32>",
            "vec4<u32>",
            "vec4<i32>",
        )
        if (
            sb.space != b.type
            or (b.type == "storage" and sb.access != want_access)
            or (known and element not in spellings)
        ):
            raise GpuKernelError(
                f"{what}: the manifest declares {_manifest_text(b)}, the shader declares "
                f"{sb.text()} (line {sb.line})",
                kernel=what,
            )
    for key, sb in info.bindings.items():
        if key not in declared:
            raise GpuKernelError(
                f"{what}: the shader declares {sb.text()} (line {sb.line}), which "
                f"templates.wgsl.bindings does not declare",
                kernel=what,
            )
