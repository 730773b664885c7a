"""The reflow-hpc documentation's blocks, row by row: what ``test_hpc_docs.py`` does with each
```python block (:data:`PY`) and each shell block (:data:`SH`, running the scripts of
:data:`SCRIPTS`) of the pages it reads. A plain module (no sdist needed to import it): the
runner, and what every row means, are ``test_hpc_docs.py``'s docstring.

Every block of those pages is claimed by exactly one row: run, skip (with its reason) or
``xfail(strict=True)`` (with what is missing)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FRESH", "PY", "SCHEDULER", "SCRIPTS", "SH", "Row", "Sh"]

# -- python blocks ----------------------------------------------------------------------------

#: the one reason a block needs a batch scheduler: PBSExecutor runs (tests/workflow/
#: test_batch_schedulers.py drives it through stand-ins of qsub/qstat/qdel), these blocks submit
#: to a real cluster's paths (/opt/pbs/bin/qsub, /scratch)
SCHEDULER = "needs a real PBS (these blocks name a cluster's qsub and /scratch)"


@dataclass(frozen=True)
class Row:
    marker: str  # picks the block: a string that occurs in exactly one block of the page
    kind: str = "run"  # run | skip | xfail
    why: str = ""
    before: str = ""  # code run in the page's namespace before the block
    after: str = ""  # a check run after it (what the prose says)
    edits: tuple[tuple[str, str], ...] = ()  # (old, new) in the block's text, each must apply


#: the config blocks write ``$XDG_CONFIG_HOME/reflow/config.toml``: a tmp dir, not ~/.config
XDG_TMP = (
    "import os as _os\n"
    "_xdg_old = _os.environ.get('XDG_CONFIG_HOME')\n"
    "_os.environ['XDG_CONFIG_HOME'] = str(TMP / 'xdg')\n"
)
XDG_BACK = (
    "if _xdg_old is None:\n    _os.environ.pop('XDG_CONFIG_HOME', None)\n"
    "else:\n    _os.environ['XDG_CONFIG_HOME'] = _xdg_old\n"
)

#: a fresh workflow for a block that starts a new example on a page that re-defines job names
FRESH = 'wf = Workflow("docs")\n'

PY: dict[str, list[Row]] = {
    "README.md": [
        Row(
            'wf = Workflow("etl")',
            after="""
                assert list(wf.plan().order) == ["extract", "transform", "load"]
                etl = wf
            """,
        ),
        Row(
            "def load_config() -> dict:",
            before=FRESH + "@wf.job()\ndef find_files() -> list[str]:\n    return ['a', 'b']\n",
            after="""
                r = wf.run_local(run_dir=TMP / "bc")
                assert r["process"] == ["a:0.5", "b:0.5"]
                wf = etl
            """,
        ),
        Row(
            "def ingest(",
            before="wf = etl\n",
            after="assert 'ingest' in wf.plan().order",
        ),
        Row(
            "run = wf.run_local(",
            after="""
                assert run["load"] == "loaded 5 items" and run["ingest"] == "data.csv"
            """,
        ),
        Row('executor="pbs"', "skip", SCHEDULER),
    ],
    "docs/getting-started.md": [
        Row('wf = Workflow("demo")'),
        Row("def prepare() -> list[str]:"),
        Row("def greet("),
        Row("def summarize("),
        Row('if __name__ == "__main__":'),
        Row(
            'run = wf.run_local(run_dir="/tmp/demo")',
            after="""
                assert run["summarize"] == "3 greetings sent"
                snap = run.status(as_dict=True)
                assert snap["status"] == "SUCCESS" and snap["steps"]["greet"]["done"] == 3
            """,
        ),
        Row(
            "# Submit to your cluster scheduler",
        ),
        Row(
            "count: Annotated[int",
            before=FRESH,
            after="""
                assert wf.run_local(TMP / "count", params={"count": 2})["prepare"] == [
                    "item_0", "item_1"]
            """,
        ),
    ],
    "docs/guide.md": [
        Row(
            "def process(run_dir: RunDir = RunDir()) -> str:\n    return str(run_dir",
            before=FRESH,
            after="""
                assert wf.run_local(TMP / "g0")["process"].endswith("output.txt")
            """,
        ),
        Row("array_parallelism=10,", "skip", "fragment: a decorator without its function"),
        Row(
            "def ingest(source: str, limit: int = 100)",
            before=FRESH,
            after="""
                r = wf.run_local(TMP / "g2", params={"source": "input.csv", "limit": 200})
                assert r["ingest"] == "input.csv:200"
            """,
        ),
        Row(
            'Param(help="Input file", short="-s")',
            before=FRESH,
            after="""
                assert wf.run_local(TMP / "g4", params={"source": "input.csv"})["ingest"] == (
                    "input.csv")
                assert "-s SOURCE" in cli_help(wf)
            """,
        ),
        Row(
            "def step_a(\n    chunk",
            before=FRESH,
            after="""
                text = cli_help(wf)
                assert "--step-a-chunk" in text and "--step-b-chunk" in text
            """,
        ),
        Row(
            'Literal["cpu", "gpu", "tpu"]',
            before=FRESH,
            after="""
                assert "{cpu,gpu,tpu}" in cli_help(wf)
                assert wf.run_local(TMP / "g6", params={"backend": "gpu"})["train"] == "gpu"
            """,
        ),
        Row(
            'output = run_dir / "results"',
            before=FRESH,
            after="""
                out = wf.run_local(TMP / "g7")["process"]
                assert out.endswith("results/data.csv") and Path(out).parent.is_dir()
            """,
        ),
        Row(
            'def step_a() -> str:\n    return "hello"',
            before=FRESH,
            after='assert wf.run_local(TMP / "g8")["step_b"] == "HELLO"',
        ),
        Row(
            'def process(path: Annotated[str, Result(step="find_files")]) -> str:',
            before=FRESH,
            after="""
                assert wf.run_local(TMP / "g9")["process"] == ["A.TXT", "B.TXT", "C.TXT"]
            """,
        ),
        Row(
            "def report(",
            after='assert wf.run_local(TMP / "g10")["report"] == "processed 3 files"',
        ),
        Row(
            "def step_1(",
            after='assert wf.run_local(TMP / "g11")["step_2"] == ["a.txt", "b.txt", "c.txt"]',
        ),
        Row(
            '"method": "linear"',
            before=FRESH,
            after="""
                assert wf.run_local(TMP / "g12")["process"][0] == "a.txt:linear"
            """,
        ),
        Row(
            "def all_labels()",
            before=FRESH + "@wf.job()\ndef find_images() -> list[str]:\n    return ['x.png']\n",
            after="""
                assert wf.run_local(TMP / "g13")["classify"] == [
                    "classified x.png into ['cat', 'dog', 'bird']"]
            """,
        ),
        Row(
            'Result(steps=["source_a", "source_b"])',
            before=FRESH
            + "@wf.job()\ndef source_a() -> list[str]:\n    return ['a1', 'a2']\n"
            + "@wf.job()\ndef source_b() -> list[str]:\n    return ['b1']\n",
            after="""
                assert wf.run_local(TMP / "g14")["process"] == ["a1", "a2", "b1"]
            """,
        ),
        Row(
            'after=["setup"]',
            before=FRESH + "@wf.job()\ndef setup() -> None:\n    pass\n",
            after="""
                assert list(wf.plan().order) == ["setup", "compute"]
                assert wf.run_local(TMP / "g15")["compute"] == "done"
            """,
        ),
        Row(
            'Result(step="preprae")',
            before=FRESH + "@wf.job()\ndef prepare() -> list[str]:\n    return []\n",
            after="""
                try:
                    wf.validate()
                except ValueError as exc:
                    assert "preprae" in str(exc) and "'prepare'" in str(exc), str(exc)
                else:
                    raise AssertionError("no error for a misspelt step")
            """,
        ),
        Row(
            'ingestion = Flow("ingest")',
            after="""
                assert sorted(wf.plan().order) == ["raw_download", "raw_validate"]
            """,
        ),
        Row(
            'run = wf.run_local(run_dir="/tmp/test")\nprint(',
            after='assert run.status(as_dict=True)["status"] == "SUCCESS"',
        ),
        Row(
            "force=True,              # skip cache",
            before=FRESH + "@wf.job()\ndef ingest(source: str) -> str:\n    return source\n",
            after='assert run["ingest"] == "data.csv"',
        ),
        Row(
            "array_parallelism=20",
            before=FRESH + "@wf.job()\ndef prepare() -> list[str]:\n    return ['p', 'q']\n",
            after='assert wf.run_local(TMP / "g20")["process"] == ["p", "q"]',
        ),
    ],
    "docs/python-reference.md": [
        Row("Workflow,       # main entry point"),
        Row('wf = Workflow("my_pipeline")'),
        Row('def step_a(x: Annotated[str, Param(help="Input")])'),
        Row('executor="pbs",                # scheduler', "skip", SCHEDULER),
        Row(
            'x="hello",                     # same parameters as submit',
            after='assert run["step_b"] == ["HELLO", "HELLO_COPY"]',
        ),
        Row("wf.validate()    # raises"),
        Row(
            'preprocessing = Flow("preprocess")',
            after='assert "pre_download" in wf.plan().order',
        ),
        Row('if __name__ == "__main__":'),
        Row(
            "wf.describe()          # JSON-safe dict",
            after="assert isinstance(wf.describe(), dict) and json.dumps(wf.describe())",
        ),
        Row(
            'run = wf.submit(run_dir="/tmp/r", x="hello")',
            before=FRESH
            + "@wf.job()\ndef step_a(x: str) -> list[str]:\n    return [x]\n"
            + "@wf.job(array=True)\n"
            + "def step_b(item: Annotated[str, Result(step='step_a')]) -> str:\n"
            + "    return item\n",
        ),
        Row(
            "wf.cancel_runs(",
            before="import tempfile\n"
            + "from reflow.workflow import SqliteStore\n"
            + "_tmp = tempfile.mkdtemp()\n"
            + "store = SqliteStore(_tmp + '/runs.db')\n"
            + "runs = [wf.submit(run_dir=f'{_tmp}/r{i}', x='hi', store=store) for i in range(3)]\n"
            + "[r.wait() for r in runs]\n",
            edits=(('["run-001", "run-002", "run-003"]', "[r.run_id for r in runs]"),),
            after="assert {r.run_id for r in runs} <= {x['run_id'] for x in store.list_runs()}",
        ),
        Row(
            "store.list_runs(",
            edits=(('"my_pipeline"', "wf.name"),),
            after="assert store.list_runs(graph_name=wf.name, limit=2) and not store.list_runs("
            + "graph_name=wf.name, status='FAILED')",
        ),
        Row("SlurmExecutor, PBSExecutor", "skip", SCHEDULER),
        Row(
            "from reflow import Config, load_config",
            before=XDG_TMP,
            after='assert wf.config is config and (TMP / "xdg/reflow/config.toml").is_file()',
        ),
        Row(
            "ensure_config_exists()",
            before=XDG_TMP + '(TMP / "xdg/reflow/config.toml").unlink()\n',
            after='assert "[executor]" in (TMP / "xdg/reflow/config.toml").read_text()\n'
            + XDG_BACK,
        ),
    ],
}


# -- shell blocks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sh:
    marker: str
    kind: str = "run"
    why: str = ""
    script: str = ""  # which script (SCRIPTS key) the commands run
    setup: tuple[str, ...] = ()  # commands run first (not from the page), '!' prefix: may fail
    expect: tuple[str, ...] = ()  # fragments of the commands' stdout, in order
    status: int = 0  # every command's exit status
    edits: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str | None], ...] = ()  # files to write (None: remove) before
    many: bool = False  # the marker picks several identical blocks (one reason for all)
    synopsis: bool = False  # a usage synopsis: each line's subcommand is run with --help


#: scripts built from a page's python blocks (page, markers of its blocks in order); the
#: ``if __name__ == "__main__"`` block goes last
SCRIPTS: dict[str, tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "etl": ("README.md", ('wf = Workflow("etl")',), ()),
    "etl-flaky": (
        "README.md",
        ('wf = Workflow("etl")',),
        (
            (
                "    return chunk.upper()",
                '    if chunk == "chunk_3" and Path("FAIL").exists():\n'
                '        raise RuntimeError("chunk_3 is bad")\n'
                "    return chunk.upper()",
            ),
        ),
    ),
    "etl-ingest": ("README.md", ('wf = Workflow("etl")', "def ingest("), ()),
    "demo": (
        "docs/getting-started.md",
        ('wf = Workflow("demo")', "def prepare() -> list[str]:", "def greet(", "def summarize("),
        (),
    ),
    "demo-count": (
        "docs/getting-started.md",
        ('wf = Workflow("demo")', "count: Annotated[int", "def greet(", "def summarize("),
        (),
    ),
}

SH: dict[str, list[Sh]] = {
    "README.md": [
        Sh("pip install reflow-hpc\n", "skip", "installs the seed", many=True),
        Sh(
            "submit --run-dir /scratch/run1 --source data.csv\nCreated run",
            script="etl",
            expect=("Created run etl-", "in ", "load"),
        ),
        Sh(
            "submit --help",
            script="etl-ingest",
            expect=("--source SOURCE", "(required)", "--limit LIMIT", "(default: 100)"),
        ),
        Sh("submit    --run-dir DIR", script="etl", synopsis=True),
        Sh(
            "ensure_config_exists",
            "skip",
            "a python -c command, not a pipeline's (python-reference.md's block runs it)",
        ),
        Sh("git clone", "skip", "clones and tests the seed itself"),
    ],
    "docs/getting-started.md": [
        Sh("pip install reflow-hpc", "skip", "installs the seed"),
        Sh(
            "python pipeline.py dag\nprepare -> greet",
            script="demo",
            expect=("prepare -> greet -> summarize", "Created run demo-", "summarize"),
        ),
        Sh("--count 10", script="demo-count", expect=("Created run demo-",)),
    ],
    "docs/cli-reference.md": [
        Sh(
            "submit --run-dir /scratch/r1 --source data.csv\n",
            script="etl-flaky",
            expect=("Created run etl-",),
        ),
        Sh("data.csv --force\n", script="etl-flaky", expect=("Created run",)),
        Sh(
            "--force-tasks extract transform",
            script="etl-flaky",
            expect=("Created run",),
        ),
        Sh(
            "status RUN_ID --task process",
            script="etl-flaky",
            edits=(("--task process", "--task transform"),),
            expect=("transform", "transform"),
        ),
        Sh(
            "FAILED=2, SUCCESS=298",
            script="etl-flaky",
            files=(("FAIL", ""),),
            setup=(("submit --run-dir /scratch/r-fail --source data.csv", 1),),
            expect=("transform", "[3]"),
        ),
        Sh(
            "status RUN_ID --errors",
            script="etl-flaky",
            expect=("[3]", "chunk_3 is bad"),
        ),
        Sh(
            "status RUN_ID --json",
            script="etl-flaky",
            expect=('"failed_instances"', '"transform"'),
        ),
        Sh(
            "cancel RUN1 RUN2 RUN3 --yes",
            script="etl-flaky",
            edits=(("--task process", "--task transform"),),
        ),
        Sh(
            "retry RUN_ID --task process",
            script="etl-flaky",
            files=(("FAIL", None),),
            edits=(("--task process", "--task transform"),),
            expect=("succeeded",),
        ),
        Sh(
            "runs --since 2025-03-01 --until",
            script="etl-flaky",
            expect=("etl-", "etl-", "etl-", "No runs found", "etl-", "No runs found"),
        ),
        Sh(
            "python pipeline.py dag\n",
            script="etl-flaky",
            expect=("extract -> transform -> load",),
        ),
        Sh(
            "python pipeline.py describe",
            script="etl-flaky",
            expect=('"etl"', '"transform"'),
        ),
    ],
}
