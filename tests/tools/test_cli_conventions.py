"""Conventions every reflow command line keeps (tools/_term.py): one ``error:`` line and
status 1 (2 for usage), ``--debug`` and ``--json`` anywhere (results and errors as JSON on
stdout), a quiet exit on a closed pipe, nothing from a pack reaching the terminal as escape
sequences, admin commands that refuse a missing data directory, ``serve`` on a busy port, and
guest-build output (progress, missing toolchain, compiler diagnostics kept as lines). Real
subprocesses where the behaviour is about the process (pipes, exit status, a real uvicorn on
127.0.0.1); click's runner elsewhere."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import wasmtime
from click.testing import CliRunner

from reflow._loader._trust import TrustStore
from reflow.abi._bundle import artifact_entry, build_bundle, write_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
from reflow.abi._signing import generate_key, sign_manifest, signatures_to_toml, write_keypair
from reflow.registry._cli import main as registry_main
from reflow.tools import _guest_build
from reflow.tools._cli import main as pack_main
from reflow.tools._term import sanitize

registry_cli = registry_main
pack_cli = pack_main
PACK_CLI = [sys.executable, "-m", "reflow.tools._cli"]
REGISTRY_CLI = [sys.executable, "-m", "reflow.registry._cli"]


HOSTILE = "fine\x1b]0;owned\x07 \x1b[2J\x1b[31mred\u202etxt.exe\u2066x\u200b\x9b1m\x00end"


def hostile_pack(tmp: Path) -> Path:
    wasm = b"\0asm\x01\0\0\0"
    path = f"artifacts/{PORTABLE_TRIPLE}/m.wasm"
    manifest = PackManifest(
        name="acme/m",
        version="0.1.0",
        abi="1.0",
        description=HOSTILE,
        templates=(TemplateSpec("acme/m/t", "m", ("in",), ("out",), description=HOSTILE),),
        artifacts=(artifact_entry("m", PORTABLE_TRIPLE, "wasm", path, wasm),),
    )
    out = tmp / "hostile.rflpack"
    out.write_bytes(build_bundle(manifest, {path: wasm}, []))
    return out


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reflow.tools._cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "text, shown",
    [
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
    ],
)
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
    cmd = (
        f"{sys.executable} -m reflow.tools._cli trust list --trust-dir {tmp_path / 'trust'}"
        " | head -1; echo status=${PIPESTATUS[0]}"
    )
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[1] == "status=141", proc.stdout
    assert proc.stderr == "", proc.stderr  # no "error: [Errno 32] Broken pipe", no traceback


@pytest.mark.parametrize(
    "args",
    [
        ["--debug", "inspect", "junk.rflpack"],
        ["inspect", "junk.rflpack", "--debug"],
        ["inspect", "--debug", "junk.rflpack"],
    ],
)
def test_debug_anywhere_shows_the_traceback(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "junk.rflpack").write_bytes(b"junk")
    proc = subprocess.run(
        [sys.executable, "-m", "reflow.tools._cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "PackFormatError" in proc.stderr


RUNNER_ERRORS = [
    # command line, exit status, fragment of the one error line
    (pack_main, ["inspect", "junk.rflpack"], 1, "not a .rflpack"),
    (pack_main, ["verify", "junk.rflpack"], 1, "not a .rflpack"),
    (pack_main, ["verify", "missing.rflpack"], 2, "does not exist"),
    (pack_main, ["trust", "remove", "abcdef"], 1, "not in the trust store"),
    (pack_main, ["trust", "add", "junk.rflpack"], 2, "--for PATTERN"),
    (registry_main, ["token", "list", "--data", "typo-dir"], 1, "does not exist"),
    (registry_main, ["key", "list", "--namespace", "x", "--data", "typo-dir"], 1, "does not exist"),
    (registry_main, ["namespace", "list", "--data", "typo-dir"], 1, "does not exist"),
]


@pytest.mark.parametrize("main, args, status, fragment", RUNNER_ERRORS)
def test_errors_are_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    main: object,
    args: list[str],
    status: int,
    fragment: str,
) -> None:
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


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "junk.rflpack", "--json"],
        ["inspect", "--json", "junk.rflpack"],
    ],
)
def test_json_errors_are_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
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
        {
            "key_id": kid,
            "path": str(Path("trust") / f"{kid}.pub"),
            "names": ["acme/*"],
            "scoped": True,
        }
    ]
    assert CliRunner().invoke(registry_main, ["init", "--data", "reg"]).exit_code == 0
    for args in (["token", "list"], ["namespace", "list"], ["key", "list", "--namespace", "a"]):
        result = CliRunner().invoke(registry_main, [*args, "--json", "--data", "reg"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == []


# -- h/cli's table: every command, plain and --json, against a real server ----------------


def make_pack(
    path: Path,
    name: str = "acme/tool",
    templates: int = 1,
    description: str = "A tool.",
    key: object = None,
) -> Path:
    """A pack written by hand: manifest TOML, one empty wasm module, signed with ``key``."""
    wasm = wasmtime.wat2wasm("(module)")
    entry = name.rsplit("/", 1)[-1]
    tpl = "".join(
        f"""
