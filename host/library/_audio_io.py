"""Audio templates at the edges of a graph: reading an audio source into a Stream and
describing a Stream for display."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._image_streams import _accepted, load_source, max_file_bytes
from ._sdk import SdkTemplate, read_stream


def _wav_info(data: bytes) -> dict[str, Any]:
    import wave

    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, frames = w.getframerate(), w.getnframes()
            return {
                "sampleRate": rate,
                "channels": w.getnchannels(),
                "bitDepth": w.getsampwidth() * 8,
                "durationMs": int(frames / rate * 1000) if rate else None,
            }
    except Exception:  # not a PCM WAV the stdlib reads: no details, as the SDK
        return {}


class AudioInput(SdkTemplate):
    """Loads audio from a URL, a file or Bytes and describes it.

    The source is config ``url`` or, without it, in-port ``source`` (an http(s), ``data:`` or
    ``file://`` URL or a path as a String or an Object with ``url``, or the audio as Bytes).
    Its type must be in ``acceptedFormats`` and its size at most ``maxFileSize`` MiB; a PCM WAV
    also reports ``sampleRate``, ``channels``, ``bitDepth``, ``durationMs``. Ports: in
    ``source`` → out ``audioData`` (Object ``{url, contentType, size, autoplay, loop,
    showWaveform, ...}``), ``metadata`` (Object), ``bytes`` (Bytes: the audio; the SDK has no
    such port), ``error``. Config: ``acceptedFormats`` (default MPEG, WAV, OGG, WebM),
    ``maxFileSize`` (MiB, default 50), ``autoplay``, ``loop`` (default false),
    ``showWaveform`` (default true), ``url``. There is no recording device here: a ``record``
    source must arrive as its file or bytes.
    """

    component = "tpl_audio_input"
    inports = ["source"]
    outports = ["audioData", "metadata", "error", "bytes"]
    outport_types = {
        "audioData": "Object",
        "metadata": "Object",
        "error": "Error",
        "bytes": "Bytes",
    }
    config_defaults = {
        "acceptedFormats": ["audio/mpeg", "audio/wav", "audio/ogg", "audio/webm"],
        "maxFileSize": 50,
        "autoplay": False,
        "loop": False,
        "showWaveform": True,
        "url": None,
    }

    async def tick(self, ctx: ActorContext) -> None:
        accepted = _accepted(ctx, self.config_defaults["acceptedFormats"])
        flags = {
            k: ctx.config.get(k, self.config_defaults[k])
            for k in ("autoplay", "loop", "showWaveform")
        }
        for k, v in flags.items():
            if not isinstance(v, bool):
                raise ActorError(f"config {k!r} must be true or false, got {v!r}")
        data, ctype, url = await asyncio.to_thread(load_source, ctx, max_file_bytes(ctx, 50))
        from ._image_streams import sniff

        base = ctype.split(";")[0].strip()
        if base == "application/octet-stream":
            base = ctype = sniff(data)
        aliases = {"audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/mp3": "audio/mpeg"}
        if aliases.get(base, base) not in accepted and base not in accepted:
            raise ActorError(
                f"config 'acceptedFormats': {base} is not accepted (accepted: "
                f"{', '.join(accepted)})"
            )
        info = {"url": url, "contentType": ctype, "size": len(data), **flags, **_wav_info(data)}
        ctx.done(
            {
                "audioData": Message.object(info),
                "metadata": Message.object(dict(info)),
                "bytes": Message.bytes(data),
            }
        )


class AudioStreamDisplay(SdkTemplate):
    """Drains an audio Stream and reports what it carried (there is no audio device here: a
    player reads the Stream itself, or taps it before this node).

    Ports: in ``stream`` → out ``metadata`` (Object ``{contentType, sizeHint, totalBytes,
    chunks, sampleRate, channels, bitDepth, durationMs, playback: {autoplay, loop,
    showWaveform}, streamMetadata}``; sample rate, channels and bit depth from the stream's
    ``begin`` metadata, ``durationMs`` from them and the byte count), ``error``. Config:
    ``autoplay``, ``loop`` (default false), ``showWaveform`` (default true),
    ``acceptedFormats`` (a stream of another content type fails the tick).
    """

    component = "tpl_audio_stream_display"
    inports = ["stream"]
    outports = ["metadata", "error"]
    inport_types = {"stream": "Stream"}
    outport_types = {"metadata": "Object", "error": "Error"}
    config_defaults = {
        "autoplay": False,
        "loop": False,
        "showWaveform": True,
        "acceptedFormats": [
            "audio/mpeg",
            "audio/wav",
            "audio/ogg",
            "audio/webm",
            "audio/aac",
            "audio/flac",
            "audio/raw-pcm",
        ],
    }

    async def tick(self, ctx: ActorContext) -> None:
        flags = {}
        for k in ("autoplay", "loop", "showWaveform"):
            v = ctx.config.get(k, self.config_defaults[k])
            if not isinstance(v, bool):
                raise ActorError(f"config {k!r} must be true or false, got {v!r}")
            flags[k] = v
        accepted = _accepted(ctx, self.config_defaults["acceptedFormats"])
        stream = await read_stream(ctx, "stream")
        ct = stream.content_type or "application/octet-stream"
        if not any(ct.startswith(f) for f in accepted):
            raise ActorError(
                f"in-port 'stream': content type {ct} is not in config 'acceptedFormats'"
            )
        meta = stream.metadata
        total = sum(len(f) for f in stream.frames)
        rate, channels, bits = (meta.get("sampleRate"), meta.get("channels"), meta.get("bitDepth"))
        duration = None
        if (
            isinstance(rate, (int, float))
            and isinstance(channels, (int, float))
            and isinstance(bits, (int, float))
            and min(rate, channels, bits) > 0
        ):
            duration = int(total / (channels * bits / 8) / rate * 1000)
        ctx.done(
            {
                "metadata": Message.object(
                    {
                        "contentType": ct,
                        "sizeHint": stream.size_hint,
                        "totalBytes": total,
                        "chunks": len(stream.frames),
                        "sampleRate": rate,
                        "channels": channels,
                        "bitDepth": bits,
                        "durationMs": duration,
                        "playback": flags,
                        "streamMetadata": meta or None,
                    }
                )
            }
        )
