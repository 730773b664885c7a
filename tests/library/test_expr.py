"""reflow.library._expr: the safe expression language and field paths."""

from __future__ import annotations

from typing import Any

import pytest

from reflow import ReflowError
from reflow.library import Expression, ExpressionError
from reflow.library._expr import get_path, parse_path, set_path

DATA = {
    "user": {"name": "Ada", "tags": ["x", "y"], "age": 36},
    "n": 5,
    "odd key": 1,
    "items": [{"id": 1}, {"id": 2}],
    "flag": False,
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("$.user.name", "Ada"),
        ("$.user.tags[1]", "y"),
        ("$.user.tags[-1]", "y"),
        ('$["odd key"]', 1),
        ("$.items[1].id", 2),
        ("$.missing.deeper", None),
        ("$.n + 2 * 3", 11),
        ("($.n + 2) * 3", 21),
        ("$.n / 2", 2.5),
        ("$.n % 3", 2),
        ("-$.n", -5),
        ("$.user.age >= 18 and $.n < 10", True),
        ("not $.flag", True),
        ("$.flag or $.n", True),
        ('"x" in $.user.tags', True),
        ('"da" in $.user.name', True),
        ('"user" in $', True),
        ("$.n == 5.0", True),
        ("true == 1", False),
        ("$.n != 5", False),
        ('"a" < "b"', True),
        ("null == $.nope", True),
        ('$.user.name + "!"', "Ada!"),
        ("[1, $.n]", [1, 5]),
        ('{"who": lower($.user.name), k: 1}', {"who": "ada", "k": 1}),
        ("len($.user.tags) + len($.user.name)", 5),
        ('upper("ab")', "AB"),
        ('trim("  a ")', "a"),
        ('int("42") + float("0.5")', 42.5),
        ("str($.items[0])", '{"id":1}'),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("abs(-3)", 3),
        ("min(3, 1, 2) + max([4, 9])", 10),
        ("exists($.user.name) and not exists($.user.email)", True),
        ("exists($.flag)", True),
        ("1e3", 1000.0),
        ("'it\\'s'", "it's"),
    ],
)
def test_expressions(source: str, expected: Any) -> None:
    assert Expression(source).evaluate(DATA) == expected


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("", "unexpected end of expression"),
        ("$.", "expected a field name"),
        ("1 +", "unexpected end"),
        ("(1", "expected ')'"),
        ("1 2", "unexpected 2 after a complete expression"),
        ("os.system", "unknown name 'os'"),
        ("__import__('os')", "unknown name '__import__'"),
        ("$.a; 1", "unexpected character ';'"),
        ("len(1, 2)", "len() takes 1..1 arguments"),
        ("{1: 2}", "object keys must be strings"),
        ("(" * 201 + "1" + ")" * 201, "nesting deeper than 200 levels at position 200"),
        ("1" * 3000, "longer than 2000 characters"),
    ],
)
def test_bad_expressions_do_not_parse(source: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match=None) as info:
        Expression(source)
    assert fragment in str(info.value)
    assert isinstance(info.value, ReflowError)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("$.user.name - 1", "'-' needs numbers"),
        ("$.n / 0", "division by zero"),
        ("$.n % 0", "modulo by zero"),
        ("$.n < 'a'", "'<' needs numbers"),
        ("1 in 5", "'in' needs an array, object or string"),
        ("1 in 'abc'", "'in' a string needs a string"),
        ("len($.n)", "len() needs a string"),
        ("lower(1)", "lower() needs a string"),
        ("int('x')", "int() cannot convert"),
        ("max([])", "max() of nothing"),
    ],
)
def test_bad_values_raise_expression_error(source: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        Expression(source).evaluate(DATA)
    assert fragment in str(info.value)


def test_truth_of_test() -> None:
    for value, truth in [
        (0, False),
        ("", False),
        ([], False),
        ({}, False),
        (None, False),
        (1, True),
        ("a", True),
        ([0], True),
    ]:
        assert Expression("$").test(value) is truth


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("", []),
        ("$", []),
        ("a", ["a"]),
        ("$.a.b", ["a", "b"]),
        ("a[0].b", ["a", 0, "b"]),
        ('a["b c"]', ["a", "b c"]),
        ("a['x']", ["a", "x"]),
        ("a[-1]", ["a", -1]),
        ("content-type", ["content-type"]),
    ],
)
def test_parse_path(path: str, parts: list[Any]) -> None:
    assert parse_path(path) == parts


@pytest.mark.parametrize("path", ["a..b", "a[x]", "a b", "[0]]", "a[0]b"])
def test_bad_paths(path: str) -> None:
    with pytest.raises(ExpressionError, match="bad path"):
        parse_path(path)


def test_get_and_set_path() -> None:
    assert get_path(DATA, ["items", 0, "id"]) == 1
    assert get_path(DATA, ["items", 9, "id"], "none") == "none"
    new = set_path(DATA, ["user", "address", "city"], "London")
    assert new["user"]["address"] == {"city": "London"}
    assert "address" not in DATA["user"]  # the input is not modified
    assert set_path([1, 2], [1], 9) == [1, 9]
    with pytest.raises(ExpressionError, match="out of range"):
        set_path([1], [3], 0)
    with pytest.raises(ExpressionError, match="cannot set field 'a' on a int"):
        set_path(5, ["a"], 0)
