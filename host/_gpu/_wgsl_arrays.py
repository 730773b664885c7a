"""A bound on the fixed-size arrays a WGSL kernel keeps in its own (function and private)
memory: a software driver compiles them into registers and stack, and llvmpipe was seen
taking 27 s for one ``array<vec4<f32>, 1024>`` local and 16 GB for 16 M elements, work that
goes on after the tick's time limit has passed.

Every ``array<E, N>`` outside the type of a buffer (``var<uniform|storage|workgroup>``,
whose sizes wgpu validates against the device's limits) counts towards the kernel's local
total, as does every use of a struct or alias that holds arrays; sizes are scalars (a
``vec4<f32>`` is 4), through aliases and structs. ``N`` must be an integer literal or a
module ``const`` of one. The count over-estimates (a struct used only in a uniform is
counted too), never under-estimates.
"""

from __future__ import annotations

import re

from ._errors import GpuKernelError

__all__ = ["MAX_LOCAL_SCALARS", "check_arrays"]

#: Most scalars a kernel's local arrays may hold together (4 KiB of f32).
MAX_LOCAL_SCALARS = 1024
_MAX_DEPTH = 16
_SATURATE = 1 << 40
_INT = re.compile(r"(0|[1-9][0-9]{0,9}|0[xX][0-9a-fA-F]{1,8})[iu]?")
_VEC = re.compile(r"vec([234])[fhiu]?")
_MAT = re.compile(r"mat([234])x([234])[fh]?")
_BUFFER_SPACES = ("uniform", "storage", "workgroup")

Tokens = list[tuple[str, int]]


def _int(tok: str) -> int | None:
    m = _INT.fullmatch(tok)
    return int(m.group(1), 0) if m else None


class _Sizer:
    def __init__(self, toks: Tokens, what: str) -> None:
        self.toks = toks
        self.what = what
        self.consts: dict[str, int] = {}
        self.defs: dict[str, list[tuple[int, int]]] = {}  # name -> type token ranges
        self.memo: dict[str, int] = {}
        self.visiting: set[str] = set()

    def bad(self, i: int, why: str) -> GpuKernelError:
        line = self.toks[min(i, len(self.toks) - 1)][1] if self.toks else 0
        return GpuKernelError(f"{self.what}: line {line}: {why}", kernel=self.what)

    def type_end(self, i: int) -> int:
        """Index just past the type starting at ``i`` (a name, maybe with <...>)."""
        toks, n = self.toks, len(self.toks)
        j = i + 1
        if j < n and toks[j][0] == "<":
            depth = 0
            while j < n:
                t = toks[j][0]
                depth += (t == "<") - (t == ">")
                j += 1
                if depth == 0:
                    break
        return j

    def size(self, i: int, local: bool, depth: int = 0) -> int:
        """Scalars of the type at token ``i``."""
        if depth > _MAX_DEPTH:
            raise self.bad(
                i, f"types nest deeper than {_MAX_DEPTH} levels (aliases and structs count)"
            )
        toks, n = self.toks, len(self.toks)
        tok = toks[i][0] if i < n else ""
        if tok == "array" and i + 1 < n and toks[i + 1][0] == "<":
            end = self.type_end(i)
            inner = self.size(i + 2, local, depth + 1)
            j = self.type_end(i + 2)
            count = 1
            if j < end - 1 and toks[j][0] == ",":
                size_tok = toks[j + 1][0]
                value = _int(size_tok)
                if value is None:
                    value = self.consts.get(size_tok)
                closed = j + 2 < n and toks[j + 2][0] in (">", ",")
                if value is not None and not closed:
                    raise self.bad(j, "an array<...> type is never closed")
                if value is None:
                    if local:
                        raise self.bad(
                            j,
                            "an array size must be an integer literal or a const of one "
                            f"(got {size_tok[:40]!r}), so the kernel's memory can be checked",
                        )
                    value = 1
                count = value
            return min(_SATURATE, count * inner)
        if m := _VEC.fullmatch(tok):
            return int(m.group(1))
        if m := _MAT.fullmatch(tok):
            return int(m.group(1)) * int(m.group(2))
        if tok in self.defs:
            return self.named(tok, i, local, depth + 1)
        return 1

    def named(self, name: str, i: int, local: bool, depth: int) -> int:
        if name in self.memo:
            return self.memo[name]
        if name in self.visiting:
            raise self.bad(i, f"type {name!r} contains itself")
        self.visiting.add(name)
        total = 0
        for start, _ in self.defs[name]:
            total = min(_SATURATE, total + self.size(start, local, depth))
        self.visiting.discard(name)
        self.memo[name] = total
        return total

    def collect(self) -> list[tuple[int, int]]:
        """Consts, aliases and structs; returns the token ranges of buffer types."""
        toks, n = self.toks, len(self.toks)
        buffers: list[tuple[int, int]] = []
        for i, (tok, _) in enumerate(toks):
            if tok == "const" and i + 1 < n:
                j = i + 2
                while j < n and j < i + 12 and toks[j][0] not in ("=", ";"):
                    j += 1
                if j + 2 < n and toks[j][0] == "=" and toks[j + 2][0] == ";":
                    value = _int(toks[j + 1][0])
                    if value is not None:
                        self.consts[toks[i + 1][0]] = value
            elif tok == "alias" and i + 3 < n and toks[i + 2][0] == "=":
                self.defs.setdefault(toks[i + 1][0], []).append((i + 3, self.type_end(i + 3)))
            elif tok == "struct" and i + 2 < n and toks[i + 2][0] == "{":
                members = self.defs.setdefault(toks[i + 1][0], [])
                j, depth = i + 3, 1
                while j < n and depth:
                    t = toks[j][0]
                    if t in ("{", "(", "["):
                        depth += 1
                    elif t in ("}", ")", "]"):
                        depth -= 1
                    elif t == ":" and depth == 1 and j + 1 < n:
                        members.append((j + 1, self.type_end(j + 1)))
                    j += 1
            elif (
                tok == "var"
                and i + 2 < n
                and toks[i + 1][0] == "<"
                and toks[i + 2][0] in _BUFFER_SPACES
            ):
                j = i + 2
                while j < n and toks[j][0] not in (":", ";", "="):
                    j += 1
                if j + 1 < n and toks[j][0] == ":":
                    buffers.append((j + 1, self.type_end(j + 1)))
        return buffers


def check_arrays(toks: Tokens, what: str) -> None:
    """GpuKernelError when the kernel's local arrays hold more than MAX_LOCAL_SCALARS."""
    sizer = _Sizer(toks, what)
    buffers = dict(sizer.collect())
    headers = {i + 1 for i, (t, _) in enumerate(toks) if t in ("alias", "struct")}
    total = 0
    i, n = 0, len(toks)
    while i < n:
        if i in buffers:
            i = buffers[i]
            continue
        tok = toks[i][0]
        if tok == "array" and i + 1 < n and toks[i + 1][0] == "<":
            total += sizer.size(i, True)
            i = sizer.type_end(i)
        elif tok in sizer.defs and i not in headers:
            total += sizer.named(tok, i, True, 1)
            i += 1
        else:
            i += 1
        if total > MAX_LOCAL_SCALARS:
            raise sizer.bad(
                i - 1,
                f"the kernel's local arrays (function and private memory, structs and aliases "
                f"counted where used) hold over {MAX_LOCAL_SCALARS} scalars; keep large data "
                "in storage or uniform bindings",
            )
