"""Compiling untrusted WebAssembly in a child process, under a memory and a time limit.

Cranelift's cost is not proportional to a module's size: 117 KB of 40 000 nested
``(block (result i32) ...)`` took 3.1 GB and 9 s to compile in process, 480 KB of nested
``if``\\s 10 s, and a compile in progress cannot be interrupted. So the wasmtime engine hands
the bytes to a compiler process (``python -m reflow._sandbox._wasm_compile``) that compiles
them with the same engine configuration under ``RLIMIT_AS`` (the address space a compile may
add) and sends back ``Module.serialize()``; the parent deserializes it. A compile that passes its
memory limit dies in the child (wasmtime aborts when an allocation fails) and one that passes
its time limit is killed; either way the parent's memory never grows. The compiler
processes are kept (one per compile running at the same time) and end when their stdin
closes, i.e. with the parent.

``RLIMIT_AS`` is enforced on Linux; elsewhere on POSIX only the time limit holds. Where there
is no ``resource`` module (Windows) the engine compiles in process.

Protocol on the child's stdin/stdout: request = ``u32 n`` + JSON header (``config``,
``memory``) + ``u64 n`` + wasm; response = ``u8 status`` (0 compiled, 1 invalid module,
2 out of memory) + ``u64 n`` + serialized module or error text.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

__all__ = [
    "AVAILABLE",
    "CompileDied",
    "CompileInvalid",
    "CompileOutOfMemory",
    "CompileTimeout",
    "compile_isolated",
    "engine_config",
]

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

#: Whether compiles can run in a child process here.
AVAILABLE = resource is not None and os.name == "posix"

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_OK, _INVALID, _OOM = 0, 1, 2
#: How an allocation failure reads (Rust's abort message, errno 12, Python's MemoryError).
_OOM_TEXT = ("memory allocation of", "out of memory", "cannot allocate memory", "memoryerror")


def engine_config(params: dict[str, Any]) -> Any:
    """The wasmtime Config for ``params`` (``max_wasm_stack``, ``memory_reservation``,
    ``memory_guard``): the parent's engine and the compiler's must agree, or the compiled
    module would not deserialize."""
    import wasmtime

    config = wasmtime.Config()
    config.epoch_interruption = True
    config.max_wasm_stack = params["max_wasm_stack"]
    config.cranelift_opt_level = "speed"
    if params["memory_reservation"] is not None:
        # Memories never move: the host can cache a node's memory base across ticks.
        config.memory_reservation = params["memory_reservation"]
        config.memory_guard_size = params["memory_guard"]
        config.memory_reservation_for_growth = 0
        config.memory_may_move = False
    return config


class CompileInvalid(Exception):
    """wasmtime refused the bytes (args[0]: its message)."""


class CompileOutOfMemory(Exception):
    """The compile needed more address space than its limit (args[0]: detail)."""


class CompileTimeout(Exception):
    """The compile ran past its time limit and was killed (args[0]: seconds it ran)."""


class CompileDied(Exception):
    """The compiler process ended without an answer for another reason (args[0]: detail)."""


# -- parent side ------------------------------------------------------------------------------


class _Compiler:
    """One compiler process."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["MALLOC_ARENA_MAX"] = "2"  # glibc reserves 64 MiB of address space per arena
        env["RUST_BACKTRACE"] = "0"  # a dying compiler says why in one line
        # Import reflow from wherever this process did (a source tree on sys.path included).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        # Lives as long as the process (closed in died/kill/close): not a with-block.
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reflow._sandbox._wasm_compile"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            close_fds=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, header: bytes, wasm: bytes, timeout_s: float) -> tuple[int, bytes]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(_U32.pack(len(header)) + header + _U64.pack(len(wasm)))
        stdin.write(wasm)
        stdin.flush()
        deadline = time.monotonic() + timeout_s
        fd = stdout.fileno()
        head = _read(fd, 9, deadline)
        status, n = head[0], _U64.unpack_from(head, 1)[0]
        return status, _read(fd, n, deadline)

    def died(self) -> str:
        code = self.proc.wait()
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - 2000))
        tail = self.stderr.read().decode("utf-8", "replace").strip()
        self.stderr.close()
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        lines = [ln for ln in tail.splitlines() if ln.strip()]
        oom = [ln for ln in lines if any(m in ln.lower() for m in _OOM_TEXT)]
        said = (oom or lines[-1:] or [""])[0]
        return f"{how}: {said}" if said else how

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.stderr.close()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
        else:
            self.stderr.close()


