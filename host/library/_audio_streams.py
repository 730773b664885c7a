"""The SDK's audio templates: DSP on Streams of little-endian float32 PCM samples.

A PCM Stream's data frames are float32 samples (one channel, or channels interleaved, which
level-based templates treat alike), its sample rate is config ``sampleRate`` (default 44100)
as in the SDK. A template collects the whole stream (bounded by config ``maxBytes``, default
256 MiB, and ``timeoutMs`` per frame), computes with numpy/scipy, and answers with a finished
Stream carrying the input's content type and ``begin`` metadata, cut at the input's frame
boundaries where the length is unchanged. Filters are the RBJ cookbook biquads run through
``scipy.signal.lfilter``; dynamics follow an attack/release envelope (one-pole, per sample).

``tpl_audio_gain``, ``tpl_audio_normalize`` and ``tpl_audio_spectrum`` also still take the
library's own RFLA audio on ``in`` (answering on ``out``), as before they had the SDK's ports.
"""

from __future__ import annotations

from ._audio_analysis import Convolve, Correlator, Crossover, PeakDetect, SilenceDetect
from ._audio_dynamics import (
    AudioGain,
    AudioNormalize,
    BiquadFilter,
    Compressor,
    DcOffset,
    DeEsser,
    EnvelopeFollower,
    Equalizer,
    Limiter,
    NoiseGate,
)
from ._audio_io import AudioInput, AudioStreamDisplay
from ._audio_spectral import AudioSpectrum, Ifft, NoiseReduction, PitchShift, TimeStretch
from ._sdk import SdkTemplate

__all__ = ["AUDIO_STREAM_TEMPLATES"]

AUDIO_STREAM_TEMPLATES: dict[str, type[SdkTemplate]] = {
    cls.component: cls
    for cls in (
        AudioGain,
        AudioNormalize,
        AudioSpectrum,
        BiquadFilter,
        Compressor,
        Convolve,
        Correlator,
        Crossover,
        DcOffset,
        DeEsser,
        EnvelopeFollower,
        Equalizer,
        Ifft,
        Limiter,
        NoiseGate,
        NoiseReduction,
        PeakDetect,
        PitchShift,
        SilenceDetect,
        TimeStretch,
        AudioInput,
        AudioStreamDisplay,
    )
}
