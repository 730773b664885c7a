"""Nodes placed on Ray actors, on a real local Ray cluster (a head and a worker node on
127.0.0.1, one CPU each, shared by the module): round trips, ordering, backpressure across
the process boundary, remote failures and policies, a killed actor process, pack templates
verified in the Ray actor, resources no node has, and a cluster that goes away mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from raycluster import ENV, cluster_fixture, kill_cluster, start_cluster, stop_cluster

from reflow import (
    Actor,
    Message,
    Network,
    PlacementError,
    Ray,
    RemoteTickError,
    TrustStore,
    WorkerLostError,
    load_pack,
    unload_pack,
)

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'reflow[ray]'")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    yield from cluster_fixture(workers=1)


# -- actors (pickled by value into the Ray actors) --------------------------------------------


class Triple(Actor):
    """out = 3 * in, with the process id it ran in."""

    component = "triple"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        v = ctx.inputs["in"]["data"]
        ctx.done({"out": Message.object({"v": 3 * v, "pid": os.getpid()})})


class Numbers(Actor):
    component = "numbers"
    inports: list[str] = []
    outports = ["out"]

    def __init__(self, n: int) -> None:
        self.n = n

    def run(self, ctx: Any) -> None:
        for i in range(self.n):
            ctx.send({"out": Message.integer(i)})
        ctx.done()


class Collect(Actor):
    component = "collect"
    inports = ["in"]
    outports: list[str] = []

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[tuple[Any, float]] = []

    def run(self, ctx: Any) -> None:
        self.seen.append((ctx.inputs["in"]["data"], time.monotonic()))
        if self.delay:
            time.sleep(self.delay)
        ctx.done()


class StampedSource(Actor):
    """Streams ``n`` packets with ctx.send, each stamped with when it was made."""

    component = "stamped"
    inports: list[str] = []
    outports = ["out"]

    def __init__(self, n: int) -> None:
        self.n = n

    def run(self, ctx: Any) -> None:
        for i in range(self.n):
            ctx.send({"out": Message.object({"i": i, "t": time.monotonic(), "pid": os.getpid()})})
        ctx.done()


class Moody(Actor):
    """Fails as the input says: raise, ctx.fail, or (odd calls of 'flaky') raise once."""

    component = "moody"
    inports = ["in"]
    outports = ["out"]

    def __init__(self) -> None:
        self.calls = 0

    def run(self, ctx: Any) -> None:
        self.calls += 1
        what = ctx.inputs["in"]["data"]
        if what == "raise":
            return self._deep(3)
        if what == "fail":
            ctx.fail("moody said no")
            return
        if what == "flaky" and self.calls % 2 == 1:
            raise ConnectionError("flaky, try again")
        ctx.done({"out": Message.string(f"ok {what}")})

    def _deep(self, n: int) -> None:
        if n == 0:
            raise KeyError("missing-key")
        self._deep(n - 1)


class Napper(Actor):
    component = "napper"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        what = ctx.inputs["in"]["data"]
        if what == "nap":
            time.sleep(120)
        ctx.done({"out": Message.integer(os.getpid())})


class Locked(Actor):
    component = "locked"
    inports = ["in"]
    outports = ["out"]

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def run(self, ctx: Any) -> None:
        ctx.done()


def _refuse() -> Any:
    raise RuntimeError("this actor cannot be rebuilt here")


class NoRebuild(Actor):
    component = "norebuild"
    inports = ["in"]
    outports = ["out"]

    def __reduce__(self) -> Any:
        return (_refuse, ())

    def run(self, ctx: Any) -> None:
        ctx.done()


def _chain(middle: Actor, placement: Ray | None, capacity: int | None = None) -> Network:
    net = Network(capacity=capacity) if capacity else Network()
    net.register_actor("mid", middle)
    net.register_actor("sink", Collect())
    net.add_node("m", "mid", placement=placement)
    net.add_node("k", "sink")
    net.add_connection("m", "out", "k", "in")
    return net


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("inflight", [1, 3])
def test_a_remote_node_runs_in_another_process_in_order(cluster: str, inflight: int) -> None:
    net = Network()
    net.register_actor("src", Numbers(40))
    net.register_actor("triple", Triple())
    net.register_actor("sink", Collect())
    net.add_node("s", "src")
    net.add_node("t", "triple", placement=Ray(address=cluster, max_inflight=inflight))
    net.add_node("k", "sink")
    net.add_connection("s", "out", "t", "in")
    net.add_connection("t", "out", "k", "in")
    out = net.collect("t", "out")
    summary = net.run(timeout=120)
    net.shutdown()
    assert summary.ok, summary.failures
    rows = out.values()
    assert [r["v"] for r in rows] == [3 * i for i in range(40)], "ticks keep their order"
    pids = {r["pid"] for r in rows}
    assert len(pids) == 1 and os.getpid() not in pids, "all ticks ran in one Ray actor"
    assert summary.node_ticks["t"] == 40


def test_a_graph_json_places_a_node_through_metadata(cluster: str) -> None:
    doc = {
        "processes": {
            "t": {
                "component": "triple",
                "metadata": {"placement": {"ray": {"address": cluster, "num_cpus": 0.5}}},
            }
        },
        "connections": [{"data": 7, "tgt": {"process": "t", "port": "in"}}],
        "outports": {"out": {"process": "t", "port": "out"}},
    }
    net = Network.from_graph(doc)
    net.register_actor("triple", Triple())
    out = net.collect("out")
    summary = net.run(timeout=60)
    net.shutdown()
    assert summary.ok, summary.failures
    assert out.values()[0]["v"] == 21 and out.values()[0]["pid"] != os.getpid()


# -- backpressure across processes ------------------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 4])
def test_a_fast_remote_source_never_runs_ahead_of_a_slow_sink(cluster: str, capacity: int) -> None:
    n = 120
    sink = Collect(delay=0.004)
    net = Network(capacity=capacity)
    net.register_actor("src", StampedSource(n))
    net.register_actor("sink", sink)
    net.add_node("s", "src", placement=Ray(address=cluster, num_cpus=0.5))
    net.add_node("k", "sink")
    net.add_connection("s", "out", "k", "in")
    summary = net.run(timeout=120)
    net.shutdown()
    assert summary.ok, summary.failures
    assert [d["i"] for d, _ in sink.seen] == list(range(n))
    assert sink.seen[0][0]["pid"] != os.getpid()
    # in flight when packet i was made: i + 1 made so far, minus those the sink had taken
    # (CLOCK_MONOTONIC is one clock for every process of this machine)
    taken = [t for _, t in sink.seen]
    worst = 0
    for d, _ in sink.seen:
        consumed = sum(1 for t in taken if t < d["t"])
        worst = max(worst, d["i"] + 1 - consumed)
    k = 1
    assert worst <= capacity + k, f"{worst} packets in flight, capacity {capacity} + K {k}"
    assert summary.overflowed == 0


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "error", "fragments"),
    [
        (
            "raise",
            "RemoteTickError: KeyError: 'missing-key'",
            ["remote traceback (on the Ray actor)", "in _deep", "KeyError: 'missing-key'"],
        ),
        ("fail", "moody said no", []),
    ],
)
def test_remote_failures_are_reported_as_on_one_machine(
    cluster: str, what: str, error: str, fragments: list[str]
) -> None:
    net = _chain(Moody(), Ray(address=cluster, num_cpus=0.5))
    events = net.events(kinds=["ActorFailed"])
    net.add_initial("m", "in", Message.string(what))
    net.add_initial("m", "in", Message.string("fine"))
    out = net.collect("m", "out")
    summary = net.run(timeout=60)
    net.shutdown()
    assert summary.failure_count == 1
    (failure,) = summary.failures
    assert failure.node == "m" and failure.component == "moody"
    assert failure.error == error
    for f in fragments:
        assert f in failure.traceback
    if what == "raise":
        assert isinstance(failure.exception, RemoteTickError)
        assert failure.exception.remote_type == "KeyError"
    (ev,) = events.drain()
    assert ev["actorId"] == "m" and ev["error"] == error
    assert out.values() == ["ok fine"], "the node goes on after a failed tick"


def test_a_retry_policy_applies_to_a_remote_node(cluster: str) -> None:
    net = Network()
    net.register_actor("moody", Moody())
    net.add_node(
        "m",
        "moody",
        policies={"retry": {"attempts": 3, "backoff_s": 0.001, "max_delay_s": 0.002}},
        placement=Ray(address=cluster, num_cpus=0.5),
    )
    out = net.collect("m", "out")
    net.add_initial("m", "in", Message.string("flaky"))
    summary = net.run(timeout=60)
    net.shutdown()
    assert summary.ok, summary.failures
    assert out.values() == ["ok flaky"]


def test_a_killed_actor_process_fails_its_tick_and_the_next_tick_gets_a_new_one(
    cluster: str,
) -> None:
    net = _chain(Napper(), Ray(address=cluster, num_cpus=0.5))
    out = net.collect("m", "out")
    net.start()
    try:
        net.add_initial("m", "in", Message.string("pid"))
        deadline = time.monotonic() + 60
        while not out.values() and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = out.values()[0]
        net.add_initial("m", "in", Message.string("nap"))
        time.sleep(1.0)  # the nap has started there
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        summary = net.run(timeout=60)
        took = time.monotonic() - t0
        assert took < 20, f"the lost tick took {took:.1f} s to fail"
        (failure,) = summary.failures
        assert isinstance(failure.exception, WorkerLostError)
        assert failure.error.startswith(
            f"WorkerLostError: node 'm': the Ray actor running its tick died (pid {pid} on Ray node"
        ), failure.error
        assert failure.exception.node == "m" and failure.exception.cause
        net.add_initial("m", "in", Message.string("pid"))
        again = net.run(timeout=60)  # a summary since start(): the one failure above
        assert again.failure_count == 1, again.failures
        assert len(out.values()) == 2 and out.values()[1] != pid, "a new Ray actor took over"
    finally:
        net.shutdown()


# -- refusals that need the cluster --------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "placement", "fragment"),
    [
        (Triple(), {"num_cpus": 4}, "asks for num_cpus=4 but the largest node of the Ray cluster"),
        (Triple(), {"resources": {"gpu_box": 1}}, "asks for resources['gpu_box']=1 but the"),
        (Triple(), {"memory": "64T"}, "asks for memory=7.03687e+13 but the largest node"),
        (
            Locked(),
            {},
            "the actor of template 'mid' (Locked) cannot be sent to a Ray actor: TypeError: "
            "cannot pickle '_thread.lock' object",
        ),
        (
            NoRebuild(),
            {},
            "its Ray actor could not be started: RuntimeError: this actor cannot be rebuilt here",
        ),
        (Triple(), {"address": "127.0.0.1:1"}, "but this process is connected to the one at"),
    ],
)
def test_what_cannot_be_placed_is_refused_at_wiring_time(
    cluster: str, actor: Actor, placement: dict[str, Any], fragment: str
) -> None:
    net = Network()
    net.register_actor("mid", actor)
    t0 = time.perf_counter()
    with pytest.raises(PlacementError) as info:
        net.add_node("m", "mid", placement=Ray(**{"address": cluster, **placement}))
    assert time.perf_counter() - t0 < 60
    assert fragment in str(info.value), str(info.value)
    assert info.value.node == "m" and "node 'm'" in str(info.value)
    net.shutdown()


# -- pack templates ---------------------------------------------------------------------------

DESCRIBE = b'{"abi":"1.0","templates":[{"id":"rn/answer","inports":["in"],"outports":["out"]}]}'


def _wat_pack(path: Path, answer: int) -> bytes:
    """A signed pack whose one wasm template answers ``answer`` on every tick, written by
    hand in WAT; returns the public key (PEM)."""
    import wasmtime

    from reflow.abi import encode_result_done
    from reflow.abi._bundle import artifact_entry, build_bundle
    from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
    from reflow.abi._signing import generate_key, public_key_pem, sign_manifest

    def hexed(raw: bytes) -> str:
        return "".join(f"\\{b:02x}" for b in raw)

    def sl(ptr: int, n: int) -> str:
        return f"(i64.const {(n << 32) | ptr})"

    done = encode_result_done([("out", Message.integer(answer))])
    wasm = bytes(
        wasmtime.wat2wasm(f"""(module
      (memory (export "memory") 1)
      (data (i32.const 1024) "{hexed(DESCRIBE)}")
      (data (i32.const 3000) "\\00\\00\\00")
      (data (i32.const 8192) "{hexed(done)}")
      (func (export "reflow_abi_version") (result i32) (i32.const 0x10000))
      (func (export "reflow_alloc") (param i32) (result i32) (i32.const 4096))
      (func (export "reflow_describe") (result i64) {sl(1024, len(DESCRIBE))})
      (func (export "reflow_open") (param i32 i32) (result i64) {sl(3000, 3)})
      (func (export "reflow_tick") (param i32 i32) (result i64) {sl(8192, len(done))}))""")
    )
    art = "artifacts/wasm32/answer.wasm"
    manifest = PackManifest(
        name="rn/answer",
        version="0.1.0",
        abi="1.0",
        description="answers",
        license="MIT",
        templates=(
            TemplateSpec(id="rn/answer", entry="answer", inports=("in",), outports=("out",)),
        ),
        artifacts=(artifact_entry("answer", PORTABLE_TRIPLE, "wasm", art, wasm),),
    )
    key = generate_key()
    mbytes = manifest.to_toml()
    path.write_bytes(build_bundle(mbytes, {art: wasm}, [sign_manifest(mbytes, key)]))
    return public_key_pem(key)


@pytest.fixture
def pack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    yield tmp_path
    unload_pack("rn/answer")


def test_a_pack_template_runs_on_a_remote_node_verified_there(cluster: str, pack_env: Path) -> None:
    pack = pack_env / "answer.rflpack"
    TrustStore().add(_wat_pack(pack, 42), names=["rn/*"])
    load_pack(pack)
    net = Network()
    net.add_node("a", "rn/answer", placement=Ray(address=cluster, num_cpus=0.5))
    out = net.collect("a", "out")
    for i in range(3):
        net.add_initial("a", "in", Message.integer(i))
    summary = net.run(timeout=60)
    net.shutdown()
    assert summary.ok, summary.failures
    assert out.values() == [42, 42, 42]


def test_a_pack_file_changed_after_loading_is_refused_by_the_ray_actor(
    cluster: str, pack_env: Path
) -> None:
    pack = pack_env / "answer.rflpack"
    TrustStore().add(_wat_pack(pack, 42), names=["rn/*"])
    load_pack(pack)
    good = pack.read_bytes()
    _wat_pack(pack, 43)  # same name, another key and body: what the Ray actor gets
    net = Network()
    with pytest.raises(PlacementError) as info:
        net.add_node("a", "rn/answer", placement=Ray(address=cluster, num_cpus=0.5))
    net.shutdown()
    assert "node 'a': its Ray actor could not be started" in str(info.value)
    assert "Untrusted" in str(info.value) or "signature" in str(info.value), str(info.value)
    assert good != pack.read_bytes()


# -- a cluster that goes away ----------------------------------------------------------------------

GONE = """
import sys, time
from reflow import Actor, Message, Network, Ray

