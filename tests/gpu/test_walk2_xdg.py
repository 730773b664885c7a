"""README walk, second pass: a GPU actor under Mesa's software Vulkan prints nothing.

Mesa printed ``XDG_RUNTIME_DIR is invalid or not set in the environment`` on stderr when a
GPU node found its adapter in a process without a usable ``$XDG_RUNTIME_DIR`` (a container,
a batch job). The adapter request now runs with a private 0700 directory there, and the
variable is put back as it was. Each row starts a child process with the variable in one
state, runs a GPU tick, and reads its stderr and what the variable is afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

CHILD = r"""
import json, os, sys
import numpy as np
from reflow import Message
from reflow._core._catalog import template_actor
from reflow.testing import run_tick
before = os.environ.get("XDG_RUNTIME_DIR")
data = Message.bytes(np.arange(64, dtype="<f4").tobytes())
result = run_tick(template_actor("tpl_gpu_array_expression"), {"a": data},
                  {"expression": "$.a * 2"})
result.raise_for_failures()
from reflow._gpu import shared_device
print(json.dumps({"before": before, "after": os.environ.get("XDG_RUNTIME_DIR"),
                  "device": shared_device().name}))
"""


def _child(xdg: str | None) -> tuple[dict[str, object], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "REFLOW_GPU")}
    if xdg is not None:
        env["XDG_RUNTIME_DIR"] = xdg
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=180, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _dir(mode: int) -> str:
    path = tempfile.mkdtemp(prefix="reflow-walk2-xdg-")
    os.chmod(path, mode)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "state",
    ["unset", "empty", "missing dir", "a file", "mode 0755"],
)
def test_no_xdg_runtime_dir_line_and_the_variable_is_put_back(
    state: str, tmp_path: Path, device: object
) -> None:
    xdg = {
        "unset": None,
        "empty": "",
        "missing dir": str(tmp_path / "nope"),
        "a file": str(tmp_path / "file"),
        "mode 0755": _dir(0o755),
    }[state]
    if state == "a file":
        (tmp_path / "file").write_text("x")
    out, stderr = _child(xdg)
    assert "XDG_RUNTIME_DIR" not in stderr, stderr
    assert out["after"] == out["before"] == xdg  # the user's environment as it was


def test_a_usable_xdg_runtime_dir_is_left_alone(device: object) -> None:
    good = _dir(0o700)
    out, stderr = _child(good)
    assert out["after"] == good
    assert "XDG_RUNTIME_DIR" not in stderr
