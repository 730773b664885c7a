"""PBS, LSF, SGE and Flux as :class:`~._executors.Executor` objects: each builds its
scheduler's documented submit, cancel and state command lines and reads their output.

A workflow given one runs on the generic batch backend (``_batch``), one job per chunk.
``from_environment()`` reads ``REFLOW_MODE`` (``dry-run``: ``submit`` runs nothing and returns
``"DRYRUN"``), ``REFLOW_PYTHON`` and the command names (``REFLOW_QSUB``, ``REFLOW_BSUB``,
``REFLOW_FLUX``...), as reflow-hpc's do. ``job_state`` answers in one vocabulary: ``PENDING``,
``RUNNING``, ``SUSPENDED``, ``COMPLETED``, ``FAILED``, ``CANCELLED`` (``None``: the scheduler
does not know the job, or could not be asked). A command that is missing, hangs past
``CMD_TIMEOUT_S`` or refuses a submission is a :class:`WorkflowError` naming it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from typing import Any, ClassVar

from ._errors import ParamError, WorkflowError, shown
from ._executors import Executor, JobResources, _check_command, _check_resources, _name

__all__ = ["FluxExecutor", "LSFExecutor", "PBSExecutor", "SGEExecutor"]

CMD_TIMEOUT_S = 30.0
DRYRUN = "DRYRUN"
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,59}")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=CMD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise WorkflowError(f"{argv[0]}: no answer in {CMD_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise WorkflowError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None


def _last(p: subprocess.CompletedProcess[str]) -> str:
    return " ".join(p.stderr.strip().splitlines()[-2:])[:500] or f"exit status {p.returncode}"


class _CommandExecutor(Executor):
    """What the four share: a mode, the commands' names, submit options as flags."""

    modes: ClassVar[tuple[str, ...]] = ()
    env_commands: ClassVar[dict[str, str]] = {}
    #: the scheduler's word for a Slurm user's "partition"
    aliases: ClassVar[dict[str, str]] = {"partition": "queue"}
    #: option keys that configure the executor itself, never a scheduler flag
    _internal_keys: ClassVar[frozenset[str]] = frozenset({"python", "mode"})

    def __init__(self, mode: str, python: str, commands: Mapping[str, str]) -> None:
        super().__init__(python=python)
        if mode not in self.modes:
            raise ParamError(
                f"mode must be one of {', '.join(map(repr, self.modes))}, got {shown(mode)}",
                param="mode",
            )
        for what, cmd in commands.items():
            _name(cmd, what, allow_none=False)
            setattr(self, what, cmd)
        self.mode = mode

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"

    @classmethod
    def _from_env(cls, default_mode: str) -> dict[str, Any]:
        mode = (os.environ.get("REFLOW_MODE") or default_mode).strip().lower()
        if mode not in cls.modes:
            mode = default_mode  # another scheduler's mode (REFLOW_MODE=sbatch): this one's
        kwargs: dict[str, Any] = {"mode": mode, "python": os.environ.get("REFLOW_PYTHON", "")}
        for what, var in cls.env_commands.items():
            kwargs[what] = os.environ.get(var) or what
        return kwargs

    def options(self, resources: JobResources) -> dict[str, Any]:
        """``resources.submit_options`` in this scheduler's words (``partition`` -> its
        queue; the native key wins over its alias), the executor's own keys dropped; a key
        that is not a name is a ParamError."""
        return self._normalize_options(resources.submit_options)

    def _normalize_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        # reflow-hpc's name for it, kept for code written against its executors
        out: dict[str, Any] = {}
        for key, value in options.items():
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise ParamError(
                    f"submit option {shown(key)} is not an option name", param="submit_options"
                )
            if value is None or value is False:
                continue
            if key in self._internal_keys or key in self.env_commands:
                continue
            native = self.aliases.get(key, key)
            if native != key and native in options:
                continue  # the scheduler's own word given too: it wins
            out[native] = value
        return out

    def _render_submit_option(self, key: str, value: Any) -> list[str]:
        return [] if value is None or value is False else self.flag(key, value)

    @staticmethod
    def flag(key: str, value: Any) -> list[str]:
        """A generic option as ``--key value`` (``True``: ``--key``; a list: repeated)."""
        name = "--" + key.replace("_", "-")
        if value is True:
            return [name]
        if isinstance(value, (list, tuple)):
            return [a for item in value for a in (name, str(item))]
        if not isinstance(value, (str, int, float)) or "\n" in str(value):
            raise ParamError(
                f"submit option {key!r} must be a string, a number or True, got {shown(value)}",
                param="submit_options",
            )
        return [name, str(value)]

    def argv(self, resources: JobResources, command: list[str]) -> list[str]:
        raise NotImplementedError

    def parse_job_id(self, stdout: str) -> str | None:
        raise NotImplementedError

    def submit(self, resources: JobResources, command: list[str]) -> str:
        argv = self.argv(_check_resources(resources), _check_command(command))
        if self.mode == "dry-run":
            return DRYRUN
        p = _run(argv)
        job_id = self.parse_job_id(p.stdout) if p.returncode == 0 else None
        if not job_id:
            text = _last(p) if p.returncode else f"no job id in {p.stdout.strip()[:200]!r}"
            raise WorkflowError(f"{argv[0]} did not take the job: {text}")
        return job_id

    def _cancel_argv(self, job_id: str) -> list[str]:
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        _name(job_id, "job_id", allow_none=False)
        if job_id == DRYRUN:
            return
        argv = self._cancel_argv(job_id)
        p = _run(argv)
        if p.returncode != 0 and self.job_state(job_id) not in _ENDED:
            raise WorkflowError(f"{argv[0]} {job_id} failed: {_last(p)}")

    def job_state(self, job_id: str) -> str | None:
        _name(job_id, "job_id", allow_none=False)
        if job_id == DRYRUN:
            return None
        try:
            return self._state(job_id)
        except WorkflowError:
            return None

    def _state(self, job_id: str) -> str | None:
        raise NotImplementedError


_ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


class PBSExecutor(_CommandExecutor):
    """PBS Pro / OpenPBS (``array_flag="-J"``) or Torque (``"-t"``): ``qsub`` with ``-l``
    resources and ``-- command``, ``qdel``, ``qstat -f -x`` (``job_state`` and
    ``Exit_status``)."""

    backend = "pbs"
    array_index_env_var = "PBS_ARRAY_INDEX"
    modes = ("qsub", "dry-run")
    env_commands: ClassVar[dict[str, str]] = {
        "qsub": "REFLOW_QSUB",
        "qdel": "REFLOW_QDEL",
        "qstat": "REFLOW_QSTAT",
    }
    qsub: str
    qdel: str
    qstat: str
    _STATES: ClassVar[dict[str, str]] = {
        "Q": "PENDING",
        "H": "PENDING",
        "W": "PENDING",
        "T": "RUNNING",
        "R": "RUNNING",
        "E": "RUNNING",  # exiting: its result may still be written
        "B": "RUNNING",
        "S": "SUSPENDED",
        "U": "SUSPENDED",
    }

    def __init__(
        self,
        mode: str = "qsub",
        qsub: str = "qsub",
        qdel: str = "qdel",
        qstat: str = "qstat",
        python: str = "",
        *,
        array_flag: str = "-J",
    ) -> None:
        super().__init__(mode, python, {"qsub": qsub, "qdel": qdel, "qstat": qstat})
        if array_flag not in ("-J", "-t"):
            raise ParamError(
                f"array_flag must be '-J' (PBS Pro) or '-t' (Torque), got {shown(array_flag)}",
                param="array_flag",
            )
        self.array_flag = array_flag

    @classmethod
    def from_environment(cls) -> PBSExecutor:
        return cls(**cls._from_env("qsub"))

    def dependency_options(self, job_ids: list[str]) -> dict[str, str]:
        return {"depend": "afterany:" + ":".join(job_ids)}

    def argv(self, resources: JobResources, command: list[str]) -> list[str]:
        res = resources
        out = [self.qsub, "-N", res.job_name or "reflow"]
        out += ["-l", f"ncpus={res.cpus}", "-l", f"walltime={res.time_limit}"]
        out += ["-l", f"mem={res.mem}"]
        if res.array:
            out += [self.array_flag, res.array]
        if res.output_path is not None:
            out += ["-o", str(res.output_path)]
        if res.error_path is not None:
            out += ["-e", str(res.error_path)]
        for key, value in self.options(res).items():
            if key == "depend":
                out += ["-W", f"depend={value}"]
            elif key == "queue":
                out += ["-q", str(value)]
            elif key == "account":
                out += ["-A", str(value)]
            else:
                out += self.flag(key, value)
        return [*out, "--", *command]

    _build_qsub = argv  # reflow-hpc's name

    def parse_job_id(self, stdout: str) -> str | None:
        # "1234.server" (an array: "1234[].server"): the whole id, as qstat/qdel take it
        m = re.search(r"^\s*(\d+(?:\[\d*\])?(?:\.[\w.\-]+)?)\s*$", stdout, re.MULTILINE)
        return m.group(1) if m else None

    def _cancel_argv(self, job_id: str) -> list[str]:
        return [self.qdel, job_id]

    def _state(self, job_id: str) -> str | None:
        p = _run([self.qstat, "-f", "-x", job_id])
        m = re.search(r"^\s*job_state\s*=\s*(\S+)", p.stdout, re.MULTILINE)
        if p.returncode != 0 or m is None:
            return None
        state = m.group(1).upper()
        if state in ("F", "C", "X"):
            code = re.search(r"^\s*Exit_status\s*=\s*(-?\d+)", p.stdout, re.MULTILINE)
            if code is None:
                return "COMPLETED"
            n = int(code.group(1))
            return "COMPLETED" if n == 0 else ("CANCELLED" if n in (271, -7, 143) else "FAILED")
        return self._STATES.get(state, state)


