"""A small, safe expression language for config strings (filter, map, switch, route).

Nothing is ever passed to ``eval``: expressions are tokenised and parsed here into a tree of
tuples and evaluated by a tiny interpreter that knows only these forms:

=====================  ==========================================================
``$``                  the packet's payload (``$.user.name``, ``$.items[0]``, ``$["a b"]``)
``.field`` / ``[i]``   field or index access; a missing field or index gives ``null``
literals               ``42``, ``-1.5``, ``"text"`` / ``'text'``, ``true``, ``false``, ``null``,
                       ``[1, 2]``, ``{"k": $.v}``
arithmetic             ``+ - * / %`` (``+`` also joins strings and arrays), unary ``-``
comparison             ``== != < <= > >=``, ``in`` (member of array / substring / key)
logic                  ``and``, ``or``, ``not`` (short-circuit; ``and``/``or`` give booleans)
functions              ``len lower upper trim str int float round abs min max exists``
=====================  ==========================================================

Limits: an expression is at most 2000 characters and nests at most :data:`MAX_DEPTH` (200)
levels — each operand of an operator, parenthesised group, index, call argument and array or
object item is one level deeper than what holds it, while a chain (``a + b + c``,
``$.a.b[0]``) stays on one level. Past either limit :class:`ExpressionError` says which, and
where; nothing recurses deeper than the limit, so no input reaches Python's recursion limit.

Paths without an expression (``user.name``, ``items[0].id``, ``$.a``) are parsed by
:func:`parse_path`, used by the object/JSON templates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .._errors import ReflowError

__all__ = ["MAX_DEPTH", "Expression", "ExpressionError", "get_path", "parse_path", "set_path"]


class ExpressionError(ReflowError, ValueError):
    """An expression that does not parse or cannot be evaluated. Templates turn it into a
    failed tick naming the config key; :class:`Expression` raises it directly."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|[-+*/%<>()\[\]{}.,:$])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"true": True, "false": False, "null": None}
_MISSING_FIELD = None
_MAX_LEN = 2000
#: How deeply an expression may nest (see :class:`_Parser` for what one level is). The parser
#: refuses one level more before it descends, and everything that walks the tree it makes
#: recurses at most this deep, so no input reaches Python's recursion limit.
MAX_DEPTH = 200


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), body)


def _tokens(source: str) -> tuple[list[tuple[str, Any]], list[int]]:
    """The tokens of ``source`` and where each starts (the end token: at the end)."""
    out: list[tuple[str, Any]] = []
    starts: list[int] = []
    pos = 0
    source = source.rstrip()
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            raise ExpressionError(
                f"unexpected character {source[pos:].lstrip()[:1]!r} at position {pos}"
            )
        starts.append(m.start(m.lastgroup or 0))
        pos = m.end()
        if m["num"] is not None:
            text = m["num"]
            out.append(("lit", float(text) if any(c in text for c in ".eE") else int(text)))
        elif m["str"] is not None:
            out.append(("lit", _unquote(m["str"])))
        elif m["op"] is not None:
            out.append(("op", m["op"]))
        else:
            out.append(("name", m["name"]))
    out.append(("end", None))
    starts.append(len(source))
    return out, starts


def _num(v: Any, op: str) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ExpressionError(f"{op!r} needs numbers, got {_show(v)}")
    return v


def _show(v: Any) -> str:
    return "null" if v is None else f"{type(v).__name__} {v!r}"[:60]


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    return _num(a, "+") + _num(b, "+")


def _div(a: Any, b: Any) -> Any:
    if _num(b, "/") == 0:
        raise ExpressionError("division by zero")
    return _num(a, "/") / b


def _mod(a: Any, b: Any) -> Any:
    if _num(b, "%") == 0:
        raise ExpressionError("modulo by zero")
    return _num(a, "%") % b


def _order(op: str) -> Callable[[Any, Any], bool]:
    import operator

    fn = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[op]

    def compare(a: Any, b: Any) -> bool:
        if isinstance(a, str) and isinstance(b, str):
            return bool(fn(a, b))
        return bool(fn(_num(a, op), _num(b, op)))

    return compare


def _contains(a: Any, b: Any) -> bool:
    if isinstance(b, str):
        if not isinstance(a, str):
            raise ExpressionError(f"'in' a string needs a string, got {_show(a)}")
        return a in b
    if isinstance(b, (list, dict)):
        return a in b
    raise ExpressionError(f"'in' needs an array, object or string on the right, got {_show(b)}")


