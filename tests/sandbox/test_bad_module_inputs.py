"""Every engine refuses a bad module path or bytes with a ReflowError naming the path and
what was expected — never FileNotFoundError, IsADirectoryError or a wasmtime/extism error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reflow import ReflowError, default_engine
from reflow._sandbox._extism_engine import ExtismModule
from reflow._sandbox._native_engine import NativeLibrary


def _missing(tmp: Path) -> Path:
    return tmp / "nope.wasm"


def _directory(tmp: Path) -> Path:
    d = tmp / "dir.wasm"
    d.mkdir()
    return d


def _not_wasm(tmp: Path) -> Path:
    p = tmp / "text.wasm"
    p.write_text("hello, not a module")
    return p


def _empty(tmp: Path) -> Path:
    p = tmp / "empty.wasm"
    p.write_bytes(b"")
    return p


def _truncated(tmp: Path) -> Path:
    p = tmp / "trunc.wasm"
    p.write_bytes(b"\x00asm\x01\x00\x00\x00\x01\x05")  # a type section cut short
    return p


def _unreadable(tmp: Path) -> Path:
    p = tmp / "link.wasm"
    p.symlink_to(tmp / "loop.wasm")
    (tmp / "loop.wasm").symlink_to(p)
    return p


CASES = [
    ("missing", _missing, "nope.wasm"),
    ("directory", _directory, "dir.wasm"),
    ("not_wasm", _not_wasm, "text.wasm"),
    ("empty", _empty, "empty.wasm"),
    ("truncated", _truncated, "trunc.wasm"),
    ("symlink_loop", _unreadable, "link.wasm"),
]
LOADERS: list[tuple[str, Any]] = [
    ("wasmtime", lambda p: default_engine().load(p)),
    ("wasmtime_str", lambda p: default_engine().load(str(p))),
    ("extism", lambda p: ExtismModule.load(p).actor().open_node("n", {})),
    ("native", lambda p: NativeLibrary(p)),
]


@pytest.mark.parametrize("loader", [fn for _, fn in LOADERS], ids=[n for n, _ in LOADERS])
@pytest.mark.parametrize("make, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_module_input_is_a_reflow_error(
    tmp_path: Path, loader: Any, make: Any, fragment: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(ReflowError) as info:
        loader(path)
    assert fragment in str(info.value), str(info.value)  # names the file it was given
    assert "Traceback" not in str(info.value)
    assert len(str(info.value)) < 2000


@pytest.mark.parametrize("name, loader", LOADERS[:3], ids=[n for n, _ in LOADERS[:3]])
def test_missing_file_names_the_path(tmp_path: Path, name: str, loader: Any) -> None:
    with pytest.raises(ReflowError, match=r"nope\.wasm.*(No such file|does not exist)"):
        loader(tmp_path / "nope.wasm")
