"""Node policies, as declared: the dict form read, checked and turned into policy objects.

A node's policies are one dict, the same in the Python API
(``net.add_node(id, tpl, config, policies={...})``) and in FBP JSON (the process's
``metadata.policies``)::

    {"retry": {"attempts": 3, "backoff_s": 0.1, "max_delay_s": 5, "on": ["GuestTrap"],
               "match": "timeout|503"},
     "timeout_s": 2,
     "circuit_breaker": {"failures": 5, "window_s": 60, "cooldown_s": 30},
     "rate_limit": {"rate": 10, "burst": 10, "key": "github-api"},
     "cache": {"ttl_s": 300, "version": "1", "path": "cache.sqlite", "max_entries": 1024},
     "dead_letter": {"port": "dead"},
     "my_plugin_policy": {...}}

Every key is checked when the node is added; a wrong one raises :class:`~reflow.PolicyError`
naming the node, the key and the rule. A key that is not one of the built-in ones is asked of
the plugins (the ``reflow_policy(name, config)`` hook); nobody answering is an error too.

This module only reads declarations. The policy objects live in ``_policies_builtin``, their
state (breaker, token buckets, cache stores) in ``_policies_state``, and the tick runner that
applies them in ``_policies_runner``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._errors import PolicyError
from ._policies_base import Policy

__all__ = ["BUILTIN_KEYS", "PolicySpec", "parse_policies", "set_policy_plugins"]

BUILTIN_KEYS = ("retry", "timeout_s", "circuit_breaker", "rate_limit", "cache", "dead_letter")
_MAX_ATTEMPTS = 100
_MAX_SECONDS = 86_400.0  # one day: the bound of every duration here
_MAX_ENTRIES = 10_000_000
_MAX_TEXT = 1_000  # bytes of a regex, key, version or port name
_MAX_NAMES = 64  # error class names in retry.on

# Set by the package (``reflow/__init__``): asks plugins' ``reflow_policy`` hooks for a policy
# object. A hook rather than an import: plugins live in the loader, a layer above the core.
_plugin_policy: Callable[[str, Any], Any] | None = None


def set_policy_plugins(resolver: Callable[[str, Any], Any] | None) -> None:
    """Install the function that turns an unknown policy key into a plugin's policy object
    (``None`` removes it)."""
    global _plugin_policy
    _plugin_policy = resolver


@dataclass(frozen=True)
class RetrySpec:
    attempts: int
    backoff_s: float
    max_delay_s: float
    on: tuple[str, ...]  # error class names (any class in the error's MRO); () = any error
    match: re.Pattern[str] | None


@dataclass(frozen=True)
class BreakerSpec:
    failures: int
    window_s: float
    cooldown_s: float
    clock: Callable[[], float] | None


@dataclass(frozen=True)
class RateSpec:
    rate: float
    burst: float
    key: str | None
    clock: Callable[[], float] | None


@dataclass(frozen=True)
class CacheSpec:
    ttl_s: float | None
    version: str
    path: str | None
    max_entries: int
    clock: Callable[[], float] | None


@dataclass
class PolicySpec:
    """A node's checked policies. ``plugins``: (key, policy object) from plugin hooks."""

    node: str
    retry: RetrySpec | None = None
    timeout_s: float | None = None
    breaker: BreakerSpec | None = None
    rate: RateSpec | None = None
    cache: CacheSpec | None = None
    dead_letter: bool = False
    dead_letter_port: str | None = None
    plugins: list[tuple[str, Any]] = field(default_factory=list)


