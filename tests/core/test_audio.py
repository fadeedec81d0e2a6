"""Resampler, LegAudio (decode -> 16 kHz -> 80 ms chunks, leg clock) and channel helpers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from bridge.core.audio import (
    SUPPORTED_SAMPLE_RATES_HZ,
    HalfbandInterpolator,
    LegAudio,
    Resampler,
    deinterleave,
    downmix,
)
from bridge.core.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from bridge.core.types import CHUNK_BYTES, CHUNK_SAMPLES, AudioEncoding
from bridge.errors import InvalidState, MediaError

OUT_HZ = 16_000
Int16Array = npt.NDArray[np.int16]


def expected_out(samples_in: int, in_rate_hz: int) -> int:
    """soxr's total: floor(n * 16000 / in + 1/2), i.e. round() with halves up."""
    return (2 * samples_in * OUT_HZ + in_rate_hz) // (2 * in_rate_hz)


def tone(rate_hz: int, freq_hz: float, n: int, amplitude: float = 16000.0) -> Int16Array:
    t = np.arange(n) / rate_hz
    return np.rint(amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def noise(n: int, seed: int = 0, scale: float = 3000.0) -> Int16Array:
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal(n) * scale, -32768, 32767).astype(np.int16)


def one_shot(pcm: Int16Array, rate_hz: int) -> Int16Array:
    resampler = Resampler(rate_hz)
    return np.concatenate([resampler.process(pcm), resampler.flush()])


def stream(leg: LegAudio, payloads: list[bytes]) -> Int16Array:
    """Feed contiguous payloads, finish, and return everything the leg emitted, checking sizes."""
    chunks: list[bytes] = []
    for payload in payloads:
        leg.receive_frame(payload)
        chunks += leg.chunks_ready()
    tail = leg.finish()
    chunks += leg.chunks_ready()
    assert all(len(c) == CHUNK_BYTES for c in chunks)
    if tail is not None:
        assert 0 < len(tail) < CHUNK_BYTES
        chunks.append(tail)
    return np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.int16)


def split(pcm: Int16Array, sizes: list[int] | int) -> list[bytes]:
    """Cut samples into PCM16 payloads of the given sizes (cycled), the last one shorter."""
    sizes = [sizes] if isinstance(sizes, int) else sizes
    out: list[bytes] = []
    i = k = 0
    while i < len(pcm):
        size = sizes[k % len(sizes)]
        out.append(pcm[i : i + size].astype("<i2").tobytes())
        i += size
        k += 1
    return out


def snr_db(signal: npt.NDArray[np.float64], reference: npt.NDArray[np.float64]) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((signal - reference) ** 2)))


# -- Resampler ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [11025, 22050, 0, -8000, 96000])
def test_resampler_rejects_unsupported_rates(rate: int) -> None:
    with pytest.raises(ValueError, match=rf"unsupported input sample rate {rate} Hz \(supported"):
        Resampler(rate)
    with pytest.raises(ValueError, match=rf"unsupported output sample rate {rate} Hz"):
        Resampler(8000, rate)


@pytest.mark.parametrize("rate", [8000.0, True, "8000"])
def test_resampler_rejects_non_int_rates(rate: object) -> None:
    with pytest.raises(ValueError, match=f"must be an int in Hz, got {rate!r}"):
        Resampler(rate)  # type: ignore[arg-type]


def test_resampler_rejects_unknown_quality() -> None:
    with pytest.raises(ValueError, match="unknown soxr quality 'best'"):
        Resampler(8000, quality="best")  # type: ignore[arg-type]


def test_resampler_passthrough_at_equal_rates() -> None:
    resampler = Resampler(16000)
    assert resampler.passthrough
    pcm = noise(321)
    assert resampler.process(pcm) is pcm
    assert resampler.flush().size == 0
    with pytest.raises(InvalidState):
        resampler.process(pcm)
    resampler.reset()
    assert resampler.process(pcm) is pcm


def test_resampler_needs_int16() -> None:
    with pytest.raises(ValueError, match="1-D int16"):
        Resampler(8000).process(np.zeros(10, dtype=np.float32))


def test_resampler_flush_then_reset_starts_fresh() -> None:
    resampler = Resampler(8000)
    pcm = noise(8000)
    first = np.concatenate([resampler.process(pcm), resampler.flush()])
    with pytest.raises(InvalidState, match="after flush"):
        resampler.process(pcm)
    with pytest.raises(InvalidState, match="after flush"):
        resampler.flush()
    resampler.reset()
    second = np.concatenate([resampler.process(pcm), resampler.flush()])
    assert np.array_equal(first, second)


