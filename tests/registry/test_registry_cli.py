"""The command lines: ``reflow-registry`` (registry/_cli.py) administering a data dir, and
the ``reflow-pack`` registry verbs (tools/_registry_cli.py) against a real server — the
command sequence of the README."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from regtest import Server, free_port, make_pack

from reflow.abi._signing import generate_key, key_id, write_keypair
from reflow.registry._cli import main as registry_cli
from reflow.tools._registry_cli import main as pack_cli


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("REFLOW_REGISTRY_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.delenv("REFLOW_REGISTRY_TOKEN", raising=False)
    assert CliRunner().invoke(registry_cli, ["init"]).exit_code == 0  # admin needs a registry
    return CliRunner()


def ok(result: object) -> str:
    r = result
    assert r.exit_code == 0, (r.output, r.stderr, r.exception)  # type: ignore[attr-defined]
    return r.stdout  # type: ignore[attr-defined,no-any-return]


def test_admin_commands(runner: CliRunner, tmp_path: Path) -> None:
    out = ok(
        runner.invoke(
            registry_cli,
            ["token", "create", "--namespace", "acme", "--scope", "publish", "--ttl-days", "30"],
        )
    )
    token = out.strip()
    assert token.startswith("rfl_") and "\n" not in token
    listed = ok(runner.invoke(registry_cli, ["token", "list"]))
    assert token.split("_")[1] in listed and "active" in listed and token not in listed
    ok(runner.invoke(registry_cli, ["token", "revoke", token.split("_")[1]]))
    assert "revoked" in ok(runner.invoke(registry_cli, ["token", "list"]))
    ok(runner.invoke(registry_cli, ["namespace", "create", "beta", "--owner", "b team"]))
    assert "b team" in ok(runner.invoke(registry_cli, ["namespace", "list"]))
    _, pub, kid = write_keypair(tmp_path / "k" / "me")
    assert (
        ok(runner.invoke(registry_cli, ["key", "add", "--namespace", "beta", str(pub)])).strip()
        == kid
    )
    assert kid in ok(runner.invoke(registry_cli, ["key", "list", "--namespace", "beta"]))
    ok(runner.invoke(registry_cli, ["key", "remove", "--namespace", "beta", kid]))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["token", "revoke", "nope"], "no token 'nope'"),
        (["token", "create", "--namespace", "Bad!", "--scope", "read"], "not a namespace"),
        (["namespace", "create", "x", "--owner", " "], "owner"),
        (["key", "remove", "--namespace", "acme", "abcd"], "no key"),
    ],
)
def test_admin_errors_are_one_line(
    runner: CliRunner, args: list[str], fragment: str, tmp_path: Path
) -> None:
    r = runner.invoke(registry_cli, args)
    assert r.exit_code == 1 and r.stderr.startswith("error: ") and fragment in r.stderr
    assert r.stderr.count("\n") == 1


def test_readme_sequence(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = ok(
        runner.invoke(
            registry_cli, ["token", "create", "--namespace", "acme", "--scope", "publish"]
        )
    ).strip()
    priv, pub, _ = write_keypair(tmp_path / "keys" / "me")
    from reflow.abi._signing import load_private_key

    key = load_private_key(priv)
    ok(runner.invoke(registry_cli, ["key", "add", "--namespace", "acme", str(pub)]))
    pack = tmp_path / "dist" / "acme-my-pack-0.1.0.rflpack"
    pack.parent.mkdir()
    pack.write_bytes(make_pack("acme/my-pack", "0.1.0", key))
    server = Server(data, free_port()).start()
    try:
        reg = ["--registry", server.url]
        out = ok(runner.invoke(pack_cli, ["publish", str(pack), *reg, "--token", token]))
        assert "published acme/my-pack 0.1.0" in out
        assert "acme/my-pack" in ok(runner.invoke(pack_cli, ["search", "image", *reg]))
        r = runner.invoke(pack_cli, ["install", "acme/my-pack@^0.1", *reg])
        assert r.exit_code == 1 and "not in the trust store" in r.stderr  # not trusted yet
        (tmp_path / "trust").mkdir()
        from reflow._loader._trust import TrustStore

        TrustStore(tmp_path / "trust").add(pub)
        out = ok(runner.invoke(pack_cli, ["install", "acme/my-pack@^0.1", *reg]))
        assert "installed acme/my-pack 0.1.0 (full)" in out  # wasm only: nothing to strip
        r = runner.invoke(pack_cli, ["yank", "acme/my-pack@0.1.0", "--reason", "bad build", *reg])
        assert r.exit_code == 1 and "unauthorized" in r.stderr  # yank needs the token
        out = ok(
            runner.invoke(
                pack_cli,
                ["yank", "acme/my-pack@0.1.0", "--reason", "bad build", *reg, "--token", token],
            )
        )
        assert out.startswith("yanked")
        r = runner.invoke(pack_cli, ["install", "acme/my-pack@^0.1", *reg])
        assert r.exit_code == 1 and "no version of acme/my-pack matches ^0.1" in r.stderr
        out = ok(runner.invoke(pack_cli, ["install", "acme/my-pack@0.1.0", *reg]))
        assert "from cache" in out
        other = tmp_path / "other.rflpack"
        other.write_bytes(make_pack("acme/my-pack", "0.2.0", generate_key()))
        r = runner.invoke(pack_cli, ["publish", str(other), *reg, "--token", token])
        assert r.exit_code == 1 and "unregistered_key" in r.stderr
        assert key_id(key) in r.stderr
    finally:
        server.stop()


def test_bad_spec_is_a_usage_error(runner: CliRunner) -> None:
    r = runner.invoke(pack_cli, ["install", "no-namespace"])
    assert r.exit_code == 2 and "namespace/name" in r.stderr


def test_token_with_a_negative_ttl_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = CliRunner().invoke(
        registry_cli,
        [
            "token",
            "create",
            "--data",
            str(data),
            "--namespace",
            "zz",
            "--scope",
            "read",
            "--ttl-days",
            "-1",
        ],
    )
    assert result.exit_code == 2
    assert "--ttl-days" in result.output
    assert not data.exists()