class _Checker:
    """Reads one node's declaration; every failure names the node and the key's path."""

    def __init__(self, node: str) -> None:
        self.node = node

    def fail(self, key: str, rule: str, value: Any) -> PolicyError:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return PolicyError(
            f"policy {key!r} of node {self.node!r}: {rule}, got {shown}", node=self.node, key=key
        )

    def table(self, value: Any, key: str, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "expected an object", value)
        for k in value:
            if k not in known:
                name = f"{key}.{k}" if isinstance(k, str) else key
                raise self.fail(name, f"unknown key; expected one of {', '.join(known)}", k)
        return value

    def seconds(self, value: Any, key: str, *, positive: bool = False) -> float:
        low = "above 0" if positive else "from 0"
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
            or (positive and value == 0)
            or value > _MAX_SECONDS
        ):
            raise self.fail(key, f"expected a number of seconds {low} to {_MAX_SECONDS:g}", value)
        return float(value)

    def integer(self, value: Any, key: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"expected an integer from {low} to {high}", value)
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value or len(value) > _MAX_TEXT or "\x00" in value:
            raise self.fail(
                key, f"expected a non-empty string of at most {_MAX_TEXT} characters", value
            )
        return value

    def clock(self, value: Any, key: str) -> Callable[[], float] | None:
        if value is None:
            return None
        if not callable(value):
            raise self.fail(key, "expected a callable returning seconds (Python API only)", value)
        return value

    # -- each policy --------------------------------------------------------------------------
    def retry(self, value: Any) -> RetrySpec:
        if isinstance(value, bool) or (isinstance(value, int) and not isinstance(value, bool)):
            value = {"attempts": value}  # "retry": 3 is short for {"attempts": 3}
        t = self.table(value, "retry", ("attempts", "backoff_s", "max_delay_s", "on", "match"))
        attempts = self.integer(t.get("attempts", 3), "retry.attempts", 1, _MAX_ATTEMPTS)
        backoff = self.seconds(t.get("backoff_s", 0.1), "retry.backoff_s")
        max_delay = self.seconds(t.get("max_delay_s", max(30.0, backoff)), "retry.max_delay_s")
        if max_delay < backoff:
            raise self.fail(
                "retry.max_delay_s", f"expected at least retry.backoff_s ({backoff:g})", max_delay
            )
        on = t.get("on", ())
        if isinstance(on, str):
            on = [on]
        if not isinstance(on, (list, tuple)) or len(on) > _MAX_NAMES:
            raise self.fail(
                "retry.on", f"expected a list of at most {_MAX_NAMES} error class names", on
            )
        names = []
        for name in on:
            if not isinstance(name, str) or not name.isidentifier():
                raise self.fail("retry.on", "expected error class names such as 'GuestTrap'", name)
            names.append(name)
        pattern = None
        if t.get("match") is not None:
            src = self.text(t["match"], "retry.match")
            try:
                pattern = re.compile(src)
            except re.error as exc:
                raise self.fail(
                    "retry.match", f"expected a regular expression ({exc})", src
                ) from None
        return RetrySpec(attempts, backoff, max_delay, tuple(names), pattern)

    def breaker(self, value: Any) -> BreakerSpec:
        t = self.table(value, "circuit_breaker", ("failures", "window_s", "cooldown_s", "clock"))
        return BreakerSpec(
            self.integer(t.get("failures", 5), "circuit_breaker.failures", 1, 1_000_000),
            self.seconds(t.get("window_s", 60.0), "circuit_breaker.window_s", positive=True),
            self.seconds(t.get("cooldown_s", 30.0), "circuit_breaker.cooldown_s"),
            self.clock(t.get("clock"), "circuit_breaker.clock"),
        )

    def rate(self, value: Any) -> RateSpec:
        t = self.table(value, "rate_limit", ("rate", "burst", "key", "clock"))
        if "rate" not in t:
            raise self.fail("rate_limit.rate", "is required (tokens per second)", value)
        rate = t["rate"]
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or not 0 < rate <= 1e9
        ):
            raise self.fail("rate_limit.rate", "expected tokens per second, above 0 to 1e9", rate)
        burst = t.get("burst", max(1.0, float(rate)))
        if (
            isinstance(burst, bool)
            or not isinstance(burst, (int, float))
            or not math.isfinite(burst)
            or not 1 <= burst <= 1e9
        ):
            raise self.fail("rate_limit.burst", "expected a bucket size from 1 to 1e9", burst)
        key = t.get("key")
        return RateSpec(
            float(rate),
            float(burst),
            None if key is None else self.text(key, "rate_limit.key"),
            self.clock(t.get("clock"), "rate_limit.clock"),
        )

    def cache(self, value: Any) -> CacheSpec:
        if value is True:
            value = {}
        t = self.table(value, "cache", ("ttl_s", "version", "path", "max_entries", "clock"))
        ttl = t.get("ttl_s")
        version = t.get("version", "")
        if not isinstance(version, str) or len(version) > _MAX_TEXT:
            raise self.fail(
                "cache.version", f"expected a string of at most {_MAX_TEXT} characters", version
            )
        path = t.get("path")
        return CacheSpec(
            None if ttl is None else self.seconds(ttl, "cache.ttl_s", positive=True),
            version,
            None
            if path is None
            else self.text(str(path) if hasattr(path, "__fspath__") else path, "cache.path"),
            self.integer(t.get("max_entries", 1024), "cache.max_entries", 1, _MAX_ENTRIES),
            self.clock(t.get("clock"), "cache.clock"),
        )

    def dead_letter(self, value: Any) -> str | None:
        if value is True:
            return None
        t = self.table(value, "dead_letter", ("port",))
        port = t.get("port")
        if port is None:
            return None
        port = self.text(port, "dead_letter.port")
        if not port.isprintable() or port != port.strip():
            raise self.fail("dead_letter.port", "expected a port name without spaces", port)
        return port


