"""The config keys a built-in template reads, found in its code.

A template's ``describe()["config"]`` must list every key its implementation reads, with the
type and default the reading code applies; writing those by hand next to the code drifts.
This module reads the source of the template's methods, and of every library function they
call (followed by name through the function's globals), and collects each key that is read
as a literal:

- ``config_int(ctx, "count", 10)`` and its siblings in ``_base`` (the type is the helper's,
  the default the argument it takes as the default; the catalog shape has no room for
  ``config_choice``'s choices: the docstring and the error name them);
- ``ctx.config.get("key", default)``, ``ctx.config["key"]``, ``"key" in ctx.config`` (also on
  a local name bound to ``ctx.config`` or on a parameter called ``config``);
- a call of a helper whose parameter is used as the key of such a read, with a literal
  at that position (``_ms(ctx, "delay", 100)``): its type and default follow the helper;
- the node's config handed to a library helper under any parameter name
  (``constants_of(ctx.config, ...)``), a key looped over a literal or module-constant tuple
  (``for k in ("width", "height")``, ``f"gain_{p}" for p in MIX_PORTS``), and a template made
  and run inside another (``_RfliResize().run(ctx)``, a class attribute such as ``rfla``).

A read whose key is none of these (``ctx.config.get(f"{name}Ms")``) or that copies the
whole config (``dict(ctx.config)``) makes the template *open*: its unknown keys cannot be
refused. The scan is cached per class; without source (a frozen install) it finds nothing
and the template stays open.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConfigScan", "scan_class"]

#: The ``_base`` readers: name -> (JSON type, position of the default argument).
_BASE_READERS: dict[str, tuple[str | None, int]] = {
    "config_value": (None, 2),
    "config_number": ("number", 2),
    "config_int": ("integer", 2),
    "config_str": ("string", 2),
    "config_bool": ("boolean", 2),
    "config_choice": ("string", 3),
}
_CONFIG_NAMES = frozenset({"config", "cfg", "conf"})
_LIBRARY = "reflow.library"


@dataclass
class ConfigScan:
    """What a template's code reads: ``keys`` ({key: schema}) and whether it is ``open``."""

    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    open: bool = False


@dataclass
class _Reader:
    """A helper that reads the config key passed at ``key_pos``."""

    key_pos: int
    key_name: str
    type: str | None
    default_pos: int | None = None
    default_name: str | None = None
    default: Any = None


@dataclass
class _FunctionScan:
    reads: dict[str, dict[str, Any]] = field(default_factory=dict)
    open: bool = False
    reader: _Reader | None = None
    calls: list[Any] = field(default_factory=list)


