"""Parameter serialization: style x explode x type -> the exact wire form (OpenAPI 3)."""

from __future__ import annotations

from typing import Any

import pytest

from reflow._services._request import encode_form, serialize_path, serialize_query
from reflow._services._table import Parameter

ARR = [3, 4]
OBJ = {"R": 1, "G": 2}


def p(style: str, explode: bool, where: str = "path") -> Parameter:
    return Parameter("c", where, "c", True, {}, style, explode)


@pytest.mark.parametrize(
    ("style", "explode", "value", "wire"),
    [
        ("simple", False, 5, "5"),
        ("simple", False, ARR, "3,4"),
        ("simple", True, ARR, "3,4"),
        ("simple", False, OBJ, "R,1,G,2"),
        ("simple", True, OBJ, "R=1,G=2"),
        ("label", False, 5, ".5"),
        ("label", False, ARR, ".3,4"),
        ("label", True, ARR, ".3.4"),
        ("label", False, OBJ, ".R,1,G,2"),
        ("label", True, OBJ, ".R=1.G=2"),
        ("matrix", False, 5, ";c=5"),
        ("matrix", False, ARR, ";c=3,4"),
        ("matrix", True, ARR, ";c=3;c=4"),
        ("matrix", False, OBJ, ";c=R,1,G,2"),
        ("matrix", True, OBJ, ";R=1;G=2"),
        ("simple", False, "a/b c", "a%2Fb%20c"),
        ("simple", False, True, "true"),
    ],
)
def test_path_styles(style: str, explode: bool, value: Any, wire: str) -> None:
    assert serialize_path(p(style, explode), value) == wire


@pytest.mark.parametrize(
    ("style", "explode", "value", "wire"),
    [
        ("form", True, 5, "c=5"),
        ("form", True, ARR, "c=3&c=4"),
        ("form", False, ARR, "c=3,4"),
        ("form", True, OBJ, "R=1&G=2"),
        ("form", False, OBJ, "c=R,1,G,2"),
        ("spaceDelimited", False, ARR, "c=3%204"),
        ("pipeDelimited", False, ARR, "c=3|4"),
        ("deepObject", True, OBJ, "c[R]=1&c[G]=2"),
        ("deepObject", True, {"a": {"b": "x y"}}, "c[a][b]=x%20y"),
        ("form", True, "a&b=c", "c=a%26b%3Dc"),
        ("form", True, None, "c="),
    ],
)
def test_query_styles(style: str, explode: bool, value: Any, wire: str) -> None:
    pairs = serialize_query(p(style, explode, "query"), value)
    assert "&".join(f"{k}={v}" for k, v in pairs) == wire


@pytest.mark.parametrize(
    ("body", "wire"),
    [
        ({"email": "a@b.c"}, "email=a%40b.c"),
        ({"metadata": {"plan": "pro"}}, "metadata[plan]=pro"),
        ({"items": [{"price": "p1", "quantity": 2}]}, "items[0][price]=p1&items[0][quantity]=2"),
        ({"expand": ["a", "b"]}, "expand=a&expand=b"),
        ({"flag": True, "n": 1.5}, "flag=true&n=1.5"),
    ],
)
def test_form_bodies_stripe_style(body: dict[str, Any], wire: str) -> None:
    assert encode_form(body).decode() == wire
