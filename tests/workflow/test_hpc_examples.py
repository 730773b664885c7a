"""The reflow-hpc user guide, getting-started page and Python reference, example by example, in
our own words, with the import changed to ``reflow.workflow`` (issue #15). Every example that
runs a workflow runs here and on a real Ray cluster (``raycluster.py``: a head and a worker on
127.0.0.1; those rows are slow)."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import _hpc_support as hpc
import pytest
from _hpc_support import parametrize_backends

from reflow.workflow import (
    Flow,
    Param,
    ParamError,
    Result,
    Run,
    RunDir,
    RunReport,
    StepNotFoundError,
    Workflow,
    WorkflowDefinitionError,
)

_cache_dir = hpc.cache_dir
ray_cluster = hpc.ray_cluster
go = hpc.go


# ---------------------------------------------------------------------- tasks and resources


@parametrize_backends
def test_tasks_and_resources(go: Any) -> None:
    wf = Workflow("res")
    mem = "16G" if go.backend == "local" else "64M"  # the Ray test nodes are small

    @wf.job(cpus=1, time="02:00:00", mem=mem)
    def process(run_dir: RunDir = RunDir()) -> str:  # noqa: B008 (the guide's spelling)
        return str(run_dir / "output.txt")

    run = go(wf)
    assert run["process"].endswith("output.txt")
    assert Path(run["process"]).parent.is_dir()


def test_every_decorator_option_of_the_guide() -> None:
    wf = Workflow("opts")

    @wf.job()
    def cleanup() -> list[str]:
        return ["a"]

    @wf.job(
        cpus=4,
        time="02:00:00",
        mem="16G",
        array=True,
        array_parallelism=10,
        cache=True,
        version="2",
        after=["cleanup"],
        partition="gpu",
    )
    def work(item: Annotated[str, Result(step="cleanup")]) -> str:
        return item

    d = wf.describe()
    task = next(t for t in d["tasks"] if t["name"] == "work")
    assert task["config"] == {
        "cpus": 4,
        "time": "02:00:00",
        "mem": "16G",
        "array": True,
        "after": ["cleanup"],
        "array_parallelism": 10,
        "version": "2",
        "cache": True,
        "retries": 0,
        "partition": "gpu",
        "account": None,
        "submit_options": {},
        "backend": None,
    }
    assert "partition gpu" in str(d)
    assert json.loads(json.dumps(d)) == d


# ---------------------------------------------------------------------- parameters


@parametrize_backends
def test_plain_parameters(go: Any) -> None:
    wf = Workflow("plain")

    @wf.job()
    def ingest(source: str, limit: int = 100) -> str:
        return f"{source}:{limit}"

    assert go(wf, source="input.csv", limit=200)["ingest"] == "input.csv:200"
    assert go(wf, source="input.csv")["ingest"] == "input.csv:100"


def test_param_help_and_short_flag() -> None:
    wf = Workflow("annot")

    @wf.job()
    def ingest(
        source: Annotated[str, Param(help="Input file", short="-s")],
        limit: Annotated[int, Param(help="Max rows")] = 100,
    ) -> str:
        return source

    params = {p["name"]: p for p in wf.describe()["cli_params"]}
    assert params["source"]["help"] == "Input file" and params["source"]["short"] == "-s"
    assert params["source"]["required"] is True
    assert params["limit"] == {**params["limit"], "default": 100, "required": False}


@parametrize_backends
def test_local_namespacing(go: Any) -> None:
    wf = Workflow("ns")

    @wf.job()
    def step_a(chunk: Annotated[int, Param(namespace="local")] = 256) -> str:
        return f"a{chunk}"

    @wf.job()
    def step_b(chunk: Annotated[int, Param(namespace="local")] = 512) -> str:
        return f"b{chunk}"

    flags = {p["flag"] for p in wf.describe()["cli_params"]}
    assert {"--step-a-chunk", "--step-b-chunk"} <= flags
    run = go(wf, step_a_chunk=1)  # reflow-hpc's keyword for a local parameter
    assert (run["step_a"], run["step_b"]) == ("a1", "b512")
    run = go(wf, params={"step_b.chunk": 2})  # ours
    assert (run["step_a"], run["step_b"]) == ("a256", "b2")


@parametrize_backends
def test_literal_choices(go: Any) -> None:
    wf = Workflow("lit")

    @wf.job()
    def train(backend: Annotated[Literal["cpu", "gpu", "tpu"], Param(help="Device")]) -> str:
        return backend

    assert [p["choices"] for p in wf.describe()["cli_params"]] == [["cpu", "gpu", "tpu"]]
    assert go(wf, params={"backend": "gpu"})["train"] == "gpu"
    with pytest.raises(ParamError, match=r"must be one of \['cpu', 'gpu', 'tpu'\]"):
        go(wf, params={"backend": "xpu"})


def test_literal_parameter_named_backend_is_a_keyword_of_run_local(tmp_path: Path) -> None:
    wf = Workflow("lit2")

    @wf.job()
    def train(backend: Literal["cpu", "gpu"]) -> str:
        return backend

    assert wf.run_local(tmp_path, backend="gpu")["train"] == "gpu"


@parametrize_backends
def test_run_dir(go: Any) -> None:
    wf = Workflow("rundir")

    @wf.job()
    def process(run_dir: RunDir = RunDir()) -> str:  # noqa: B008
        output = run_dir / "results"
        output.mkdir(exist_ok=True)
        (output / "data.csv").write_text("x\n")
        return str(output / "data.csv")

    run = go(wf)
    out = Path(run["process"])
    assert out.read_text() == "x\n"
    assert run.run_dir in out.parents
    assert "run_dir" not in {p["name"] for p in wf.describe()["cli_params"]}


# ---------------------------------------------------------------------- wiring


def _fanout(wf: Workflow) -> None:
    @wf.job()
    def find_files() -> list[str]:
        return ["a.txt", "b.txt", "c.txt"]

    @wf.job(array=True)
    def process(path: Annotated[str, Result(step="find_files")]) -> str:
        return path.upper()


@parametrize_backends
def test_direct(go: Any) -> None:
    wf = Workflow("direct")

    @wf.job()
    def step_a() -> str:
        return "hello"

    @wf.job()
    def step_b(msg: Annotated[str, Result(step="step_a")]) -> str:
        return msg.upper()

    assert go(wf)["step_b"] == "HELLO"


@parametrize_backends
def test_fan_out_and_gather(go: Any) -> None:
    wf = Workflow("fan")
    _fanout(wf)

    @wf.job()
    def report(results: Annotated[list[str], Result(step="process")]) -> str:
        return f"processed {len(results)} files"

    run = go(wf)
    assert run["process"] == ["A.TXT", "B.TXT", "C.TXT"]
    assert run["report"] == "processed 3 files"
    assert run.status(as_dict=True)["steps"]["process"]["total"] == 3


@parametrize_backends
def test_chain(go: Any) -> None:
    wf = Workflow("chain")

    @wf.job()
    def find_files() -> list[str]:
        return [" A ", " B "]

    @wf.job(array=True)
    def step_1(item: Annotated[str, Result(step="find_files")]) -> str:
        return item.lower()

    @wf.job(array=True)
    def step_2(item: Annotated[str, Result(step="step_1")]) -> str:
        return item.strip()

    assert go(wf)["step_2"] == ["a", "b"]
    assert wf.describe()["tasks"][2]["result_deps"] == {
        "item": {"steps": ["step_1"], "mode": "chain"}
    }


@parametrize_backends
def test_broadcast_flag(go: Any) -> None:
    wf = Workflow("bcast")

    @wf.job()
    def load_config() -> dict:  # type: ignore[type-arg]
        return {"threshold": 0.5, "method": "linear"}

    @wf.job()
    def find_files() -> list[str]:
        return ["a.txt", "b.txt", "c.txt"]

    @wf.job(array=True)
    def process(
        path: Annotated[str, Result(step="find_files")],
        config: Annotated[dict, Result(step="load_config", broadcast=True)],  # type: ignore[type-arg]
    ) -> str:
        return f"{path}:{config['method']}"

    assert go(wf)["process"] == ["a.txt:linear", "b.txt:linear", "c.txt:linear"]


@parametrize_backends
def test_type_inferred_broadcast(go: Any) -> None:
    wf = Workflow("bcast2")

    @wf.job()
    def find_images() -> list[str]:
        return ["1.png", "2.png"]

    @wf.job()
    def all_labels() -> list[str]:
        return ["cat", "dog", "bird"]

    @wf.job(array=True)
    def classify(
        image: Annotated[str, Result(step="find_images")],
        labels: Annotated[list[str], Result(step="all_labels")],
    ) -> str:
        return f"{image}:{len(labels)}"

    assert go(wf)["classify"] == ["1.png:3", "2.png:3"]
    modes = wf.describe()["tasks"][-1]["result_deps"]
    assert modes["labels"]["mode"] == "broadcast" and modes["image"]["mode"] == "fanout"


@parametrize_backends
def test_combining_several_upstreams(go: Any) -> None:
    wf = Workflow("concat")

    @wf.job()
    def source_a() -> list[str]:
        return ["a1", "a2"]

    @wf.job()
    def source_b() -> list[str]:
        return ["b1"]

    @wf.job(array=True)
    def process(item: Annotated[str, Result(steps=["source_a", "source_b"])]) -> str:
        return item

    assert go(wf)["process"] == ["a1", "a2", "b1"]


@parametrize_backends
def test_ordering_without_data(go: Any, tmp_path: Path) -> None:
    wf = Workflow("after")
    marker = tmp_path / "setup-done"

    @wf.job()
    def setup(flag: str) -> None:
        time.sleep(0.2)
        Path(flag).write_text("ok")

    @wf.job(after=["setup"])
    def compute(flag: str) -> str:
        return Path(flag).read_text()  # fails unless setup ran first

    assert go(wf, flag=str(marker))["compute"] == "ok"


@pytest.mark.parametrize(
    ("where", "fragments"),
    [
        ("result", ["'process'", "'item'", "'preprae'", "Did you mean 'prepare'?"]),
        ("after", ["'process'", "after", "'preprae'", "Did you mean 'prepare'?"]),
    ],
)
def test_typo_protection(where: str, fragments: list[str]) -> None:
    wf = Workflow("typo")

    @wf.job()
    def prepare() -> list[str]:
        return []

    if where == "result":

        @wf.job(array=True)
        def process(item: Annotated[str, Result(step="preprae")]) -> str:
            return item
    else:

        @wf.job(after=["preprae"])
        def process() -> str:
            return ""

    t0 = time.perf_counter()
    with pytest.raises(ValueError) as info:  # as reflow-hpc raises
        wf.validate()
    assert isinstance(info.value, StepNotFoundError)
    for f in fragments:
        assert f in str(info.value)
    assert time.perf_counter() - t0 < 2


# ---------------------------------------------------------------------- reusable flows


@parametrize_backends
def test_flow_include_with_prefix(go: Any) -> None:
    ingestion = Flow("ingest")

    @ingestion.job()
    def download() -> list[str]:
        return ["file_1", "file_2"]

    @ingestion.job(array=True)
    def validate(item: Annotated[str, Result(step="download")]) -> str:
        return item + "!"

    wf = Workflow("pipeline")
    wf.include(ingestion, prefix="raw")
    wf.include(ingestion, prefix="clean")  # several flows, each with its own prefix
    # reflow-hpc's names: "<prefix>_<task>"
    assert wf.steps == ["raw_download", "raw_validate", "clean_download", "clean_validate"]
    run = go(wf)
    assert run["raw_validate"] == run["clean_validate"] == ["file_1!", "file_2!"]


# ---------------------------------------------------------------------- local execution


@parametrize_backends
def test_run_local_options_and_on_error_continue(go: Any) -> None:
    wf = Workflow("opts2")

    @wf.job()
    def prepare(source: str) -> list[str]:
        return [source, "bad", "c"]

    @wf.job(array=True)
    def work(item: Annotated[str, Result(step="prepare")]) -> str:
        if item == "bad":
            raise RuntimeError("cannot work on bad")
        return item.upper()

    @wf.job()
    def summary(items: Annotated[list[str], Result(step="work")]) -> int:
        return len(items)

    @wf.job()
    def unrelated() -> str:
        return "ran"

    run = go(wf, source="data.csv", max_workers=4, force=True, on_error="continue")
    assert isinstance(run, Run) and isinstance(run, RunReport)
    assert not run.ok
    snap = run.status(as_dict=True)
    assert snap["status"] == "FAILED"
    assert snap["failed_indices"] == {"work": [1]}
    assert snap["steps"]["work"]["state"] == "FAILED"
    assert snap["steps"]["work"]["done"] == 2 and snap["steps"]["work"]["failed"] == 1
    assert snap["steps"]["summary"]["state"] == "CANCELLED"  # downstream of a failure: skipped
    assert "failed elements" in snap["steps"]["summary"]["reason"]
    assert run["unrelated"] == "ran"
    assert run["work"] == ["DATA.CSV", None, "C"]
    assert "cannot work on bad" in snap["steps"]["work"]["errors"][0]["error"]


@parametrize_backends
def test_array_parallelism_is_honoured(go: Any, tmp_path: Path) -> None:
    wf = Workflow("par")
    limit = 2 if go.backend == "local" else 1
    log = tmp_path / "spans"
    log.mkdir()

    @wf.job()
    def prepare() -> list[int]:
        return list(range(8))

    @wf.job(array=True, array_parallelism=limit)
    def process(i: Annotated[int, Result(step="prepare")], spans: str) -> int:
        t0 = time.time()
        time.sleep(0.25)
        Path(spans, str(i)).write_text(f"{t0} {time.time()}")
        return i

    run = go(wf, spans=str(log), max_workers=4)
    assert run["process"] == list(range(8))
    spans = [tuple(map(float, p.read_text().split())) for p in log.iterdir()]
    peak = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert 1 <= peak <= limit, (peak, limit)


def _peak(limit: int | None, run_dir: Path) -> int:
    wf = Workflow("par2")
    active = [0, 0]
    lock = threading.Lock()

    @wf.job()
    def prepare() -> list[int]:
        return list(range(12))

    @wf.job(array=True, array_parallelism=limit)
    def process(i: Annotated[int, Result(step="prepare")]) -> int:
        with lock:
            active[0] += 1
            active[1] = max(active)
        time.sleep(0.15)
        with lock:
            active[0] -= 1
        return i

    wf.run_local(run_dir, max_workers=6)
    return active[1]


def test_unlimited_array_runs_more_at_once_than_a_limited_one(tmp_path: Path) -> None:
    """The contrast that shows the limit is what bounds it (sleeping calls overlap on any
    machine)."""
    limited, free = _peak(2, tmp_path / "a"), _peak(None, tmp_path / "b")
    assert limited <= 2 < free <= 6, (limited, free)


# ---------------------------------------------------------------------- getting started


@parametrize_backends
def test_getting_started(go: Any) -> None:
    wf = Workflow("demo")

    @wf.job(time="00:05:00", mem="1G" if go.backend == "local" else "64M")
    def prepare(count: Annotated[int, Param(help="Number of items")] = 3) -> list[str]:
        return [f"item_{i}" for i in range(count)]

    @wf.job(array=True, time="00:20:00", mem="4G" if go.backend == "local" else "64M")
    def greet(name: Annotated[str, Result(step="prepare")]) -> str:
        return f"Hello, {name}!"

    @wf.job()
    def summarize(greetings: Annotated[list[str], Result(step="greet")]) -> str:
        return f"{len(greetings)} greetings sent"

    run = go(wf)
    assert re.fullmatch(r"demo-\d{8}-[0-9a-f]{4}", run.run_id)
    snap = run.status(as_dict=True)
    assert snap["run_id"] == run.run_id and snap["status"] == "SUCCESS"
    assert json.loads(json.dumps(snap)) == snap
    assert run["summarize"] == "3 greetings sent"
    assert go(wf, count=10)["summarize"] == "10 greetings sent"


# ---------------------------------------------------------------------- python reference


def _reference() -> Workflow:
    wf = Workflow("my_pipeline")

    @wf.job(cpus=1, time="01:00:00", mem="8G")
    def step_a(x: Annotated[str, Param(help="Input")]) -> list[str]:
        return [x, x + "_copy"]

    @wf.job(array=True)
    def step_b(item: Annotated[str, Result(step="step_a")]) -> str:
        return item.upper()

    return wf


def test_reference_run_local_and_submit(tmp_path: Path) -> None:
    wf = _reference()
    wf.validate()
    run = wf.run_local(
        run_dir=tmp_path / "test", x="hello", max_workers=1, force=False, on_error="stop"
    )
    assert run["step_b"] == ["HELLO", "HELLO_COPY"]
    sub = wf.submit(
        run_dir=tmp_path / "run1",
        x="hello",
        executor="local",
        force=False,
        force_tasks=["step_a"],
        verify=True,
    )
    assert sub.run_dir == tmp_path / "run1"
    assert sub.wait(60)["step_b"] == ["HELLO", "HELLO_COPY"]
    assert sub.status(as_dict=True)["status"] == "SUCCESS"


def test_reference_validate_raises_value_errors() -> None:
    wf = Workflow("bad")

    @wf.job()
    def a(x: Annotated[int, Result(step="b")]) -> int:
        return x

    @wf.job()
    def b(y: Annotated[int, Result(step="a")]) -> int:
        return y

    with pytest.raises(ValueError) as info:
        wf.validate()
    assert isinstance(info.value, WorkflowDefinitionError)
    assert "a → b → a" in str(info.value) or "b → a → b" in str(info.value)


def test_reference_describe_is_json_and_text() -> None:
    wf = _reference()
    d = wf.describe()
    assert isinstance(d, dict) and d["name"] == "my_pipeline"
    assert [t["name"] for t in d["tasks"]] == ["step_a", "step_b"]
    assert d["tasks"][1]["dependencies"] == ["step_a"]
    assert json.loads(json.dumps(d)) == d
    assert str(d).splitlines() == [
        "step_a [job]: x: str (param x)",
        "step_b [array job]: item <- fanout step_a",
    ]


# ---------------------------------------------------------------------- the Run handle on Ray


@pytest.mark.slow
def test_on_ray_a_call_past_its_time_is_cancelled(ray_cluster: str, tmp_path: Path) -> None:
    wf = Workflow("raytime")

    @wf.job()
    def items() -> list[int]:
        return [0, 1]

    @wf.job(array=True, time="0:2", mem="64M")
    def spin(x: Annotated[int, Result(step="items")]) -> int:
        while x == 1:
            pass
        return x

    t0 = time.monotonic()
    run = wf.run(tmp_path, backend="ray", address=ray_cluster, on_error="continue")
    assert time.monotonic() - t0 < 30
    assert run["spin"] == [0, None]
    assert "element 1 of array job 'spin' ran past its time limit '0:2'" in str(
        run.steps["spin"].failures[1]
    )


@pytest.mark.slow
def test_on_ray_submit_cancel_and_retry(ray_cluster: str, tmp_path: Path) -> None:
    wf = Workflow("raysub")

    @wf.job()
    def items() -> list[int]:
        return list(range(16))

    @wf.job(array=True, mem="64M")
    def slow(x: Annotated[int, Result(step="items")]) -> int:
        time.sleep(0.5)
        return x

    run = wf.submit(tmp_path, executor="ray", address=ray_cluster)
    deadline = time.monotonic() + 60
    while run.status(as_dict=True)["steps"]["slow"]["done"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    t0 = time.monotonic()
    run.cancel()
    run.wait(30)
    assert time.monotonic() - t0 < 10
    snap = run.status(as_dict=True)
    assert snap["status"] == "CANCELLED" and snap["backend"] == "ray"
    assert 2 <= snap["steps"]["slow"]["done"] < 16
    assert run.retry() > 0  # reflow-hpc's count of the instances re-run
    run.wait(120)
    assert run.ok and run["slow"] == list(range(16))


@parametrize_backends
def test_demo_flow_with_array_job(go: Any) -> None:
    """reflow-hpc's demo_flow.py: ``@wf.array_job(...)``, a RunDir in every task, a 1:1 chain."""
    wf = Workflow("demo")

    @wf.job()
    def prepare(
        start: Annotated[str, Param(help="Start date, ISO-8601")],
        model: Annotated[Literal["era5", "icon", "cmip6"], Param(help="Model")] = "era5",
        run_dir: RunDir = RunDir(),  # noqa: B008
    ) -> list[str]:
        return [f"{start}-a.nc", f"{start}-b.nc"]

    @wf.array_job(cpus=1, time="00:10:00")
    def convert(
        nc_file: Annotated[str, Result(step="prepare")],
        bucket: Annotated[str, Param(help="Target S3 bucket")],
        run_dir: RunDir = RunDir(),  # noqa: B008
    ) -> str:
        return f"s3://{bucket}/{nc_file}.zarr"

    @wf.array_job()
    def validate(zarr_path: Annotated[str, Result(step="convert")]) -> str:
        return f"ok:{zarr_path}"

    @wf.job()
    def finalize(validated: Annotated[list[str], Result(step="validate")]) -> str:
        return f"{len(validated)} done"

    run = go(wf, start="2025-01-01", bucket="b")
    assert run["validate"] == ["ok:s3://b/2025-01-01-a.nc.zarr", "ok:s3://b/2025-01-01-b.nc.zarr"]
    assert run["finalize"] == "2 done"
    with pytest.raises(WorkflowDefinitionError, match="takes no array= option"):
        wf.array_job(array=False)
