"""The reflow-hpc documentation, run against ``reflow.workflow``.

Set ``REFLOW_HPC_SDIST`` to an unpacked reflow-hpc sdist (or its ``.tar.gz``); ``.ci/run``
downloads 2604.4.0. Without it this module is skipped.

What is run:

* the ```python blocks of README.md, docs/getting-started.md, docs/guide.md and
  docs/python-reference.md, one namespace per page, in page order (a page's blocks build on each
  other), cwd a fresh tmp dir holding the data files the text implies (``data.csv``,
  ``input.csv``); ``from reflow import`` / ``import reflow`` read ``reflow.workflow``, and the
  absolute ``/tmp/...`` and ``/scratch/...`` run dirs point into the tmp dir;
* the ```console blocks of docs/cli-reference.md, docs/getting-started.md and README.md that
  call ``python pipeline.py <subcommand>``, in subprocesses, against the script the page's own
  blocks make (``RUN_ID`` and the example run ids are the ids the runs got);
* each row may add code before a block (a name the text uses but never defines, a fresh
  workflow where a page re-defines a job name for a new example) and a check after it (what the
  prose says the block does); every edit to a block's own text is asserted to apply.

Every block of those pages is claimed by exactly one row: run, skip (with its reason) or
``xfail(strict=True)`` (with what is missing), so a fix shows up as an XPASS to flip.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hpc_docs_table import PY, SCRIPTS, SH, Row

SDIST_ENV = "REFLOW_HPC_SDIST"
if not os.environ.get(SDIST_ENV):
    pytest.skip(f"{SDIST_ENV} is not set (an unpacked reflow-hpc sdist)", allow_module_level=True)

pytestmark = pytest.mark.slow

SHELL = ("console", "bash", "sh")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_ID = re.compile(r"\b[A-Za-z0-9_.]+-\d{8}-[0-9a-f]{4}\b")


def _sdist_root() -> Path:
    given = Path(os.environ[SDIST_ENV]).expanduser()
    if given.is_file():
        out = Path(tempfile.mkdtemp(prefix="reflow-hpc-sdist-"))
        atexit.register(shutil.rmtree, out, True)
        with tarfile.open(given) as tar:
            tar.extractall(out, filter="data")
        given = out
    if (given / "README.md").is_file() and (given / "docs").is_dir():
        return given
    inner = [p for p in given.glob("reflow_hpc-*") if (p / "docs").is_dir()]
    if len(inner) != 1:
        raise RuntimeError(f"{SDIST_ENV}={given}: no reflow_hpc-*/docs in it")
    return inner[0]


ROOT = _sdist_root()


def _blocks(page: str, langs: tuple[str, ...]) -> list[str]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return [m.group(2) for m in _FENCE.finditer(text) if m.group(1) in langs]


PREAMBLE = """
from pathlib import Path
from typing import Annotated, Literal
from reflow.workflow import Flow, Param, Result, RunDir, Workflow
"""

#: data files the text implies (``--source data.csv``)
DATA = {"data.csv": "a,b\n1,2\n", "input.csv": "x\n1\n"}


def rewrite(code: str, tmp: Path) -> str:
    code = re.sub(r"^(\s*)from reflow import", r"\1from reflow.workflow import", code, flags=re.M)
    code = re.sub(
        r"^(\s*)import reflow\s*$", r"\1import reflow.workflow as reflow", code, flags=re.M
    )
    return re.sub(r"(?<=[\"'])/(tmp|scratch)/", f"{tmp}/", code)


def _picks(blocks: list[str], marker: str, page: str, *, many: bool = False) -> list[int]:
    hits = [i for i, b in enumerate(blocks) if marker in b]
    assert hits, f"{page}: marker {marker!r} picks no block"
    assert many or len(hits) == 1, f"{page}: marker {marker!r} picks {len(hits)} blocks"
    assert not many or len({blocks[i] for i in hits}) == 1, f"{page}: {marker!r}: blocks differ"
    return hits


def _pick(blocks: list[str], marker: str, page: str) -> int:
    return _picks(blocks, marker, page)[0]


def _edited(code: str, row: Row, page: str) -> str:
    for old, new in row.edits:
        assert old in code, f"{page}: edit {old!r} no longer applies"
        code = code.replace(old, new)
    return code


def cli_help(wf: Any) -> str:
    """The text of ``submit --help`` (the flags a workflow's parameters became)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        wf.cli(["submit", "--help"])
    return out.getvalue()


@dataclass
class Page:
    ns: dict[str, Any]
    tmp: Path
    done: dict[int, BaseException | None] = field(default_factory=dict)


_PAGES: dict[str, Page] = {}
COUNTS = {"ran": 0, "skipped": 0, "xfailed": 0, "xpassed": 0}


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _page(page: str, tmp_root: Path) -> Page:
    if page not in _PAGES:
        tmp = tmp_root / re.sub(r"\W", "_", page)
        tmp.mkdir(parents=True)
        for name, text in DATA.items():
            (tmp / name).write_text(text)
        ns: dict[str, Any] = {"__name__": "reflow_hpc_docs", "TMP": tmp, "json": json}
        ns["cli_help"] = cli_help
        exec(PREAMBLE, ns)
        _PAGES[page] = Page(ns, tmp)
    return _PAGES[page]


def _outcome(page: str, upto: int, tmp_root: Path) -> BaseException | None:
    """Run the page's blocks in order up to ``upto`` (each once); block ``upto``'s error."""
    state = _page(page, tmp_root)
    for k, row in enumerate(PY[page][: upto + 1]):
        if k in state.done or row.kind == "skip":
            continue
        blocks = _blocks(page, ("python",))
        code = _edited(blocks[_pick(blocks, row.marker, page)], row, page)
        err: BaseException | None = None
        out = io.StringIO()
        try:
            with _cwd(state.tmp), contextlib.redirect_stdout(out):
                for part in (row.before, rewrite(code, state.tmp), textwrap.dedent(row.after)):
                    if part.strip():
                        exec(compile(part, f"<{page} block {k}>", "exec"), state.ns)
        except Exception as exc:  # recorded; the row's own test asserts it
            err = exc
        state.done[k] = err
    return state.done[upto]


@pytest.fixture(scope="module")
def docs_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hpc-docs")


def _params() -> Iterator[Any]:
    for page, rows in PY.items():
        for k, row in enumerate(rows):
            marks = []
            if row.kind == "skip":
                marks.append(pytest.mark.skip(reason=row.why))
            elif row.kind == "xfail":
                marks.append(pytest.mark.xfail(reason=row.why, strict=True))
            yield pytest.param(page, k, id=f"{page}:{k}", marks=marks)


def test_every_block_is_claimed() -> None:
    for page, rows in PY.items():
        blocks = _blocks(page, ("python",))
        picked = sorted(_pick(blocks, r.marker, page) for r in rows)
        assert picked == list(range(len(blocks))), f"{page}: rows claim blocks {picked}"
        assert [_pick(blocks, r.marker, page) for r in rows] == picked, f"{page}: rows out of order"
    for page, srows in SH.items():
        blocks = _blocks(page, SHELL)
        picked = sorted(i for r in srows for i in _picks(blocks, r.marker, page, many=r.many))
        assert picked == list(range(len(blocks))), f"{page}: shell rows claim blocks {picked}"


@pytest.mark.parametrize(("page", "k"), list(_params()))
def test_python_block(page: str, k: int, docs_tmp: Path) -> None:
    row = PY[page][k]
    err = _outcome(page, k, docs_tmp)
    _count(row.kind, err)
    if err is not None:
        tb = "".join(traceback.format_exception(err))[-2000:]
        raise AssertionError(f"{page} block {k} ({row.marker!r}):\n{tb}")


def _count(kind: str, err: BaseException | None) -> None:
    if kind == "xfail":
        COUNTS["xfailed" if err is not None else "xpassed"] += 1
    else:
        COUNTS["ran"] += 1


# -- shell blocks ------------------------------------------------------------------------------

MAIN = 'if __name__ == "__main__":\n    wf.cli()\n'


def _script(name: str, tmp: Path) -> str:
    page, markers, edits = SCRIPTS[name]
    blocks = _blocks(page, ("python",))
    parts = []
    for marker in markers:
        code = blocks[_pick(blocks, marker, page)]
        for old, new in edits:
            if old in code:
                code = code.replace(old, new)
        parts.append(code.replace(MAIN, ""))
    text = PREAMBLE + rewrite("\n".join(parts), tmp) + "\n" + MAIN
    for _old, new in edits:
        assert new in text, f"script {name}: edit {_old!r} did not apply"
    return text


@dataclass
class Shell:
    tmp: Path
    env: dict[str, str]
    ids: list[str] = field(default_factory=list)
    done: dict[int, BaseException | None] = field(default_factory=dict)


_SHELLS: dict[str, Shell] = {}


def _shell(page: str, tmp_root: Path) -> Shell:
    if page not in _SHELLS:
        tmp = tmp_root / ("sh_" + re.sub(r"\W", "_", page))
        tmp.mkdir(parents=True)
        env = dict(os.environ, REFLOW_CACHE_DIR=str(tmp / "cache"), HOME=str(tmp / "home"))
        env.pop("REFLOW_STORE_PATH", None)
        _SHELLS[page] = Shell(tmp, env)
    return _SHELLS[page]


def _commands(text: str) -> list[str]:
    return [line[2:].strip() for line in text.splitlines() if line.startswith("$ ")]


def _argv(cmd: str, state: Shell) -> list[str]:
    cmd = re.sub(r"(?<![\w/])/(tmp|scratch)/", f"{state.tmp}/", cmd)
    if state.ids:
        latest = list(dict.fromkeys(reversed(state.ids)))
        for n, name in enumerate(("RUN1", "RUN2", "RUN3")):
            cmd = re.sub(rf"\b{name}\b", latest[min(n, len(latest) - 1)], cmd)
        cmd = re.sub(r"\bRUN_ID\b", latest[0], cmd)
        cmd = _ID.sub(latest[0], cmd)
    argv = cmd.split()
    assert argv[:2] == ["python", "pipeline.py"], f"not a pipeline command: {cmd!r}"
    return [sys.executable, *argv[1:]]


def _run(state: Shell, where: Path, cmd: str, status: int) -> str:
    argv = _argv(cmd, state)
    proc = subprocess.run(
        argv, cwd=where, env=state.env, capture_output=True, text=True, timeout=180
    )
    state.ids += _ID.findall(proc.stdout)
    assert proc.returncode == status, (
        f"{cmd!r}: exit {proc.returncode}, not {status}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


def _sh_block(page: str, k: int, state: Shell) -> None:
    row = SH[page][k]
    blocks = _blocks(page, SHELL)
    text = blocks[_pick(blocks, row.marker, page)]
    for old, new in row.edits:
        assert old in text, f"{page}: edit {old!r} no longer applies"
        text = text.replace(old, new)
    where = state.tmp / row.script
    if not (where / "pipeline.py").exists():
        where.mkdir(exist_ok=True)
        (where / "pipeline.py").write_text(_script(row.script, state.tmp))
        for name, data in DATA.items():
            (where / name).write_text(data)
    for name, content in row.files:
        if content is None:
            (where / name).unlink(missing_ok=True)
        else:
            (where / name).write_text(content)
    out = ""
    for cmd, status in row.setup:
        out += _run(state, where, f"python pipeline.py {cmd}", status)
    commands = _commands(text)
    assert commands, f"{page}: no $ command in block {k}"
    for cmd in commands:
        if row.synopsis:
            sub = cmd.split()[2]
            shown = _run(state, where, f"python pipeline.py {sub} --help", 0)
            for flag in set(re.findall(r"--[a-z][a-z-]*", cmd)) - {"--param"}:  # a placeholder
                assert flag in shown, f"{sub} --help does not show {flag}"
            out += shown
        else:
            out += _run(state, where, cmd, row.status)
    at = 0
    for frag in row.expect:
        found = out.find(frag, at)
        assert found >= 0, f"{page} block {k}: {frag!r} not in the output (after {at}):\n{out}"
        at = found + len(frag)


def _sh_outcome(page: str, upto: int, tmp_root: Path) -> BaseException | None:
    state = _shell(page, tmp_root)
    for k, row in enumerate(SH[page][: upto + 1]):
        if k in state.done or row.kind == "skip":
            continue
        try:
            _sh_block(page, k, state)
            state.done[k] = None
        except Exception as exc:  # recorded; the row's own test asserts it
            state.done[k] = exc
    return state.done[upto]


def _sh_params() -> Iterator[Any]:
    for page, rows in SH.items():
        for k, row in enumerate(rows):
            marks = []
            if row.kind == "skip":
                marks.append(pytest.mark.skip(reason=row.why))
            elif row.kind == "xfail":
                marks.append(pytest.mark.xfail(reason=row.why, strict=True))
            yield pytest.param(page, k, id=f"sh:{page}:{k}", marks=marks)


@pytest.mark.parametrize(("page", "k"), list(_sh_params()))
def test_shell_block(page: str, k: int, docs_tmp: Path) -> None:
    row = SH[page][k]
    err = _sh_outcome(page, k, docs_tmp)
    _count(row.kind, err)
    if err is not None:
        raise AssertionError(f"{page} shell block {k} ({row.marker!r}): {err}")


def test_zz_counts(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = sum(r.kind == "skip" for rows in (*PY.values(), *SH.values()) for r in rows)
    with capsys.disabled():
        print(
            f"\nreflow-hpc docs: {COUNTS['ran']} blocks ran, {skipped} skipped, "
            f"{COUNTS['xfailed']} xfailed, {COUNTS['xpassed']} xpassed"
        )