class LSFExecutor(_CommandExecutor):
    """IBM Spectrum LSF: ``bsub -J name[array] -n -W -M ... "command"``, ``bkill``,
    ``bjobs -noheader -o stat``."""

    backend = "lsf"
    array_index_env_var = "LSB_JOBINDEX"
    modes = ("bsub", "dry-run")
    env_commands: ClassVar[dict[str, str]] = {
        "bsub": "REFLOW_BSUB",
        "bkill": "REFLOW_BKILL",
        "bjobs": "REFLOW_BJOBS",
    }
    bsub: str
    bkill: str
    bjobs: str
    _STATES: ClassVar[dict[str, str]] = {
        "PEND": "PENDING",
        "WAIT": "PENDING",
        "PROV": "PENDING",
        "RUN": "RUNNING",
        "DONE": "COMPLETED",
        "EXIT": "FAILED",
        "PSUSP": "SUSPENDED",
        "USUSP": "SUSPENDED",
        "SSUSP": "SUSPENDED",
    }

    def __init__(
        self,
        mode: str = "bsub",
        bsub: str = "bsub",
        bkill: str = "bkill",
        bjobs: str = "bjobs",
        python: str = "",
    ) -> None:
        super().__init__(mode, python, {"bsub": bsub, "bkill": bkill, "bjobs": bjobs})

    @classmethod
    def from_environment(cls) -> LSFExecutor:
        return cls(**cls._from_env("bsub"))

    def dependency_options(self, job_ids: list[str]) -> dict[str, str]:
        return {"dependency_expr": " && ".join(f"ended({j})" for j in job_ids)}

    def argv(self, resources: JobResources, command: list[str]) -> list[str]:
        res = resources
        name = res.job_name or "reflow"
        out = [self.bsub, "-J", f"{name}[{res.array}]" if res.array else name]
        out += ["-n", str(res.cpus), "-W", res.time_limit, "-M", res.mem]
        if res.output_path is not None:
            out += ["-o", str(res.output_path)]
        if res.error_path is not None:
            out += ["-e", str(res.error_path)]
        for key, value in self.options(res).items():
            if key == "dependency_expr":
                out += ["-w", str(value)]
            elif key == "queue":
                out += ["-q", str(value)]
            elif key == "account":
                out += ["-G", str(value)]
            else:
                out += self.flag(key, value)
        return [*out, shlex.join(command)]

    _build_bsub = argv  # reflow-hpc's name

    def parse_job_id(self, stdout: str) -> str | None:
        m = re.search(r"Job <(\d+)> is submitted", stdout)
        return m.group(1) if m else None

    def _cancel_argv(self, job_id: str) -> list[str]:
        return [self.bkill, job_id]

    def _state(self, job_id: str) -> str | None:
        p = _run([self.bjobs, "-noheader", "-o", "stat", job_id])
        words = p.stdout.split()
        if p.returncode != 0 or not words:
            return None
        state = words[0].upper()
        return None if state == "UNKWN" else self._STATES.get(state, state)


