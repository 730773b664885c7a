"""The command line a workflow gets from its parameters: ``python pipeline.py --source data.csv``.

Every parameter becomes a flag: a global one ``--name`` (``_`` written ``-``), a local one
``--<job>-<name>``; ``Param(short="-s")`` adds a short flag, ``help`` its help text; a
``Literal`` or ``choices`` restricts values; ``bool`` becomes ``--flag/--no-flag``; ``int``,
``float`` and ``Path`` are converted; a parameter without a default is required. Run options:
``--run-dir``, ``--max-workers``, ``--processes``, ``--force [STEP ...]``, ``--verify``,
``--on-error``, ``--list`` (the steps and their wires, nothing run).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import WorkflowError, WorkflowFailed
from ._types import describe_type, strip

if TYPE_CHECKING:
    from . import Workflow

__all__ = ["build_parser", "main"]


def _flag(key: str) -> str:
    return "--" + key.replace(".", "-").replace("_", "-")


def build_parser(wf: Workflow) -> tuple[argparse.ArgumentParser, dict[str, str]]:
    plan = wf.plan()
    parser = argparse.ArgumentParser(
        prog=Path(sys.argv[0]).name if sys.argv and sys.argv[0] else wf.name,
        description=wf.description or f"Run the workflow {wf.name!r}.",
    )
    dests: dict[str, str] = {}
    group = parser.add_argument_group("parameters")
    for key, (p, users) in plan.params.items():
        dest = "p_" + key.replace(".", "__")
        dests[dest] = key
        t = strip(p.type)
        names = [_flag(key)]
        if p.param.short:
            names.insert(0, p.param.short)
        help_text = p.param.help or f"{describe_type(t)}, used by {', '.join(users)}"
        kw: dict[str, Any] = {"dest": dest, "help": help_text}
        if t is bool:
            kw["action"] = argparse.BooleanOptionalAction
            kw["default"] = p.default if not p.required else None
            kw["required"] = p.required
        else:
            if p.choices is not None:
                kw["choices"] = list(p.choices)
                kinds = {type(c) for c in p.choices}
                if len(kinds) == 1:
                    kw["type"] = kinds.pop()
            elif t in (int, float, str):
                kw["type"] = t
            elif t is Path:
                kw["type"] = Path
            if p.required:
                kw["required"] = True
            else:
                kw["default"] = p.default
                kw["help"] += f" (default: {p.default!r})"
            if p.choices is None:
                kw["metavar"] = key.replace(".", "_").upper()
        group.add_argument(*names, **kw)
    run = parser.add_argument_group("running")
    run.add_argument("--run-dir", type=Path, default=Path("runs") / wf.name)
    run.add_argument("--max-workers", type=int, default=None)
    run.add_argument("--processes", action="store_true", help="run jobs in worker processes")
    run.add_argument(
        "--force", nargs="*", metavar="STEP", default=None, help="recompute (all, or these steps)"
    )
    run.add_argument("--verify", action="store_true", help="re-hash cached results before use")
    run.add_argument("--on-error", choices=["stop", "continue"], default="stop")
    run.add_argument("--list", action="store_true", help="show the steps and exit")
    return parser, dests


def main(wf: Workflow, argv: Sequence[str] | None = None) -> int:
    try:
        parser, dests = build_parser(wf)
    except WorkflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.list:
        print(wf.describe())
        return 0
    params = {key: getattr(args, dest) for dest, key in dests.items()}
    params = {
        k: v for k, v in params.items() if v is not None or not wf.plan().params[k][0].required
    }
    force: bool | list[str] = False if args.force is None else (args.force or True)
    try:
        report = wf.run_local(
            args.run_dir,
            params=params,
            max_workers=args.max_workers,
            processes=args.processes,
            force=force,
            verify=args.verify,
            on_error=args.on_error,
        )
    except WorkflowFailed as exc:
        print(exc.report.table())
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except WorkflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    return 0 if report.ok else 1
