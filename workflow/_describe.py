"""What ``Workflow.describe()`` and ``describe_typed()`` return: a plan as reflow-hpc's
JSON-safe description (``name``, ``tasks`` in run order with their config, dependencies and
wire modes, ``cli_params``), whose ``str()`` is the text ``--list`` prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._flow import Plan
from ._types import describe_type

__all__ = ["Description", "WorkflowDescription", "describe_plan"]


class Description(dict[str, Any]):
    """What :meth:`Workflow.describe` returns: the JSON-safe dict reflow-hpc's ``describe()``
    gives (``name``, ``tasks``, ``cli_params``, ...), whose ``str()`` is the text ``--list``
    prints (one line per step, its wires and parameters)."""

    def __init__(self, data: dict[str, Any], text: str) -> None:
        super().__init__(data)
        self.text = text

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class WorkflowDescription:
    """What :meth:`Workflow.describe_typed` returns (reflow-hpc's typed description): the
    fields of :meth:`Workflow.describe`'s dict, which :meth:`to_dict` gives back."""

    name: str
    description: str
    tasks: tuple[dict[str, Any], ...]
    cli_params: tuple[dict[str, Any], ...]
    schema_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "description": self.description,
            "tasks": [dict(t) for t in self.tasks],
            "cli_params": [dict(c) for c in self.cli_params],
        }


def describe_plan(plan: Plan, workflow: str, description: str) -> Description:
    """The description of ``plan``, the plan of the workflow named ``workflow``."""
    lines = []
    tasks = []
    for name in plan.order:
        spec = plan.jobs[name]
        kind = "array job" if spec.array else "job"
        bits = [
            f"{w.param} <- {w.mode} " + "+".join(s for s, _ in w.parts) for w in plan.wires[name]
        ]
        bits += [f"{p.name}: {describe_type(p.type)} (param {p.key(name)})" for p in spec.params]
        if spec.after:
            bits.append("after " + ", ".join(spec.after))
        if spec.partition:
            bits.append(f"partition {spec.partition}")
        lines.append(f"{name} [{kind}]" + (": " + "; ".join(bits) if bits else ""))
        tasks.append(
            {
                "name": name,
                "is_array": spec.array,
                "config": {
                    "cpus": spec.cpus,
                    "time": spec.time,
                    "mem": spec.mem,
                    "array": spec.array,
                    "after": list(spec.after),
                    "array_parallelism": spec.array_limit,
                    "version": spec.version,
                    "cache": spec.cache,
                    "retries": spec.retries,
                    "partition": spec.partition,
                    "account": spec.account,
                    "submit_options": dict(spec.submit_options),
                    "backend": spec.backend,
                },
                "dependencies": list(spec.upstream()),
                "result_deps": {
                    w.param: {"steps": [s for s, _ in w.parts], "mode": w.mode}
                    for w in plan.wires[name]
                },
                "return_type": describe_type(spec.returns),
            }
        )
    cli_params = []
    for key, (p, users) in plan.params.items():
        cli_params.append(
            {
                "name": p.name,
                "key": key,
                "task": users[0] if p.param.namespace == "local" else None,
                "tasks": list(users),
                "flag": "--" + key.replace(".", "-").replace("_", "-"),
                "short": p.param.short,
                "type": describe_type(p.type),
                "required": p.required,
                "default": _json_value(p.default),
                "namespace": p.param.namespace or "global",
                "help": p.param.help,
                "choices": None if p.choices is None else [_json_value(c) for c in p.choices],
            }
        )
    data = {
        "schema_version": 1,
        "name": workflow,
        "description": description,
        "tasks": tasks,
        "cli_params": cli_params,
    }
    return Description(data, "\n".join(lines))


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)
