"""Fixtures for the sandbox tests: example guests built once per session with the real build
function, a small tick context that follows the runtime's ctx contract, and engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_helpers import TickCtx

from reflow._sandbox._wasm_engine import WasmEngine
from reflow.tools._guest_build import SDK_DIR, build_guest, host_target

EXAMPLES = ("doubler", "counter", "stream", "await_all", "http", "echo")


@pytest.fixture
def make_ctx() -> type[TickCtx]:
    return TickCtx


@pytest.fixture(scope="session")
def guest_wasm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every example built to wasm32 by reflow.tools._guest_build: name -> .wasm path."""
    out = tmp_path_factory.mktemp("guests")
    built = {}
    for name in EXAMPLES:
        built[name] = build_guest(
            [SDK_DIR / "examples" / f"{name}.c"], out, name=name, targets=["wasm32"]
        )["wasm32"]
    return built


@pytest.fixture(scope="session")
def guest_native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every example built as a shared library for this machine: name -> path."""
    target = host_target()
    if target is None:
        pytest.skip("no native target for this machine")
    out = tmp_path_factory.mktemp("native")
    return {
        name: build_guest([SDK_DIR / "examples" / f"{name}.c"], out, name=name, targets=[target])[
            target
        ]
        for name in EXAMPLES
    }


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WasmEngine]:
    eng = WasmEngine(cache_dir=tmp_path_factory.mktemp("wasm-cache"))
    yield eng
    eng.close()