class SGEExecutor(_CommandExecutor):
    """(Son of) Grid Engine: ``qsub -b y -pe smp N -l h_rt -l h_vmem -cwd -V ... "command"``,
    ``qdel``, ``qstat -j`` while the job is known, then ``qacct -j`` (its exit status)."""

    backend = "sge"
    array_index_env_var = "SGE_TASK_ID"
    modes = ("qsub", "dry-run")
    env_commands: ClassVar[dict[str, str]] = {
        "qsub": "REFLOW_QSUB",
        "qdel": "REFLOW_QDEL",
        "qstat": "REFLOW_QSTAT",
        "qacct": "REFLOW_QACCT",
    }
    qsub: str
    qdel: str
    qstat: str
    qacct: str

    def __init__(
        self,
        mode: str = "qsub",
        qsub: str = "qsub",
        qdel: str = "qdel",
        qstat: str = "qstat",
        python: str = "",
        *,
        qacct: str = "qacct",
        parallel_environment: str = "smp",
    ) -> None:
        super().__init__(mode, python, {"qsub": qsub, "qdel": qdel, "qstat": qstat, "qacct": qacct})
        self.parallel_environment = _name(parallel_environment, "parallel_environment")

    @classmethod
    def from_environment(cls) -> SGEExecutor:
        return cls(**cls._from_env("qsub"))

    def dependency_options(self, job_ids: list[str]) -> dict[str, str]:
        return {"hold_jid": ",".join(job_ids)}

    def argv(self, resources: JobResources, command: list[str]) -> list[str]:
        res = resources
        out = [self.qsub, "-N", res.job_name or "reflow"]
        out += ["-pe", str(self.parallel_environment), str(res.cpus)]
        out += ["-l", f"h_rt={res.time_limit}", "-l", f"h_vmem={res.mem}", "-cwd", "-V"]
        if res.array:
            out += ["-t", res.array]
        if res.output_path is not None:
            out += ["-o", str(res.output_path)]
        if res.error_path is not None:
            out += ["-e", str(res.error_path)]
        for key, value in self.options(res).items():
            if key == "dependency":  # a Slurm user's afterany:1:2
                value = str(value).removeprefix("afterany:").replace(":", ",")
                key = "hold_jid"
            if key in ("hold_jid", "q", "queue", "A", "account"):
                out += [{"queue": "-q", "account": "-A"}.get(key, "-" + key), str(value)]
            else:
                out += self.flag(key, value)
        return [*out, "-b", "y", shlex.join(command)]

    _build_qsub = argv  # reflow-hpc's name

    def parse_job_id(self, stdout: str) -> str | None:
        m = re.search(r"Your job(?:-array)? (\d+)", stdout)
        return m.group(1) if m else None

    def _cancel_argv(self, job_id: str) -> list[str]:
        return [self.qdel, job_id]

    def _state(self, job_id: str) -> str | None:
        p = _run([self.qstat, "-j", job_id])
        if p.returncode == 0 and p.stdout.strip():
            m = re.search(r"^job_state\s+\d+:\s*(\S+)", p.stdout, re.MULTILINE)
            word = m.group(1).lower() if m else "r"
            if "e" in word:
                return "FAILED"
            if "s" in word or "S" in (m.group(1) if m else ""):
                return "SUSPENDED"
            if "r" in word or "t" in word:
                return "RUNNING"
            return "PENDING"
        p = _run([self.qacct, "-j", job_id])  # no longer queued: the accounting's record
        if p.returncode != 0:
            return None
        failed = re.search(r"^failed\s+(\d+)", p.stdout, re.MULTILINE)
        code = re.search(r"^exit_status\s+(\d+)", p.stdout, re.MULTILINE)
        if code is None:
            return None
        if failed is not None and failed.group(1) != "0" and code.group(1) in ("137", "143"):
            return "CANCELLED"
        return "COMPLETED" if code.group(1) == "0" else "FAILED"


