"""The one exception tree of reflow.

Everything reflow raises derives from :class:`ReflowError`, so ``except reflow.ReflowError``
catches all of it. Each layer has its own subtree; errors from dependencies are translated at
one boundary per dependency and chained with ``raise ... from exc``::

    ReflowError
    ├── MessageError              a value is not a valid message (.path)
    ├── GraphError                building or validating a graph
    │   ├── GraphFormatError      graph JSON that does not follow the FBP format (.path)
    │   ├── DuplicateNodeError    a node id used twice (.node)
    │   ├── UnknownNodeError      a connection/initial/export names a missing node (.node)
    │   ├── UnknownPortError      a port the node's actor does not declare (.node, .port)
    │   ├── UnknownComponentError a template id nobody registered (.component)
    │   └── PortTypeError         typed ports that cannot be connected (.source, .target)
    ├── ActorError                one tick of one node went wrong (.node, .component)
    │   ├── TickStateError        done()/fail() misuse inside a tick
    │   ├── TickTimeoutError      a tick ran past its node's timeout policy (.limit_s)
    │   ├── CircuitOpenError      a node's circuit breaker is open: the tick failed fast
    │                             (.retry_after_s)
    │   ├── RemoteTickError       a tick on a Ray actor raised; the remote traceback is its
    │                             note (.remote_type, .remote_traceback)
    │   └── WorkerLostError       the Ray actor running a node's tick died, or its cluster went
    │                             away (.cause)
    ├── PolicyError               a node's policy declaration is invalid (.node, .key)
    ├── PlacementError            a node cannot be placed where asked: bad Ray(...) settings,
    │                             an unreachable cluster, an actor that cannot travel (.node, .key)
    ├── CheckpointError           a durable run's checkpoint cannot be written or resumed (.run_id)
    │   ├── CheckpointConfigError bad run_id / checkpoint / checkpoint_every / store URL
    │   ├── CheckpointStoreError  the checkpoint store cannot be reached or fails (.store)
    │   ├── CheckpointNotFoundError resume=True, but the store has no checkpoint for the run
    │   ├── CheckpointMismatchError the checkpoint is of another graph (.differences)
    │   ├── CheckpointVersionError written in another checkpoint format (.found, .expected)
    │   ├── CheckpointCorruptError truncated, not JSON, digest mismatch: refused, not applied
    │   └── CheckpointStateError  the run's state cannot be written (a pool value, a stream)
    ├── NetworkError              the network as a whole
    │   ├── NetworkStateError     a call that the network's state does not allow
    │   └── RunTimeout            run(timeout=...) expired before the graph went idle
    ├── StreamError               misuse of a Stream (write after end, second reader, ...)
    ├── SandboxError              a guest module / native library misbehaved (.node, .component)
    │   ├── GuestABIError         the guest does not follow the guest ABI (exports, imports, frames)
    │   │   ├── ABIVersionError   built for an ABI this host cannot load (.guest, .host)
    │   │   └── GuestOutputError  garbage output: bad encoding, undeclared port, bad pointer
    │   ├── GuestTrap             the guest trapped (unreachable, divide by zero, ...) (.trap_code)
    │   │   └── GuestTimeout      the tick ran past its time limit (.limit_ms)
    │   ├── GuestMemoryError      the guest needed more linear memory than its cap (.limit)
    │   ├── CapabilityError       a host function the guest was not granted (.capability)
    │   ├── OutputLimitError      a tick produced more output bytes than allowed (.size, .limit)
    │   └── GuestLimitError       a guest-controlled resource passed its GuestLimits field:
    │                             pools, packets per tick, tables, module size, compile cost,
    │                             describe document (.resource, .value, .limit)
    ├── InvalidLimitsError        a GuestLimits field with an unusable value (.field, .value)
    ├── GuestBuildError           compiling a guest from source failed (.target, .stderr)
    ├── OpenApiError              an OpenAPI / Swagger description cannot be read or turned
    │                             into an operation table (.file, .path)
    ├── HttpApiError              an API-service operation failed or was refused before it was
    │                             sent: bad key, host not granted, error status, transport
    │                             (.operation, .key, .status)
    ├── GpuError                  the GPU runtime could not do what a GPU node asked (defined in
    │   │                         reflow._gpu._errors, exported lazily: no numpy at import)
    │   ├── NoGpuAdapterError     no WebGPU adapter (or none matching REFLOW_GPU_ADAPTER) (.wanted)
    │   │   └── GpuUnavailableError wgpu is not installed, or REFLOW_GPU=off
    │   ├── GpuKernelError        a WGSL kernel that wgpu refuses (.kernel)
    │   ├── GpuLimitError         a dispatch or buffer past the device's limits
    │   │                         (.limit, .value, .maximum)
    │   ├── GpuTimeoutError       a dispatch that did not finish within its time limit (.limit_s)
    │   └── GpuBufferError        a GpuBuffer handle used after its device was reset or closed
    ├── PackError                 a pack cannot be built, read, verified or loaded (.pack)
    │   ├── PackFormatError       not a valid .rflpack or manifest (.member, .field)
    │   │   └── UnsafeArchiveError traversal, link, duplicate, oversize entry, bomb (.member)
    │   ├── PackSignatureError    unsigned, or a signature that does not verify (.key_id)
    │   │   └── UntrustedKeyError signed by a key that is not in the trust store (.key_id)
    │   ├── PackIntegrityError    bytes that do not match the manifest (.file, .expected, .actual)
    │   ├── PlatformError         no artifact for this host's triple (.wanted, .available)
    │   ├── PackNotFoundError     load_pack(name) names no installed pack (.pack)
    │   ├── PackVetoError         a plugin refused to let the pack load (.plugin, .reason)
    │   └── TemplateConflictError a template id another owner already provides (.template, .owner)
    └── RegistryError             talking to a pack registry went wrong (.url)
        ├── RegistryHTTPError     the registry answered with an error (.status, .code)
        │   ├── RegistryAuthError missing, invalid or expired token; scope or namespace refused
        │   └── RegistryNotFoundError no such namespace, pack, version or variant
        ├── RegistryIntegrityError a download's size or sha256 is not what was published
        │                         (.what, .expected, .actual)
        ├── RegistrySignatureError a downloaded pack's signature does not verify (.key_id)
        └── RegistryUnavailableError the registry cannot be reached (after retries) and the
                                  cache cannot answer

One warning class, :class:`ConfigKeyWarning` (a ``ReflowError`` and a ``UserWarning``, so one
turned into an error by ``-W error`` is still caught as a ReflowError): a config key that a
built-in template does not read, kept in the node's config.
"""

