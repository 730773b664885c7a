"""reflow.tools._guest_build: one source to wasm32 and to every native target with ziglang."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflow._errors import GuestBuildError
from reflow.tools._guest_build import (
    NATIVE_TARGETS,
    SDK_DIR,
    WASM_TARGET,
    artifact_name,
    build_guest,
    host_target,
)


def test_examples_build_to_wasm(guest_wasm: dict[str, Path]) -> None:
    for name, path in guest_wasm.items():
        data = path.read_bytes()
        assert data[:4] == b"\x00asm", name
        assert path.name == f"{name}.wasm"


def test_wasm_guest_imports_nothing_but_reflow(guest_wasm: dict[str, Path]) -> None:
    import wasmtime

    for path in guest_wasm.values():
        module = wasmtime.Module.from_file(wasmtime.Engine(), str(path))
        assert {i.module for i in module.imports} <= {"reflow"}


@pytest.mark.slow
def test_one_source_builds_for_every_target(tmp_path: Path) -> None:
    built = build_guest(
        [SDK_DIR / "examples" / "doubler.c"], tmp_path, name="doubler", targets=["all"]
    )
    assert set(built) == {WASM_TARGET, *NATIVE_TARGETS}
    magic = {
        "x86_64-linux-gnu": b"\x7fELF",
        "aarch64-linux-gnu": b"\x7fELF",
        "x86_64-windows": b"MZ",
        "x86_64-macos": b"\xcf\xfa\xed\xfe",
        "aarch64-macos": b"\xcf\xfa\xed\xfe",
        WASM_TARGET: b"\x00asm",
    }
    for target, path in built.items():
        assert path.read_bytes().startswith(magic[target]), target
        assert path.name == artifact_name("doubler", target)
        assert path.parent.name == target
    # the native libraries export the ABI entry points
    for target in ("x86_64-linux-gnu", "x86_64-windows", "aarch64-macos"):
        assert b"reflow_tick" in built[target].read_bytes()
    assert not list((tmp_path / "x86_64-windows").glob("*.lib"))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"targets": ["riscv-plan9"]}, "unknown target 'riscv-plan9'"),
        ({"optimize": "O9"}, "optimize must be one of"),
        ({"sdk_dir": "/nonexistent"}, "guest SDK not found"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(GuestBuildError, match=fragment):
        build_guest([SDK_DIR / "examples" / "doubler.c"], tmp_path, name="x", **kwargs)  # type: ignore[arg-type]


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(GuestBuildError, match="does not exist"):
        build_guest([tmp_path / "nope.c"], tmp_path, name="x")


def test_compile_error_carries_compiler_output(tmp_path: Path) -> None:
    src = tmp_path / "broken.c"
    src.write_text('#include "reflow.h"\nint broken(void) { return undefined_thing; }\n')
    with pytest.raises(GuestBuildError) as info:
        build_guest([src], tmp_path / "out", name="broken")
    assert info.value.target == WASM_TARGET
    assert "undefined_thing" in info.value.stderr
    assert "building broken for wasm32 failed" in str(info.value)


def test_host_target_is_a_known_triple() -> None:
    t = host_target()
    assert t is None or t in NATIVE_TARGETS


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("wasm32", "a.wasm"),
        ("x86_64-linux-gnu", "liba.so"),
        ("aarch64-macos", "liba.dylib"),
        ("x86_64-windows", "a.dll"),
    ],
)
def test_artifact_names(target: str, name: str) -> None:
    assert artifact_name("a", target) == name


def test_wasi_libc_build_runs_in_the_sandbox(tmp_path: Path) -> None:
    """wasm32-wasi links wasi-libc (malloc etc.); echo makes no system call, so it imports no
    WASI and runs without the 'wasi' grant."""
    from sandbox_helpers import TickCtx

    from reflow._core._messages import Message
    from reflow._sandbox._wasm_engine import WasmEngine
    from reflow.tools._guest_build import WASI_TARGET

    path = build_guest(
        [SDK_DIR / "examples" / "echo.c"], tmp_path, name="echo", targets=[WASI_TARGET]
    )[WASI_TARGET]
    assert path.parent.name == WASI_TARGET
    eng = WasmEngine(cache_dir=False)
    module = eng.load(path)
    assert module.wasi_imports == []
    node = module.actor().open_node("e", {})
    m = Message.bytes(b"x" * 70000)  # more than one 64 KiB arena chunk
    ctx = TickCtx({"in": m})
    node.run(ctx)
    assert ctx.outputs == [("in", m)]
    node.close()
    eng.close()
