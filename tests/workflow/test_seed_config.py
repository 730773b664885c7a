"""reflow-hpc's configuration in ``reflow.workflow``: ``Config``, ``load_config``,
``config_path``, ``ensure_config_exists``, ``write_example_config``, what a config file changes
(run dir, run index, Slurm submit options) and how a bad one is refused.

Every test points ``XDG_CONFIG_HOME``/``XDG_CACHE_HOME`` at ``tmp_path`` (an autouse fixture) and
clears the ``REFLOW_*`` variables the config reads, so the real ``~/.config`` is never read or
written.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from reflow.workflow import (
    Config,
    ConfigError,
    ParamError,
    Workflow,
    config_path,
    ensure_config_exists,
    load_config,
    write_example_config,
)
from reflow.workflow._config import EXAMPLE_CONFIG, MAX_CONFIG_BYTES, read_config

ENV = (
    "REFLOW_MODE",
    "REFLOW_PARTITION",
    "REFLOW_QUEUE",
    "REFLOW_ACCOUNT",
    "REFLOW_SIGNAL",
    "REFLOW_PYTHON",
    "REFLOW_MAIL_USER",
    "REFLOW_MAIL_TYPE",
    "REFLOW_STORE_PATH",
    "REFLOW_RUN_DIR",
    "REFLOW_SERVER_URL",
    "REFLOW_DISPATCH_CPUS",
    "REFLOW_SBATCH",
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "xdg-cache" / "reflow" / "packs"))
    for var in ENV:
        monkeypatch.delenv(var, raising=False)


def _write(tmp_path: Path, content: bytes | str) -> Path:
    p = tmp_path / "config.toml"
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


# ---------------------------------------------------------------------- bad files

BAD_FILES: list[tuple[str, bytes | str, list[str]]] = [
    ("not TOML", "[executor\nmode = 1", ["is not valid TOML", "line 1"]),
    ("unterminated string", 'a = "x', ["is not valid TOML"]),
    ("unknown table", "[exector]\nmode = 'sbatch'", ["exector", "did you mean 'executor'"]),
    ("unknown key", "[executor]\nmdoe = 'sbatch'", ["executor.mdoe", "did you mean 'mode'"]),
    ("table not a table", "executor = 5", ["executor", "expected a table ([executor])"]),
    ("mode unknown", "[executor]\nmode = 'pbs'", ["executor.mode", "expected one of sbatch"]),
    ("mode a number", "[executor]\nmode = 3", ["executor.mode", "expected a string, got 3"]),
    ("python a list", "[executor]\npython = ['a']", ["executor.python", "expected a string"]),
    ("cpus a bool", "[dispatch]\ncpus = true", ["dispatch.cpus", "a number or a string"]),
    ("cpus a table", "[dispatch.cpus]\nx = 1", ["dispatch.cpus", "a number or a string"]),
    ("run_dir a number", "[defaults]\nrun_dir = 1", ["defaults.run_dir", "expected a string"]),
    (
        "submit_options not a table",
        "[executor]\nsubmit_options = 'x'",
        ["executor.submit_options", "expected a table of scheduler options"],
    ),
    (
        "option a list",
        "[executor.submit_options]\npartition = ['a', 'b']",
        ["executor.submit_options.partition", "a string, number or boolean"],
    ),
    (
        "option name not a flag",
        '[executor.submit_options]\n"--qos high" = "x"',
        ["executor.submit_options.--qos high", "expected an option name"],
    ),
    (
        "option a date",
        "[executor.submit_options]\nbegin = 1979-05-27",
        ["executor.submit_options.begin", "a string, number or boolean"],
    ),
    ("not UTF-8", b"[executor]\nmode = '\xff\xfe'", ["is not UTF-8 text", "byte"]),
    ("NUL byte", b"[executor]\x00", ["is not valid TOML"]),
    ("deep arrays", "a = " + "[" * 100_000 + "]" * 100_000, ["config file"]),
    ("too large", "# " + "x" * (MAX_CONFIG_BYTES + 10), [f"larger than {MAX_CONFIG_BYTES}"]),
]


@pytest.mark.parametrize(("why", "content", "fragments"), BAD_FILES, ids=[r[0] for r in BAD_FILES])
def test_bad_config_file(
    tmp_path: Path, why: str, content: bytes | str, fragments: list[str]
) -> None:
    path = _write(tmp_path, content)
    t0 = time.perf_counter()
    for load in (load_config, read_config):
        with pytest.raises(ConfigError) as info:
            load(path)
        message = str(info.value)
        assert str(path) in message, message
        for fragment in fragments:
            assert fragment in message, (why, message)
        assert info.value.path == str(path)
        assert isinstance(info.value, ValueError)
    assert time.perf_counter() - t0 < 10, "bounded"


def test_bad_config_names_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "[notifications]\nmail_user = 5"))
    assert info.value.key == "notifications.mail_user"


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("dir", "is a directory"),
        (12, "path must be a file path"),
        ("", "path must be a file path"),
        ("nul\0byte", "path must be a file path"),
    ],
)
def test_bad_config_path(tmp_path: Path, path: Any, fragment: str) -> None:
    if path == "dir":
        path = tmp_path
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"executor": {"submit_options": {"account": {"x": 1}}}}, "a string, number or boolean"),
        ({"server": {"uri": "x"}}, "did you mean 'url'"),
        ([1, 2], "expected a table of tables"),
    ],
)
def test_bad_config_dict(data: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Config(data)


def test_submit_options_straight_in_executor() -> None:
    cfg = Config({"executor": {"partition": "p", "account": "a"}})
    assert (cfg.executor_partition, cfg.executor_account) == ("p", "a")
    with pytest.raises(ConfigError, match=r"executor\.account: given twice"):
        Config({"executor": {"account": "a", "submit_options": {"account": "b"}}})


def test_numbers_where_numbers_fit() -> None:
    assert Config({"dispatch": {"cpus": 1.5}}).dispatch_cpus == "1.5"
    assert Config({"dispatch": {"cpus": 4}}).dispatch_cpus == "4"
    opts = Config({"executor": {"submit_options": {"nodes": 2, "exclusive": False}}})
    assert opts.job_defaults() == {"nodes": 2, "exclusive": False}
    wf = Workflow("flags", config=opts)

    @wf.job
    def one() -> int:
        return 1

    spec = wf._configured(wf.plan(), "slurm").jobs["one"]
    assert spec.submit_options == (("nodes", "2"),)  # False: the flag is left out


def test_bad_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_MODE", "qsub")
    with pytest.raises(ConfigError, match="REFLOW_MODE: expected one of sbatch"):
        _ = Config().executor_mode


# ---------------------------------------------------------------------- reflow-hpc's API


def test_config_path_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_path() == tmp_path / "xdg-config" / "reflow" / "config.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_path() == tmp_path / "home" / ".config" / "reflow" / "config.toml"


def test_example_config_files(tmp_path: Path) -> None:
    target = ensure_config_exists()
    assert target == config_path() and target.read_text() == EXAMPLE_CONFIG
    assert "[executor]" in EXAMPLE_CONFIG and "# partition =" in EXAMPLE_CONFIG
    with pytest.raises(FileExistsError):
        write_example_config()
    assert write_example_config(overwrite=True) == target
    cfg = load_config()  # every line commented out: nothing configured
    assert cfg.executor_submit_options == {} and cfg.default_run_dir is None
    # the example, uncommented, is a valid config
    setting = re.compile(r"# (\[|[a-z_]+ = )")
    lines = [ln[2:] for ln in EXAMPLE_CONFIG.splitlines() if setting.match(ln)]
    text = "\n".join(lines)
    full = read_config(_write(tmp_path, text))
    assert full.executor_partition == "compute" and full.executor_account == "my_project"
    assert full.dispatch_cpus == "1" and full.server_url == "https://reflow.example.org"


def test_load_config_writes_the_example_where_none_is(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "config.toml"
    cfg = load_config(p)
    assert p.read_text() == EXAMPLE_CONFIG and cfg.executor_partition is None
    assert read_config(tmp_path / "absent.toml").executor_mode is None
    assert not (tmp_path / "absent.toml").exists()


def test_properties_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = read_config(
        _write(
            tmp_path,
            """
