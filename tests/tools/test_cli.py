"""reflow.tools._cli: the reflow-pack command line, through click's CliRunner and once as a
real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reflow.tools._cli import main

VERBS = [
    "new",
    "build",
    "strip",
    "inspect",
    "keygen",
    "sign",
    "verify",
    "trust",
    "trust add",
    "trust list",
    "trust remove",
]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(main, list(args))
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr
    return lines[-1]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(runner: CliRunner, verb: str) -> None:
    out = ok(runner, *verb.split(), "--help")
    assert "Usage:" in out


def test_issue_command_sequence(runner: CliRunner, tmp_path: Path) -> None:
    host = "x86_64-unknown-linux-gnu"
    ok(runner, "new", "my-pack", "--lang", "c")
    assert (tmp_path / "my-pack" / "pack.toml").is_file()
    assert "key id" in ok(runner, "keygen", "--out", "keys/me")
    result = runner.invoke(
        main,
        [
            "build",
            "my-pack",
            "--sign",
            "keys/me",
            "--triple",
            "wasm32-unknown-unknown",
            "--triple",
            host,
            "--triple",
            "aarch64-apple-darwin",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "compiling my_pack" in result.stderr  # progress on stderr
    full = Path(result.stdout.strip())
    assert full == Path("dist/my-pack-0.1.0.rflpack")  # as the issue's command sequence
    out = ok(runner, "strip", str(full), "--triple", host)
    slim = Path(f"dist/my-pack-0.1.0-{host}.rflpack")
    assert str(slim) in out and slim.is_file()

    line = fails(runner, "verify", str(slim))
    assert "not in the trust store" in line
    assert "trusted key" in ok(runner, "trust", "add", "keys/me.pub", "--any-name")
    assert ok(runner, "verify", str(slim)).startswith("OK my-pack 0.1.0: signed by")
    kid = ok(runner, "trust", "list").split()[0]
    table = ok(runner, "inspect", str(full))
    assert "my-pack/add" in table and f"valid, trusted key {kid}" in table
    doc = json.loads(ok(runner, "inspect", "--json", str(slim)))
    assert doc["name"] == "my-pack" and doc["stripped"] and doc["signer"] == kid
    assert doc["present_triples"] == ["wasm32-unknown-unknown", host]
    assert "removed key" in ok(runner, "trust", "remove", kid[:8])
    assert "not in the trust store" in fails(runner, "verify", str(slim))
    assert kid in ok(runner, "verify", "--key", "keys/me.pub", str(slim))
    # a key trusted only for some pack names (trust add --for)
    assert "for other/*" in ok(runner, "trust", "add", "keys/me.pub", "--for", "other/*")
    line = fails(runner, "verify", str(slim))
    assert kid in line and "'my-pack'" in line and "trusted only for 'other/*'" in line
    ok(runner, "trust", "add", "keys/me.pub", "--for", "my-*")
    assert ok(runner, "verify", str(slim)).startswith("OK my-pack 0.1.0: signed by")


def test_sign_unsigned_pack(runner: CliRunner) -> None:
    ok(runner, "new", "p")
    result = runner.invoke(main, ["build", "p", "--triple", "wasm32-unknown-unknown"])
    assert result.exit_code == 0 and "unsigned" in result.stderr
    pack = result.stdout.strip()
    ok(runner, "keygen", "--out", "k")
    ok(runner, "trust", "add", "k.pub", "--for", "p")
    assert "is not signed" in fails(runner, "verify", pack)
    assert "signed" in ok(runner, "sign", pack, "--key", "k")
    assert ok(runner, "verify", pack).startswith("OK p 0.1.0")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["inspect", "pack.toml"], "not a .rflpack"),
        (["build", "."], "pack.toml: not valid TOML"),
        (["build", "k.pub"], "is a file"),
        (["keygen", "--out", "k"], "already exists"),
        (["trust", "remove", "abcdef"], "not in the trust store"),
        (["trust", "add", "k", "--any-name"], None),
        (["new", "Bad Name"], "not a pack name"),
    ],
)
def test_errors_are_one_line(
    runner: CliRunner, tmp_path: Path, args: list[str], fragment: str | None
) -> None:
    (tmp_path / "pack.toml").write_bytes(b"not zstd")
    ok(runner, "keygen", "--out", "k")
    if fragment is None:  # a private key file is accepted: its public half is trusted
        ok(runner, *args)
    elif args[0] == "build" and args[1] != ".":
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and fragment in result.stderr  # click usage error
    else:
        assert fragment in fails(runner, *args)


def test_debug_shows_the_traceback(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "x.rflpack").write_bytes(b"junk")
    result = runner.invoke(main, ["--debug", "inspect", "x.rflpack"])
    assert result.exit_code == 1 and result.exception is not None
    assert type(result.exception).__name__ == "PackFormatError"


def test_strip_unknown_triple_and_usage_errors(runner: CliRunner) -> None:
    ok(runner, "new", "p")
    pack = runner.invoke(main, ["build", "p", "--triple", "wasm32-unknown-unknown"]).stdout.strip()
    assert "lists: wasm32-unknown-unknown" in fails(
        runner, "strip", pack, "--triple", "x86_64-apple-darwin"
    )
    assert runner.invoke(main, ["strip", pack]).exit_code == 2  # missing --triple


def test_real_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "REFLOW_TRUST_DIR": str(tmp_path / "trust")}
    cli = [sys.executable, "-m", "reflow.tools._cli"]
    subprocess.run([*cli, "new", str(tmp_path / "p")], check=True, env=env, capture_output=True)
    built = subprocess.run(
        [*cli, "build", str(tmp_path / "p"), "--triple", "wasm32-unknown-unknown"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    pack = str(tmp_path / built.stdout.strip())
    shown = subprocess.run(
        [*cli, "inspect", "--json", pack], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(shown.stdout)["templates"][0]["id"] == "p/add"
    bad = subprocess.run([*cli, "verify", pack], env=env, capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"error: pack 'p' ({Path(pack).name}) is not signed" or (
        bad.stderr.startswith("error: ")
        and "not signed" in bad.stderr
        and bad.stderr.count("\n") == 1
    )


def test_trust_add_for_and_list(runner: CliRunner, tmp_path: Path) -> None:
    ok(runner, "keygen", "--out", "keys/a")
    ok(runner, "keygen", "--out", "keys/b")
    out = ok(runner, "trust", "add", "keys/a.pub", "--for", "acme/*", "--for", "acme-labs/x")
    assert "for acme/*, acme-labs/x" in out
    assert "ANY pack name" in ok(runner, "trust", "add", "keys/b.pub", "--any-name")
    rows = {line.split()[0]: line for line in ok(runner, "trust", "list").splitlines()}
    assert len(rows) == 2
    a = next(r for r in rows.values() if "acme" in r)
    assert a.endswith("acme/* acme-labs/x")
    assert any("any pack name" in r for r in rows.values())
    result = runner.invoke(main, ["trust", "add", "keys/a.pub", "--for", "Acme/[x]"])
    assert result.exit_code == 2 and "invalid pack-name pattern" in result.output
    assert ok(runner, "trust", "list").count("acme-labs/x") == 1


def test_trust_add_needs_a_scope_or_an_explicit_any_name(runner: CliRunner) -> None:
    ok(runner, "keygen", "--out", "keys/a")
    result = runner.invoke(main, ["trust", "add", "keys/a.pub"])
    assert result.exit_code == 2
    assert "--for PATTERN" in result.output and "--any-name" in result.output
    result = runner.invoke(main, ["trust", "add", "keys/a.pub", "--any-name", "--for", "x/*"])
    assert result.exit_code == 2 and "exclude each other" in result.output
    assert "no trusted keys" in runner.invoke(main, ["trust", "list"]).stderr
    # --any-name on a scoped key drops its patterns, explicitly
    ok(runner, "trust", "add", "keys/a.pub", "--for", "acme/*")
    assert ok(runner, "trust", "list").rstrip().endswith("acme/*")
    ok(runner, "trust", "add", "keys/a.pub", "--any-name")
    assert "any pack name" in ok(runner, "trust", "list")
