"""reflow-hpc's job descriptions and codec in ``reflow.workflow``: ``wf.tasks`` (``TaskSpec``,
``JobConfig``) as views of the job records, the scheduler options a job takes (``account``,
``submit_options``, ``qos``...), and ``ManifestCodec``."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pytest

from reflow.workflow import (
    Flow,
    JobConfig,
    ManifestCodec,
    Result,
    TaskSpec,
    Workflow,
    WorkflowDefinitionError,
)
from reflow.workflow._manifest import MAX_DEPTH, ManifestError


def _wf() -> Workflow:
    wf = Workflow("specs")

    @wf.job(cpus=2, mem="1G", time="00:10:00", version="3", account="acc", qos="high")
    def prepare() -> list[int]:
        return [1, 2]

    @wf.job(
        array=True,
        array_parallelism=4,
        submit_options={"partition": "gpu", "mail_type": "FAIL", "exclusive": True},
        verify=bool,
        backend="slurm",
    )
    def work(x: Annotated[int, Result(step="prepare")]) -> int:
        return x

    return wf


def test_tasks_are_views_of_the_jobs() -> None:
    wf = _wf()
    assert list(wf.tasks) == ["prepare", "work"] and len(wf.tasks) == 2
    assert "work" in wf.tasks and "nope" not in wf.tasks
    t = wf.tasks["work"]
    assert isinstance(t, TaskSpec) and t.name == "work"
    assert t.func.__name__ == "work" and t.return_type is int and t.verify is bool
    assert t.signature == inspect.signature(t.func)
    assert list(t.result_deps) == ["x"] and t.result_deps["x"].steps == ("prepare",)
    c = t.config
    assert isinstance(c, JobConfig)
    assert (c.array, c.array_parallelism, c.backend, c.cache) == (True, 4, "slurm", True)
    assert c.partition == "gpu" and c.mail_type == "FAIL" and c.account is None
    assert c.submit_options == {"partition": "gpu", "mail_type": "FAIL", "exclusive": "true"}
    assert c.extra is c.submit_options
    p = wf.tasks["prepare"].config
    assert (p.cpus, p.mem, p.time, p.version, p.account) == (2, "1G", "00:10:00", "3", "acc")
    assert p.submit_options == {"account": "acc", "qos": "high"}
    assert wf.tasks["work"].config.after == [] and p.array_parallelism is None
    # the view reads the one record: a job added later is there at once
    assert wf.tasks["prepare"].config == JobConfig.of(wf._jobs["prepare"])

    @wf.job
    def late() -> None:
        return None

    assert "late" in wf.tasks


def test_flow_tasks_and_include() -> None:
    f = Flow("part")

    @f.job(account="a1")
    def step() -> int:
        return 1

    wf = Workflow("whole")
    wf.include(f, prefix="p")
    assert wf.tasks["p_step"].config.account == "a1"
    assert f.tasks["step"].name == "step"


def test_name_first_as_in_reflow_hpc(tmp_path: Path) -> None:
    wf = Workflow("named")

    @wf.job("first")
    def f() -> list[int]:
        return [1, 2]

    @wf.array_job("second", account="x")
    def g(v: Annotated[int, Result(step="first")]) -> int:
        return 10 * v

    assert list(wf.tasks) == ["first", "second"] and wf.tasks["second"].config.array
    assert wf.run_local(tmp_path)["second"] == [10, 20]
    with pytest.raises(WorkflowDefinitionError, match="got the name twice"):
        wf.job("a", name="b")


def test_unknown_task_names_the_closest() -> None:
    wf = _wf()
    with pytest.raises(KeyError) as info:
        wf.tasks["wrok"]
    assert "no task named 'wrok'; did you mean 'work'?" in str(info.value)
    assert wf.tasks.get("wrok") is None


def test_job_config_by_hand() -> None:
    cfg = JobConfig(
        submit_options={
            "partition": "gpu",
            "account": "acc",
            "mail_user": "u@e",
            "mail_type": "FAIL",
            "signal": "B:INT@60",
        }
    )
    assert (cfg.partition, cfg.account, cfg.mail_user, cfg.mail_type, cfg.signal) == (
        "gpu",
        "acc",
        "u@e",
        "FAIL",
        "B:INT@60",
    )
    assert cfg.extra is cfg.submit_options
    assert JobConfig(qos="x", extra={"gres": "gpu:1"}).submit_options == {
        "gres": "gpu:1",
        "qos": "x",
    }
    assert JobConfig().cpus == 1 and JobConfig().cache is True


BAD_JOBS: list[tuple[dict[str, Any], list[str]]] = [
    ({"account": ""}, ["account must be an account name"]),
    ({"account": 5}, ["account must be an account name", "got 5"]),
    ({"submit_options": ["qos"]}, ["submit_options must be a dict"]),
    ({"extra": "qos=high"}, ["extra must be a dict"]),
    ({"submit_options": {"time": "1:00"}}, ["'time' (--time) cannot be given", "time="]),
    ({"submit_options": {"job_name": "x"}}, ["--job-name", "name="]),
    ({"submit_options": {"output": "x"}}, ["--output", "reflow sets it itself"]),
    ({"submit_options": {"--qos": "x"}}, ["option names are words", "'--qos'"]),
    ({"submit_options": {1: "x"}}, ["option names are words", "got 1"]),
    ({"submit_options": {"qos": ["a"]}}, ["'qos' must be a non-empty string"]),
    ({"submit_options": {"qos": ""}}, ["'qos' must be a non-empty string"]),
    ({"submit_options": {"qos": "a\nb"}}, ["'qos' has a control character"]),
    ({"submit_options": {"comment": "x" * 5000}}, ["'comment' must be a non-empty string"]),
    ({"submit_options": {f"o{i}": 1 for i in range(101)}}, ["101 options; at most 100"]),
    ({"partition": "a", "submit_options": {"queue": "b"}}, ["--partition is given twice"]),
    ({"account": "a", "submit_options": {"account": "b"}}, ["--account is given twice"]),
    ({"submit_options": {"account": True}}, ["account must be a name"]),
    ({"verify": "yes"}, ["verify must be a function", "'yes'"]),
    ({"backend": 3}, ["backend must be a backend name"]),
    ({"qso": "high"}, ["no option 'qso'", "Did you mean 'qos'?", "submit_options={'qso'"]),
    ({"acount": "x"}, ["Did you mean 'account'?"]),
    ({"submit_options": {"qos": "a"}, "qos": "b"}, ["'qos' is given twice", "keywords"]),
    ({"submit_options": {"qos": "a"}, "extra": {"qos": "b"}}, ["'qos' is given twice"]),
]


@pytest.mark.parametrize(("options", "fragments"), BAD_JOBS)
def test_bad_scheduler_options(options: dict[str, Any], fragments: list[str]) -> None:
    wf = Workflow("bad")
    with pytest.raises(WorkflowDefinitionError) as info:

        @wf.job(**options)
        def j() -> int:
            return 1

    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_bad_job_config_by_hand() -> None:
    with pytest.raises(WorkflowDefinitionError, match="time must be a Slurm time limit"):
        JobConfig(time="soon")
    with pytest.raises(WorkflowDefinitionError, match="submit_options must be a dict"):
        JobConfig(submit_options="x")  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="TaskSpec describes a job"):
        TaskSpec("x")  # type: ignore[arg-type]


def test_scheduler_options_recorded_locally(tmp_path: Path) -> None:
    wf = _wf()
    run = wf.run_local(tmp_path / "r")
    assert run.result("work") == [1, 2]
    task = next(t for t in wf.describe()["tasks"] if t["name"] == "prepare")
    assert task["config"]["account"] == "acc"
    assert task["config"]["submit_options"] == {"qos": "high"}


# ---------------------------------------------------------------------- ManifestCodec


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    where: Path


ROUND_TRIPS = [
    None,
    True,
    42,
    -(10**30),
    3.5,
    "text",
    [1, "two", None],
    {"a": 1, "b": [1.5]},
    (1, "two", Path("/a")),
    Path("/scratch/x.nc"),
    datetime(2025, 6, 15, 12, 30, tzinfo=UTC),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Colour.RED,
    Point(1, Path("/p")),
    {"nested": (Point(2, Path("q")), [Colour.RED])},
    math.inf,
]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=repr)
def test_codec_round_trips(value: Any) -> None:
    codec = ManifestCodec()
    back = codec.loads(codec.dumps(value))
    assert back == value and type(back) is type(value)
    assert codec.load_value(codec.dump_value(value)) == value
    assert codec.loads(codec.dumps(value, pretty=True).encode()) == value


def test_codec_tags_and_canonical_text() -> None:
    codec = ManifestCodec()
    tagged = codec.dump_value(Path("/a"))
    assert tagged == {"__reflow_manifest__": True, "type": "path", "value": "/a"}
    assert codec.canonical_dumps({"b": 2, "a": 1}) == codec.canonical_dumps({"a": 1, "b": 2})
    nan = codec.loads(codec.dumps(math.nan))
    assert math.isnan(nan)


def test_codec_never_imports_what_a_payload_names() -> None:
    import sys

    payload = {
        "__reflow_manifest__": True,
        "type": "dataclass",
        "class": "antigravity.Thing",
        "fields": {"a": 1},
    }
    assert ManifestCodec().load_value(payload) == {"a": 1}
    assert "antigravity" not in sys.modules


def _loop() -> list[Any]:
    x: list[Any] = []
    x.append(x)
    return x


def _deep(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return v


BAD_DUMPS: list[tuple[str, Any, str]] = [
    ("int keys", {1: "bad"}, "must use string keys"),
    ("a set", {1, 2}, "Unsupported manifest value type: builtins.set"),
    ("an object", object(), "Unsupported manifest value type"),
    ("bytes", b"x", "Unsupported manifest value type: builtins.bytes"),
    ("itself", _loop(), "contains itself"),
    ("too deep", _deep(MAX_DEPTH + 5), f"deeper than {MAX_DEPTH}"),
    ("very deep", _deep(100_000), f"deeper than {MAX_DEPTH}"),
    ("huge int", 10**5000, "cannot write manifest JSON"),
]


@pytest.mark.parametrize(("why", "value", "fragment"), BAD_DUMPS, ids=[r[0] for r in BAD_DUMPS])
def test_codec_refuses_values(why: str, value: Any, fragment: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ManifestError) as info:
        ManifestCodec().dumps(value)
    assert fragment in str(info.value), (why, str(info.value))
    assert isinstance(info.value, TypeError)
    assert time.perf_counter() - t0 < 5


def _tag(kind: Any, **more: Any) -> dict[str, Any]:
    return {"__reflow_manifest__": True, "type": kind, **more}


BAD_LOADS: list[tuple[str, Any, str]] = [
    ("not JSON", "{", "is not JSON"),
    ("not UTF-8", b"\xff", "is not UTF-8"),
    ("not text", 12, "loads() takes JSON text"),
    (
        "unknown tag",
        '{"__reflow_manifest__": true, "type": "alien", "value": 1}',
        "Unknown manifest payload type 'alien'",
    ),
    ("deep JSON", "[" * 200_000 + "]" * 200_000, "manifest payload"),
    ("bad date", _tag("datetime", value="yesterday"), "'datetime' payload cannot be rebuilt"),
    ("bad uuid", _tag("uuid", value="nope"), "'uuid' payload cannot be rebuilt"),
    ("path not str", _tag("path", value=3), "field 'value' must be str"),
    ("tuple not list", _tag("tuple", value="ab"), "field 'value' must be list"),
    ("bad float", _tag("float", value="1e999x"), "must be nan, inf or -inf"),
    (
        "bad enum value",
        _tag("enum", value="blue", **{"class": f"{__name__}.Colour"}),
        "'enum' payload cannot be rebuilt",
    ),
    (
        "bad fields",
        _tag("dataclass", fields={"nope": 1}, **{"class": f"{__name__}.Point"}),
        "'dataclass' payload cannot be rebuilt",
    ),
    (
        "fields not dict",
        _tag("dataclass", fields=[1], **{"class": "x.Y"}),
        "field 'fields' must be dict",
    ),
    ("object", object(), "Unsupported manifest payload: object"),
]


@pytest.mark.parametrize(("why", "payload", "fragment"), BAD_LOADS, ids=[r[0] for r in BAD_LOADS])
def test_codec_refuses_payloads(why: str, payload: Any, fragment: str) -> None:
    codec = ManifestCodec()
    t0 = time.perf_counter()
    with pytest.raises(ManifestError) as info:
        if isinstance(payload, (str, bytes, int)):
            codec.loads(payload)
        else:
            codec.load_value(payload)
    assert fragment in str(info.value), (why, str(info.value))
    assert time.perf_counter() - t0 < 5


# ---------------------------------------------------------------------- to sbatch


@pytest.mark.parametrize(
    ("account", "options", "expected", "absent"),
    [
        ("proj", (), ["--account=proj"], []),
        (None, (("qos", "high"),), ["--qos=high"], ["--account"]),
        (
            None,
            (("mail_user", "u@e.org"), ("mail_type", "FAIL")),
            ["--mail-user=u@e.org", "--mail-type=FAIL"],
            [],
        ),
        (None, (("exclusive", "true"),), ["--exclusive"], ["--exclusive=true"]),
        (None, (("signal", "B:INT@60"),), ["--signal=B:INT@60"], []),
    ],
)
def test_sbatch_args_carry_the_options(
    account: str | None,
    options: tuple[tuple[str, str], ...],
    expected: list[str],
    absent: list[str],
) -> None:
    from reflow.workflow._slurm_cmd import sbatch_args

    argv = sbatch_args(
        name="r.s",
        cpus=1,
        chdir="/tmp",
        files="/tmp/f",
        tasks=1,
        array=False,
        limit=None,
        memory=None,
        time=None,
        partition="debug",
        after=None,
        account=account,
        options=options,
    )
    for flag in expected:
        assert flag in argv
    for flag in absent:
        assert not any(a.startswith(flag) for a in argv if a not in expected)


@pytest.fixture(scope="module")
def slurm() -> Any:
    from slurmcluster import slurm_fixture

    yield from slurm_fixture()


def _squeue(slurm: Any, name: str, fmt: str) -> list[str]:
    p = slurm.run("squeue", "--states=all", "-h", "-r", "-n", name, "-o", fmt)
    return sorted(set(p.stdout.split()))


@pytest.mark.slow
def test_account_and_options_reach_slurm(slurm: Any, tmp_path: Path) -> None:
    cfg_wf = Workflow(
        "acct",
        config=__import__("reflow.workflow", fromlist=["Config"]).Config(
            {"executor": {"submit_options": {"account": "from-config", "comment": "cfg"}}}
        ),
    )

    @cfg_wf.job(account="proj-a", array=False)
    def items() -> list[int]:
        return [1, 2, 3]

    @cfg_wf.job(array=True, qos="normal")
    def double(x: Annotated[int, Result(step="items")]) -> int:
        return 2 * x

    run = cfg_wf.run(tmp_path / "acctrun", backend="slurm")
    assert run["double"] == [2, 4, 6]
    # the job's own account wins; the config's fills in where a job gives none
    assert _squeue(slurm, "acctrun.items", "%a") == ["proj-a"]
    assert _squeue(slurm, "acctrun.double", "%a") == ["from-config"]
    assert _squeue(slurm, "acctrun.double", "%k") == ["cfg"]  # --comment
    # status() names each element's Slurm job: <array>_<index>
    inst = run.status(as_dict=True)["instances"]
    (array_id,) = _squeue(slurm, "acctrun.double", "%F")
    ids = {(i["task_name"], i["array_index"]): i["job_id"] for i in inst}
    assert ids[("double", 0)] == f"{array_id}_0" and ids[("double", 2)] == f"{array_id}_2"
    (items_id,) = _squeue(slurm, "acctrun.items", "%F")
    assert ids[("items", None)] == items_id
    # local runs have no scheduler job
    local = cfg_wf.run_local(tmp_path / "local")
    assert {i["job_id"] for i in local.status(as_dict=True)["instances"]} == {None}


@pytest.mark.slow
def test_sbatch_refusing_an_option_is_a_clear_error(slurm: Any, tmp_path: Path) -> None:
    from reflow.workflow import WorkflowFailed

    wf = Workflow("badopt")

    @wf.job(submit_options={"gres": "nosuchgres:9"})
    def one() -> int:
        return 1

    with pytest.raises(WorkflowFailed) as info:
        wf.run(tmp_path / "badopt", backend="slurm")
    text = str(info.value)
    assert "sbatch did not take it" in text and "one" in text, text