[executor]
mode = "sbatch"
python = "/opt/py"
sbatch = "/opt/sbatch"
[executor.submit_options]
partition = "gpu"
account = "proj"
signal = "B:INT@60"
qos = "high"
exclusive = true
[notifications]
mail_user = "u@example.org"
mail_type = "FAIL"
[dispatch]
cpus = 2
time = "01:00:00"
mem = "4G"
partition = "debug"
account = "dacc"
[defaults]
run_dir = "/scratch/runs"
store_path = "/scratch/index.sqlite"
[server]
url = "https://r.example.org"
""",
        )
    )
    assert cfg.executor_mode == "sbatch" and cfg.executor_python == "/opt/py"
    assert cfg.executor_sbatch == "/opt/sbatch" and cfg.executor_scancel is None
    assert cfg.executor_submit_options == {
        "partition": "gpu",
        "account": "proj",
        "signal": "B:INT@60",
        "mail_user": "u@example.org",
        "mail_type": "FAIL",
    }
    assert cfg.job_defaults()["qos"] == "high" and cfg.job_defaults()["exclusive"] is True
    assert (cfg.dispatch_cpus, cfg.dispatch_time, cfg.dispatch_mem) == ("2", "01:00:00", "4G")
    assert cfg.dispatch_submit_options == {"partition": "debug", "account": "dacc"}
    assert cfg.default_run_dir == "/scratch/runs"
    assert cfg.default_store_path == "/scratch/index.sqlite"
    assert cfg.server_url == "https://r.example.org"
    monkeypatch.setenv("REFLOW_PARTITION", "big")
    monkeypatch.setenv("REFLOW_ACCOUNT", "other")
    monkeypatch.setenv("REFLOW_STORE_PATH", "/elsewhere.sqlite")
    assert cfg.executor_partition == "big" and cfg.executor_account == "other"
    assert cfg.default_store_path == "/elsewhere.sqlite"
    assert Config().executor_partition == "big"  # env alone, no file


def test_queue_is_the_partition_of_other_schedulers(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config({"executor": {"mode": "qsub-pbs", "submit_options": {"queue": "batch"}}})
    assert cfg.executor_partition == "batch"
    assert Config({"executor": {"submit_options": {"queue": "q"}}}).job_defaults() == {
        "partition": "q"
    }


def test_default_store_path_is_the_run_index() -> None:
    from reflow.workflow._index import default_index_path

    assert Config().default_store_path == str(default_index_path())


# ---------------------------------------------------------------------- what it changes


def _wf(config: Config | None = None) -> Workflow:
    wf = Workflow("cfg", config=config)

    @wf.job
    def one() -> int:
        return 1

    return wf


def test_workflow_reads_the_config_file(tmp_path: Path) -> None:
    config_path().parent.mkdir(parents=True)
    config_path().write_text("[executor.submit_options]\naccount = 'from-file'\n")
    wf = _wf()
    assert wf.config.executor_account == "from-file"
    assert not Workflow("x", config=Config()).config.executor_account


def test_workflow_with_a_bad_config_file_fails_at_run(tmp_path: Path) -> None:
    config_path().parent.mkdir(parents=True)
    config_path().write_text("[defaults]\nrun_dri = 'x'\n")
    with pytest.raises(ConfigError, match=r"defaults\.run_dri"):
        _wf().run_local()


def test_workflow_config_must_be_a_config() -> None:
    with pytest.raises(ParamError, match=r"config must be a reflow\.workflow\.Config"):
        Workflow("x", config={"defaults": {}})  # type: ignore[arg-type]


def test_default_run_dir_and_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHO", "alice")
    cfg = Config(
        {
            "defaults": {
                "run_dir": str(tmp_path / "$WHO" / "runs"),
                "store_path": str(tmp_path / "i.db"),
            }
        }
    )
    wf = _wf(cfg)
    run = wf.run_local()
    assert run.run_dir.parent == tmp_path / "alice" / "runs"
    assert run.run_dir.name == run.run_id
    assert (tmp_path / "i.db").is_file()
    assert [r["run_id"] for r in wf.runs()] == [run.run_id]
    # an explicit run_dir and store still win
    other = wf.run_local(tmp_path / "mine", store_path=tmp_path / "j.db")
    assert other.run_dir == tmp_path / "mine" and (tmp_path / "j.db").is_file()


def test_slurm_jobs_get_the_configured_options() -> None:
    cfg = Config(
        {
            "executor": {"submit_options": {"partition": "gpu", "account": "acc", "qos": "low"}},
            "notifications": {"mail_user": "u@e.org", "mail_type": "FAIL"},
        }
    )
    wf = Workflow("cfg", config=cfg)

    @wf.job(account="mine", qos="high")
    def a() -> int:
        return 1

    @wf.job
    def b() -> int:
        return 2

    plan = wf._configured(wf.plan(), "slurm")
    ja, jb = plan.jobs["a"], plan.jobs["b"]
    assert (ja.partition, ja.account, ja.option("qos")) == ("gpu", "mine", "high")
    assert (jb.partition, jb.account, jb.option("qos")) == ("gpu", "acc", "low")
    assert jb.option("mail_user") == "u@e.org" and jb.option("mail_type") == "FAIL"
    # the run's own partition, and a SlurmExecutor's options, win over the config
    over = wf._configured(wf.plan(), "slurm", "debug?qos=normal").jobs["b"]
    assert (over.partition, over.account, over.option("qos")) == (None, "acc", None)
    # elsewhere the config changes nothing
    local = wf._configured(wf.plan(), "local").jobs["b"]
    assert (local.partition, local.account, local.submit_options) == (None, None, ())


def test_command_line_uses_the_configured_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "configured.sqlite"
    wf = _wf(Config({"defaults": {"store_path": str(store), "run_dir": str(tmp_path / "runs")}}))
    assert wf.cli(["run"]) == 0
    run_id = next(iter(r["run_id"] for r in wf.runs()))
    assert store.is_file() and (tmp_path / "runs" / run_id).is_dir()
    capsys.readouterr()
    assert wf.cli(["runs", "--json"]) == 0
    assert run_id in capsys.readouterr().out
    assert wf.cli(["status", run_id]) == 0
