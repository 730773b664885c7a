"""README.md tells the truth: its code blocks run as written and do what the text says.

Blocks are read from README.md itself (found by a marker string each, so rewording the prose
around them does not matter). Every ```python / ```sh / ```c block must be claimed below,
either by a test that runs it or by an explicit skip with a reason, so a new block cannot
slip in untested.

Changes made to run a block here, each asserted to apply (so a README edit shows up):

* guest build: ``targets=["all"]`` -> ``targets=["wasm32"]`` (all six targets take over a
  minute on a cold zig cache; the native build is exercised by the CLI test and other tests);
* CLI: ``build`` gets ``--triple wasm32-unknown-unknown --triple x86_64-unknown-linux-gnu``
  (the two triples the following ``strip`` needs), placeholders ``PACK``/``KEY``/``rfl_…``
  are filled in, ``[--json]`` is run both ways;
* registry: port 8700 -> a free port on 127.0.0.1 (``$REFLOW_REGISTRY`` names it for ``yank``,
  which relies on the default), the server runs in the background and is stopped at the end;
* HOME, REFLOW_CACHE_DIR and REFLOW_TRUST_DIR point into tmp dirs throughout.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import reflow
from reflow import Actor, Message, Network, PortTypeError, Stream

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
PORTABLE = "wasm32-unknown-unknown"
STRIP_TRIPLE = "x86_64-unknown-linux-gnu"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
BLOCKS: list[tuple[str, str]] = [(m.group(1), m.group(2)) for m in _FENCE.finditer(README)]

# -- which test owns which block ---------------------------------------------------------------

#: (language, marker) -> what covers it. Each marker must pick exactly one block.
CLAIMS: dict[tuple[str, str], str] = {
    ("sh", "pip install -e"): "skipped: installs into the environment and runs the whole suite "
    "(.ci/run does exactly that; reflow-demo is tests/test_demo.py)",
    ("python", "class Doubler(Actor)"): "test_quick_start_*",
    ("python", "class Lookup(Actor)"): "tests/test_policies_readme.py",
    ("python", "class Ledger(Actor)"): "tests/test_durable_readme.py",
    ("bash", "export PGPASSWORD"): "tests/registry/test_storage_backends.py (serve on "
    "PostgreSQL + S3, against servers the tests start)",
    ("python", 'net.collect("a", "out")'): "test_collect_and_run",
    ("python", "class Sum(Actor)"): "test_actor_sum_*",
    ("python", "compose_graphs({"): "test_compose_graphs_snippet",
    ("python", "Stream.create("): "test_streams_*",
    ("python", "from reflow.testing import run_tick"): "test_testing_harness",
    ("c", "acme/doubler"): "test_guest_actor_build_and_run",
    ("python", "build_guest("): "test_guest_actor_build_and_run",
    ("python", "default_engine().load("): "test_guest_actor_build_and_run",
    ("python", 'reflow.load_pack("dist/'): "test_packs_snippet",
    ("sh", "reflow-pack new my-pack"): "test_cli_block",
    ("sh", "reflow-registry serve"): "test_registry_blocks",
    ("python", 'registry="http://127.0.0.1:8700"'): "test_registry_blocks",
    ("sh", "reflow-pack openapi"): "tests/tools/test_openapi_pack.py runs the same verb "
    "and flags (one spec with --sign; --all over ../shared/openapi with --auth bearer)",
    ("python", "from reflow.workflow import Workflow"): "test_workflow_snippet",
    ("sh", "wordcount.py submit --run-dir"): "tests/workflow/test_hpc_cli.py runs each line "
    "(test_readme_cli_lines)",
    ("sh", "reflow-server --token"): "tests/server/test_server_cli.py starts this command (with a "
    "fixed token and a free port)",
    ("sh", "reflow-server --otlp"): "tests/server/test_tracing.py starts reflow-server --otlp "
    "against its OTLP/HTTP receiver (test_the_cli_exports_traces_to_the_otlp_url)",
    ("sh", "reflow-pack compat api-services"): "tests/compat/test_sdk_api_ids.py runs the "
    "verb; tests/compat/test_sdk_tutorials.py builds that pack, trusts its key and runs "
    "tutorial 07's pipeline.py with REFLOW_PACK_API_SERVICES",
    ("sh", "tests/bench/run_all.py"): "tests/test_bench_smoke.py runs every benchmark with "
    "--smoke, and run_all.py itself",
}


def block(lang: str, marker: str) -> str:
    found = [code for (lg, code) in BLOCKS if lg == lang and marker in code]
    assert len(found) == 1, f"README: expected one ```{lang} block containing {marker!r}"
    return found[0]


def replaced(code: str, old: str, new: str) -> str:
    assert old in code, f"README block changed: {old!r} not found"
    return code.replace(old, new)


def test_every_readme_block_is_claimed() -> None:
    claimed = set()
    for lang, marker in CLAIMS:
        code = block(lang, marker)
        claimed.add((lang, code))
    unclaimed = [f"```{lg}\n{code[:80]}..." for (lg, code) in BLOCKS if (lg, code) not in claimed]
    assert not unclaimed, "README blocks no test covers (add them to CLAIMS):\n" + "\n".join(
        unclaimed
    )


# -- helpers -------------------------------------------------------------------------------------


def run_block(code: str, ns: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """exec a README block; returns its namespace and what it printed (from any thread)."""
    ns = {"__name__": "__readme__"} if ns is None else ns
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), ns)
    return ns, out.getvalue()


QUICK_START = block("python", "class Doubler(Actor)")
#: The quick start up to (not including) ``net.start()``: a wired network that has not run.
QUICK_SETUP = QUICK_START[: QUICK_START.index("net.start()")]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Trust store and pack cache in tmp (inherited by subprocesses)."""
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    return tmp_path


