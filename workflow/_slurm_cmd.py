"""Slurm's command lines and their output, as pure functions (``_slurm`` runs them).

What ``SlurmBackend`` hands to ``sbatch`` (its arguments, the job script) and what it reads back
from ``sinfo``, ``scontrol show config``, ``sbatch --parsable`` and ``squeue``, with no process
started and no file touched here, so each can be checked on a table of inputs. A value from a
user that is wrong (``check_time``) is a :class:`WorkflowError`; output that does not parse is
passed over line by line, as Slurm versions differ in what they print around the fields.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import WorkflowError

__all__ = [
    "DONE_STATES",
    "LIMITS_FORMAT",
    "NEVER_CLEARS",
    "NODES_FORMAT",
    "RUNNING_STATES",
    "SQUEUE_FORMAT",
    "SlurmNode",
    "check_time",
    "job_script",
    "last_error",
    "minutes",
    "parse_job_id",
    "parse_max_array",
    "parse_nodes",
    "parse_squeue",
    "parse_time_limits",
    "sbatch_args",
    "show",
    "task_indices",
]

#: the one state a task ends well in
DONE_STATES = {"COMPLETED"}
#: states of a task that has not ended (squeue's ``%T``)
RUNNING_STATES = {
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "RESV_DEL_HOLD",
}
#: pending reasons no scheduling pass will clear
NEVER_CLEARS = {"PartitionTimeLimit", "PartitionNodeLimit", "BadConstraints", "InvalidQOS"}
_TIME = re.compile(r"(?:\d+-\d+(?::\d+){0,2}|\d+(?::\d+){0,2})")


def check_time(value: Any, step: str) -> str | None:
    """A job's ``time`` as ``sbatch --time`` takes it; anything else is a WorkflowError."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
        return str(value)  # minutes
    text = value.strip() if isinstance(value, str) and len(value) <= 32 else ""
    if text and (_TIME.fullmatch(text) or text.upper() in ("INFINITE", "UNLIMITED")):
        return text
    raise WorkflowError(
        f"job {step!r}: time must be a Slurm time limit — minutes ('30'), 'M:S', 'H:M:S', "
        f"'D-H', 'D-H:M' or 'D-H:M:S' — got {show(value)}",
        step=step,
    )


def show(value: Any) -> str:
    """``repr`` for a message, bounded (a hostile value may be huge or refuse repr)."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def minutes(text: str) -> float | None:
    """A Slurm time (``check_time``'s, or ``sinfo``'s ``%l``) in minutes; ``None``: no limit."""
    text = text.strip()
    if text.upper() in ("INFINITE", "UNLIMITED") or not _TIME.fullmatch(text):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # D-H, D-H:M, D-H:M:S
        h, m, sec = [*parts, 0, 0][:3]
        total = int(days) * 1440 + h * 60 + m + sec / 60
    elif len(parts) == 1:  # M
        total = parts[0]
    elif len(parts) == 2:  # M:S
        total = parts[0] + parts[1] / 60
    else:  # H:M:S
        total = parts[0] * 60 + parts[1] + parts[2] / 60
    return total or None  # 0: no limit


@dataclass
class SlurmNode:
    """One node of one partition, as ``sinfo -N`` lists it."""

    name: str
    cpus: int
    mem_mb: int
    state: str


#: the ``sinfo`` format ``parse_nodes`` reads
NODES_FORMAT = "%P|%n|%c|%m|%T"
#: the ``sinfo`` format ``parse_time_limits`` reads
LIMITS_FORMAT = "%P|%l"
#: the ``squeue`` format ``parse_squeue`` reads
SQUEUE_FORMAT = "%i|%T|%r"


def parse_nodes(stdout: str) -> tuple[dict[str, list[SlurmNode]], str | None]:
    """``sinfo -h -N -o NODES_FORMAT``: the nodes of each partition, and the default
    partition (the one sinfo marks with ``*``; ``None`` if none is)."""
    nodes: dict[str, list[SlurmNode]] = {}
    default = None
    for line in stdout.splitlines():
        bits = line.strip().split("|")
        if len(bits) != 5:
            continue
        part, name, cpus, mem, state = bits
        if part.endswith("*"):
            part = part[:-1]
            default = part
        known = nodes.setdefault(part, [])  # named, even if its line does not parse
        try:
            known.append(SlurmNode(name, int(cpus), int(re.sub(r"\D", "", mem) or 0), state))
        except ValueError:
            continue
    return nodes, default


def parse_time_limits(stdout: str) -> dict[str, tuple[float, str]]:
    """``sinfo -h -o LIMITS_FORMAT``: each partition's MaxTime in minutes (and as sinfo
    prints it); a partition without a limit is left out."""
    out: dict[str, tuple[float, str]] = {}
    for line in stdout.splitlines():
        part, _, limit = line.strip().partition("|")
        most = minutes(limit)
        if most is not None:
            out[part.rstrip("*")] = (most, limit.strip())
    return out


def parse_max_array(stdout: str) -> int:
    """``scontrol show config``: how many tasks one array job may have (task ids run up to
    MaxArraySize - 1); Slurm's default, 1001, where the config does not say."""
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", stdout, re.MULTILINE)
    return max(1, int(m.group(1))) if m else 1001


