"""The code stays clean for whoever reads it next: ruff's lint rules, ruff's formatter and
mypy's strict settings (all configured in pyproject.toml) pass on every file, in the suite, so
CI fails on a regression instead of a reviewer noticing it. ``ruff format host abi registry
tools tests`` fixes the formatting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["host", "abi", "registry", "tools", "workflow", "server", "tests"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_check_is_clean() -> None:
    proc = _run("ruff", "check", "--no-cache", *SOURCES)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean() -> None:
    proc = _run("ruff", "format", "--check", "--no-cache", *SOURCES)
    assert proc.returncode == 0, (
        proc.stdout
        + proc.stderr
        + "\nrun: ruff format host abi registry tools workflow server tests"
    )


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    proc = _run("mypy", "--cache-dir", str(ROOT / ".mypy_cache"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
