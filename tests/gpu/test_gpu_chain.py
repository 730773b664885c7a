"""Data stays on the device: a chain of GPU nodes uploads once and reads back once, when a
CPU node consumes the result; the transfers appear as GpuTransfer events."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from reflow import Message, MessageError, Network, template_actor
from reflow._gpu import GpuBuffer, gpu_counters
from reflow.library import decode_image, encode_image

IMAGE = np.random.default_rng(3).integers(0, 256, (48, 64, 4), dtype=np.uint8)
_CHAIN = [
    ("blur", "tpl_gpu_image_blur", {"sigma": 1.5}),
    ("adjust", "tpl_gpu_image_adjust", {"contrast": 1.2}),
    ("resize", "tpl_gpu_image_resize", {"width": 32}),
]


def _net(prefix: str, consumers: list[str]) -> tuple[Network, list[Any]]:
    net = Network()
    ids = [(nid, tid, cfg) for nid, tid, cfg in _CHAIN]
    for nid, tid, cfg in ids:
        net.register_actor(f"{prefix}{tid}", template_actor(tid.replace("tpl_gpu_", prefix)))
        net.add_node(nid, f"{prefix}{tid}", cfg)
    for a, b in itertools.pairwise(ids):
        net.add_connection(a[0], "out", b[0], "in")
    colls = []
    for i, tid in enumerate(consumers):
        net.register_actor(tid, template_actor(tid))
        net.add_node(f"cpu{i}", tid)
        net.add_connection("resize", "out", f"cpu{i}", "in")
        colls.append(net.collect(f"cpu{i}", "out"))
    return net, colls


@pytest.mark.parametrize(
    "consumers", [["tpl_image_info"], ["tpl_image_info", "tpl_image_grayscale"]]
)
def test_three_gpu_nodes_upload_once_and_read_back_once(device: Any, consumers: list[str]) -> None:
    net, colls = _net("tpl_gpu_", consumers)
    events = net.events()
    net.add_initial("blur", "in", encode_image(IMAGE))
    net.run(timeout=60).raise_for_failures()
    transfers = [e for e in events.drain() if e["_type"] == "GpuTransfer"]
    net.shutdown()
    counters = gpu_counters()
    assert (counters.uploads, counters.readbacks) == (1, 1)
    assert counters.bytes_up == IMAGE.size * 4
    assert counters.bytes_down == 24 * 32 * 4 * 4
    assert [(e["actorId"], e["uploads"], e["readbacks"]) for e in transfers] == [
        ("blur", 1, 0),
        ("resize", 0, 1),  # read back in the CPU node, named after the GPU node it came from
    ]
    assert transfers[0]["bytesUp"] == IMAGE.size * 4
    assert transfers[1]["bytesDown"] == 24 * 32 * 4 * 4
    # and the chain computes what the numpy chain does (each step within 1 unit)
    cpu_net, cpu_colls = _net("tpl_", consumers)
    cpu_net.add_initial("blur", "in", encode_image(IMAGE))
    cpu_net.run(timeout=60).raise_for_failures()
    cpu_net.shutdown()
    info, want = colls[0].messages[0]["data"], cpu_colls[0].messages[0]["data"]
    assert info["width"] == want["width"] == 32 and abs(info["mean"] - want["mean"]) < 1


def test_gpu_output_collected_directly_is_a_handle(device: Any) -> None:
    net, _ = _net("tpl_gpu_", [])
    out = net.collect("resize", "out")
    net.add_initial("blur", "in", encode_image(IMAGE))
    net.run(timeout=60).raise_for_failures()
    net.shutdown()
    msg = out.messages[0]
    handle = msg["data"]
    assert msg["type"] == "Gpu" and isinstance(handle, GpuBuffer)
    assert handle.shape == (24, 32, 4) and handle.dtype == "uint8" and handle.codec == "image"
    assert gpu_counters().readbacks == 0
    first = handle.to_numpy()
    assert handle.to_numpy() is first and gpu_counters().readbacks == 1
    assert np.array_equal(decode_image(msg), first)
    assert gpu_counters().readbacks == 1
    assert "GpuBuffer image 24x32x4 uint8" in msg.to_json_string()


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: Message.gpu("not a handle"), "Gpu data must be a GpuBuffer handle, got str"),
        (lambda: Message.gpu(None), "got NoneType"),
        (lambda: Message.from_json({"type": "Gpu", "data": {}}), "unknown message type 'Gpu'"),
        (lambda: Message.from_json('{"type": "Gpu"}'), "unknown message type"),
    ],
)
def test_gpu_messages_are_built_only_around_handles(build: Any, fragment: str) -> None:
    with pytest.raises(MessageError, match=fragment):
        build()