def _eq(a: Any, b: Any) -> bool:
    # true == 1 is false here: JSON booleans are not numbers.
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add,
    "-": lambda a, b: _num(a, "-") - _num(b, "-"),
    "*": lambda a, b: _num(a, "*") * _num(b, "*"),
    "/": _div,
    "%": _mod,
    "==": _eq,
    "!=": lambda a, b: not _eq(a, b),
    "<": _order("<"),
    "<=": _order("<="),
    ">": _order(">"),
    ">=": _order(">="),
    "in": _contains,
}


def _len(v: Any) -> int:
    if isinstance(v, (str, list, dict)):
        return len(v)
    raise ExpressionError(f"len() needs a string, array or object, got {_show(v)}")


def _text(fn: Callable[[str], str], name: str) -> Callable[[Any], str]:
    def call(v: Any) -> str:
        if not isinstance(v, str):
            raise ExpressionError(f"{name}() needs a string, got {_show(v)}")
        return fn(v)

    return call


def _to_int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError) as exc:
        raise ExpressionError(f"int() cannot convert {_show(v)}") from exc


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError) as exc:
        raise ExpressionError(f"float() cannot convert {_show(v)}") from exc


def _to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    import json

    return json.dumps(v, separators=(",", ":"))


def _minmax(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        values = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
        if not values:
            raise ExpressionError(f"{name}() of nothing")
        return fn(_num(v, name) for v in values)

    return call


_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    # name: (function, min args, max args)
    "len": (_len, 1, 1),
    "lower": (_text(str.lower, "lower"), 1, 1),
    "upper": (_text(str.upper, "upper"), 1, 1),
    "trim": (_text(str.strip, "trim"), 1, 1),
    "str": (_to_str, 1, 1),
    "int": (_to_int, 1, 1),
    "float": (_to_float, 1, 1),
    "round": (
        lambda v, n=0: (
            round(_num(v, "round"), int(_num(n, "round"))) if n else round(_num(v, "round"))
        ),
        1,
        2,
    ),
    "abs": (lambda v: abs(_num(v, "abs")), 1, 1),
    "min": (_minmax(min, "min"), 1, 64),
    "max": (_minmax(max, "max"), 1, 64),
}


_OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT = range(1, 7)
_BINARY_PREC = {
    ("name", "or"): _OR,
    ("name", "and"): _AND,
    **{("op", op): _COMPARE for op in ("==", "!=", "<", "<=", ">", ">=")},
    ("name", "in"): _COMPARE,
    ("op", "+"): _SUM,
    ("op", "-"): _SUM,
    ("op", "*"): _PRODUCT,
    ("op", "/"): _PRODUCT,
    ("op", "%"): _PRODUCT,
}
_NO_LIMIT = _PRODUCT + 1


