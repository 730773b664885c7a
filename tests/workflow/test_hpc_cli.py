"""The reflow-hpc command line (``python pipeline.py submit|run|status|runs|retry|cancel|dag|
describe``) end to end: every command a subprocess of its own against a real SQLite run index
in a tmp dir (``--store-path`` or ``$REFLOW_STORE_PATH``), so status, retry and cancel come
from other processes than the run's."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import _hpc_support as hpc
import pytest
from _hpc_support import CREATED, Cli

from reflow.workflow import Workflow

ray_cluster = hpc.ray_cluster


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, str]:
    """A tmp dir whose index holds one finished run (for rows that only read)."""
    cli = Cli(tmp_path_factory.mktemp("seeded"))
    return cli, cli.submit()


def test_dag_and_describe(cli: Cli) -> None:
    assert cli("dag").stdout.strip() == "extract -> transform -> load"
    manifest = json.loads(cli("describe").stdout)
    assert manifest["name"] == "etl"
    assert [t["name"] for t in manifest["tasks"]] == ["extract", "transform", "load"]
    assert cli("--version").stdout.startswith("pipeline.py (reflow ")
    shown = cli("submit", "--help").stdout
    for frag in ("--source SOURCE", "(required)", "--n N", "(default: 4)", "--force-tasks"):
        assert frag in shown, frag


def test_submit_then_status_runs_and_force_from_other_processes(cli: Cli) -> None:
    first = cli.submit()
    assert re.fullmatch(r"etl-\d{8}-[0-9a-f]{4}", first), first
    snap = cli.snap(first)
    assert snap["status"] == "SUCCESS" and snap["run_dir"] == str(cli.tmp / "r")
    assert snap["steps"]["transform"]["total"] == 4  # type: ignore[index]
    text = cli("status", first).stdout
    assert "SUCCESS" in text and "transform" in text
    again = cli.submit()
    assert cli.snap(again)["steps"]["transform"]["cached"] == 4  # type: ignore[index]
    forced = cli.submit("--force-tasks", "transform")
    assert cli.snap(forced)["steps"]["transform"]["cached"] == 0  # type: ignore[index]
    listed = cli("runs").stdout
    assert [forced, again, first] == re.findall(r"etl-\d{8}-[0-9a-f]{4}", listed)
    assert re.findall(r"etl-\S+", cli("runs", "--last", "1").stdout) == [forced]
    assert "No runs found" in cli("runs", "--status", "FAILED").stdout
    assert len(re.findall(r"etl-\S+", cli("runs", "--status", "SUCCESS").stdout)) == 3
    assert "No runs found" in cli("runs", "--since", "2999-01-01").stdout
    assert len(re.findall(r"etl-\S+", cli("runs", "--all", "--until", "2999-01-01").stdout)) == 3


def test_failed_run_status_errors_and_retry_from_another_process(cli: Cli) -> None:
    (cli.tmp / "FAIL-data_2").write_text("")
    run_id = cli.submit("--on-error", "continue", code=1)
    snap = cli.snap(run_id)
    assert snap["status"] == "FAILED"
    assert snap["failed_indices"] == {"transform": [2]}
    assert [(i["task_name"], i["array_index"]) for i in snap["failed_instances"]] == [
        ("transform", 2)
    ]
    shown = cli("status", run_id, "--errors").stdout
    assert "[2]" in shown and "data_2 is bad" in shown
    assert "data_2 is bad" not in cli("status", run_id).stdout
    assert re.findall(r"etl-\S+", cli("runs", "--status", "failed").stdout) == [run_id]
    still = cli("retry", run_id, code=1)  # the file is still there
    assert "data_2 is bad" in still.stderr
    (cli.tmp / "FAIL-data_2").unlink()
    cli("retry", run_id, "--task", "transform")
    snap = cli.snap(run_id)
    assert snap["status"] == "SUCCESS" and snap["failed_instances"] == []
    assert "nothing to retry" in cli("retry", run_id).stdout


@pytest.mark.slow
def test_cancel_a_running_submit_from_another_process(cli: Cli) -> None:
    (cli.tmp / "SLOW").write_text("")
    proc = subprocess.Popen(
        cli.argv(
            "submit", "--run-dir", "r", "--source", "data.csv", "--nap", "5", "--max-workers", "1"
        ),
        cwd=cli.tmp,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        m = CREATED.match(proc.stdout.readline())
        assert m, "no 'Created run' line"
        run_id = m.group(1)
        deadline = time.monotonic() + 30
        while cli.snap(run_id)["status"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        t0 = time.monotonic()
        assert f"cancelled run {run_id}" in cli("cancel", run_id).stdout
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, (out, err)
    assert "cancelled" in err and "Traceback" not in err
    # the element sleeping 5 s finishes (local calls are not killed); nothing more starts:
    # far less than the 4 x 5 s the whole run takes
    assert took < 15, took
    snap = cli.snap(run_id)
    assert snap["status"] == "CANCELLED"
    assert snap["steps"]["transform"]["done"] < 4  # type: ignore[index]
    assert "nothing to cancel" in cli("cancel", run_id).stdout
    assert cli("runs", "--status", "cancelled").stdout.count(run_id) == 1


def test_sigterm_cancels_the_run(cli: Cli) -> None:
    (cli.tmp / "SLOW").write_text("")
    proc = subprocess.Popen(
        cli.argv("submit", "--run-dir", "r", "--source", "data.csv", "--nap", "2", "--n", "1"),
        cwd=cli.tmp,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    m = CREATED.match(proc.stdout.readline())
    assert m
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    assert cli.snap(m.group(1))["status"] == "CANCELLED"


def test_cancel_several_runs_needs_yes(cli: Cli) -> None:
    a, b = cli.submit(), cli.submit()
    p = cli("cancel", a, b, code=2)  # stdin is not a terminal: nobody to ask
    assert "pass --yes" in p.stderr
    p = cli("cancel", a, b, "-y")
    assert p.stdout.count("nothing to cancel") == 2


def test_store_path_from_the_environment(cli: Cli) -> None:
    env_store = cli.tmp / "elsewhere.sqlite"
    cli.env["REFLOW_STORE_PATH"] = str(env_store)
    p = cli("submit", "--run-dir", "r", "--source", "data.csv", store=False)
    run_id = CREATED.search(p.stdout).group(1)  # type: ignore[union-attr]
    assert env_store.is_file()
    assert run_id in cli("runs", store=False).stdout
    cli("status", run_id, code=2)  # not in the --store-path index


def test_flag_only_form_and_run_are_recorded(cli: Cli) -> None:
    cli("--source", "data.csv", "--store-path", str(cli.store), store=False)
    p = cli("run", "--source", "data.csv", "--n", "2")
    run_id = CREATED.search(p.stdout).group(1)  # type: ignore[union-attr]
    assert cli.snap(run_id)["steps"]["transform"]["total"] == 2  # type: ignore[index]
    assert len(re.findall(r"etl-\S+", cli("runs").stdout)) == 2


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("sbumit",), 2, "unknown subcommand 'sbumit' (did you mean 'submit'?)"),
        (("frobnicate",), 2, "expected one of submit, run, status"),
        (("submit",), 2, "required: --source, --run-dir"),
        (("submit", "--run-dir", "r"), 2, "required: --source"),
        (("submit", "--run-dir", "r", "--source", "x", "--executor", "pbs"), 2, "'pbs'"),
        (("submit", "--run-dir", "r", "--source", "x", "--n", "many"), 2, "invalid int"),
        (("submit", "--run-dir", "r", "--source", "x", "--max-workers", "0"), 2, ">= 1"),
        (("submit", "--run-dir", "r", "--source", "x", "--force-tasks", "lod"), 2, "'load'"),
        (("status",), 2, "required: RUN_ID"),
        (("status", "etl-20990101-zzzz"), 2, "Unknown run_id 'etl-20990101-zzzz'"),
        (("status", "{close}"), 2, "did you mean '{id}'"),
        (("status", "{id}", "--task", "trnsform"), 2, "did you mean 'transform'"),
        (("retry", "{close}"), 2, "did you mean '{id}'"),
        (("cancel", "{id}", "etl-20990101-zzzz", "-y"), 2, "Unknown run_id 'etl-20990101-zzzz'"),
        (("cancel",), 2, "required: RUN_ID"),
        (("submit", "--run-dir", "r", "--source", "x", "--address", "a"), 2, "--executor ray"),
        (("submit", "--run-dir", "/proc/no/such", "--source", "x"), 2, "/proc/no/such"),
        (("submit", "--run-dir", "pipeline.py", "--source", "x"), 2, "pipeline.py"),
        (("status", "x" * 100_000), 2, "Unknown run_id 'xxxx"),
        (("runs", "--since", "9" * 50_000), 2, "bad date '9999"),
        (("runs", "--since", "yesterday"), 2, "YYYY-MM-DD"),
        (("runs", "--since", "2026-13-45"), 2, "bad date '2026-13-45'"),
        (("runs", "--until", "2026-01-01T25:00"), 2, "YYYY-MM-DDTHH:MM"),
        (("runs", "--since", "2026-02-01", "--until", "2026-01-01"), 2, "is not before"),
        (("runs", "--last", "0"), 2, ">= 1"),
        (("runs", "--last", "x" * 5000), 2, ">= 1"),
        (("runs", "--status", "weird"), 2, "SUCCESS"),
        (("--source", "x", "--bogus"), 2, "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input(
    seeded: tuple[Cli, str], args: tuple[str, ...], code: int, fragment: str
) -> None:
    cli, run_id = seeded
    close = run_id[:-1] + ("0" if run_id[-1] != "0" else "1")
    args = tuple(a.format(id=run_id, close=close) for a in args)
    t0 = time.monotonic()
    p = cli(*args, code=code)
    assert time.monotonic() - t0 < 30
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert fragment.format(id=run_id) in lines[0], lines[0]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.mkdir(parents=True), "run index"),
        (lambda p: (p.parent.mkdir(parents=True), p.write_bytes(b"\0garbage" * 100)), "run index"),
        (
            lambda p: (
                p.parent.mkdir(parents=True),
                sqlite3.connect(p).execute("CREATE TABLE runs (x)").connection.commit(),
            ),
            "run index",
        ),
    ],
    ids=["a directory", "not sqlite", "another table"],
)
def test_bad_store(cli: Cli, make: object, fragment: str) -> None:
    make(cli.store)  # type: ignore[operator]
    for args in (("runs",), ("status", "etl-20990101-abcd")):
        p = cli(*args, code=2)
        assert len(p.stderr.strip().splitlines()) == 1 and fragment in p.stderr, p.stderr


BARE = """
import sys
from reflow.workflow import Workflow
wf = Workflow("bare")