from __future__ import annotations

__all__ = [
    "ABIVersionError",
    "ActorError",
    "CapabilityError",
    "CheckpointConfigError",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "CheckpointStateError",
    "CheckpointStoreError",
    "CheckpointVersionError",
    "CircuitOpenError",
    "ConfigKeyWarning",
    "DuplicateNodeError",
    "GraphError",
    "GraphFormatError",
    "GuestABIError",
    "GuestBuildError",
    "GuestLimitError",
    "GuestMemoryError",
    "GuestOutputError",
    "GuestTimeout",
    "GuestTrap",
    "HttpApiError",
    "InvalidLimitsError",
    "MessageError",
    "NetworkError",
    "NetworkStateError",
    "OpenApiError",
    "OutputLimitError",
    "PackError",
    "PackFormatError",
    "PackIntegrityError",
    "PackNotFoundError",
    "PackSignatureError",
    "PackVetoError",
    "PlacementError",
    "PlatformError",
    "PolicyError",
    "PortTypeError",
    "ReflowError",
    "RegistryAuthError",
    "RegistryError",
    "RegistryHTTPError",
    "RegistryIntegrityError",
    "RegistryNotFoundError",
    "RegistrySignatureError",
    "RegistryUnavailableError",
    "RemoteTickError",
    "RunTimeout",
    "SandboxError",
    "StreamError",
    "TemplateConflictError",
    "TickStateError",
    "TickTimeoutError",
    "UnknownComponentError",
    "UnknownNodeError",
    "UnknownPortError",
    "UnsafeArchiveError",
    "UntrustedKeyError",
    "WorkerLostError",
]


class ReflowError(Exception):
    """Base of every exception reflow raises."""


class MessageError(ReflowError, ValueError):
    """A value is not a valid message. ``path`` points at the offending part (``$.data``)."""

    def __init__(self, message: str, *, path: str = "$") -> None:
        super().__init__(message)
        self.path = path


