"""In-ports an actor does not declare, as offbit_reflow treats them: a program's own Python
actor gets a packet sent there in ``ctx.inputs`` under that name (its own tick; with
``await_all_inports`` it rides along with the next complete set). reflow's templates keep
refusing such a port at wiring time. Differential rows run the same script through
offbit_reflow when ``REFLOW_SDK_PYTHON`` names an interpreter that has it.

Also here: under ``start()`` a program's sync actors run on threads, so blocking ticks
overlap, as they do in the SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from reflow import Actor, Message, Network, UnknownPortError, template_actor

SDK_PYTHON = os.environ.get("REFLOW_SDK_PYTHON")

SCRIPT = """
import json, sys, time
from {lib} import Actor, Message, Network

class Src(Actor):
    component = "src"; inports = ["go"]; outports = ["out", "other"]
    def run(self, ctx):
        ctx.done({{"out": Message.integer(1), "other": Message.string("x")}})

class One(Actor):
    component = "one"; inports = ["in"]; outports = []
    def run(self, ctx):
        print("TICK", json.dumps(ctx.inputs, sort_keys=True), flush=True)
        ctx.done()

class Join(Actor):
    component = "join"; inports = ["a", "b"]; outports = []
    await_all_inports = True
    def run(self, ctx):
        print("TICK", json.dumps(ctx.inputs, sort_keys=True), flush=True)
        ctx.done()

net = Network()
net.register_actor("src", Src()._build())
net.register_actor("one", One()._build())
net.register_actor("join", Join()._build())
net.add_node("s", "src")
case = sys.argv[1]
if case == "join":
    net.add_node("k", "join")
    net.add_connection("s", "out", "k", "a")
    net.add_connection("s", "other", "k", "extra")
    net.add_initial("k", "b", {{"type": "Integer", "data": 7}})
else:
    net.add_node("k", "one")
    if case in ("declared_first", "only"):
        if case == "declared_first":
            net.add_connection("s", "out", "k", "in")
        net.add_connection("s", "other", "k", "extra")
    elif case == "undeclared_first":
        net.add_connection("s", "other", "k", "extra")
        net.add_connection("s", "out", "k", "in")
    elif case == "initial":
        net.add_initial("k", "extra", {{"type": "Integer", "data": 5}})
net.add_initial("s", "go", {{"type": "Flow"}})
net.start()
time.sleep(0.8)
net.shutdown()
"""

X = {"data": "x", "type": "String"}
ONE = {"data": 1, "type": "Integer"}

CASES = [
    ("only", [{"extra": X}]),
    ("declared_first", [{"extra": X}, {"in": ONE}]),
    ("undeclared_first", [{"extra": X}, {"in": ONE}]),
    ("initial", [{"extra": {"data": 5, "type": "Integer"}}]),
    ("join", [{"a": ONE, "b": {"data": 7, "type": "Integer"}, "extra": X}]),
]


def _ticks(python: str, lib: str, case: str) -> list[Any]:
    r = subprocess.run(
        [python, "-c", SCRIPT.format(lib=lib), case],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    ticks = [json.loads(ln[5:]) for ln in r.stdout.splitlines() if ln.startswith("TICK ")]
    return sorted(ticks, key=lambda t: json.dumps(t, sort_keys=True))


@pytest.mark.parametrize(("case", "expected"), CASES, ids=[c for c, _ in CASES])
def test_python_actors_get_packets_on_undeclared_inports(case: str, expected: list[Any]) -> None:
    ticks = _ticks(sys.executable, "reflow", case)
    assert ticks == sorted(expected, key=lambda t: json.dumps(t, sort_keys=True))


@pytest.mark.skipif(not SDK_PYTHON, reason="REFLOW_SDK_PYTHON is not set")
@pytest.mark.parametrize("case", [c for c, _ in CASES])
def test_undeclared_inports_match_offbit_reflow(case: str) -> None:
    assert SDK_PYTHON is not None
    assert _ticks(sys.executable, "reflow", case) == _ticks(SDK_PYTHON, "offbit_reflow", case)


class Strict(Actor):
    component = "strict"
    inports = ["in"]
    accept_undeclared_inports = False

    def run(self, ctx: Any) -> None:
        ctx.done()


class Loose(Actor):
    component = "loose"
    inports = ["in"]

    def run(self, ctx: Any) -> None:
        ctx.done()


def _net() -> Network:
    net = Network()
    net.register_actor("pass", template_actor("tpl_passthrough"))
    net.register_actor("strict", Strict())
    net.register_actor("loose", Loose())
    net.add_node("p", "pass")
    net.add_node("s", "strict")
    net.add_node("l", "loose")
    return net


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (
            lambda n: n.add_connection("l", "none", "p", "nope"),
            "node 'l' has no out port 'none'",
        ),
        (
            lambda n: n.add_connection("p", "output", "p", "nope"),
            "node 'p' has no in port 'nope'; declared in ports: input",
        ),
        (
            lambda n: n.add_initial("p", "nope", Message.flow()),
            "node 'p' has no in port 'nope'; declared in ports: input",
        ),
        (
            lambda n: n.add_connection("p", "output", "s", "nope"),
            "node 's' has no in port 'nope'; declared in ports: in",
        ),
        (
            lambda n: n.add_initial("s", "nope", Message.flow()),
            "node 's' has no in port 'nope'; declared in ports: in",
        ),
    ],
    ids=["out-port", "template", "template-initial", "strict", "strict-initial"],
)
def test_templates_and_strict_actors_refuse_undeclared_inports(call: Any, fragment: str) -> None:
    net = _net()
    with pytest.raises(UnknownPortError) as info:
        call(net)
    assert fragment in str(info.value)


def test_a_template_feeds_an_undeclared_inport_of_a_python_actor() -> None:
    net = _net()
    net.add_connection("p", "output", "l", "side")
    got = net.collect("l", "side")
    net.add_initial("p", "input", Message.integer(3))
    summary = net.run(timeout=10)
    assert summary.ok and [m for m in got.values()] == [3]


class Blocking(Actor):
    """A sync tick that blocks (as an HTTP call does), recording when it ran."""

    component = "blocking"
    inports = ["go"]
    outports: list[str] = []
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def run(self, ctx: Any) -> None:
        t0 = time.monotonic()
        time.sleep(0.3)
        with self.lock:
            self.spans.append((t0, time.monotonic()))
        ctx.done()


class BlockingInline(Blocking):
    execution = "inline"


def _overlap(actor: Blocking, mode: str) -> bool:
    actor.spans = []
    net = Network()
    net.register_actor("b", actor)
    for i in range(3):
        net.add_node(f"b{i}", "b")
        net.add_initial(f"b{i}", "go", Message.flow())
    if mode == "start":
        net.start()
        deadline = time.monotonic() + 10
        while len(actor.spans) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        net.shutdown()
    else:
        net.run(timeout=10)
    assert len(actor.spans) == 3
    return max(s for s, _ in actor.spans) < min(e for _, e in actor.spans)


@pytest.mark.parametrize(
    ("actor", "mode", "overlaps"),
    [
        (Blocking(), "start", True),  # offbit_reflow-style: each tick on a thread
        (Blocking(), "run", False),  # run(): sync actors stay inline
        (BlockingInline(), "start", False),  # an actor that chose its execution keeps it
    ],
    ids=["start", "run", "start-explicit-inline"],
)
def test_start_runs_a_programs_blocking_actors_concurrently(
    actor: Blocking, mode: str, overlaps: bool
) -> None:
    assert _overlap(actor, mode) is overlaps