# -- Quick start -------------------------------------------------------------------------------


def test_quick_start_prints_42_once_the_graph_had_time_to_run() -> None:
    # "# ... later:" -- here: wait for idle (run() on a started network waits for it)
    code = replaced(QUICK_START, "# ... later:", "net.run(timeout=10)")
    ns, printed = run_block(code)
    assert printed == "got: {'data': 42, 'type': 'Integer'}\n"
    ns["net"].shutdown()  # idempotent: the block already called it


def test_quick_start_as_written_prints_42() -> None:
    for _ in range(20):
        _, printed = run_block(QUICK_START)
        assert printed == "got: {'data': 42, 'type': 'Integer'}\n"


def test_collect_and_run() -> None:
    # read in order: the quick start (which shuts its network down), then this block
    ns, _ = run_block(QUICK_START)
    ns, printed = run_block(block("python", 'net.collect("a", "out")'), ns)
    try:
        assert printed == "got: {'data': 42, 'type': 'Integer'}\n[42] 2 []\n"
        assert "# [42] 2 []" in block("python", 'net.collect("a", "out")')
        summary = ns["summary"]
        assert summary.ok and summary.node_ticks == {"a": 1, "b": 1}
    finally:
        ns["net"].shutdown()


# -- Actors -----------------------------------------------------------------------------------


def _sum_class() -> type[Actor]:
    ns, _ = run_block(block("python", "class Sum(Actor)"), {"Actor": Actor, "Message": Message})
    return ns["Sum"]


def test_actor_sum_waits_for_both_ports() -> None:
    with Network() as net:
        net.register_actor("sum", _sum_class()())
        net.add_node("s", "sum")
        out = net.collect("s", "sum")
        net.add_initial("s", "a", Message.integer(2))
        net.add_initial("s", "a", Message.integer(5))
        net.add_initial("s", "b", Message.integer(3))
        first = net.run(timeout=10)
        assert out.values() == [5] and first.ticks == 1  # 5 waits on 'a' for a 'b'
        net.add_initial("s", "b", Message.integer(10))
        net.run(timeout=10)
        assert out.values() == [5, 15]


def test_actor_sum_checks_inport_types_when_connected() -> None:
    class Text(Actor):
        component = "text"
        inports: list[str] = []
        outports = ["out"]
        outport_types = {"out": "String"}

        def run(self, ctx: Any) -> None:
            ctx.done({"out": Message.string("x")})

    with Network() as net:
        net.register_actor("sum", _sum_class()())
        net.register_actor("text", Text())
        net.add_node("s", "sum")
        net.add_node("t", "text")
        with pytest.raises(PortTypeError, match="accepts Integer"):
            net.add_connection("t", "out", "s", "a")
        net.add_connection("t", "out", "s", "b")  # 'b' declares no type