@pytest.mark.parametrize("rate", SUPPORTED_SAMPLE_RATES_HZ)
def test_resampler_total_output_is_exact(rate: int) -> None:
    for n in [1, 2, 3, 5, 159, 160, 161, 441, 882, 961, 4799, 12345]:
        assert one_shot(noise(n, seed=n), rate).size == expected_out(n, rate), n


def test_resampler_rounds_exact_halves_up() -> None:
    # Only 32 kHz -> 16 kHz hits exact halves: 5 samples -> 2.5 -> 3 (Python's round() says 2).
    assert one_shot(noise(5), 32000).size == 3
    assert one_shot(noise(1), 32000).size == 1


def test_resampler_output_does_not_depend_on_framing() -> None:
    pcm = noise(48000 * 2, seed=3)
    resampler = Resampler(48000)
    pieces = [resampler.process(p) for p in np.array_split(pcm, 777)] + [resampler.flush()]
    assert np.array_equal(np.concatenate(pieces), one_shot(pcm, 48000))


def test_resampler_keeps_silence_exactly_silent() -> None:
    # soxr's own int16 mode would add dither noise here; the float path must not.
    assert not np.any(one_shot(np.zeros(8000, dtype=np.int16), 8000))


# -- tone: frequency, level and phase through LegAudio -----------------------------------------


