"""README "Extism plugins": ``function_actor(export, output=...)`` with an output mode it does
not know is a SandboxError naming the export and the modes (it was a bare ValueError)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import wasmtime

from reflow import ExtismModule, SandboxError

PLAIN_WAT = """(module
  (memory (export "memory") 1)
  (func (export "f") (result i32) (i32.const 0)))"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("extism-walk") / "plain.wasm"
    path.write_bytes(wasmtime.wat2wasm(PLAIN_WAT))
    return path


@pytest.mark.parametrize("output", ["xml", "", "STRING", None, 5, ["string"]])
def test_unknown_output_mode_names_the_export_and_the_modes(plugin: Path, output: Any) -> None:
    module = ExtismModule.load(plugin)
    with pytest.raises(SandboxError, match="output must be one of string, bytes, json") as info:
        module.function_actor("f", output=output)
    assert "function_actor('f')" in str(info.value)
    assert repr(output) in str(info.value)
    assert isinstance(info.value, ValueError)  # what it raised before, still caught
