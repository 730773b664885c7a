"""Guest builds say what they do (issue #8 row 17): each target and file as it compiles, a
note on the first build of a target that zig fills its cache, and, without the ``[build]``
extra, one line that says how to get the toolchain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reflow.sdk_guest import SDK_DIR
from reflow.tools._guest_build import WASM_TARGET, build_guest


def test_progress_names_targets_and_files(tmp_path: Path) -> None:
    src = SDK_DIR / "examples"
    source = sorted(src.glob("*.c"))[0]
    lines: list[str] = []
    built = build_guest([source], tmp_path, name="p", targets=[WASM_TARGET], progress=lines.append)
    assert built[WASM_TARGET].is_file()
    text = "\n".join(lines)
    assert WASM_TARGET in text and source.name in text, text


BLOCK_ZIG = """
import sys
sys.modules["ziglang"] = None  # as if the [build] extra were not installed
from reflow.tools._cli import main
main(["build", sys.argv[1]])
"""


def test_without_the_toolchain_build_says_how_to_get_it(tmp_path: Path) -> None:
    proj = tmp_path / "p"
    subprocess.run(
        [sys.executable, "-m", "reflow.tools._cli", "new", str(proj)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_ZIG, str(proj)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    assert 'pip install "reflow[build]"' in proc.stderr
    assert "Traceback" not in proc.stderr