def test_actor_sum_async_variant() -> None:
    # "# or: async def run(self, ctx)"
    code = replaced(
        block("python", "class Sum(Actor)"),
        "    def run(self, ctx):",
        "    async def run(self, ctx):",
    )
    ns, _ = run_block(code, {"Actor": Actor, "Message": Message})
    with Network() as net:
        net.register_actor("sum", ns["Sum"]())
        net.add_node("s", "sum")
        out = net.collect("s", "sum")
        net.add_initial("s", "a", Message.integer(40))
        net.add_initial("s", "b", Message.integer(2))
        net.run(timeout=10)
        assert out.values() == [42]


# -- Streams -----------------------------------------------------------------------------------

STREAMS = block("python", "Stream.create(")
PRODUCER, CONSUMER = (textwrap.dedent(part) for part in STREAMS.split("\n\n"))


def _stream_net(frames: list[bytes], consumer: str) -> dict[str, Any]:
    """The README's producer lines in a sync source (frame1, frame2, ... sent as written,
    more frames sent the same way), its consumer lines in a ``consumer`` actor
    ("sync", "async": the ``async for`` alternative, "worker")."""
    producer_code = PRODUCER
    if len(frames) > 2:
        producer_code = replaced(
            producer_code,
            "s.send_bytes(frame1); s.send_bytes(frame2); s.end()",
            "for f in frames: s.send_bytes(f)\ns.end()",
        )
    seen: dict[str, Any] = {}

    class Camera(Actor):
        component = "camera"
        inports: list[str] = []
        outports = ["out"]

        def run(self, ctx: Any) -> None:
            ns = {
                "Stream": Stream,
                "ctx": ctx,
                "frames": frames,
                "frame1": frames[0],
                "frame2": frames[1],
            }
            exec(compile(producer_code, "README.md", "exec"), ns)
            ctx.done()

    consumer_code = CONSUMER
    if consumer == "async":
        consumer_code = replaced(
            consumer_code,
            "for chunk in reader: ...",
            "async for chunk in reader: chunks.append(chunk)",
        )
    else:
        consumer_code = replaced(
            consumer_code, "for chunk in reader: ...", "for chunk in reader: chunks.append(chunk)"
        )

    class Viewer(Actor):
        component = "viewer"
        inports = ["frames"]
        outports: list[str] = []
        execution = "worker" if consumer == "worker" else "inline"

        def _ns(self, ctx: Any) -> dict[str, Any]:
            return {"ctx": ctx, "chunks": []}

        def _keep(self, ns: dict[str, Any], ctx: Any) -> None:
            seen.update(frame=ns["frame"], chunks=ns["chunks"], after=ns["reader"].recv(0)["kind"])
            ctx.done()

    if consumer == "async":
        code = compile(consumer_code, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)

        class AsyncViewer(Viewer):
            async def run(self, ctx: Any) -> None:
                ns = self._ns(ctx)
                pending = eval(code, ns)
                if pending is not None:
                    await pending
                self._keep(ns, ctx)

        viewer: Actor = AsyncViewer()
    else:
        code = compile(consumer_code, "README.md", "exec")

        class SyncViewer(Viewer):
            def run(self, ctx: Any) -> None:
                ns = self._ns(ctx)
                exec(code, ns)
                self._keep(ns, ctx)

        viewer = SyncViewer()

    with Network() as net:
        net.register_actor("camera", Camera())
        net.register_actor("viewer", viewer)
        net.add_node("cam", "camera")
        net.add_node("view", "viewer")
        net.add_connection("cam", "out", "view", "frames")
        summary = net.run(timeout=20)
    assert summary.ok, summary.failures
    return seen


@pytest.mark.parametrize("consumer", ["sync", "async", "worker"])
def test_streams_snippet_as_written(consumer: str) -> None:
    seen = _stream_net([b"frame-1", b"frame-2"], consumer)
    assert seen["frame"] == {"kind": "data", "data": b"frame-1"}  # reader.recv(500)
    assert seen["chunks"] == [b"frame-2"]  # the loop reads the rest, up to "end"
    assert seen["after"] == "closed"


@pytest.mark.parametrize("consumer", ["async", "worker"])
def test_streams_more_frames_than_the_buffer(consumer: str) -> None:
    # buffer_size=4 and 50 frames: the producer waits for the reader many times
    frames = [b"frame-%d" % i for i in range(50)]
    seen = _stream_net(frames, consumer)
    assert [seen["frame"]["data"], *seen["chunks"]] == frames


