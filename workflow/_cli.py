"""The command line a workflow gets from ``wf.cli()``: reflow-hpc's subcommands, and the
flag-only form.

Subcommands (reflow-hpc's ``docs/cli-reference.md``; every run is recorded in the run index,
``--store-path`` or ``$REFLOW_STORE_PATH`` naming its SQLite file, default
``$REFLOW_CACHE_DIR/workflow-runs.sqlite``)::

    python pipeline.py submit --run-dir DIR [--source data.csv ...] [--force] [--force-tasks A B]
                              [--executor local|ray|slurm] [--address A] [--max-workers N]
                              [--on-error stop|continue] [--processes] [--verify]
    python pipeline.py run [--run-dir DIR] [params ...]      # in this process, locally
    python pipeline.py status RUN_ID [--task T] [--errors] [--json]
    python pipeline.py runs [--last N | --all] [--status S] [--since DATE] [--until DATE]
    python pipeline.py retry RUN_ID [--task T]
    python pipeline.py cancel RUN_ID [RUN_ID ...] [--task T] [--yes]
    python pipeline.py dag
    python pipeline.py describe                                 # JSON
    python pipeline.py --version

``submit`` prints ``Created run <id> in <dir>`` as it starts, runs the workflow here to its end
(on the chosen backend), prints the report and exits 0, or 1 when a job failed or the run was
cancelled (``cancel`` from another process, Ctrl-C or SIGTERM). ``run`` is the same with the
local backend and ``--run-dir`` optional (reflow-hpc's ``run_local``). ``cancel`` of several
runs asks first on a terminal (else needs ``--yes``); one already ended is left as it is; the
whole run is cancelled (``--task`` is refused for a run of another process: the index carries
whole-run cancel requests). ``retry`` of a run that succeeded does nothing.

The flag-only form (``python pipeline.py --source data.csv``, ``--list``) runs as ``run`` does.
Every parameter becomes a flag: a global one ``--name`` (``_`` written ``-``), a local one
``--<job>-<name>``; ``Param(short="-s")`` adds a short flag, ``help`` its help text; a
``Literal`` or ``choices`` restricts values; ``bool`` becomes ``--flag/--no-flag``; ``int``,
``float`` and ``Path`` are converted; a parameter without a default is required.

Exit status: 0 ok; 1 a job failed or the run was cancelled; 2 bad input (an unknown subcommand
or run id, with the closest names; a bad date; a missing or bad parameter; argparse's own
errors), always one line on stderr.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .._errors import ReflowError
from ._cli_commands import HANDLERS, UsageError, cmd_run, parsed_params
from ._errors import WorkflowError, WorkflowFailed
from ._states import RunState, run_state
from ._types import describe_type, strip

if TYPE_CHECKING:
    from . import Workflow

__all__ = ["COMMANDS", "build_parser", "listing", "main"]

COMMANDS = ("submit", "run", "status", "runs", "retry", "cancel", "dag", "describe")
EXECUTORS = ("local", "ray", "slurm")
DATE_FORMATS = "YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] or either with a zone (+01:00, Z)"


#: the longest word of an argparse message kept whole: an argument may be megabytes
_WORD_MAX = 120
#: the actions whose option given twice is an error (argparse silently keeps the last)
_SINGLE = (
    argparse._StoreAction,
    argparse._StoreConstAction,
    argparse.BooleanOptionalAction,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one bounded line on stderr (``<prog>: error: ...``) and exit
    2, and an option given twice is an error instead of the last one winning silently."""

    def error(self, message: str) -> NoReturn:
        words = [
            w if len(w) <= _WORD_MAX else f"{w[: _WORD_MAX // 2]}...({len(w)} characters)"
            for w in message.split()
        ]
        sys.stderr.write(f"{self.prog}: error: {' '.join(words)} (see --help)\n")
        raise SystemExit(2)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if args is not None:
            self._refuse_repeats(list(args))
        return super().parse_known_args(args, namespace)

    def _refuse_repeats(self, args: list[str]) -> None:
        seen: dict[int, str] = {}
        subcommands = self._subcommands()
        for token in args:
            if token == "--":
                break
            if not token.startswith("-") or token == "-":
                if token in subcommands:
                    break  # the rest is the subcommand's, checked by its own parser
                continue
            opt = token.split("=", 1)[0]
            action = self._option_string_actions.get(opt)
            if action is None or not isinstance(action, _SINGLE):
                continue
            if id(action) in seen:
                self.error(
                    f"argument {'/'.join(action.option_strings)}: given more than once "
                    f"({seen[id(action)]}, then {opt}): give it once"
                )
            seen[id(action)] = opt

    def _subcommands(self) -> set[str]:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return set(action.choices)
        return set()


