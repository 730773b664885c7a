"""The SDK's video templates: a camera source (a deterministic test pattern; there is no
camera device here), a collector that turns rendered RGBA frames into a video Stream, and a
video input that resolves and checks a URL, file or embed link.

Video Streams carry content type ``video/raw-rgba``: a ``begin`` frame with ``{width,
height, fps, ...}``, then one data frame per video frame (``width x height x 4`` bytes).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._core._streams import Stream
from .._errors import ActorError, StreamError
from ._base import config_bool, config_int, config_str
from ._image_streams import _accepted, max_file_bytes
from ._sdk import SdkTemplate, SyncSdkTemplate

__all__ = ["VIDEO_TEMPLATES", "test_pattern"]

_POOL = "sdk_video"
MAX_FRAME_PIXELS = 1 << 25


def test_pattern(width: int, height: int, index: int) -> bytes:
    """Frame ``index`` of the mock camera: red ramps across, green down (both shifting with
    the frame), blue a 32-pixel checkerboard that flips every frame; opaque."""
    phase = index % 255
    x = np.arange(width, dtype=np.int64)[None, :]
    y = np.arange(height, dtype=np.int64)[:, None]
    r = np.broadcast_to((x * 255 // width + phase) % 255, (height, width))
    g = np.broadcast_to((y * 255 // height + phase * 2) % 255, (height, width))
    b = np.where((x // 32 + y // 32 + index) % 2 == 0, 210, 90)
    a = np.full((height, width), 255)
    return np.stack([r, g, b, a], axis=-1).astype(np.uint8).tobytes()


def _truthy(msg: Any) -> bool:
    kind, data = msg["type"], msg.get("data")
    if kind == "Flow":
        return True
    if kind in ("Boolean", "Integer", "Float"):
        return bool(data)
    if kind == "String":
        return data not in ("", "false")
    return False


class CameraCapture(SdkTemplate):
    """A camera source. Backend ``mock`` (also ``test-pattern``) streams a deterministic test
    pattern at ``fps``; there is no camera device on this host, so ``native``/``nokhwa``/
    ``auto`` fail the tick naming config ``backend``.

    Any packet on ``start`` begins a capture; a truthy packet on ``stop`` (Flow, true, a
    non-zero number, a string other than "false") ends the running one. Ports: in ``start``,
    ``stop`` → out ``stream`` (``video/raw-rgba`` Stream, at most ``bufferSize`` frames
    queued; ``begin`` metadata as ``metadata``), ``metadata`` (Object ``{source: "camera",
    backend, deviceId, width, height, fps, format: "rgba8", contentType, frameCount,
    timestampMicros}``; after a stop ``{stopped, streamId}``), ``error``. Config: ``backend``
    (default ``mock``), ``width`` (default 640), ``height`` (default 480), ``fps`` (1-1000,
    default 30), ``frameCount`` (frames to send, default 1; 0: until stopped), ``bufferSize``
    (default 4), ``deviceId`` (default ``mock-camera``).
    """

    component = "tpl_camera_capture"
    inports = ["start", "stop"]
    outports = ["stream", "metadata", "error"]
    outport_types = {"stream": "Stream", "metadata": "Object", "error": "Error"}
    config_defaults = {
        "backend": "mock",
        "width": 640,
        "height": 480,
        "fps": 30,
        "frameCount": None,
        "bufferSize": 4,
        "deviceId": None,
    }

    async def tick(self, ctx: ActorContext) -> None:
        if "stop" in ctx.inputs and _truthy(ctx.inputs["stop"]):
            ctx.done({"metadata": Message.object(self._stop(ctx))})
            return
        backend = config_str(ctx, "backend", "mock").lower()
        if backend in ("native", "nokhwa", "auto"):
            raise ActorError(
                f"config 'backend' {backend!r}: there is no camera device on "
                "this host; use backend 'mock' (a test pattern)"
            )
        if backend not in ("mock", "test-pattern", "test_pattern"):
            raise ActorError(
                f"config 'backend' must be 'mock' (or 'test-pattern'), got {backend!r}"
            )
        w = config_int(ctx, "width", 640, minimum=1, maximum=16384)
        h = config_int(ctx, "height", 480, minimum=1, maximum=16384)
        if w * h > MAX_FRAME_PIXELS:
            raise ActorError(
                f"config 'width' x 'height' ({w}x{h}) is more than {MAX_FRAME_PIXELS} pixels"
            )
        fps = config_int(ctx, "fps", 30, minimum=1, maximum=1000)
        count = config_int(ctx, "frameCount", 1, minimum=0, maximum=1 << 31)
        buffer = config_int(ctx, "bufferSize", 4, minimum=1, maximum=4096)
        device = config_str(ctx, "deviceId", "mock-camera")
        self._stop(ctx)
        meta = {
            "source": "camera",
            "backend": backend,
            "deviceId": device,
            "width": w,
            "height": h,
            "fps": fps,
            "format": "rgba8",
            "contentType": "video/raw-rgba",
            "frameCount": count,
            "timestampMicros": time.time_ns() // 1000,
        }
        stream = Stream.create(buffer, ctx.node, "stream", content_type="video/raw-rgba")
        stream.send_begin("video/raw-rgba", w * h * 4 * count if count else None, meta)
        message = stream.into_message()
        task = asyncio.get_running_loop().create_task(self._produce(stream, w, h, fps, count))
        ctx.pool_upsert(_POOL, "capture", (stream, task))
        ctx.done({"stream": message, "metadata": Message.object(meta)})

    @staticmethod
    async def _produce(stream: Stream, w: int, h: int, fps: int, count: int) -> None:
        index = 0
        try:
            while count == 0 or index < count:
                frame = test_pattern(w, h, index)
                while True:
                    try:
                        stream.send_bytes_nowait(frame)
                        break
                    except StreamError:
                        if stream.channel._state != "open":  # reader gone or stopped
                            return
                        await asyncio.sleep(0.005)
                index += 1
                if count == 0 or index < count:
                    await asyncio.sleep(1 / fps)
            stream.end()
        except asyncio.CancelledError:
            stream.end()
            raise

    @staticmethod
    def _stop(ctx: ActorContext) -> dict[str, Any]:
        capture = ctx.pool_get(_POOL, "capture")
        if capture is None:
            return {"stopped": False}
        stream, task = capture
        task.cancel()
        stream.end()
        ctx.pool_remove(_POOL, "capture")
        return {"stopped": True, "streamId": stream.stream_id}


class RenderFrameCollector(SyncSdkTemplate):
    """Collects rendered RGBA frames into one ``video/raw-rgba`` Stream.

    The first frame opens the Stream (sent on ``stream``, ``begin`` metadata ``{width,
    height, fps, totalFrames}``); each frame is one data frame; the Stream ends after
    ``totalFrames`` frames (when > 0) or when a truthy packet arrives on ``done``. Ports: in
    ``frame`` (RGBA Bytes of ``width x height``), ``frame_number`` (accepted, not needed),
    ``done`` → out ``stream``, ``progress`` (Object ``{frame, totalFrames}`` for every frame
    after the first), ``error``. A frame of the wrong size fails its tick (the SDK skips it
    silently). Config: ``logProgress`` (default false: log each frame at INFO),
    ``totalFrames`` (default 0: until ``done``), ``width``, ``height`` (default 512), ``fps``
    (default 30).
    """

    component = "tpl_render_frame_collector"
    inports = ["frame", "frame_number", "done"]
    outports = ["stream", "progress", "error"]
    outport_types = {"stream": "Stream", "progress": "Object", "error": "Error"}
    config_defaults = {
        "logProgress": False,
        "totalFrames": 0,
        "width": 512,
        "height": 512,
        "fps": 30,
    }

    def tick(self, ctx: ActorContext) -> None:
        log = config_bool(ctx, "logProgress", False)
        total = config_int(ctx, "totalFrames", 0, minimum=0, maximum=1 << 31)
        w = config_int(ctx, "width", 512, minimum=1, maximum=16384)
        h = config_int(ctx, "height", 512, minimum=1, maximum=16384)
        fps = config_int(ctx, "fps", 30, minimum=1, maximum=1000)
        done = "done" in ctx.inputs and _truthy(ctx.inputs["done"])
        frame = None
        if "frame" in ctx.inputs:
            msg = ctx.inputs["frame"]
            if msg["type"] != "Bytes":
                raise ActorError(f"in-port 'frame': expected RGBA Bytes, got {msg['type']}")
            if len(msg["data"]) != w * h * 4:
                raise ActorError(
                    f"in-port 'frame': {len(msg['data'])} bytes is not a {w}x{h} "
                    f"RGBA frame ({w * h * 4} bytes; config 'width'/'height')"
                )
            frame = bytes(msg["data"])
        state = ctx.pool_get(_POOL, "collector")
        outputs: dict[str, Message] = {}
        if frame is not None:
            if state is None:
                stream = Stream.create(0, ctx.node, "stream", content_type="video/raw-rgba")
                stream.send_begin(
                    "video/raw-rgba",
                    total * w * h * 4 or None,
                    {"width": w, "height": h, "fps": fps, "totalFrames": total},
                )
                state = [stream, 0]
                ctx.pool_upsert(_POOL, "collector", state)
                outputs["stream"] = stream.into_message()
            stream, count = state
            stream.send_bytes(frame)
            state[1] = count = count + 1
            if count > 1:
                outputs["progress"] = Message.object({"frame": count, "totalFrames": total})
            if log:
                ctx.log.info("[collector] frame %d/%d", count, total)
        if state is not None and (done or (total and state[1] >= total)):
            state[0].end()
            ctx.pool_remove(_POOL, "collector")
        ctx.done(outputs)


def _youtube_id(url: str) -> str | None:
    for pattern in (r"v=([\w-]+)", r"youtu\.be/([\w-]+)", r"/embed/([\w-]+)"):
        m = re.search(pattern, url)
        if m:
            return m.group(1)
    return None


def _vimeo_id(url: str) -> str | None:
    last = url.rstrip("/").rsplit("/", 1)[-1]
    return last if last.isdigit() else None


class VideoInput(SdkTemplate):
    """Resolves a video source and checks it.

    ``source`` (config) picks the mode: ``url``/``upload`` check a URL (http(s): a HEAD
    request, 30 s limit; a ``file://`` URL or path: the file) against ``acceptedFormats`` and
    ``maxFileSize`` MiB; ``stream`` records an HLS/DASH manifest URL and whether it answers;
    ``youtube``/``vimeo`` build the embed URL (no request). The URL is config ``url`` or a
    String (or Object with ``url``) on in-port ``source``. Ports: in ``source`` → out
    ``videoData`` (Object: ``{url, contentType, size, playback}``; ``{url, streamType,
    playback}``; ``{embedUrl, videoId, platform, playback}``), ``metadata`` (Object), ``error``.
    Config: ``source`` (default ``url``), ``acceptedFormats`` (default MP4, WebM, Ogg),
    ``maxFileSize`` (MiB, default 100), ``autoplay``, ``loop``, ``muted`` (default false),
    ``showControls`` (default true), ``streamType`` (``auto``, default: from the URL,
    ``hls``, ``dash``), ``url``.
    """

    component = "tpl_video_input"
    inports = ["source"]
    outports = ["videoData", "metadata", "error"]
    outport_types = {"videoData": "Object", "metadata": "Object", "error": "Error"}
    config_defaults = {
        "source": "url",
        "acceptedFormats": ["video/mp4", "video/webm", "video/ogg"],
        "maxFileSize": 100,
        "autoplay": False,
        "loop": False,
        "muted": False,
        "showControls": True,
        "streamType": "auto",
        "url": None,
    }

    async def tick(self, ctx: ActorContext) -> None:
        mode = config_str(ctx, "source", "url")
        if mode not in ("url", "upload", "stream", "youtube", "vimeo"):
            raise ActorError(
                f"config 'source' must be url, upload, stream, youtube or vimeo, got {mode!r}"
            )
        playback = {
            k: config_bool(ctx, k, self.config_defaults[k])
            for k in ("autoplay", "loop", "muted", "showControls")
        }
        url = self._url(ctx)
        data: dict[str, Any]
        meta: dict[str, Any]
        if mode in ("youtube", "vimeo"):
            vid = _youtube_id(url) if mode == "youtube" else _vimeo_id(url)
            if vid is None:
                raise ActorError(f"in-port 'source'/config 'url': no {mode} video id in {url!r}")
            embed = (
                f"https://www.youtube.com/embed/{vid}"
                if mode == "youtube"
                else f"https://player.vimeo.com/video/{vid}"
            )
            data = {"embedUrl": embed, "videoId": vid, "platform": mode, "playback": playback}
            meta = {
                "source": mode,
                "url": url,
                "videoId": vid,
                "embedUrl": embed,
                "playback": playback,
            }
        elif mode == "stream":
            kind = config_str(ctx, "streamType", "auto")
            if kind not in ("auto", "hls", "dash"):
                raise ActorError(f"config 'streamType' must be auto, hls or dash, got {kind!r}")
            if kind == "auto":
                low = url.lower()
                kind = "hls" if ".m3u8" in low else "dash" if ".mpd" in low else "auto"
            reachable = (await asyncio.to_thread(self._head, url, True))[0]
            data = {"url": url, "streamType": kind, "playback": playback}
            meta = {
                "url": url,
                "source": "stream",
                "streamType": kind,
                "reachable": reachable,
                "playback": playback,
            }
        else:
            accepted = _accepted(ctx, self.config_defaults["acceptedFormats"])
            limit = max_file_bytes(ctx, 100)
            _, ctype, size = await asyncio.to_thread(self._head, url, False)
            base = ctype.split(";")[0].strip()
            if base not in accepted:
                raise ActorError(
                    f"config 'acceptedFormats': {base} is not accepted (accepted:"
                    f" {', '.join(accepted)})"
                )
            if size is not None and size > limit:
                raise ActorError(f"config 'maxFileSize': {url} is {size} bytes, more than {limit}")
            data = {"url": url, "contentType": ctype, "size": size, "playback": playback}
            meta = {
                "contentType": ctype,
                "size": size,
                "url": url,
                "source": mode,
                "playback": playback,
            }
        ctx.done({"videoData": Message.object(data), "metadata": Message.object(meta)})

    @staticmethod
    def _url(ctx: ActorContext) -> str:
        if ctx.config.get("url") is not None:
            return config_str(ctx, "url")
        msg = ctx.inputs.get("source")
        if msg is not None and msg["type"] == "String" and msg["data"]:
            return str(msg["data"])
        if msg is not None and msg["type"] == "Object" and isinstance(msg["data"].get("url"), str):
            return str(msg["data"]["url"])
        if msg is not None and msg["type"] not in ("Flow", "Null", "String"):
            raise ActorError(
                f"in-port 'source': expected a URL String or an Object with "
                f"'url', got {msg['type']}"
            )
        raise ActorError("no video URL: set config 'url' or send one on in-port 'source'")

    @staticmethod
    def _head(url: str, soft: bool) -> tuple[bool, str, int | None]:
        """``(reachable, content type, size)`` of a URL or file; ``soft``: never raise."""
        from ._image_streams import sniff

        if url.startswith(("http://", "https://")):
            import httpx

            try:
                with httpx.Client(timeout=30.0, follow_redirects=True) as client:
                    resp = client.head(url)
            except httpx.HTTPError as exc:
                if soft:
                    return False, "", None
                raise ActorError(f"cannot reach {url}: {exc}") from exc
            if resp.status_code >= 400:
                if soft:
                    return False, "", None
                raise ActorError(f"{url} answered HTTP {resp.status_code}")
            length = resp.headers.get("content-length")
            return (
                True,
                resp.headers.get("content-type", "application/octet-stream"),
                int(length) if length and length.isdigit() else None,
            )
        path = Path(url[7:] if url.startswith("file://") else url)
        try:
            size = path.stat().st_size
            with path.open("rb") as f:
                head = f.read(64)
        except OSError as exc:
            if soft:
                return False, "", None
            raise ActorError(f"cannot read {path}: {exc.strerror or exc}") from exc
        ctype = sniff(head)
        if ctype == "application/octet-stream" and head[4:8] == b"ftyp":
            ctype = "video/mp4"
        if head.startswith(b"OggS"):
            ctype = "video/ogg"
        return True, ctype, size


VIDEO_TEMPLATES: dict[str, type[SdkTemplate]] = {
    cls.component: cls for cls in (CameraCapture, RenderFrameCollector, VideoInput)
}
