"""README's "Durable runs" example runs as written: its first run dies mid-run, the second
resumes from the last checkpoint and prints what its comment says (each row exactly once)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_the_durable_example_crashes_then_resumes(tmp_path: Path) -> None:
    blocks = [
        b
        for b in re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
        if "class Ledger(Actor)" in b
    ]
    assert len(blocks) == 1
    script = tmp_path / "durable_demo.py"
    script.write_text(blocks[0], encoding="utf-8")
    first = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 1, first.stderr  # died at packet 700
    assert (tmp_path / "checkpoints.db").exists()
    second = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    expected = blocks[0].split("# the second run prints ")[1].split(":")[0]
    assert second.stdout.strip() == expected == "(1000, 499500)"
    third = subprocess.run(  # a finished run resumes to nothing more
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert third.stdout.strip() == expected
