"""Build a C guest actor with the ``ziglang`` toolchain from PyPI: to a WebAssembly module
(wasm32, freestanding, no WASI) and to native shared libraries for several platforms, from the
same source, with no system compiler.

``build_guest(["doubler.c"], out_dir, name="doubler")`` compiles the sources together with the
guest SDK runtime (``sdk-guest/reflow.c``) and returns ``{target: path}``. Native targets are
cross-compiled; only the host's own library can be loaded here (see :func:`host_target`).

The toolchain is the ``ziglang`` package (the ``build`` extra: ``pip install "reflow[build]"``);
without it a build fails at once with one line saying so. ``progress`` (a callable taking one
line) hears what is compiled (each target and its files), a heartbeat while a compiler runs
long, and, the first time a target is built on this machine, a note that zig fills its cache
once (a few minutes for a cross target).

Each compiler run has its own time limit (``timeout``, else ``$REFLOW_BUILD_TIMEOUT``, else
300 s), counted from the moment that run starts: a slow target never eats into the time of the
next one. A target's first build on this machine fills zig's cache (a cold ``x86_64-windows``
build takes minutes on a loaded machine), so it gets at least ``first_timeout`` (else
``$REFLOW_FIRST_BUILD_TIMEOUT``, else 900 s). A run past its limit is killed (its whole process
group) and fails with an error naming the target, how long it ran and its limit.
"""

from __future__ import annotations

import importlib.util
import math
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .._errors import GuestBuildError
from ..sdk_guest import SDK_DIR  # the SDK sources, shipped as package data

__all__ = [
    "NATIVE_TARGETS",
    "SDK_DIR",
    "WASI_TARGET",
    "WASM_TARGET",
    "artifact_name",
    "build_guest",
    "host_target",
]

#: The portable target: a core WebAssembly module for the sandbox, no libc, no WASI.
WASM_TARGET = "wasm32"
#: The same with wasi-libc (malloc, snprintf, ...). Only the libc functions that make system
#: calls import WASI, and a node of a module that does needs the user's "wasi" grant.
WASI_TARGET = "wasm32-wasi"

#: Native shared-library targets (reflow triple -> zig target).
NATIVE_TARGETS: dict[str, str] = {
    "x86_64-linux-gnu": "x86_64-linux-gnu",
    "aarch64-linux-gnu": "aarch64-linux-gnu",
    "x86_64-macos": "x86_64-macos",
    "aarch64-macos": "aarch64-macos",
    "x86_64-windows": "x86_64-windows-gnu",
}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?")

_WASI_FLAGS = [
    "-target",
    "wasm32-wasi",
    "-mbulk-memory",
    "-mexec-model=reactor",
    "-Wl,-z,stack-size=131072",
    "-s",
]
_WASM_FLAGS = [
    "-target",
    "wasm32-freestanding",
    "-nostdlib",
    "-mbulk-memory",
    "-Wl,--no-entry",
    "-Wl,-z,stack-size=131072",
    "-s",
]


