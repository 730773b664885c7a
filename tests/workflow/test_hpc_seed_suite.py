"""reflow-hpc's own test suite, run against ``reflow.workflow``.

Set ``REFLOW_HPC_SDIST`` to an unpacked reflow-hpc sdist (or its ``.tar.gz``); ``.ci/run``
downloads 2604.4.0. Without it this module is skipped.

The sdist's ``tests/`` is copied into a tmp dir and only its imports are rewritten, as a user
switching from the seed would: ``from reflow import X`` reads ``reflow.workflow.X`` and
``import reflow`` is ``reflow.workflow``. An import from one of the seed's internal modules
(``reflow.stores.sqlite``, ``reflow.cli``, ...) is ours only where :data:`PUBLIC_TWINS` names
a public name that is the same thing (``reflow.stores.sqlite.SqliteStore`` is
``reflow.workflow.SqliteStore``). Every other imported name, and every public name
``reflow.workflow`` lacks, is bound to a stand-in that skips the test using it with the
reason ``internal: <module>`` or ``missing: <name>``; so an import fails only the tests that
use it. Nothing else in the test bodies is changed.

The suite runs with pytest in a subprocess (``--junitxml``: one outcome per test), its
``HOME``/``XDG_*`` dirs in the tmp dir, and each outcome is checked against
``hpc_seed_suite.toml``: ``pass`` must pass; ``skip: <reason>`` must not pass, and where the
reason is ``internal: ...``/``missing: ...`` the test must be skipped with exactly that reason.
So a row that starts passing, or a test the table does not list, fails this test: the table
cannot rot. ``REFLOW_HPC_SUITE_UPDATE=1`` rewrites the table from the outcomes (kept reasons
where a row still does not pass; a new failure gets ``skip: fails: <error>`` to be reworded).
"""

from __future__ import annotations

import ast
import atexit
import collections
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SDIST_ENV = "REFLOW_HPC_SDIST"
if not os.environ.get(SDIST_ENV):
    pytest.skip(f"{SDIST_ENV} is not set (an unpacked reflow-hpc sdist)", allow_module_level=True)

pytestmark = pytest.mark.slow

TABLE = Path(__file__).with_name("hpc_seed_suite.toml")

#: (seed module, name) -> our public name in ``reflow.workflow`` that is the same thing
PUBLIC_TWINS = {
    ("reflow.stores.sqlite", "SqliteStore"): "SqliteStore",
    ("reflow.stores", "SqliteStore"): "SqliteStore",
    ("reflow.executors", "JobResources"): "JobResources",
    ("reflow.executors", "Executor"): "Executor",
    ("reflow.executors.local", "LocalExecutor"): "LocalExecutor",
    ("reflow.executors.slurm", "SlurmExecutor"): "SlurmExecutor",
    ("reflow.signals", "TaskInterrupted"): "TaskInterrupted",
    ("reflow.config", "Config"): "Config",
    ("reflow.config", "load_config"): "load_config",
    ("reflow.config", "config_path"): "config_path",
    ("reflow.config", "ensure_config_exists"): "ensure_config_exists",
    ("reflow.config", "write_example_config"): "write_example_config",
    ("reflow.flow", "JobConfig"): "JobConfig",
    ("reflow.flow", "TaskSpec"): "TaskSpec",
    ("reflow.manifest", "ManifestCodec"): "ManifestCodec",
    ("reflow._types", "TaskState"): "TaskState",
    ("reflow._types", "RunState"): "RunState",
    ("reflow.run", "Run"): "Run",
}

#: why a public name of the seed's is missing, where that is decided (else it is to come)
WHY_MISSING = {
    **dict.fromkeys(
        ("PBSExecutor", "LSFExecutor", "SGEExecutor", "FluxExecutor"),
        "left out: no such scheduler here; executor= refuses them, naming the supported ones",
    ),
    **dict.fromkeys(
        ("Config", "load_config", "ensure_config_exists", "TaskInterrupted", "JobConfig"),
        "h/seed-api adds it",
    ),
}

