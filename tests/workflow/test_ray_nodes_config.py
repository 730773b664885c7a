"""Placing nodes on Ray actors: the placement settings and the refusals that need no cluster
(``reflow.Ray``, ``metadata.placement``, ``add_node(placement=...)``)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from typing import Any

import pytest
from raycluster import ENV, free_port

from reflow import Actor, Message, Network, PlacementError, Ray


class Echo(Actor):
    component = "echo"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": ctx.inputs["in"]})


class StreamOut(Actor):
    component = "stream_out"
    inports = ["in"]
    outports = ["out"]
    outport_types = {"out": "Stream"}

    def run(self, ctx: Any) -> None:
        ctx.done()


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("repr refused")


# placement (JSON form or keyword settings of Ray) -> error class, message fragment
BAD_JSON = [
    ({"ray": {"num_cpu": 1}}, "unknown setting 'num_cpu'; did you mean 'num_cpus'?"),
    ({"ray": {"adress": "x:1"}}, "did you mean 'address'?"),
    ({"ray": {"bogus": 1}}, "unknown setting 'bogus' (settings: address, num_cpus"),
    ({"slurm": {}}, "unknown backend 'slurm'; expected exactly one key, 'ray'"),
    ({"ray": {}, "k8s": {}}, "unknown backend 'k8s'"),
    ({}, "unknown backend nothing"),
    ({"ray": [1]}, "placement.ray must be an object of settings, got list"),
    ("ray", "placement must be reflow.Ray(...) or {'ray': {...}}, got str"),
    ({"ray": {"num_cpus": -1}}, "num_cpus must be a number from 0 to 100000, got -1"),
    ({"ray": {"num_cpus": "two"}}, "num_cpus must be a number from 0 to 100000, got 'two'"),
    ({"ray": {"num_cpus": True}}, "num_cpus must be a number"),
    ({"ray": {"num_cpus": math.nan}}, "num_cpus must be a number"),
    ({"ray": {"num_cpus": 1e300}}, "num_cpus must be a number from 0 to 100000"),
    ({"ray": {"max_inflight": 0}}, "max_inflight must be an integer from 1 to 1024, got 0"),
    ({"ray": {"max_inflight": 2.0}}, "max_inflight must be an integer from 1 to 1024"),
    ({"ray": {"max_inflight": 10**9}}, "max_inflight must be an integer from 1 to 1024"),
    ({"ray": {"memory": "lots"}}, "memory must be a number of bytes or a size like '512M'"),
    ({"ray": {"memory": -5}}, "memory must be a number of bytes"),
    ({"ray": {"memory": "9" * 100}}, "memory must be a number of bytes"),
    ({"ray": {"resources": {"CPU": 2}}}, "resources must not name 'CPU'; use num_cpus="),
    ({"ray": {"resources": {"gpu_box": -1}}}, "resources['gpu_box'] must be a number from 0"),
    ({"ray": {"resources": {"": 1}}}, "resources must be keyed by non-empty resource names"),
    ({"ray": {"resources": [1, 2]}}, "resources must be a mapping"),
    ({"ray": {"address": "nowhere"}}, "address must be 'host:port', 'ray://host:port', 'auto'"),
    ({"ray": {"address": "h:99999"}}, "address must be"),
    ({"ray": {"address": 6379}}, "address must be"),
    ({"ray": {"address": "x" * 10_000 + ":1"}}, "address must be"),
    ({"ray": {"num_cpus": Hostile()}}, "num_cpus must be a number"),
]


@pytest.mark.parametrize(("placement", "fragment"), BAD_JSON)
def test_bad_placements_are_refused_naming_the_node_and_setting(
    placement: Any, fragment: str
) -> None:
    net = Network()
    net.register_actor("echo", Echo())
    t0 = time.perf_counter()
    with pytest.raises(PlacementError) as info:
        net.add_node("parse", "echo", placement=placement)
    assert time.perf_counter() - t0 < 2
    assert fragment in str(info.value)
    assert "node 'parse'" in str(info.value)
    assert info.value.node == "parse"
    assert len(str(info.value)) < 600
    assert net.nodes() == []  # nothing was added
    net.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "key", "fragment"),
    [
        ({"num_cpus": -0.5}, "num_cpus", "Ray placement: num_cpus must be a number"),
        ({"max_inflight": True}, "max_inflight", "max_inflight must be an integer"),
        ({"memory": "1.5Q"}, "memory", "memory must be a number of bytes"),
        ({"resources": {"memory": 1}}, "resources", "use memory="),
        ({"address": ""}, "address", "address must be"),
    ],
)
def test_ray_checks_its_settings_when_made(kwargs: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(PlacementError) as info:
        Ray(**kwargs)
    assert info.value.key == key
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("placement", "doc"),
    [
        (Ray(), {"ray": {}}),
        (
            Ray(address="127.0.0.1:6379", num_cpus=2, memory="512M", max_inflight=4),
            {
                "ray": {
                    "address": "127.0.0.1:6379",
                    "num_cpus": 2,
                    "memory": "512M",
                    "max_inflight": 4,
                }
            },
        ),
        (Ray(resources={"gpu_box": 1}), {"ray": {"resources": {"gpu_box": 1}}}),
    ],
)
def test_placement_json_form_round_trips(placement: Ray, doc: dict[str, Any]) -> None:
    from reflow._ray_placement import parse_placement

    assert placement.to_json() == doc
    assert parse_placement(doc, "n") == placement


def test_memory_sizes_are_binary_units() -> None:
    assert Ray(memory="512M").memory_bytes == 512 << 20
    assert Ray(memory="1.5g").memory_bytes == 3 << 29
    assert Ray(memory=4096).memory_bytes == 4096


def test_graph_json_metadata_placement_is_read_and_checked() -> None:
    doc = {
        "processes": {
            "a": {
                "component": "echo",
                "metadata": {"placement": {"ray": {"num_cpus": 1, "max_inflght": 2}}},
            }
        },
        "connections": [],
    }
    net = Network.from_graph(doc)
    net.register_actor("echo", Echo())
    with pytest.raises(PlacementError, match=r"node 'a'.*unknown setting 'max_inflght'"):
        net.nodes()
    net.shutdown()


def test_stream_ports_and_subgraphs_are_refused_at_wiring_time() -> None:
    net = Network()
    net.register_actor("so", StreamOut())
    with pytest.raises(PlacementError, match="out-port 'out' carries Streams, which do not cross"):
        net.add_node("s", "so", placement=Ray())
    net.shutdown()


def test_the_existing_add_node_signature_still_works() -> None:
    net = Network()
    net.register_actor("echo", Echo())
    net.add_node("a", "echo", {"k": 1}, None)
    out = net.collect("a", "out")
    net.add_initial("a", "in", Message.integer(5))
    net.run(timeout=10)
    net.shutdown()
    assert out.values() == [5]


def test_importing_reflow_does_not_import_ray() -> None:
    code = "import sys, reflow; reflow.Ray(num_cpus=2); print('ray' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "False", p.stdout + p.stderr


UNREACHABLE = """
import sys, time
from reflow import Actor, Network, PlacementError, Ray
class Echo(Actor):
    component = "echo"; inports = ["in"]; outports = ["out"]
    def run(self, ctx): ctx.done()
net = Network()
net.register_actor("echo", Echo())
t0 = time.monotonic()
try:
    net.add_node("parse", "echo", placement=Ray(address=sys.argv[1]))
except PlacementError as e:
    print("ERROR", e.node, e.key, e)
print("SECONDS", time.monotonic() - t0)
"""


@pytest.mark.slow
def test_an_unreachable_address_is_named_within_bounded_time() -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{free_port()}"
    p = subprocess.run(
        [sys.executable, "-c", UNREACHABLE, address],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"ERROR parse address node 'parse': cannot connect to the Ray cluster at {address}" in (
        p.stdout
    ), p.stdout + p.stderr
    assert "nothing answers there" in p.stdout
    seconds = float(p.stdout.split("SECONDS")[1])
    assert seconds < 20, seconds
