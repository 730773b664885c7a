"""reflow._sandbox._native_engine: the same example sources, built as this machine's shared library,
run through ctypes with the Actor contract (NOT sandboxed: only behaviour is tested here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import TickCtx

from reflow import Message, Network
from reflow._errors import CapabilityError, GuestABIError, OutputLimitError, SandboxError
from reflow._sandbox._guest_host import GuestGrants, GuestLimits
from reflow._sandbox._native_engine import NativeLibrary

M = Message


@pytest.fixture(scope="module")
def libs(guest_native: dict[str, Path]) -> dict[str, NativeLibrary]:
    return {name: NativeLibrary(path) for name, path in guest_native.items()}


def test_native_doubler(libs: dict[str, NativeLibrary]) -> None:
    actor = libs["doubler"].actor()
    assert actor.execution == "worker"
    assert (actor.component, actor.inports, actor.outports) == ("example/doubler", ["in"], ["out"])
    node = actor.open_node("d", {"factor": 5})
    ctx = TickCtx({"in": M.integer(8)})
    node.run(ctx)
    assert ctx.outputs == [("out", M.integer(40))]
    ctx = TickCtx({"in": M.string("x")})
    node.run(ctx)
    assert ctx.error is not None and "expected an Integer" in ctx.error
    node.close()
    node.close()
    with pytest.raises(SandboxError, match="is closed"):
        node.run(TickCtx({"in": M.integer(1)}))


def test_native_nodes_have_separate_config_and_state(libs: dict[str, NativeLibrary]) -> None:
    dbl = libs["doubler"].actor()
    a, b = dbl.open_node("a", {"factor": 2}), dbl.open_node("b", {"factor": 10})
    for node, want in ((a, 6), (b, 30), (a, 6)):
        ctx = TickCtx({"in": M.integer(3)})
        node.run(ctx)
        assert ctx.outputs == [("out", M.integer(want))]
    counter = libs["counter"].actor()
    c1, c2 = counter.open_node("c1", {}), counter.open_node("c2", {})
    p1: dict[str, Any] = {}
    p2: dict[str, Any] = {}
    for _ in range(3):
        c1.run(TickCtx({"in": M.flow()}, pools=p1))
    ctx = TickCtx({"in": M.flow()}, pools=p2)
    c2.run(ctx)
    assert ctx.outputs == [("count", M.integer(1)), ("ticks", M.integer(1))]
    assert p1["state"]["count"] == M.integer(3)
    for n in (a, b, c1, c2):
        n.close()


def test_native_stream_and_echo(libs: dict[str, NativeLibrary]) -> None:
    node = libs["stream"].actor().open_node("s", {})
    ctx = TickCtx({"in": M.integer(10)})
    node.run(ctx)
    assert ctx.sent == [("out", M.integer(i)) for i in range(10)]
    node.close()
    echo = libs["echo"].actor().open_node("e", {})
    for m in (M.bytes(b"\x00" * 1024), M.object({"k": [1, 2]}), M.float(-0.5), M.null()):
        ctx = TickCtx({"in": m})
        echo.run(ctx)
        assert ctx.outputs == [("in", m)]
    echo.close()


def test_native_capability_and_output_cap(libs: dict[str, NativeLibrary]) -> None:
    node = libs["http"].actor().open_node("h", {})
    with pytest.raises(CapabilityError, match="not granted the 'http' capability"):
        node.run(TickCtx({"url": M.string("http://127.0.0.1:9/")}))
    node.close()
    grant = GuestGrants(http_hosts=("allowed.example",))
    node = libs["http"].actor(grants=grant).open_node("h", {})
    with pytest.raises(CapabilityError, match="may not reach host"):
        node.run(TickCtx({"url": M.string("http://127.0.0.1:9/")}))
    node.close()
    echo = libs["echo"].actor(limits=GuestLimits(output_bytes=100)).open_node("e", {})
    with pytest.raises(OutputLimitError, match="the limit is 100"):
        echo.run(TickCtx({"in": M.bytes(b"x" * 200)}))
    echo.close()


def test_not_a_reflow_library(tmp_path: Path) -> None:
    with pytest.raises(GuestABIError, match="cannot load native library"):
        NativeLibrary(tmp_path / "missing.so")
    import ctypes.util

    libm = ctypes.util.find_library("m")
    if libm:
        with pytest.raises(GuestABIError, match="missing reflow_abi_version"):
            NativeLibrary(libm)


def test_native_in_a_network(libs: dict[str, NativeLibrary]) -> None:
    net = Network()
    net.register_actor("example/add", libs["await_all"].actor())
    net.register_actor("example/doubler", libs["doubler"].actor())
    net.add_node("add", "example/add")
    net.add_node("dbl", "example/doubler")
    net.add_connection("add", "sum", "dbl", "in")
    out = net.collect("dbl", "out")
    net.add_initial("add", "a", M.integer(1))
    net.add_initial("add", "b", M.integer(2))
    summary = net.run(timeout=30)
    assert summary.ok, summary.failures
    assert [m["data"] for m in out] == [6]
    net.shutdown()


def test_library_from_verified_bytes_loads_a_private_copy(
    guest_native: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``data`` (what the pack loader passes after re-hashing the cache), the file at
    ``path`` is only a name: what is dlopen'ed is a private copy of ``data`` (0700 dir)."""
    import hashlib
    import os
    import stat

    good = guest_native["doubler"].read_bytes()
    cached = tmp_path / "cache" / "libdoubler.so"
    cached.parent.mkdir()
    cached.write_bytes(b"\x7fELF swapped after the hash")  # what the cache holds now
    lib = NativeLibrary(cached, data=good)
    assert lib.path == cached and lib.name == "libdoubler.so"
    copy = lib.loaded_from
    assert copy != cached and copy.name == cached.name
    assert not copy.resolve().is_relative_to(tmp_path.resolve())
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == hashlib.sha256(good).hexdigest()
    assert os.name != "posix" or stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    node = lib.actor().open_node("d", {"factor": 3})
    ctx = TickCtx({"in": M.integer(5)})
    node.run(ctx)
    assert ctx.outputs == [("out", M.integer(15))]
    node.close()
    # the same bytes again reuse the copy (dlopen returns the library already loaded)
    assert NativeLibrary(cached, data=good).loaded_from == copy
    # bytes that do not load leave no copy behind
    import tempfile

    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    with pytest.raises(GuestABIError, match=r"cannot load native library .*libbad\.so"):
        NativeLibrary(tmp_path / "libbad.so", data=b"not a library")
    assert list(private_tmp.iterdir()) == []