@wf.job
def only(fail: bool = False) -> int:
    if fail:
        raise RuntimeError("asked to fail")
    return 1

wf.cli()
print("not reached")
"""


@pytest.mark.parametrize(
    ("args", "code"),
    [((), 0), (("--fail",), 1), (("--nope",), 2), (("run", "--fail"), 1), (("stat",), 2)],
)
def test_bare_cli_call_exits_with_the_status(
    tmp_path: Path, args: tuple[str, ...], code: int
) -> None:
    (tmp_path / "bare.py").write_text(BARE)
    env = dict(os.environ, REFLOW_CACHE_DIR=str(tmp_path / "cache"))
    p = subprocess.run(
        [sys.executable, "bare.py", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == code, (p.stdout, p.stderr)
    assert "not reached" not in p.stdout


def test_cli_with_a_list_returns_the_status(tmp_path: Path) -> None:
    wf = Workflow("inproc")

    @wf.job
    def only(fail: bool = False) -> int:
        if fail:
            raise RuntimeError("asked to fail")
        return 1

    store = str(tmp_path / "i.sqlite")
    assert wf.cli(["run", "--run-dir", str(tmp_path / "r"), "--store-path", store]) == 0
    assert wf.cli(["run", "--run-dir", str(tmp_path / "r"), "--fail", "--store-path", store]) == 1
    assert wf.cli(["dag"]) == 0
    assert wf.cli(["status", "inproc-20990101-0000", "--store-path", store]) == 2


def test_readme_cli_lines(tmp_path: Path) -> None:
    """README's workflow CLI block, line by line, against README's wordcount script."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", readme, re.S | re.M)
    script = [c for lang, c in blocks if lang == "python" and 'wf = Workflow("wordcount")' in c]
    lines = [c for lang, c in blocks if lang == "sh" and "wordcount.py submit --run-dir" in c]
    assert len(script) == 1 and len(lines) == 1
    (tmp_path / "wordcount.py").write_text(script[0])
    (tmp_path / "book.txt").write_text("one two\nthree\n")
    env = dict(os.environ, REFLOW_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("REFLOW_STORE_PATH", None)
    run_id = ""
    for line in lines[0].splitlines():
        cmd, _, comment = line.partition("#")
        argv = cmd.split()
        assert argv[:2] == ["python", "wordcount.py"], line
        if run_id:
            argv = [re.sub(r"wordcount-\d{8}-[0-9a-f]{4}", run_id, a) for a in argv]
        p = subprocess.run(
            [sys.executable, *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert p.returncode == 0, (line, p.stdout, p.stderr)
        if argv[2] == "submit":
            m = CREATED.search(p.stdout)
            assert m and comment.strip().startswith("Created run wordcount-"), p.stdout
            run_id = m.group(1)
            assert m.group(2) == "runs/wc" or m.group(2).endswith("runs/wc"), m.group(2)
        if argv[2] == "dag":
            assert p.stdout.strip() == comment.strip()
        if argv[2] == "describe":
            assert [t["name"] for t in json.loads(p.stdout)["tasks"]] == ["lines", "words", "total"]
        if argv[2] == "runs":
            assert run_id in p.stdout


@pytest.mark.slow
def test_status_of_a_run_whose_process_was_killed(cli: Cli) -> None:
    (cli.tmp / "SLOW").write_text("")
    proc = subprocess.Popen(
        cli.argv("submit", "--run-dir", "r", "--source", "data.csv", "--nap", "30", "--n", "1"),
        cwd=cli.tmp,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    m = CREATED.match(proc.stdout.readline())
    assert m
    run_id = m.group(1)
    deadline = time.monotonic() + 30
    while cli.snap(run_id)["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    snap = cli.snap(run_id)
    assert snap["status"] == "FAILED" and f"pid {proc.pid}" in str(snap.get("note")), snap
    assert "Note" in cli("status", run_id).stdout
    assert "nothing to cancel" in cli("cancel", run_id).stdout
    (cli.tmp / "SLOW").unlink()
    cli("retry", run_id)  # the retry runs it again here, to its end
    assert cli.snap(run_id)["status"] == "SUCCESS"


# -- the other executors: a real local Ray cluster and a real single-node Slurm ------------------


@pytest.fixture(scope="module")
def slurm() -> Iterator[object]:
    from slurmcluster import slurm_fixture

    yield from slurm_fixture()


@pytest.mark.slow
def test_submit_on_ray(cli: Cli, ray_cluster: str) -> None:
    run_id = cli.submit("--executor", "ray", "--address", ray_cluster)
    snap = cli.snap(run_id)
    assert snap["status"] == "SUCCESS" and snap["backend"] == "ray", snap
    assert snap["steps"]["transform"]["done"] == 4  # type: ignore[index]


@pytest.mark.slow
def test_submit_on_slurm(cli: Cli, slurm: object) -> None:
    cli.env["SLURM_CONF"] = os.environ["SLURM_CONF"]
    run_id = cli.submit("--executor", "slurm", "--n", "3")
    snap = cli.snap(run_id)
    assert snap["status"] == "SUCCESS" and snap["backend"] == "slurm", snap
    assert snap["steps"]["transform"]["done"] == 3  # type: ignore[index]
