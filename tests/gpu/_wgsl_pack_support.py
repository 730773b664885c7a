"""Helpers of the WGSL pack tests: hand-assembled kernel packs (manifest dicts and bundles
written directly, not through ``reflow-pack build``), signing, and one-node runs."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflow import Network, template_actor
from reflow._core._nodes import ActorFailure
from reflow._loader._trust import TrustStore
from reflow.abi._bundle import artifact_entry, build_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, manifest_from_dict
from reflow.abi._signing import load_private_key, sign_manifest, write_keypair
from reflow.abi._version import pack_abi_version

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "wgsl-kernels"
KERNEL_PATH = f"artifacts/{PORTABLE_TRIPLE}/k.wgsl"

#: A minimal kernel: out[i] = x[i] * 2 (+ a uniform offset).
DOUBLE = b"""
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> add: f32;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= arrayLength(&out)) { return; }
    out[i] = x[i] * 2.0 + add;
}
"""

DOUBLE_WGSL: dict[str, Any] = {
    "entry_point": "main",
    "workgroup_size": [64],
    "dispatch": ["in:x"],
    "bindings": [
        {
            "group": 0,
            "binding": 0,
            "type": "storage",
            "access": "read",
            "element": "f32",
            "inport": "x",
        },
        {
            "group": 0,
            "binding": 1,
            "type": "storage",
            "access": "read_write",
            "element": "f32",
            "outport": "out",
            "size": "in:x",
        },
        {"group": 0, "binding": 2, "type": "uniform", "element": "f32", "config": "add"},
    ],
}


@dataclass
class Keys:
    key: Any
    pub: Path
    store: TrustStore


def make_keys(root: Path, name: str = "publisher") -> Keys:
    priv, pub, _ = write_keypair(root / "keys" / name)
    store = TrustStore(root / f"trust-{name}")
    store.add(pub, any_name=True)
    return Keys(load_private_key(priv), pub, store)


def template(
    wgsl: Mapping[str, Any] | None = None,
    *,
    inports: list[str] | None = None,
    outports: list[str] | None = None,
    tid: str = "t/k",
    **extra: Any,
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "id": tid,
        "entry": "k",
        "inports": ["x"] if inports is None else inports,
        "outports": ["out"] if outports is None else outports,
        "config_schema": {
            "type": "object",
            "properties": {"add": {"type": "number", "default": 0.0}},
        },
        **extra,
    }
    if wgsl is not None:
        t["wgsl"] = copy.deepcopy(dict(wgsl))
    return t


def manifest_doc(kernel: bytes, templates: list[dict[str, Any]], name: str = "t") -> dict[str, Any]:
    return {
        "format": 1,
        "name": name,
        "version": "1.0.0",
        "abi": pack_abi_version(),
        "templates": templates,
        "artifacts": [artifact_entry("k", PORTABLE_TRIPLE, "wgsl", KERNEL_PATH, kernel).to_dict()],
    }


def pack_bytes(
    kernel: bytes,
    templates: list[dict[str, Any]] | None = None,
    key: Any = None,
    name: str = "t",
) -> bytes:
    """A signed (when ``key``) pack of one kernel artifact, assembled by hand."""
    doc = manifest_doc(kernel, templates or [template(DOUBLE_WGSL)], name)
    mbytes = manifest_from_dict(doc).to_toml()
    sigs = [sign_manifest(mbytes, key)] if key is not None else []
    return build_bundle(mbytes, {KERNEL_PATH: kernel}, sigs)


def run_node(
    template_id: str,
    inputs: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    out: str = "out",
    timeout: float = 60,
) -> tuple[list[Any], list[ActorFailure]]:
    """One node of ``template_id`` fed ``inputs``: what reached ``out``, and the failures."""
    net = Network()
    net.register_actor("tpl", template_actor(template_id))
    net.add_node("n", "tpl", dict(config or {}))
    coll = net.collect("n", out)
    for port, msg in inputs.items():
        net.add_initial("n", port, msg)
    result = net.run(timeout=timeout)
    net.shutdown()
    return list(coll.messages), list(result.failures)
