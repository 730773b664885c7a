"""kill -9 at random points of a durable run, then resume: no packet is lost (issue 14).

``_durable_chain.py`` runs source -> inc -> sink in a subprocess; its sink writes every packet
with its tick's ``ctx.seq`` and the process id into a SQLite file. The test SIGKILLs the
process at a random moment after it says ``running``, reads the run's latest checkpoint, and
starts it again with ``resume="if-exists"``; after the last kill it lets the run finish.

Checked: every id 1..N has an effect; seq k always carries id k + 1 (a re-run tick is the same
tick); with the sink keyed by seq, each tick's effect happened exactly once; without, each
process life wrote exactly the contiguous ticks from the checkpoint it resumed from, so
duplicates come only from ticks after the last checkpoint before a crash. Seeded; the seed is
in every assertion message.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reflow import SqliteCheckpointStore
from reflow._core._checkpoint_format import decode

SCRIPT = Path(__file__).with_name("_durable_chain.py")
RUN = "chain"


def _sink_ticks(ckpt: Path) -> int:
    """The sink's tick count in the run's latest checkpoint (0 if there is none)."""
    if not ckpt.exists():
        return 0
    with SqliteCheckpointStore(ckpt) as store:
        found = store.latest(RUN)
    if found is None:
        return 0
    return int(decode(RUN, found.seq, found.data)["nodes"]["sink"]["ticks"])


def _start(ckpt: Path, effects: Path, n: int, dedupe: bool, mid: str) -> subprocess.Popen[str]:
    url = f"sqlite://{ckpt}"
    args = [sys.executable, str(SCRIPT), url, str(effects), str(n), "--every", "40", "--mid", mid]
    if dedupe:
        args.append("--dedupe")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(effects: Path) -> list[tuple[int, int, int]]:
    db = sqlite3.connect(effects)
    try:
        return [tuple(r) for r in db.execute("SELECT seq, id, pid FROM effects ORDER BY rowid")]
    finally:
        db.close()


def crash_and_resume(
    tmp: Path, n: int, kills: int, dedupe: bool, seed: int, mid: str = "inline"
) -> dict[str, int]:
    rng = random.Random(seed)
    ckpt, effects = tmp / "ckpt.db", tmp / "effects.db"
    starts: dict[int, int] = {}  # pid -> the sink tick count it resumed from
    done = 0
    finished = False
    while not finished:
        resume_at = _sink_ticks(ckpt)
        proc = _start(ckpt, effects, n, dedupe, mid)
        starts[proc.pid] = resume_at
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("running"), (seed, first, proc.stderr and proc.stderr.read())
        if done < kills:
            time.sleep(rng.uniform(0.0, 0.02))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                done += 1
            proc.wait(timeout=60)
            finished = proc.returncode == 0
        else:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, (seed, out, err)
            finished = True
    rows = _rows(effects)
    ids = {i for _, i, _ in rows}
    assert ids == set(range(1, n + 1)), (seed, sorted(set(range(1, n + 1)) - ids)[:10])
    assert all(i == s + 1 for s, i, _ in rows), (seed, [r for r in rows if r[1] != r[0] + 1][:5])
    if dedupe:
        assert sorted(s for s, _, _ in rows) == list(range(n)), seed
    else:
        by_pid: dict[int, list[int]] = {}
        for s, _, pid in rows:
            by_pid.setdefault(pid, []).append(s)
        for pid, seqs in by_pid.items():
            first_seq = starts[pid]
            assert seqs == list(range(first_seq, first_seq + len(seqs))), (
                seed,
                pid,
                first_seq,
                seqs[:5],
            )
    return {"kills": done, "rows": len(rows), "duplicates": len(rows) - n}


def _seed() -> int:
    return int(os.environ.get("REFLOW_DURABLE_SEED", random.randrange(1 << 30)))


@pytest.mark.parametrize(
    ("dedupe", "mid"),
    [(True, "inline"), (False, "worker")],
    ids=["dedupe-by-seq", "at-least-once-worker"],
)
def test_kill_and_resume_loses_nothing(tmp_path: Path, dedupe: bool, mid: str) -> None:
    """16 crash points in all (8 per row)."""
    seed = _seed()
    print(f"seed {seed} (REFLOW_DURABLE_SEED={seed} reruns it)")
    got = crash_and_resume(tmp_path, 3000, 8, dedupe, seed, mid)
    print(got)
    assert got["kills"] >= 1, (seed, got)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dedupe", "mid", "kills"),
    [(True, "inline", 100), (False, "inline", 100), (True, "async", 40), (False, "worker", 40)],
    ids=["dedupe-by-seq", "at-least-once", "dedupe-async", "at-least-once-worker"],
)
def test_kill_and_resume_at_many_points(tmp_path: Path, dedupe: bool, mid: str, kills: int) -> None:
    """280 crash points in all, each row over a run of 20,000 packets."""
    seed = _seed()
    print(f"seed {seed} (REFLOW_DURABLE_SEED={seed} reruns it)")
    got = crash_and_resume(tmp_path, 20_000, kills, dedupe, seed, mid)
    print(got)
    assert got["kills"] >= kills * 9 // 10, (seed, got)  # a life may finish before its kill
