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
    │   └── TickStateError        done()/fail() misuse inside a tick
    ├── NetworkError              the network as a whole
    │   ├── NetworkStateError     a call that the network's state does not allow
    │   └── RunTimeout            run(timeout=...) expired before the graph went idle
    ├── StreamError               misuse of a Stream (write after end, second reader, ...)
    └── SandboxError              a guest module / native library misbehaved (.node, .component)
        ├── GuestABIError         the guest does not follow the guest ABI (exports, imports, frames)
        │   ├── ABIVersionError   built for an ABI this host cannot load (.guest, .host)
        │   └── GuestOutputError  garbage output: bad encoding, undeclared port, bad pointer
        ├── GuestTrap             the guest trapped (unreachable, divide by zero, ...) (.trap_code)
        │   └── GuestTimeout      the tick ran past its time limit (.limit_ms)
        ├── GuestMemoryError      the guest needed more linear memory than its cap (.limit)
        ├── CapabilityError       a host function the guest was not granted (.capability)
        └── OutputLimitError      a tick produced more output bytes than allowed (.size, .limit)
"""

from __future__ import annotations

__all__ = [
    "ABIVersionError",
    "ActorError",
    "CapabilityError",
    "DuplicateNodeError",
    "GraphError",
    "GraphFormatError",
    "GuestABIError",
    "GuestMemoryError",
    "GuestOutputError",
    "GuestTimeout",
    "GuestTrap",
    "MessageError",
    "NetworkError",
    "NetworkStateError",
    "OutputLimitError",
    "PortTypeError",
    "ReflowError",
    "RunTimeout",
    "SandboxError",
    "StreamError",
    "TickStateError",
    "UnknownComponentError",
    "UnknownNodeError",
    "UnknownPortError",
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
