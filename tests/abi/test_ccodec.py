"""The compiled tick codec (abi/_ccodec) against the Python one it stands in for.

Differential: random and mutated result frames through both decoders give the same outputs
(or both hand the frame back); random inputs through both encoders give the same bytes and
return values, or the same error class and message. Hand-assembled hostile frames are a table.
The build and its switches (REFLOW_CCODEC, a failed build, an unsafe cache) are tested for
real; the sandbox test files are re-run under the other codec in a child process.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflow import Message, SandboxError
from reflow.abi import _ccodec
from reflow.abi._codec import (
    TickCodec,
    encode_result_done,
    encode_result_fail,
    tick_codec,
)

INPORTS = ["in", "x", "é"]
OUTPORTS = ["out", "in", "a"]
U32 = struct.Struct("<I")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pair() -> tuple[TickCodec, TickCodec]:
    """(compiled, Python) codecs of the same ports; the compiled one must build here."""
    c = tick_codec(INPORTS, OUTPORTS, compiled=True)
    assert type(c) is not TickCodec
    return c, TickCodec(INPORTS, OUTPORTS)


def _kinds() -> st.SearchStrategy[Any]:
    M = Message
    weird = [
        {"type": "Integer", "data": 2**63},
        {"type": "Integer", "data": -(2**63) - 1},
        {"type": "Integer", "data": 1.5},
        {"type": "Integer", "data": True},
        {"type": "Integer"},
        {"type": "Float", "data": 3},
        {"type": "Float", "data": float("nan")},
        {"type": "Bytes", "data": bytearray(b"ab")},
        {"type": "Bytes", "data": "text"},
        {"type": "String", "data": "\ud800"},
        {"type": "String", "data": 5},
        {"type": "Error", "data": 7},
        {"type": "Boolean", "data": 0},
        {"type": "Boolean", "data": "yes"},
        {"type": "Stream", "data": None},
        {"type": "Nope", "data": 1},
        {"type": 3, "data": 1},
        {"data": 1},
        {"type": "Object", "data": {"a": [1, 2.5]}},
        {"type": "Array", "data": [1, "x"]},
        {"type": "Object", "data": {1j: 1}},
        M.object({"k": None}),
        M.flow(),
        M.null(),
        M.boolean(True),
    ]
    return st.one_of(
        st.integers(-(2**63), 2**63 - 1).map(M.integer),
        st.floats(allow_nan=False).map(M.float),
        st.binary(max_size=300).map(M.bytes),
        st.text(max_size=40).map(M.string),
        st.text(max_size=20).map(M.error),
        st.booleans().map(M.boolean),
        st.sampled_from(weird),
    )


_PORTS = st.sampled_from(["in", "x", "é", "undeclared", "", "p" * 256, "\udcff"])
_INPUTS = st.dictionaries(_PORTS, _kinds(), max_size=3)


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return ("error", type(exc), str(exc))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_INPUTS, st.integers(0, 700), st.integers(0, 8))
def test_encode_into_same_as_python(inputs: dict[str, Any], capacity: int, offset: int) -> None:
    c, p = pair_codecs()
    bufs = [bytearray(b"\xee" * (offset + capacity + 8)) for _ in range(2)]
    got = [_outcome(codec.encode_into, inputs, buf, offset, capacity) for codec, buf in
           zip((c, p), bufs, strict=True)]  # fmt: skip
    assert got[0] == got[1]
    if got[0][0] == "ok" and got[0][1] > 0:
        n = got[0][1]
        assert bufs[0][offset : offset + n] == bufs[1][offset : offset + n]
        assert bufs[0][offset + capacity :] == b"\xee" * 8  # never past the capacity


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(_INPUTS, st.sampled_from([{"in": Message.integer(1)}])), max_size=40),
    st.integers(0, 3000),
)
def test_encode_batch_into_same_as_python(ticks: list[dict[str, Any]], capacity: int) -> None:
    c, p = pair_codecs()
    bufs = [bytearray(b"\xee" * (capacity + 8)) for _ in range(2)]
    got = [_outcome(codec.encode_batch_into, ticks, buf, 0, capacity) for codec, buf in
           zip((c, p), bufs, strict=True)]  # fmt: skip
    assert got[0] == got[1]
    if got[0][0] == "ok":
        size = got[0][1][1]
        assert bufs[0][:size] == bufs[1][:size]
        assert bufs[0][capacity:] == b"\xee" * 8


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=64), st.binary(max_size=64))
def test_uniform_batches_same_as_python(values: list[int], payload: bytes) -> None:
    c, p = pair_codecs()
    for ticks in ([{"in": Message.integer(v)} for v in values],
                  [{"x": Message.bytes(payload)} for _ in values]):  # fmt: skip
        bufs = [bytearray(8192) for _ in range(2)]
        assert c.encode_batch_into(ticks, bufs[0], 8, 8000) == p.encode_batch_into(
            ticks, bufs[1], 8, 8000
        )
        assert bufs[0] == bufs[1]


def _result_frames() -> st.SearchStrategy[bytes]:
    out = st.tuples(st.sampled_from([*OUTPORTS, "zz", "ou"]), _kinds())

    def done(entries: list[tuple[str, Any]]) -> bytes:
        try:
            return encode_result_done(entries)
        except Exception:
            return b"\x00\x00\x00"

    return st.one_of(
        st.lists(out, max_size=2).map(done),
        st.text(max_size=10).map(encode_result_fail),
        st.binary(max_size=40),
    )


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(_result_frames()))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "length"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=6))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[at:]
        elif op == "length" and len(data) >= at + 4:
            data[at : at + 4] = U32.pack(draw(st.sampled_from([0, 1, 3, 0xFFFF, 0xFFFFFFFF])))
    return bytes(data)


def _same(a: Any, b: Any) -> None:
    assert a == b
    if isinstance(a, dict):
        assert [type(m) for m in a.values()] == [type(m) for m in b.values()] == [Message]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated(), st.binary(max_size=12), st.binary(max_size=12))
def test_decode_single_same_as_python(frame: bytes, before: bytes, after: bytes) -> None:
    c, p = pair_codecs()
    view = memoryview(before + frame + after)
    args = (view, len(before), len(before) + len(frame))
    _same(_outcome(c.decode_single, *args), _outcome(p.decode_single, *args))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_mutated(), max_size=6),
    st.booleans(),
    st.binary(max_size=16),
    st.integers(0, 8),
    st.sampled_from([-1, 0, 10, 20, 1 << 20]),
)
def test_decode_batch_same_as_python(
    frames: list[bytes], uniform: bool, tail: bytes, extra: int, limit: int
) -> None:
    c, p = pair_codecs()
    if uniform and frames:
        frames = [frames[0]] * 5
    raw = b"".join(U32.pack(len(f)) + f for f in frames) + tail
    count = len(frames) + extra
    for end in (len(raw), max(len(raw) - 3, 0)):
        args = (memoryview(raw + b"\x07" * 8), 0, end, count, limit)
        a, b = _outcome(c.decode_batch, *args), _outcome(p.decode_batch, *args)
        assert a == b
        if a[0] == "ok":
            for x, y in zip(a[1], b[1], strict=True):
                _same(x, y)


_HOT_INT = b"\x00\x01\x00\x03out\x03" + struct.pack("<q", -5)
_HOT_BYTES = b"\x00\x01\x00\x03out\x06" + U32.pack(3) + b"abc"


@pytest.mark.parametrize(
    ("frame", "hot"),
    [
        (_HOT_INT, {"out": Message.integer(-5)}),
        (_HOT_BYTES, {"out": Message.bytes(b"abc")}),
        (b"\x00\x01\x00\x03out\x06" + U32.pack(0), {"out": Message.bytes(b"")}),
        (_HOT_INT[:-1], None),  # truncated Integer
        (_HOT_INT + b"\x00", None),  # trailing byte
        (_HOT_BYTES[:-1], None),  # payload shorter than its length
        (b"\x00\x01\x00\x03out\x06" + U32.pack(0xFFFFFFFF) + b"abc", None),  # huge length
        (b"\x00\x01\x00\xffout\x03" + b"\x00" * 8, None),  # port length past the frame
        (b"\x00\x01\x00\x00\x03" + b"\x00" * 8, None),  # empty port
        (b"\x00\x02\x00\x03out\x03" + b"\x00" * 8, None),  # two entries claimed
        (b"\x01\x01\x00\x03out\x03" + b"\x00" * 8, None),  # fail status
        (b"\x00\x01\x00\x02zz\x03" + b"\x00" * 8, None),  # undeclared port
        (b"\x00\x01\x00\x03out\x05" + U32.pack(1) + b"a", None),  # String: not hot
        (b"\x00\x01\x00\x03out\x0d" + b"\x00" * 8, None),  # Stream kind byte
        (b"\x00\x01\x00\x03out\xff" + b"\x00" * 8, None),  # unknown kind byte
        (b"", None),
        (b"\x00", None),
    ],
)
def test_hostile_result_frames(pair: Any, frame: bytes, hot: Any) -> None:
    c, p = pair
    for codec in (c, p):
        view = memoryview(b"\x06" + frame + b"\x00\x00\x00\x00\x07")
        got = codec.decode_single(view, 1, 1 + len(frame))
        if hot is None:
            assert got is None
        else:
            _same(got, hot)


@pytest.mark.parametrize(
    ("raw", "count", "want"),
    [
        (U32.pack(len(_HOT_INT)) + _HOT_INT, 2, [{"out": Message.integer(-5)}, None]),
        (U32.pack(0xFFFFFFFF) + _HOT_INT, 1, [None]),  # frame length past the results
        (U32.pack(len(_HOT_INT) + 1) + _HOT_INT, 1, [None]),  # one byte past the end
        (b"\x01\x00", 1, [None]),  # truncated length prefix
        (U32.pack(3) + b"\x00\x00\x00", 1, [(4, 7)]),  # not hot: the Python decoder's
        (U32.pack(len(_HOT_INT)) + _HOT_INT, 0, []),
    ],
)
def test_hostile_batch_results(pair: Any, raw: bytes, count: int, want: list[Any]) -> None:
    for codec in pair:
        assert codec.decode_batch(memoryview(raw), 0, len(raw), count, 1 << 20) == want


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda c: c.decode_single(memoryview(b"abc"), 0, 9), ValueError, "inside the buffer"),
        (lambda c: c.decode_batch(memoryview(b"abc"), 2, 1, 1, 9), ValueError, "inside"),
        (lambda c: c.encode_into({}, bytearray(4), 2, 9), ValueError, "inside the buffer"),
        (lambda c: c.encode_into({}, b"read-only", 0, 4), BufferError, "not writable"),
    ],
)
def test_caller_errors_are_refused(pair: Any, call: Any, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        call(pair[0])


_PAIR: list[TickCodec] = []


def pair_codecs() -> tuple[TickCodec, TickCodec]:
    # hypothesis tests cannot take function-scoped fixtures: one pair for the module
    if not _PAIR:
        _PAIR.extend((tick_codec(INPORTS, OUTPORTS, compiled=True), TickCodec(INPORTS, OUTPORTS)))
    return _PAIR[0], _PAIR[1]


# -- building and choosing --------------------------------------------------------------------


def _child(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "REFLOW_CCODEC"}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120
    )


_WHICH = (
    "from reflow.abi._codec import tick_codec;print(type(tick_codec(['in'], ['out'])).__name__)"
)


def test_reflow_ccodec_0_forces_the_python_codec() -> None:
    _ccodec.require()  # built in the cache: only the switch can make it Python
    assert _child(_WHICH, REFLOW_CCODEC="0").stdout.split() == ["TickCodec"]
    assert _child(_WHICH, REFLOW_CCODEC="1").stdout.split() == ["_CompiledTickCodec"]
    assert _child(_WHICH).stdout.split() == ["_CompiledTickCodec"]  # built: loaded at once


def test_first_use_builds_in_the_background(tmp_path: Path) -> None:
    code = (
        "import time; from reflow.abi import _ccodec;"
        "from reflow.abi._codec import tick_codec;"
        "print(type(tick_codec(['in'], ['out'])).__name__);"
        "t = time.monotonic()\n"
        "while _ccodec._state == 'building' and time.monotonic() - t < 200: time.sleep(0.05)\n"
        "print(_ccodec._state, type(tick_codec(['in'], ['out'])).__name__)"
    )
    out = _child(code, REFLOW_CACHE_DIR=str(tmp_path)).stdout.split()
    assert out == ["TickCodec", "ready", "_CompiledTickCodec"]
    assert list((tmp_path / "ccodec").glob("reflow_ccodec-*")) == [_module_in(tmp_path)]


def _module_in(cache: Path) -> Path:
    return cache / "ccodec" / _ccodec.module_path().name


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("bad_source", "building the compiled codec failed"),
        ("no_python_h", "no Python.h"),
        ("unsafe_cache", "not writable by others"),
        ("timeout", "timed out"),
    ],
)
def test_a_failed_build_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str, fragment: str
) -> None:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    timeout = 60.0
    if setup == "bad_source":
        bad = tmp_path / "ccodec.c"
        bad.write_text("this is not C;\n")
        monkeypatch.setattr(_ccodec, "SOURCE", bad)
    elif setup == "no_python_h":
        monkeypatch.setattr(_ccodec.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    elif setup == "unsafe_cache":
        d = tmp_path / "cache" / "ccodec"
        d.mkdir(parents=True)
        d.chmod(0o777)
    else:
        timeout = 0.01
    t0 = time.monotonic()
    with pytest.raises(SandboxError, match=fragment):
        _ccodec.build(timeout=timeout)
    assert time.monotonic() - t0 < 30
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    assert not list((tmp_path / "cache").rglob("*.lock"))


def test_reflow_ccodec_1_raises_when_it_cannot_build(tmp_path: Path) -> None:
    (tmp_path / "ccodec").mkdir()
    (tmp_path / "ccodec").chmod(0o777)
    r = _child(_WHICH, REFLOW_CACHE_DIR=str(tmp_path), REFLOW_CCODEC="1")
    assert r.returncode != 0 and "SandboxError" in r.stderr and "not writable" in r.stderr
    # unset: the Python codec, silently
    r = _child(_WHICH, REFLOW_CACHE_DIR=str(tmp_path))
    assert r.returncode == 0 and r.stdout.split() == ["TickCodec"] and not r.stderr


_RERUN = [
    "tests/abi/test_codec.py",
    "tests/abi/test_codec_hardening.py",
    "tests/sandbox/test_hostile_guests.py",
    "tests/sandbox/test_batch_ticks.py",
    "tests/sandbox/test_wasm_engine.py",
    "tests/sandbox/test_native_engine.py",
]


@pytest.mark.slow
def test_the_sandbox_tests_pass_under_the_other_codec() -> None:
    """This run uses one codec (the compiled one once built); the codec and sandbox test
    files run again in a child process with the other."""
    here = type(tick_codec(["in"], ["out"])) is TickCodec
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *_RERUN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "REFLOW_CCODEC": "1" if here else "0"},
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_a_lock_left_by_a_dead_build_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    out = _ccodec.module_path()
    out.parent.mkdir(mode=0o700, parents=True)
    out.with_suffix(".lock").write_text(dead.stdout.strip())
    t0 = time.monotonic()
    assert _ccodec.build(timeout=120) == out and out.is_file()
    assert time.monotonic() - t0 < 120
    assert not out.with_suffix(".lock").exists()
