"""One leg's audio up to the ASR: decode, resample to 16 kHz, fill gaps, cut 80 ms chunks.

Sans-I/O (design.md §5): bytes in, chunks out, no clock, no loop.  design.md §2:

    Leg: resample to 16 kHz (soxr stream)    fill gaps with silence: the leg clock never skips
    80 ms chunks (1280 samples, 2560 bytes)  one Voxtral step per chunk

The *leg clock* is the count of 16 kHz samples since the leg started.  ``LegAudio`` keeps it exact:
chunk ``k`` always holds leg-clock samples ``[k * 1280, (k + 1) * 1280)``, missing input becomes
silence, and duplicated input is dropped, so ``samples_out`` after ``finish()`` is exactly
``floor(input samples * 16000 / in_rate_hz + 1/2)``.

What soxr (python-soxr 1.1.0, libsoxr 0.1.3-14) does, measured and relied on here:

* **No time shift.**  libsoxr trims its filter delay itself: output sample ``i`` is the signal at
  ``i / out_rate_hz``, in streaming mode too (8 kHz, on the half-band filter: 2.4 ms late).  A
  1 kHz tone comes out in phase with an ideal tone (SNR > 130 dB before quantisation), so
  nothing has to be skipped or padded.
* **Exact totals.**  After ``last=True`` the total output is ``floor(n * out / in + 1/2)`` for
  ``n`` input samples: ``n * 2`` for 8 kHz, ``n`` for 16 kHz, ``round(n / 3)`` for 48 kHz.  Only
  32 kHz can hit an exact half (odd ``n``), which soxr rounds up (Python's ``round`` would not).
* **Bursty output, i.e. latency.**  soxr works on blocks and returns nothing for some calls: with
  'HQ', 8 kHz input in 20 ms frames gives 0, 0, 0, 0, 0, 1660, 0, ... output samples (up to ~115 ms
  of 16 kHz audio held back); 48 kHz gives ~490 samples on two frames of three (~37 ms held).
  ``flush()`` / ``finish()`` returns the rest.  Its variable-rate engine (``vr=True``) releases a
  steady 30 ms after each frame, 'QQ' (cubic) at once but at 10 dB SNR; no setting of python-soxr
  goes lower.  So 8 kHz phone audio, the one latency-bound case (a live caption per word),
  is upsampled by :class:`HalfbandInterpolator` instead (> 90 dB): nothing held back, exact
  totals, split-invariant output, and a constant 2.4 ms delay (39 samples) that is left in.
  Every other ratio is soxr's: downsampling from 48 kHz releases within 10-30 ms on the
  fixed-rate engine.
* **int16 mode dithers.**  With ``dtype='int16'`` libsoxr adds random TPDF dither to the output:
  silence in is not silence out, and two runs over the same input differ by up to 2 LSB.  So the
  stream runs in float32 (on the int16 scale) and this module rounds to int16 itself: digital
  silence stays exactly zero and the output is bit-identical however the input is split into
  frames.
"""

from __future__ import annotations

from typing import Final, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import soxr

from bridge.core import g711
from bridge.core.halfband import HalfbandInterpolator
from bridge.core.types import ASR_SAMPLE_RATE_HZ, CHUNK_SAMPLES, AudioEncoding
from bridge.errors import InvalidState, MediaError

__all__ = [
    "SUPPORTED_SAMPLE_RATES_HZ",
    "LegAudio",
    "HalfbandInterpolator",
    "Quality",
    "Resampler",
    "deinterleave",
    "downmix",
]

# Rates the bridge accepts from any source (G.711 8k, G.722 16k, Opus/WebRTC 48k, common files).
SUPPORTED_SAMPLE_RATES_HZ: Final = (8000, 16000, 24000, 32000, 44100, 48000)

Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
_QUALITIES: Final = ("QQ", "LQ", "MQ", "HQ", "VHQ")
# 'HQ' (libsoxr: 20-bit precision, single-precision filters) keeps a tone at > 130 dB SNR before
# rounding, far beyond int16.  'VHQ' (double precision) costs more CPU and, from 48 kHz, holds back
# twice the audio (76 ms against 37 ms); 'MQ'/'LQ' save little latency at 8 kHz and lose precision.
DEFAULT_QUALITY: Final[Quality] = "HQ"

