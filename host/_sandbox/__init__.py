"""Running other people's code: the guest engines behind one node interface.

* ``_guest_host`` — what every engine shares: the host functions a guest may call (emit,
  pools, log, HTTP); over ``_guest_limits`` (:class:`~reflow.GuestLimits`,
  :class:`~reflow.GuestGrants`), ``_guest_describe`` (describe documents, templates, module
  files) and ``_guest_http`` (the request itself).
* ``_guest_actor`` — the per-node actor protocol on top of it: the template and node actors
  every engine subclasses (ports, tick codec, batches, a close safe while a tick runs).
* ``_wasm_engine`` — WebAssembly guests of the reflow ABI (``abi/ABI.md``), sandboxed: the
  engine and its compiled-module cache; below it, one job each: ``_wasm_module`` (checking a
  module at load), ``_wasm_node`` (the node actor and its hot tick path), ``_wasm_instance``
  (one node's store, its calls, deadlines and error translation), ``_wasm_cache`` (the cache
  key), ``_wasm_epoch`` (the epoch ticker: a POSIX timer, no GIL), ``_wasm_fastcall``
  (wasmtime's unchecked call path) and ``_wasm_compile`` (compiling in a child process under
  resource limits).
* ``_extism_engine`` — Extism plugins, including those built with the original Reflow SDKs
  (with ``_extism_wasm``, ``_extism_watchdog``, ``_extism_protocol``, ``_extism_traps``,
  ``_extism_host`` and ``_extism_sdk``: reading imports, tick deadlines, the SDK's JSON,
  errors, host functions, the extism SDK).
* ``_native_engine`` — signed native libraries of the same ABI: **not** sandboxed.
"""