def parse_policies(node: str, declared: Any, outports: list[str]) -> PolicySpec | None:
    """Check ``declared`` (a node's policies dict) and return its :class:`PolicySpec`, or
    ``None`` when it declares nothing. ``outports``: the actor's out-ports (a dead-letter port
    must be a new one)."""
    check = _Checker(node)
    if declared is None:
        return None
    if not isinstance(declared, dict):
        raise check.fail("policies", "expected an object keyed by policy name", declared)
    spec = PolicySpec(node)
    for key, value in declared.items():
        if not isinstance(key, str) or not key:
            raise check.fail("policies", "expected policy names (strings)", key)
        if key == "retry":
            spec.retry = check.retry(value)
        elif key == "timeout_s":
            spec.timeout_s = check.seconds(value, "timeout_s", positive=True)
        elif key == "circuit_breaker":
            spec.breaker = check.breaker(value)
        elif key == "rate_limit":
            spec.rate = check.rate(value)
        elif key == "cache":
            spec.cache = check.cache(value)
        elif key == "dead_letter":
            if value is False:
                continue
            spec.dead_letter = True
            spec.dead_letter_port = check.dead_letter(value)
            if spec.dead_letter_port in outports:
                raise check.fail(
                    "dead_letter.port",
                    "expected a new port name, not one of the actor's out-ports "
                    f"({', '.join(outports)})",
                    spec.dead_letter_port,
                )
        else:
            spec.plugins.append((key, _from_plugin(check, key, value)))
    if not (spec.retry or spec.timeout_s or spec.breaker or spec.rate or spec.cache) and not (
        spec.dead_letter or spec.plugins
    ):
        return None
    return spec


def _from_plugin(check: _Checker, key: str, value: Any) -> Any:
    found = None
    if _plugin_policy is not None:
        try:
            found = _plugin_policy(key, value)
        except PolicyError as exc:
            raise PolicyError(
                f"policy {key!r} of node {check.node!r}: {exc}", node=check.node, key=key
            ) from exc
        except Exception as exc:  # a plugin's own bug, named as the plugin's
            raise check.fail(
                key, f"the plugin providing it raised {type(exc).__name__}: {exc}", value
            ) from exc
    if found is None:
        raise check.fail(
            key,
            f"unknown policy; expected one of {', '.join(BUILTIN_KEYS)} or a policy a plugin "
            "provides through the reflow_policy hook",
            value,
        )
    if not isinstance(found, Policy):
        raise check.fail(
            key, f"the plugin returned a {type(found).__name__}, expected a reflow Policy", value
        )
    return found