[[templates]]
id = "{name}/t{i}"
entry = "{entry}"
engine = "wasm"
description = {json.dumps(description)}
inports = ["in"]
outports = ["out"]
"""
        for i in range(templates)
    )
    manifest = f"""format = 1
name = "{name}"
version = "1.0.0"
abi = "1.1"
description = {json.dumps(description)}
license = "MIT"
authors = []

[capabilities]
{tpl}
[[artifacts]]
entry = "{entry}"
triple = "wasm32-unknown-unknown"
kind = "wasm"
path = "artifacts/wasm32-unknown-unknown/{entry}.wasm"
sha256 = "{hashlib.sha256(wasm).hexdigest()}"
size = {len(wasm)}
""".encode()
    sigs = signatures_to_toml([sign_manifest(manifest, key)]) if key is not None else None
    path.write_bytes(
        write_bundle(manifest, {f"artifacts/wasm32-unknown-unknown/{entry}.wasm": wasm}, sigs)
    )
    return path


@dataclass
class Env:
    root: Path
    key: Path  # private key file; its public half is key.pub
    pack: Path  # signed by key, name acme/tool
    unsigned: Path
    junk: Path
    data: Path  # an initialised registry data directory
    registry: str  # a running server on the same data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    data = tmp_path_factory.mktemp("registry") / "data"
    port = free_port()
    proc = subprocess.Popen(
        [
            *REGISTRY_CLI,
            "serve",
            "--data",
            str(data),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield data, url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_data: tuple[Path, str]) -> Env:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("REFLOW_REGISTRY_TOKEN", raising=False)
    monkeypatch.delenv("REFLOW_DEBUG", raising=False)
    data, url = server_data
    monkeypatch.setenv("REFLOW_REGISTRY_DATA", str(data))
    monkeypatch.setenv("REFLOW_REGISTRY", url)
    from reflow.abi._signing import load_private_key

    priv, _, _ = write_keypair(tmp_path / "k")
    key = load_private_key(priv)
    (tmp_path / "junk.rflpack").write_bytes(b"not a pack")
    (tmp_path / "notdata").mkdir()
    return Env(
        tmp_path,
        priv,
        make_pack(tmp_path / "tool.rflpack", key=key),
        make_pack(tmp_path / "unsigned.rflpack"),
        tmp_path / "junk.rflpack",
        data,
        url,
    )


def run(cli: object, args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args)  # type: ignore[arg-type]
    return result.exit_code, result.stdout, result.stderr


# (which CLI, the command line, exit status, fragment of the error line, JSON error type).
# "{x}" is filled from the Env; each row runs as is and again with --json (type "-": not).
ERRORS = [
    ("pack", "inspect {junk}", 1, "not a .rflpack", "PackFormatError"),
    ("pack", "verify {pack}", 1, "not in the trust store", "UntrustedKeyError"),
    ("pack", "verify {unsigned}", 1, "is not signed", "PackSignatureError"),
    ("pack", "verify {junk}", 1, "not a .rflpack", "PackFormatError"),
    ("pack", "strip {pack} --triple x86_64-apple-darwin", 1, "lists:", "PackFormatError"),
    ("pack", "sign {junk} --key {key}", 1, "not a .rflpack", "PackFormatError"),
    ("pack", "sign {pack} --key {junk}", 1, "", "PackSignatureError"),
    ("pack", "keygen --out {key}", 1, "already exists", None),
    ("pack", "new {root}/Bad!Name", 1, "not a pack name", None),
    ("pack", "build {root}/notdata", 1, "pack.toml", None),
    ("pack", "trust add {key}.pub", 2, "--for PATTERN", "UsageError"),
    ("pack", "trust add {key}.pub --for acme/* --any-name", 2, "exclude", "UsageError"),
    ("pack", "trust add {key}.pub --for Acme/[x]", 2, "invalid pack-name pattern", "UsageError"),
    ("pack", "trust remove abcdef", 1, "not in the trust store", "UntrustedKeyError"),
    ("pack", "inspect {root}/missing.rflpack", 2, "does not exist", "UsageError"),
    ("pack", "publish {pack}", 1, "token", "RegistryAuthError"),
    ("pack", "install acme/nothing@^1", 1, "acme/nothing", "RegistryNotFoundError"),
    ("pack", "install no-namespace", 2, "namespace/name", "UsageError"),
    ("pack", "yank acme/tool@1.0.0", 1, "token", "RegistryAuthError"),
    ("pack", "search x --registry http://[::1", 1, "", None),
    ("registry", "token list --data {root}/typo", 1, "does not exist", "RegistryAdminError"),
    (
        "registry",
        "token create --data {root}/typo --namespace a --scope read",
        1,
        "does not exist",
        "RegistryAdminError",
    ),
    ("registry", "token revoke x --data {root}/typo", 1, "does not exist", "RegistryAdminError"),
    (
        "registry",
        "key list --namespace a --data {root}/typo",
        1,
        "does not exist",
        "RegistryAdminError",
    ),
    (
        "registry",
        "key add --namespace a --data {root}/typo {key}.pub",
        1,
        "does not exist",
        "RegistryAdminError",
    ),
    (
        "registry",
        "key remove --namespace a --data {root}/typo x",
        1,
        "does not exist",
        "RegistryAdminError",
    ),
    ("registry", "namespace list --data {root}/typo", 1, "does not exist", "RegistryAdminError"),
    (
        "registry",
        "namespace create n --owner o --data {root}/typo",
        1,
        "does not exist",
        "RegistryAdminError",
    ),
    (
        "registry",
        "token list --data {root}/notdata",
        1,
        "not a registry data directory",
        "RegistryAdminError",
    ),
    ("registry", "token revoke nope", 1, "no token 'nope'", "RegistryAdminError"),
    ("registry", "namespace create Bad! --owner o", 1, "not a namespace", "RegistryAdminError"),
    ("registry", "key remove --namespace acme abcd", 1, "no key", "RegistryAdminError"),
    ("registry", "serve --port 70000", 2, "70000", "-"),  # serve runs; it has no --json
    ("registry", "init --data {key}", 2, "is a file", "UsageError"),
]


def fill(line: str, env: Env) -> list[str]:
    return line.format(
        root=env.root, key=env.key, pack=env.pack, unsigned=env.unsigned, junk=env.junk
    ).split()


@pytest.mark.parametrize(
    ("cli", "line", "status", "fragment", "kind"), ERRORS, ids=[f"{r[0]}: {r[1]}" for r in ERRORS]
)
def test_every_error_is_one_line_and_json_with_json(
    env: Env, cli: str, line: str, status: int, fragment: str, kind: str | None
) -> None:
    main = pack_cli if cli == "pack" else registry_cli
    args = fill(line, env)
    code, out, err = run(main, args)
    assert code == status, (out, err)
    assert "Traceback" not in err and out == ""
    if status == 1:
        assert err.count("\n") == 1 and err.startswith("error: "), err
    else:  # a usage mistake: click's usage, then the mistake
        assert "Error:" in err or err.startswith("error: ")
    assert fragment in " ".join(err.split())
    assert not (env.root / "typo").exists()  # nothing made a data directory by mistake
    if kind == "-":
        return
    code, out, err = run(main, [*args, "--json"])
    assert code == status and "Traceback" not in err
    doc = json.loads(out)["error"]
    assert set(doc) >= {"type", "message"} and fragment in doc["message"]
    assert kind is None or doc["type"] == kind, doc
    # the error is the JSON document on stdout, instead of the line on stderr
    assert not any(ln.startswith("error:") for ln in err.splitlines()), err


def _json(cli: object, line: str, env: Env) -> object:
    code, out, err = run(cli, [*fill(line, env), "--json"])
    assert code == 0 and "Traceback" not in err, (out, err)
    return json.loads(out)


def test_every_command_reports_json(env: Env) -> None:
    """Success with --json: one JSON document on stdout, for every reporting command."""
    reg = registry_cli
    assert _json(pack_cli, "trust list", env) == []
    doc = _json(pack_cli, "trust add {key}.pub --for acme/*", env)
    assert doc["names"] == ["acme/*"]  # type: ignore[index]
    kid = doc["key_id"]  # type: ignore[index]
    listed = _json(pack_cli, "trust list", env)
    assert listed[0]["key_id"] == kid and listed[0]["scoped"]  # type: ignore[index]
    assert _json(pack_cli, "verify {pack}", env)["signer"] == kid  # type: ignore[index]
    assert _json(pack_cli, "inspect {pack}", env)["name"] == "acme/tool"  # type: ignore[index]
    assert (
        _json(pack_cli, "strip {pack} --triple wasm32-unknown-unknown --out s.rflpack", env)["path"]
        == "s.rflpack"
    )  # type: ignore[index]
    assert _json(pack_cli, "sign {unsigned} --key {key}", env)["key_id"] == kid  # type: ignore[index]
    assert _json(pack_cli, "keygen --out k2", env)["key_id"]  # type: ignore[index]
    assert _json(pack_cli, "new {root}/proj", env)["created"]  # type: ignore[index]
    ns = f"ns{os.getpid()}x{time.monotonic_ns() % 10**6}"
    assert _json(reg, f"namespace create {ns} --owner team", env)["name"] == ns  # type: ignore[index]
    assert ns in [n["name"] for n in _json(reg, "namespace list", env)]  # type: ignore[attr-defined, index]
    assert _json(reg, f"key add --namespace {ns} {{key}}.pub", env)["key_id"] == kid  # type: ignore[index]
    assert [k["key_id"] for k in _json(reg, f"key list --namespace {ns}", env)] == [kid]  # type: ignore[attr-defined, index]
    tok = _json(reg, f"token create --namespace {ns} --scope publish", env)
    assert tok["token"].startswith("rfl_")  # type: ignore[index]
    assert tok["id"] in [t["id"] for t in _json(reg, "token list", env)]  # type: ignore[attr-defined, index]
    # the registry verbs, against the running server (uvicorn on 127.0.0.1)
    pack = make_pack(
        env.root / "p.rflpack",
        name=f"{ns}/tool",
        description="\x1b]8;;https://evil/\x1b\\tool\u202e",
        key=_key(env),
    )
    os.environ["REFLOW_REGISTRY_TOKEN"] = tok["token"]  # type: ignore[index]
    try:
        doc = _json(pack_cli, f"publish {pack}", env)
        assert doc["full_name"] == f"{ns}/tool"  # type: ignore[index]
        hits = _json(pack_cli, f"search {ns}", env)
        assert hits[0]["description"] == "\x1b]8;;https://evil/\x1b\\tool\u202e"  # type: ignore[index]
        code, out, _ = run(pack_cli, ["search", ns])  # the table: shown inert
        assert code == 0 and "\x1b" not in out and "\u202e" not in out and "\\u202e" in out
        assert "https://evil" not in out  # the hyperlink sequence is dropped, its text kept
        _json(pack_cli, f"trust add {{key}}.pub --for {ns}/*", env)
        got = _json(pack_cli, f"install {ns}/tool@^1", env)
        assert got["version"] == "1.0.0" and got["signer"] == kid  # type: ignore[index]
        assert _json(pack_cli, f"yank {ns}/tool@1.0.0", env)["yanked"]  # type: ignore[index]
    finally:
        del os.environ["REFLOW_REGISTRY_TOKEN"]
    assert _json(reg, f"key remove --namespace {ns} {kid}", env)["removed"] == kid  # type: ignore[index]
    assert _json(reg, f"token revoke {tok['id']}", env)  # type: ignore[index]
    assert _json(pack_cli, f"trust remove {kid}", env)["removed"] == kid  # type: ignore[index]


def _key(env: Env) -> object:
    from reflow.abi._signing import load_private_key

    return load_private_key(env.key)


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "{junk}", "--debug"],
        ["--debug", "inspect", "{junk}"],
        ["inspect", "--debug", "{junk}"],
        ["trust", "--debug", "remove", "abcdef"],
    ],
)
def test_debug_is_accepted_anywhere(env: Env, args: list[str]) -> None:
    result = CliRunner().invoke(pack_cli, fill(" ".join(args), env))
    assert result.exit_code == 1 and type(result.exception).__name__ in (
        "PackFormatError",
        "UntrustedKeyError",
    )


def test_registry_debug_anywhere(env: Env) -> None:
    result = CliRunner().invoke(
        registry_cli, ["token", "list", "--data", str(env.root / "typo"), "--debug"]
    )
    assert type(result.exception).__name__ == "RegistryAdminError"
    assert not (env.root / "typo").exists()


def test_admin_commands_do_not_create_a_data_directory(env: Env) -> None:
    typo = env.root / "typo"
    assert run(registry_cli, ["token", "list", "--data", str(typo)])[0] == 1
    assert not typo.exists()
    code, _out, _ = run(registry_cli, ["init", "--data", str(typo)])
    assert code == 0 and (typo / "index.sqlite3").is_file()
    assert run(registry_cli, ["token", "list", "--data", str(typo)])[0] == 0
    help_text = run(registry_cli, ["--help"])[1]
    assert "Only 'init' and 'serve' create it" in " ".join(help_text.split())


# -- real processes and pipes ------------------------------------------------------------------


def test_closed_stdout_exits_quietly(tmp_path: Path) -> None:
    """The reader is gone before the command writes: status 141, nothing on stderr."""
    pack = make_pack(tmp_path / "big.rflpack", templates=300, description="d" * 300)
    proc = subprocess.Popen(
        [*PACK_CLI, "inspect", str(pack)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "REFLOW_TRUST_DIR": str(tmp_path / "t")},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 141 and err == b"", err


def test_pipe_into_head(tmp_path: Path) -> None:
    pack = make_pack(tmp_path / "big.rflpack", templates=300, description="d" * 300)
    cmd = " ".join([*PACK_CLI, "inspect", str(pack)])
    proc = subprocess.run(
        ["bash", "-c", f'{cmd} | head -1; echo "status=${{PIPESTATUS[0]}}"'],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REFLOW_TRUST_DIR": str(tmp_path / "t")},
    )
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("pack ") and lines[-1] in ("status=141", "status=0")
    assert proc.stderr == "", proc.stderr


def test_serve_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [*REGISTRY_CLI, "serve", "--data", str(tmp_path / "d"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: address 127.0.0.1:{port} is already in use")
    assert not (tmp_path / "d").exists()


def test_serve_on_an_unknown_host_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *REGISTRY_CLI,
            "serve",
            "--data",
            str(tmp_path / "d"),
            "--host",
            "no-such-host.invalid",
            "--port",
            "8700",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: cannot serve on no-such-host.invalid:8700")


def test_keyboard_interrupt_is_not_a_traceback(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            *REGISTRY_CLI,
            "serve",
            "--data",
            str(tmp_path / "d"),
            "--port",
            str(port),
            "--log-level",
            "critical",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err


# -- guest builds ------------------------------------------------------------------------------


def test_missing_toolchain_is_one_line(tmp_path: Path) -> None:
    subprocess.run([*PACK_CLI, "new", str(tmp_path / "p")], check=True, capture_output=True)
    code = "import sys; sys.modules['ziglang'] = None; from reflow.tools._cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "build", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and 'pip install "reflow[build]"' in last
    assert "Traceback" not in proc.stderr and not (tmp_path / "dist").exists()


def test_compiler_diagnostics_keep_their_lines(tmp_path: Path) -> None:
    subprocess.run([*PACK_CLI, "new", str(tmp_path / "p")], check=True, capture_output=True)
    src = next((tmp_path / "p" / "src").glob("*.c"))
    src.write_text(src.read_text() + "\nint broken( {\n  return 1 +;\n}\n\x1b[2J\n")
    proc = subprocess.run(
        [*PACK_CLI, "build", str(tmp_path / "p"), "--triple", "wasm32-unknown-unknown"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("error: "))
    assert lines[first].startswith("error: building p for wasm32 failed")
    detail = lines[first + 1 :]
    assert len(detail) >= 3 and all(ln.startswith("    ") for ln in detail)
    assert any("error: expected" in ln for ln in detail)
    assert "\x1b" not in proc.stderr


def test_build_progress_names_targets_files_and_first_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_guest_build, "_SEEN_DIR", f"reflow-test-seen-{os.getpid()}")
    # a heartbeat far shorter than any compiler run, even one zig answers from its cache (a
    # process start alone takes longer), so "still compiling" shows whatever the machine
    monkeypatch.setattr(_guest_build, "HEARTBEAT_S", 0.001)
    assert run(pack_cli, ["new", "p"])[0] == 0
    seen = _guest_build._zig_cache_dir() / _guest_build._SEEN_DIR
    try:
        code, _out, err = run(pack_cli, ["build", "p", "--triple", "wasm32-unknown-unknown"])
        assert code == 0, err
        assert "compiling p for wasm32: reflow.c, p.c" in err
        assert "built p for wasm32 in" in err and "still compiling p for wasm32" in err
        assert "first build for wasm32" in err and "a few minutes" in err
        code, _out, err = run(pack_cli, ["build", "p", "--triple", "wasm32-unknown-unknown"])
        assert code == 0 and "first build" not in err  # the note comes once
    finally:
        for f in seen.glob("*"):
            f.unlink()
        seen.rmdir()
