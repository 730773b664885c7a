"""reflow.library._video: camera test pattern, frame collector and video input, through real
ticks, real Streams and a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sdk_media_streams import collect

from reflow import Message, Network, template_actor
from reflow.testing import run_tick, run_ticks


def _pattern_ref(w: int, h: int, i: int) -> np.ndarray:
    out = np.zeros((h, w, 4), np.uint8)
    for y in range(h):
        for x in range(w):
            out[y, x] = [
                (x * 255 // w + i % 255) % 255,
                (y * 255 // h + (i % 255) * 2) % 255,
                210 if (x // 32 + y // 32 + i) % 2 == 0 else 90,
                255,
            ]
    return out


def _frames(msg: Any, timeout: float = 10.0) -> tuple[list[bytes], dict[str, Any]]:
    reader = msg.take_stream()
    frames: list[bytes] = []
    meta: dict[str, Any] = {}

    async def read() -> None:
        nonlocal meta
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            f = await reader.arecv(2000)
            if f["kind"] == "data":
                frames.append(bytes(f["data"]))
            elif f["kind"] == "begin":
                meta = f["metadata"]
            elif f["kind"] == "end":
                return
            else:
                raise AssertionError(f)

    asyncio.run(read())
    return frames, meta


def test_camera_mock_streams_the_test_pattern() -> None:
    net = Network()
    net.register_actor("cam", template_actor("tpl_camera_capture"))
    net.add_node("cam", "cam", {"width": 40, "height": 33, "frameCount": 3, "fps": 200})
    streams, metas = net.collect("cam", "stream"), net.collect("cam", "metadata")
    net.add_initial("cam", "start", Message.flow())
    net.start()
    deadline = time.monotonic() + 10
    while not streams.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    frames, meta = _frames(streams.messages[0])
    net.shutdown()
    assert len(frames) == 3 and meta["width"] == 40 and meta["frameCount"] == 3
    for i, f in enumerate(frames):
        assert (
            np.frombuffer(f, np.uint8).reshape(33, 40, 4).tolist()
            == _pattern_ref(40, 33, i).tolist()
        )
    assert metas.messages[0]["data"]["contentType"] == "video/raw-rgba"


def test_camera_stop_ends_an_endless_capture() -> None:
    net = Network()
    net.register_actor("cam", template_actor("tpl_camera_capture"))
    net.add_node(
        "cam", "cam", {"width": 8, "height": 8, "frameCount": 0, "fps": 100, "bufferSize": 2}
    )
    streams, metas = net.collect("cam", "stream"), net.collect("cam", "metadata")
    net.add_initial("cam", "start", Message.flow())
    net.start()
    deadline = time.monotonic() + 10
    while not streams.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    reader = streams.messages[0].take_stream()
    first = reader.recv(2000)
    assert first["kind"] == "begin"
    assert reader.recv(2000)["kind"] == "data"
    net.add_initial("cam", "stop", Message.boolean(True))
    started = time.monotonic()
    kinds = []
    while time.monotonic() - started < 5:
        kind = reader.recv(2000)["kind"]
        kinds.append(kind)
        if kind != "data":
            break
    net.shutdown()
    assert kinds[-1] == "end" and time.monotonic() - started < 5
    assert any(m["data"].get("stopped") for m in metas.messages)


def test_collector_builds_one_stream() -> None:
    w = h = 4
    frames = [bytes([i]) * (w * h * 4) for i in range(3)]
    r = run_ticks(
        template_actor("tpl_render_frame_collector"),
        [{"frame": Message.bytes(f)} for f in frames],
        {"width": w, "height": h, "totalFrames": 3, "fps": 24},
    )
    r.raise_for_failures()
    (msg,) = r.outputs["stream"]
    data, meta, ctype = collect(msg)
    assert data == b"".join(frames) and ctype == "video/raw-rgba"
    assert meta == {"width": 4, "height": 4, "fps": 24, "totalFrames": 3}
    assert [m["data"]["frame"] for m in r.outputs["progress"]] == [2, 3]
    r = run_ticks(
        template_actor("tpl_render_frame_collector"),
        [{"frame": Message.bytes(frames[0])}, {"done": Message.flow()}],
        {"width": w, "height": h},
    )
    r.raise_for_failures()
    assert collect(r.outputs["stream"][0])[0] == frames[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def video_server() -> Iterator[str]:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def clip(request: Any) -> Response:
        return Response(b"\0\0\0\x18ftypmp42" + b"\0" * 100, media_type="video/mp4")

    async def big(request: Any) -> Response:
        return Response(
            b"", headers={"content-length": str(500 << 20), "content-type": "video/mp4"}
        )

    async def page(request: Any) -> Response:
        return Response(b"<html>", media_type="text/html")

    app = Starlette(
        routes=[
            Route("/clip.mp4", clip, methods=["GET", "HEAD"]),
            Route("/big.mp4", big, methods=["GET", "HEAD"]),
            Route("/page", page, methods=["GET", "HEAD"]),
            Route("/live.m3u8", clip, methods=["GET", "HEAD"]),
        ]
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_video_input_modes(video_server: str, tmp_path: Path) -> None:
    o = run_tick(
        template_actor("tpl_video_input"), {"source": Message.string(f"{video_server}/clip.mp4")}
    )
    o.raise_for_failures()
    data = o.outputs["videoData"][0]["data"]
    assert data["contentType"] == "video/mp4" and data["size"] == 112
    assert data["playback"] == {
        "autoplay": False,
        "loop": False,
        "muted": False,
        "showControls": True,
    }
    f = tmp_path / "a.webm"
    f.write_bytes(b"\x1aE\xdf\xa3" + b"\0" * 20)
    o = run_tick(template_actor("tpl_video_input"), {"source": Message.string(str(f))})
    o.raise_for_failures()
    assert o.outputs["videoData"][0]["data"]["contentType"] == "video/webm"
    o = run_tick(
        template_actor("tpl_video_input"),
        {"source": Message.flow()},
        {"source": "stream", "url": f"{video_server}/live.m3u8"},
    )
    o.raise_for_failures()
    assert o.outputs["metadata"][0]["data"]["reachable"] is True
    assert o.outputs["videoData"][0]["data"]["streamType"] == "hls"
    for mode, url, embed in (
        (
            "youtube",
            "https://www.youtube.com/watch?v=abc_12-3&t=4",
            "https://www.youtube.com/embed/abc_12-3",
        ),
        ("youtube", "https://youtu.be/XyZ", "https://www.youtube.com/embed/XyZ"),
        ("vimeo", "https://vimeo.com/123456/", "https://player.vimeo.com/video/123456"),
    ):
        o = run_tick(
            template_actor("tpl_video_input"), {"source": Message.string(url)}, {"source": mode}
        )
        o.raise_for_failures()
        assert o.outputs["videoData"][0]["data"]["embedUrl"] == embed


@pytest.fixture
def server_url(video_server: str) -> str:
    return video_server


BAD: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = [
    ("tpl_camera_capture", {"start": Message.flow()}, {"backend": "native"}, "config 'backend'"),
    ("tpl_camera_capture", {"start": Message.flow()}, {"backend": "webcam"}, "config 'backend'"),
    ("tpl_camera_capture", {"start": Message.flow()}, {"width": 0}, "config 'width'"),
    ("tpl_camera_capture", {"start": Message.flow()}, {"fps": 0}, "config 'fps'"),
    ("tpl_camera_capture", {"start": Message.flow()}, {"width": 16384, "height": 16384}, "pixels"),
    (
        "tpl_render_frame_collector",
        {"frame": Message.bytes(b"\0" * 10)},
        {"width": 2, "height": 2},
        "in-port 'frame'",
    ),
    ("tpl_render_frame_collector", {"frame": Message.string("x")}, None, "in-port 'frame'"),
    ("tpl_render_frame_collector", {"done": Message.flow()}, {"fps": "x"}, "config 'fps'"),
    ("tpl_video_input", {"source": Message.flow()}, None, "no video URL"),
    ("tpl_video_input", {"source": Message.integer(1)}, None, "in-port 'source'"),
    ("tpl_video_input", {"source": Message.string("x")}, {"source": "ftp"}, "config 'source'"),
    ("tpl_video_input", {"source": Message.string("/no/such.mp4")}, None, "cannot read"),
    (
        "tpl_video_input",
        {"source": Message.string("https://example.com/x")},
        {"source": "youtube"},
        "no youtube video id",
    ),
    (
        "tpl_video_input",
        {"source": Message.string("x")},
        {"source": "stream", "streamType": "rtmp"},
        "config 'streamType'",
    ),
    ("tpl_video_input", {"source": Message.string("x")}, {"muted": "no"}, "config 'muted'"),
]


@pytest.mark.parametrize(
    ("tid", "inputs", "config", "fragment"), BAD, ids=[f"{r[0]}-{i}" for i, r in enumerate(BAD)]
)
def test_bad_input_and_config_fail_the_tick(
    tid: str, inputs: dict[str, Any], config: dict[str, Any] | None, fragment: str
) -> None:
    r = run_tick(template_actor(tid), inputs, config, timeout=20)
    assert len(r.failures) == 1, r.failures
    assert "ActorError" in r.failures[0].error and fragment in r.failures[0].error
    assert fragment in r.outputs["error"][0]["data"]


@pytest.mark.parametrize(
    ("path", "config", "fragment"),
    [
        ("/big.mp4", None, "config 'maxFileSize'"),
        ("/page", None, "config 'acceptedFormats'"),
        ("/missing.mp4", None, "HTTP 404"),
    ],
)
def test_video_input_http_refusals(
    server_url: str, path: str, config: dict[str, Any] | None, fragment: str
) -> None:
    r = run_tick(
        template_actor("tpl_video_input"), {"source": Message.string(server_url + path)}, config
    )
    assert len(r.failures) == 1 and fragment in r.failures[0].error
