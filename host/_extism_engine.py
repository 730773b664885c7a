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
  ``__set_state`` (namespace ``extism:host/user``) are provided.
* **Plain Extism functions**: :meth:`ExtismModule.function_actor` wraps one export as a
  one-in/one-out actor — bytes or text in, text / bytes / JSON / a message out.

Every node gets its own plugin instance (``open_node``) with the limits of
:class:`~reflow._guest_host.GuestLimits` and only what :class:`~reflow._guest_host.GuestGrants`
grants: linear memory capped through the manifest's ``memory.max_pages``, a wall-clock
``timeout_ms`` per call, WASI only with the ``wasi`` grant, and HTTP only to the granted
hosts: the kernel's ``http_request`` is replaced by one that checks the grant (``host`` or
``host:port``, ``*`` for any) and raises :class:`~reflow.CapabilityError` naming the host, then
fetches through httpx within the tick's time and the grant's response cap (the manifest's
``allowed_hosts`` carries the same hosts as a second fence). Ticks run on the
worker pool (``execution = "worker"``); the extism call releases the GIL.

Errors from extism are translated here, in :func:`_translate`, into the
:class:`~reflow.SandboxError` tree. An error the guest reports itself (``error_set`` and a
non-zero return — a PDK function returning ``Err``) fails the tick with the guest's message.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._actor import Actor
from ._errors import (
    CapabilityError,
    GuestABIError,
    GuestMemoryError,
    GuestOutputError,
    GuestTimeout,
    GuestTrap,
    MessageError,
    SandboxError,
)
from ._guest_host import (
    GuestActor,
    GuestGrants,
    GuestLimits,
    GuestNodeActor,
    GuestNodeHost,
    GuestTemplate,
    pick_template,
    read_module_file,
)
from ._jsonread import loads
from ._messages import Message

if TYPE_CHECKING:
    import extism
    from extism.extism import CompiledPlugin

    from .abi._manifest import Artifact, PackManifest, TemplateSpec

__all__ = [
    "ExtismActor",
    "ExtismModule",
    "ExtismNodeActor",
    "load_extism_artifact",
]

_PAGE = 65536
#: How a function actor turns the export's output into a message.
OUTPUT_MODES = ("string", "bytes", "json", "message")
_USER = "extism:host/user"
_KERNEL = "extism:host/env"
#: The stages before any guest code runs: a failure there is never the guest's own report.
_LOADING = ("compilation", "instantiation")


# -- the one boundary with extism ------------------------------------------------------------


class _GuestReported(Exception):
    """The guest failed the call itself (``error_set`` / a non-zero return code)."""


def _translate(exc: BaseException, what: str, host: GuestNodeHost, module: str) -> BaseException:
    """Map an ``extism.Error`` to the SandboxError tree (or to a guest-reported failure).

    Extism reports runtime failures as text only: ``timeout``, ``oom``, ``Function not found``,
    a wasm backtrace for a trap, ``unknown import`` when linking. Anything else came from the
    guest (``error_set``) or is its bare return code (``Error code: N``).
    """
    text = str(exc.args[0] if exc.args else exc).strip()
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    low = text.lower()
    who = f"node {host.node!r} ({host.component})" if host.node else f"module {module!r}"
    limits = host.limits
    if first == "timeout":
        return host.tag(
            GuestTimeout(
                f"{who}: {what} ran past its time limit of {limits.tick_ms:g} ms and was "
                "cancelled",
                limit_ms=limits.tick_ms,
            )
        )
    if first == "oom" or "out of memory" in low or "memory limit" in low:
        return host.tag(
            GuestMemoryError(
                f"{who}: {what} needed more memory than the cap of {limits.memory_bytes} bytes "
                f"({limits.memory_bytes // _PAGE} pages): the guest ran out of memory ({first})",
                limit=limits.memory_bytes,
            )
        )
    if first.startswith("Function not found"):
        return host.tag(GuestABIError(f"{who}: plugin {module!r} has no export {what!r}"))
    if "unknown import" in low:
        if "wasi" in low:
            return host.tag(
                CapabilityError(
                    f"{who}: plugin {module!r} imports WASI but was not granted the 'wasi' "
                    f"capability ({first})",
                    capability="wasi",
                )
            )
        return host.tag(
            GuestABIError(
                f"{who}: plugin {module!r} imports a function the host does not provide "
                f"({first}); it provides the Extism kernel (extism:host/env) and the Reflow "
                "SDK's extism:host/user __send_output, __get_state, __set_state"
            )
        )
    if "wasm backtrace" in low or "wasm trap" in low or "unreachable" in low:
        # Extism keeps only the backtrace, not the trap's cause: show the innermost frame.
        frames = [line.strip() for line in text.splitlines()[1:] if line.strip()]
        detail = f"wasm backtrace: {frames[0]}" if frames else first
        return host.tag(GuestTrap(f"{who}: guest trapped in {what} ({detail})"))
    if what in _LOADING or first.startswith(("Unable to create", "Unable to compile")):
        return host.tag(GuestABIError(f"{who}: not a valid Extism plugin: {first}"))
    return _GuestReported(text)


