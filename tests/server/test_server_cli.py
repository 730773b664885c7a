"""``reflow-server`` as a user starts it: the README's command serves the API and the page;
options it must refuse are refused in one line, exit status 2, before anything binds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reflow.server import ServerConfigError, ServerLimits
from reflow.server._auth import check_bind, is_loopback, resolve_token

TOKEN = "cli-token-0123456789abcdef"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_command_serves(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert 'reflow-server --token "$(openssl rand -hex 16)"' in readme
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "reflow.server._cli", "--token", TOKEN, "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "reflow-server did not start in 20 s"
                time.sleep(0.1)
        assert r.status_code == 200 and "Reflow live view" in r.text
        assert httpx.get(url + "/api/v1/templates").status_code == 401
        ok = httpx.get(url + "/api/v1/templates", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--no-auth", "--host", "0.0.0.0"], "loopback"),
        (["--no-auth", "--host", "192.168.1.5"], "loopback"),
        (["--token", "short"], "at least 16"),
        (["--token-file", "/nonexistent/token"], "cannot read the token file"),
        (["--max-running", "0"], "max_running must be a positive"),
        (["--max-run-seconds", "-1"], "max_run_seconds must be a positive"),
    ],
)
def test_refused_options(args: list[str], fragment: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REFLOW_SERVER_TOKEN"}
    proc = subprocess.run(
        [sys.executable, "-m", "reflow.server._cli", "--port", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and fragment in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    if not loopback:
        with pytest.raises(ServerConfigError, match="loopback"):
            check_bind(host, True)
    check_bind(host, False)


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFLOW_SERVER_TOKEN", raising=False)
    made, was_made = resolve_token(None, None)
    assert was_made and len(made) >= 16
    f = tmp_path / "token"
    f.write_text(TOKEN + "\nignored\n")
    assert resolve_token(None, str(f)) == (TOKEN, False)
    monkeypatch.setenv("REFLOW_SERVER_TOKEN", TOKEN)
    assert resolve_token(None, None) == (TOKEN, False)
    for bad, fragment in [((TOKEN, str(f)), "not both"), (("a b" * 9, None), "without spaces")]:
        with pytest.raises(ServerConfigError, match=fragment):
            resolve_token(*bad)
    f.write_text("")
    with pytest.raises(ServerConfigError, match="empty"):
        resolve_token(None, str(f))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_running", 0),
        ("max_nodes", -3),
        ("client_queue", 1.5),
        ("max_run_seconds", "x"),
        ("history", True),
    ],
)
def test_server_limits_refuse_bad_values(field: str, value: object) -> None:
    with pytest.raises(ServerConfigError, match=field):
        ServerLimits(**{field: value})  # type: ignore[arg-type]