def parse_job_id(stdout: str) -> str:
    """``sbatch --parsable``: the job id (``ID`` or ``ID;CLUSTER`` on its last line); ``""``
    when there is none, so a caller checks ``.isdigit()``."""
    text = stdout.strip()
    return text.splitlines()[-1].split(";")[0] if text else ""


def task_indices(text: str) -> list[int]:
    """The task ids of squeue's ``%i`` suffix: ``4``, or ``[1-5%2]``/``[1,3,7-9]`` for the
    tasks it still lists as one record (pending, or cancelled while pending)."""
    body = text.strip().strip("[]").split("%")[0]
    out: list[int] = []
    for part in body.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def parse_squeue(
    stdout: str, job_id: str, array: bool
) -> tuple[dict[int, tuple[str, str]], tuple[str, str]]:
    """``squeue --states=all --array -h -j JOB -o SQUEUE_FORMAT``: ``(state, reason)`` per
    task of job ``job_id`` (task 0 for a plain job), and the state of every task not listed
    on its own (an array's summary record; ``("", "")``: none)."""
    states: dict[int, tuple[str, str]] = {}
    rest = ("", "")
    for line in stdout.splitlines():
        bits = line.strip().split("|")
        if len(bits) != 3:
            continue
        jid, state, reason = bits
        base, _, idx = jid.partition("_")
        if base != job_id:
            continue
        if array and not idx:
            # the array's record of the tasks not listed on their own (cancelled while
            # pending, the whole array ended...): it stands for every task not listed
            rest = (state.split()[0], reason)
            continue
        for k in task_indices(idx) if array else [0]:
            states[k] = (state.split()[0], reason)
    return states, rest


def last_error(stderr: str, returncode: int) -> str:
    """The last line a failed command wrote on stderr (or its exit status)."""
    return (stderr.strip().splitlines() or [f"exit status {returncode}"])[-1]


def sbatch_args(
    *,
    name: str,
    cpus: float,
    chdir: str,
    files: str,
    tasks: int,
    array: bool,
    limit: int | None,
    memory: int | None,
    time: str | None,
    partition: str | None,
    after: str | None,
    account: str | None = None,
    options: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """``sbatch``'s options for one submission of ``tasks`` tasks (one array job when
    ``array``, else a plain job) whose output and error files go in the directory ``files``;
    ``memory`` in bytes; ``after``: the job it waits for (only with a ``limit``); ``account``
    is ``--account``; ``options`` the job's other scheduler options, ``(name, value)`` as
    ``--name=value`` (``_`` written ``-``; the value ``"true"``: a bare ``--name``)."""
    argv = [
        f"--job-name={name}",
        f"--cpus-per-task={max(1, math.ceil(cpus))}",
        "--no-requeue",
        f"--chdir={chdir}",
    ]
    pat = files.replace("%", "%%")  # sbatch expands %-patterns in these paths
    if array:
        spec = f"0-{tasks - 1}" + (f"%{limit}" if limit else "")
        argv += [f"--array={spec}", f"--output={pat}/%a.out", f"--error={pat}/%a.err"]
    else:
        argv += [f"--output={pat}/0.out", f"--error={pat}/0.err"]
    if memory:
        argv.append(f"--mem={math.ceil(memory / 2**20)}M")
    if time is not None:
        argv.append(f"--time={time}")
    if partition:
        argv.append(f"--partition={partition}")
    if account:
        argv.append(f"--account={account}")
    for name, value in options:
        flag = "--" + name.replace("_", "-")
        argv.append(flag if value == "true" else f"{flag}={value}")
    if after and limit:
        argv.append(f"--dependency=afterany:{after}")
    return argv


def job_script(worker: list[str]) -> str:
    """The batch script: ``exec`` of the worker's command line, each word shell-quoted."""
    return "#!/bin/sh\nexec " + " ".join(shlex.quote(w) for w in worker) + "\n"