class _Parser:
    """Precedence climbing over the token list.

    Every parse call carries the nesting depth of what it parses and refuses one deeper than
    :data:`MAX_DEPTH` before it descends, so the parser recurses at most a few frames per
    level. A chain ``a + b + c`` or ``$.a.b[0]`` is one level (it is built in a loop, and
    the evaluator walks it in a loop); what is nested inside another construct — an
    operand of an operator, a parenthesised group, an index, call arguments, the items of
    an array or object — is one level deeper.
    """

    def __init__(self, source: str) -> None:
        if len(source) > _MAX_LEN:
            raise ExpressionError(f"expression is longer than {_MAX_LEN} characters")
        self.toks, self.starts = _tokens(source)
        self.i = 0

    def peek(self) -> tuple[str, Any]:
        return self.toks[self.i]

    def next(self) -> tuple[str, Any]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, kind: str, value: Any) -> bool:
        if self.toks[self.i] == (kind, value):
            self.i += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept("op", value):
            kind, got = self.peek()
            raise ExpressionError(f"expected {value!r}, got {'end' if kind == 'end' else got!r}")

    def check(self, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression nests too deeply: nesting deeper than {MAX_DEPTH} levels at "
                f"position {self.starts[self.i - 1]}"
            )

    def parse(self) -> Any:
        tree = self.binary(_OR, 0)
        kind, got = self.peek()
        if kind != "end":
            raise ExpressionError(f"unexpected {got!r} after a complete expression")
        return tree

    def binary(self, min_prec: int, depth: int) -> Any:
        """An expression of operators binding at least as tightly as ``min_prec``."""
        limit = _NO_LIMIT  # operators at or above this may not follow (``not``, comparisons)
        nots = 0
        if min_prec <= _NOT:
            while self.accept("name", "not"):
                nots += 1
                self.check(depth + nots)
        if nots:
            left = self.binary(_COMPARE, depth + nots)
            for _ in range(nots):
                left = ("not", left)
            limit = _NOT
        else:  # unary minuses, an atom, its fields and indexes: loops, not recursion
            negs = 0
            while self.accept("op", "-"):
                negs += 1
                self.check(depth + negs)
            inner = depth + negs
            left = self.atom(inner)
            while True:
                if self.accept("op", "."):
                    kind, name = self.next()
                    if kind != "name":
                        raise ExpressionError(f"expected a field name after '.', got {name!r}")
                    left = ("get", left, ("lit", name))
                elif self.accept("op", "["):
                    left = ("get", left, self.binary(_OR, self.deeper(inner)))
                    self.expect("]")
                else:
                    break
            for _ in range(negs):
                left = ("neg", left)
        while True:
            prec = _BINARY_PREC.get(self.peek())
            if prec is None or not min_prec <= prec < limit:
                return left
            _, op = self.next()
            right = self.binary(prec + 1, self.deeper(depth))
            if prec == _OR:
                left = ("or", left, right)
            elif prec == _AND:
                left = ("and", left, right)
            else:
                left = ("bin", op, left, right)
            if prec == _COMPARE:  # comparisons do not chain: a < b < c is refused
                limit = _COMPARE

    def deeper(self, depth: int) -> int:
        """``depth + 1``, refused past :data:`MAX_DEPTH` (checked before descending)."""
        self.check(depth + 1)
        return depth + 1

    def atom(self, depth: int) -> Any:
        kind, value = self.next()
        if kind == "lit":
            return ("lit", value)
        if kind == "op" and value == "$":
            return ("input",)
        if kind == "op" and value == "(":
            inner = self.binary(_OR, self.deeper(depth))
            self.expect(")")
            return inner
        if kind == "op" and value == "[":
            return ("list", self.items("]", depth))
        if kind == "op" and value == "{":
            return ("dict", self.pairs(depth))
        if kind == "name":
            if value in _KEYWORDS:
                return ("lit", _KEYWORDS[value])
            if value == "exists":
                self.expect("(")
                arg = self.binary(_OR, self.deeper(depth))
                self.expect(")")
                return ("exists", arg)
            if value in _FUNCTIONS:
                self.expect("(")
                args = self.items(")", depth)
                _, lo, hi = _FUNCTIONS[value]
                if not lo <= len(args) <= hi:
                    raise ExpressionError(f"{value}() takes {lo}..{hi} arguments, got {len(args)}")
                return ("call", value, args)
            raise ExpressionError(
                f"unknown name {value!r}; the payload is '$' (e.g. $.{value}); functions: "
                f"{', '.join(sorted([*_FUNCTIONS, 'exists']))}"
            )
        raise ExpressionError(
            "unexpected end of expression" if kind == "end" else f"unexpected {value!r}"
        )

    def items(self, close: str, depth: int) -> list[Any]:
        items: list[Any] = []
        if self.accept("op", close):
            return items
        while True:
            items.append(self.binary(_OR, self.deeper(depth)))
            if self.accept("op", close):
                return items
            self.expect(",")

    def pairs(self, depth: int) -> list[tuple[str, Any]]:
        pairs: list[tuple[str, Any]] = []
        if self.accept("op", "}"):
            return pairs
        while True:
            k_kind, key = self.next()
            if k_kind == "name":
                key = str(key)
            elif k_kind != "lit" or not isinstance(key, str):
                raise ExpressionError(f"object keys must be strings, got {key!r}")
            self.expect(":")
            pairs.append((key, self.binary(_OR, self.deeper(depth))))
            if self.accept("op", "}"):
                return pairs
            self.expect(",")


_ABSENT = object()


def _get(container: Any, key: Any) -> Any:
    if isinstance(container, dict) and isinstance(key, str):
        return container.get(key, _ABSENT)
    if (
        isinstance(container, (list, str))
        and isinstance(key, int)
        and not isinstance(key, bool)
        and -len(container) <= key < len(container)
    ):
        return container[key]
    return _ABSENT


_CHAINS = ("bin", "and", "or", "get")


