"""Guest builds time each compiler run on its own (issue #8, cold zig cache): a slow first
target never eats into the next one's limit, a target's first build on this machine gets the
generous first-build limit, a run past its limit is killed with everything it started, and the
error names the target, how long it ran and the limit. A fake compiler (a Python script, put
in through ``_guest_build._toolchain``) sleeps as long as each row says."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from reflow._errors import GuestBuildError
from reflow.sdk_guest import SDK_DIR
from reflow.tools import _guest_build
from reflow.tools._cli import main as pack_cli
from reflow.tools._guest_build import WASM_TARGET, build_guest

FAKE_CC = textwrap.dedent("""
    import json, os, subprocess, sys, time
    args = sys.argv[1:]
    target = args[args.index("-target") + 1] if "-target" in args else "?"
    out = args[args.index("-o") + 1]
    delays = json.loads(os.environ["FAKE_CC_DELAYS"])
    # like zig, start a child (clang, lld): a timeout must kill it too
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(os.environ["FAKE_CC_PIDS"], "a") as f:
        f.write(f"{os.getpid()} {child.pid}\\n")
    time.sleep(delays.get(target, 0))
    child.kill()
    with open(out, "wb") as f:
        f.write(b"\\0asm\\1\\0\\0\\0")
""")
NATIVE = "x86_64-linux-gnu"  # zig target of this reflow target: same name


@pytest.fixture
def fake_cc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "fake_cc.py"
    script.write_text(FAKE_CC)
    # the script takes zig's place: "<python> fake_cc.py cc -O2 ... -target T ... -o OUT"
    monkeypatch.setattr(_guest_build, "_toolchain", lambda: [sys.executable, str(script)])
    monkeypatch.setenv("ZIG_GLOBAL_CACHE_DIR", str(tmp_path / "zig-cache"))  # a cold cache
    monkeypatch.setenv("FAKE_CC_PIDS", str(tmp_path / "pids"))
    monkeypatch.delenv("REFLOW_BUILD_TIMEOUT", raising=False)
    monkeypatch.delenv("REFLOW_FIRST_BUILD_TIMEOUT", raising=False)
    return tmp_path


def delays(monkeypatch: pytest.MonkeyPatch, **by_target: float) -> None:
    zig = {"wasm32": "wasm32-freestanding", "x86_64_linux_gnu": NATIVE}
    monkeypatch.setenv("FAKE_CC_DELAYS", json.dumps({zig[k]: v for k, v in by_target.items()}))


def source() -> Path:
    return SDK_DIR / "examples" / "doubler.c"


def warm(root: Path, *targets: str) -> None:
    """Mark targets as built on this machine before (no first-build limit for them)."""
    seen = root / "zig-cache" / _guest_build._SEEN_DIR
    seen.mkdir(parents=True, exist_ok=True)
    for t in targets:
        (seen / t).touch()


def test_each_target_gets_its_full_limit_after_a_slow_one(
    fake_cc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker, two targets of 1.5 s each, a 2.5 s limit: a deadline shared across the
    targets would stop the second at 1 s; a limit per compiler run lets both finish."""
    warm(fake_cc, WASM_TARGET, NATIVE)
    delays(monkeypatch, wasm32=1.5, x86_64_linux_gnu=1.5)
    start = time.monotonic()
    built = build_guest(
        [source()], fake_cc / "out", name="d", targets=[WASM_TARGET, NATIVE], jobs=1, timeout=2.5
    )
    assert time.monotonic() - start >= 3.0  # they did run one after the other
    assert set(built) == {WASM_TARGET, NATIVE} and all(p.is_file() for p in built.values())


