"""Fixtures for the registry tests (helpers live in ``regtest.py``; the PostgreSQL and S3
servers in ``backends.py``).

Tests in :data:`BACKEND_MODULES` that use ``registry`` or ``storage_factory`` run once per
storage backend: ``local`` (SQLite + blob files, the embedded default) and ``pg-s3`` (a real
PostgreSQL index + blobs on a real S3 server)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from backends import S3_ENV, Postgres, S3Server, start_postgres, start_s3
from regtest import Registry, setup_registry

from reflow.registry._storage import Storage
from reflow.registry._storage_open import open_storage

BACKENDS = ("local", "pg-s3")
BACKEND_MODULES = {"test_app", "test_storage", "test_storage_backends"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.module.__name__ in BACKEND_MODULES:
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "local"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Postgres]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)  # boto3's usual env vars, as an operator would set them
    server = start_s3()
    yield server
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def backend_urls(request: pytest.FixtureRequest, backend: str) -> tuple[str | None, str | None]:
    """``(index, blobs)`` URLs for ``backend`` (a fresh database and prefix each test)."""
    if backend == "local":
        return None, None
    pg: Postgres = request.getfixturevalue("pg_server")
    s3: S3Server = request.getfixturevalue("s3_server")
    return pg.new_database(), s3.new_prefix()


@pytest.fixture
def storage_factory(backend_urls: tuple[str | None, str | None]) -> Callable[[Path], Storage]:
    """Opens the test's backend with ``data`` as its local directory."""
    index, blobs = backend_urls
    return lambda data: open_storage(data, index, blobs)


@pytest.fixture
def registry(tmp_path: Path, storage_factory: Callable[[Path], Storage]) -> Iterator[Registry]:
    data = tmp_path / "data"
    reg = setup_registry(data, storage=storage_factory(data))
    yield reg
    reg.storage.close()


@pytest.fixture
def server_data(tmp_path: Path) -> Iterator[tuple[Registry, Path]]:
    """A data dir prepared like ``setup_registry`` (namespaces, key, tokens), closed again so
    the server process owns it."""
    data = tmp_path / "srv"
    reg = setup_registry(data)
    reg.storage.close()
    yield reg, data