def _eval(node: Any, data: Any) -> Any:
    tag = node[0]
    if tag in _CHAINS:
        # A chain (a + b - c, $.a.b[0], x and y and z) nests to the left: walk down its left
        # spine in a loop and fold back up, so only right operands recurse (the parser
        # counts those as nesting).
        spine = []
        while node[0] in _CHAINS:
            spine.append(node)
            node = node[2] if node[0] == "bin" else node[1]
        acc = _eval(node, data)
        for link in reversed(spine):
            acc = _link(link, acc, data)
        return acc
    if tag == "lit":
        return node[1]
    if tag == "input":
        return data
    if tag == "not":
        return not _truthy(_eval(node[1], data))
    if tag == "neg":
        return -_num(_eval(node[1], data), "-")
    if tag == "list":
        return [_eval(item, data) for item in node[1]]
    if tag == "dict":
        return {key: _eval(value, data) for key, value in node[1]}
    if tag == "exists":
        return _exists(node[1], data)
    if tag == "call":
        fn = _FUNCTIONS[node[1]][0]
        return fn(*[_eval(arg, data) for arg in node[2]])
    raise AssertionError(tag)


def _link(node: Any, left: Any, data: Any) -> Any:
    """One step of a chain, given the value of its left side."""
    tag = node[0]
    if tag == "get":
        value = _get(left, _eval(node[2], data))
        return None if value is _ABSENT else value
    if tag == "bin":
        return _BINARY[node[1]](left, _eval(node[3], data))
    if tag == "and":
        return _truthy(left) and _truthy(_eval(node[2], data))
    return _truthy(left) or _truthy(_eval(node[2], data))


def _exists(node: Any, data: Any) -> bool:
    if node[0] != "get":
        return _eval(node, data) is not None
    container = _eval(node[1], data)
    return _get(container, _eval(node[2], data)) is not _ABSENT


def _truthy(value: Any) -> bool:
    return (
        value is not None
        and value is not False
        and value != 0
        and value != ""
        and value != []
        and value != {}
    )


class Expression:
    """A parsed expression. ``Expression("$.age >= 18").evaluate({"age": 20})`` → ``True``.

    Raises :class:`ExpressionError` when the text does not parse or a value does not fit
    (``"a" - 1``, division by zero); missing fields evaluate to ``null``.
    """

    __slots__ = ("_tree", "source")

    def __init__(self, source: str) -> None:
        if not isinstance(source, str):
            raise ExpressionError(f"an expression must be a string, got {source!r}")
        self.source = source
        self._tree = _Parser(source).parse()

    def evaluate(self, data: Any) -> Any:
        try:
            return _eval(self._tree, data)
        except RecursionError as exc:  # a payload nested past Python's limit (== on it)
            raise ExpressionError("the value is nested too deeply to compare") from exc

    def test(self, data: Any) -> bool:
        """The expression's truth: false, null, 0, "", [] and {} are false."""
        return _truthy(self.evaluate(data))


_PATH_PART = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_\-]*)|\[(-?\d+)\]|\[\"([^\"]*)\"\]|\['([^']*)'\]")


def parse_path(path: str) -> list[str | int]:
    """``"user.tags[0]"``, ``"$.user.tags[0]"`` or ``'a["b c"]'`` → ``["user", "tags", 0]``.
    ``""`` and ``"$"`` name the whole value."""
    if not isinstance(path, str):
        raise ExpressionError(f"a path must be a string, got {path!r}")
    if len(path) > _MAX_LEN:
        raise ExpressionError(f"path is longer than {_MAX_LEN} characters")
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _PATH_PART.match(text, pos)
        if m is None or (m[1] is not None and pos > 0 and text[pos] != "."):
            raise ExpressionError(
                f"bad path {path!r} at {text[pos:]!r}; "
                'write fields as a.b, indexes as [0], odd keys as ["k"]'
            )
        if m[1] is not None:
            parts.append(m[1])
        elif m[2] is not None:
            parts.append(int(m[2]))
        else:
            parts.append(m[3] if m[3] is not None else m[4])
        pos = m.end()
    return parts


def get_path(value: Any, parts: list[str | int], default: Any = None) -> Any:
    """The value at ``parts`` in ``value``, or ``default`` when any step is missing."""
    for part in parts:
        value = _get(value, part)
        if value is _ABSENT:
            return default
    return value


def set_path(value: Any, parts: list[str | int], new: Any) -> Any:
    """A copy of ``value`` with ``new`` at ``parts`` (objects created on the way as needed);
    the input is not modified."""
    # Copy each container on the way down, then put them back together from the bottom up
    # (a loop: a path may have any number of parts).
    copies: list[Any] = []
    for head in parts:
        if isinstance(head, int):
            if not isinstance(value, list) or not -len(value) <= head < len(value):
                raise ExpressionError(f"index [{head}] is out of range")
            copies.append(list(value))
            value = value[head]
        else:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ExpressionError(f"cannot set field {head!r} on a {type(value).__name__}")
            copies.append(dict(value))
            value = value.get(head)
    for container, head in zip(reversed(copies), reversed(parts), strict=True):
        container[head] = new
        new = container
    return new