@pytest.mark.parametrize(
    ("rate", "freq_hz"),
    [
        (8000, 1000.0),
        (8000, 3000.0),
        (16000, 1000.0),
        (16000, 6000.0),
        (24000, 2500.0),
        (32000, 1000.0),
        (44100, 1000.0),
        (48000, 1000.0),
        (48000, 5000.0),
    ],
)
def test_tone_keeps_frequency_and_level(rate: int, freq_hz: float) -> None:
    seconds = 2
    pcm = tone(rate, freq_hz, rate * seconds)
    out = stream(LegAudio(rate, AudioEncoding.PCM16), split(pcm, rate // 50)).astype(np.float64)
    assert out.size == OUT_HZ * seconds
    # The ideal 16 kHz tone, same amplitude and phase: soxr compensates its delay, so no shift;
    # the half-band filter (8 kHz) leaves its 39 samples in.
    delay = HalfbandInterpolator.DELAY if rate == 8000 else 0
    reference = 16000.0 * np.sin(2 * np.pi * freq_hz * (np.arange(out.size) - delay) / OUT_HZ)
    inner = slice(OUT_HZ // 20, -OUT_HZ // 20)  # 50 ms: the filter's start/end transients
    assert snr_db(out[inner], reference[inner]) >= 60.0
    level_db = 20 * np.log10(np.std(out[inner]) / np.std(reference[inner]))
    assert abs(level_db) < 0.01


@pytest.mark.parametrize("freq_hz", [300.0, 1000.0, 2000.0, 3000.0, 3400.0])
def test_8khz_upsampling_keeps_telephone_band_tones_at_90_db(freq_hz: float) -> None:
    """The half-band interpolator: the whole G.711 band (RFC 3551: 300-3400 Hz) in phase and
    level, far above G.711's own ~38 dB; before rounding to int16."""
    x = tone(8000, freq_hz, 16000).astype(np.float32)
    interpolator = HalfbandInterpolator()
    y = np.concatenate(
        [interpolator.resample_chunk(x[i : i + 160]) for i in range(0, x.size, 160)]
    ).astype(np.float64)
    assert y.size == 32000
    delay = HalfbandInterpolator.DELAY
    reference = 16000.0 * np.sin(2 * np.pi * freq_hz * (np.arange(y.size) - delay) / OUT_HZ)
    inner = slice(800, -800)
    assert snr_db(y[inner], reference[inner]) >= 90.0


def test_8khz_upsampling_rejects_the_image() -> None:
    """A 3 kHz tone at 8 kHz has its image at 5 kHz once zero-stuffed: >= 90 dB below."""
    out = one_shot(tone(8000, 3000.0, 16000), 8000)[800:-800].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    freqs = np.fft.rfftfreq(out.size, 1 / OUT_HZ)
    image = spectrum[np.abs(freqs - 5000) < 50].max()
    assert 20 * np.log10(image / spectrum.max()) <= -90.0


def test_8khz_upsampling_releases_each_frame_at_once() -> None:
    """Unlike soxr (30 ms held on its variable-rate engine, more on the others), all of a
    frame's samples come out with it; an impulse at input sample k is at output sample
    2 k + 39, the filter's constant 2.4 ms."""
    resampler = Resampler(8000)
    pcm = np.zeros(800, dtype=np.int16)
    pcm[401] = 16000
    sizes = [resampler.process(pcm[i : i + 160]).size for i in range(0, 800, 160)]
    assert sizes == [320] * 5
    assert resampler.flush().size == 0
    out = one_shot(pcm, 8000)
    assert out.size == 1600
    assert int(np.argmax(out)) == 802 + HalfbandInterpolator.DELAY and out.max() == 16000


def test_tone_above_output_nyquist_is_removed() -> None:
    # 10 kHz at 48 kHz cannot exist at 16 kHz: it must not alias down to 6 kHz.
    pcm = tone(48000, 10000.0, 48000)
    out = one_shot(pcm, 48000)[800:-800]
    assert np.max(np.abs(out)) <= 16  # below -60 dB of the 16000 amplitude


# -- LegAudio: streaming equals one-shot, chunks ----------------------------------------------


@pytest.mark.parametrize("rate", SUPPORTED_SAMPLE_RATES_HZ)
@pytest.mark.parametrize("sizes", ["20ms", [1, 7, 161, 333, 1000, 2], [4097]])
def test_streamed_equals_one_shot(rate: int, sizes: str | list[int]) -> None:
    pcm = noise(rate * 3 + 123, seed=rate)
    frame_sizes = rate // 50 if sizes == "20ms" else sizes
    assert not isinstance(frame_sizes, str)
    out = stream(LegAudio(rate, AudioEncoding.PCM16), split(pcm, frame_sizes))
    assert np.array_equal(out, one_shot(pcm, rate))  # bit-exact: no seams at frame/chunk borders


def test_chunks_cover_consecutive_leg_clock_ranges() -> None:
    pcm = noise(8000 * 2 + 100, seed=9)
    reference = one_shot(pcm, 8000)
    leg = LegAudio(8000, AudioEncoding.PCM16)
    seen: list[bytes] = []
    for payload in split(pcm, 160):
        leg.receive_frame(payload)
        new = leg.chunks_ready()
        seen += new
        assert leg.samples_out == len(seen) * CHUNK_SAMPLES
        assert leg.chunks_ready() == []  # each chunk is returned once
    for k, chunk in enumerate(seen):
        expected = reference[k * CHUNK_SAMPLES : (k + 1) * CHUNK_SAMPLES]
        assert np.frombuffer(chunk, dtype="<i2").tolist() == expected.tolist()
    # soxr holds some output back until the flush; samples_buffered is what waits for a chunk
    assert leg.samples_out + leg.samples_buffered <= reference.size
    tail = leg.finish()
    rest = leg.chunks_ready()
    assert tail is not None
    assert leg.samples_out == reference.size == 32200
    assert len(seen) + len(rest) == 32200 // CHUNK_SAMPLES
    assert len(tail) == (32200 % CHUNK_SAMPLES) * 2


@pytest.mark.parametrize(
    ("encoding", "encode", "decode"),
    [
        (AudioEncoding.PCMU, encode_ulaw, decode_ulaw),
        (AudioEncoding.PCMA, encode_alaw, decode_alaw),
    ],
)
@pytest.mark.parametrize("rate", [8000, 16000])
def test_g711_frames_equal_decoded_pcm16(
    encoding: AudioEncoding, encode: object, decode: object, rate: int
) -> None:
    assert callable(encode) and callable(decode)
    coded = encode(tone(rate, 440.0, rate, amplitude=8000.0))
    frames = [coded[i : i + rate // 50] for i in range(0, len(coded), rate // 50)]
    out = stream(LegAudio(rate, encoding), frames)
    assert np.array_equal(out, one_shot(decode(coded), rate))


def test_passthrough_leg_returns_input_in_chunks() -> None:
    pcm = noise(16000 + 100)
    out = stream(LegAudio(16000, AudioEncoding.PCM16), split(pcm, [320, 7]))
    assert np.array_equal(out, pcm)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_l16_is_big_endian_pcm16(rate: int) -> None:
    """RFC 3551 §4.5.11 L16 (Asterisk's RTP slin, slin16): PCM16's samples, byte-swapped."""
    pcm = noise(rate + 100)
    step = rate // 50
    frames = [pcm[i : i + step].astype(">i2").tobytes() for i in range(0, len(pcm), step)]
    assert np.array_equal(stream(LegAudio(rate, AudioEncoding.L16), frames), one_shot(pcm, rate))
    assert AudioEncoding.L16.bytes_per_sample == 2


def test_finish_returns_none_when_nothing_is_left() -> None:
    leg = LegAudio(8000, AudioEncoding.PCMU)
    leg.receive_frame(b"\xff" * 640)  # 80 ms at 8 kHz -> exactly one chunk at 16 kHz
    assert leg.finish() is None
    assert len(leg.chunks_ready()) == 1
    assert leg.samples_out == CHUNK_SAMPLES
    assert LegAudio(8000, AudioEncoding.PCMU).finish() is None


def test_receiving_after_finish_is_invalid() -> None:
    leg = LegAudio(8000, AudioEncoding.PCMU)
    leg.receive_frame(b"\xff" * 160)
    leg.finish()
    assert leg.finished
    with pytest.raises(InvalidState, match=r"LegAudio.receive_frame\(\) after finish\(\)"):
        leg.receive_frame(b"\xff" * 160)
    with pytest.raises(InvalidState, match="receive_silence"):
        leg.receive_silence(160)
    with pytest.raises(InvalidState, match="finish"):
        leg.finish()
    assert leg.samples_in == 160


def test_odd_pcm16_payload_is_rejected_without_side_effects() -> None:
    leg = LegAudio(8000, AudioEncoding.PCM16)
    with pytest.raises(MediaError, match="pcm16 frame of 321 bytes"):
        leg.receive_frame(b"\x00" * 321, position=800)
    assert (leg.samples_in, leg.samples_filled, leg.next_position) == (0, 0, 0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unsupported input sample rate 11025 Hz"):
        LegAudio(11025, AudioEncoding.PCM16)
    with pytest.raises(ValueError, match="AudioEncoding"):
        LegAudio(8000, "pcmu")  # type: ignore[arg-type]
    leg = LegAudio(8000, AudioEncoding.PCMU)
    with pytest.raises(ValueError, match=">= 0"):
        leg.receive_frame(b"\xff", position=-1)
    with pytest.raises(ValueError, match=">= 0"):
        leg.receive_silence(-5)


# -- gaps and overlaps: the leg clock never skips ---------------------------------------------


@pytest.mark.parametrize(
    ("rate", "encoding"), [(8000, AudioEncoding.PCMU), (48000, AudioEncoding.PCM16)]
)
def test_gap_is_filled_with_silence_by_position(rate: int, encoding: AudioEncoding) -> None:
    frame = rate // 50
    pcm = tone(rate, 700.0, frame * 50, amplitude=8000.0)
    if encoding is AudioEncoding.PCMU:
        pcm = decode_ulaw(encode_ulaw(pcm))
    hole_frames = 10  # 200 ms
    leg = LegAudio(rate, encoding)
    chunks: list[bytes] = []
    for k in range(50):
        if 20 <= k < 20 + hole_frames:
            continue  # lost packets
        data = pcm[k * frame : (k + 1) * frame]
        payload = encode_ulaw(data) if encoding is AudioEncoding.PCMU else data.tobytes()
        leg.receive_frame(payload, position=k * frame)
        chunks += leg.chunks_ready()
    tail = leg.finish()
    chunks += leg.chunks_ready()
    out = np.frombuffer(b"".join(chunks) + (tail or b""), dtype="<i2")

    assert leg.samples_filled == hole_frames * frame
    assert leg.samples_in == (50 - hole_frames) * frame
    assert leg.samples_dropped == 0
    assert out.size == leg.samples_out == 50 * 320  # the clock kept running through the hole
    # the same as resampling the audio with the hole zeroed: one continuous stream
    holed = pcm.copy()
    holed[20 * frame : 30 * frame] = 0
    assert np.array_equal(out, one_shot(holed, rate))
    # 200 ms hole -> 3200 samples at 16 kHz starting at 400 ms; silent apart from filter ringing
    hole = out[20 * 320 : 30 * 320]
    assert hole.size == 3200
    assert not np.any(hole[320:-320])
    assert np.any(out[19 * 320 : 20 * 320]) and np.any(out[30 * 320 : 31 * 320])


def test_gap_in_silence_gives_exactly_3200_silent_samples() -> None:
    leg = LegAudio(8000, AudioEncoding.PCMU)
    silent = b"\xff" * 160  # µ-law zero
    leg.receive_frame(silent, position=0)
    leg.receive_frame(silent, position=160 + 1600)  # 200 ms lost after the first frame
    tail = leg.finish()
    out = b"".join(leg.chunks_ready()) + (tail or b"")
    assert leg.samples_filled == 1600
    assert out == bytes(2 * (320 + 3200 + 320))


def test_first_frame_late_position_fills_from_leg_start() -> None:
    leg = LegAudio(8000, AudioEncoding.PCMU)
    leg.receive_frame(b"\xff" * 160, position=800)
    assert (leg.samples_filled, leg.samples_in, leg.next_position) == (800, 160, 960)


def test_receive_silence_equals_zero_frames() -> None:
    pcm = noise(8000, seed=5)
    leg = LegAudio(8000, AudioEncoding.PCM16)
    leg.receive_frame(pcm[:4000].tobytes())
    leg.receive_silence(2345)
    leg.receive_frame(pcm[4000:].tobytes())
    tail = leg.finish()
    out = np.frombuffer(b"".join(leg.chunks_ready()) + (tail or b""), dtype="<i2")
    expected = np.concatenate([pcm[:4000], np.zeros(2345, dtype=np.int16), pcm[4000:]])
    assert np.array_equal(out, one_shot(expected, 8000))
    assert (leg.samples_in, leg.samples_filled) == (8000, 2345)


def test_long_silence_is_fed_in_bounded_blocks() -> None:
    leg = LegAudio(48000, AudioEncoding.PCM16)
    leg.receive_silence(48000 * 10 + 17)  # 10 s of hold
    assert leg._zeros is not None and leg._zeros.size <= 48000
    tail = leg.finish()
    total = len(leg.chunks_ready()) * CHUNK_SAMPLES + (len(tail) // 2 if tail else 0)
    assert total == leg.samples_out == expected_out(48000 * 10 + 17, 48000)


def test_overlap_is_dropped_and_counted() -> None:
    frame = 160
    pcm = noise(frame * 20, seed=7)
    leg = LegAudio(8000, AudioEncoding.PCM16)
    chunks: list[bytes] = []

    def send(start: int, n: int) -> None:
        leg.receive_frame(pcm[start : start + n].tobytes(), position=start)
        chunks.extend(leg.chunks_ready())

    for k in range(10):
        send(k * frame, frame)
    send(9 * frame, frame)  # duplicate of the last frame: dropped whole
    assert leg.samples_dropped == 160
    send(10 * frame - 40, frame)  # overlaps by 40: those are dropped, 120 new samples kept
    assert leg.samples_dropped == 200
    send(3 * frame, frame)  # a very late reordered packet: the clock has moved on
    assert leg.samples_dropped == 360
    start = 10 * frame + 120
    while start < len(pcm):
        send(start, frame)
        start += frame
    tail = leg.finish()
    chunks += leg.chunks_ready()
    out = np.frombuffer(b"".join(chunks) + (tail or b""), dtype="<i2")
    assert leg.samples_in == len(pcm)
    assert leg.samples_filled == 0
    assert np.array_equal(out, one_shot(pcm, 8000))


def test_late_packet_after_gap_fill_is_dropped() -> None:
    leg = LegAudio(8000, AudioEncoding.PCMU)
    leg.receive_frame(b"\x00" * 160, position=0)
    leg.receive_frame(b"\x00" * 160, position=320)  # frame 1 missing: filled with silence
    leg.receive_frame(b"\x00" * 160, position=160)  # frame 1 arrives late: too late
    assert (leg.samples_in, leg.samples_filled, leg.samples_dropped) == (320, 160, 160)
    assert leg.next_position == 480


def test_position_equal_to_next_is_contiguous() -> None:
    leg = LegAudio(8000, AudioEncoding.PCMU)
    for k in range(5):
        leg.receive_frame(b"\x00" * 160, position=k * 160)
    leg.receive_frame(b"", position=800)  # empty frame: nothing happens
    assert (leg.samples_in, leg.samples_filled, leg.samples_dropped) == (800, 0, 0)


# -- long calls: exact counts --------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 48000])
def test_one_hour_keeps_exact_sample_counts(rate: int) -> None:
    # One hour in 10 s payloads (the per-frame path is proven below and is bit-identical).
    block = noise(rate * 10, seed=rate).tobytes()
    leg = LegAudio(rate, AudioEncoding.PCM16)
    n_chunks = 0
    for _ in range(360):
        leg.receive_frame(block)
        ready = leg.chunks_ready()
        n_chunks += len(ready)
        assert all(len(c) == CHUNK_BYTES for c in ready[:1])
    assert leg.finish() is None  # 57,600,000 is a whole number of chunks
    n_chunks += len(leg.chunks_ready())
    assert leg.samples_in == rate * 3600
    assert leg.samples_out == n_chunks * CHUNK_SAMPLES == 57_600_000


@pytest.mark.parametrize(
    ("rate", "encoding", "minutes"),
    [(8000, AudioEncoding.PCMU, 5), (48000, AudioEncoding.PCM16, 2)],
)
def test_per_frame_path_over_minutes(rate: int, encoding: AudioEncoding, minutes: int) -> None:
    frame = rate // 50
    n_frames = minutes * 60 * 50
    if encoding is AudioEncoding.PCMU:
        payload_block = encode_ulaw(noise(frame * 100, seed=1))
        bps = 1
    else:
        payload_block = noise(frame * 100, seed=1).tobytes()
        bps = 2
    frames = [payload_block[i * frame * bps : (i + 1) * frame * bps] for i in range(100)]
    per_frame = LegAudio(rate, encoding)
    bulk = LegAudio(rate, encoding)
    frame_chunks: list[bytes] = []
    bulk_chunks: list[bytes] = []
    for k in range(n_frames):
        per_frame.receive_frame(frames[k % 100], position=k * frame)
        frame_chunks += per_frame.chunks_ready()
        if k % 100 == 99:
            bulk.receive_frame(payload_block)
            bulk_chunks += bulk.chunks_ready()
    assert per_frame.finish() is None and bulk.finish() is None
    frame_chunks += per_frame.chunks_ready()
    bulk_chunks += bulk.chunks_ready()
    assert per_frame.samples_out == bulk.samples_out == minutes * 60 * OUT_HZ
    assert frame_chunks == bulk_chunks
    assert per_frame.samples_filled == per_frame.samples_dropped == 0


# -- channels -------------------------------------------------------------------------------------


def test_deinterleave_stereo() -> None:
    left, right = noise(1000, seed=1), noise(1000, seed=2)
    interleaved = np.column_stack([left, right]).reshape(-1)
    out = deinterleave(interleaved, 2)
    assert len(out) == 2
    assert np.array_equal(out[0], left) and np.array_equal(out[1], right)
    assert all(c.flags.c_contiguous and c.dtype == np.int16 for c in out)
    mono = noise(10)
    assert deinterleave(mono, 1)[0] is mono


def test_deinterleave_works_on_g711_octets() -> None:
    octets = np.frombuffer(bytes(range(10)), dtype=np.uint8)
    a, b = deinterleave(octets, 2)
    assert a.tobytes() == bytes([0, 2, 4, 6, 8]) and b.tobytes() == bytes([1, 3, 5, 7, 9])


def test_downmix_averages_and_rounds() -> None:
    stereo = np.array([100, 200, -3, -4, 32767, 32767, -32768, -32768, 1, 2], dtype=np.int16)
    assert downmix(stereo, 2).tolist() == [150, -3, 32767, -32768, 2]
    three = np.array([3, 3, 4, 0, 0, 1], dtype=np.int16)
    assert downmix(three, 3).tolist() == [3, 0]
    mono = noise(10)
    assert downmix(mono, 1) is mono


def test_channel_helpers_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="do not split into 2 channels"):
        deinterleave(np.zeros(3, dtype=np.int16), 2)
    with pytest.raises(ValueError, match="positive int"):
        downmix(np.zeros(4, dtype=np.int16), 0)
    with pytest.raises(ValueError, match="1-D"):
        downmix(np.zeros((2, 2), dtype=np.int16), 2)
    with pytest.raises(ValueError, match="int16"):
        downmix(np.zeros(4, dtype=np.int32), 2)
