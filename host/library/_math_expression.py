"""``tpl_math_expression``: arithmetic over named inputs, parsed by a small recursive-descent
parser (numbers, + - * / % **, parentheses, unary minus) — no eval."""

from __future__ import annotations

import math

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import (
    LibraryActor,
    config_value,
)
from ._math_numbers import _number_message, _operand, round_to
from ._sdk_support import precision


class MathExpression(LibraryActor):
    """Evaluates an arithmetic expression of the input.

    Ports: in ``input`` (Integer, Float or numeric String; read when the expression uses it)
    → out ``result`` (Float rounded to ``precision``), ``error`` (Error, when the expression
    cannot be evaluated; the tick fails too). Config: ``expression`` (string, default
    ``"0"``: numbers, ``+ - * / %``, ``^`` (power, right-associative), parentheses, unary
    minus, ``$input`` or ``$x`` for the input; at most 10 000 characters and 100 levels of
    nesting), ``precision`` (int 0-15, default 10).
    """

    component = "tpl_math_expression"
    inports = ["input"]
    outports = ["result", "error"]
    outport_types = {"result": "Float", "error": "Error"}

    def run(self, ctx: ActorContext) -> None:
        prec = precision(ctx)
        source = config_value(ctx, "expression", "0")
        if not isinstance(source, str):
            raise ActorError(f"config 'expression' must be a string, got {source!r}")
        if len(source) > 10_000:
            raise ActorError(f"config 'expression' is {len(source)} characters long (limit 10000)")
        x = 0.0
        if "$input" in source or "$x" in source:
            x = float(_operand(ctx, "input")) if "input" in ctx.inputs else 0.0
        try:
            value = _ArithmeticParser(source, x).parse()
            if not math.isfinite(value):
                raise _ArithmeticError(f"the result is not a finite number ({value})")
        except _ArithmeticError as exc:
            ctx.send({"error": Message.error(str(exc))})
            raise ActorError(f"config 'expression': {exc} (in {source[:80]!r})") from None
        ctx.done({"result": _number_message(round_to(value, prec), False)})


class _ArithmeticError(Exception):
    pass


class _ArithmeticParser:
    """Recursive descent over ``+ - * / % ^ ( )`` with a depth limit."""

    def __init__(self, source: str, x: float) -> None:
        self.text = "".join(source.replace("$input", "\0").replace("$x", "\0").split())
        self.x = x
        self.pos = 0
        self.depth = 0

    def parse(self) -> float:
        value = self.additive()
        if self.pos < len(self.text):
            raise _ArithmeticError(f"unexpected {self.text[self.pos]!r} at position {self.pos}")
        return value

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def additive(self) -> float:
        left = self.multiplicative()
        while self.peek() in ("+", "-") and self.peek():
            op = self.text[self.pos]
            self.pos += 1
            right = self.multiplicative()
            left = left + right if op == "+" else left - right
        return left

    def multiplicative(self) -> float:
        left = self.power()
        while self.peek() and self.peek() in "*/%":
            op = self.text[self.pos]
            self.pos += 1
            right = self.power()
            if op != "*" and right == 0:
                raise _ArithmeticError("Division by zero" if op == "/" else "Modulo by zero")
            left = (
                left * right if op == "*" else left / right if op == "/" else math.fmod(left, right)
            )
        return left

    def power(self) -> float:
        self.depth += 1
        if self.depth > 100:
            raise _ArithmeticError("nested more than 100 levels deep")
        base = self.unary()
        if self.peek() == "^":
            self.pos += 1
            exponent = self.power()
            try:
                base = math.pow(base, exponent)
            except (OverflowError, ValueError) as exc:
                raise _ArithmeticError(f"{base} ^ {exponent}: {exc}") from None
        self.depth -= 1
        return base

    def unary(self) -> float:
        if self.peek() == "-":
            self.pos += 1
            return -self.atom()
        return self.atom()

    def atom(self) -> float:
        c = self.peek()
        if not c:
            raise _ArithmeticError("unexpected end of expression")
        if c == "(":
            self.pos += 1
            value = self.additive()
            if self.peek() != ")":
                raise _ArithmeticError(f"missing ')' at position {self.pos}")
            self.pos += 1
            return value
        if c == "\0":
            self.pos += 1
            return self.x
        start = self.pos
        while self.peek() and (self.peek().isdigit() or self.peek() == "."):
            self.pos += 1
        try:
            return float(self.text[start : self.pos])
        except ValueError:
            raise _ArithmeticError(f"expected a number at position {start}") from None
