"""Fixtures for the registry tests (helpers live in ``regtest.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from regtest import Registry, setup_registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = setup_registry(tmp_path / "data")
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