class GraphError(ReflowError):
    """A graph (or a network being built) is not valid."""


class ConfigKeyWarning(ReflowError, UserWarning):
    """A node's config holds a key its built-in template does not read and that looks like no
    misspelling of one; the key is kept (``Network(config_check="strict")`` refuses it)."""


class GraphFormatError(GraphError, ValueError):
    """Graph JSON that does not follow the FBP graph format. ``path`` is a JSON path."""

    def __init__(self, message: str, *, path: str = "$") -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message


class DuplicateNodeError(GraphError):
    def __init__(self, node: str) -> None:
        super().__init__(f"node id {node!r} is already used in this network")
        self.node = node


class UnknownNodeError(GraphError, KeyError):
    def __init__(self, node: str, context: str = "", known: list[str] | None = None) -> None:
        hint = ""
        if known is not None:
            shown = ", ".join(sorted(known)[:10]) or "none"
            hint = f"; known nodes: {shown}"
        where = f" ({context})" if context else ""
        super().__init__(f"no node {node!r}{where}{hint}")
        self.node = node

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


class UnknownPortError(GraphError, KeyError):
    def __init__(self, node: str, port: str, direction: str, declared: list[str]) -> None:
        shown = ", ".join(declared) or "none"
        super().__init__(
            f"node {node!r} has no {direction} port {port!r}; declared {direction} ports: {shown}"
        )
        self.node = node
        self.port = port
        self.direction = direction

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownComponentError(GraphError, KeyError):
    def __init__(self, component: str, known: list[str] | None = None) -> None:
        hint = ""
        if known is not None:
            shown = ", ".join(sorted(known)[:10]) or "none"
            more = f" (and {len(known) - 10} more)" if len(known) > 10 else ""
            hint = f"; registered: {shown}{more}"
        super().__init__(
            f"unknown component {component!r}: register it with "
            f"register_actor({component!r}, ...) or load the pack that provides it{hint}"
        )
        self.component = component

    def __str__(self) -> str:
        return str(self.args[0])


class PortTypeError(GraphError, TypeError):
    def __init__(self, message: str, *, source: str = "", target: str = "") -> None:
        super().__init__(message)
        self.source = source
        self.target = target


class ActorError(ReflowError):
    """One tick of one node failed. Carries the node id and its component."""

    def __init__(self, message: str, *, node: str = "", component: str = "") -> None:
        super().__init__(message)
        self.node = node
        self.component = component


class TickStateError(ActorError):
    """done()/fail()/emit() called when the tick does not allow it."""


class TickTimeoutError(ActorError, TimeoutError):
    """A tick ran longer than its node's ``timeout_s`` policy allows."""

    def __init__(self, message: str, *, node: str = "", component: str = "", limit_s: float = 0.0):
        super().__init__(message, node=node, component=component)
        self.limit_s = limit_s


class CircuitOpenError(ActorError):
    """The node's circuit breaker is open: the tick failed at once, without running.
    ``retry_after_s``: seconds until the breaker lets one probe tick through."""

    def __init__(
        self, message: str, *, node: str = "", component: str = "", retry_after_s: float = 0.0
    ):
        super().__init__(message, node=node, component=component)
        self.retry_after_s = retry_after_s


class RemoteTickError(ActorError):
    """A tick of a node placed on a Ray actor raised there. The message is the remote
    exception's type and text; ``remote_traceback`` (also a note on this exception, so it
    shows in the ``ActorFailed`` traceback) is the remote traceback as text."""

    def __init__(
        self,
        message: str,
        *,
        node: str = "",
        component: str = "",
        remote_type: str = "",
        remote_traceback: str = "",
    ) -> None:
        super().__init__(message, node=node, component=component)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        if remote_traceback:
            self.add_note(f"remote traceback (on the Ray actor):\n{remote_traceback.rstrip()}")


class WorkerLostError(ActorError):
    """The process running a placed node's tick is gone: its Ray actor died (killed, out of
    memory, its machine lost) or the whole Ray cluster went away. ``cause`` says which."""

    def __init__(self, message: str, *, node: str = "", component: str = "", cause: str = ""):
        super().__init__(message, node=node, component=component)
        self.cause = cause


