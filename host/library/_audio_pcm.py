"""What the PCM-Stream audio templates share: reading a Stream of float32 samples, the
config readers, the RBJ biquads, the attack/release envelope, and the template base class."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._errors import ActorError
from ._base import LibraryActor, config_int, config_number
from ._sdk import SdkTemplate, StreamData, read_stream, write_stream

MIN_DB = -150.0
_PCM_DOC = "PCM Stream (float32 LE samples)"


def _db_to_linear(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def _linear_to_db(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(x > 0, 20.0 * np.log10(np.maximum(x, 1e-300)), MIN_DB)


def _samples(stream: StreamData, port: str) -> np.ndarray:
    data = stream.data
    if len(data) % 4:
        raise ActorError(
            f"in-port {port!r}: {len(data)} bytes is not a whole number of float32 samples"
        )
    x = np.frombuffer(data, dtype="<f4").astype(np.float64)
    if not np.isfinite(x).all():
        raise ActorError(f"in-port {port!r}: the samples include NaN or infinity")
    return x


def _pcm_frames(samples: np.ndarray, like: StreamData | None) -> list[bytes]:
    data = np.asarray(samples, dtype="<f4").tobytes()
    if like is not None and len(data) == sum(len(f) for f in like.frames):
        out, pos = [], 0
        for f in like.frames:
            out.append(data[pos : pos + len(f)])
            pos += len(f)
        return out
    step = 4096 * 4
    return [data[i : i + step] for i in range(0, len(data), step)]


def _rate(ctx: ActorContext) -> float:
    return float(
        config_number(
            ctx, "sampleRate", 44100.0, minimum=0, exclusive_minimum=True, maximum=10_000_000
        )
    )


def _frequency(ctx: ActorContext, key: str, default: float, rate: float) -> float:
    f = float(config_number(ctx, key, default, minimum=0, exclusive_minimum=True))
    if f >= rate / 2:
        raise ActorError(
            f"config {key!r} ({f} Hz) must be below half of config 'sampleRate' ({rate / 2} Hz)"
        )
    return f


def _ms(ctx: ActorContext, key: str, default: float) -> float:
    return float(config_number(ctx, key, default, minimum=0, maximum=3_600_000))


def _fft_size(ctx: ActorContext, default: int) -> int:
    n = config_int(ctx, "fftSize", default, minimum=16, maximum=65536)
    if n & (n - 1):
        raise ActorError(f"config 'fftSize' must be a power of two, got {n}")
    return n


def _hop(ctx: ActorContext, default: int, fft: int) -> int:
    return config_int(ctx, "hopSize", default, minimum=1, maximum=fft)


_KINDS = {
    "lowpass": "lowpass",
    "lpf": "lowpass",
    "highpass": "highpass",
    "hpf": "highpass",
    "bandpass": "bandpass",
    "bpf": "bandpass",
    "notch": "notch",
    "peaking": "peaking",
    "eq": "peaking",
    "lowshelf": "lowshelf",
    "highshelf": "highshelf",
}


def biquad(
    kind: str, rate: float, freq: float, q: float, gain_db: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(b, a)`` of an RBJ cookbook biquad, normalised so ``a[0] == 1``."""
    w0 = 2 * math.pi * freq / rate
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / (2 * q)
    big_a = 10 ** (gain_db / 40)
    if kind == "lowpass":
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "highpass":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "bandpass":
        b = [alpha, 0.0, -alpha]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "notch":
        b = [1.0, -2 * cw, 1.0]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "peaking":
        b = [1 + alpha * big_a, -2 * cw, 1 - alpha * big_a]
        a = [1 + alpha / big_a, -2 * cw, 1 - alpha / big_a]
    else:
        s = 2 * math.sqrt(big_a) * alpha
        sign = 1 if kind == "lowshelf" else -1
        b = [
            big_a * ((big_a + 1) - sign * (big_a - 1) * cw + s),
            sign * 2 * big_a * ((big_a - 1) - sign * (big_a + 1) * cw),
            big_a * ((big_a + 1) - sign * (big_a - 1) * cw - s),
        ]
        a = [
            (big_a + 1) + sign * (big_a - 1) * cw + s,
            -sign * 2 * ((big_a - 1) + sign * (big_a + 1) * cw),
            (big_a + 1) + sign * (big_a - 1) * cw - s,
        ]
    bn, an = np.array(b) / a[0], np.array(a) / a[0]
    return bn, an


