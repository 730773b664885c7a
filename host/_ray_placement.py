"""Where a node runs when it is not on this process: the ``Ray(...)`` placement.

``Network.add_node(id, template, placement=Ray(address=..., num_cpus=1))`` (or, in FBP JSON,
``"metadata": {"placement": {"ray": {...}}}``) puts the node's actor in a Ray actor in another
process or machine; this module only says what such a placement may contain and checks it,
without importing Ray. Running the node is ``_ray_nodes``' job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import PlacementError

__all__ = ["Ray", "parse_placement"]

_KEYS = ("address", "num_cpus", "memory", "resources", "max_inflight")
#: Ray's own resource names, which have their own settings here
_RESERVED = {"CPU": "num_cpus", "memory": "memory", "object_store_memory": "memory"}
MAX_INFLIGHT = 1024
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True)
class Ray:
    """Run a node's actor in a Ray actor of the cluster at ``address``.

    ``address``: ``"host:port"`` of a running cluster (``ray start --head``), ``"auto"``, or
    ``None`` for the cluster this process is connected to already (else a new local one).
    ``num_cpus``, ``memory`` (bytes, or ``"512M"``/``"4G"``), ``resources`` (custom Ray
    resources, ``{"gpu_box": 1}``): what the Ray actor reserves, so Ray puts it on a node
    that has them. ``max_inflight``: ticks of this node sent to the actor before the first
    comes back (default 1; ticks run there one at a time, in order, whatever it is).
    """

    address: str | None = None
    num_cpus: float = 1
    memory: int | str | None = None
    resources: Mapping[str, float] | None = field(default=None)
    max_inflight: int = 1

    def __post_init__(self) -> None:
        _check(self, "")

    @property
    def memory_bytes(self) -> int | None:
        return _memory(self.memory, "") if self.memory is not None else None

    def to_json(self) -> dict[str, Any]:
        """The ``metadata.placement`` form: ``{"ray": {...}}`` with the settings given."""
        doc: dict[str, Any] = {}
        if self.address is not None:
            doc["address"] = self.address
        if self.num_cpus != 1:
            doc["num_cpus"] = self.num_cpus
        if self.memory is not None:
            doc["memory"] = self.memory
        if self.resources:
            doc["resources"] = dict(self.resources)
        if self.max_inflight != 1:
            doc["max_inflight"] = self.max_inflight
        return {"ray": doc}


def parse_placement(value: Any, node: str) -> Ray:
    """A node's placement: a :class:`Ray`, or its JSON form ``{"ray": {...}}``."""
    if isinstance(value, Ray):
        _check(value, node)
        return value
    where = f"node {node!r}: placement"
    if not isinstance(value, Mapping):
        raise PlacementError(
            f"{where} must be reflow.Ray(...) or {{'ray': {{...}}}}, got {type(value).__name__}",
            node=node,
        )
    if list(value) != ["ray"]:
        other = [k for k in value if k != "ray"]
        shown = repr(other[0])[:80] if other else "nothing"
        raise PlacementError(
            f"{where} names an unknown backend {shown}; expected exactly one key, 'ray'",
            node=node,
            key=str(other[0])[:80] if other else "",
        )
    doc = value["ray"]
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise PlacementError(
            f"{where}.ray must be an object of settings, got {type(doc).__name__}",
            node=node,
            key="ray",
        )
    for key in doc:
        if key not in _KEYS:
            import difflib

            close = difflib.get_close_matches(str(key), _KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PlacementError(
                f"{where}.ray has an unknown setting {str(key)[:80]!r}{hint} "
                f"(settings: {', '.join(_KEYS)})",
                node=node,
                key=str(key)[:80],
            )
    try:
        return Ray(**dict(doc))
    except PlacementError as exc:
        raise PlacementError(f"node {node!r}: {exc}", node=node, key=exc.key) from None


def _check(p: Ray, node: str) -> None:
    where = f"node {node!r}: Ray placement" if node else "Ray placement"

    def bad(key: str, want: str, got: Any) -> PlacementError:
        return PlacementError(
            f"{where}: {key} must be {want}, got {_show(got)}", node=node, key=key
        )

    a = p.address
    if a is not None and (
        not isinstance(a, str) or not a.strip() or len(a) > 300 or not _address_ok(a)
    ):
        raise bad("address", "'host:port', 'ray://host:port', 'auto' or None", a)
    if not _number(p.num_cpus) or not 0 <= p.num_cpus <= 100_000:
        raise bad("num_cpus", "a number from 0 to 100000", p.num_cpus)
    if p.memory is not None:
        _memory(p.memory, node, where)
    r = p.resources
    if r is not None:
        if not isinstance(r, Mapping):
            raise bad("resources", "a mapping of resource name to amount", r)
        for name, amount in r.items():
            if not isinstance(name, str) or not name or len(name) > 200:
                raise bad("resources", "keyed by non-empty resource names", name)
            if name in _RESERVED:
                raise PlacementError(
                    f"{where}: resources must not name {name!r}; use {_RESERVED[name]}=",
                    node=node,
                    key="resources",
                )
            if not _number(amount) or not 0 <= amount <= 1e9:
                raise bad(f"resources[{name!r}]", "a number from 0 to 1e9", amount)
    m = p.max_inflight
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= MAX_INFLIGHT:
        raise bad("max_inflight", f"an integer from 1 to {MAX_INFLIGHT}", m)


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _address_ok(a: str) -> bool:
    if a == "auto":
        return True
    rest = a[len("ray://") :] if a.startswith("ray://") else a
    host, _, port = rest.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536 and " " not in host


def _memory(v: Any, node: str, where: str = "Ray placement") -> int:
    if not isinstance(v, bool) and isinstance(v, int) and 0 < v < 1 << 50:
        return v
    if isinstance(v, str) and len(v) <= 40:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", v, re.IGNORECASE)
        if m:
            n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
            if 0 < n < 1 << 50:
                return n
    raise PlacementError(
        f"{where}: memory must be a number of bytes or a size like '512M', got {_show(v)}",
        node=node,
        key="memory",
    )


def _show(v: Any) -> str:
    """A short, safe rendering of a user's value (no user ``__repr__`` runs)."""
    if isinstance(v, str):
        return repr(v[:60]) + ("..." if len(v) > 60 else "")
    if v is None or isinstance(v, (bool, int, float)):
        text = repr(v)
        return text if len(text) <= 60 else text[:57] + "..."
    return f"a {type(v).__name__}"
