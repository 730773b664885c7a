"""What the reflow-hpc test files share (a plain module they import, as ``raycluster.py``):
the backends a row runs on (local, and a real Ray cluster on 127.0.0.1 for the slow rows), the
fixtures that run a workflow on the row's backend, and the ``python pipeline.py ...`` driver
the CLI tests run in subprocesses against a real SQLite run index.

A test module takes a fixture by naming it at module level (``go = hpc.go``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reflow.workflow import Run, Workflow

__all__ = [
    "BACKENDS",
    "CREATED",
    "SCRIPT",
    "Cli",
    "cache_dir",
    "go",
    "parametrize_backends",
    "ray_cluster",
]

#: the backends a row that runs a workflow runs on (Ray's rows are slow)
BACKENDS = ["local", pytest.param("ray", marks=pytest.mark.slow)]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test its own cache dir (and so its own default run index)."""
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A real Ray cluster (a head and one worker on 127.0.0.1); its address."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'reflow[ray]'")
    from raycluster import cluster_fixture

    yield from cluster_fixture(workers=1)


@pytest.fixture
def go(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Run]:
    """``go(wf, **kwargs)``: run ``wf`` on the row's backend in ``tmp_path / "run"``, as the
    guide runs it; ``go.backend`` names the backend."""
    backend = request.param

    def run(wf: Workflow, **kwargs: Any) -> Run:
        if backend == "local":
            return wf.run_local(run_dir=tmp_path / "run", **kwargs)
        address = request.getfixturevalue("ray_cluster")
        return wf.run(tmp_path / "run", backend="ray", address=address, **kwargs)

    run.backend = backend  # type: ignore[attr-defined]
    return run


def parametrize_backends(fn: Any) -> Any:
    """Run a ``go`` test once per backend of :data:`BACKENDS`."""
    return pytest.mark.parametrize("go", BACKENDS, indirect=True)(fn)


# ---------------------------------------------------------------------- the command line

SCRIPT = """
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from reflow.workflow import Workflow, Param, Result

wf = Workflow("etl")

@wf.job
def extract(source: Annotated[str, Param(help="Input file path")],
            n: Annotated[int, Param(help="how many chunks")] = 4) -> list[str]:
    return [f"{Path(source).stem}_{i}" for i in range(n)]

@wf.job(array=True, cache=True)
def transform(chunk: Annotated[str, Result(step="extract")],
              nap: Annotated[float, Param(help="seconds each element sleeps")] = 0.0) -> str:
    if Path("SLOW").exists():
        time.sleep(nap)
    if Path("FAIL-" + chunk).exists():
        raise RuntimeError(f"{chunk} is bad")
    return chunk.upper()

@wf.job
def load(results: Annotated[list[str], Result(step="transform")]) -> str:
    return f"loaded {len(results)} items"

if __name__ == "__main__":
    wf.cli()
"""

CREATED = re.compile(r"^Created run (\S+) in (.+)$", re.M)


class Cli:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.store = tmp / "index" / "runs.sqlite"
        (tmp / "pipeline.py").write_text(SCRIPT)
        (tmp / "data.csv").write_text("a\n")
        self.env = dict(os.environ, REFLOW_CACHE_DIR=str(tmp / "cache"))
        self.env.pop("REFLOW_STORE_PATH", None)

    def argv(self, *args: str, store: bool = True) -> list[str]:
        extra = ["--store-path", str(self.store)] if store and args and args[0] in STORED else []
        return [sys.executable, "pipeline.py", *args, *extra]

    def __call__(
        self, *args: str, code: int = 0, store: bool = True, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            self.argv(*args, store=store),
            cwd=self.tmp,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        assert p.returncode == code, f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
        assert "Traceback" not in p.stderr, p.stderr
        return p

    def submit(self, *args: str, code: int = 0) -> str:
        p = self("submit", "--run-dir", "r", "--source", "data.csv", *args, code=code)
        m = CREATED.search(p.stdout)
        assert m, p.stdout
        return m.group(1)

    def snap(self, run_id: str) -> dict[str, object]:
        snap = json.loads(self("status", run_id, "--json").stdout)
        assert isinstance(snap, dict)
        return snap


STORED = {"submit", "run", "status", "runs", "retry", "cancel"}
