"""A host with more than 1024 open files (a busy server) still compiles guests: the isolated
compiler's pipe is waited on with poll, not select (which refused descriptor 5550 in a long
test run with "filedescriptor out of range in select()")."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import os, resource, sys, wasmtime
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = {fds} + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            print("SKIP: the hard limit on open files is", hard); sys.exit(0)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range({fds})]
    assert max(held) >= 1024, max(held)
    from reflow import WasmEngine
    wasm = wasmtime.wat2wasm('(module (func (export "f") (result i32) (i32.const 7)))')
    engine = WasmEngine(cache_dir={cache!r})
    engine.compile(wasm)
    print("compiled with descriptors up to", max(held))
    """
)


@pytest.mark.parametrize("fds", [1100, 2100])
def test_guest_compiles_with_descriptors_past_1024(tmp_path: object, fds: int) -> None:
    code = CHILD.format(fds=fds, cache=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if done.stdout.startswith("SKIP:"):
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "compiled with descriptors up to" in done.stdout
