"""What an Extism module imports, read from its bytes before extism sees them.

:func:`read_wasm` parses just the type and import sections (bounded, every malformed byte a
:class:`~reflow.GuestABIError` naming the module and offset); :func:`bind_imports` matches
each import against the host functions this engine provides (the Reflow SDK's, bound with
the signature the module declares; the Extism kernel; WASI only when granted), so a module
asking for anything else is refused by name before it is compiled.
"""

from __future__ import annotations

from .._errors import (
    GuestABIError,
)

_PAGE = 65536
_USER = "extism:host/user"
_KERNEL = "extism:host/env"


# -- what the module imports (read from its bytes, before extism sees it) ----------------------

_VALTYPES = {
    0x7F: "i32",
    0x7E: "i64",
    0x7D: "f32",
    0x7C: "f64",
    0x7B: "v128",
    0x70: "funcref",
    0x6F: "externref",
}
_KINDS = {0: "function", 1: "table", 2: "memory", 3: "global", 4: "tag"}
Signature = tuple[tuple[str, ...], tuple[str, ...]]


class _Malformed(Exception):
    """A structural error in the module bytes (offset, what)."""


class _Unsupported(Exception):
    """An encoding this reader does not know (a newer proposal): extism decides."""


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise _Malformed(f"unexpected end at offset {self.pos}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self, bits: int = 32) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result
            if shift >= bits + 7:
                raise _Malformed(f"integer too long at offset {self.pos}")

    def name(self) -> str:
        n = self.uleb()
        if n > self.end - self.pos:
            raise _Malformed(f"a name of {n} bytes at offset {self.pos} runs past its section")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Malformed(f"a name at offset {self.pos - n} is not UTF-8") from exc

    def count(self, min_size: int = 1) -> int:
        n = self.uleb()
        if n * min_size > self.end - self.pos:  # every entry takes at least min_size bytes
            raise _Malformed(f"a count of {n} at offset {self.pos} exceeds its section")
        return n

    def valtype(self) -> str:
        b = self.byte()
        if b in _VALTYPES:
            return _VALTYPES[b]
        raise _Unsupported(f"value type 0x{b:02x}")

    def limits(self) -> None:
        flags = self.byte()
        if flags > 0x07:
            raise _Unsupported(f"limits flags 0x{flags:02x}")
        self.uleb(64)
        if flags & 1:
            self.uleb(64)


class WasmInfo:
    """The parts of a core WebAssembly module the extism engine checks before compiling it:
    its imports (with function signatures where the type section is one this reader knows)
    and where each function body lies (to name a trap's instruction)."""

    def __init__(
        self,
        imports: list[tuple[str, str, str, Signature | None]],
        func_imports: int,
        bodies: list[tuple[int, int]],
    ) -> None:
        self.imports = imports
        self.func_imports = func_imports
        self.bodies = bodies


def read_wasm(wasm: bytes, where: str) -> WasmInfo:
    """Check that ``wasm`` is a core WebAssembly module and read its imports; a
    GuestABIError naming ``where`` and what was expected otherwise (bounded: one pass)."""
    expected = "expected a WebAssembly core module (a .wasm file starting with \\0asm, version 1)"
    if not wasm:
        raise GuestABIError(f"{where} is empty; {expected}")
    if wasm[:4] != b"\0asm":
        raise GuestABIError(
            f"{where} is not WebAssembly: it starts with {bytes(wasm[:8])!r}; {expected}"
        )
    if len(wasm) < 8:
        raise GuestABIError(
            f"{where} is truncated: {len(wasm)} bytes, shorter than the 8-byte header; {expected}"
        )
    version = int.from_bytes(wasm[4:8], "little")
    if version != 1:
        kind = "a WebAssembly component" if wasm[6:8] == b"\x01\x00" else "an unknown version"
        raise GuestABIError(
            f"{where} is {kind} (version bytes {bytes(wasm[4:8]).hex()}), not a "
            f"core module; {expected}"
        )
    types: list[Signature | None] | None = []
    imports: list[tuple[str, str, str, Signature | None]] = []
    func_imports = 0
    bodies: list[tuple[int, int]] = []
    top = _Reader(wasm, 8, len(wasm))
    try:
        while top.pos < top.end:
            sid, start = top.byte(), top.pos
            if sid > 13:
                raise _Malformed(f"unknown section id {sid} at offset {start - 1}")
            size = top.uleb()
            if size > top.end - top.pos:
                raise _Malformed(
                    f"section {sid} at offset {start - 1} declares {size} bytes "
                    f"but only {top.end - top.pos} remain (truncated?)"
                )
            sec = _Reader(wasm, top.pos, top.pos + size)
            top.pos += size
            try:
                if sid == 1:
                    types = _read_types(sec)
                elif sid == 2:
                    func_imports = _read_imports(sec, types, imports)
                elif sid == 10:
                    for _ in range(sec.count()):
                        n = sec.uleb()
                        if n > sec.end - sec.pos:
                            raise _Malformed(
                                f"a function body at offset {sec.pos} runs past the code section"
                            )
                        bodies.append((sec.pos, sec.pos + n))
                        sec.pos += n
            except _Unsupported:
                if sid == 1:
                    types = None  # signatures unknown: extism checks them at link time
                # an import or body this reader cannot decode: extism has the last word
    except _Malformed as exc:
        raise GuestABIError(
            f"{where} is not a valid WebAssembly module: {exc}; {expected}"
        ) from None
    return WasmInfo(imports, func_imports, bodies)


def _read_types(sec: _Reader) -> list[Signature | None]:
    types: list[Signature | None] = []
    for _ in range(sec.count()):
        form = sec.byte()
        if form != 0x60:
            raise _Unsupported(f"type form 0x{form:02x}")  # rec/sub/struct/array (GC)
        params = tuple(sec.valtype() for _ in range(sec.count()))
        results = tuple(sec.valtype() for _ in range(sec.count()))
        types.append((params, results))
    return types


def _read_imports(
    sec: _Reader,
    types: list[Signature | None] | None,
    out: list[tuple[str, str, str, Signature | None]],
) -> int:
    funcs = 0
    for _ in range(sec.count(3)):
        module, name = sec.name(), sec.name()
        kind = sec.byte()
        sig: Signature | None = None
        if kind == 0:
            idx = sec.uleb()
            funcs += 1
            if types is not None:
                if idx >= len(types):
                    raise _Malformed(
                        f"import {module}.{name} names type {idx}, but the module has {len(types)}"
                    )
                sig = types[idx]
        elif kind == 1:
            sec.valtype()
            sec.limits()
        elif kind == 2:
            sec.limits()
        elif kind == 3:
            sec.valtype()
            sec.byte()
        elif kind == 4:
            sec.byte()
            sec.uleb()
        else:
            raise _Malformed(f"import {module}.{name} has unknown kind 0x{kind:02x}")
        out.append((module, name, _KINDS[kind], sig))
    return funcs


def _show(sig: Signature | None) -> str:
    if sig is None:
        return "(unknown)"
    params, results = sig
    return f"({', '.join(params)}) -> ({', '.join(results)})"


#: The host functions a plugin may import from the Reflow SDK namespace: every signature
#: generation the original SDKs produced (extism-pdk's ``#[host_fn]`` before 1.0 gave
#: every import an i64 result; the Go SDK and later Rust SDKs have none where nothing is
#: returned). The one bound is the one the module imports.
_USER_SIGNATURES: dict[str, tuple[Signature, ...]] = {
    "__send_output": ((("i64",), ()), (("i64",), ("i64",))),
    "__get_state": ((("i64",), ("i64",)),),
    "__set_state": ((("i64", "i64"), ()), (("i64", "i64"), ("i64",))),
}
#: Kernel functions this host replaces (HTTP goes through the node's grants).
_KERNEL_OVERRIDES: dict[str, Signature] = {
    "http_request": (("i64", "i64"), ("i64",)),
    "http_status_code": ((), ("i32",)),
    "http_headers": ((), ("i64",)),
}
_WASI = ("wasi_snapshot_preview1", "wasi_unstable")


def bind_imports(info: WasmInfo, where: str) -> list[tuple[str, str, Signature]]:
    """The host functions to link for a module with these imports, each with the signature
    the module imports; GuestABIError naming the import that is missing or mistyped."""
    provided = ", ".join(f"{_USER}.{n}" for n in _USER_SIGNATURES)
    bound: dict[tuple[str, str], Signature] = {
        (_KERNEL, n): sig for n, sig in _KERNEL_OVERRIDES.items()
    }
    for module, name, kind, sig in info.imports:
        label = f"{module}.{name}"
        if kind != "function":
            raise GuestABIError(
                f"{where} imports the {kind} {label}; an Extism plugin may "
                "import only functions (its memory is its own)"
            )
        if module == _USER:
            accepted = _USER_SIGNATURES.get(name)
            if accepted is None:
                raise GuestABIError(
                    f"{where} imports {label}, which this host does not provide; it provides "
                    f"{provided}"
                )
            if sig is not None and sig not in accepted:
                raise GuestABIError(
                    f"{where} imports {label} with signature {_show(sig)}; expected "
                    + " or ".join(_show(s) for s in accepted)
                )
            bound[(module, name)] = sig or accepted[0]
        elif module == _KERNEL:
            want = _KERNEL_OVERRIDES.get(name)
            if want is not None and sig is not None and sig != want:
                raise GuestABIError(
                    f"{where} imports {label} with signature {_show(sig)}; expected {_show(want)}"
                )
        elif module in _WASI:
            continue  # allowed with the 'wasi' grant (checked per instance)
        elif module == "env" and (name in _USER_SIGNATURES or name.startswith("extism_")):
            if name in _USER_SIGNATURES:
                hint = (
                    f"the Reflow SDK's host functions are in {_USER} (expected "
                    f"{_USER}.{name} {_show(_USER_SIGNATURES[name][0])})"
                )
            else:
                hint = (
                    "that is the kernel of Extism before 1.0; rebuild the plugin with an "
                    f"Extism 1.x PDK (kernel imports in {_KERNEL})"
                )
            raise GuestABIError(f"{where} imports {label}: {hint}")
        else:
            raise GuestABIError(
                f"{where} imports {label}, which the host does not provide; it provides the "
                f"Extism kernel ({_KERNEL}), WASI with the 'wasi' grant and {provided}"
            )
    return [(ns, name, sig) for (ns, name), sig in bound.items()]


def wasi_imports(info: WasmInfo) -> list[str]:
    return [f"{m}.{n}" for m, n, _k, _s in info.imports if m in _WASI]
