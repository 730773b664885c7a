"""The trust decision (issue #8 row 16): ``reflow-pack trust add`` says which pack names a key
may sign (``--for PATTERN...``) or, explicitly, every name (``--any-name``); a key added
without either by an older version (no ``.names`` file) keeps working, with ONE warning per key
per process, whichever path decided (load_pack, inspect_pack, TrustStore.verify, the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from reflow import TrustStore
from reflow.abi._bundle import add_signatures, read_bundle
from reflow.abi._signing import (
    generate_key,
    key_id,
    public_key_pem,
    sign_manifest,
    write_keypair,
)
from reflow.tools._cli import main

CLI = [sys.executable, "-m", "reflow.tools._cli"]


@pytest.fixture(scope="module")
def packs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real (unsigned) wasm packs, 'p' and 'q', built by reflow-pack."""
    root = tmp_path_factory.mktemp("scoped")
    out = {}
    for name in ("p", "q"):
        subprocess.run([*CLI, "new", str(root / name)], check=True, capture_output=True)
        built = subprocess.run(
            [
                *CLI,
                "build",
                str(root / name),
                "--triple",
                "wasm32-unknown-unknown",
                "--out",
                str(root / "dist"),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        out[name] = Path(built.stdout.strip())
    return out


def signed(pack: Path, key: object, target: Path) -> Path:
    head = read_bundle(pack, head_only=True)
    target.write_bytes(add_signatures(pack, [sign_manifest(head.manifest_bytes, key)]))  # type: ignore[arg-type]
    return target


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return write_keypair(tmp_path / "k")[1]


@pytest.mark.parametrize(
    ("extra", "status", "fragment", "names"),
    [
        ([], 2, "--for PATTERN", None),
        (["--for", "acme/*"], 0, "for acme/*", ("acme/*",)),
        (["--for", "acme/*", "--for", "beta/x"], 0, "for acme/*, beta/x", ("acme/*", "beta/x")),
        (["--any-name"], 0, "for ANY pack name", ("*",)),
        (["--for", "acme/*", "--any-name"], 2, "exclude each other", None),
        (["--for", ""], 2, "invalid pack-name pattern", None),
        (["--for", "Acme/*"], 2, "invalid pack-name pattern", None),
        (["--for", "acme/[x]"], 2, "invalid pack-name pattern", None),
        (["--for", "a b"], 2, "invalid pack-name pattern", None),
        (["--for", "acme/\u202e*"], 2, "invalid pack-name pattern", None),
        (["--for", "a" * 300], 2, "over 256 characters", None),
    ],
)
def test_trust_add_requires_a_scope(
    tmp_path: Path,
    key: Path,
    extra: list[str],
    status: int,
    fragment: str,
    names: tuple[str, ...] | None,
) -> None:
    store = tmp_path / "trust"
    result = CliRunner().invoke(main, ["trust", "add", str(key), *extra, "--trust-dir", str(store)])
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output
    assert fragment in " ".join(result.output.split())
    keys = TrustStore(store).list()
    if names is None:
        assert keys == []  # a refused add writes nothing
    else:
        assert [k.names for k in keys] == [names]


def test_names_file_is_read_in_bounded_size(tmp_path: Path) -> None:
    """A huge .names file is read only so far, in whole lines: never widened by a cut."""
    k = generate_key()
    kid = key_id(k.public_key())
    (tmp_path / f"{kid}.pub").write_bytes(public_key_pem(k.public_key()))
    head = b"#" * 100 + b"\n"
    body = head * 648 + b"acme/*\n"  # 65455 bytes
    body += b"a" * 79 + b"*cmexyz\n"  # the 64 KiB limit falls just after its "*c"
    assert body.index(b"*cme") + 2 == 64 << 10
    (tmp_path / f"{kid}.names").write_bytes(body + b"x" * (8 << 20))
    (entry,) = TrustStore(tmp_path).list()
    assert entry.names == ("acme/*",)  # not "aaa...*c", which would match more names


def test_legacy_unscoped_key_warns_once_per_key_per_process(
    packs: dict[str, Path], tmp_path: Path
) -> None:
    """Two keys trusted the old way (only a .pub file, written here by hand), each signing a
    pack: every path that decides trust runs, twice; one warning per key in all."""
    trust = tmp_path / "trust"
    trust.mkdir()
    k1, k2 = generate_key(), generate_key()
    for k in (k1, k2):
        (trust / f"{key_id(k.public_key())}.pub").write_bytes(public_key_pem(k.public_key()))
    p = signed(packs["p"], k1, tmp_path / "p.rflpack")
    q = signed(packs["q"], k2, tmp_path / "q.rflpack")
    script = textwrap.dedent(f"""
        import reflow
        from reflow.abi._bundle import read_bundle
        from reflow.tools._cli import main
        store = reflow.TrustStore({str(trust)!r})
        for _ in range(2):
            for pack in ({str(p)!r}, {str(q)!r}):
                reflow.load_pack(pack, trust=store)
                reflow.inspect_pack(pack, trust=store)
                b = read_bundle(pack)
                store.verify(b.manifest_bytes, b.signatures, pack="x")
                reflow.TrustStore({str(trust)!r}).verify(b.manifest_bytes, b.signatures)
        print("ok")
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    warned = [ln for ln in proc.stderr.splitlines() if "added without pack names" in ln]
    assert len(warned) == 2, proc.stderr
    for k in (k1, k2):
        assert sum(key_id(k.public_key()) in ln for ln in warned) == 1
    assert all("--for" in ln for ln in warned)
    # the command line: the same single warning, then the result
    cli = subprocess.run(
        [*CLI, "verify", str(p), "--trust-dir", str(trust)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0 and cli.stdout.startswith("OK p 0.1.0")
    assert cli.stderr.count("added without pack names") == 1
    assert cli.stderr.startswith("warning: trusted key ") and cli.stderr.count("\n") == 1
    listed = json.loads(
        subprocess.run(
            [*CLI, "trust", "list", "--json", "--trust-dir", str(trust)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert [e["scoped"] for e in listed] == [False, False]
    assert all(e["names"] is None for e in listed)


@pytest.mark.parametrize(
    ("extra", "loads"),
    [
        (["--any-name"], True),
        (["--for", "p"], True),
        (["--for", "q"], False),
    ],
)
def test_scoped_keys_never_warn(
    packs: dict[str, Path], tmp_path: Path, extra: list[str], loads: bool
) -> None:
    priv, pub, _ = write_keypair(tmp_path / "k")
    from reflow.abi._signing import load_private_key

    p = signed(packs["p"], load_private_key(priv), tmp_path / "p.rflpack")
    trust = tmp_path / "trust"
    add = subprocess.run(
        [*CLI, "trust", "add", str(pub), *extra, "--trust-dir", str(trust)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert add.returncode == 0, add.stderr
    script = f"import reflow; reflow.load_pack({str(p)!r}, trust={str(trust)!r}); print('loaded')"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert "added without pack names" not in proc.stderr
    assert (proc.returncode == 0) == loads, proc.stderr
    if not loads:
        assert "UntrustedKeyError" in proc.stderr and "trusted only for 'q'" in proc.stderr
