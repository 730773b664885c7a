"""Conventions every reflow command line keeps (tools/_term.py): one ``error:`` line,
``--debug`` and ``--json`` anywhere, a quiet exit on a closed pipe, and nothing from a pack
reaching the terminal as escape sequences. Real subprocesses where the behaviour is about
the process (pipes, exit status); click's runner elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reflow._loader._trust import TrustStore
from reflow.abi._bundle import artifact_entry, build_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
from reflow.abi._signing import generate_key
from reflow.registry._cli import main as registry_main
from reflow.tools._cli import main as pack_main
from reflow.tools._term import sanitize

HOSTILE = "fine\x1b]0;owned\x07 \x1b[2J\x1b[31mred\u202etxt.exe\u2066x\u200b\x9b1m\x00end"


def hostile_pack(tmp: Path) -> Path:
    wasm = b"\0asm\x01\0\0\0"
    path = f"artifacts/{PORTABLE_TRIPLE}/m.wasm"
    manifest = PackManifest(
        name="acme/m", version="0.1.0", abi="1.0", description=HOSTILE,
        templates=(TemplateSpec("acme/m/t", "m", ("in",), ("out",), description=HOSTILE),),
        artifacts=(artifact_entry("m", PORTABLE_TRIPLE, "wasm", path, wasm),),
    )
    out = tmp / "hostile.rflpack"
    out.write_bytes(build_bundle(manifest, {path: wasm}, []))
    return out


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reflow.tools._cli", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("text, shown", [
    ("plain text", "plain text"),
    ("\x1b]0;title\x07after", "after"),
    ("\x1b[2J\x1b[1;31mred\x1b[0m", "red"),
    ("a\u202eb", "a\\u202eb"),
    ("a\u2066b\u2069", "a\\u2066b\\u2069"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("nul\x00bell\x07", "nul\\u0000bell\\u0007"),
    ("c1\x9b31mx", "c1x"),
    ("tab\tkept", "tab\tkept"),
    ("line\nbreak", "line\\u000abreak"),
    ("dangling \x1b", "dangling "),
    ("ünïcödé ok", "ünïcödé ok"),
])
def test_sanitize(text: str, shown: str) -> None:
    assert sanitize(text) == shown


def test_sanitize_keeps_newlines_when_asked() -> None:
    assert sanitize("a\nb\x1b[0m", keep_newlines=True) == "a\nb"


def test_inspect_never_prints_a_packs_escapes(tmp_path: Path) -> None:
    pack = hostile_pack(tmp_path)
    proc = _run("inspect", str(pack))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b" not in out and "\u202e" not in out and "\x9b" not in out
    assert "\x00" not in out and "\u200b" not in out
    assert "fine" in out and "\\u202e" in out
    # --json stays exact: the description survives a round trip
    doc = json.loads(_run("inspect", "--json", str(pack)).stdout)
    assert doc["description"] == HOSTILE


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trust")
    for _ in range(1500):  # > 64 KiB of listing: the writer meets a closed pipe
        store.add(generate_key().public_key(), names=["acme/*"])
    cmd = (f"{sys.executable} -m reflow.tools._cli trust list --trust-dir {tmp_path / 'trust'}"
           " | head -1; echo status=${PIPESTATUS[0]}")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[1] == "status=141", proc.stdout
    assert proc.stderr == "", proc.stderr  # no "error: [Errno 32] Broken pipe", no traceback


@pytest.mark.parametrize("args", [
    ["--debug", "inspect", "junk.rflpack"],
    ["inspect", "junk.rflpack", "--debug"],
    ["inspect", "--debug", "junk.rflpack"],
])
def test_debug_anywhere_shows_the_traceback(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "junk.rflpack").write_bytes(b"junk")
    proc = subprocess.run([sys.executable, "-m", "reflow.tools._cli", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "PackFormatError" in proc.stderr


ERRORS = [
    # command line, exit status, fragment of the one error line
    (pack_main, ["inspect", "junk.rflpack"], 1, "not a .rflpack"),
    (pack_main, ["verify", "junk.rflpack"], 1, "not a .rflpack"),
    (pack_main, ["verify", "missing.rflpack"], 2, "does not exist"),
    (pack_main, ["trust", "remove", "abcdef"], 1, "not in the trust store"),
    (pack_main, ["trust", "add", "junk.rflpack"], 2, "--for PATTERN"),
    (registry_main, ["token", "list", "--data", "typo-dir"], 2, "does not exist"),
    (registry_main, ["key", "list", "--namespace", "x", "--data", "typo-dir"], 2,
     "does not exist"),
    (registry_main, ["namespace", "list", "--data", "typo-dir"], 2, "does not exist"),
]


@pytest.mark.parametrize("main, args, status, fragment", ERRORS)
def test_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, main: object,
                             args: list[str], status: int, fragment: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    (tmp_path / "junk.rflpack").write_bytes(b"junk")
    result = CliRunner().invoke(main, args)  # type: ignore[arg-type]
    assert result.exit_code == status, result.output
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    if status == 1:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert not (tmp_path / "typo-dir").exists()  # a mistyped --data creates nothing


@pytest.mark.parametrize("args", [
    ["verify", "junk.rflpack", "--json"],
    ["inspect", "--json", "junk.rflpack"],
])
def test_json_errors_are_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.rflpack").write_bytes(b"junk")
    result = CliRunner().invoke(pack_main, args)
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert set(doc["error"]) == {"type", "message"} and doc["error"]["message"]


def test_json_output_of_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = TrustStore(tmp_path / "trust")
    kid = store.add(generate_key().public_key(), names=["acme/*"])
    result = CliRunner().invoke(pack_main, ["trust", "list", "--json", "--trust-dir", "trust"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {"key_id": kid, "path": str(Path("trust") / f"{kid}.pub"), "names": ["acme/*"]}]
    (tmp_path / "reg").mkdir()
    for args in (["token", "list"], ["namespace", "list"], ["key", "list", "--namespace", "a"]):
        result = CliRunner().invoke(registry_main, [*args, "--json", "--data", "reg"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == []
