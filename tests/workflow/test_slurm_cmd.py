"""reflow.workflow._slurm_cmd: Slurm's command lines and the reading of their output, as tables.

No Slurm runs here: each row is the text a Slurm command prints (written by hand, in the
shapes Slurm 22-24 print, plus hostile ones) and what the backend must make of it. The
backend's use of these against a real cluster is ``test_slurm_run.py`` and its siblings.
"""

from __future__ import annotations

import time

import pytest

from reflow.workflow._errors import WorkflowError
from reflow.workflow._slurm_cmd import (
    SlurmNode,
    check_time,
    job_script,
    last_error,
    minutes,
    parse_job_id,
    parse_max_array,
    parse_nodes,
    parse_squeue,
    parse_time_limits,
    sbatch_args,
    show,
    task_indices,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (0, "0"),
        (30, "30"),
        ("30", "30"),
        (" 1:30 ", "1:30"),
        ("1:00:00", "1:00:00"),
        ("2-0", "2-0"),
        ("2-12:30", "2-12:30"),
        ("2-12:30:05", "2-12:30:05"),
        ("infinite", "infinite"),
        ("UNLIMITED", "UNLIMITED"),
    ],
)
def test_check_time_takes_slurm_time_limits(value: object, expected: str | None) -> None:
    assert check_time(value, "job") == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (True, "got True"),
        (-1, "got -1"),
        (10**9, "got 1000000000"),
        (1.5, "got 1.5"),
        ("", "got ''"),
        ("1h", "got '1h'"),
        ("1:2:3:4", "got '1:2:3:4'"),
        ("-5", "got '-5'"),
        ("1" * 33, "got '111"),
        ("9" * 10_000_000, "..."),  # long: refused before the regex, repr bounded
        (["30"], "got ['30']"),
        (b"30", "got b'30'"),
    ],
)
def test_check_time_refuses_anything_else(value: object, fragment: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(WorkflowError, match="job 'step': time must be a Slurm time limit") as ei:
        check_time(value, "step")
    assert fragment in str(ei.value)
    assert len(str(ei.value)) < 300
    assert ei.value.step == "step"
    assert time.perf_counter() - t0 < 2.0  # bounded, whatever the size


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a", "'a'"),
        ("x" * 100, "'" + "x" * 56 + "..."),
        (_BadRepr(), "<_BadRepr>"),
    ],
)
def test_show_is_bounded_and_never_raises(value: object, expected: str) -> None:
    assert show(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", 30),
        ("1:30", 1.5),
        ("1:00:00", 60),
        ("1-0", 1440),
        ("1-2", 1440 + 120),
        ("1-2:3", 1440 + 123),
        ("1-0:0:30", 1440.5),
        ("0", None),  # 0: no limit
        ("infinite", None),
        ("UNLIMITED", None),
        ("", None),
        ("n/a", None),
        ("1:2:3:4", None),
    ],
)
def test_minutes(text: str, expected: float | None) -> None:
    assert minutes(text) == expected


SINFO_NODES = """\
debug*|n1|4|7900|idle
debug*|n2|8|15800+|mixed
big|n3|64|512000|idle
big|n4|many|512000|idle
garbage line
a|b|c
"""


@pytest.mark.parametrize(
    ("stdout", "nodes", "default"),
    [
        (
            SINFO_NODES,
            {
                "debug": [SlurmNode("n1", 4, 7900, "idle"), SlurmNode("n2", 8, 15800, "mixed")],
                "big": [SlurmNode("n3", 64, 512000, "idle")],
            },
            "debug",
        ),
        ("", {}, None),
        ("p|n|2|x|idle\n", {"p": [SlurmNode("n", 2, 0, "idle")]}, None),
        # a partition whose only line does not parse is still named (with no node)
        ("q*|n|two|100|idle\n", {"q": []}, "q"),
        ("\x00\xff|||\n" * 1000, {}, None),
    ],
)
def test_parse_nodes(stdout: str, nodes: dict[str, list[SlurmNode]], default: str | None) -> None:
    assert parse_nodes(stdout) == (nodes, default)


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        (
            "debug*|1:00:00\nbig|infinite\nlong|2-00:00:00\n",
            {"debug": (60, "1:00:00"), "long": (2880, "2-00:00:00")},
        ),
        ("", {}),
        ("p|n/a\nq\n", {}),
    ],
)
def test_parse_time_limits(stdout: str, expected: dict[str, tuple[float, str]]) -> None:
    assert parse_time_limits(stdout) == expected


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ("ClusterName = c\nMaxArraySize            = 2001\nMaxJobCount = 10000\n", 2001),
        ("MaxArraySize = 0\n", 1),
        ("", 1001),
        ("  MaxArraySize = 5\n", 1001),  # only a key at the start of a line counts
    ],
)
def test_parse_max_array(stdout: str, expected: int) -> None:
    assert parse_max_array(stdout) == expected


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ("42\n", "42"),
        ("42;cluster\n", "42"),
        ("sbatch: warning: x\n43\n", "43"),
        ("", ""),
        ("   \n", ""),
        ("Submitted batch job 44\n", "Submitted batch job 44"),  # not --parsable: not digits
    ],
)
def test_parse_job_id(stdout: str, expected: str) -> None:
    assert parse_job_id(stdout) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4", [4]),
        ("[1-5%2]", [1, 2, 3, 4, 5]),
        ("[1,3,7-9]", [1, 3, 7, 8, 9]),
        ("", []),
        ("[x-y]", []),
        ("[3-]", [3]),  # hi empty: as lo
        ("[-3]", []),
    ],
)
def test_task_indices(text: str, expected: list[int]) -> None:
    assert task_indices(text) == expected


