"""Helpers for tests/compat: offbit_reflow's own material, run with only the import changed.

The SDK sources are not part of this project: they are read from ``$REFLOW_SDK_SRC``
(default ``../sdk-src/extracted`` beside the checkout, an unpacked offbit-reflow 0.2.9
sdist), and the tests that need them skip when it is missing. A tutorial is copied to a
temporary folder, ``offbit_reflow`` becomes ``reflow`` in its import lines, and it runs in a
subprocess of this interpreter.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reflow._loader._trust import TrustStore
from reflow.abi._signing import generate_key, write_keypair

ROOT = Path(__file__).resolve().parents[2]
SDK_SRC = Path(os.environ.get("REFLOW_SDK_SRC", ROOT.parent / "sdk-src" / "extracted"))
EXAMPLES = SDK_SRC / "sdk" / "python" / "examples"
OPENAPI = ROOT.parent / "shared" / "openapi"
_IMPORT = re.compile(r"^(\s*)(import|from)\s+offbit_reflow\b", re.M)


def needs(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is not here (offbit_reflow's sdist, or the shared descriptions)")


def copy_tutorial(name: str, dest: Path) -> Path:
    """``examples/<name>`` copied to ``dest``, its imports of offbit_reflow made reflow's."""
    src = EXAMPLES / name
    needs(src)
    out = dest / name
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("out", "__pycache__", "*.rflpack"))
    for py in out.glob("*.py"):
        changed = _IMPORT.sub(r"\1\2 reflow", py.read_text(encoding="utf-8"))
        assert not _IMPORT.search(changed)
        py.write_text(changed, encoding="utf-8")
    return out


def trusting(tmp: Path) -> tuple[Path, dict[str, str]]:
    """A fresh signing key trusted for ``reflow.pack.api_services`` in a throwaway trust
    store; returns the private key's path and the environment that uses that store."""
    key_path, pub, _ = write_keypair(tmp / "keys" / "me", generate_key())
    TrustStore(tmp / "trust").add(pub, names=["reflow.pack.api_services"])
    return key_path, {
        "REFLOW_TRUST_DIR": str(tmp / "trust"),
        "REFLOW_CACHE_DIR": str(tmp / "cache"),
    }


def run_script(
    folder: Path, argv: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    for k in ("REFLOW_TUT07_LIVE", "GITHUB_API_KEY", "SLACK_API_KEY"):
        if k not in env:
            full.pop(k, None)
    return subprocess.run(
        [sys.executable, *argv],
        cwd=folder,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