#: the module every rewritten import reads; written next to the copied tests
SHIM = '''
"""Stand-ins for the imports of reflow-hpc's tests (see test_hpc_seed_suite.py)."""
import importlib

import pytest

PUBLIC = importlib.import_module("reflow.workflow")
WHY = {why!r}


def _skip(cls, *args, **kwargs):
    pytest.skip(type.__getattribute__(cls, "_reason"))


class _Absent(type):
    """A name we do not provide: any use of it skips the test that uses it."""

    __call__ = _skip

    def __getattr__(cls, attr):
        if attr.startswith("_"):  # pytest and inspect probe those (_mock_name, __wrapped__)
            raise AttributeError(attr)
        _skip(cls)

    __getitem__ = _skip
    __iter__ = _skip
    __instancecheck__ = _skip
    __subclasscheck__ = _skip
    __enter__ = _skip


def absent(name, reason):
    return _Absent(name, (), {"_reason": reason})


def public(name):
    """``from reflow import name``: ours, or a stand-in saying it is missing."""
    if name in PUBLIC.__all__:
        return getattr(PUBLIC, name)
    why = f" ({WHY[name]})" if name in WHY else ""
    return absent(name, f"missing: {name}{why}")


def internal(module, name, twin):
    """``from <module> import name``: our public twin where there is one, else a stand-in."""
    if twin is not None:
        return public(twin)
    return absent(name, f"internal: {module}")
'''


def _sdist_tests() -> Path:
    given = Path(os.environ[SDIST_ENV]).expanduser()
    if given.is_file():
        out = Path(tempfile.mkdtemp(prefix="reflow-hpc-sdist-"))
        atexit.register(shutil.rmtree, out, True)
        with tarfile.open(given) as tar:
            tar.extractall(out, filter="data")
        given = out
    for root in (given, *given.glob("reflow_hpc-*")):
        if (root / "tests").is_dir() and (root / "src" / "reflow").is_dir():
            return root / "tests"
    raise RuntimeError(f"{SDIST_ENV}={given}: no reflow_hpc-*/tests in it")


def _is_seed(module: str | None) -> bool:
    return module is not None and (module == "reflow" or module.startswith("reflow."))


def _replacement(node: ast.Import | ast.ImportFrom) -> str | None:
    """The statements an import of the seed's becomes (one line), or None to keep it."""
    out: list[str] = []
    if isinstance(node, ast.Import):
        if not any(_is_seed(a.name) for a in node.names):
            return None
        for a in node.names:
            if a.name == "reflow":
                out.append(f"import reflow.workflow as {a.asname or 'reflow'}")
            elif _is_seed(a.name):
                bound = a.asname or a.name.split(".")[0]
                out.append(f"{bound} = _seed_shim.absent({bound!r}, 'internal: {a.name}')")
            else:
                out.append(f"import {a.name}" + (f" as {a.asname}" if a.asname else ""))
    else:
        if node.level or not _is_seed(node.module):
            return None
        assert node.module is not None
        for a in node.names:
            if a.name == "*":
                raise AssertionError(f"star import from {node.module} in the seed's tests")
            bound = a.asname or a.name
            if node.module == "reflow":
                out.append(f"{bound} = _seed_shim.public({a.name!r})")
            else:
                twin = PUBLIC_TWINS.get((node.module, a.name))
                out.append(f"{bound} = _seed_shim.internal({node.module!r}, {a.name!r}, {twin!r})")
    return "import _seed_shim; " + "; ".join(out)


def rewrite_imports(source: str) -> str:
    """``source`` with each import of the seed's package replaced (the rest byte for byte)."""
    lines = source.splitlines(keepends=True)
    edits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            new = _replacement(node)
            if new is not None:
                assert node.end_lineno is not None
                edits.append((node.lineno, node.end_lineno, node.col_offset, new))
    for start, end, col, new in sorted(edits, reverse=True):
        first = lines[start - 1]
        if first[:col].strip() or lines[end - 1].rstrip("\r\n").rstrip().endswith(";"):
            raise AssertionError(f"line {start}: an import that shares its line")
        # the same line count, so tracebacks point at the seed's own lines
        lines[start - 1 : end] = [first[:col] + new + "\n"] + ["\n"] * (end - start)
    return "".join(lines)


def _test_id(case: ET.Element) -> str:
    parts = case.get("classname", "").split(".")
    if len(parts) < 2:  # a module that could not be collected: name "tests.test_store"
        return case.get("name", "").removeprefix("tests.") + ".py::<module>"
    # classname "tests.test_store.TestRuns": the file, then its classes
    return "::".join([parts[1] + ".py", *parts[2:], case.get("name", "")])


