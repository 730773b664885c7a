"""Validating a request's keys against its operation's JSON Schemas (draft 2020-12).

One validator per operation, built on first use and cached on the :class:`Operation`: its
schema is an object whose properties are the operation's parameter keys and ``body``, with the
table's shared schemas beside them so ``{"$ref": "#/schemas/<key>"}`` resolves inside the same
document (never over the network: there is no remote retrieval). ``bytes`` count as strings,
so a ``format: binary`` file field accepts the bytes a graph sends.

Everything a hostile schema can do to the validator — a schema that is not one, a dangling
or cyclic ``$ref``, a regex that does not compile, recursion past Python's limit — becomes an
:class:`~reflow.HttpApiError` naming the operation; a value that breaks a rule becomes one
naming the key, the rule and where inside the value.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from .._errors import HttpApiError
from ._table import ApiTable, Operation

__all__ = ["operation_validator", "validate_keys"]

_MAX_SHOWN = 300


def _is_string(checker: Any, instance: Any) -> bool:
    return isinstance(instance, (str, bytes))


_Validator = jsonschema.validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("string", _is_string),
)


def _schema_of(table: ApiTable, op: Operation) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    for p in op.parameters:
        props[p.key] = p.schema
        if p.required:
            required.append(p.key)
    if op.body is not None:
        entry = op.body.content[op.body.media_type]
        props["body"] = entry.get("schema", {})
        if op.body.required:
            required.append("body")
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "schemas": table.schemas,
    }


def operation_validator(table: ApiTable, op: Operation) -> Any:
    """The operation's validator, checked and built once."""
    v = op._validator
    if v is not None:
        return v
    with op._lock:
        if op._validator is None:
            schema = _schema_of(table, op)
            try:
                _Validator.check_schema(schema)
            except SchemaError as exc:
                where = "/".join(str(p) for p in exc.path)
                raise HttpApiError(
                    f"{op.template_id}: the table's schema for {where or 'the request'} is not a "
                    f"JSON Schema: {_short(exc.message)}",
                    operation=op.template_id,
                ) from None
            except RecursionError:
                raise HttpApiError(
                    f"{op.template_id}: the table's schemas nest too deep to check",
                    operation=op.template_id,
                ) from None
            op._validator = _Validator(schema)
        return op._validator


def _short(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"


def validate_keys(table: ApiTable, op: Operation, values: dict[str, Any]) -> None:
    """Raise HttpApiError for the first key of ``values`` that breaks its schema (or a
    missing required key)."""
    validator = operation_validator(table, op)
    try:
        error = next(iter(sorted(validator.iter_errors(values), key=_order)), None)
    except RecursionError:
        raise HttpApiError(
            f"{op.template_id}: the request could not be validated: its schemas recurse "
            "without end, or the value nests too deep",
            operation=op.template_id,
        ) from None
    except Exception as exc:  # a dangling $ref, a bad regex, ...: the table's fault
        raise HttpApiError(
            f"{op.template_id}: the table's schemas cannot validate the request: "
            f"{type(exc).__name__}: {_short(str(exc))}",
            operation=op.template_id,
        ) from None
    if error is None:
        return
    path = list(error.absolute_path)
    if not path and error.validator == "required":
        missing = _missing(error)
        raise HttpApiError(
            f"{op.template_id}: key {missing!r} is required (rule 'required'); give it in "
            "config, on its in-port or in 'request'",
            operation=op.template_id,
            key=missing,
        )
    key = str(path[0]) if path else ""
    inner = "".join(f"[{p!r}]" for p in path[1:])
    raise HttpApiError(
        f"{op.template_id}: key {key!r}{inner} breaks rule {error.validator!r}: "
        f"{_short(error.message)}",
        operation=op.template_id,
        key=key,
    )


def _order(error: ValidationError) -> tuple[int, str]:
    return (len(error.absolute_path), str(list(error.absolute_path)))


def _missing(error: ValidationError) -> str:
    # jsonschema's message is "'x' is a required property"
    msg = error.message
    if msg.startswith("'") and "' is a required" in msg:
        return msg[1 : msg.index("' is a required")]
    return msg
