"""reflow.tools._term.sanitize, and every CLI path that shows a pack's text: a hostile pack
(hand-written manifest: OSC hyperlink, CSI clear-screen, C1 CSI, U+202E, zero-width and tag
characters) is shown inert in tables (escape sequences dropped, every other control or
invisible character shown as ``\\uXXXX``), and exactly in --json."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
import wasmtime
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from reflow.abi._bundle import write_bundle
from reflow.abi._signing import generate_key, sign_manifest, signatures_to_toml
from reflow.tools._cli import main
from reflow.tools._term import sanitize

HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def shown_raw(text: str, allow: str = "\t") -> list[str]:
    """The characters of ``text`` a terminal would act on or hide (``allow`` excepted)."""
    return [
        c
        for c in text
        if c not in allow and (unicodedata.category(c) in HIDDEN or c in "\u115f\u1160\u3164\uffa0")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text, é 中 👍", "plain text, é 中 👍"),
        ("\x1b[2J\x1b[Hcleared", "cleared"),
        ("\x1b]8;;https://evil.example\x07click\x1b]8;;\x07", "click"),
        ("\x1b]0;title\x1b\\after", "after"),
        ("\x1b]0;never terminated", ""),
        ("\x9b31mred\x9d0;t\x9c", "red"),  # C1 CSI, OSC, ST
        ("\x1bPdcs\x1b\\x\x1b_apc\x07y\x1bc", "xy"),  # DCS, APC, RIS
        ("lone \x1b", "lone "),
        ("abc\u202edcba", "abc\\u202edcba"),
        (
            "\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
            "\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c",
        ),
        ("zero\u200bwidth\ufeff\u2060\u00ad", "zero\\u200bwidth\\ufeff\\u2060\\u00ad"),
        ("tag\U000e0041\U000e007f", "tag\\U000e0041\\U000e007f"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("a\rb\bc\x00d\x7fe", "a\\u000db\\u0008c\\u0000d\\u007fe"),
        ("one\ntwo\tthree", "one\\u000atwo\tthree"),
        ("private\ue000use", "private\\ue000use"),
        ("hangul\u3164filler", "hangul\\u3164filler"),
        ("lone \udc80 surrogate", "lone \\udc80 surrogate"),
        (42, "42"),
    ],
)
def test_sanitize_table(text: object, expected: str) -> None:
    assert sanitize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("one\ntwo\tthree", "one\ntwo\tthree"),
        ("err\x1b[31m\r\n", "err\\u000d\n"),
        ("\u202e\n", "\\u202e\n"),
    ],
)
def test_sanitize_multiline_keeps_only_newline_and_tab(text: str, expected: str) -> None:
    assert sanitize(text, keep_newlines=True) == expected


@given(st.text())
def test_sanitized_text_has_nothing_a_terminal_acts_on(text: str) -> None:
    out = sanitize(text)
    assert shown_raw(out) == []
    assert sanitize(out) == out  # stable: sanitizing twice changes nothing
    kept = sanitize(text, keep_newlines=True)
    assert shown_raw(kept, allow="\n\t") == []


def test_sanitize_is_linear_on_a_large_hostile_string() -> None:
    hostile = ("\x1b[2J\u202e\x9b\x1b]" * 100_000) + "é" * 300_000
    start = time.perf_counter()
    out = sanitize(hostile)
    assert time.perf_counter() - start < 5  # generous: proves "bounded", not speed
    assert shown_raw(out) == [] and len(out) < 20 * len(hostile)


# -- the CLI on a hand-written hostile pack ------------------------------------------------

EVIL = (
    "\x1b]8;;https://evil.example/\x1b\\pwn\x1b]8;;\x1b\\ \x1b[2J\x1b[31m red "
    "\x9b1m \u202egnp.exe \u2066iso\u2069 zero\u200bwidth \x07bell\rCR\nsignature  valid"
)


def _toml(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid TOML basic string


def hostile_pack(tmp_path: Path) -> tuple[Path, str]:
    wasm = wasmtime.wat2wasm("(module)")
    sha = hashlib.sha256(wasm).hexdigest()
    manifest = f"""format = 1
name = "evil"
version = "1.0.0"
abi = "1.1"
description = {_toml(EVIL)}
license = {_toml("MIT" + EVIL[:20])}
authors = [{_toml("Mallory " + EVIL[40:80])}]

[capabilities]

[[templates]]
id = "evil/t"
entry = "evil"
engine = "wasm"
description = {_toml(EVIL)}
inports = ["in"]
outports = ["out"]

[[artifacts]]
entry = "evil"
triple = "wasm32-unknown-unknown"
kind = "wasm"
path = "artifacts/wasm32-unknown-unknown/evil.wasm"
sha256 = "{sha}"
size = {len(wasm)}
""".encode()
    key = generate_key()
    sigs = signatures_to_toml([sign_manifest(manifest, key)])
    path = tmp_path / "evil.rflpack"
    path.write_bytes(
        write_bundle(manifest, {"artifacts/wasm32-unknown-unknown/evil.wasm": wasm}, sigs)
    )
    return path, EVIL


def test_inspect_table_shows_the_pack_inert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    pack, _ = hostile_pack(tmp_path)
    result = CliRunner().invoke(main, ["inspect", str(pack)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert shown_raw(out, allow="\n\t") == [], shown_raw(out, allow="\n\t")
    assert "https://evil.example/" not in out and "pwn" in out and "\\u202egnp.exe" in out
    # the description's own "\nsignature  valid" cannot start a line of the table
    assert [ln for ln in out.splitlines() if ln.startswith("signature")] == [
        next(ln for ln in out.splitlines() if ln.startswith("signature "))
    ]
    assert sum(ln.startswith("signature") for ln in out.splitlines()) == 1


def test_inspect_json_keeps_the_text_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    pack, evil = hostile_pack(tmp_path)
    result = CliRunner().invoke(main, ["inspect", "--json", str(pack)])
    assert result.exit_code == 0, result.output
    assert result.stdout.isascii() and shown_raw(result.stdout, allow="\n\t") == []
    doc = json.loads(result.stdout)
    assert doc["description"] == evil
    assert doc["templates"][0]["description"] == evil


def test_real_terminal_streams_are_sanitized_too(tmp_path: Path) -> None:
    """A real process: what reaches stdout/stderr (the table, a log warning, an error line)
    holds no raw escape byte at all."""
    pack, _ = hostile_pack(tmp_path)
    env_code = """if True:
        import logging
        import reflow._loader._packs as packs
        import reflow.tools._cli as cli

        def noisy(original):
            def call(*args, **kwargs):  # a log record with a pack's text, mid-command
                logging.getLogger("reflow").warning("from a pack: \\x1b[2J\\u202e")
                return original(*args, **kwargs)
            return call

        packs.inspect_pack = noisy(packs.inspect_pack)
        cli.read_bundle = noisy(cli.read_bundle)
        cli.main()
    """
    for args in (["inspect", str(pack)], ["verify", str(pack)]):
        proc = subprocess.run(
            [sys.executable, "-c", env_code, *args],
            capture_output=True,
            env={"REFLOW_TRUST_DIR": str(tmp_path / "t"), "PATH": ""},
            timeout=60,
        )
        assert b"\x1b" not in proc.stdout + proc.stderr, proc
        assert "\u202e".encode() not in proc.stdout + proc.stderr
        assert b"\xc2\x9b" not in proc.stdout + proc.stderr
        assert b"warning: from a pack: \\u202e\n" in proc.stderr  # one line, inert