def host_target() -> str | None:
    """The native target this Python runs on, or ``None`` if no native target matches."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
        machine
    )
    if arch is None:
        return None
    if sys.platform.startswith("linux"):
        return f"{arch}-linux-gnu"
    if sys.platform == "darwin":
        return f"{arch}-macos"
    if sys.platform == "win32" and arch == "x86_64":
        return "x86_64-windows"
    return None


def artifact_name(name: str, target: str) -> str:
    """File name of the artifact for ``target``: ``name.wasm``, ``libname.so``, ...
    (a namespaced ``acme/name`` gives ``acme-name``: never a directory)."""
    name = name.replace("/", "-")
    if target in (WASM_TARGET, WASI_TARGET):
        return f"{name}.wasm"
    if target.endswith("-windows"):
        return f"{name}.dll"
    if target.endswith("-macos"):
        return f"lib{name}.dylib"
    return f"lib{name}.so"


def _toolchain() -> list[str]:
    """The command that runs zig (one place, so a test can stand in a fake compiler)."""
    return [sys.executable, "-m", "ziglang"]


def _command(
    target: str, sources: list[Path], out: Path, sdk_dir: Path, optimize: str, extra: list[str]
) -> list[str]:
    cmd = [*_toolchain(), "cc", f"-{optimize}", f"-I{sdk_dir}"]
    if target == WASM_TARGET:
        cmd += _WASM_FLAGS
    elif target == WASI_TARGET:
        cmd += _WASI_FLAGS
    else:
        cmd += ["-target", NATIVE_TARGETS[target], "-shared", "-fPIC", "-s"]
        if not target.endswith("-windows"):
            cmd.append("-fvisibility=hidden")
    cmd += extra
    cmd += [str(sdk_dir / "reflow.c"), *map(str, sources), "-o", str(out)]
    return cmd


#: How often a long compile says it is still running (seconds).
HEARTBEAT_S = 20.0
#: Seconds one compiler run may take, unless ``timeout`` or $REFLOW_BUILD_TIMEOUT says.
DEFAULT_TIMEOUT_S = 300.0
#: Seconds at least for a target's first build here (zig fills its cache), unless
#: ``first_timeout`` or $REFLOW_FIRST_BUILD_TIMEOUT says.
FIRST_BUILD_TIMEOUT_S = 900.0
_MAX_TIMEOUT_S = 7 * 86400.0
_MISSING_TOOLCHAIN = (
    'the C toolchain is not installed (the "ziglang" package): pip install "reflow[build]"'
)
# Marks, in zig's cache, the targets a build has already filled it for (for the first-build note).
_SEEN_DIR = "reflow-targets"


def _zig_cache_dir() -> Path:
    return Path(os.environ.get("ZIG_GLOBAL_CACHE_DIR") or Path.home() / ".cache" / "zig")


def _limit(value: float | None, what: str, env_name: str, default: float) -> float:
    """A time limit in seconds: ``value``, else the environment variable, else ``default``."""
    if value is None:
        raw = os.environ.get(env_name, "").strip()
        if not raw:
            return default
        what = f"${env_name}"
        try:
            value = float(raw)
        except ValueError:
            raise GuestBuildError(f"{what} must be a number of seconds; got {raw[:40]!r}") from None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not 0 < value <= _MAX_TIMEOUT_S
    ):
        raise GuestBuildError(
            f"{what} must be a number of seconds above 0 and at most "
            f"{_MAX_TIMEOUT_S:.0f}; got {str(value)[:40]!r}"
        )
    return float(value)


class _CompilerTimeout(Exception):
    def __init__(self, elapsed: float) -> None:
        super().__init__(f"ran {elapsed:.1f} s")
        self.elapsed = elapsed


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill the compiler and what it started (zig runs clang and lld as children)."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def _run_compiler(
    cmd: list[str], env: dict[str, str], timeout: float, say: Callable[[str], None], what: str
) -> subprocess.CompletedProcess[str]:
    """Run one compiler command for at most ``timeout`` seconds from its own start, saying
    every HEARTBEAT_S seconds that it still runs. Raises _CompilerTimeout past the limit."""
    start = time.monotonic()
    with subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        errors="replace",
        start_new_session=os.name == "posix",
    ) as proc:
        while True:
            left = timeout - (time.monotonic() - start)
            try:
                out, err = proc.communicate(timeout=max(0.0, min(HEARTBEAT_S, left)))
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - start
                if elapsed >= timeout:
                    _kill_group(proc)
                    proc.communicate()
                    raise _CompilerTimeout(elapsed) from None
                say(f"  still compiling {what} ({elapsed:.0f} s)")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _build_one(
    target: str,
    sources: list[Path],
    out_dir: Path,
    name: str,
    sdk_dir: Path,
    optimize: str,
    extra: list[str],
    timeout: float,
    say: Callable[[str], None] = lambda _line: None,
    first: bool = False,
) -> Path:
    sub = out_dir / target
    sub.mkdir(parents=True, exist_ok=True)
    out = sub / artifact_name(name, target)
    tmp = out.with_name(out.name + ".tmp")
    cmd = _command(target, sources, tmp, sdk_dir, optimize, extra)
    before = set(sub.glob("*.lib")) | set(sub.glob("*.pdb"))
    env = dict(os.environ)
    env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(_zig_cache_dir()))
    files = ", ".join(p.name for p in [sdk_dir / "reflow.c", *sources])
    say(f"  compiling {name} for {target}: {files}")
    start = time.monotonic()
    try:
        proc = _run_compiler(cmd, env, timeout, say, f"{name} for {target}")
    except FileNotFoundError as exc:  # pragma: no cover - python itself missing
        raise GuestBuildError(f"cannot run the zig toolchain: {exc}", target=target) from exc
    except _CompilerTimeout as exc:
        why = "its first build on this machine, filling zig's cache; " if first else ""
        raise GuestBuildError(
            f"building {name} for {target} timed out: the compiler ran {exc.elapsed:.1f} s, "
            f"past its limit of {timeout:g} s ({why}raise the limit with --timeout or "
            "$REFLOW_BUILD_TIMEOUT)",
            target=target,
        ) from None
    if proc.returncode != 0:
        stderr = proc.stderr.strip()
        if "No module named ziglang" in stderr:
            raise GuestBuildError(_MISSING_TOOLCHAIN, target=target)
        raise GuestBuildError(
            f"building {name} for {target} failed:\n{stderr[-4000:]}",
            target=target,
            stderr=stderr,
        )
    os.replace(tmp, out)
    say(f"  built {name} for {target} in {time.monotonic() - start:.1f} s")
    seen = Path(env["ZIG_GLOBAL_CACHE_DIR"]) / _SEEN_DIR
    try:
        seen.mkdir(parents=True, exist_ok=True)
        (seen / target).touch()
    except OSError:
        pass  # only the first-build note depends on it
    # zig leaves an import library / debug database next to a DLL; the pack needs neither.
    for leftover in set(sub.glob("*.lib")) | set(sub.glob("*.pdb")):
        if leftover not in before:
            leftover.unlink(missing_ok=True)
    return out


def build_guest(
    sources: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    targets: Iterable[str] = (WASM_TARGET,),
    sdk_dir: str | os.PathLike[str] | None = None,
    optimize: str = "O2",
    extra_flags: Sequence[str] = (),
    jobs: int | None = None,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
    first_timeout: float | None = None,
) -> dict[str, Path]:
    """Compile ``sources`` (plus the SDK runtime) for each target; return ``{target: path}``.

    ``targets`` holds ``"wasm32"``, ``"wasm32-wasi"`` and/or keys of :data:`NATIVE_TARGETS`
    (``"all"`` = wasm32 and every native target). Artifacts go to ``out_dir/<target>/``.
    ``progress`` gets one line at a time (from several threads, never at once).
    ``timeout``: seconds each compiler run may take, from its own start (default
    ``$REFLOW_BUILD_TIMEOUT`` or 300); a target never built on this machine gets at least
    ``first_timeout`` (default ``$REFLOW_FIRST_BUILD_TIMEOUT`` or 900).
    Raises :class:`~reflow.GuestBuildError` with the compiler output when a build fails, and
    at once when the toolchain is not installed.
    """
    wanted = list(targets)
    if "all" in wanted:
        wanted = [WASM_TARGET, *NATIVE_TARGETS]
    for t in wanted:
        if t not in (WASM_TARGET, WASI_TARGET) and t not in NATIVE_TARGETS:
            known = ", ".join([WASM_TARGET, WASI_TARGET, *NATIVE_TARGETS])
            raise GuestBuildError(f"unknown target {t!r}; known targets: {known}", target=t)
    if not _NAME.fullmatch(name):
        raise GuestBuildError(
            f"module name {name[:80]!r} is not a file name stem (letters, "
            "digits, _.-, optionally 'namespace/name')"
        )
    if optimize not in ("O0", "O1", "O2", "O3", "Os", "Oz"):
        raise GuestBuildError(f"optimize must be one of O0..O3, Os, Oz; got {optimize!r}")
    srcs = [Path(s).resolve() for s in sources]
    for s in srcs:
        if not s.is_file():
            raise GuestBuildError(f"source file {s} does not exist")
    sdk = Path(sdk_dir).resolve() if sdk_dir else SDK_DIR
    if not (sdk / "reflow.h").is_file() or not (sdk / "reflow.c").is_file():
        raise GuestBuildError(f"guest SDK not found in {sdk} (expected reflow.h and reflow.c)")
    limit = _limit(timeout, "timeout", "REFLOW_BUILD_TIMEOUT", DEFAULT_TIMEOUT_S)
    first_limit = max(
        limit,
        _limit(first_timeout, "first_timeout", "REFLOW_FIRST_BUILD_TIMEOUT", FIRST_BUILD_TIMEOUT_S),
    )
    if importlib.util.find_spec("ziglang") is None:
        raise GuestBuildError(_MISSING_TOOLCHAIN)
    lock = threading.Lock()

    def say(line: str) -> None:
        if progress is not None:
            with lock:
                progress(line)

    seen = _zig_cache_dir() / _SEEN_DIR
    first = [t for t in wanted if not (seen / t).exists()]
    if first:
        say(
            f"note: first build for {', '.join(first)} on this machine: zig fills its cache "
            f"({_zig_cache_dir()}) once, which can take a few minutes; later builds take seconds"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = jobs or min(len(wanted), os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            t: pool.submit(
                _build_one,
                t,
                srcs,
                out,
                name,
                sdk,
                optimize,
                list(extra_flags),
                first_limit if t in first else limit,
                say,
                t in first,
            )
            for t in wanted
        }
        return {t: f.result() for t, f in futures.items()}
