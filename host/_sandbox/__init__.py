"""Running other people's code: the guest engines behind one node interface.

* ``_guest_host`` — what every engine shares: :class:`~reflow.GuestLimits` and
  :class:`~reflow.GuestGrants`, the host functions a guest may call (emit, pools, log, HTTP),
  describe documents, the per-node actor protocol.
* ``_wasm_engine`` (with ``_wasm_fastcall``, wasmtime's unchecked call path, and
  ``_wasm_compile``, compiling in a child process under resource limits) — WebAssembly guests
  of the reflow ABI (``abi/ABI.md``), sandboxed.
* ``_extism_engine`` — Extism plugins, including those built with the original Reflow SDKs.
* ``_native_engine`` — signed native libraries of the same ABI: **not** sandboxed.
"""
