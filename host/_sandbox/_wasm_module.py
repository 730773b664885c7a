"""A validated guest module: its exports, imports, ABI version and describe document checked
once at load (abi/ABI.md §§ 2, 8), and a factory for the actors of its templates."""

from __future__ import annotations

from typing import Any

import wasmtime

from .._errors import (
    GuestABIError,
    GuestLimitError,
    SandboxError,
)
from ..abi._version import check_abi_compatible, unpack_abi_word
from ._guest_host import (
    GuestGrants,
    GuestLimits,
    parse_describe,
    pick_template,
)
from ._wasm_instance import (
    _MASK32,
    EXPORTS,
    IMPORTS,
    OPTIONAL_EXPORTS,
    _GuestInstance,
    _type_names,
)
from ._wasm_node import WasmActor

__all__ = ["WasmModule"]


class WasmModule:
    """A validated guest module: its templates and a factory for actors."""

    def __init__(
        self,
        engine: Any,  # a WasmEngine (whose module imports this one)
        module: wasmtime.Module,
        digest: str,
        name: str,
        limits: GuestLimits | None = None,
    ):
        limits = limits or GuestLimits()
        self.engine = engine
        self.module = module
        self.sha256 = digest
        self.name = name
        #: Whether nodes get several ticks per call (reflow_tick_batch); decided below.
        self.batch = False
        self._check_exports()
        self.imports = self._check_imports()
        probe = _GuestInstance(self, None, limits, GuestGrants(), "<load>")
        try:
            word = probe.call_i32("reflow_abi_version")
            self.abi_version = check_abi_compatible(unpack_abi_word(word), what=f"module {name!r}")
            self.templates = parse_describe(self._describe(probe, limits), self.abi_version, limits)
            self.batch = self.has_batch and self.abi_version >= (1, 1)
        except SandboxError as exc:
            if not exc.component:
                exc.component = name
            raise
        finally:
            probe.close()

    def _describe(self, probe: _GuestInstance, limits: GuestLimits) -> bytes:
        """The describe document, its length checked before a byte of it is copied."""
        probe.set_deadline(probe.ticks)
        raw, err = probe.callers["reflow_describe"]()
        probe.refresh()
        if err is not None:
            raise probe.translate(err, "reflow_describe")
        n = (raw >> 32) & _MASK32
        if n > limits.describe_bytes:
            raise GuestLimitError(
                f"module {self.name!r}: reflow_describe returned a document of {n} bytes, more "
                f"than GuestLimits.describe_bytes={limits.describe_bytes}",
                resource="describe_bytes",
                value=n,
                limit=limits.describe_bytes,
                component=self.name,
            )
        return probe.read_slice(raw, "reflow_describe")

    def _check_exports(self) -> None:
        found = {e.name: e.type for e in self.module.exports}
        problems = []
        if not isinstance(found.get("memory"), wasmtime.MemoryType):
            problems.append("memory (a linear memory)")
        for name, (params, results) in EXPORTS.items():
            ty = found.get(name)
            if not isinstance(ty, wasmtime.FuncType):
                problems.append(f"{name} (a function)")
                continue
            got = (_type_names(ty.params), _type_names(ty.results))
            if got != (params, results):
                problems.append(f"{name} with type {params} -> {results}, not {got[0]} -> {got[1]}")
        self.has_batch = False
        for name, (params, results) in OPTIONAL_EXPORTS.items():
            if name not in found:
                continue
            ty = found[name]
            if not isinstance(ty, wasmtime.FuncType) or (
                _type_names(ty.params),
                _type_names(ty.results),
            ) != (params, results):
                problems.append(f"{name} (optional) with type {params} -> {results}")
            else:
                self.has_batch = True
        if problems:
            raise GuestABIError(
                f"module {self.name!r} does not export the reflow guest ABI: missing or "
                f"mistyped export(s): {'; '.join(problems)} (see abi/ABI.md)",
                component=self.name,
            )

    def _check_imports(self) -> list[str]:
        names = []
        self.wasi_imports: list[str] = []
        for imp in self.module.imports:
            if imp.module == "wasi_snapshot_preview1":
                # Provided only to nodes granted "wasi" (checked when a node opens).
                self.wasi_imports.append(imp.name or "")
                continue
            spec = IMPORTS.get(imp.name or "") if imp.module == "reflow" else None
            if spec is None:
                hint = (
                    " (of WASI only wasi_snapshot_preview1 exists, and only with a grant)"
                    if str(imp.module).startswith("wasi")
                    else ""
                )
                raise GuestABIError(
                    f"module {self.name!r} imports {imp.module}.{imp.name}, which the host "
                    f"does not provide{hint}",
                    component=self.name,
                )
            ty = imp.type
            if (
                not isinstance(ty, wasmtime.FuncType)
                or (
                    _type_names(ty.params),
                    _type_names(ty.results),
                )
                != spec
            ):
                raise GuestABIError(
                    f"module {self.name!r} imports reflow.{imp.name} with the wrong type; "
                    f"expected {spec[0]} -> {spec[1]}",
                    component=self.name,
                )
            names.append(imp.name or "")
        return names

    def actor(
        self,
        template: str | None = None,
        *,
        limits: GuestLimits | None = None,
        grants: GuestGrants | None = None,
    ) -> WasmActor:
        """An actor for one template (the only one when ``template`` is None)."""
        spec = pick_template(self.templates, template, self.name, f"module {self.name!r}")
        return WasmActor(self, spec, limits or GuestLimits(), grants or GuestGrants())