_SYNC_STREAM_HANG = """
from reflow import Actor, Network, Stream

class Camera(Actor):
    component = "camera"; inports = []; outports = ["out"]
    def run(self, ctx):
        s = Stream.create(buffer_size=4, content_type="image/jpeg")
        ctx.send({"out": s.into_message()})
        for i in range(10):
            s.send_bytes(b"frame")
        s.end(); ctx.done()

class Viewer(Actor):
    component = "viewer"; inports = ["frames"]; outports = []
    def run(self, ctx):
        n = sum(1 for _ in ctx.inputs["frames"].take_stream())
        print("frames:", n); ctx.done()

net = Network()
net.register_actor("camera", Camera()); net.register_actor("viewer", Viewer())
net.add_node("cam", "camera"); net.add_node("view", "viewer")
net.add_connection("cam", "out", "view", "frames")
net.run(timeout=3)
"""


def test_streams_sync_consumer_of_a_sync_producer_fails_instead_of_hanging(home: Path) -> None:
    # README: "A consumer that reads a stream to its end while a sync producer fills it must be
    # async or a worker" -- otherwise both ticks fail with a StreamError that says so.
    code = _SYNC_STREAM_HANG + "print(sorted(f.node for f in net.failures))\n"
    code = code.replace("net.run(timeout=3)", "summary = net.run(timeout=3)")
    code += "print(summary.failures[0].error)\n"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        pytest.fail("hung: neither finished nor raised RunTimeout")
    assert proc.returncode == 0, proc.stderr
    assert "['cam', 'view']" in proc.stdout
    assert "make one of them async or execution='worker'" in proc.stdout


# -- Testing actors ----------------------------------------------------------------------------


def test_testing_harness() -> None:
    # Doubler from the quick start, then the block (its assert is the check)
    ns, _ = run_block(QUICK_SETUP)
    run_block(block("python", "from reflow.testing import run_tick"), ns)
    assert ns["result"].failures == []


# -- Writing a guest actor ---------------------------------------------------------------------


def test_guest_actor_build_and_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ziglang")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "doubler.c").write_text(block("c", "acme/doubler"))
    # targets=["all"] works but takes over a minute on a cold zig cache: wasm32 only here
    build = replaced(block("python", "build_guest("), 'targets=["all"]', 'targets=["wasm32"]')
    ns, _ = run_block(build)
    assert ns["built"] == {"wasm32": Path("build/wasm32/doubler.wasm")}
    assert (tmp_path / "build/wasm32/doubler.wasm").is_file()
    run_block(block("python", "default_engine().load("), ns)
    try:
        assert ns["out"].values() == [42]  # "# out.values() == [42]"
    finally:
        ns["net"].shutdown()


