"""The distribution: a plain (non-editable) wheel carries every package and data file the
runtime needs, mapped from the repository's top-level folders."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("reflow-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.parametrize(
    "member",
    [
        "reflow/__init__.py",
        "reflow/_core/__init__.py",
        "reflow/_core/_scheduler.py",
        "reflow/_sandbox/__init__.py",
        "reflow/_sandbox/_wasm_engine.py",
        "reflow/_loader/__init__.py",
        "reflow/_loader/_packs.py",
        "reflow/py.typed",
        "reflow/abi/__init__.py",
        "reflow/abi/ABI.md",
        "reflow/abi/PACK_FORMAT.md",
        "reflow/abi/vectors/messages.json",
        "reflow/registry/__init__.py",
        "reflow/library/__init__.py",
        "reflow/tools/__init__.py",
        "reflow/server/__init__.py",
        "reflow/server/static/index.html",
        "reflow/server/static/app.js",
        "reflow/workflow/__init__.py",
        "reflow/abi/_ccodec/ccodec.c",
        "reflow/sdk_guest/reflow.h",
        "reflow/sdk_guest/reflow.c",
        "reflow/sdk_guest/examples/doubler.c",
    ],
)
def test_wheel_carries(wheel: zipfile.ZipFile, member: str) -> None:
    assert member in wheel.namelist()


#: wheel folders -> source folders (pyproject's package-dir)
_SOURCES = {
    "reflow/abi/": "abi/",
    "reflow/registry/": "registry/",
    "reflow/tools/": "tools/",
    "reflow/server/": "server/",
    "reflow/workflow/": "workflow/",
    "reflow/sdk_guest/": "sdk-guest/",
    "reflow/": "host/",
}


def test_every_module_in_the_wheel_has_its_source(wheel: zipfile.ZipFile) -> None:
    """No module from a stale build folder (one that moved or was deleted) rides along."""
    stale = []
    for name in wheel.namelist():
        if not name.startswith("reflow/") or not name.endswith(".py"):
            continue
        prefix = next(p for p in _SOURCES if name.startswith(p))
        if not (ROOT / (_SOURCES[prefix] + name[len(prefix) :])).is_file():
            stale.append(name)
    assert stale == []


def test_wheel_declares_console_scripts(wheel: zipfile.ZipFile) -> None:
    (entry,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(entry).decode()
    assert "reflow-demo = reflow._demo:main" in text
    assert "reflow-pack = reflow.tools._cli:main" in text