def _flag(key: str) -> str:
    return "--" + key.replace(".", "-").replace("_", "-")


def _prog(wf: Workflow) -> str:
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else wf.name


def _add_params(parser: argparse.ArgumentParser, wf: Workflow) -> dict[str, str]:
    """A flag per parameter of the workflow; returns dest -> parameter key."""
    plan = wf.plan()
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
            if p.choices is None:
                kw["metavar"] = key.replace(".", "_").upper()
        if p.required:
            kw["help"] += " (required)"
        elif t is not bool or p.default is not None:
            kw["help"] += f" (default: {p.default!r})"
        group.add_argument(*names, **kw)
    return dests


def build_parser(wf: Workflow) -> tuple[argparse.ArgumentParser, dict[str, str]]:
    """The flag-only form's parser and its dest -> parameter key map."""
    parser = _Parser(
        prog=_prog(wf),
        description=wf.description or f"Run the workflow {wf.name!r}.",
        epilog="subcommands (each with --help): " + ", ".join(COMMANDS),
    )
    dests = _add_params(parser, wf)
    run = parser.add_argument_group("running")
    run.add_argument("--run-dir", type=Path, default=Path("runs") / wf.name)
    run.add_argument("--max-workers", type=_positive, default=None)
    run.add_argument("--processes", action="store_true", help="run jobs in worker processes")
    run.add_argument(
        "--force", nargs="*", metavar="STEP", default=None, help="recompute (all, or these steps)"
    )
    run.add_argument("--verify", action="store_true", help="re-hash cached results before use")
    run.add_argument("--on-error", choices=["stop", "continue"], default="stop")
    run.add_argument("--store-path", default=None, help="the run index (SQLite file)")
    run.add_argument("--list", action="store_true", help="show the steps and exit")
    return parser, dests


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def _when(text: str) -> datetime:
    """A ``--since``/``--until`` date (ISO-8601: a day, or a time with or without a zone)."""
    t = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
            return datetime.combine(date.fromisoformat(t), datetime.min.time())
        if not re.fullmatch(
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
            r"(Z|[+-]\d{2}:?\d{2})?",
            t,
        ):
            raise ValueError(t)
        return datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith("Z") else t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad date {text[:40]!r}: expected {DATE_FORMATS}"
        ) from None


def _state(text: str) -> str:
    try:
        return run_state(text).value
    except WorkflowError:
        raise argparse.ArgumentTypeError(
            f"unknown run status {text[:40]!r}: expected one of "
            + ", ".join(s.value for s in RunState)
            + " (any case; succeeded and canceled are accepted too)"
        ) from None


def _store_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store-path",
        default=None,
        metavar="PATH",
        help="the run index, a SQLite file (default: $REFLOW_STORE_PATH, else "
        "$REFLOW_CACHE_DIR/workflow-runs.sqlite)",
    )


def _run_flags(p: argparse.ArgumentParser, wf: Workflow, *, submit: bool) -> None:
    if submit:
        p.add_argument("--run-dir", type=Path, required=True, help="the run's working directory")
        p.add_argument("--executor", choices=EXECUTORS, default="local", help="the backend")
        p.add_argument(
            "--address", default=None, help="ray: the cluster address; slurm: the partition"
        )
    else:
        # default: the config's [defaults] run_dir/<run id>, else runs/<workflow> (cmd_run)
        p.add_argument("--run-dir", type=Path, default=None)
    _store_flag(p)
    p.add_argument("--force", action="store_true", help="skip the cache: re-run every task")
    p.add_argument(
        "--force-tasks", nargs="+", metavar="TASK", default=None, help="skip the cache for these"
    )
    p.add_argument("--max-workers", type=_positive, default=None, help="calls at once")
    p.add_argument("--on-error", choices=["stop", "continue"], default="stop")
    p.add_argument("--processes", action="store_true", help="run jobs in worker processes")
    p.add_argument("--verify", action="store_true", help="re-hash cached results before use")


