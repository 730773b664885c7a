"""What every reflow command line shares: how errors look, ``--debug`` and ``--json`` anywhere,
quiet broken pipes, and text from packs or servers made safe for a terminal.

* A failure prints one line, ``error: ...``, on stderr and exits with status 1 (click's usage
  errors keep status 2). With ``--json`` anywhere on the line the error is a JSON object on
  stdout instead — ``{"error": {"type": "PackSignatureError", "message": "..."}}`` — so a
  script reading stdout always gets JSON.
* ``--debug`` (or ``REFLOW_DEBUG=1``) anywhere on the line shows the traceback instead.
* A closed stdout (``reflow-pack inspect x | head -1``) ends the command quietly with the
  shell's status for SIGPIPE, 141.
* :func:`sanitize` strips what a hostile pack description or server answer could use to
  rewrite the terminal: control characters, escape sequences, bidirectional overrides and
  other invisible format characters.
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from typing import Any

import click

from .._errors import ReflowError

__all__ = ["ReflowGroup", "echo", "echo_json", "sanitize"]

# ESC-introduced sequences: CSI (ESC [ ... final), OSC/DCS/APC/PM/SOS (ESC ] ... BEL or ST),
# and two-character escapes (ESC + one byte)
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_].*?(?:\x07|\x1b\\|\x9c|$)"
    r"|\x1b[@-Z\\-_]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|[\x9d\x90\x98\x9e\x9f].*?(?:\x07|\x1b\\|\x9c|$)",
    re.DOTALL,
)


def sanitize(text: Any, *, keep_newlines: bool = False) -> str:
    """``text`` with terminal escape sequences removed and every other control or
    invisible format character (C0, C1, DEL, bidi overrides U+202A to U+202E and U+2066 to U+2069,
    zero-width characters) shown as ``\\uXXXX`` instead of acting on the terminal. Tabs
    stay; newlines stay only with ``keep_newlines``."""
    s = _ESCAPES.sub("", str(text))
    out = []
    for ch in s:
        if ch == "\t" or (ch == "\n" and keep_newlines):
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp") or ch in "\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def echo(text: Any = "", *, err: bool = False, nl: bool = True) -> None:
    """``click.echo`` of :func:`sanitize`-d text (newlines kept): how the CLIs print
    anything that may hold a pack's, a registry's or a guest's words."""
    click.echo(sanitize(text, keep_newlines=True), err=err, nl=nl)


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (JSON escapes control characters itself)."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, ReflowError):
        if exc.filename is not None:
            return f"{exc.strerror or exc}: {exc.filename}"
        return str(exc.strerror or exc)
    if isinstance(exc, (ReflowError, ValueError)):
        return str(exc).strip()
    return (f"internal error: {type(exc).__name__}: {exc} "
            "(rerun with --debug for the traceback, and please report it)")


def _flag_anywhere(args: list[str], flag: str) -> tuple[list[str], bool]:
    """Remove ``flag`` from ``args`` wherever it is (before a ``--``)."""
    end = args.index("--") if "--" in args else len(args)
    if flag not in args[:end]:
        return args, False
    return [a for i, a in enumerate(args) if not (a == flag and i < end)], True


class ReflowGroup(click.Group):
    """A click group with reflow's conventions for errors, ``--debug`` and ``--json``."""

    debug = False
    json_errors = False

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        argv, debug = _flag_anywhere(argv, "--debug")
        ReflowGroup.debug = debug or bool(os.environ.get("REFLOW_DEBUG"))
        end = argv.index("--") if "--" in argv else len(argv)
        ReflowGroup.json_errors = "--json" in argv[:end]
        try:
            return super().main(argv, *rest, **kwargs)
        except BrokenPipeError:
            _quiet_broken_pipe()
            return None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            _quiet_broken_pipe()
        except Exception as exc:
            if ReflowGroup.debug:
                raise
            line = sanitize(_error_line(exc))
            if ReflowGroup.json_errors:
                try:
                    echo_json({"error": {"type": type(exc).__name__, "message": line}})
                except BrokenPipeError:
                    _quiet_broken_pipe()
            else:
                click.echo(f"error: {line}", err=True)
            ctx.exit(1)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        with formatter.section("Conventions"):
            formatter.write_text(
                "--debug anywhere shows tracebacks; --json (where a command has it) also "
                "turns errors into a JSON object on stdout."
            )


def _quiet_broken_pipe() -> None:
    """stdout went away: point it at /dev/null (so the interpreter's final flush does not
    complain) and exit like a process killed by SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(141)
