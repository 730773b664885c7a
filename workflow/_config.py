"""The user's configuration: reflow-hpc's ``config.toml``, read, checked and applied.

The file is ``$XDG_CONFIG_HOME/reflow/config.toml`` (else ``~/.config/reflow/config.toml``);
``REFLOW_*`` environment variables override what it says. Its tables, as reflow-hpc defines
them::

    [executor]                 mode, python, the scheduler commands' paths (and partition,
                               queue, account, signal, read as submit options)
    [executor.submit_options]  partition/queue, account, signal, and any other scheduler flag
    [notifications]            mail_user, mail_type
    [dispatch]                 cpus, time, mem, partition, account (the coordinator job)
    [defaults]                 run_dir, store_path
    [server]                   url

What it changes here: ``[defaults] run_dir`` is where a run given no ``run_dir`` works
(``<run_dir>/<run id>``, ``~`` and ``$VARS`` expanded), ``store_path`` (or
``$REFLOW_STORE_PATH``) the run index used when no ``store`` is given, and the submit options
and notifications are the defaults of every job run with ``backend="slurm"`` (a job's own
``partition=``, ``account=``, ``submit_options=``... win). A file that does not parse, a table
or key it does not know, or a value of the wrong kind is a :class:`ConfigError` naming the
file, the key and what was expected, before anything runs.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import ConfigError, shown

__all__ = [
    "EXAMPLE_CONFIG",
    "Config",
    "config_path",
    "ensure_config_exists",
    "load_config",
    "write_example_config",
]

#: the largest config file read (a config is a few hundred bytes)
MAX_CONFIG_BYTES = 1 << 20

#: what ``write_example_config`` writes: every setting, commented out
EXAMPLE_CONFIG = """\
# reflow configuration (reflow.workflow). Every setting is commented out: uncomment one
# to use it. REFLOW_* environment variables override this file; a job's own options
# (@wf.job(partition=..., account=...)) override both.

# [executor]
# mode = "sbatch"            # sbatch, qsub-pbs, bsub, qsub-sge, flux or dry-run
# python = "/path/to/python"
# sbatch = "/usr/bin/sbatch"  # a scheduler command that is not on $PATH

# [executor.submit_options]
# partition = "compute"      # or queue = "batch"
# account = "my_project"
# signal = "B:INT@60"        # raises TaskInterrupted in the job 60 s before its time limit
# qos = "high"               # any other scheduler flag: --qos=high

# [notifications]
# mail_user = "you@example.org"
# mail_type = "FAIL"

# [dispatch]
# cpus = 1
# time = "00:10:00"
# mem = "1G"
# partition = "my_partition"
# account = "my_account"

# [defaults]
# run_dir = "/scratch/$USER/reflow"    # runs given no run_dir go to <run_dir>/<run id>
# store_path = "~/.cache/reflow/workflow-runs.sqlite"

# [server]
# url = "https://reflow.example.org"
"""

#: the executor modes reflow-hpc names (``[executor] mode``, ``$REFLOW_MODE``)
MODES = ("sbatch", "qsub-pbs", "bsub", "qsub-sge", "flux", "dry-run")
#: submit options also read straight from ``[executor]`` (as ``[executor.submit_options]``'s)
_SUBMIT_KEYS = ("partition", "queue", "account", "signal")
_COMMANDS = ("sbatch", "scancel", "sacct", "qsub", "qdel", "qstat", "bsub", "bkill", "bjobs")
#: each table's keys; ``executor.submit_options`` takes any option name
SECTIONS: dict[str, tuple[str, ...]] = {
    "executor": ("mode", "python", *_COMMANDS, "flux", "submit_options", *_SUBMIT_KEYS),
    "notifications": ("mail_user", "mail_type"),
    "dispatch": ("cpus", "time", "mem", "partition", "account"),
    "defaults": ("run_dir", "store_path"),
    "server": ("url",),
}
#: keys whose value is a number or a string (the rest are strings)
_NUMBERS = {("dispatch", "cpus")}
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
#: the submit options a mode calls by another name (reflow-hpc: "partition" is "queue" for
#: every scheduler but Slurm)
_QUEUE_MODES = {"qsub-pbs", "bsub", "qsub-sge", "flux"}


def _config_home() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return Path(xdg) if xdg else Path.home() / ".config"


def _cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/reflow/config.toml``, else ``~/.config/reflow/config.toml``."""
    return _config_home() / "reflow" / "config.toml"


