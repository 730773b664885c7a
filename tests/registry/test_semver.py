"""reflow.registry._semver: version precedence and the ranges install accepts."""

from __future__ import annotations

import pytest

from reflow.registry._semver import Version, VersionRange, parse_spec, pick_version

AVAILABLE = [
    "0.1.0",
    "0.1.5",
    "0.2.0",
    "0.2.3",
    "1.0.0-rc.1",
    "1.0.0",
    "1.4.2",
    "2.0.0-beta",
    "2.0.0",
    "2.1.0",
]


@pytest.mark.parametrize(
    ("rng", "picked"),
    [
        ("", "2.1.0"),
        ("*", "2.1.0"),
        ("^0.1", "0.1.5"),
        ("^0.2.1", "0.2.3"),
        ("^1", "1.4.2"),
        ("^1.0.0", "1.4.2"),
        ("~1.4", "1.4.2"),
        ("~0.2.0", "0.2.3"),
        (">=1.0,<2.0", "1.4.2"),
        (">=1.0 <2.0.0", "1.4.2"),
        ("<2", "1.4.2"),  # 2.0.0-beta is not below 2 for a range
        ("1.0.0", "1.0.0"),
        ("=0.1.0", "0.1.0"),
        ("1.0.0-rc.1", "1.0.0-rc.1"),  # pre-releases only when pinned
        ("2.0", "2.0.0"),
        ("^3", None),
        (">2.1.0", None),
    ],
)
def test_pick(rng: str, picked: str | None) -> None:
    assert pick_version(VersionRange.parse(rng), AVAILABLE) == picked


def test_yanked_only_when_pinned() -> None:
    assert pick_version(VersionRange.parse("^1"), AVAILABLE, ["1.4.2"]) == "1.0.0"
    assert pick_version(VersionRange.parse("1.4.2"), AVAILABLE, ["1.4.2"]) == "1.4.2"


def test_precedence() -> None:
    order = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.10.0",
    ]
    parsed = [Version.parse(v) for v in order]
    assert sorted(reversed(parsed)) == parsed


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("^x", "not a version range"),
        (">=1.0,<banana", "not a version range"),
    ],
)
def test_bad_ranges(bad: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        VersionRange.parse(bad)


@pytest.mark.parametrize("bad", ["tools", "acme/", "/tools", "a/b/c@1"])
def test_bad_specs(bad: str) -> None:
    with pytest.raises(ValueError, match="namespace/name"):
        parse_spec(bad)


def test_spec() -> None:
    ns, name, rng = parse_spec("acme/tools@^1.2")
    assert (ns, name, str(rng)) == ("acme", "tools", "^1.2")


def test_public_names_and_light_client_import() -> None:
    """reflow.registry's names all resolve; importing the client loads no server code."""
    import subprocess
    import sys

    import reflow.registry as r

    for name in r.__all__:
        assert getattr(r, name) is not None
    code = (
        "import sys; from reflow.registry import RegistryClient; print('starlette' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
