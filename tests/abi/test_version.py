"""reflow.abi version and compatibility rule."""

from __future__ import annotations

import pytest

from reflow._errors import ABIVersionError, GuestABIError, ReflowError
from reflow.abi import (
    ABI_VERSION,
    check_abi_compatible,
    pack_abi_version,
    pack_abi_word,
    parse_abi_version,
    unpack_abi_word,
)


def test_version_is_1_1() -> None:
    assert ABI_VERSION == (1, 1)
    assert pack_abi_version() == "1.1"


@pytest.mark.parametrize(
    ("guest", "expected"), [("1.0", (1, 0)), ("1.1", (1, 1)), ((1, 0), (1, 0)), ((1, 1), (1, 1))]
)
def test_host_loads_1_0_and_1_1_guests(
    guest: str | tuple[int, int], expected: tuple[int, int]
) -> None:
    """1.1 only added an optional export: guests built for 1.0 still load."""
    assert check_abi_compatible(guest) == expected


def test_host_refuses_1_2_guest() -> None:
    with pytest.raises(ABIVersionError, match=r"newer than this host's ABI 1\.1"):
        check_abi_compatible("1.2")


@pytest.mark.parametrize(
    ("guest", "host"),
    [("1.0", (1, 0)), ("1.0", (1, 3)), ("1.3", (1, 3)), ((1, 2), (1, 5)), ("2.1", (2, 1))],
)
def test_compatible(guest: str | tuple[int, int], host: tuple[int, int]) -> None:
    got = check_abi_compatible(guest, host)
    assert got == (parse_abi_version(guest) if isinstance(guest, str) else guest)


@pytest.mark.parametrize(
    ("guest", "host", "fragments"),
    [
        ("2.0", (1, 0), ["2.0", "1.0", "major versions differ", "upgrade reflow"]),
        ("0.9", (1, 0), ["0.9", "1.0", "major versions differ", "rebuild it"]),
        ("1.1", (1, 0), ["1.1", "1.0", "newer than this host", "upgrade reflow"]),
        ("1.7", (1, 3), ["1.7", "1.3", "rebuild the guest"]),
    ],
)
def test_incompatible(guest: str, host: tuple[int, int], fragments: list[str]) -> None:
    with pytest.raises(ABIVersionError) as info:
        check_abi_compatible(guest, host, what="pack 'acme/x'")
    msg = str(info.value)
    assert "pack 'acme/x'" in msg
    for fragment in fragments:
        assert fragment in msg
    assert info.value.guest == parse_abi_version(guest)
    assert info.value.host == host
    assert isinstance(info.value, GuestABIError)
    assert isinstance(info.value, ReflowError)


@pytest.mark.parametrize("text", ["1", "1.0.0", "a.b", "", "1.-1", " 1.0", "123456.0"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ABIVersionError, match=r"major\.minor"):
        parse_abi_version(text)


@pytest.mark.parametrize("version", [(1, 0), (1, 65535), (0, 0), (65535, 1)])
def test_abi_word_round_trip(version: tuple[int, int]) -> None:
    word = pack_abi_word(version)
    assert unpack_abi_word(word) == version
    signed = word - (1 << 32) if word >= 1 << 31 else word  # as wasm returns an i32
    assert unpack_abi_word(signed) == version


def test_word_of_1_0() -> None:
    assert pack_abi_word((1, 0)) == 0x00010000


def test_reflow_abi_imports_without_wasmtime() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['wasmtime'] = None\n"
        "import reflow.abi\n"
        "assert reflow.abi.pack_abi_version() == '1.1'\n"
        "assert 'wasmtime' not in {m for m in sys.modules if sys.modules[m] is not None}\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