def _target(path: Path | str | os.PathLike[str] | None, what: str) -> Path:
    if path is None:
        return config_path()
    if isinstance(path, (str, os.PathLike)) and str(path) and "\0" not in str(path):
        return Path(path).expanduser()
    raise ConfigError(
        f"{what}: path must be a file path (a str or Path), got {shown(path)}",
        path=shown(path),
        key=None,
    )


def write_example_config(
    path: Path | str | os.PathLike[str] | None = None, *, overwrite: bool = False
) -> Path:
    """Write :data:`EXAMPLE_CONFIG` to ``path`` (the default: :func:`config_path`) and return
    the path. A file already there is a ``FileExistsError`` unless ``overwrite``; a path that
    cannot be written is a :class:`ConfigError` naming it."""
    target = _target(path, "write_example_config")
    if target.exists() and not overwrite:
        raise FileExistsError(f"config file already exists: {target}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(EXAMPLE_CONFIG, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the example config {str(target)!r}: {exc.strerror or exc}",
            path=str(target),
            key=None,
        ) from exc
    return target


def ensure_config_exists(path: Path | str | os.PathLike[str] | None = None) -> Path:
    """The config file's path, the example written there first when there is none."""
    target = _target(path, "ensure_config_exists")
    if not target.exists():
        write_example_config(target)
    return target


