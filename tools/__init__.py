"""reflow.tools — building guest actors and packs, and the ``reflow-pack`` command line."""

from __future__ import annotations

from ._guest_build import NATIVE_TARGETS, WASI_TARGET, WASM_TARGET, build_guest, host_target

__all__ = ["NATIVE_TARGETS", "WASI_TARGET", "WASM_TARGET", "build_guest", "host_target"]
