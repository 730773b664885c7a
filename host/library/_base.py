"""What every built-in actor shares: reading config and in-ports with errors that name them,
and turning Python values back into messages.

A template's bad input fails its tick by raising :class:`~reflow.ActorError` (the scheduler
records ``ActorError: in-port 'a': expected a number ...``); the message always names the
in-port or config key at fault, so a user can find it in a graph.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from .._core._actor import Actor, ActorContext
from .._core._messages import Message
from .._errors import ActorError, MessageError

__all__ = [
    "MISSING",
    "LibraryActor",
    "config_bool",
    "config_choice",
    "config_int",
    "config_number",
    "config_str",
    "config_value",
    "input_array",
    "input_bytes",
    "input_number",
    "input_object",
    "input_text",
    "input_value",
    "to_message",
]

MISSING: Any = object()
_NUMERIC = ("Integer", "Float")


class LibraryActor(Actor):
    """Base of the built-in templates. Its docstring is what the catalog shows."""

    #: Config keys with their JSON type and default (``{"count": {"type": "integer",
    #: "default": 10}}``), where a template declares them.
    config_schema: dict[str, dict[str, Any]] = {}

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Ports, types and documentation of this template, for catalogs and tooling."""
        return {
            "component": cls.component,
            "inports": list(cls.inports),
            "outports": list(cls.outports),
            "inport_types": dict(cls.inport_types),
            "outport_types": dict(cls.outport_types),
            "await_all_inports": cls.await_all_inports,
            "config": cls.config_keys(),
            "doc": inspect.cleandoc(cls.__doc__ or ""),
        }

    @classmethod
    def declared_config(cls) -> dict[str, dict[str, Any]]:
        """The keys the template declares (``config_schema``), before the code scan."""
        return {k: dict(v) for k, v in cls.config_schema.items()}

    @classmethod
    def config_keys(cls) -> dict[str, dict[str, Any]]:
        """Every config key: the declared ones, then each key the code reads (found by
        :func:`~reflow.library._config_scan.scan_class`, with the type and default the
        reading code applies)."""
        from ._config_scan import scan_class

        keys = cls.declared_config()
        for key, entry in scan_class(cls).keys.items():
            if key not in keys:
                keys[key] = dict(entry)
        return keys

    def check_config_keys(self, node: str, config: dict[str, Any], mode: str = "typos") -> None:
        """Check the keys of ``config`` that this template never reads, by ``mode`` (see
        :mod:`reflow.library._config_keys`): a likely typo raises :class:`~reflow.GraphError`
        with the closest known key, any other is kept with a warning (``"typos"``), refused
        (``"strict"``) or kept silently (``"off"``). A template whose code reads keys it does
        not name (an open scan) accepts any."""
        from ._config_keys import check_keys
        from ._config_scan import scan_class

        if not config or mode == "off" or scan_class(type(self)).open:
            return
        known = self.config_keys()
        # a CPU twin takes its GPU template's config as it is (the same graph, GPU off)
        for other in _subclasses(LibraryActor):
            if getattr(other, "cpu_twin", None) is type(self):
                known = {**other.config_keys(), **known}
        check_keys(node, self.component, config, known, mode)


def _subclasses(cls: type[LibraryActor]) -> list[type[LibraryActor]]:
    found: list[type[LibraryActor]] = []
    todo: list[type[LibraryActor]] = [cls]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                todo.append(sub)
    return found


def _kind(value: Any) -> str:
    return type(value).__name__


def config_value(ctx: ActorContext, key: str, default: Any = MISSING) -> Any:
    """``ctx.config[key]``; a missing key without a default fails naming the key."""
    config = ctx.config
    if key in config and config[key] is not None:
        return config[key]
    if default is MISSING:
        raise ActorError(f"config {key!r} is required")
    return default


def config_number(
    ctx: ActorContext,
    key: str,
    default: Any = MISSING,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> float:
    value = config_value(ctx, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ActorError(f"config {key!r} must be a number, got {value!r}")
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        op = ">" if exclusive_minimum else ">="
        raise ActorError(f"config {key!r} must be {op} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ActorError(f"config {key!r} must be <= {maximum}, got {value!r}")
    return value


def config_int(
    ctx: ActorContext,
    key: str,
    default: Any = MISSING,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    value = config_value(ctx, key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ActorError(f"config {key!r} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ActorError(f"config {key!r} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ActorError(f"config {key!r} must be <= {maximum}, got {value!r}")
    return value


def config_str(ctx: ActorContext, key: str, default: Any = MISSING) -> str:
    value = config_value(ctx, key, default)
    if not isinstance(value, str):
        raise ActorError(f"config {key!r} must be a string, got {value!r}")
    return value


def config_bool(ctx: ActorContext, key: str, default: Any = MISSING) -> bool:
    value = config_value(ctx, key, default)
    if not isinstance(value, bool):
        raise ActorError(f"config {key!r} must be true or false, got {value!r}")
    return value


def config_choice(
    ctx: ActorContext, key: str, choices: tuple[str, ...], default: Any = MISSING
) -> str:
    value = config_value(ctx, key, default)
    if value not in choices:
        raise ActorError(
            f"config {key!r} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )
    return str(value)


def input_value(ctx: ActorContext, port: str, default: Any = MISSING) -> Any:
    """The payload on ``port`` (a Python value); a missing packet fails naming the port."""
    msg = ctx.inputs.get(port)
    if msg is None:
        if default is MISSING:
            raise ActorError(f"in-port {port!r} has no packet")
        return default
    return msg.get("data")


def _input(ctx: ActorContext, port: str, kinds: tuple[str, ...], what: str) -> Any:
    msg = ctx.inputs.get(port)
    if msg is None:
        raise ActorError(f"in-port {port!r} has no packet")
    if msg["type"] not in kinds:
        raise ActorError(f"in-port {port!r}: expected {what}, got {msg['type']}")
    return msg.get("data")


def input_number(ctx: ActorContext, port: str) -> int | float:
    """An Integer or Float payload (an Any/Optional wrapping a number is accepted too)."""
    msg = ctx.inputs.get(port)
    data = None if msg is None else msg.get("data")
    if msg is not None and msg["type"] in ("Any", "Optional"):
        if isinstance(data, dict) and "type" in data:
            data = data.get("data")
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return data
    return _input(ctx, port, _NUMERIC, "a number (Integer or Float)")


def input_text(ctx: ActorContext, port: str) -> str:
    return _input(ctx, port, ("String",), "a String")


def input_object(ctx: ActorContext, port: str) -> dict[str, Any]:
    return _input(ctx, port, ("Object", "Event"), "an Object")


def input_array(ctx: ActorContext, port: str) -> list[Any]:
    return _input(ctx, port, ("Array",), "an Array")


def input_bytes(ctx: ActorContext, port: str) -> bytes:
    return _input(ctx, port, ("Bytes",), "Bytes")


def to_message(value: Any) -> Message:
    """The message of the natural kind for a Python value (see ``Message.from_value``)."""
    try:
        return Message.from_value(value)
    except MessageError as exc:
        raise ActorError(f"cannot send a {_kind(value)} as a message: {exc}") from exc
