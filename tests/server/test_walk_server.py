"""``reflow-server`` on an address it cannot bind: one ``error:`` line naming it, exit 2,
and no banner claiming it serves there."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

TOKEN = "walk-token-0123456789abcdef"


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reflow.server._cli", "--token", TOKEN, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("127.0.0.1", "is already in use; pick another --port"),
        ("nosuch.invalid", "unknown address"),
        ("192.0.2.1", "cannot be bound"),  # TEST-NET-1: not an address of this machine
    ],
)
def test_unbindable_address_is_one_error_line(busy_port: int, host: str, fragment: str) -> None:
    done = _serve("--host", host, "--port", str(busy_port))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert f"{host}:{busy_port}" in lines[0]
    assert "live view" not in done.stderr
