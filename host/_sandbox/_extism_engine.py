"""The extism engine: Extism plugins as sandboxed actors.

Any module built with an Extism PDK runs here, in one of two ways:

* **Reflow-SDK plugins** (the original Reflow WASM SDK, or anything speaking its protocol)
  export ``get_metadata`` and ``process``. ``get_metadata`` returns the template —
  ``{"component", "description", "inports", "outports", "await_all_inports"?,
  "config_schema"?}``, ports as names or ``{"name": ...}`` objects. Each tick calls
  ``process`` with the JSON context ``{"payload": {port: message}, "config": {"node_id",
  "component", "resolved_env", "config", "namespace"}, "state": ...}`` and expects
  ``{"outputs": {port: message}, "state": ...}`` back; a non-null ``state`` replaces the node's
  state for the next tick. The SDK's host functions ``__send_output`` / ``__get_state`` /
  ``__set_state`` (namespace ``extism:host/user``) are provided, each bound with the
  signature the module imports (the Go SDK's, or the earlier Rust SDK's with i64 results;
  see :func:`bind_imports`). As in the original host, outputs on ports the metadata does not
  declare do not fail the tick (:meth:`_ExtismHost.declared`). The state outlives ticks, so
  it is held to the pool limits (``GuestLimits.pool_entries`` / ``pool_bytes`` /
  ``pool_key_bytes`` / ``pool_value_bytes``), whether set key by key or handed back whole.
* **Plain Extism functions**: :meth:`ExtismModule.function_actor` wraps one export as a
  one-in/one-out actor — bytes or text in, text / bytes / JSON / a message out.

Every node gets its own plugin instance (``open_node``), compiled on its own wasmtime engine
(wasmtime's cache under ``$REFLOW_CACHE_DIR/extism`` makes that a load after the first), with
the limits of :class:`~reflow.GuestLimits` and only what
:class:`~reflow.GuestGrants` grants: linear memory capped through the manifest's
``memory.max_pages``, a tick deadline kept by one watchdog thread (see :class:`_Call`: the
guest's own time, host calls included, except waiting for room downstream; it cancels through
the node's own engine, so no other node is interrupted), WASI only with the ``wasi`` grant,
and HTTP only to the granted hosts: the kernel's ``http_request`` is replaced by one that
checks the grant (``host`` or ``host:port``, ``*`` for any) and raises
:class:`~reflow.CapabilityError` naming the host, then fetches through httpx within the
tick's remaining time and the grant's response cap (the manifest's ``allowed_hosts`` carries
the same hosts as a second fence). Ticks run on the worker pool (``execution = "worker"``);
the extism call releases the GIL.

Errors from extism are translated in one place, :func:`._extism_traps._translate`, into the
:class:`~reflow.SandboxError` tree. An error the guest reports itself (``error_set`` and a
non-zero return — a PDK function returning ``Err``) fails the tick with the guest's message.

This module holds the plugin instance, :class:`ExtismModule` and the actors; the rest is in
its own modules: ``_extism_wasm`` (reading a module's imports), ``_extism_watchdog`` (tick
deadlines), ``_extism_protocol`` (the Reflow-SDK's JSON), ``_extism_traps`` (errors),
``_extism_host`` (host functions per node) and ``_extism_sdk`` (the extism SDK, its cache,
the host-call trampoline).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core._actor import Actor
from .._core._messages import Message
from .._errors import (
    CapabilityError,
    GuestABIError,
    GuestOutputError,
    MessageError,
    SandboxError,
)
from ._extism_host import _ExtismHost
from ._extism_protocol import (
    _guest_message,
    _input_bytes,
    _loads,
    _sdk_result,
    _to_sdk,
    parse_metadata,
)
from ._extism_sdk import _point_cache, _sdk
from ._extism_traps import _TRAPS, _GuestReported, _timeout, _translate
from ._extism_wasm import _PAGE, bind_imports, read_wasm, wasi_imports
from ._extism_watchdog import _watchdog
from ._guest_actor import GuestActor, GuestNodeActor
from ._guest_host import GuestGrants, GuestLimits, GuestTemplate, pick_template

if TYPE_CHECKING:
    import extism
    from extism.extism import CompiledPlugin

    from ..abi._manifest import Artifact, PackManifest, TemplateSpec

__all__ = [
    "ExtismActor",
    "ExtismModule",
    "ExtismNodeActor",
    "load_extism_artifact",
]
#: How a function actor turns the export's output into a message.
OUTPUT_MODES = ("string", "bytes", "json", "message")
for _op in (0x6D, 0x6E, 0x6F, 0x70, 0x7F, 0x80, 0x81, 0x82):
    _TRAPS[_op] = ("INTEGER_DIVISION_BY_ZERO", "integer divide by zero (or overflow)")
for _op in range(0x28, 0x3F):
    _TRAPS[_op] = ("MEMORY_OUT_OF_BOUNDS", "out-of-bounds memory access")
for _op in (0x11, 0x13):
    _TRAPS[_op] = ("BAD_SIGNATURE", "indirect call to a null, missing or mistyped table entry")
for _op in (0xA8, 0xA9, 0xAA, 0xAB, 0xAE, 0xAF, 0xB0, 0xB1):
    _TRAPS[_op] = ("BAD_CONVERSION_TO_INTEGER", "invalid float-to-integer conversion")
for _op in (0x25, 0x26):
    _TRAPS[_op] = ("TABLE_OUT_OF_BOUNDS", "out-of-bounds table access")
for _op in (0x10, 0x12):
    # a trap at a call that is not a stack overflow: the callee, an import, failed
    _TRAPS[_op] = (
        None,
        "a host or kernel function it called failed (extism "
        "does not say why: e.g. a memory handle that is not a live block)",
    )


class OutputModeError(SandboxError, ValueError):
    """``function_actor(output=...)`` names no output mode; still the ``ValueError`` it was."""


class _Instance:
    """One extism plugin instance and its host side (one per node, or a load-time probe).
    Each instance has its own compiled plugin, so its own wasmtime engine: the epoch
    interrupt that stops it at its deadline cannot reach any other node."""

    def __init__(self, module: ExtismModule, host: _ExtismHost, config: Mapping[str, Any]) -> None:
        self.module = module
        self.host = host
        sdk = _sdk()
        self.compiled = module._compile(host)
        try:
            self.plugin: extism.Plugin | None = sdk.extism.Plugin(
                self.compiled, config=_extism_config(config)
            )
        except sdk.extism.Error as exc:
            raise _translate(exc, "instantiation", host, module) from exc
        self.cancel = self.plugin.cancel_handle()

    def has(self, export: str) -> bool:
        assert self.plugin is not None
        return bool(self.plugin.function_exists(export))

    def call(self, export: str, data: bytes) -> bytes:
        """Call ``export``; the output (within the node's output cap), or raise."""
        plugin, host = self.plugin, self.host
        if plugin is None:
            raise host.tag(SandboxError(f"node {host.node!r} ({host.component}) is closed"))
        host.pending = None
        call = _watchdog.start(self.cancel, host.limits.tick_ms)
        host.call = call
        try:
            buf = plugin.call(export, data, parse=None, host_context=host)
        except _sdk().extism.Error as exc:
            _watchdog.finish(call)
            pending, host.pending = host.pending, None
            if pending is not None:  # a host function failed: that is the real cause
                raise pending from exc
            if call.fired:
                # Past the deadline the interrupt also fails what the guest or a host function
                # runs in the kernel (extism then reports that, not "timeout").
                raise _timeout(host, export) from exc
            raise _translate(exc, export, host, self.module, input_size=len(data)) from exc
        finally:
            _watchdog.finish(call)
            host.call = None
        pending, host.pending = host.pending, None
        if pending is not None:
            raise pending
        host.count_output(len(buf))  # before copying: a hostile length must not be copied
        return bytes(buf)

    def close(self) -> None:
        plugin, self.plugin = self.plugin, None
        if plugin is not None:
            plugin.__exit__(None, None, None)
        self.compiled = None


def _extism_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Node config as Extism config (string values, read by the PDK's ``config::get``)."""
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        for k, v in config.items()
    }


class ExtismModule:
    """An Extism plugin: its bytes, its template (when it exports ``get_metadata``) and a
    factory for actors. ``grants`` are those of the load-time probe that reads the metadata.
    """

    def __init__(
        self, wasm: bytes, *, name: str | None = None, grants: GuestGrants | None = None
    ) -> None:
        if not isinstance(wasm, (bytes, bytearray, memoryview)):
            raise GuestABIError(
                f"plugin {name or '?'!r}: expected the bytes of a WebAssembly "
                f"module, not {type(wasm).__name__}"
            )
        self.wasm = bytes(wasm)
        self.sha256 = hashlib.sha256(self.wasm).hexdigest()
        self.name = name or self.sha256[:12]
        where = f"plugin {self.name!r}"
        try:
            self.info = read_wasm(self.wasm, where)
            #: The host functions to link, with the signatures this module imports them with.
            self.bound = bind_imports(self.info, where)
        except GuestABIError as exc:
            exc.component = self.name
            raise
        probe_tmpl = GuestTemplate(id=self.name, inports=(), outports=())
        host = _ExtismHost("", probe_tmpl, GuestLimits(), grants or GuestGrants())
        probe = _Instance(self, host, {})
        try:
            self.has_metadata = probe.has("get_metadata") and probe.has("process")
            self.templates: dict[str, GuestTemplate] = {}
            if self.has_metadata:
                try:
                    t = parse_metadata(probe.call("get_metadata", b""))
                except _GuestReported as exc:
                    raise GuestABIError(f"get_metadata failed: {exc}") from exc
                self.templates[t.id] = t
        except SandboxError as exc:
            if not exc.component:
                exc.component = self.name
            raise
        finally:
            probe.close()

    @classmethod
    def load(
        cls,
        wasm: bytes | str | os.PathLike[str],
        *,
        name: str | None = None,
        grants: GuestGrants | None = None,
    ) -> ExtismModule:
        """Load a plugin from bytes or a ``.wasm`` path. A path that is missing, not a file or
        unreadable, and bytes that are not a WebAssembly module, are a GuestABIError naming
        the path and what was expected."""
        if isinstance(wasm, (str, os.PathLike)):
            path = Path(wasm)
            name = name or path.name
            expected = "expected a WebAssembly module file (.wasm)"
            try:
                if not path.exists():
                    raise GuestABIError(
                        f"plugin file {str(path)!r} does not exist; {expected}", component=name
                    )
                if not path.is_file():
                    raise GuestABIError(
                        f"plugin path {str(path)!r} is not a regular file; {expected}",
                        component=name,
                    )
                wasm = path.read_bytes()
            except OSError as exc:
                raise GuestABIError(
                    f"plugin file {str(path)!r} cannot be read: {exc.strerror or exc}; {expected}",
                    component=name,
                ) from exc
            except ValueError as exc:  # e.g. a NUL byte in the path
                raise GuestABIError(
                    f"plugin path {str(path)!r} is not a valid path: {exc}; {expected}",
                    component=name,
                ) from exc
            try:
                read_wasm(wasm, f"plugin file {str(path)!r}")
            except GuestABIError as exc:
                exc.component = name
                raise
            try:
                return cls(wasm, name=name, grants=grants)
            except SandboxError as exc:
                if str(path) not in str(exc):
                    exc.args = (f"{exc} (plugin file {str(path)!r})", *exc.args[1:])
                raise
        return cls(wasm, name=name, grants=grants)

    def _manifest(self, limits: GuestLimits, grants: GuestGrants) -> dict[str, Any]:
        hosts = list(grants.http_hosts) if grants.allows_http() else []
        return {
            "wasm": [{"data": self.wasm, "name": "main"}],
            "memory": {
                "max_pages": max(1, limits.memory_bytes // _PAGE),
                "max_http_response_bytes": int(grants.http_max_response),
            },
            # No "timeout_ms": extism's timer is wall-clock from the call's start, host calls
            # included; the tick deadline is kept by _watchdog (see _Call) instead.
            # Extism matches host names only; a "host:port" grant never matches (fails closed).
            "allowed_hosts": hosts,
            "allowed_paths": {},
        }

    def _compile(self, host: _ExtismHost) -> CompiledPlugin:
        """A compiled plugin (and wasmtime engine) of its own for one instance. Wasmtime's
        cache under :func:`extism_cache_dir` makes every compile after the first a load."""
        limits, grants = host.limits, host.grants
        who = f"node {host.node!r} ({host.component})" if host.node else f"plugin {self.name!r}"
        wasi = wasi_imports(self.info)
        if wasi and not grants.wasi:
            raise host.tag(
                CapabilityError(
                    f"{who} imports WASI ({', '.join(wasi[:3])}{', ...' if len(wasi) > 3 else ''}) "
                    "but was not granted the 'wasi' capability",
                    capability="wasi",
                )
            )
        sdk = _sdk()
        with sdk.cache_lock:
            _point_cache(sdk, who)
            try:
                return sdk.CompiledPlugin(
                    self._manifest(limits, grants),
                    wasi=bool(grants.wasi),
                    functions=sdk.functions(self.bound),
                )
            except sdk.extism.Error as exc:
                raise _translate(exc, "compilation", host, self) from exc

    def actor(
        self,
        template: str | None = None,
        *,
        limits: GuestLimits | None = None,
        grants: GuestGrants | None = None,
    ) -> ExtismActor:
        """The Reflow-SDK actor (``get_metadata`` + ``process``) of this plugin."""
        if not self.has_metadata:
            raise GuestABIError(
                f"plugin {self.name!r} does not export get_metadata and process (the Reflow "
                "SDK protocol); wrap one of its functions with function_actor(export)",
                component=self.name,
            )
        spec = pick_template(self.templates, template, self.name, f"plugin {self.name!r}")
        return ExtismActor(self, spec, limits or GuestLimits(), grants or GuestGrants())

    def function_actor(
        self,
        export: str,
        *,
        component: str | None = None,
        inport: str = "in",
        outport: str = "out",
        output: str = "string",
        limits: GuestLimits | None = None,
        grants: GuestGrants | None = None,
    ) -> ExtismActor:
        """Wrap the plugin function ``export`` as a one-in/one-out actor.

        The in-port's message goes in as bytes (Bytes raw, String as UTF-8, anything else as
        the JSON of its data); ``output`` says what comes out: ``"string"`` (UTF-8 text),
        ``"bytes"``, ``"json"`` (any JSON value, as an Any message) or ``"message"`` (a tagged
        message ``{"type": ..., "data": ...}``).
        """
        if output not in OUTPUT_MODES:
            raise OutputModeError(
                f"function_actor({export!r}): output must be one of {', '.join(OUTPUT_MODES)}, "
                f"not {output!r}"
            )
        probe = _Instance(
            self,
            _ExtismHost(
                "",
                GuestTemplate(id=self.name, inports=(), outports=()),
                GuestLimits(),
                grants or GuestGrants(),
            ),
            {},
        )
        try:
            found = probe.has(export)
        finally:
            probe.close()
        if not found:
            raise GuestABIError(
                f"plugin {self.name!r} has no export {export!r}", component=self.name
            )
        spec = GuestTemplate(
            id=component or export,
            inports=(inport,),
            outports=(outport,),
            description=f"Extism function {export!r} of {self.name}",
        )
        return ExtismActor(
            self,
            spec,
            limits or GuestLimits(),
            grants or GuestGrants(),
            export=export,
            output=output,
        )


class ExtismNodeActor(GuestNodeActor):
    """One node: its own plugin instance. ``run`` is one tick; ``close`` frees the instance
    (the close protocol of :class:`~reflow._sandbox._guest_actor.GuestNodeActor`)."""

    def __init__(self, owner: ExtismActor, node_id: str, config: dict[str, Any]) -> None:
        super().__init__(owner, node_id, config)
        self.template_actor = owner
        self.config = dict(config)
        host = _ExtismHost(node_id, owner.template, owner.limits, owner.grants)
        self._inst: _Instance | None = _Instance(owner.module, host, self.config)
        self._owned.append(self._inst)

    def _tick(self, ctx: Any) -> dict[str, Message] | None:
        inst = self._inst
        assert inst is not None
        host = inst.host
        host.begin(ctx)
        try:
            if self.template_actor.export is None:
                return self._process(ctx, inst, host)
            return self._function(ctx, inst, host)
        except _GuestReported as exc:
            ctx.fail(f"{self._who()}: the guest failed: {exc}")
            return None
        finally:
            host.end()

    def _process(self, ctx: Any, inst: _Instance, host: _ExtismHost) -> dict[str, Message]:
        context = {
            "payload": {port: _to_sdk(msg) for port, msg in ctx.inputs.items()},
            "config": {
                "node_id": self.node,
                "component": self.component,
                "resolved_env": {},
                "config": self.config,
                "namespace": None,
            },
            "state": host.state,
        }
        raw = inst.call("process", json.dumps(context, separators=(",", ":")).encode("utf-8"))
        try:
            doc = _sdk_result(_loads(raw, "process"))
            if not isinstance(doc, dict) or not isinstance(doc.get("outputs", {}), dict):
                raise GuestOutputError(
                    'process must return a JSON object {"outputs": {port: message}, "state": ...}'
                )
            outputs = [
                (str(port), _guest_message(m, f"$.outputs.{port}"))
                for port, m in (doc.get("outputs") or {}).items()
            ]
        except GuestOutputError as exc:
            raise host.tag(GuestOutputError(f"{self._who()}: {exc}")) from exc
        if doc.get("state") is not None:
            host.replace_state(doc["state"], len(raw))
        return dict(host.declared(outputs))

    def _function(self, ctx: Any, inst: _Instance, host: _ExtismHost) -> dict[str, Message]:
        owner = self.template_actor
        raw = inst.call(owner.export or "", _input_bytes(ctx.inputs.get(self.inports[0])))
        mode = owner.output
        try:
            if mode == "bytes":
                msg = Message.bytes(raw)
            elif mode == "string":
                try:
                    msg = Message.string(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise GuestOutputError(
                        f"{owner.export} returned bytes that are not UTF-8 text: {exc}"
                    ) from exc
            elif mode == "json":
                msg = Message.any(_loads(raw, owner.export or ""))
            else:
                msg = _guest_message(_loads(raw, owner.export or ""), "$")
        except (GuestOutputError, MessageError) as exc:
            raise host.tag(GuestOutputError(f"{self._who()}: {exc}")) from exc
        return {self.outports[0]: msg}

    def _who(self) -> str:
        return f"node {self.node!r} ({self.component})"

    def _release(self, inst: _Instance) -> None:
        self._inst = None
        inst.close()


class ExtismActor(GuestActor):
    """A template of an Extism plugin, registered in a network like any actor. Each node
    built from it gets its own plugin instance from :meth:`open_node`."""

    node_type = ExtismNodeActor

    def __init__(
        self,
        module: ExtismModule,
        template: GuestTemplate,
        limits: GuestLimits,
        grants: GuestGrants,
        *,
        export: str | None = None,
        output: str = "string",
    ) -> None:
        super().__init__(template, limits, grants)
        self.module = module
        #: The wrapped function (a function actor), or None for the Reflow-SDK protocol.
        self.export = export
        self.output = output


def load_extism_artifact(
    path: Path,
    *,
    artifact: Artifact,
    templates: Sequence[TemplateSpec],
    manifest: PackManifest,
    grants: Any,
    data: bytes | None = None,
) -> Mapping[str, Actor]:
    """Actors for a pack's ``kind = "extism"`` artifact (see ``reflow._loader._plugins``).

    A plugin exporting ``get_metadata``/``process`` provides the template its metadata names.
    Otherwise each manifest template wraps one export: ``config_schema["x-extism"]`` may say
    ``{"export": name, "output": "string" | "bytes" | "json" | "message"}`` (the export
    defaults to the template id), with the template's one in-port and one out-port.
    ``data``: the artifact's verified bytes (the file at ``path`` is not read again then).
    """
    g = grants if isinstance(grants, GuestGrants) else GuestGrants()
    module = ExtismModule.load(
        data if data is not None else path, name=f"{manifest.name}:{artifact.entry}", grants=g
    )
    actors: dict[str, Actor] = {}
    for t in templates:
        if module.has_metadata:
            actors[t.id] = module.actor(t.id, grants=g)
            continue
        opts = dict(t.config_schema or {}).get("x-extism") or {}
        actors[t.id] = module.function_actor(
            str(opts.get("export", t.id)),
            component=t.id,
            inport=t.inports[0] if t.inports else "in",
            outport=t.outports[0] if t.outports else "out",
            output=str(opts.get("output", "string")),
            grants=g,
        )
    return actors
