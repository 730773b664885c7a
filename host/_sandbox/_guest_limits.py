"""What a guest may use and may do: :class:`GuestLimits` and :class:`GuestGrants`.

Limits (memory, time, output, pools, module and compile sizes) are checked when they are
made: each must be a finite, positive number of the right type within its floor, else an
:class:`~reflow.InvalidLimitsError` naming the field. Grants are capabilities, off by
default (WASI, HTTP to named hosts within a timeout and a response cap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._errors import (
    InvalidLimitsError,
)

_KIB = 1024
_MIB = 1024 * 1024


#: (field, minimum) for every GuestLimits field.
_LIMIT_MINIMA: tuple[tuple[str, float], ...] = (
    ("memory_bytes", 65536),
    ("tick_ms", 0),
    ("output_bytes", 1),
    ("batch_ticks", 1),
    ("output_packets", 1),
    ("pool_bytes", 1),
    ("pool_entries", 1),
    ("pool_key_bytes", 1),
    ("pool_value_bytes", 1),
    ("table_elements", 0),
    ("tables", 0),
    ("instances", 1),
    ("memories", 1),
    ("module_bytes", 8),
    ("compile_memory_bytes", 16 * _MIB),
    ("compile_ms", 0),
    ("describe_bytes", 2),
    ("describe_templates", 1),
)


@dataclass(frozen=True)
class GuestLimits:
    """Per-node limits on everything a guest controls. Exceeding one raises
    :class:`~reflow.GuestLimitError` naming the field (``OutputLimitError`` for
    ``output_bytes``, ``GuestMemoryError`` for ``memory_bytes``, ``GuestTimeout`` for
    ``tick_ms``); a per-tick limit fails that tick only. abi/ABI.md, "Resource limits", says
    what each one counts.

    Linear memory, time, stack, store contents and compiling apply to WebAssembly guests only
    (a native library cannot be limited); output, packets, pools and the describe document to
    every engine.

    ``batch_ticks``: at most this many ticks of a node per guest call, for guests that export
    ``reflow_tick_batch`` (ABI 1.1); ``1`` turns batching off. Every tick, batched or not,
    has its own budget of ``tick_ms`` (abi/ABI.md, section 3a)."""

    memory_bytes: int = 64 * _MIB
    tick_ms: float = 1000.0
    output_bytes: int = 16 * _MIB
    batch_ticks: int = 32
    #: Packets one tick may send: those emitted mid-tick plus the outputs of its result frame.
    output_packets: int = 10_000
    #: A node's pools together (host memory that outlives ticks): bytes charged (pool name,
    #: id, encoded value, the parsed size of JSON values and a fixed cost per entry), entries,
    #: and the size of one pool name or id and of one encoded value.
    pool_bytes: int = 16 * _MIB
    pool_entries: int = 65_536
    pool_key_bytes: int = 1 * _KIB
    pool_value_bytes: int = 1 * _MIB
    #: What one node's wasmtime store may hold (``Store.set_limits``): elements per table,
    #: tables, instances and linear memories.
    table_elements: int = 65_536
    tables: int = 4
    instances: int = 1
    memories: int = 1
    #: Loading a module: its size, and what compiling it may cost (address space the
    #: compiler may add, and wall-clock time; the compiler runs in a child process so both
    #: can be enforced).
    module_bytes: int = 64 * _MIB
    compile_memory_bytes: int = 1024 * _MIB
    compile_ms: float = 60_000.0
    #: The describe document: its size (checked before it is copied or parsed, which bounds
    #: what parsing costs: JSON text parses to at most ~25x its size) and the number of
    #: templates it lists.
    describe_bytes: int = 1 * _MIB
    describe_templates: int = 1024

    def __post_init__(self) -> None:
        for name, minimum in _LIMIT_MINIMA:
            value = getattr(self, name)
            floats = name in _FLOAT_LIMITS
            kind = "a number" if floats else "an integer"
            if isinstance(value, bool) or not isinstance(value, (int, float) if floats else int):
                raise InvalidLimitsError(
                    f"GuestLimits.{name} must be {kind}, not {value!r}", field=name, value=value
                )
            if floats and not (value > 0 and math.isfinite(value)):
                raise InvalidLimitsError(
                    f"GuestLimits.{name} must be positive and finite, not {value!r}",
                    field=name,
                    value=value,
                )
            if value < minimum:
                raise InvalidLimitsError(
                    f"GuestLimits.{name} must be at least {minimum}"
                    f"{' (one wasm page)' if name == 'memory_bytes' else ''}, not {value!r}",
                    field=name,
                    value=value,
                )


_FLOAT_LIMITS = frozenset({"tick_ms", "compile_ms"})


@dataclass(frozen=True)
class GuestGrants:
    """Capabilities the user grants beyond the baseline (log, emit, pools).

    ``http_hosts``: host names (or ``host:port``) the guest may reach over HTTP; empty means
    the ``http`` capability is not granted. ``"*"`` allows any host. ``wasi``: see below.
    """

    http_hosts: tuple[str, ...] = ()
    http_timeout: float = 10.0
    http_max_response: int = 1024 * 1024
    #: Let a module that imports WASI (wasi_snapshot_preview1) run, with an empty WASI
    #: context: no files, no environment, no arguments, no sockets; stdout/stderr go to the
    #: node's logger. Clocks and random numbers are what it gains.
    wasi: bool = False

    def __post_init__(self) -> None:
        hosts = self.http_hosts
        if isinstance(hosts, str):  # GuestGrants(http_hosts="api.example.com"): one host
            hosts = (hosts,)
        if not isinstance(hosts, (tuple, list, set, frozenset)) or not all(
            isinstance(h, str) and h and h == h.strip() and h.isprintable() for h in hosts
        ):
            raise InvalidLimitsError(
                f"GuestGrants.http_hosts must be host names (or 'host:port', or '*'), "
                f"not {self.http_hosts!r}",
                field="http_hosts",
                value=self.http_hosts,
            )
        object.__setattr__(self, "http_hosts", tuple(hosts))
        timeout = self.http_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not (timeout > 0 and math.isfinite(timeout))
        ):
            raise InvalidLimitsError(
                f"GuestGrants.http_timeout must be a positive, finite number of seconds, "
                f"not {timeout!r}",
                field="http_timeout",
                value=timeout,
            )
        size = self.http_max_response
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidLimitsError(
                f"GuestGrants.http_max_response must be a positive number of bytes, not {size!r}",
                field="http_max_response",
                value=size,
            )
        if not isinstance(self.wasi, bool):
            raise InvalidLimitsError(
                f"GuestGrants.wasi must be True or False, not {self.wasi!r}",
                field="wasi",
                value=self.wasi,
            )

    def allows_http(self) -> bool:
        return bool(self.http_hosts)