def build_subparsers(wf: Workflow) -> tuple[argparse.ArgumentParser, dict[str, str]]:
    try:
        release = version("reflow")
    except PackageNotFoundError:
        release = "unknown"
    parser = _Parser(prog=_prog(wf), description=wf.description or f"Run the workflow {wf.name!r}.")
    parser.add_argument("--version", action="version", version=f"%(prog)s (reflow {release})")
    sp = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    submit = sp.add_parser("submit", help="create a run and run it here, to its end")
    dests = _add_params(submit, wf)
    _run_flags(submit, wf, submit=True)
    run = sp.add_parser("run", help="run in this process with the local backend")
    _add_params(run, wf)
    _run_flags(run, wf, submit=False)
    status = sp.add_parser("status", help="a run's status")
    status.add_argument("run_id", metavar="RUN_ID")
    status.add_argument("--task", default=None, help="only this task, with each element")
    status.add_argument("--errors", action="store_true", help="show each failure's error")
    status.add_argument("--json", action="store_true", help="the run's snapshot as JSON")
    _store_flag(status)
    runs = sp.add_parser("runs", help="the runs of this workflow, newest first")
    runs.add_argument("--last", "-n", type=_positive, default=20, metavar="N")
    runs.add_argument("--all", action="store_true", help="every run (overrides --last)")
    runs.add_argument("--status", type=_state, default=None, metavar="STATE")
    runs.add_argument("--since", type=_when, default=None, metavar="DATE")
    runs.add_argument("--until", type=_when, default=None, metavar="DATE")
    runs.add_argument("--json", action="store_true", help="the snapshots as JSON")
    _store_flag(runs)
    retry = sp.add_parser("retry", help="re-run a run's failed or cancelled tasks")
    retry.add_argument("run_id", metavar="RUN_ID")
    retry.add_argument("--task", default=None, help="only this task's failures")
    _store_flag(retry)
    cancel = sp.add_parser("cancel", help="cancel runs still going")
    cancel.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    cancel.add_argument("--task", default=None, help="only this task")
    cancel.add_argument("--yes", "-y", action="store_true", help="no prompt for several runs")
    _store_flag(cancel)
    sp.add_parser("dag", help="the task graph")
    sp.add_parser("describe", help="the workflow as JSON")
    return parser, dests


def _err(message: str) -> int:
    sys.stderr.write("error: " + " ".join(str(message).split()) + "\n")
    return 2


def listing(wf: Workflow) -> str:
    """``--list``: the steps in run order, each with its wires and parameters (the text of
    :meth:`Workflow.describe`)."""
    return str(wf.describe())


def _legacy(wf: Workflow, argv: list[str]) -> int:
    parser, dests = build_parser(wf)
    args = parser.parse_args(argv)
    if args.list:
        print(listing(wf))
        return 0
    force: bool | list[str] = False if args.force is None else (args.force or True)
    try:
        report = wf.run_local(
            args.run_dir,
            params=parsed_params(wf, args, dests),
            max_workers=args.max_workers,
            processes=args.processes,
            force=force,
            verify=args.verify,
            on_error=args.on_error,
            **({"store_path": args.store_path} if args.store_path else {}),
        )
    except WorkflowFailed as exc:
        print(exc.report.table())
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.table())
    return 0 if report.ok else 1


def main(wf: Workflow, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (the command line when ``None``) and do it; the exit status. argparse's
    own errors and ``--help`` raise :class:`SystemExit` as argparse does."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if not args_list or (args_list[0].startswith("-") and args_list[0] != "--version"):
            return _legacy(wf, args_list)
        first = args_list[0]
        if first != "--version" and first not in COMMANDS:
            close = difflib.get_close_matches(first, COMMANDS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(
                f"unknown subcommand {first[:40]!r}{hint}; expected one of {', '.join(COMMANDS)}"
            )
        parser, dests = build_subparsers(wf)
        args = parser.parse_args(args_list)
        if args.command in ("submit", "run"):
            return cmd_run(wf, args, dests)
        return HANDLERS[args.command](wf, args)
    except UsageError as exc:
        return _err(str(exc))
    except WorkflowFailed as exc:
        sys.stderr.write(f"error: {' '.join(str(exc).split())[:500]}\n")
        return 1
    except (WorkflowError, ReflowError) as exc:
        return _err(str(exc)[:500])
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _err(f"{where}{exc.strerror or exc}"[:500])
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
