"""A real single-node Slurm for the tests: ``munged``, ``slurmctld`` and ``slurmd`` from Debian's
``slurm-wlm``/``munge`` packages, started in a temporary directory and pointed to by
``SLURM_CONF``, and ended by killing only the processes this module started.

What a single-node Slurm 22.05 needs in a container (found by running it here, as root, with no
systemd and no cgroup v1/v2 delegation):

- its own ``munged``: a fresh 1024-byte key (mode 0400), its socket, pid, log and seed files in
  the temp dir, and ``--force`` (``-f``): munged checks the permissions of every directory on
  its paths and refuses a socket under a 0700 ``mktemp -d`` dir ("Socket is inaccessible:
  execute permissions for all required on ..."); the fixture makes its dir 0755 as well.
  ``AuthType=auth/munge`` with ``AuthInfo=socket=<that socket>`` sends the daemons *and* the
  clients (``sbatch``, ``squeue`` read ``SLURM_CONF``) to it.
- ``SlurmUser=root`` and ``SlurmdUser=root``: the tests run as root, and the package's
  ``slurm`` user would need the temp dir's state and spool paths made its own.
- no cgroup plugin: with ``ProctrackType=proctrack/cgroup`` (or ``task/cgroup``) the node
  registers, but every batch step dies at once — slurmstepd logs "cgroup namespace 'freezer'
  not mounted. aborting" / "cannot create proctrack context for proctrack/cgroup" (no cgroup
  v1 freezer, no delegated v2 tree in the container). So ``ProctrackType=proctrack/linuxproc``,
  ``TaskPlugin=task/none``, and ``JobAcctGatherType=jobacct_gather/linux`` (a poll of /proc)
  with ``JobAcctGatherParams=OverMemoryKill``, which kills a job over its ``--mem``; such a
  job ends ``FAILED`` (not ``OUT_OF_MEMORY``, which needs the cgroup plugin) with
  slurmstepd's "exceeded memory limit" on its stderr. The ``mpi/pmix`` errors in the logs are
  harmless (no PMIx library; ``MpiDefault=none``).
- ``NodeName=localhost NodeAddr=127.0.0.1`` and ``slurmd -N localhost``: the container's
  hostname need not resolve; ``SlurmctldHost=localhost``.
- non-default ``SlurmctldPort``/``SlurmdPort`` (free ports), so it does not clash with another
  Slurm on the machine; every pid, log, state and spool path in the temp dir.
- ``SchedulerParameters=sched_min_interval=100000,batch_sched_delay=0``: the main scheduler
  may run every 0.1 s (default 2 s) and batch jobs are not held back (default 3 s), so array
  tasks start as soon as a CPU is free (a 3-step fan-out of 6 took 15.5 s before, 7.7 s after);
  ``DefMemPerCPU=256``: under ``CR_Core_Memory`` a job without ``--mem`` would otherwise get
  the whole node's memory, and only one would run at a time.
- ``MinJobAge=600``: with no ``slurmdbd`` there is no ``sacct``, so a finished job's state
  (``FAILED``, ``TIMEOUT``...) is read from ``squeue --states=all``, which keeps it that long.
- ``KillWait=2``, ``OverTimeLimit=0``: a job over its ``--time`` is killed at slurmctld's next
  limit check (about every 30 s, not configurable), 2 s after its SIGTERM; one minute being the
  smallest limit, a TIMEOUT takes 60-90 s.
- a second partition ``short`` (``MaxTime=1``), for the refusal of a longer ``time``.
- the daemons run in the foreground (``-D``) as children of the test process, killed by pid;
  job processes (slurmstepd double-forks, so they are not slurmd's children) are found by the
  ``SLURM_CONF`` in their environment. ``sinfo`` shows the node ``idle`` 1-2 s after start.

Used by ``test_slurm_*.py`` (module-scoped fixture ``slurm``); skipped, with the reason, when the
binaries are absent (``.ci/run`` installs ``slurm-wlm munge``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")


def _find(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/usr/bin") if os.path.exists(p := f"{d}/{name}")), None
    )


def missing() -> list[str]:
    return [b for b in BINARIES if _find(b) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    cpus: int
    mem_mb: int
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_find(args[0]) or args[0], *args[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log(self, name: str) -> str:
        p = self.root / f"{name}.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def kill(self, name: str) -> None:
        """Kill -9 one of this cluster's daemons (``slurmctld``, ``slurmd``, ``munged``)."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        # jobs first, while the controller is there to end them; then the daemons, by pid
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self.run("scancel", "--user=root", timeout=10)
        for name in ("slurmd", "slurmctld", "munged"):
            self.kill(name)
        # slurmstepd and the job scripts under it are not children of slurmd (it double
        # forks): they are the processes that carry this cluster's SLURM_CONF
        for proc in self.jobs():
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def jobs(self) -> list[psutil.Process]:
        # /proc/<pid>/environ read raw: slurmstepd rewrites its title over that area, padding
        # with NULs, and psutil.environ() stops at the first empty entry
        mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
        tag = f"SLURM_CONF={self.conf}".encode() + b"\0"
        found = []
        for proc in psutil.process_iter():
            if proc.pid in mine:
                continue
            try:
                environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
            except OSError:
                continue
            if b"\0" + tag in environ or environ.startswith(tag):
                found.append(proc)
        return found