def _read(path: Path) -> dict[str, Any]:
    """The TOML table in ``path`` (``{}``: no file); every way it can be wrong is a
    :class:`ConfigError` naming the file."""
    where = str(path)

    def bad(why: str, exc: BaseException | None = None) -> ConfigError:
        err = ConfigError(f"config file {where!r}: {why}", path=where, key=None)
        err.__cause__ = exc
        return err

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return {}
    except IsADirectoryError as exc:
        raise bad("is a directory, expected a TOML file", exc) from exc
    except OSError as exc:
        raise bad(f"cannot be read: {exc.strerror or exc}", exc) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise bad(f"is larger than {MAX_CONFIG_BYTES} bytes; a config is a small TOML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"is not UTF-8 text (byte {exc.start}); expected a TOML file", exc) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise bad(f"is not valid TOML: {exc}", exc) from exc
    except RecursionError as exc:
        raise bad("nests arrays or tables too deeply to be a config", exc) from exc


def _checked(data: Any, where: str) -> dict[str, dict[str, Any]]:
    """``data``'s tables, each key known and each value of its kind."""

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {why}", path=where, key=key)

    def hint(name: str, known: tuple[str, ...]) -> str:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        return f"did you mean {close[0]!r}? " if close else ""

    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table of tables, got {shown(data)}", path=where)
    out: dict[str, dict[str, Any]] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            known = tuple(SECTIONS)
            raise bad(
                str(section),
                f"unknown table; {hint(str(section), known)}(tables: {', '.join(known)})",
            )
        if not isinstance(table, Mapping):
            raise bad(section, f"expected a table ([{section}]), got {shown(table)}")
        keys = SECTIONS[section]
        checked: dict[str, Any] = {}
        for key, value in table.items():
            name = f"{section}.{key}"
            if key not in keys:
                raise bad(name, f"unknown key; {hint(str(key), keys)}(keys: {', '.join(keys)})")
            if key == "submit_options":
                checked[key] = _options(value, name, bad)
                continue
            number = (section, key) in _NUMBERS
            ok = isinstance(value, str) or (
                number and isinstance(value, (int, float)) and not isinstance(value, bool)
            )
            if not ok:
                want = "a number or a string" if number else "a string"
                raise bad(name, f"expected {want}, got {shown(value)}")
            if key == "mode" and value not in MODES:
                raise bad(name, f"expected one of {', '.join(MODES)}, got {shown(value)}")
            checked[key] = value
        out[section] = checked
    return out


def _options(value: Any, name: str, bad: Any) -> dict[str, str | int | float | bool]:
    if not isinstance(value, Mapping):
        raise bad(name, f"expected a table of scheduler options, got {shown(value)}")
    out: dict[str, str | int | float | bool] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not _OPTION_NAME.fullmatch(k):
            raise bad(f"{name}.{k}", "expected an option name (letters, digits, '_', '-')")
        if isinstance(v, (str, int, float, bool)):  # a bool: a bare flag, or left out
            out[k] = v
        else:
            raise bad(f"{name}.{k}", f"expected a string, number or boolean, got {shown(v)}")
    return out


class Config:
    """The loaded configuration (reflow-hpc's): each property is the environment variable's
    value, else the file's, else ``None``; ``Config(data)`` checks a dict as the file is
    checked (``Config()``: nothing configured)."""

    def __init__(self, data: Mapping[str, Any] | None = None, *, path: str | None = None) -> None:
        self.path = path
        self._data = _checked(data or {}, path or "config")
        #: the file's ``[executor.submit_options]``, as given
        executor = self._data.get("executor", {})
        self.submit_options: dict[str, Any] = dict(executor.get("submit_options", {}))
        for key in _SUBMIT_KEYS:  # [executor] partition = "x": as in submit_options
            if key in executor:
                given = self.submit_options.setdefault(key, executor[key])
                if given != executor[key]:
                    raise ConfigError(
                        f"{path or 'config'}: executor.{key}: given twice, as {shown(given)} "
                        f"in [executor.submit_options] and {shown(executor[key])} in [executor]",
                        path=path or "config",
                        key=f"executor.{key}",
                    )

    def __repr__(self) -> str:
        return f"Config(path={self.path!r})"

    def _get(self, section: str, key: str, env: str | None = None) -> str | None:
        if env is not None:
            value = os.environ.get(env)
            if value is not None:
                return value
        got = self._data.get(section, {}).get(key)
        return None if got is None else str(got)

    def _option(self, key: str) -> str | None:
        """A submit option under the active scheduler's name for it (``REFLOW_<NAME>`` wins)."""
        name = "queue" if key == "partition" and self.executor_mode in _QUEUE_MODES else key
        env = os.environ.get(f"REFLOW_{name.upper()}")
        got = env if env else self.submit_options.get(name)
        return None if got is None else str(got)

    def _command(self, name: str) -> str | None:
        return self._get("executor", name, f"REFLOW_{name.upper()}")

    @property
    def executor_mode(self) -> str | None:
        mode = self._get("executor", "mode", "REFLOW_MODE")
        if mode is not None and mode not in MODES:
            raise ConfigError(
                f"REFLOW_MODE: expected one of {', '.join(MODES)}, got {shown(mode)}",
                path="REFLOW_MODE",
                key="executor.mode",
            )
        return mode

    @property
    def executor_python(self) -> str | None:
        return self._get("executor", "python", "REFLOW_PYTHON")

    @property
    def executor_partition(self) -> str | None:
        return self._option("partition")

    @property
    def executor_account(self) -> str | None:
        return self._option("account")

    @property
    def executor_sbatch(self) -> str | None:
        return self._command("sbatch")

    @property
    def executor_scancel(self) -> str | None:
        return self._command("scancel")

    @property
    def executor_sacct(self) -> str | None:
        return self._command("sacct")

    @property
    def signal(self) -> str | None:
        return self._option("signal")

    @property
    def mail_user(self) -> str | None:
        return self._get("notifications", "mail_user", "REFLOW_MAIL_USER")

    @property
    def mail_type(self) -> str | None:
        return self._get("notifications", "mail_type", "REFLOW_MAIL_TYPE")

    @property
    def executor_submit_options(self) -> dict[str, str]:
        """The submit options every job gets: ``partition``, ``account``, ``signal``,
        ``mail_user``, ``mail_type`` where set (by their generic names)."""
        pairs = {
            "partition": self.executor_partition,
            "account": self.executor_account,
            "signal": self.signal,
            "mail_user": self.mail_user,
            "mail_type": self.mail_type,
        }
        return {k: v for k, v in pairs.items() if v is not None}

    def job_defaults(self) -> dict[str, Any]:
        """What a Slurm job gets from this config when it does not say: the file's
        ``[executor.submit_options]`` (every flag in it) with the environment's overrides and
        the notifications, by option name."""
        out = {k: v for k, v in self.submit_options.items() if k != "queue"}
        if "queue" in self.submit_options and "partition" not in out:
            out["partition"] = self.submit_options["queue"]
        out.update(self.executor_submit_options)
        return out

    @property
    def dispatch_cpus(self) -> str | None:
        return self._get("dispatch", "cpus", "REFLOW_DISPATCH_CPUS")

    @property
    def dispatch_time(self) -> str | None:
        return self._get("dispatch", "time", "REFLOW_DISPATCH_TIME")

    @property
    def dispatch_mem(self) -> str | None:
        return self._get("dispatch", "mem", "REFLOW_DISPATCH_MEM")

    @property
    def dispatch_partition(self) -> str | None:
        return self._get("dispatch", "partition", "REFLOW_DISPATCH_PARTITION")

    @property
    def dispatch_account(self) -> str | None:
        return self._get("dispatch", "account", "REFLOW_DISPATCH_ACCOUNT")

    @property
    def dispatch_submit_options(self) -> dict[str, str]:
        pairs = {"partition": self.dispatch_partition, "account": self.dispatch_account}
        return {k: v for k, v in pairs.items() if v is not None}

    @property
    def default_run_dir(self) -> str | None:
        """``[defaults] run_dir`` (``$REFLOW_RUN_DIR`` overrides it): where runs given no
        ``run_dir`` go, as ``<run_dir>/<run id>``."""
        return self._get("defaults", "run_dir", "REFLOW_RUN_DIR")

    @property
    def configured_store_path(self) -> str | None:
        """``$REFLOW_STORE_PATH`` or ``[defaults] store_path``; ``None``: neither is set."""
        return self._get("defaults", "store_path", "REFLOW_STORE_PATH")

    @property
    def default_store_path(self) -> str:
        """The run index file runs are recorded in: :attr:`configured_store_path`, else the
        default index (``~/.cache/reflow/workflow-runs.sqlite``)."""
        configured = self.configured_store_path
        if configured is not None:
            return configured
        from ._index import default_index_path

        return str(default_index_path())

    @property
    def server_url(self) -> str | None:
        return self._get("server", "url", "REFLOW_SERVER_URL")


def expand(path: str) -> Path:
    """A configured path with ``~`` and ``$VARS`` expanded."""
    return Path(os.path.expandvars(os.path.expanduser(path)))


def read_config(path: Path | str | os.PathLike[str] | None = None) -> Config:
    """The configuration in ``path`` (default :func:`config_path`) without creating a file:
    no file is an empty configuration."""
    target = _target(path, "load_config")
    return Config(_read(target), path=str(target))


def load_config(path: Path | str | os.PathLike[str] | None = None) -> Config:
    """Load the configuration (reflow-hpc's): the file at ``path`` (default
    :func:`config_path`), the commented example written there first when there is none (a
    place that cannot be written is passed over: no file is an empty configuration)."""
    target = _target(path, "load_config")
    if not target.exists():
        with contextlib.suppress(ConfigError, FileExistsError):
            write_example_config(target)
    return read_config(target)
