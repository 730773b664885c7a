"""Real checkpoint stores for the durable-run tests: a SQLite file, a PostgreSQL cluster
(``tests/registry/backends.py``'s ``start_postgres``) and a ``redis-server`` on 127.0.0.1.

Without PostgreSQL or redis-server the rows of those backends are skipped locally and fail
under CI (``CI=true``), as the registry's backend tests do.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).with_name("registry")))
from backends import Postgres, _missing, free_port, start_postgres

BACKENDS = ["sqlite", "postgres", "redis"]


class RedisServer:
    """``redis-server`` on a free port of 127.0.0.1, its files in a temp dir, no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _missing("redis-server")
        assert binary is not None
        self.root = Path(tempfile.mkdtemp(prefix="reflow-redis-"))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.root),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        self.db = 0

    def new_url(self) -> str:
        self.db = (self.db + 1) % 16  # a fresh logical database per test, flushed
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, db=self.db)
        client.flushdb()
        client.close()
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def durable_pg() -> Iterator[Postgres]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def durable_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each backend, as a URL."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'ckpt.db'}"
    if request.param == "postgres":
        pg: Postgres = request.getfixturevalue("durable_pg")
        return pg.new_database()
    server: RedisServer = request.getfixturevalue("durable_redis")
    return server.new_url()