class Nap(Actor):
    component = "nap"; inports = ["in"]; outports = ["out"]
    def run(self, ctx):
        time.sleep(0.5)
        ctx.done({"out": ctx.inputs["in"]})

net = Network()
net.register_actor("nap", Nap())
net.add_node("n", "nap", placement=Ray(address=sys.argv[1]))
for i in range(40):
    net.add_initial("n", "in", Message.integer(i))
print("STARTED", flush=True)
t0 = time.time()
summary = net.run(timeout=300)
print("SECONDS", time.time() - t0, flush=True)
print("TICKS", summary.node_ticks["n"], "FAILED", summary.failure_count, flush=True)
for f in {f.error for f in summary.failures}:
    print("ERROR", f, flush=True)
net.shutdown(wait=0)
print("DONE", flush=True)
"""


def test_a_cluster_that_goes_away_mid_run_fails_the_run_clearly() -> None:
    address, temp = start_cluster(workers=0)
    try:
        env = {**ENV, "REFLOW_RAY_LOST_AFTER_S": "3"}
        proc = subprocess.Popen(
            [sys.executable, "-c", GONE, address],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("STARTED")
        time.sleep(4)  # a few ticks
        kill_cluster(temp)
        out, err = proc.communicate(timeout=120)
    finally:
        stop_cluster(temp)
    assert "DONE" in out, out + err[-3000:]
    assert f"the Ray cluster at {address} went away" in out, out
    assert float(out.split("SECONDS")[1].split()[0]) < 100
    failed = int(out.split("FAILED")[1].split()[0])
    ticks = int(out.split("TICKS")[1].split()[0])
    assert failed >= 1 and ticks == 40, "every tick ran or failed: none is left hanging"


def test_a_stream_packet_fails_the_placed_tick_before_it_travels(cluster: str) -> None:
    net = _chain(Triple(), Ray(address=cluster, num_cpus=0.5))
    net.add_initial("m", "in", Message._stream("a local channel"))
    net.add_initial("m", "in", Message.integer(2))
    out = net.collect("m", "out")
    summary = net.run(timeout=60)
    net.shutdown()
    (failure,) = summary.failures
    assert failure.error.startswith(
        "StreamError: node 'm' is placed on a Ray actor: a Stream input on in-port 'in' cannot "
        "cross processes"
    ), failure.error
    assert [v["v"] for v in out.values()] == [6]


class Splitter(Actor):
    """Sends two packets mid-tick, then ends with a third."""

    component = "splitter"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        v = ctx.inputs["in"]["data"]
        ctx.send({"out": Message.integer(10 * v)})
        ctx.send({"out": Message.integer(10 * v + 1)})
        ctx.done({"out": Message.integer(10 * v + 2)})


@pytest.mark.parametrize("inflight", [1, 4])
def test_mid_tick_sends_of_batched_remote_ticks_keep_their_order(
    cluster: str, inflight: int
) -> None:
    net = Network(capacity=2)
    net.register_actor("src", Numbers(30))
    net.register_actor("split", Splitter())
    net.register_actor("sink", Collect(delay=0.001))
    net.add_node("s", "src")
    net.add_node("p", "split", placement=Ray(address=cluster, num_cpus=0.5, max_inflight=inflight))
    net.add_node("k", "sink")
    net.add_connection("s", "out", "p", "in")
    net.add_connection("p", "out", "k", "in")
    out = net.collect("p", "out")
    summary = net.run(timeout=120)
    net.shutdown()
    assert summary.ok, summary.failures
    assert out.values() == [10 * v + j for v in range(30) for j in range(3)]
