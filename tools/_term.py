"""What every reflow command line shares: how errors look, ``--debug`` and ``--json`` anywhere,
quiet broken pipes, and text from packs or servers made safe for a terminal.

* A failure prints one line, ``error: ...``, on stderr and exits with status 1 (click's usage
  errors keep status 2). With ``--json`` anywhere on the line the error is a JSON object on
  stdout instead — ``{"error": {"type": "PackSignatureError", "message": "..."}}`` — so a
  script reading stdout always gets JSON.
* ``--debug`` (or ``REFLOW_DEBUG=1``) anywhere on the line shows the traceback instead.
* A closed stdout (``reflow-pack inspect x | head -1``) ends the command quietly with the
  shell's status for SIGPIPE, 141.
* A guest build that fails prints its ``error:`` line and then the compiler's diagnostics,
  indented, one per line (sanitized), as the compiler wrote them.
* While a command runs, reflow's log warnings (and Python warnings) are shown on stderr as
  one sanitized ``warning: ...`` line each, not as a bare message or a log-format wall.
* :func:`sanitize` strips what a hostile pack description or server answer could use to
  rewrite the terminal: control characters, escape sequences, bidirectional overrides and
  other invisible format characters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import unicodedata
import warnings
from collections.abc import Iterator
from typing import Any

import click

from .._errors import GuestBuildError, ReflowError

__all__ = ["ReflowGroup", "echo", "echo_json", "sanitize"]

# ESC-introduced sequences: CSI (ESC [ ... final), OSC/DCS/APC/PM/SOS (ESC ] ... BEL or ST),
# and the other escapes (ESC, intermediate bytes, one final byte: charset designations,
# ESC c which resets the terminal, ...)
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_].*?(?:\x07|\x1b\\|\x9c|$)"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|[\x9d\x90\x98\x9e\x9f].*?(?:\x07|\x1b\\|\x9c|$)",
    re.DOTALL,
)


# Shown blank but not in a C* category (Hangul fillers): a name could hide behind them.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0")
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def sanitize(text: Any, *, keep_newlines: bool = False) -> str:
    """``text`` with terminal escape sequences removed and every other control or
    invisible format character (C0, C1, DEL, bidi overrides U+202A to U+202E and U+2066 to U+2069,
    zero-width and tag characters, Hangul fillers) shown as ``\\uXXXX`` (``\\UXXXXXXXX``
    beyond the BMP) instead of acting on the terminal. Tabs stay; newlines stay only with
    ``keep_newlines``. Linear in the length of ``text``."""
    s = str(text)
    if s.isascii() and s.isprintable():
        return s  # the common case: nothing to look at
    s = _ESCAPES.sub("", s)
    out = []
    for ch in s:
        if ch == "\t" or (ch == "\n" and keep_newlines):
            out.append(ch)
        elif ch in _INVISIBLE or unicodedata.category(ch) in _HIDDEN:
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
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


def _message(exc: BaseException) -> tuple[str, list[str]]:
    """The one error line for ``exc``, and the detail lines shown under it (a compiler's
    diagnostics), as raw text: the caller sanitizes."""
    if isinstance(exc, GuestBuildError) and isinstance(exc.stderr, str) and exc.stderr.strip():
        # the message ends with the compiler's output: one line for what failed, then the
        # diagnostics as the compiler wrote them, line by line (its last 200 lines)
        head = str(exc).strip().split("\n", 1)[0].rstrip().rstrip(":")
        return head, [ln.rstrip() for ln in exc.stderr.strip("\n").splitlines()[-200:]]
    if isinstance(exc, OSError) and not isinstance(exc, ReflowError):
        text = str(exc.strerror or exc)
        if exc.filename is not None:
            text = f"{text}: {exc.filename}"
    elif isinstance(exc, click.ClickException):
        text = exc.format_message()
    elif isinstance(exc, (ReflowError, ValueError)):
        text = str(exc)
    else:
        text = (
            f"internal error: {type(exc).__name__}: {exc} "
            "(rerun with --debug for the traceback, and please report it)"
        )
    return " ".join(text.split()), []


class _WarningLines(logging.Handler):
    """reflow's log records while a command runs: one sanitized ``warning: ...`` line each on
    stderr (``error: ...`` for errors), never the bare message of logging's last resort."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = " ".join(record.getMessage().split())
            click.echo(f"{record.levelname.lower()}: {sanitize(text)}", err=True)
        except Exception:  # a log record must never break the command
            self.handleError(record)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    click.echo(f"warning: {sanitize(' '.join(str(message).split()))}", err=True)


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    logger = logging.getLogger("reflow")
    handler = _WarningLines(logging.WARNING)
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            yield
    finally:
        logger.removeHandler(handler)


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
            with _warnings_as_lines():
                return super().main(argv, *rest, **kwargs)
        except BrokenPipeError:
            _quiet_broken_pipe()
            return None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except click.ClickException as exc:
            if not ReflowGroup.json_errors:
                raise  # click shows the usage, then the mistake (status 2)
            kind = "UsageError" if isinstance(exc, click.UsageError) else type(exc).__name__
            self._report_json(kind, _message(exc)[0])
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except Exception as exc:
            if ReflowGroup.debug:
                raise
            exc = self.translate(exc)
            head, detail = _message(exc)
            if ReflowGroup.json_errors:
                self._report_json(type(exc).__name__, head, detail)
            else:
                click.echo(f"error: {sanitize(head)}", err=True)
                for line in detail:
                    click.echo(f"    {sanitize(line)}", err=True)
            ctx.exit(1)

    @staticmethod
    def _report_json(kind: str, message: str, detail: list[str] | None = None) -> None:
        doc: dict[str, Any] = {"type": kind, "message": message}
        if detail:
            doc["detail"] = "\n".join(detail)
        try:
            echo_json({"error": doc})
        except BrokenPipeError:
            _quiet_broken_pipe()

    def translate(self, exc: Exception) -> Exception:
        """The exception to report for ``exc``: a subclass may turn a dependency's error into
        the reflow error it stands for (default: ``exc`` itself)."""
        return exc

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