@pytest.mark.parametrize(
    ("first", "warm_targets", "timeout", "first_timeout", "ok"),
    [
        # (target built before here?, limit, first-build limit) -> finishes a 1.5 s compile?
        (WASM_TARGET, (), 0.5, 4.0, True),  # cold: the first-build limit applies
        (WASM_TARGET, (WASM_TARGET,), 0.5, 4.0, False),  # warm: the ordinary limit
        (WASM_TARGET, (), 4.0, 0.5, True),  # the first-build limit never lowers the limit
    ],
)
def test_first_build_gets_the_generous_limit(
    fake_cc: Path,
    monkeypatch: pytest.MonkeyPatch,
    first: str,
    warm_targets: tuple[str, ...],
    timeout: float,
    first_timeout: float,
    ok: bool,
) -> None:
    warm(fake_cc, *warm_targets)
    delays(monkeypatch, wasm32=1.5)
    call = lambda: build_guest(  # noqa: E731
        [source()],
        fake_cc / "out",
        name="d",
        targets=[first],
        timeout=timeout,
        first_timeout=first_timeout,
    )
    if ok:
        assert call()[first].is_file()
    else:
        with pytest.raises(GuestBuildError, match=f"for {first} timed out"):
            call()


def test_a_run_past_its_limit_is_killed_and_named(
    fake_cc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warm(fake_cc, WASM_TARGET, NATIVE)
    delays(monkeypatch, wasm32=0.1, x86_64_linux_gnu=60)
    start = time.monotonic()
    with pytest.raises(GuestBuildError) as info:
        build_guest(
            [source()],
            fake_cc / "out",
            name="d",
            targets=[WASM_TARGET, NATIVE],
            jobs=2,
            timeout=1.0,
        )
    took = time.monotonic() - start
    assert took < 20  # bounded: the 60 s compiler was stopped near its 1 s limit
    msg = str(info.value)
    assert info.value.target == NATIVE and f"building d for {NATIVE} timed out" in msg
    assert "the compiler ran 1." in msg and "limit of 1 s" in msg and "--timeout" in msg
    # the compiler and the child it started are gone (its whole process group was killed)
    pids = [
        int(p) for line in (fake_cc / "pids").read_text().split("\n") if line for p in line.split()
    ]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("REFLOW_BUILD_TIMEOUT", "soon", "$REFLOW_BUILD_TIMEOUT must be a number of seconds"),
        ("REFLOW_BUILD_TIMEOUT", "0", "above 0"),
        ("REFLOW_BUILD_TIMEOUT", "-5", "above 0"),
        ("REFLOW_BUILD_TIMEOUT", "nan", "above 0"),
        ("REFLOW_BUILD_TIMEOUT", "inf", "above 0"),
        ("REFLOW_BUILD_TIMEOUT", "1e400", "above 0"),
        ("REFLOW_FIRST_BUILD_TIMEOUT", "x" * 10_000, "$REFLOW_FIRST_BUILD_TIMEOUT must be"),
    ],
)
def test_bad_limits_in_the_environment(
    fake_cc: Path, monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    delays(monkeypatch)
    with pytest.raises(GuestBuildError) as info:
        build_guest([source()], fake_cc / "out", name="d")
    assert fragment in str(info.value) and len(str(info.value)) < 300
    assert not (fake_cc / "pids").exists()  # refused before any compiler ran


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True])
def test_bad_limit_arguments(fake_cc: Path, value: float) -> None:
    with pytest.raises(GuestBuildError, match="timeout must be a number of seconds"):
        build_guest([source()], fake_cc / "out", name="d", timeout=value)


def test_the_environment_sets_the_limit(fake_cc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    warm(fake_cc, WASM_TARGET)
    delays(monkeypatch, wasm32=5)
    monkeypatch.setenv("REFLOW_BUILD_TIMEOUT", "0.5")
    with pytest.raises(GuestBuildError, match=r"limit of 0\.5 s"):
        build_guest([source()], fake_cc / "out", name="d")


def test_cli_build_timeout(fake_cc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fake_cc)
    assert CliRunner().invoke(pack_cli, ["new", "p"]).exit_code == 0
    warm(fake_cc, WASM_TARGET)
    delays(monkeypatch, wasm32=5)
    result = CliRunner().invoke(
        pack_cli, ["build", "p", "--triple", "wasm32-unknown-unknown", "--timeout", "0.5"]
    )
    assert result.exit_code == 1, result.output
    err = result.stderr.splitlines()
    assert err[-1].startswith("error: building p for wasm32 timed out: the compiler ran 0.")
    bad = CliRunner().invoke(pack_cli, ["build", "p", "--timeout", "0"])
    assert bad.exit_code == 2 and "--timeout" in bad.stderr
    assert os.environ.get("REFLOW_BUILD_TIMEOUT") is None