CONF = """\
ClusterName=reflowtest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=100000,batch_sched_delay=0
DefMemPerCPU=256
ReturnToService=2
MinJobAge=600
KillWait=2
OverTimeLimit=0
InactiveLimit=0
MpiDefault=none
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=localhost MaxTime=1 State=UP
{extra}"""


def start(root: Path, extra: str = "") -> SlurmCluster:
    """Start the daemons with ``extra`` lines appended to slurm.conf; wait for the node."""
    for d in ("state", "spool", "munge"):
        (root / d).mkdir(parents=True, exist_ok=True)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (root / "munge").chmod(0o700)
    cpus = os.cpu_count() or 1
    mem_mb = max(256, _mem_mb() - 512)
    conf = root / "slurm.conf"
    conf.write_text(
        CONF.format(
            root=root,
            ctld_port=free_port(),
            slurmd_port=free_port(),
            cpus=cpus,
            mem_mb=mem_mb,
            extra=extra,
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(root, conf, cpus, mem_mb, env)
    out = open(root / "daemons.out", "ab")  # noqa: SIM115 - lives as long as the daemons
    munged = [
        _find("munged") or "munged",
        "-F",
        "-f",
        f"--socket={root}/munge.socket",
        f"--key-file={key}",
        f"--pid-file={root}/munged.pid",
        f"--log-file={root}/munged.log",
        f"--seed-file={root}/munge/munged.seed",
    ]
    cluster.procs["munged"] = subprocess.Popen(munged, env=env, stdout=out, stderr=out)
    _wait(lambda: (root / "munge.socket").exists(), 15, "munged's socket", cluster)
    cluster.procs["slurmctld"] = subprocess.Popen(
        [_find("slurmctld") or "slurmctld", "-D", "-i", "-f", str(conf)],
        env=env,
        stdout=out,
        stderr=out,
    )
    cluster.procs["slurmd"] = subprocess.Popen(
        [_find("slurmd") or "slurmd", "-D", "-N", "localhost", "-f", str(conf)],
        env=env,
        stdout=out,
        stderr=out,
    )
    _wait(lambda: _idle(cluster), 60, "the node to be idle in sinfo", cluster)
    return cluster


def _idle(cluster: SlurmCluster) -> bool:
    for name, proc in cluster.procs.items():
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
    p = cluster.run("sinfo", "-h", "-N", "-o", "%T", timeout=10)
    return p.returncode == 0 and set(p.stdout.split()) == {"idle"}


def _wait(ok: object, seconds: float, what: str, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + seconds
    err = ""
    while time.monotonic() < deadline:
        try:
            if ok():  # type: ignore[operator]
                return
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            err = str(exc)
            if isinstance(exc, RuntimeError):
                break
        time.sleep(0.5)
    logs = "\n".join(
        f"--- {n}.log\n{cluster.log(n)}" for n in ("munged", "slurmctld", "slurmd", "daemons")
    )
    out = (cluster.root / "daemons.out").read_text(errors="replace")[-2000:]
    cluster.stop()
    raise RuntimeError(f"waiting for {what} failed {err}\n{logs}\n--- daemons.out\n{out}")


def slurm_fixture(extra: str = "") -> Iterator[SlurmCluster]:
    """The body of a module-scoped ``slurm`` fixture: yields the running cluster with
    ``SLURM_CONF`` set in this process's environment (the backend's commands read it)."""
    gone = missing()
    if gone:
        pytest.skip(f"no Slurm here (missing {', '.join(gone)}): apt-get install slurm-wlm munge")
    root = Path(tempfile.mkdtemp(prefix="reflow-slurm-"))
    root.chmod(0o755)
    cluster = start(root, extra)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        shutil.rmtree(root, ignore_errors=True)
