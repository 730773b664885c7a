"""Stand-ins of PBS, LSF, SGE and Flux's commands, for tests: small Python scripts named
``qsub``, ``qstat``, ``qdel``, ``qacct``, ``bsub``, ``bjobs``, ``bkill`` and ``flux``, put on
``PATH`` by :func:`install`. They do what the real commands do for the flags reflow uses:
a submission starts the job's command in the background (its own session; stdout/stderr to
the ``-o``/``-e`` files) and prints an id in the real format; the state commands print the
real output formats; a cancel kills the job's process group. Jobs are kept as files under
the stand-in's state directory. Not a scheduler: no queueing, no resources, no arrays.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

FLAVOURS = {
    "pbs": ("qsub", "qstat", "qdel"),
    "lsf": ("bsub", "bjobs", "bkill"),
    "sge": ("qsub", "qstat", "qdel", "qacct"),
    "flux": ("flux",),
}
#: options that take a value, per submit command (the others are single tokens)
_VALUED = {
    "pbs": {"-N", "-l", "-J", "-t", "-o", "-e", "-q", "-A", "-W"},
    "lsf": {"-J", "-n", "-W", "-M", "-o", "-e", "-q", "-G", "-w"},
    "sge": {"-N", "-l", "-t", "-o", "-e", "-q", "-A", "-hold_jid", "-b"},
    "flux": {"--job-name", "--cores", "-t", "--output", "--error", "--queue"},
}
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def install(bin_dir: Path, flavour: str) -> Path:
    """Write the flavour's commands into ``bin_dir`` (its state under ``bin_dir/state``)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "state").mkdir(exist_ok=True)
    here = Path(__file__).resolve().parent
    for name in FLAVOURS[flavour]:
        script = bin_dir / name
        script.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(here)!r})\n"
            f"from batch_standins import main\nsys.exit(main({flavour!r}, {name!r}, "
            f"{str(bin_dir / 'state')!r}, sys.argv[1:]))\n"
        )
        script.chmod(0o755)
    return bin_dir


def _f58(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "ƒ" + (out or "1")


def _from_f58(text: str) -> int | None:
    n = 0
    for ch in text.removeprefix("ƒ").removeprefix("f"):
        if ch not in _B58:
            return None
        n = n * 58 + _B58.index(ch)
    return n


def _submit(flavour: str, state: Path, args: list[str]) -> int:
    valued = _VALUED[flavour]
    opts: dict[str, str] = {}
    i = 0
    if flavour == "flux":
        if not args or args[0] != "submit":
            print("flux: unknown command", file=sys.stderr)
            return 1
        i = 1
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if a in valued:
            opts[a] = args[i + 1]
            i += 2
        elif a == "-pe":
            i += 3
        elif a.startswith("-"):
            i += 1
        else:
            break
    rest = args[i:]
    command = shlex.split(rest[0]) if flavour in ("lsf", "sge") and len(rest) == 1 else rest
    if not command:
        print("no command given", file=sys.stderr)
        return 2
    n = 100 + len(os.listdir(state))
    while True:  # submissions at once: the first to make the directory has the number
        job = state / str(n)
        try:
            job.mkdir()
            break
        except FileExistsError:
            n += 1
    out = opts.get("-o") or opts.get("--output") or os.devnull
    err = opts.get("-e") or opts.get("--error") or os.devnull
    rc = job / "rc"
    # the job: the command, then its exit status written where the state commands read it
    shell = f"{shlex.join(command)} >>{shlex.quote(out)} 2>>{shlex.quote(err)}; echo $? > {rc}"
    proc = subprocess.Popen(
        ["/bin/sh", "-c", shell],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    (job / "pid").write_text(str(proc.pid))
    name = opts.get("-N") or opts.get("-J") or opts.get("--job-name") or "job"
    print(
        {
            "pbs": f"{n}.standin",
            "lsf": f"Job <{n}> is submitted to default queue <normal>.",
            "sge": f'Your job {n} ("{name}") has been submitted',
            "flux": _f58(n),
        }[flavour]
    )
    return 0


def _job(state: Path, flavour: str, text: str) -> Path | None:
    n = _from_f58(text) if flavour == "flux" else None
    key = str(n) if n is not None else text.split(".")[0]
    job = state / key
    return job if key.isdigit() and job.is_dir() else None


def _status(job: Path) -> tuple[str, int | None]:
    """("running"|"done"|"cancelled", exit status)."""
    if (job / "cancelled").exists():
        return "cancelled", None
    rc = job / "rc"
    if rc.exists() and rc.read_text().strip():
        return "done", int(rc.read_text())
    pid = int((job / "pid").read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ("done", int(rc.read_text())) if rc.exists() else ("cancelled", None)
    return "running", None


def _kill(job: Path) -> None:
    (job / "cancelled").write_text("")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(int((job / "pid").read_text()), signal.SIGKILL)


def main(flavour: str, name: str, state_dir: str, args: list[str]) -> int:
    state = Path(state_dir)
    if name in ("qsub", "bsub") or (name == "flux" and args[:1] == ["submit"]):
        return _submit(flavour, state, args)
    ident = args[-1] if args else ""
    job = _job(state, flavour, ident)
    if name in ("qdel", "bkill") or (name == "flux" and args[:1] == ["cancel"]):
        if job is None:
            print(f"{name}: Unknown Job Id {ident}", file=sys.stderr)
            return 1
        _kill(job)
        if name == "bkill":
            print(f"Job <{ident}> is being terminated")
        return 0
    if job is None:
        if name == "bjobs":
            print(f"Job <{ident}> is not found", file=sys.stderr)
            return 255
        if name == "qstat" and flavour == "sge":
            print(f"Following jobs do not exist:\n{ident}", file=sys.stderr)
            return 1
        print(f"{name}: Unknown Job Id {ident}", file=sys.stderr)
        return 153 if name == "qstat" else 1
    status, code = _status(job)
    if name == "qstat" and flavour == "pbs":  # qstat -f -x ID
        word = "R" if status == "running" else "F"
        print(f"Job Id: {job.name}.standin\n    Job_Name = job\n    job_state = {word}")
        if status != "running":
            print(f"    Exit_status = {271 if status == 'cancelled' else code}")
        return 0
    if name == "qstat":  # SGE: qstat -j ID, while the job is known
        if status != "running":
            print(f"Following jobs do not exist:\n{job.name}", file=sys.stderr)
            return 1
        print(
            f"==============================================================\njob_number:"
            f"                 {job.name}\njob_state 1:                r"
        )
        return 0
    if name == "qacct":
        if status == "running":
            print(f"error: job id {job.name} not found", file=sys.stderr)
            return 1
        failed, code = ("100 : assumedly after job", 137) if status == "cancelled" else ("0", code)
        print(
            f"==============================================================\n"
            f"jobnumber    {job.name}\nfailed       {failed}\nexit_status  {code}"
        )
        return 0
    if name == "bjobs":
        print("RUN" if status == "running" else ("DONE" if code == 0 else "EXIT"))
        return 0
    if name == "flux" and args[:1] == ["jobs"]:
        word = {"running": "R", "cancelled": "CA"}.get(status) or ("CD" if code == 0 else "F")
        print(word)
        return 0
    print(f"{name}: unsupported arguments {args}", file=sys.stderr)
    return 2