_INT16_MIN: Final = -32768.0
_INT16_MAX: Final = 32767.0
_SILENCE_BLOCK_S: Final = 1  # silence is fed to soxr in blocks of at most this many seconds

_T = TypeVar("_T", bound=np.generic)


def _check_rate(rate_hz: int, what: str) -> int:
    if isinstance(rate_hz, bool) or not isinstance(rate_hz, int):
        raise ValueError(f"{what} must be an int in Hz, got {rate_hz!r}")
    if rate_hz not in SUPPORTED_SAMPLE_RATES_HZ:
        supported = ", ".join(str(r) for r in SUPPORTED_SAMPLE_RATES_HZ)
        raise ValueError(f"unsupported {what} {rate_hz} Hz (supported: {supported})")
    return rate_hz


def _quantise(y: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Round float32 samples on the int16 scale to int16 values, in place (clipped, no dither)."""
    np.maximum(y, _INT16_MIN, out=y)  # np.clip's result, without its Python-level wrapper
    np.minimum(y, _INT16_MAX, out=y)
    np.rint(y, out=y)
    return y


class Resampler:
    """A streaming resampler for one mono int16 stream: one ``soxr.ResampleStream`` per leg
    (a :class:`HalfbandInterpolator` for 8 -> 16 kHz, where soxr holds 30 ms back).

    ``process()`` may return fewer (or zero) samples than the rate ratio suggests, because soxr
    buffers internally; ``flush()`` returns the rest, after which the total output is exactly
    ``floor(n * out_rate_hz / in_rate_hz + 1/2)`` samples for ``n`` input samples.  Output sample
    ``i`` is aligned with input time ``i / out_rate_hz`` (soxr compensates its filter delay;
    the half-band filter leaves its 2.4 ms in).

    When the rates are equal the input passes through untouched and soxr is not used.

    ``reset()`` starts a fresh stream (the source calls it on a discontinuity, e.g. a new RTP
    SSRC); there is no hidden timer.
    """

    __slots__ = ("_finished", "_stream", "in_rate_hz", "out_rate_hz", "quality")

    def __init__(
        self,
        in_rate_hz: int,
        out_rate_hz: int = ASR_SAMPLE_RATE_HZ,
        *,
        quality: Quality = DEFAULT_QUALITY,
    ) -> None:
        self.in_rate_hz: Final = _check_rate(in_rate_hz, "input sample rate")
        self.out_rate_hz: Final = _check_rate(out_rate_hz, "output sample rate")
        if quality not in _QUALITIES:
            raise ValueError(f"unknown soxr quality {quality!r} (one of {', '.join(_QUALITIES)})")
        self.quality: Final = quality
        self._stream: soxr.ResampleStream | HalfbandInterpolator | None = None
        if 2 * in_rate_hz == out_rate_hz:
            self._stream = HalfbandInterpolator()
        elif in_rate_hz != out_rate_hz:
            self._stream = soxr.ResampleStream(
                in_rate_hz,
                out_rate_hz,
                1,
                dtype="float32",
                quality=quality,
            )
        self._finished = False

    @property
    def passthrough(self) -> bool:
        """True when the rates are equal and samples pass through unchanged."""
        return self._stream is None

    @property
    def doubles(self) -> bool:
        """True on the half-band interpolator: every input sample gives two output samples at
        once, the same however the input is split, so a caller may hold input back and resample
        it in larger blocks without changing a sample of the output."""
        return isinstance(self._stream, HalfbandInterpolator)

    def process(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Resample the next int16 samples; returns what soxr has ready (possibly nothing).

        In passthrough mode the input array itself is returned.
        """
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"Resampler.process() needs 1-D int16 samples, got {pcm.dtype}")
        if self._stream is None:
            self._check_open("process")
            return pcm
        return _quantise(self.process_float(pcm.astype(np.float32))).astype(np.int16)

    def flush(self) -> npt.NDArray[np.int16]:
        """End the stream: return the samples soxr still holds (soxr ``last=True``)."""
        if self._stream is None:
            self._check_open("flush")
            self._finished = True
            return np.zeros(0, dtype=np.int16)
        return _quantise(self.flush_float()).astype(np.int16)

    def reset(self) -> None:
        """Drop buffered samples and start a fresh stream at the same rates."""
        if self._stream is not None:
            self._stream.clear()
        self._finished = False

    def process_float(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Like ``process()`` on float32 samples on the int16 scale, unrounded (``LegAudio``).

        ``x`` must be a contiguous 1-D float32 array; the result is a new array the caller owns.
        """
        self._check_open("process")
        assert self._stream is not None, "process_float() needs a resampling stream"
        y: npt.NDArray[np.float32] = self._stream.resample_chunk(x)
        return y

    def flush_float(self) -> npt.NDArray[np.float32]:
        """Like ``flush()``, unrounded float32 on the int16 scale."""
        self._check_open("flush")
        assert self._stream is not None, "flush_float() needs a resampling stream"
        self._finished = True
        y: npt.NDArray[np.float32] = self._stream.resample_chunk(
            np.zeros(0, dtype=np.float32), last=True
        )
        return y

    def _check_open(self, what: str) -> None:
        if self._finished:
            raise InvalidState(f"Resampler.{what}() after flush(); call reset() first")


class LegAudio:
    """The audio path of one leg: payloads in, 80 ms PCM16 chunks at 16 kHz out (sans-I/O).

    * ``receive_frame(payload, position=...)`` decodes G.711, PCM16 LE or L16 (big-endian),
      resamples to 16 kHz and cuts chunks.  ``position`` is the frame's first sample in input-rate
      samples since the leg started (e.g. from RTP timestamps).  A later position than expected
      first fills the hole with silence *through the resampler* (the stream stays continuous); an
      earlier one (duplicate, overlap, late reordered packet) drops the samples already covered and
      counts them.  Without ``position`` frames are taken as contiguous.  The caller rebases
      positions on a real discontinuity (new SSRC, timestamp jump): whatever hole it reports is
      filled.
    * ``receive_silence(n)`` appends ``n`` input-rate samples of silence (hold, RTP inactivity).
    * ``chunks_ready()`` returns the complete chunks made since the last call, each exactly
      ``CHUNK_BYTES`` (2560) bytes; chunk ``k`` of the leg is leg-clock samples
      ``[k * 1280, (k + 1) * 1280)``.
    * ``finish()`` flushes the resampler and returns the last, partial chunk (``None`` if empty).
      Chunks completed by that flush are still collected with ``chunks_ready()``, which must be
      sent *before* the returned tail.  Receiving after ``finish()`` raises ``InvalidState``.

    Counters: ``samples_in`` (input-rate samples of received audio used), ``samples_filled``
    (input-rate samples of silence inserted), ``samples_dropped`` (input-rate samples discarded as
    already covered), ``samples_out`` (16 kHz samples in complete chunks, plus the tail once
    finished: the leg clock).  ``next_position == samples_in + samples_filled``; after ``finish()``
    ``samples_out == floor(next_position * 16000 / in_rate_hz + 1/2)``.
    """

    __slots__ = (
        "_batch",
        "_bytes_per_sample",
        "_chunk",
        "_chunk_fill",
        "_dtype",
        "_finished",
        "_float_table",
        "_held",
        "_held_n",
        "_int16_table",
        "_ready",
        "_resampler",
        "_zeros",
        "encoding",
        "in_rate_hz",
        "samples_dropped",
        "samples_filled",
        "samples_in",
        "samples_out",
    )

    def __init__(
        self,
        in_rate_hz: int,
        encoding: AudioEncoding,
        *,
        quality: Quality = DEFAULT_QUALITY,
    ) -> None:
        if not isinstance(encoding, AudioEncoding):
            raise ValueError(f"encoding must be an AudioEncoding, got {encoding!r}")
        self._resampler = Resampler(in_rate_hz, ASR_SAMPLE_RATE_HZ, quality=quality)
        self.in_rate_hz: Final = in_rate_hz
        self.encoding: Final = encoding
        self._bytes_per_sample = encoding.bytes_per_sample
        self._dtype: Final = ">i2" if encoding is AudioEncoding.L16 else "<i2"
        # G.711 decodes by table look-up straight to float32 for soxr (int16 when passing through).
        self._float_table: npt.NDArray[np.float32] | None = None
        self._int16_table: npt.NDArray[np.int16] | None = None
        if encoding is AudioEncoding.PCMU:
            self._float_table, self._int16_table = g711.ULAW_TO_FLOAT32, g711.ULAW_TO_LINEAR
        elif encoding is AudioEncoding.PCMA:
            self._float_table, self._int16_table = g711.ALAW_TO_FLOAT32, g711.ALAW_TO_LINEAR
        # One preallocated chunk buffer, little-endian as the ASR wants it on every platform.
        self._chunk = np.zeros(CHUNK_SAMPLES, dtype="<i2")
        self._chunk_fill = 0
        self._ready: list[bytes] = []
        self._zeros: npt.NDArray[np.float32] | None = None  # silence block, made on first gap
        # On the half-band interpolator the input is held (as received) until it completes a
        # chunk, then decoded and resampled at once: the same chunks, completed by the same
        # frames, for one pass of numpy calls per 80 ms chunk instead of one per 20 ms frame.
        self._batch = self._resampler.doubles
        self._held = bytearray()
        self._held_n = 0  # input samples in _held
        self._finished = False
        self.samples_in = 0
        self.samples_filled = 0
        self.samples_dropped = 0
        self.samples_out = 0

    # -- input ------------------------------------------------------------------------------

    @property
    def next_position(self) -> int:
        """The input-rate position the next contiguous frame starts at."""
        return self.samples_in + self.samples_filled

    @property
    def samples_buffered(self) -> int:
        """16 kHz samples waiting for their chunk (not counting what soxr holds back)."""
        return self._chunk_fill + 2 * self._held_n

    @property
    def finished(self) -> bool:
        return self._finished

    def receive_frame(
        self, payload: bytes | bytearray | memoryview, *, position: int | None = None
    ) -> None:
        """Take one frame of encoded audio; see the class docstring for ``position``."""
        self._check_open("receive_frame")
        bytes_per_sample = self._bytes_per_sample
        n_bytes = len(payload)
        if n_bytes % bytes_per_sample:
            raise MediaError(
                f"{self.encoding.value} frame of {n_bytes} bytes: "
                "a 16-bit frame has an even number of bytes"
            )
        n = n_bytes // bytes_per_sample
        skip = 0
        if position is not None:
            if position < 0:
                raise ValueError(f"frame position must be >= 0, got {position}")
            expected = self.samples_in + self.samples_filled
            if position > expected:
                self._fill_silence(position - expected)
            elif position < expected:
                skip = min(expected - position, n)
                self.samples_dropped += skip
        if skip == n:
            return
        data = memoryview(payload)[skip * bytes_per_sample :] if skip else payload
        self.samples_in += n - skip
        resampler = self._resampler
        if resampler.passthrough:
            table16 = self._int16_table
            if table16 is None:
                self._emit(np.frombuffer(data, dtype=self._dtype))
            else:
                self._emit(table16[np.frombuffer(data, dtype=np.uint8)])
            return
        if self._batch:
            self._held += data
            self._held_n += n - skip
            if 2 * self._held_n + self._chunk_fill >= CHUNK_SAMPLES:
                self._release()
            return
        y = resampler.process_float(self._decode_float(data))
        if y.size:
            self._emit(_quantise(y))

    def receive_silence(self, samples_in: int) -> None:
        """Append ``samples_in`` input-rate samples of silence (counted in ``samples_filled``)."""
        self._check_open("receive_silence")
        if samples_in < 0:
            raise ValueError(f"silence length must be >= 0 samples, got {samples_in}")
        self._fill_silence(samples_in)

    def finish(self) -> bytes | None:
        """Flush the resampler; return the final partial chunk (< 2560 bytes) or ``None``.

        Call ``chunks_ready()`` afterwards for any complete chunks the flush made; they come
        before the returned tail.
        """
        self._check_open("finish")
        self._finished = True
        if self._held:
            self._release()
        if not self._resampler.passthrough:
            y = self._resampler.flush_float()
            if y.size:
                self._emit(_quantise(y))
        fill = self._chunk_fill
        if not fill:
            return None
        self._chunk_fill = 0
        self.samples_out += fill
        return self._chunk[:fill].tobytes()

    # -- output -----------------------------------------------------------------------------

    def chunks_ready(self) -> list[bytes]:
        """The complete 80 ms chunks made since the last call, oldest first (each only once)."""
        ready = self._ready
        if ready:
            self._ready = []
        return ready

    # -- internals --------------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._finished:
            raise InvalidState(f"LegAudio.{what}() after finish()")

    def _fill_silence(self, n: int) -> None:
        self.samples_filled += n
        resampler = self._resampler
        if resampler.passthrough:
            while n > 0:
                take = min(n, CHUNK_SAMPLES)
                self._emit(np.zeros(take, dtype=np.int16))
                n -= take
            return
        zeros = self._zeros
        if zeros is None:
            zeros = self._zeros = np.zeros(self.in_rate_hz * _SILENCE_BLOCK_S, dtype=np.float32)
        if self._held:
            self._release()
        while n > 0:
            take = min(n, zeros.size)
            y = resampler.process_float(zeros[:take])
            if y.size:
                self._emit(_quantise(y))
            n -= take

    def _decode_float(self, data: bytes | bytearray | memoryview) -> npt.NDArray[np.float32]:
        table = self._float_table
        if table is None:
            return np.frombuffer(data, dtype=self._dtype).astype(np.float32)
        return table[np.frombuffer(data, dtype=np.uint8)]

    def _release(self) -> None:
        """Resample the held input (the interpolator's output does not depend on the split)."""
        x = self._decode_float(self._held)
        self._held = bytearray()
        self._held_n = 0
        y = self._resampler.process_float(x)
        if y.size:
            self._emit(_quantise(y))

    def _emit(self, y: npt.NDArray[np.float32] | npt.NDArray[np.int16]) -> None:
        """Append 16 kHz samples (int16 values; float32 already rounded) to the chunk buffer."""
        chunk = self._chunk
        fill = self._chunk_fill
        n = y.size
        i = 0
        while i < n:
            take = min(CHUNK_SAMPLES - fill, n - i)
            chunk[fill : fill + take] = y[i : i + take]  # float32 -> int16: exact after rint
            fill += take
            i += take
            if fill == CHUNK_SAMPLES:
                self._ready.append(chunk.tobytes())
                self.samples_out += CHUNK_SAMPLES
                fill = 0
        self._chunk_fill = fill


def deinterleave(pcm: npt.NDArray[_T], channels: int) -> list[npt.NDArray[_T]]:
    """Split interleaved samples (L R L R ...) into one contiguous array per channel."""
    frames = _frames(pcm, channels)
    if channels == 1:
        return [pcm]
    return [np.ascontiguousarray(frames[:, c]) for c in range(channels)]


def downmix(pcm: npt.NDArray[np.int16], channels: int) -> npt.NDArray[np.int16]:
    """Average interleaved int16 channels to mono (rounded to nearest, halves up).

    aiortc decodes Opus to 48 kHz stereo whatever the source; a stereo file can also be one leg.
    """
    frames = _frames(pcm, channels)
    if pcm.dtype != np.int16:
        raise ValueError(f"downmix() needs int16 samples, got {pcm.dtype}")
    if channels == 1:
        return pcm
    total = frames.sum(axis=1, dtype=np.int32)
    mixed: npt.NDArray[np.int16] = ((total + channels // 2) // channels).astype(np.int16)
    return mixed


def _frames(pcm: npt.NDArray[_T], channels: int) -> npt.NDArray[_T]:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    if pcm.ndim != 1:
        raise ValueError(f"expected interleaved 1-D samples, got shape {pcm.shape}")
    if pcm.size % channels:
        raise ValueError(
            f"{pcm.size} samples do not split into {channels} channels (not a whole frame)"
        )
    return pcm.reshape(-1, channels)