class _Timeout(Exception):
    pass


def _readable(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` has data (or EOF) within ``timeout_s``. ``poll`` where there is one:
    ``select`` refuses a descriptor numbered 1024 or more, which a busy host reaches."""
    if not hasattr(select, "poll"):
        return bool(select.select([fd], [], [], timeout_s)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(max(1, math.ceil(timeout_s * 1000))))


def _read(fd: int, n: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    while n > 0:
        left = deadline - time.monotonic()
        if left <= 0 or not _readable(fd, left):
            raise _Timeout
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


_idle: list[_Compiler] = []
_idle_lock = threading.Lock()


def compile_isolated(
    wasm: bytes, params: dict[str, Any], memory_bytes: int, time_ms: float
) -> bytes:
    """``Module.serialize()`` of ``wasm`` compiled by a compiler process with the engine
    configuration ``params``, adding at most ``memory_bytes`` of address space, within
    ``time_ms``. Raises CompileInvalid, CompileOutOfMemory, CompileTimeout or CompileDied."""
    header = json.dumps({"config": params, "memory": int(memory_bytes)}).encode()
    with _idle_lock:
        compiler = _idle.pop() if _idle else None
    for attempt in range(2):
        if compiler is None or not compiler.alive():
            compiler = _Compiler()
        start = time.monotonic()
        try:
            status, payload = compiler.ask(header, wasm, time_ms / 1000.0)
        except (BrokenPipeError, EOFError) as exc:
            detail = compiler.died()
            compiler = None
            if isinstance(exc, BrokenPipeError) and attempt == 0:
                continue  # it had died while idle: try a fresh one
            if any(m in detail.lower() for m in _OOM_TEXT):
                raise CompileOutOfMemory(detail) from None
            raise CompileDied(detail) from None
        except _Timeout:
            compiler.kill()
            raise CompileTimeout(time.monotonic() - start) from None
        except BaseException:
            compiler.kill()
            raise
        with _idle_lock:
            _idle.append(compiler)
        if status == _OK:
            return payload
        text = payload.decode("utf-8", "replace")
        if status == _OOM:
            raise CompileOutOfMemory(text)
        raise CompileInvalid(text)
    raise AssertionError("unreachable")  # pragma: no cover


def close_compilers() -> None:
    """End the idle compiler processes (they also end by themselves with this process)."""
    with _idle_lock:
        idle, _idle[:] = list(_idle), []
    for c in idle:
        c.close()


# -- child side -------------------------------------------------------------------------------


def _vm_size() -> int | None:
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _read_exact(fh: IO[bytes], n: int) -> bytes | None:
    data = fh.read(n)
    if len(data) != n:
        return None
    return data


def _serve() -> None:
    import wasmtime

    assert resource is not None
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    engines: dict[str, Any] = {}
    while True:
        head = _read_exact(stdin, 4)
        if head is None:
            return
        header = _read_exact(stdin, _U32.unpack(head)[0])
        size = _read_exact(stdin, 8)
        if header is None or size is None:
            return
        wasm = _read_exact(stdin, _U64.unpack(size)[0])
        if wasm is None:
            return
        req = json.loads(header)
        key = json.dumps(req["config"], sort_keys=True)
        engine = engines.get(key)
        if engine is None:
            engine = engines[key] = wasmtime.Engine(engine_config(req["config"]))
            # Start the compiler's threads before the limit, so their stacks are baseline.
            warm = wasmtime.wat2wasm("(module (func) (func) (func) (func))")
            wasmtime.Module(engine, bytes(warm))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        base = _vm_size()
        status, payload = _OK, b""
        try:
            if base is not None:
                cap = base + int(req["memory"])
                if hard != resource.RLIM_INFINITY:
                    cap = min(cap, hard)
                resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
            try:
                payload = bytes(wasmtime.Module(engine, wasm).serialize())
            finally:
                resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        except MemoryError as exc:
            status, payload = _OOM, f"MemoryError: {exc}".encode()
        except wasmtime.WasmtimeError as exc:
            text = str(exc)
            oom = any(m in text.lower() for m in _OOM_TEXT)
            status, payload = (_OOM if oom else _INVALID), text.encode("utf-8", "replace")
        del wasm
        stdout.write(bytes([status]) + _U64.pack(len(payload)))
        stdout.write(payload)
        stdout.flush()


if __name__ == "__main__":
    _serve()
