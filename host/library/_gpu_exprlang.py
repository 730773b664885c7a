"""Elementwise array expressions: the library's safe expression language (:mod:`._expr`),
parsed by its own parser, lowered to a flat program that runs either on numpy (float32) or
as a WGSL compute kernel (one invocation per element).

What an array expression may use (the rest of the language fails at configure time with an
error naming the construct):

- ``$.a`` … ``$.d``: the arrays on in-ports ``a`` … ``d`` (float32, all the same length);
  ``$.<name>``: a number from config ``constants``;
- number literals, ``true`` / ``false`` (1 / 0);
- ``+ - * /``, ``%`` (floored, as Python's: ``x - y * floor(x / y)``), unary ``-``;
- ``== != < <= > >=`` (1 where true, else 0), ``and`` / ``or`` / ``not`` (on "not 0");
- ``abs(x)``, ``min(x, y, …)``, ``max(x, y, …)``, ``round(x)`` (half to even), ``int(x)``
  (toward zero), ``float(x)``.

Arithmetic is IEEE float32 on both sides; WGSL allows ``/`` 2.5 ULP of error, so results
agree to about 1e-6 relative where they are finite. Where numpy gives an infinity or a NaN
(a division by zero, an overflow) the GPU's value is not specified by WGSL.

The program and its WGSL are made once per expression text (``compile_expression`` is
cached); constants are bound at run time, so nodes differing only in constants share it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import ActorError
from ._expr import Expression, ExpressionError

__all__ = ["ARRAY_PORTS", "MAX_OPS", "Program", "compile_expression", "constants_of"]

#: The in-ports an expression's ``$.<port>`` variables read.
ARRAY_PORTS = ("a", "b", "c", "d")
#: Most operations one program may have (the source is at most 2000 characters anyway).
MAX_OPS = 1024
_ARITH = ("+", "-", "*", "/", "%")
_COMPARE = ("==", "!=", "<", "<=", ">", ">=")
_CALLS = {"abs": (1, 1), "min": (1, 64), "max": (1, 64), "round": (1, 1), "int": (1, 1)}


@dataclass(frozen=True)
class Program:
    """A lowered expression: ``ops[k]`` computes value ``k`` from earlier values.

    Each op is ``(kind, arg, operands)``: ``("port", "a", ())``, ``("const", name, ())``,
    ``("lit", index, ())`` (a literal, ``literals[index]``), ``("un", "-"|"not"|"abs"|"round"|
    "int", (k,))``, ``("bin", op, (k1, k2))``, ``("fold", "min"|"max", (k1, …))``.
    """

    source: str
    ops: tuple[tuple[str, Any, tuple[int, ...]], ...]
    ports: tuple[str, ...]
    names: tuple[str, ...]
    literals: tuple[float, ...]
    wgsl: str

    def evaluate(self, arrays: dict[str, np.ndarray], constants: dict[str, float]) -> np.ndarray:
        """The numpy twin: every value float32, in the same order the kernel computes."""
        vals: list[Any] = []
        f32 = np.float32
        with np.errstate(all="ignore"):
            for kind, arg, args in self.ops:
                if kind == "port":
                    vals.append(arrays[arg])
                elif kind == "const":
                    vals.append(f32(constants[arg]))
                elif kind == "lit":
                    vals.append(f32(self.literals[arg]))
                elif kind == "un":
                    vals.append(_unary(arg, vals[args[0]]))
                elif kind == "bin":
                    vals.append(_binary(arg, vals[args[0]], vals[args[1]]))
                else:
                    fold = np.minimum if arg == "min" else np.maximum
                    acc = vals[args[0]]
                    for k in args[1:]:
                        acc = fold(acc, vals[k])
                    vals.append(acc)
        n = len(next(iter(arrays.values())))
        return np.broadcast_to(np.asarray(vals[-1], dtype=np.float32), (n,)).copy()


def _unary(op: str, x: Any) -> Any:
    if op == "-":
        return -x
    if op == "not":
        return (x == 0).astype(np.float32) if isinstance(x, np.ndarray) else np.float32(x == 0)
    if op == "abs":
        return np.abs(x)
    if op == "round":
        return np.rint(x)
    return np.trunc(x)


def _binary(op: str, x: Any, y: Any) -> Any:
    f32 = np.float32
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "/":
        return x / y
    if op == "%":
        return x - y * np.floor(x / y)  # as the kernel: floored, from one division
    if op in ("and", "or"):
        both = (x != 0) & (y != 0) if op == "and" else (x != 0) | (y != 0)
        return np.asarray(both, dtype=f32)
    fn = {
        "==": np.equal,
        "!=": np.not_equal,
        "<": np.less,
        "<=": np.less_equal,
        ">": np.greater,
        ">=": np.greater_equal,
    }[op]
    return np.asarray(fn(x, y), dtype=f32)


def _unsupported(what: str, source: str) -> ActorError:
    return ActorError(
        f"config 'expression': {what} is not supported in an array expression "
        f"(in {source[:80]!r}); arrays take numbers, $.a-$.d, $.<constant>, + - * / %, "
        f"comparisons, and/or/not, abs/min/max/round/int/float"
    )


def _describe_call(name: str, nargs: int) -> str:
    return f"{name}() with {nargs} arguments" if name == "round" else f"the function {name}()"


class _Lowering:
    def __init__(self, source: str) -> None:
        self.source = source
        self.ops: list[tuple[str, Any, tuple[int, ...]]] = []
        self.memo: dict[tuple[str, Any, tuple[int, ...]], int] = {}
        self.literals: list[float] = []
        self.ports: set[str] = set()
        self.names: set[str] = set()

    def emit(self, op: tuple[str, Any, tuple[int, ...]]) -> int:
        if op in self.memo:  # the same leaf or sub-expression twice is computed once
            return self.memo[op]
        if len(self.ops) >= MAX_OPS:
            raise ActorError(
                f"config 'expression' needs more than {MAX_OPS} operations (in "
                f"{self.source[:80]!r})"
            )
        self.ops.append(op)
        self.memo[op] = len(self.ops) - 1
        return len(self.ops) - 1

    def leaf(self, node: Any) -> tuple[str, Any, tuple[int, ...]] | None:
        """The op of a leaf node, None for an inner node; unsupported leaves raise."""
        tag = node[0]
        if tag == "lit":
            value = node[1]
            if isinstance(value, bool):
                value = int(value)
            if value is None:
                raise _unsupported("null", self.source)
            if isinstance(value, str):
                raise _unsupported(f"the string literal {value[:20]!r}", self.source)
            if not math.isfinite(float(value)) or abs(float(value)) > 3.4028234e38:
                raise ActorError(
                    f"config 'expression': the number {value!r} does not fit float32 "
                    f"(in {self.source[:80]!r})"
                )
            if float(value) not in self.literals:  # one slot per distinct number
                self.literals.append(float(value))
            return ("lit", self.literals.index(float(value)), ())
        if tag == "input":
            raise _unsupported("'$' on its own (name an in-port: $.a)", self.source)
        if tag == "get":
            base, key = node[1], node[2]
            if base != ("input",) or key[0] != "lit" or not isinstance(key[1], str):
                raise _unsupported("indexing or a nested field (only $.<name>)", self.source)
            name = key[1]
            if name in ARRAY_PORTS:
                self.ports.add(name)
                return ("port", name, ())
            self.names.add(name)
            return ("const", name, ())
        if tag == "list":
            raise _unsupported("an array literal [...]", self.source)
        if tag == "dict":
            raise _unsupported("an object literal {...}", self.source)
        if tag == "exists":
            raise _unsupported("exists()", self.source)
        if tag == "bin" and node[1] == "in":
            raise _unsupported("the operator 'in'", self.source)
        if tag == "call":
            name, args = node[1], node[2]
            if name == "float" and len(args) == 1:
                return None
            lo_hi = _CALLS.get(name)
            if lo_hi is None or not lo_hi[0] <= len(args) <= lo_hi[1]:
                raise _unsupported(_describe_call(name, len(args)), self.source)
        return None

    def children(self, node: Any) -> list[Any]:
        tag = node[0]
        if tag == "bin":
            return [node[2], node[3]]
        if tag in ("and", "or"):
            return [node[1], node[2]]
        if tag in ("not", "neg"):
            return [node[1]]
        return list(node[2])  # call

    def combine(self, node: Any, kids: list[int]) -> int:
        tag = node[0]
        if tag == "bin":
            return self.emit(("bin", node[1], (kids[0], kids[1])))
        if tag in ("and", "or"):
            return self.emit(("bin", tag, (kids[0], kids[1])))
        if tag == "not":
            return self.emit(("un", "not", (kids[0],)))
        if tag == "neg":
            return self.emit(("un", "-", (kids[0],)))
        name = node[1]
        if name == "float":
            return kids[0]
        if name in ("min", "max"):
            return kids[0] if len(kids) == 1 else self.emit(("fold", name, tuple(kids)))
        return self.emit(("un", name, (kids[0],)))

    def lower(self, tree: Any) -> int:
        """Post-order, with an explicit stack: a 1000-term sum does not recurse 1000 deep."""
        stack: list[tuple[Any, list[int] | None]] = [(tree, None)]
        done: list[int] = []
        while stack:
            node, kids = stack.pop()
            if kids is None:
                op = self.leaf(node)
                if op is not None:
                    done.append(self.emit(op))
                    continue
                children = self.children(node)
                stack.append((node, [len(children)]))
                stack.extend((child, None) for child in reversed(children))
            else:
                count = kids[0]
                args = done[len(done) - count :]
                del done[len(done) - count :]
                done.append(self.combine(node, args))
        return done[-1]


_WGSL_BIN = {"+": "+", "-": "-", "*": "*", "/": "/"}
_WGSL_CMP = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _wgsl(ops: list[tuple[str, Any, tuple[int, ...]]], ports: tuple[str, ...]) -> str:
    """A kernel over ``n`` elements: one ``let`` per op, so no expression nests."""
    lines = [
        "struct P { n: u32, pad0: u32, pad1: u32, pad2: u32 }",
        "@group(0) @binding(0) var<storage, read> consts: array<f32>;",
        "@group(0) @binding(1) var<storage, read_write> dst: array<f32>;",
        "@group(0) @binding(2) var<uniform> p: P;",
    ]
    for k, port in enumerate(ports):
        lines.append(f"@group(0) @binding({k + 3}) var<storage, read> in_{port}: array<f32>;")
    lines += [
        "fn truth(v: f32) -> f32 { return select(0.0, 1.0, v != 0.0); }",
        "fn floored_mod(x: f32, y: f32) -> f32 { return x - y * floor(x / y); }",
        "@compute @workgroup_size(64)",
        "fn main(@builtin(global_invocation_id) gid: vec3<u32>,",
        "        @builtin(num_workgroups) nwg: vec3<u32>) {",
        "    let i = gid.y * nwg.x * 64u + gid.x;",
        "    if (i >= p.n) { return; }",
    ]
    slot = 0  # consts[]: literals first, then names, in the order the host packs them
    for k, (kind, arg, args) in enumerate(ops):
        a = [f"t{j}" for j in args]
        if kind == "port":
            expr = f"in_{arg}[i]"
        elif kind in ("lit", "const"):
            expr = f"consts[{slot}u]"
            slot += 1
        elif kind == "un":
            expr = {
                "-": f"-{a[0]}",
                "not": f"select(0.0, 1.0, {a[0]} == 0.0)",
                "abs": f"abs({a[0]})",
                "round": f"round({a[0]})",
                "int": f"trunc({a[0]})",
            }[arg]
        elif kind == "bin":
            if arg in _WGSL_BIN:
                expr = f"{a[0]} {_WGSL_BIN[arg]} {a[1]}"
            elif arg == "%":
                expr = f"floored_mod({a[0]}, {a[1]})"
            elif arg == "and":
                expr = f"truth({a[0]}) * truth({a[1]})"
            elif arg == "or":
                expr = f"max(truth({a[0]}), truth({a[1]}))"
            else:
                expr = f"select(0.0, 1.0, {a[0]} {_WGSL_CMP[arg]} {a[1]})"
        else:
            expr = a[0]
            for name in a[1:]:
                expr = f"{arg}({expr}, {name})"
        lines.append(f"    let t{k}: f32 = {expr};")
    lines += [f"    dst[i] = t{len(ops) - 1};", "}"]
    return "\n".join(lines) + "\n"


def compile_expression(source: Any) -> Program:
    """The program of ``source`` (cached per text); ActorError naming what is wrong."""
    if not isinstance(source, str):
        raise ActorError(f"config 'expression' must be a string, got {str(source)[:60]}")
    return _compile(source)


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> Program:
    try:
        tree = Expression(source)._tree
    except ExpressionError as exc:
        raise ActorError(f"config 'expression': {exc} (in {source[:80]!r})") from None
    low = _Lowering(source)
    low.lower(tree)
    if not low.ports:
        raise ActorError(
            f"config 'expression' reads no in-port (use $.a, $.b, $.c or $.d; in {source[:80]!r})"
        )
    # consts[] order: every lit/const op in op order (what _wgsl numbers them by)
    ops = low.ops
    ports = tuple(sorted(low.ports))
    names = tuple(arg for kind, arg, _ in ops if kind == "const")
    return Program(source, tuple(ops), ports, names, tuple(low.literals), _wgsl(ops, ports))


def constants_of(ctx_config: dict[str, Any], program: Program) -> dict[str, float]:
    """The config ``constants`` the program names, checked: numbers, finite, in float32."""
    raw = ctx_config.get("constants")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ActorError(f"config 'constants' must be an object of numbers, got {raw!r:.60}")
    out: dict[str, float] = {}
    for name in program.names:
        if name not in raw:
            known = ", ".join(sorted(map(str, raw))) or "none"
            raise ActorError(
                f"config 'expression' names $.{name}, which is neither an in-port "
                f"({', '.join(ARRAY_PORTS)}) nor a key of config 'constants' (keys: {known})"
            )
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ActorError(f"config 'constants': {name!r} must be a number, got {value!r:.60}")
        if not math.isfinite(float(value)) or abs(float(value)) > 3.4028234e38:
            raise ActorError(f"config 'constants': {name!r} = {value!r} does not fit float32")
        out[name] = float(value)
    return out


def const_values(program: Program, constants: dict[str, float]) -> np.ndarray:
    """The kernel's ``consts`` buffer: each lit/const op's value, in op order."""
    values = [
        program.literals[arg] if kind == "lit" else constants[arg]
        for kind, arg, _ in program.ops
        if kind in ("lit", "const")
    ]
    return np.asarray(values or [0.0], dtype=np.float32)
