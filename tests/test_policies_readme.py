"""README's "Policies" example runs as written and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_the_policies_example_runs_as_written() -> None:
    blocks = [
        b
        for b in re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
        if "class Lookup(Actor)" in b
    ]
    assert len(blocks) == 1
    code = blocks[0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md:Policies", "exec"), {"__name__": "readme_policies"})
    expected = [
        line.split("# ")[1].split(":")[0] for line in code.splitlines() if line.startswith("print(")
    ]
    assert printed.getvalue().splitlines() == expected