class PlacementError(GraphError):
    """A node cannot be placed where its placement asks: unknown or bad ``Ray(...)``
    settings, Ray not installed, a cluster that cannot be reached or has no node with the
    resources, an actor or template that cannot travel to another process, or Stream ports.
    ``node`` names the node, ``key`` the placement setting at fault (``"num_cpus"``)."""

    def __init__(self, message: str, *, node: str = "", key: str = "") -> None:
        super().__init__(message)
        self.node = node
        self.key = key


class PolicyError(ReflowError, ValueError):
    """A node's policies (retry, timeout, breaker, rate limit, cache, dead letters) are
    declared wrongly. ``node`` names the node, ``key`` the policy key at fault
    (``"retry.attempts"``)."""

    def __init__(self, message: str, *, node: str = "", key: str = "") -> None:
        super().__init__(message)
        self.node = node
        self.key = key


class CheckpointError(ReflowError):
    """A durable run's checkpoint cannot be written, read or resumed from. ``run_id`` names
    the run (empty when the error is about the arguments before any run is named)."""

    def __init__(self, message: str, *, run_id: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id


class CheckpointConfigError(CheckpointError, ValueError):
    """``run_id``, ``checkpoint``, ``checkpoint_every``, ``resume`` or a store URL is unusable."""


class CheckpointStoreError(CheckpointError):
    """The checkpoint store cannot be reached, or failed a read or a write. ``store`` names
    it (its URL or path, without a password)."""

    def __init__(self, message: str, *, run_id: str = "", store: str = "") -> None:
        super().__init__(message, run_id=run_id)
        self.store = store


class CheckpointNotFoundError(CheckpointError, LookupError):
    """``resume=True`` but the store holds no checkpoint for ``run_id``."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint was written by another graph. ``differences`` lists what differs."""

    def __init__(self, message: str, *, run_id: str = "", differences: list[str] | None = None):
        super().__init__(message, run_id=run_id)
        self.differences = differences or []


class CheckpointVersionError(CheckpointError):
    """The checkpoint is in a format version this host does not read (``found``, ``expected``)."""

    def __init__(self, message: str, *, run_id: str = "", found: object = None, expected: int = 0):
        super().__init__(message, run_id=run_id)
        self.found = found
        self.expected = expected


class CheckpointCorruptError(CheckpointError):
    """The checkpoint's bytes are damaged (truncated, not JSON, digest mismatch, a value that
    is not what the format says). It is refused before anything of it is applied."""


class CheckpointStateError(CheckpointError):
    """The run's state cannot be put in a checkpoint (a pool value that is not JSON, an
    actor's ``checkpoint_state()`` that failed). The run stops; the last checkpoint stays."""


class NetworkError(ReflowError):
    """The network as a whole cannot do what was asked."""


class NetworkStateError(NetworkError, RuntimeError):
    """The call is not allowed in the network's current state (running, shut down, ...)."""


class RunTimeout(NetworkError, TimeoutError):
    """``run(timeout=...)`` expired before the graph went idle. ``pending`` says what was left."""

    def __init__(self, message: str, *, pending: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.pending = pending or {}


class StreamError(ReflowError):
    """A Stream was used in a way it does not allow."""


# -- sandbox / guest ABI (issue 3) -------------------------------------------------------------


class SandboxError(ReflowError):
    """A guest (WebAssembly module or native library) misbehaved or was refused.

    ``node`` and ``component`` name the node and template when known (empty at module load).
    The tick that raised it fails; the host and every other node keep running.
    """

    def __init__(self, message: str, *, node: str = "", component: str = "") -> None:
        super().__init__(message)
        self.node = node
        self.component = component


class GuestABIError(SandboxError):
    """The guest does not follow the reflow guest ABI: missing or mistyped exports, imports
    the host does not provide, a describe document that does not parse, ..."""


class ABIVersionError(GuestABIError):
    """The guest was built for an ABI version this host cannot load.

    ``guest`` and ``host`` are ``(major, minor)`` tuples.
    """

    def __init__(
        self,
        message: str,
        *,
        guest: tuple[int, int],
        host: tuple[int, int],
        node: str = "",
        component: str = "",
    ) -> None:
        super().__init__(message, node=node, component=component)
        self.guest = guest
        self.host = host


class GuestOutputError(GuestABIError):
    """What the guest handed back is unusable: not valid frame encoding, a port it did not
    declare, a pointer/length outside its linear memory."""


class GuestTrap(SandboxError):
    """The guest trapped. ``trap_code`` is wasmtime's code name (``"UNREACHABLE"``, ...) when
    known, else ``None``."""

    def __init__(
        self, message: str, *, trap_code: str | None = None, node: str = "", component: str = ""
    ) -> None:
        super().__init__(message, node=node, component=component)
        self.trap_code = trap_code


class GuestTimeout(GuestTrap):
    """The tick ran past its time limit and was interrupted. ``limit_ms`` is the limit."""

    def __init__(
        self, message: str, *, limit_ms: float, node: str = "", component: str = ""
    ) -> None:
        super().__init__(message, trap_code="INTERRUPT", node=node, component=component)
        self.limit_ms = limit_ms


class GuestMemoryError(SandboxError):
    """The guest needed more linear memory than its cap allows. ``limit`` is the cap in
    bytes."""

    def __init__(self, message: str, *, limit: int, node: str = "", component: str = "") -> None:
        super().__init__(message, node=node, component=component)
        self.limit = limit


class CapabilityError(SandboxError):
    """The guest called a host function it was not granted (``capability``), or used a
    granted one outside its grant (an HTTP host that is not allowed)."""

    def __init__(
        self, message: str, *, capability: str, node: str = "", component: str = ""
    ) -> None:
        super().__init__(message, node=node, component=component)
        self.capability = capability


class OutputLimitError(SandboxError):
    """One tick produced more output bytes than the node's output cap."""

    def __init__(
        self, message: str, *, size: int, limit: int, node: str = "", component: str = ""
    ) -> None:
        super().__init__(message, node=node, component=component)
        self.size = size
        self.limit = limit


class GuestLimitError(SandboxError):
    """A guest-controlled resource would pass its limit, so the host refused it: ``resource``
    is the :class:`~reflow.GuestLimits` field (``"pool_bytes"``, ``"output_packets"``,
    ``"table_elements"``, ``"module_bytes"``, ``"compile_memory_bytes"``, ...), ``value`` what
    the guest asked for (``None`` when it is not known, e.g. a compile killed at its memory
    limit) and ``limit`` the field's value. During a tick it fails that tick only; at load it
    refuses the module."""

    def __init__(
        self,
        message: str,
        *,
        resource: str,
        value: float | None,
        limit: float,
        node: str = "",
        component: str = "",
    ) -> None:
        super().__init__(message, node=node, component=component)
        self.resource = resource
        self.value = value
        self.limit = limit


class InvalidLimitsError(ReflowError, ValueError):
    """A :class:`~reflow.GuestLimits` field was given a value it cannot take. ``field`` names
    it and ``value`` is what was given."""

    def __init__(self, message: str, *, field: str, value: object) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class GuestBuildError(ReflowError):
    """Compiling a guest actor from source failed. ``target`` is the triple being built and
    ``stderr`` the compiler's output."""

    def __init__(self, message: str, *, target: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.target = target
        self.stderr = stderr


class OpenApiError(ReflowError):
    """An OpenAPI 3.x / Swagger 2.0 description cannot be read or normalized (issue 11).
    ``file`` is the file at fault and ``path`` the JSON path inside it (``$.paths["/x"].get``),
    when known."""

    def __init__(self, message: str, *, file: str = "", path: str = "") -> None:
        where = ": ".join(p for p in (file, path) if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.path = path
        self.reason = message


# -- API-service packs (issue 11) --------------------------------------------------------------


class HttpApiError(ReflowError):
    """An operation of an API-service pack (``kind = "http-api"``) failed, or was refused
    before anything was sent. ``operation`` names the template, ``key`` the parameter or
    body field at fault (when one is), ``status`` the HTTP status (when one came back).
    Its message never holds a credential."""

    def __init__(
        self, message: str, *, operation: str = "", key: str = "", status: int = 0
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.key = key
        self.status = status


# -- packs and trust (issue 4) ------------------------------------------------------------------


class PackError(ReflowError):
    """A pack cannot be built, read, verified or loaded. ``pack`` names it (file or name)."""

    def __init__(self, message: str, *, pack: str = "") -> None:
        super().__init__(message)
        self.pack = pack


class PackFormatError(PackError, ValueError):
    """Not a valid ``.rflpack`` bundle or pack manifest. ``member`` is the bundle member and
    ``field`` the manifest field at fault, when known."""

    def __init__(self, message: str, *, pack: str = "", member: str = "", field: str = "") -> None:
        super().__init__(message, pack=pack)
        self.member = member
        self.field = field


class UnsafeArchiveError(PackFormatError):
    """The bundle tries something extraction refuses: a path outside the pack (``..``,
    absolute), a link or device entry, a duplicate name, an entry over the size limit, a
    manifest over its limit, or more decompressed bytes than the limits allow (a bomb)."""


class PackSignatureError(PackError):
    """The pack is unsigned, or its signature does not verify. ``key_id`` names the key."""

    def __init__(self, message: str, *, pack: str = "", key_id: str = "") -> None:
        super().__init__(message, pack=pack)
        self.key_id = key_id


class UntrustedKeyError(PackSignatureError):
    """The signature is valid but its key (``key_id``) is not in the trust store."""


class PackIntegrityError(PackError):
    """A file's bytes do not match the manifest: ``file`` with ``expected`` and ``actual``
    sha256 (or sizes, when the size already differs)."""

    def __init__(
        self, message: str, *, pack: str = "", file: str = "", expected: str = "", actual: str = ""
    ) -> None:
        super().__init__(message, pack=pack)
        self.file = file
        self.expected = expected
        self.actual = actual


class PlatformError(PackError):
    """The pack has no artifact this host can run: ``wanted`` lists the triples tried and
    ``available`` the ones the pack carries."""

    def __init__(
        self,
        message: str,
        *,
        pack: str = "",
        wanted: tuple[str, ...] = (),
        available: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, pack=pack)
        self.wanted = wanted
        self.available = available


class PackNotFoundError(PackError, LookupError):
    """``load_pack(name)`` names a pack that is neither a file nor installed in the cache."""


class PackVetoError(PackError):
    """A plugin's ``reflow_before_pack_load`` hook refused the pack."""

    def __init__(self, message: str, *, pack: str = "", plugin: str = "", reason: str = "") -> None:
        super().__init__(message, pack=pack)
        self.plugin = plugin
        self.reason = reason


class TemplateConflictError(PackError):
    """A template id (``template``) is already provided by another owner (``owner``)."""

    def __init__(
        self, message: str, *, pack: str = "", template: str = "", owner: str = ""
    ) -> None:
        super().__init__(message, pack=pack)
        self.template = template
        self.owner = owner


# -- registry (issue 5) ------------------------------------------------------------------------


class RegistryError(ReflowError):
    """Talking to a pack registry went wrong. ``url`` is the request's URL when known."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class RegistryHTTPError(RegistryError):
    """The registry answered with an error status. ``status`` is the HTTP status and ``code``
    the registry's machine-readable error code (``"version_exists"``, ``"too_large"``, ...;
    ``"http_<status>"`` when the body carried none)."""

    def __init__(self, message: str, *, status: int, code: str, url: str = "") -> None:
        super().__init__(message, url=url)
        self.status = status
        self.code = code


class RegistryAuthError(RegistryHTTPError):
    """401 or 403: the token is missing, invalid or expired, or lacks the scope or namespace."""


class RegistryNotFoundError(RegistryHTTPError, LookupError):
    """404: no such namespace, pack, version, or no variant for the requested triple."""


class RegistryIntegrityError(RegistryError):
    """A downloaded file is not what the registry published: ``what`` is ``"size"`` or
    ``"sha256"``, with the ``expected`` and ``actual`` values. Never raised for an HTTP
    error status (a 404 is a :class:`RegistryNotFoundError`)."""

    def __init__(
        self, message: str, *, what: str, expected: str, actual: str, url: str = ""
    ) -> None:
        super().__init__(message, url=url)
        self.what = what
        self.expected = expected
        self.actual = actual


class RegistrySignatureError(RegistryError):
    """A downloaded pack (or its published manifest) does not verify against the local
    trust store: unsigned, signed by an untrusted key, or tampered. ``key_id`` names the key."""

    def __init__(self, message: str, *, key_id: str = "", url: str = "") -> None:
        super().__init__(message, url=url)
        self.key_id = key_id


class RegistryUnavailableError(RegistryError):
    """The registry could not be reached (connection refused, timeouts, 5xx after every
    retry) and the local cache could not answer instead."""