def _literal(node: ast.AST | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _is_config_expr(node: ast.AST, aliases: set[str]) -> bool:
    if isinstance(node, ast.Attribute) and node.attr == "config":
        return True
    return isinstance(node, ast.Name) and (node.id in _CONFIG_NAMES or node.id in aliases)


def _arg(call: ast.Call, pos: int, name: str | None) -> ast.AST | None:
    if pos < len(call.args) and not any(isinstance(a, ast.Starred) for a in call.args[:pos]):
        return call.args[pos]
    for kw in call.keywords:
        if name is not None and kw.arg == name:
            return kw.value
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self, func: Any, params: list[str]) -> None:
        self.func = func
        self.params = params
        self.out = _FunctionScan()
        self.aliases: set[str] = set()
        #: loop names bound to literal keys; the declared keys bind to ``[]`` (known).
        self.loops: dict[str, list[str]] = {}

    def _bind(self, target: ast.AST, it: ast.AST) -> None:
        if not isinstance(target, ast.Name):
            return
        if isinstance(it, ast.Attribute) and it.attr in ("config_defaults", "config_schema"):
            self.loops[target.id] = []
            return
        values = _literal(it)
        if values is None and isinstance(it, ast.Name):  # a module constant (MIX_PORTS)
            values = getattr(self.func, "__globals__", {}).get(it.id)
        if isinstance(values, (tuple, list)) and all(isinstance(v, str) for v in values):
            self.loops[target.id] = list(values)

    # -- recording -------------------------------------------------------------------
    def _read(self, key_node: ast.AST, type_: str | None, default: ast.AST | None) -> None:
        if isinstance(key_node, ast.Constant) and isinstance(key_node.value, str):
            entry = self.out.reads.setdefault(key_node.value, {"type": type_, "default": None})
            if entry["type"] is None:
                entry["type"] = type_
            value = _literal(default)
            if value is not None and entry["default"] is None:
                entry["default"] = value
            return
        if isinstance(key_node, ast.JoinedStr):  # f"gain_{p}" over a loop of literal keys
            expanded = self._expand(key_node)
            if expanded is not None:
                for key in expanded:
                    self._read(ast.Constant(key), type_, default)
                return
        if isinstance(key_node, ast.Name) and key_node.id in self.loops:
            for key in self.loops[key_node.id]:  # ``for k in ("width", "height")``
                self._read(ast.Constant(key), type_, default)
            return
        if isinstance(key_node, ast.Name) and key_node.id in self.params:
            if self.out.reader is None:
                pos = self.params.index(key_node.id)
                reader = _Reader(pos, key_node.id, type_)
                if isinstance(default, ast.Name) and default.id in self.params:
                    reader.default_pos = self.params.index(default.id)
                    reader.default_name = default.id
                else:
                    reader.default = _literal(default)
                self.out.reader = reader
            return
        self.out.open = True

    def _expand(self, node: ast.JoinedStr) -> list[str] | None:
        """The keys an f-string of constants and one loop name makes, or None."""
        names = {
            v.value.id
            for v in node.values
            if isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name)
        }
        if len(names) != 1 or next(iter(names)) not in self.loops:
            return None
        keys = []
        for bound in self.loops[next(iter(names))]:
            parts = []
            for v in node.values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str):
                    parts.append(v.value)
                elif (
                    isinstance(v, ast.FormattedValue)
                    and isinstance(v.value, ast.Name)
                    and v.conversion == -1
                    and v.format_spec is None
                ):
                    parts.append(bound)
                else:
                    return None
            keys.append("".join(parts))
        return keys

    # -- visiting --------------------------------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        if _is_config_expr(node.value, self.aliases):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.aliases.add(target.id)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if _is_config_expr(node.value, self.aliases):
            self._read(node.slice, None, None)
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        if (
            len(node.ops) == 1
            and isinstance(node.ops[0], (ast.In, ast.NotIn))
            and _is_config_expr(node.comparators[0], self.aliases)
        ):
            self._read(node.left, None, None)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        fn = node.func
        if isinstance(fn, ast.Attribute) and _is_config_expr(fn.value, self.aliases):
            if fn.attr == "get" and node.args:
                self._read(node.args[0], None, node.args[1] if len(node.args) > 1 else None)
            elif fn.attr in ("items", "keys", "values", "copy"):
                self.out.open = True
        elif isinstance(fn, ast.Name) and fn.id in _BASE_READERS and len(node.args) >= 2:
            type_, default_pos = _BASE_READERS[fn.id]
            self._read(node.args[1], type_, _arg(node, default_pos, "default"))
        else:
            # A whole config handed on (dict(ctx.config), _params(ctx.config)) is read in
            # ways this scan does not follow unless the callee is a library function.
            self.out.calls.append(node)
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        if _is_config_expr(node.iter, self.aliases):
            self.out.open = True
        self._bind(node.target, node.iter)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        if _is_config_expr(node.iter, self.aliases):
            self.out.open = True
        self._bind(node.target, node.iter)
        self.generic_visit(node)

    def _visit_comp(self, node: ast.AST) -> None:
        # generators first: their loop names bind before the element is read
        for gen in getattr(node, "generators", []):
            self.visit(gen)
        for name in ("elt", "key", "value"):
            child = getattr(node, name, None)
            if child is not None:
                self.visit(child)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comp


def _resolve(func: Any, call: ast.Call, owner: type | None) -> Any:
    fn = call.func
    target: Any = None
    if isinstance(fn, ast.Name):
        code = getattr(func, "__code__", None)
        free = code.co_freevars if code is not None else ()
        cells = dict(zip(free, func.__closure__ or (), strict=False))
        if fn.id in cells:  # a closure's function (a template built by a factory)
            try:
                target = cells[fn.id].cell_contents
            except ValueError:
                target = None
        else:
            target = getattr(func, "__globals__", {}).get(fn.id)
    elif (
        isinstance(fn, ast.Attribute)
        and isinstance(fn.value, ast.Name)
        and fn.value.id in ("self", "cls")
        and owner is not None
    ):
        target = inspect.getattr_static(owner, fn.attr, None)
        if isinstance(target, (staticmethod, classmethod)):
            target = target.__func__
    if inspect.isfunction(target) and str(target.__module__).startswith(_LIBRARY):
        return target
    return None


def _parse_lambda(text: str) -> ast.Module | None:
    # the shortest head of ``text`` that parses is the lambda (its line's tail is not)
    text = text.split("\n", 1)[0]
    for end in range(len(text), 0, -1):
        try:
            return ast.parse(text[:end])
        except SyntaxError:
            continue
    return None