# -- CLI, Packs, Registry: one workspace ---------------------------------------------------------


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]

    def sh(self, line: str, *, ok: bool = True, timeout: float = 120) -> str:
        proc = subprocess.run(
            ["bash", "-c", line],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if ok:
            assert proc.returncode == 0, f"$ {line}\n{proc.stdout}{proc.stderr}"
        else:
            assert proc.returncode != 0, f"$ {line} should have failed\n{proc.stdout}"
        return proc.stdout + proc.stderr

    def python(self, code: str, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, f"{code}\n{proc.stdout}{proc.stderr}"
        return proc.stdout


def sh_lines(code: str) -> list[str]:
    """The block's commands, comments dropped (a '#' only starts one after two spaces)."""
    lines = []
    for raw in code.splitlines():
        line = re.split(r"\s{2,}#", raw, maxsplit=1)[0].strip()
        if line:
            lines.append(line)
    return lines


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The README's CLI block, run top to bottom in a fresh HOME: leaves a signed
    ``dist/my-pack-0.1.0.rflpack`` whose key is trusted."""
    pytest.importorskip("ziglang")
    root = tmp_path_factory.mktemp("readme-cli")
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "REFLOW_CACHE_DIR": str(root / "cache"),
        "REFLOW_TRUST_DIR": str(root / "trust"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # keep zig's cache where it was (HOME moved): a cold one costs seconds per triple
        "ZIG_GLOBAL_CACHE_DIR": os.environ.get(
            "ZIG_GLOBAL_CACHE_DIR",
            str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "zig"),
        ),
    }
    env.pop("REFLOW_REGISTRY", None)
    env.pop("REFLOW_REGISTRY_TOKEN", None)
    (root / "home").mkdir()
    ws = Workspace(root, env)
    pack = "dist/my-pack-0.1.0.rflpack"
    stripped = "dist/my-pack-0.1.0-x86_64-unknown-linux-gnu.rflpack"
    for line in sh_lines(block("sh", "reflow-pack new my-pack")):
        if line.startswith("reflow-pack build"):
            line += f" --triple {PORTABLE} --triple {STRIP_TRIPLE}"  # not all six: speed
        if "[--json]" in line:
            out = ws.sh(line.replace(" [--json]", ""))
            assert "my-pack/add" in out and "artifacts:" in out
            line = line.replace("[--json]", "--json")
        out = ws.sh(line)
        if line.startswith("reflow-pack verify"):
            assert out.startswith("OK my-pack 0.1.0: signed by"), out
            assert f"triples present: {PORTABLE}, {STRIP_TRIPLE}" in out
    assert (root / pack).is_file() and (root / stripped).is_file()
    return ws


def test_cli_block(workspace: Workspace) -> None:
    # the fixture ran every line and checked its exit status; the stripped pack holds the
    # portable module and the named triple (all this test's build made, so nothing was cut)
    info = json.loads(
        workspace.sh(
            "reflow-pack inspect dist/my-pack-0.1.0-x86_64-unknown-linux-gnu.rflpack --json"
        )
    )
    assert info["present_triples"] == [PORTABLE, STRIP_TRIPLE]
    for verb in (
        "new",
        "keygen",
        "build",
        "strip",
        "inspect",
        "trust",
        "verify",
        "sign",
        "publish",
        "search",
        "install",
        "yank",
    ):
        workspace.sh(f"reflow-pack {verb} --help")
    err = workspace.sh("reflow-pack verify no-such.rflpack", ok=False)
    assert "Traceback" not in err


def test_packs_snippet(workspace: Workspace) -> None:
    out = workspace.python(block("python", 'reflow.load_pack("dist/'))
    assert "'my-pack/add'" in out
    assert "PackInspection(" in out and "<LoadedPack my-pack 0.1.0" in out
    assert out.rstrip().endswith(f"] {reflow.pack_abi_version()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(ws: Workspace, line: str) -> Iterator[str]:
    port = _free_port()
    line = replaced(line, "--port 8700", f"--port {port}") + " --log-level warning"
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {line}"],
        cwd=ws.root,
        env=ws.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "registry did not start in 15 s"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_registry_blocks(workspace: Workspace) -> None:
    ws = Workspace(workspace.root, dict(workspace.env))  # its own env: REFLOW_REGISTRY below
    lines = sh_lines(block("sh", "reflow-registry serve"))
    serve = lines.pop(0)
    assert serve.startswith("reflow-registry serve")
    snippet = "import reflow\n" + block("python", 'registry="http://127.0.0.1:8700"')
    fresh = {"REFLOW_CACHE_DIR": str(ws.root / "cache-snippet")}
    with _server(ws, serve) as url:
        # `yank` has no --registry: it uses the default, which the README's server (port
        # 8700) is; this one runs elsewhere, so point the documented $REFLOW_REGISTRY at it
        ws.env["REFLOW_REGISTRY"] = url
        token = ""
        check = (
            f"import reflow\np = reflow.load_pack('acme/my-pack@^0.1', registry={url!r})\n"
            "print(p.templates)"
        )
        for line in lines:
            line = line.replace("http://127.0.0.1:8700", url).replace("rfl_…", token)
            if line.startswith("reflow-pack yank"):
                # before the yank: the Python snippet downloads into an empty cache
                out = ws.python(snippet.replace("http://127.0.0.1:8700", url), fresh)
                assert out == ""
                assert "my-pack/add" in ws.python(check, fresh)
            out = ws.sh(line)
            if line.startswith("reflow-registry token create"):
                token = out.split()[0]
                assert token.startswith("rfl_"), out
            if line.startswith("reflow-pack publish"):
                assert out.startswith("published acme/my-pack 0.1.0"), out
            if line.startswith("reflow-pack install"):
                assert out.startswith("installed acme/my-pack 0.1.0"), out
        # yanked: a range no longer picks it, an exact pin does
        ws.sh(f"reflow-pack install acme/my-pack@^0.1 --registry {url}", ok=False)
        ws.sh(
            f"REFLOW_CACHE_DIR=$PWD/cache-pinned reflow-pack install acme/my-pack@0.1.0 "
            f"--registry {url}"
        )
    # "later: works offline": the server is gone, the cache answers
    out = ws.python(check, fresh)
    assert "my-pack/add" in out


# -- Messages and graphs -----------------------------------------------------------------------


def test_messages_print_as_the_readme_says() -> None:
    msg = Message.integer(42)
    shown, text = "{'data': 42, 'type': 'Integer'}", '{"type":"Integer","data":42}'
    assert str(msg) == repr(msg) == shown
    assert msg.to_json_string() == text
    section = README[README.index("### Messages") : README.index("### Actors")]
    assert f"`print(msg)` shows the dict,\n`{shown}`" in section
    assert f"`msg.to_json_string()` is its JSON text, `{text}`" in section
    assert "prints as its JSON" not in README


def test_workflow_snippet(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "wordcount.py"
    script.write_text(block("python", "from reflow.workflow import Workflow"))
    (tmp_path / "book.txt").write_text("One two\nthree Four five\n\nsix\n")
    args = [sys.executable, str(script), "-s", "book.txt", "--case", "keep"]
    first = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "runs" / "wordcount" / "total.txt").read_text() == "6"  # the shared RunDir
    assert "words  done, 4 elements" in first.stdout
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "words  cached, 4 elements, 4 cached" in again.stdout, again.stdout


def test_compose_graphs_snippet() -> None:
    code = block("python", "compose_graphs({")
    ns, printed = run_block(code)
    assert printed == "['left/times', 'right/show']\n[42]\n"
    for line in printed.splitlines():  # each printed line is the comment beside its print
        assert f"# {line}" in code
    assert ns["merged"]["properties"] == {"name": "both"}


def test_json_depth_limit_is_documented_as_enforced() -> None:
    with pytest.raises(reflow.MessageError, match="deeper than 200"):
        Message.from_json("[" * 201)
    with pytest.raises(reflow.GraphFormatError, match="deeper than 200"):
        reflow.Graph.from_json("[" * 201)
    assert "nest at most 200 levels deep" in README
    assert "nests at most 200\nlevels deep" in README


# -- Read in order, as a new user does ---------------------------------------------------------


def _at(lang: str, marker: str) -> int:
    code = block(lang, marker)
    return README.index(f"```{lang}\n{code}")


@pytest.mark.parametrize(
    ("first", "then", "why"),
    [
        (
            ("python", "class Doubler(Actor)"),
            ("python", 'net.collect("a", "out")'),
            "uses Doubler and Log",
        ),
        (
            ("python", "class Doubler(Actor)"),
            ("python", "from reflow.testing import run_tick"),
            "uses Doubler",
        ),
        (("c", "acme/doubler"), ("python", "build_guest("), "builds doubler.c"),
        (("python", "build_guest("), ("python", "default_engine().load("), "uses built"),
        (
            ("sh", "reflow-pack new my-pack"),
            ("python", 'reflow.load_pack("dist/'),
            "loads the pack the CLI builds",
        ),
        (
            ("sh", "reflow-pack new my-pack"),
            ("sh", "reflow-registry serve"),
            "publishes the pack and key the CLI made",
        ),
        (
            ("sh", "reflow-registry serve"),
            ("python", 'registry="http://127.0.0.1:8700"'),
            "installs from the registry",
        ),
    ],
)
def test_blocks_come_after_what_they_use(
    first: tuple[str, str], then: tuple[str, str], why: str
) -> None:
    assert _at(*first) < _at(*then), f"{then} {why}, so it must come after {first}"


def test_building_says_it_needs_the_build_extra() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    extras = pyproject[pyproject.index("[project.optional-dependencies]") :]
    build_extra = extras[extras.index("build = [") :]
    assert "ziglang" in build_extra[: build_extra.index("]")]
    first_build = _at("python", "build_guest(")
    said = README.index('pip install "reflow[build]"')
    assert said < first_build, "the [build] extra must be named before the first build"
    assert "cannot build them" in README[said:first_build]
    cli = _at("sh", "reflow-pack new my-pack")
    assert "needs the `build`\nextra" in README[first_build:cli]