@pytest.mark.parametrize(
    ("stdout", "job", "array", "states", "rest"),
    [
        (
            "7_0|RUNNING|None\n7_[1-3%2]|PENDING|JobArrayTaskLimit\n7|CANCELLED by 0|None\n",
            "7",
            True,
            {
                0: ("RUNNING", "None"),
                1: ("PENDING", "JobArrayTaskLimit"),
                2: ("PENDING", "JobArrayTaskLimit"),
                3: ("PENDING", "JobArrayTaskLimit"),
            },
            ("CANCELLED", "None"),
        ),
        ("8|COMPLETED|None\n", "8", False, {0: ("COMPLETED", "None")}, ("", "")),
        ("9_1|RUNNING|None\n", "8", True, {}, ("", "")),  # another job's line
        ("8|RUNNING\nnot|a|line|at all\n", "8", False, {}, ("", "")),
        ("", "8", True, {}, ("", "")),
    ],
)
def test_parse_squeue(
    stdout: str,
    job: str,
    array: bool,
    states: dict[int, tuple[str, str]],
    rest: tuple[str, str],
) -> None:
    assert parse_squeue(stdout, job, array) == (states, rest)


@pytest.mark.parametrize(
    ("stderr", "code", "expected"),
    [
        ("sinfo: error: a\nsinfo: error: b\n", 1, "sinfo: error: b"),
        ("", 124, "exit status 124"),
        ("  \n", 2, "exit status 2"),
    ],
)
def test_last_error(stderr: str, code: int, expected: str) -> None:
    assert last_error(stderr, code) == expected


_BASE = {
    "name": "run.step",
    "cpus": 1.0,
    "chdir": "/w",
    "files": "/r/.reflow-slurm/step-1",
    "tasks": 1,
    "array": False,
    "limit": None,
    "memory": None,
    "time": None,
    "partition": None,
    "after": None,
}
_HEAD = ["--job-name=run.step", "--cpus-per-task=1", "--no-requeue", "--chdir=/w"]
_F = "/r/.reflow-slurm/step-1"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, [*_HEAD, f"--output={_F}/0.out", f"--error={_F}/0.err"]),
        (
            {"cpus": 2.5, "memory": 3 * 2**20 + 1, "time": "1:00", "partition": "a,b"},
            [
                "--job-name=run.step",
                "--cpus-per-task=3",
                "--no-requeue",
                "--chdir=/w",
                f"--output={_F}/0.out",
                f"--error={_F}/0.err",
                "--mem=4M",
                "--time=1:00",
                "--partition=a,b",
            ],
        ),
        (
            {"cpus": 0.1},
            [
                _HEAD[0],
                "--cpus-per-task=1",
                *_HEAD[2:],
                f"--output={_F}/0.out",
                f"--error={_F}/0.err",
            ],
        ),
        (
            {"array": True, "tasks": 5},
            [*_HEAD, "--array=0-4", f"--output={_F}/%a.out", f"--error={_F}/%a.err"],
        ),
        (
            {"array": True, "tasks": 5, "limit": 2, "after": "41"},
            [
                *_HEAD,
                "--array=0-4%2",
                f"--output={_F}/%a.out",
                f"--error={_F}/%a.err",
                "--dependency=afterany:41",
            ],
        ),
        # a dependency only bounds what runs at once when there is a limit
        (
            {"array": True, "tasks": 2, "after": "41"},
            [*_HEAD, "--array=0-1", f"--output={_F}/%a.out", f"--error={_F}/%a.err"],
        ),
        ({"files": "/r/100%/x"}, [*_HEAD, "--output=/r/100%%/x/0.out", "--error=/r/100%%/x/0.err"]),
    ],
)
def test_sbatch_args(changes: dict[str, object], expected: list[str]) -> None:
    assert sbatch_args(**{**_BASE, **changes}) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("worker", "expected"),
    [
        (["/usr/bin/python3", "-m", "w", "/r/d"], "#!/bin/sh\nexec /usr/bin/python3 -m w /r/d\n"),
        (["/p y", "$(rm -rf /)", "a'b"], "#!/bin/sh\nexec '/p y' '$(rm -rf /)' 'a'\"'\"'b'\n"),
    ],
)
def test_job_script_quotes_every_word(worker: list[str], expected: str) -> None:
    assert job_script(worker) == expected
