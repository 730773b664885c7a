"""Helpers for the server-limit tests: ``reflow-registry serve`` in a child process with
extra options (and optionally a file size limit), raw sockets, and the server's descriptors
and temp files as psutil and the data directory see them."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from regtest import free_port


@dataclass
class LimitedServer:
    """``reflow-registry serve --data DATA *options`` on 127.0.0.1; ``fsize``: the child's
    RLIMIT_FSIZE in bytes (writes past it fail with EFBIG)."""

    data: Path
    options: tuple[str, ...] = ()
    fsize: int | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def start(self) -> LimitedServer:
        fsize = self.fsize
        preexec: Callable[[], None] | None = None
        if fsize is not None:

            def preexec() -> None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

        log = self.data.parent / f"server-{self.port}.log"
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reflow.registry._cli",
                    "serve",
                    "--data",
                    str(self.data),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    *self.options,
                ],
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=subprocess.DEVNULL,
                stderr=err,
                preexec_fn=preexec,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry server exited: {log.read_text()}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("registry server did not start in 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> LimitedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fds(self) -> int:
        return int(self.process.num_fds())

    def temp_files(self) -> int:
        return len(list((self.data / "tmp").iterdir()))


def raw(server: LimitedServer, data: bytes = b"", timeout: float = 30) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    if data:
        s.sendall(data)
    return s


def read_answer(s: socket.socket) -> bytes:
    """Everything the server sends until it closes (b"" if it closed without a word, or
    reset the connection)."""
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return out


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])