class _Instance:
    """One extism plugin instance and its host side (one per node, or a load-time probe)."""

    def __init__(self, module: ExtismModule, host: _ExtismHost, config: Mapping[str, Any]) -> None:
        self.module = module
        self.host = host
        sdk = _sdk()
        compiled = module._compiled(host.limits, host.grants)
        try:
            self.plugin: extism.Plugin | None = sdk.extism.Plugin(
                compiled, config=_extism_config(config)
            )
        except sdk.extism.Error as exc:
            raise _translate(exc, "instantiation", host, module.name) from exc

    def has(self, export: str) -> bool:
        assert self.plugin is not None
        return bool(self.plugin.function_exists(export))

    def call(self, export: str, data: bytes) -> bytes:
        """Call ``export``; the output (within the node's output cap), or raise."""
        plugin, host = self.plugin, self.host
        if plugin is None:
            raise host.tag(SandboxError(f"node {host.node!r} ({host.component}) is closed"))
        host.pending = None
        try:
            buf = plugin.call(export, data, parse=None, host_context=host)
        except _sdk().extism.Error as exc:
            pending, host.pending = host.pending, None
            if pending is not None:  # a host function failed: that is the real cause
                raise pending from exc
            raise _translate(exc, export, host, self.module.name) from exc
        pending, host.pending = host.pending, None
        if pending is not None:
            raise pending
        host.count_output(len(buf))  # before copying: a hostile length must not be copied
        return bytes(buf)

    def close(self) -> None:
        plugin, self.plugin = self.plugin, None
        if plugin is not None:
            plugin.__exit__(None, None, None)


def _extism_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Node config as Extism config (string values, read by the PDK's ``config::get``)."""
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        for k, v in config.items()
    }


# -- host functions --------------------------------------------------------------------------


class _ExtismHost(GuestNodeHost):
    """What a node's host functions act on: the tick's ctx (from GuestNodeHost), the node's
    Reflow-SDK state and the status and headers of its last HTTP response."""

    __slots__ = ("http_headers", "http_status", "state")

    def __init__(self, node: str, template: GuestTemplate, limits: GuestLimits,
                 grants: GuestGrants) -> None:
        super().__init__(node, template, limits, grants)
        self.state: Any = {}
        self.http_status = 0
        self.http_headers: dict[str, str] = {}

    def dispatch(
        self, name: str, plugin: extism.CurrentPlugin, args: list[int]
    ) -> bytes | int | None:
        """Run host function ``name``: bytes go back as a new block of plugin memory, an int
        as the plain result."""

        def read(offset: int) -> bytes:
            if offset == 0:
                return b""
            return bytes(plugin.memory(plugin.memory_at_offset(offset)))

        if name == "__send_output":
            ctx = self._need_ctx(name)
            raw = read(args[0])
            self.count_output(len(raw))
            outputs = _loads(raw, name)
            if not isinstance(outputs, dict):
                raise self.tag(GuestOutputError(f"{name} expects a JSON object of port: value"))
            messages = [(str(p), _plain_message(v, f"{name}.{p}")) for p, v in outputs.items()]
            self.check_ports(messages)
            for port, msg in messages:
                ctx.send({port: msg})
            return None
        if name == "__get_state":
            key = _text(read(args[0]), name)
            state = self.state if isinstance(self.state, dict) else {}
            return json.dumps(state.get(key)).encode("utf-8")
        if name == "__set_state":
            key = _text(read(args[0]), name)
            value = _loads(read(args[1]), name)
            if not isinstance(self.state, dict):
                self.state = {}
            self.state[key] = value
            return None
        if name == "http_request":
            return self.http_request(read(args[0]), read(args[1]) if args[1] else None)
        if name == "http_status_code":
            return self.http_status
        if name == "http_headers":
            return json.dumps(self.http_headers).encode("utf-8")
        raise self.tag(SandboxError(f"no host function {name!r}"))  # pragma: no cover

    def http_request(self, request: bytes, body: bytes | None) -> bytes:
        """The kernel's ``http_request``, through the node's grants: a request the grant does
        not cover raises CapabilityError naming the host (extism itself would only trap)."""
        self._need_ctx("http_request")
        try:
            req = loads(request.decode("utf-8"))  # bounded depth (a ValueError)
            url = str(req["url"])
            method = str(req.get("method") or "GET").upper()
            headers = {str(k): str(v) for k, v in dict(req.get("headers") or {}).items()}
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self.tag(
                GuestOutputError(f"http_request: the request is not JSON with a url: {exc}")
            ) from exc
        who = f"node {self.node!r} ({self.component})"
        if not self.grants.allows_http():
            raise self.tag(
                CapabilityError(
                    f"{who} made an HTTP request to {url!r} but was not granted the 'http' "
                    "capability; grant it with the hosts it may reach",
                    capability="http",
                )
            )
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        hostport = f"{host}:{parts.port}" if parts.port else host
        allowed = {h.lower() for h in self.grants.http_hosts}
        if parts.scheme not in ("http", "https") or not host:
            raise self.tag(
                CapabilityError(f"{who}: {url!r} is not an http(s) URL", capability="http")
            )
        if "*" not in allowed and host not in allowed and hostport not in allowed:
            raise self.tag(
                CapabilityError(
                    f"{who} may not reach host {hostport!r} over HTTP; allowed hosts: "
                    f"{', '.join(sorted(allowed))}",
                    capability="http",
                )
            )
        timeout = min(self.grants.http_timeout, self.limits.tick_ms / 1000.0)
        self.http_status, self.http_headers, data = _fetch(
            method, url, headers, body, timeout, self.grants.http_max_response, who
        )
        return data