def _filter(x: np.ndarray, ba: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    from scipy.signal import lfilter

    return np.asarray(lfilter(ba[0], ba[1], x))


def _coeff(ms: float, rate: float) -> float:
    return 0.0 if ms <= 0 else math.exp(-1.0 / (ms * 0.001 * rate))


def envelope(
    x: np.ndarray, attack_ms: float, release_ms: float, rate: float, rms: bool = False
) -> np.ndarray:
    """One-pole attack/release envelope of ``|x|`` (or of ``x²``, square-rooted, for RMS)."""
    att, rel = _coeff(attack_ms, rate), _coeff(release_ms, rate)
    levels = (np.square(x) if rms else np.abs(x)).tolist()
    out = [0.0] * len(levels)
    env = 0.0
    for i, v in enumerate(levels):
        c = att if v > env else rel
        env = c * env + (1.0 - c) * v
        out[i] = env
    result = np.array(out)
    return np.sqrt(result) if rms else result


def compressor_gain(
    env: np.ndarray, threshold_db: float, ratio: float, knee_db: float
) -> np.ndarray:
    over = _linear_to_db(env) - threshold_db
    inv = 0.0 if math.isinf(ratio) else 1.0 / ratio
    soft = over * (1 - (over / knee_db if knee_db > 0 else 1.0) * (1 - inv))
    hard = over * inv
    compressed = np.where((knee_db > 0) & (over < knee_db), soft, hard)
    return np.where(env > _db_to_linear(threshold_db), 10 ** ((compressed - over) / 20), 1.0)


class _PcmTemplate(SdkTemplate):
    """One PCM Stream on ``stream`` in, one on ``stream`` out."""

    inports = ["stream"]
    outports = ["stream", "error"]
    inport_types = {"stream": "Stream"}
    outport_types = {"stream": "Stream", "error": "Error"}
    #: an RFLA form of the library this id had before: in ``in`` → out ``out``
    rfla: type[LibraryActor] | None = None

    def settings(self, ctx: ActorContext) -> Any:
        """Config read and checked before the stream is, so bad config fails first."""
        return None

    def process(self, x: np.ndarray, s: Any) -> np.ndarray:
        raise NotImplementedError

    async def tick(self, ctx: ActorContext) -> None:
        if self.rfla is not None and "in" in ctx.inputs and "stream" not in ctx.inputs:
            self.rfla().run(ctx)
            return
        s = self.settings(ctx)
        stream = await read_stream(ctx, "stream")
        x = _samples(stream, "stream")
        y = await asyncio.to_thread(self.process, x, s)
        if not np.isfinite(y).all():
            raise ActorError("the result is not finite (check the filter settings)")
        ctx.done(
            {
                "stream": write_stream(
                    ctx, "stream", _pcm_frames(y, stream), stream.content_type, stream.metadata
                )
            }
        )


def _with_rfla(cls: type[_PcmTemplate], legacy: type[LibraryActor], doc: str) -> None:
    cls.rfla = legacy
    cls.inports = ["stream", "in"]
    cls.outports = [*cls.outports, "out"]
    cls.inport_types = {**cls.inport_types, "in": "Bytes"}
    cls.outport_types = {**cls.outport_types, "out": legacy.outport_types["out"]}
    cls.__doc__ = (cls.__doc__ or "") + "\n    " + doc + "\n    "
