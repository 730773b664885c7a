"""The C guest SDK against the shared ABI test vectors (abi/vectors/): the echo example
decodes every vector message with the SDK's decoder and re-encodes it with the SDK's encoder,
and the bytes it returns must be the vector's bytes exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reflow._core._messages import Message
from reflow._sandbox._wasm_engine import WasmEngine, WasmNodeActor
from reflow.abi import VECTORS_DIR, decode_result, encode_result_done

MESSAGES = json.loads((VECTORS_DIR / "messages.json").read_text(encoding="utf-8"))["messages"]
FRAMES = json.loads((VECTORS_DIR / "frames.json").read_text(encoding="utf-8"))["frames"]


def _echo(engine: WasmEngine, guest_wasm: dict[str, Path]) -> WasmNodeActor:
    return engine.load(guest_wasm["echo"]).actor().open_node("echo", {})


@pytest.mark.parametrize("vector", MESSAGES, ids=[v["name"] for v in MESSAGES])
def test_sdk_reencodes_message_vector_byte_for_byte(
    engine: WasmEngine, guest_wasm: dict[str, Path], vector: dict[str, Any]
) -> None:
    node = _echo(engine, guest_wasm)
    assert node._inst is not None
    msg_bytes = bytes.fromhex(vector["hex"])
    frame = b"\x01\x00\x02in" + msg_bytes  # input frame built from the vector's bytes
    raw = node._inst.call_frame("reflow_tick", frame)
    assert raw == b"\x00\x01\x00\x02in" + msg_bytes
    assert raw == encode_result_done([("in", Message.from_json(vector["message"]))])
    node.close()


@pytest.mark.parametrize(
    "vector", [v for v in FRAMES if v["frame"] == "tick_input"], ids=lambda v: v["name"]
)
def test_sdk_decodes_input_frame_vectors(
    engine: WasmEngine, guest_wasm: dict[str, Path], vector: dict[str, Any]
) -> None:
    node = _echo(engine, guest_wasm)
    assert node._inst is not None
    raw = node._inst.call_frame("reflow_tick", bytes.fromhex(vector["hex"]))
    result = decode_result(raw)
    assert result.ok
    assert result.outputs == [(p, Message.from_json(m)) for p, m in vector["value"].items()]
    node.close()


def test_sdk_fail_frame(engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    fail = next(v for v in FRAMES if v["frame"] == "result_fail")
    node = _echo(engine, guest_wasm)
    assert node._inst is not None
    text = "fail:" + fail["value"]
    frame = b"\x01\x00\x02in\x05" + len(text).to_bytes(4, "little") + text.encode()
    assert node._inst.call_frame("reflow_tick", frame) == bytes.fromhex(fail["hex"])
    node.close()


def test_sdk_reads_the_open_frame_vector(engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    vector = next(v for v in FRAMES if v["frame"] == "open")
    node = engine.load(guest_wasm["doubler"]).actor().open_node("n1", {})
    assert node._inst is not None
    # Re-open the instance with the vector's exact bytes; factor 2 comes from its config.
    assert decode_result(node._inst.call_frame("reflow_open", bytes.fromhex(vector["hex"]))).ok
    raw = node._inst.call_frame("reflow_tick", b"\x01\x00\x02in\x03" + (5).to_bytes(8, "little"))
    assert decode_result(raw).outputs == [("out", Message.integer(10))]
    node.close()


def test_sdk_describe_document(engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    module = engine.load(guest_wasm["counter"])
    t = module.templates["example/counter"]
    assert t.inports == ("in", "reset")
    assert t.outports == ("count", "ticks")
    assert t.await_all_inports is False
    assert module.abi_version == (1, 1)
    assert module.batch  # the SDK exports reflow_tick_batch