def _fetch(
    method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float,
    limit: int, who: str,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through httpx: status, headers, body (at most ``limit`` bytes)."""
    import httpx

    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream(method, url, headers=headers, content=body) as resp,
        ):
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise CapabilityError(
                        f"{who}: the response from {url!r} is larger than the granted "
                        f"{limit} bytes",
                        capability="http",
                    )
                chunks.append(chunk)
            return resp.status_code, dict(resp.headers), b"".join(chunks)
    except httpx.HTTPError as exc:
        raise SandboxError(
            f"{who}: HTTP request to {url!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _host_call(current: Any, inputs: Any, n_in: int, outputs: Any, n_out: int, data: Any) -> None:
    """Every host function lands here (``data`` names it). Never lets a Python exception
    cross into the guest: it is kept in ``host.pending`` and re-raised by _Instance.call once
    the guest returns."""
    for i in range(n_out):
        outputs[i].v.i64 = 0
    host = None
    try:
        sdk = _sdk()
        plugin = sdk.extism.CurrentPlugin(current)
        host = plugin.host_context()
        name = sdk.ffi.from_handle(data)[0]
        if not isinstance(host, _ExtismHost):
            return  # not called through _Instance.call: nothing to act on
        result = host.dispatch(name, plugin, [inputs[i].v.i64 for i in range(n_in)])
        if isinstance(result, bytes) and n_out:
            mem = plugin.alloc(len(result))
            plugin.memory(mem)[:] = result
            outputs[0].v.i64 = mem.offset
        elif isinstance(result, int) and n_out:
            outputs[0].v.i32 = result
    except BaseException as exc:
        if isinstance(host, _ExtismHost) and host.pending is None:
            host.pending = host.tag(exc) if isinstance(exc, SandboxError) else exc


class _ExtismSDK:
    """extism, loaded on first use (importing reflow, or registering this engine, must not
    load libextism), with the host functions every plugin gets: the Reflow SDK's, and the
    kernel's HTTP functions replaced by ones that go through the node's grants and httpx."""

    def __init__(self) -> None:
        import extism
        from extism.extism import CompiledPlugin  # documented; not re-exported by extism 1.1
        from extism_sys import ffi

        self.extism = extism
        self.ffi = ffi
        self.CompiledPlugin = CompiledPlugin
        self.callback = ffi.callback(
            "void(ExtismCurrentPlugin*, const ExtismVal*, ExtismSize, ExtismVal*, ExtismSize, "
            "void*)"
        )(_host_call)
        i32, i64 = extism.ValType.I32, extism.ValType.I64
        table = [
            (_USER, "__send_output", [i64], []),
            (_USER, "__get_state", [i64], [i64]),
            (_USER, "__set_state", [i64, i64], []),
            (_KERNEL, "http_request", [i64, i64], [i64]),
            (_KERNEL, "http_status_code", [], [i32]),
            (_KERNEL, "http_headers", [], [i64]),
        ]
        self.functions = [
            extism.Function(ns, name, params, results, self.callback, name)
            for ns, name, params, results in table
        ]


_sdk_lock = threading.Lock()
_sdk_loaded: _ExtismSDK | None = None


def _sdk() -> _ExtismSDK:
    global _sdk_loaded
    sdk = _sdk_loaded
    if sdk is None:
        with _sdk_lock:
            if _sdk_loaded is None:
                _sdk_loaded = _ExtismSDK()
            sdk = _sdk_loaded
    return sdk


def _loads(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GuestOutputError(
            f"{what}: the guest's output is not valid UTF-8 JSON: {exc}"
        ) from exc


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GuestOutputError(f"{what}: key is not valid UTF-8: {exc}") from exc


# -- messages across the Reflow-SDK protocol --------------------------------------------------


def _to_sdk(msg: Message) -> Any:
    """A message in the original SDK's vocabulary (it has no Bytes or Null kinds)."""
    doc = msg.as_json()
    kind = doc["type"]
    if kind == "Bytes":
        return {"type": "Stream", "data": doc["data"]}
    if kind == "Null":
        return {"type": "Optional", "data": None}
    return doc


def _guest_message(raw: Any, where: str) -> Message:
    """A tagged message from the guest, validated; the SDK's ``Stream`` of bytes is Bytes."""
    try:
        if isinstance(raw, dict) and raw.get("type") == "Stream" and isinstance(
            raw.get("data"), list
        ):
            return Message.bytes(raw["data"])
        return Message.from_json(raw, _path=where)
    except MessageError as exc:
        raise GuestOutputError(f"the guest returned an invalid message at {exc.path}: {exc}") \
            from exc


def _plain_message(value: Any, where: str) -> Message:
    """A plain JSON value from ``__send_output`` as a message (a tagged one is kept)."""
    if isinstance(value, dict) and isinstance(value.get("type"), str) and set(value) <= {
        "type",
        "data",
    }:
        return _guest_message(value, where)
    try:
        return Message.from_value(value)
    except MessageError as exc:
        raise GuestOutputError(f"the guest sent an invalid value at {where}: {exc}") from exc


def _input_bytes(msg: Message | None) -> bytes:
    """What a function actor passes to its export: Bytes raw, String as UTF-8, Flow/Null
    empty, anything else as the JSON of its data."""
    if msg is None:
        return b""
    kind = msg.kind
    if kind == "Bytes":
        return msg["data"]
    if kind == "String":
        return msg["data"].encode("utf-8")
    if kind in ("Flow", "Null"):
        return b""
    data = msg.as_json().get("data")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- modules, templates, actors --------------------------------------------------------------


def _port_names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise GuestABIError(f"get_metadata: {what} must be a list of ports")
    names = []
    for p in value:
        name = p.get("name") if isinstance(p, dict) else p
        if not isinstance(name, str) or not name:
            raise GuestABIError(f"get_metadata: {what} has a port without a name: {p!r}")
        names.append(name)
    if len(set(names)) != len(names):
        raise GuestABIError(f"get_metadata: {what} lists a port twice")
    return tuple(names)


def parse_metadata(raw: bytes) -> GuestTemplate:
    """The template described by a Reflow-SDK ``get_metadata`` document."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GuestABIError(f"get_metadata did not return UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise GuestABIError("get_metadata must return a JSON object")
    tid = doc.get("component", doc.get("id"))
    if not isinstance(tid, str) or not tid:
        raise GuestABIError('get_metadata needs a non-empty string "component"')
    schema = doc.get("config_schema")
    caps = doc.get("capabilities", [])
    return GuestTemplate(
        id=tid,
        inports=_port_names(doc.get("inports", []), "inports"),
        outports=_port_names(doc.get("outports", []), "outports"),
        await_all_inports=bool(doc.get("await_all_inports", False)),
        description=str(doc.get("description", "")),
        config_schema=schema if isinstance(schema, dict) else {},
        capabilities=tuple(c for c in caps if isinstance(c, str)) if isinstance(caps, list)
        else (),
    )


class ExtismModule:
    """An Extism plugin: its bytes, its template (when it exports ``get_metadata``) and a
    factory for actors. ``grants`` are those of the load-time probe that reads the metadata.
    """

    def __init__(self, wasm: bytes, *, name: str | None = None,
                 grants: GuestGrants | None = None) -> None:
        self.wasm = bytes(wasm)
        self.sha256 = hashlib.sha256(self.wasm).hexdigest()
        self.name = name or self.sha256[:12]
        self._lock = threading.Lock()
        self._compiled_plugins: dict[tuple[GuestLimits, GuestGrants], CompiledPlugin] = {}
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
    def load(cls, wasm: bytes | str | os.PathLike[str], *, name: str | None = None,
             grants: GuestGrants | None = None) -> ExtismModule:
        """Load a plugin from bytes or a ``.wasm`` path."""
        if isinstance(wasm, (str, os.PathLike)):
            name = name or Path(wasm).name
            wasm = read_module_file(wasm, "Extism plugin")
        return cls(wasm, name=name, grants=grants)

    def _manifest(self, limits: GuestLimits, grants: GuestGrants) -> dict[str, Any]:
        hosts = list(grants.http_hosts) if grants.allows_http() else []
        return {
            "wasm": [{"data": self.wasm, "name": "main"}],
            "memory": {
                "max_pages": max(1, limits.memory_bytes // _PAGE),
                "max_http_response_bytes": int(grants.http_max_response),
            },
            "timeout_ms": max(1, math.ceil(limits.tick_ms)),
            # Extism matches host names only; a "host:port" grant never matches (fails closed).
            "allowed_hosts": hosts,
            "allowed_paths": {},
        }

    def _compiled(self, limits: GuestLimits, grants: GuestGrants) -> CompiledPlugin:
        key = (limits, grants)
        with self._lock:
            compiled = self._compiled_plugins.get(key)
            if compiled is None:
                sdk = _sdk()
                host = _ExtismHost("", GuestTemplate(id=self.name, inports=(), outports=()),
                                   limits, grants)
                try:
                    compiled = sdk.CompiledPlugin(
                        self._manifest(limits, grants), wasi=bool(grants.wasi),
                        functions=sdk.functions,
                    )
                except sdk.extism.Error as exc:
                    raise _translate(exc, "compilation", host, self.name) from exc
                self._compiled_plugins[key] = compiled
            return compiled

    def actor(self, template: str | None = None, *, limits: GuestLimits | None = None,
              grants: GuestGrants | None = None) -> ExtismActor:
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
            raise ValueError(f"output must be one of {', '.join(OUTPUT_MODES)}, not {output!r}")
        probe = _Instance(self, _ExtismHost("", GuestTemplate(id=self.name, inports=(),
                                                              outports=()),
                                            GuestLimits(), grants or GuestGrants()), {})
        try:
            found = probe.has(export)
        finally:
            probe.close()
        if not found:
            raise GuestABIError(f"plugin {self.name!r} has no export {export!r}",
                                component=self.name)
        spec = GuestTemplate(
            id=component or export,
            inports=(inport,),
            outports=(outport,),
            description=f"Extism function {export!r} of {self.name}",
        )
        return ExtismActor(self, spec, limits or GuestLimits(), grants or GuestGrants(),
                           export=export, output=output)


class ExtismNodeActor(GuestNodeActor):
    """One node: its own plugin instance. ``run`` is one tick; ``close`` frees the instance
    (the close protocol of :class:`~reflow._guest_host.GuestNodeActor`)."""

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
            doc = _loads(raw, "process")
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
        host.check_ports(outputs)
        if doc.get("state") is not None:
            host.state = doc["state"]
        return dict(outputs)

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

    def __init__(self, module: ExtismModule, template: GuestTemplate, limits: GuestLimits,
                 grants: GuestGrants, *, export: str | None = None,
                 output: str = "string") -> None:
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
    """Actors for a pack's ``kind = "extism"`` artifact (see ``reflow._plugins``).

    A plugin exporting ``get_metadata``/``process`` provides the template its metadata names.
    Otherwise each manifest template wraps one export: ``config_schema["x-extism"]`` may say
    ``{"export": name, "output": "string" | "bytes" | "json" | "message"}`` (the export
    defaults to the template id), with the template's one in-port and one out-port.
    ``data``: the artifact's verified bytes (the file at ``path`` is not read again then).
    """
    g = grants if isinstance(grants, GuestGrants) else GuestGrants()
    module = ExtismModule.load(data if data is not None else path,
                               name=f"{manifest.name}:{artifact.entry}", grants=g)
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