def _outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """test id -> ("pass" | "skip" | "fail", the skip reason or the error's first line)."""
    out: dict[str, tuple[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        tid = _test_id(case)
        kind, text = "pass", ""
        for child in case:
            if child.tag == "skipped":
                kind, text = "skip", child.get("message", "")
            elif child.tag in ("failure", "error"):
                kind = "fail"
                first = (child.get("message") or child.text or "").strip().splitlines()
                text = first[0] if first else child.tag
                break
        if kind == "skip" and text.startswith("Skipped: "):
            text = text[len("Skipped: ") :]
        if tid in out and out[tid][0] != "pass":  # a setup error and a teardown report
            continue
        out[tid] = (kind, text)
    return out


def _run_suite(tmp: Path) -> dict[str, tuple[str, str]]:
    seed = tmp / "seed"
    shutil.copytree(_sdist_tests(), seed / "tests")
    for path in sorted((seed / "tests").glob("*.py")):
        path.write_text(rewrite_imports(path.read_text(encoding="utf-8")), encoding="utf-8")
    shim = textwrap.dedent(SHIM).lstrip().replace("{why!r}", repr(WHY_MISSING))
    (seed / "_seed_shim.py").write_text(shim, encoding="utf-8")
    (seed / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "REFLOW_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        REFLOW_CACHE_DIR=str(home / ".cache" / "reflow"),
        PYTHONPATH=str(seed),
        PYTHONDONTWRITEBYTECODE="1",
    )
    junit = tmp / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-c", str(seed / "pytest.ini"), "--rootdir", str(seed), f"--junitxml={junit}",
         "-o", "junit_family=xunit1", "tests"],
        cwd=seed, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if not junit.is_file():
        raise AssertionError(f"pytest wrote no junit report:\n{proc.stdout[-4000:]}")
    return _outcomes(junit)


def _write_table(outcomes: dict[str, tuple[str, str]], old: dict[str, str]) -> None:
    lines = [
        "# reflow-hpc 2604.4.0's tests against reflow.workflow: test id -> pass | skip: <reason>",
        "# (checked by test_hpc_seed_suite.py; REFLOW_HPC_SUITE_UPDATE=1 rewrites it)",
        "",
    ]
    for tid in sorted(outcomes):
        kind, text = outcomes[tid]
        if kind == "pass":
            row = "pass"
        elif kind == "skip" and text.startswith(("internal: ", "missing: ")):
            row = f"skip: {text}"
        elif old.get(tid, "pass").startswith("skip: ") and not _shim_reason(old[tid]):
            row = old[tid]
        else:
            row = f"skip: fails: {text[:100]}"
        lines.append(f"{_toml_str(tid)} = {_toml_str(row)}")
    TABLE.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(outcomes: dict[str, tuple[str, str]], table: dict[str, str]) -> list[str]:
    problems = []
    for tid in sorted(set(outcomes) | set(table)):
        if tid not in outcomes:
            problems.append(f"{tid}: listed but not run (renamed or gone?)")
            continue
        kind, text = outcomes[tid]
        row = table.get(tid)
        if row is None:
            problems.append(f"{tid}: not listed ({kind}: {text})")
        elif row == "pass":
            if kind != "pass":
                problems.append(f"{tid}: listed pass, {kind}s: {text}")
        elif not row.startswith("skip: "):
            problems.append(f"{tid}: row {row!r} is neither 'pass' nor 'skip: <reason>'")
        elif kind == "pass":
            problems.append(f"{tid}: passes now, listed {row!r}: flip it to pass")
        elif _shim_reason(row) and (kind != "skip" or row != f"skip: {text}"):
            problems.append(f"{tid}: listed {row!r}, {kind}s: {text}")
    return problems


def _shim_reason(row: str) -> bool:
    """Whether a row's reason is one the stand-ins give (so the test must skip with it)."""
    return row.startswith(("skip: internal: ", "skip: missing: "))


def _reason_group(row: str) -> str:
    """A row's reason, as the counts group it (the reasons other than the stand-ins' are
    the table's own words)."""
    return row[len("skip: ") :]


def test_seed_suite(tmp_path: Path) -> None:
    outcomes = _run_suite(tmp_path)
    table = tomllib.loads(TABLE.read_text(encoding="utf-8")) if TABLE.is_file() else {}
    if os.environ.get("REFLOW_HPC_SUITE_UPDATE") == "1":
        _write_table(outcomes, table)
        table = tomllib.loads(TABLE.read_text(encoding="utf-8"))
    counts = collections.Counter(kind for kind, _ in outcomes.values())
    reasons = collections.Counter(
        _reason_group(table[t])
        for t, (kind, _) in outcomes.items()
        if t in table and kind != "pass"
    )
    print(
        f"\nreflow-hpc's tests: {len(outcomes)} run, {counts['pass']} pass, "
        f"{counts['skip']} skip, {counts['fail']} fail (not passing, by the table's reason:)"
    )
    for reason, n in reasons.most_common():
        print(f"  {n:4d}  {reason}")
    problems = _check(outcomes, table)
    assert not problems, f"{len(problems)} rows disagree:\n" + "\n".join(problems[:60])
