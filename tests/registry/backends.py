"""Real storage servers for the registry tests: a PostgreSQL cluster and an S3 server.

PostgreSQL: ``initdb`` + ``pg_ctl`` from PATH, else ``/usr/lib/postgresql/*/bin`` (Debian's
``postgresql`` package; CI installs it in ``.ci/run``). The cluster lives in a temp dir,
listens on 127.0.0.1 and a free port (its Unix socket in the same temp dir), trusts local
connections, and runs as the current user — except as root, which ``initdb`` refuses
("cannot be run as root"): then the cluster's directory is handed to the ``postgres`` user
(which Debian's package creates) and ``initdb``/``pg_ctl`` run as it through ``runuser``;
the tests still connect over TCP as the cluster's superuser ``reflow``. Each test gets a
fresh database.

S3: ``s3rver`` (npm; CI installs it in ``.ci/run``), a standalone S3-compatible HTTP server
that stores objects on disk and checks AWS signature v4 with its fixed ``S3RVER``
credentials. It was chosen over ``moto[server]`` (a mock of AWS's behaviour) as the most
real server that installs here: Zenko CloudServer's npm package depends on git
repositories, which the package registries cannot serve. Each test gets its own key prefix
in one bucket.

Without the binaries the backend runs are skipped locally and fail under CI (``CI=true``).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "reflow-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed (.ci/run installs it)")
    pytest.skip(f"{what} is not installed")


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@dataclass
class Postgres:
    port: int
    root: Path
    pg_ctl: list[str]

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://reflow@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self.pg_ctl, "-D", str(self.root / "db"), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> Postgres:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        _missing("PostgreSQL (initdb, pg_ctl)")
    assert initdb is not None and pg_ctl is not None
    root = Path(tempfile.mkdtemp(prefix="reflow-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the `postgres` user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        os.chmod(root, 0o700)
    db = root / "db"
    subprocess.run(
        [*as_user, initdb, "-D", str(db), "-U", "reflow", "-A", "trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=180,
    )
    port = free_port()
    opts = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
        "-c max_connections=200 -c shared_buffers=32MB"
    )
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(db),
            "-o",
            opts,
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "120",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return Postgres(port, root, [*as_user, pg_ctl])


@dataclass
class S3Server:
    port: int
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_prefix(self) -> str:
        return f"s3://{BUCKET}/t-{secrets.token_hex(6)}?endpoint={self.endpoint}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


#: s3rver's fixed credentials (it verifies signatures made with them).
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "S3RVER",
    "AWS_SECRET_ACCESS_KEY": "S3RVER",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_s3() -> S3Server:
    exe = shutil.which("s3rver")
    if exe is None:
        _missing("s3rver (npm install -g s3rver)")
    assert exe is not None
    root = Path(tempfile.mkdtemp(prefix="reflow-s3-"))
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "-d",
            str(root),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-s",
            "--configure-bucket",
            BUCKET,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"s3rver exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("s3rver did not listen within 60 s")
    return S3Server(port, root, proc)