class FluxExecutor(_CommandExecutor):
    """Flux: ``flux submit --job-name --cores -t ... command`` (arrays: ``--cc``), ``flux
    cancel``, ``flux jobs --no-header -o {status_abbrev}``."""

    backend = "flux"
    array_index_env_var = "FLUX_JOB_CC"
    modes = ("flux", "dry-run")
    env_commands: ClassVar[dict[str, str]] = {"flux": "REFLOW_FLUX"}
    flux: str
    _STATES: ClassVar[dict[str, str]] = {
        "D": "PENDING",
        "PD": "PENDING",
        "S": "PENDING",
        "SC": "PENDING",
        "R": "RUNNING",
        "C": "RUNNING",
        "CD": "COMPLETED",
        "F": "FAILED",
        "TO": "FAILED",
        "CA": "CANCELLED",
    }

    def __init__(self, mode: str = "flux", flux: str = "flux", python: str = "") -> None:
        super().__init__(mode, python, {"flux": flux})

    @classmethod
    def from_environment(cls) -> FluxExecutor:
        return cls(**cls._from_env("flux"))

    def dependency_options(self, job_ids: list[str]) -> dict[str, str]:
        return {"dependency": "afterany:" + ",".join(job_ids)}

    def argv(self, resources: JobResources, command: list[str]) -> list[str]:
        res = resources
        out = [self.flux, "submit", "--job-name", res.job_name or "reflow"]
        out += ["--cores", str(res.cpus), "-t", res.time_limit]
        out.append(f"--setattr=system.alloc.mem={res.mem}")
        if res.array:
            out.append(f"--cc={res.array}")
        if res.output_path is not None:
            out += ["--output", str(res.output_path)]
        if res.error_path is not None:
            out += ["--error", str(res.error_path)]
        for key, value in self.options(res).items():
            if key == "dependency":
                out.append(f"--dependency={value}")
            elif key == "queue":
                out += ["--queue", str(value)]
            elif key == "account":
                out.append(f"--setattr=system.bank={value}")
            else:
                out += self.flag(key, value)
        return [*out, *command]

    _build_submit = argv  # reflow-hpc's name

    def parse_job_id(self, stdout: str) -> str | None:
        lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
        # an f58 id (ƒ2bMbq9Kd) or its ASCII form (f2bMbq9Kd), or a decimal one
        if lines and re.fullmatch(r"(?:ƒ|f)?[1-9A-HJ-NP-Za-km-z]+|\d+", lines[-1]):
            return lines[-1]
        return None

    def _cancel_argv(self, job_id: str) -> list[str]:
        return [self.flux, "cancel", job_id]

    def _state(self, job_id: str) -> str | None:
        p = _run([self.flux, "jobs", "--no-header", "-o", "{status_abbrev}", job_id])
        words = p.stdout.split()
        if p.returncode != 0 or not words:
            return None
        return self._STATES.get(words[0].upper(), words[0].upper())