@functools.cache
def _scan_function(func: Any, alias: str | None = None) -> _FunctionScan:
    """What ``func`` reads; ``alias``: a parameter that is handed a node's config."""
    tree: ast.Module | None = None
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        source = ""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        if "lambda" in source:  # a lambda inside a larger expression: parse it alone
            tree = _parse_lambda(source[source.index("lambda") :])
    node: ast.AST | None = tree.body[0] if tree is not None and tree.body else None
    if func.__name__ == "<lambda>" and tree is not None:
        # the source of a lambda is its whole line: take the first lambda on it
        node = next((n for n in ast.walk(tree) if isinstance(n, ast.Lambda)), None)
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        return _FunctionScan(open=True)
    params = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
    if params and params[0] in ("self", "cls"):
        params = params[1:]
    visitor = _Visitor(func, params)
    if alias is not None:
        visitor.aliases.add(alias)
    for stmt in node.body if isinstance(node.body, list) else [node.body]:
        visitor.visit(stmt)
    return visitor.out


def _hands_on_config(call: ast.Call) -> bool:
    return any(isinstance(a, ast.Attribute) and a.attr == "config" for a in call.args) or any(
        isinstance(k.value, ast.Attribute) and k.value.attr == "config" for k in call.keywords
    )


def _merge(into: dict[str, dict[str, Any]], key: str, entry: dict[str, Any]) -> None:
    have = into.setdefault(key, {"type": None, "default": None})
    for name in ("type", "default"):
        if have.get(name) is None and entry.get(name) is not None:
            have[name] = entry[name]


def _delegate_class(func: Any, call: ast.Call) -> type | None:
    """The template class this call makes (``_RfliResize()``), if it names one."""
    if not isinstance(call.func, ast.Name):
        return None
    found = getattr(func, "__globals__", {}).get(call.func.id)
    if isinstance(found, type) and hasattr(found, "config_schema") and hasattr(found, "run"):
        return found
    return None


def _config_param(call: ast.Call, target: Any, alias: str | None) -> str | None:
    """The parameter of ``target`` that this call hands the node's config, if any."""
    try:
        names = list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return None
    if names and names[0] in ("self", "cls") and isinstance(call.func, ast.Attribute):
        names = names[1:]
    aliases = {alias} if alias else set()
    for pos, arg in enumerate(call.args):
        if _is_config_expr(arg, aliases) and pos < len(names):
            return names[pos]
    for kw in call.keywords:
        if kw.arg is not None and _is_config_expr(kw.value, aliases):
            return kw.arg
    return None


def _walk(
    func: Any, owner: type | None, out: ConfigScan, seen: set[Any], alias: str | None = None
) -> None:
    if (func, alias) in seen:
        return
    seen.add((func, alias))
    scan = _scan_function(func, alias)
    out.open = out.open or scan.open
    for key, entry in scan.reads.items():
        _merge(out.keys, key, entry)
    for call in scan.calls:
        delegate = _delegate_class(func, call)
        if delegate is not None:  # ``_RfliResize().run(ctx)``: that template's keys too
            inner = scan_class(delegate)
            out.open = out.open or inner.open
            for key, entry in inner.keys.items():
                _merge(out.keys, key, entry)
            continue
        target = _resolve(func, call, owner)
        if target is None:
            if _hands_on_config(call):
                out.open = True
            continue
        handed = _config_param(call, target, alias)
        callee = _scan_function(target, handed)
        reader = callee.reader
        if reader is not None:
            key_node = _arg(call, reader.key_pos, reader.key_name)
            if isinstance(key_node, ast.Constant) and isinstance(key_node.value, str):
                default = reader.default
                if reader.default_pos is not None:
                    default = _literal(_arg(call, reader.default_pos, reader.default_name))
                _merge(out.keys, key_node.value, {"type": reader.type, "default": default})
            elif key_node is not None and not isinstance(key_node, ast.Name):
                out.open = True
        _walk(target, owner, out, seen, handed)


_SCANNED: dict[int, tuple[type, ConfigScan]] = {}


def scan_class(cls: type) -> ConfigScan:
    """Every config key that ``cls`` (a template class) reads, and whether it is open."""
    cached = _SCANNED.get(id(cls))
    if cached is not None and cached[0] is cls:
        return cached[1]
    out = ConfigScan()
    _SCANNED[id(cls)] = (cls, out)  # a delegate naming ``cls`` again finds it here
    seen: set[Any] = set()
    for klass in cls.__mro__:
        if klass.__module__ == f"{_LIBRARY}._base" or not klass.__module__.startswith(_LIBRARY):
            continue  # LibraryActor's own methods check config; they do not read keys
        for value in vars(klass).values():
            if isinstance(value, type) and value is not cls and hasattr(value, "config_schema"):
                inner = scan_class(value)  # a template it delegates to (``rfla``)
                out.open = out.open or inner.open
                for key, entry in inner.keys.items():
                    _merge(out.keys, key, entry)
                continue
            func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            if inspect.isfunction(func) and func.__name__ != "describe":
                _walk(func, cls, out, seen)
    return out
