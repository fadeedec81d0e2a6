"""Audio file reader: WAV (PCM16, µ-law, A-law, extensible), raw G.711/PCM16, every bad input;
what goes to FFmpeg instead (other WAV encodings and rates, non-WAV files; test_decode.py)."""

from __future__ import annotations

import struct
import time
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bridge.core.audio import LegAudio
from bridge.core.g711 import encode_alaw, encode_ulaw
from bridge.core.types import AudioEncoding
from bridge.errors import MediaError
from bridge.files.reader import MAX_HEADER_CHUNKS, AudioFile, open_audio

PCM = 1
FLOAT = 3
ALAW = 6
MULAW = 7
EXTENSIBLE = 0xFFFE
GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def noise(n: int, seed: int = 0) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * 3000).astype(np.int16)


def chunk(chunk_id: bytes, body: bytes, *, size: int | None = None) -> bytes:
    pad = b"\x00" if len(body) % 2 else b""
    return chunk_id + struct.pack("<I", len(body) if size is None else size) + body + pad


def fmt_body(tag: int, channels: int, rate: int, bits: int, *, sub_tag: int | None = None) -> bytes:
    block_align = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block_align, block_align, bits)
    if sub_tag is not None:
        body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", sub_tag) + GUID_TAIL
    return body


def riff(*chunks: bytes, form: bytes = b"WAVE") -> bytes:
    body = form + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def read_all(audio: AudioFile, frames_per_block: int) -> list[bytes]:
    """Concatenate each channel over all blocks."""
    out = [b""] * audio.channels
    for block in audio.read_blocks(frames_per_block):
        assert len(block) == audio.channels
        out = [acc + ch for acc, ch in zip(out, block, strict=True)]
    return out


def message(exc: pytest.ExceptionInfo[MediaError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# -- good files ---------------------------------------------------------------------------------


def test_mono_pcm16_wav_written_by_stdlib(tmp_path: Path) -> None:
    pcm = noise(16000 + 7)
    path = tmp_path / "call.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    audio = open_audio(path)
    assert (audio.path, audio.encoding, audio.sample_rate_hz, audio.channels) == (
        path,
        AudioEncoding.PCM16,
        16000,
        1,
    )
    assert audio.frames == 16007
    assert audio.duration_ms == 1000
    blocks = list(audio.read_blocks(320))
    assert len(blocks) == 51
    assert all(len(b[0]) == 640 for b in blocks[:-1]) and len(blocks[-1][0]) == 14
    assert read_all(audio, 320) == [pcm.tobytes()]


def test_stereo_pcm16_wav_gives_one_stream_per_channel(tmp_path: Path) -> None:
    left, right = noise(4800, seed=1), noise(4800, seed=2)
    interleaved = np.column_stack([left, right]).reshape(-1)
    path = write(
        tmp_path / "stereo.wav",
        riff(chunk(b"fmt ", fmt_body(PCM, 2, 48000, 16)), chunk(b"data", interleaved.tobytes())),
    )
    audio = open_audio(path)
    assert (audio.channels, audio.frames, audio.duration_ms) == (2, 4800, 100)
    assert read_all(audio, 1000) == [left.tobytes(), right.tobytes()]


def test_mulaw_wav_format_tag_7_with_odd_chunks_before_data(tmp_path: Path) -> None:
    coded = encode_ulaw(noise(8001))  # odd data size: a pad byte follows it
    path = write(
        tmp_path / "ulaw.wav",
        riff(
            chunk(b"fmt ", fmt_body(MULAW, 1, 8000, 8) + b"\x00\x00"),  # cbSize = 0
            chunk(b"fact", struct.pack("<I", 8001)),
            chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00sox1\x00"),  # odd size 17: padded
            chunk(b"data", coded),
            chunk(b"junk", b"xyz"),
        ),
    )
    audio = open_audio(path)
    assert (audio.encoding, audio.sample_rate_hz, audio.channels, audio.frames) == (
        AudioEncoding.PCMU,
        8000,
        1,
        8001,
    )
    assert read_all(audio, 160) == [coded]


def test_stereo_alaw_wav(tmp_path: Path) -> None:
    a, b = encode_alaw(noise(800, seed=3)), encode_alaw(noise(800, seed=4))
    interleaved = bytes(np.column_stack([np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)]))
    path = write(
        tmp_path / "alaw.wav",
        riff(chunk(b"fmt ", fmt_body(ALAW, 2, 8000, 8)), chunk(b"data", interleaved)),
    )
    audio = open_audio(path)
    assert (audio.encoding, audio.channels, audio.frames) == (AudioEncoding.PCMA, 2, 800)
    assert read_all(audio, 160) == [a, b]


def test_extensible_wav_with_pcm_subformat(tmp_path: Path) -> None:
    pcm = noise(2400)
    path = write(
        tmp_path / "ext.wav",
        riff(
            chunk(b"fmt ", fmt_body(EXTENSIBLE, 1, 24000, 16, sub_tag=PCM)),
            chunk(b"data", pcm.tobytes()),
        ),
    )
    audio = open_audio(path)
    assert (audio.encoding, audio.sample_rate_hz, audio.frames) == (
        AudioEncoding.PCM16,
        24000,
        2400,
    )
    assert read_all(audio, 999) == [pcm.tobytes()]


def test_data_chunk_before_fmt_chunk(tmp_path: Path) -> None:
    coded = encode_ulaw(noise(160))
    path = write(
        tmp_path / "odd-order.wav",
        riff(chunk(b"data", coded), chunk(b"fmt ", fmt_body(MULAW, 1, 8000, 8))),
    )
    assert read_all(open_audio(path), 50) == [coded]


@pytest.mark.parametrize("suffix", [".ul", ".ulaw", ".mulaw", ".u8"])
def test_raw_mulaw_defaults_to_8k_mono(tmp_path: Path, suffix: str) -> None:
    coded = encode_ulaw(noise(8000))
    audio = open_audio(write(tmp_path / f"a{suffix}", coded))
    assert (audio.encoding, audio.sample_rate_hz, audio.channels, audio.frames) == (
        AudioEncoding.PCMU,
        8000,
        1,
        8000,
    )
    assert audio.duration_ms == 1000
    assert read_all(audio, 160) == [coded]


def test_raw_alaw_stereo_and_pcm16_with_rate(tmp_path: Path) -> None:
    alaw = open_audio(write(tmp_path / "b.al", bytes(range(256)) * 2), channels=2)
    assert (alaw.encoding, alaw.channels, alaw.frames) == (AudioEncoding.PCMA, 2, 256)
    assert read_all(alaw, 100)[0] == bytes(range(0, 256, 2)) * 2
    pcm = noise(4800)
    raw = open_audio(write(tmp_path / "c.s16", pcm.tobytes()), sample_rate_hz=48000)
    assert (raw.encoding, raw.sample_rate_hz, raw.frames, raw.duration_ms) == (
        AudioEncoding.PCM16,
        48000,
        4800,
        100,
    )


def test_encoding_argument_reads_unknown_extension_as_raw(tmp_path: Path) -> None:
    audio = open_audio(write(tmp_path / "capture.bin", b"\xff" * 1600), encoding=AudioEncoding.PCMU)
    assert (audio.encoding, audio.sample_rate_hz, audio.frames) == (AudioEncoding.PCMU, 8000, 1600)
    # ...and overrides a raw extension
    audio = open_audio(write(tmp_path / "x.raw", b"\xd5" * 80), encoding=AudioEncoding.PCMA)
    assert audio.encoding is AudioEncoding.PCMA


def test_wav_header_wins_but_matching_options_are_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.wav",
        riff(chunk(b"fmt ", fmt_body(MULAW, 1, 8000, 8)), chunk(b"data", b"\xff" * 160)),
    )
    audio = open_audio(path, encoding=AudioEncoding.PCMU, sample_rate_hz=8000, channels=1)
    assert audio.frames == 160


def test_stereo_file_feeds_one_leg_per_channel(tmp_path: Path) -> None:
    left = encode_ulaw(np.zeros(8000, dtype=np.int16))
    right = encode_ulaw(noise(8000))
    interleaved = bytes(
        np.column_stack([np.frombuffer(left, np.uint8), np.frombuffer(right, np.uint8)])
    )
    path = write(
        tmp_path / "call.wav",
        riff(chunk(b"fmt ", fmt_body(MULAW, 2, 8000, 8)), chunk(b"data", interleaved)),
    )
    audio = open_audio(path)
    legs = [LegAudio(audio.sample_rate_hz, audio.encoding) for _ in range(audio.channels)]
    for block in audio.read_blocks(160):
        for leg, payload in zip(legs, block, strict=True):
            leg.receive_frame(payload)
    outputs = []
    for leg in legs:
        tail = leg.finish()
        outputs.append(b"".join(leg.chunks_ready()) + (tail or b""))
        assert leg.samples_in == 8000 and leg.samples_out == 16000
    assert outputs[0] == bytes(32000)  # the silent channel stays silent
    assert any(outputs[1])


# -- bad inputs: one clear line each ----------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path, so messages show the relative names a user typed."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def wav_error(tmp_path: Path, name: str, content: bytes, **options: object) -> str:
    assert Path.cwd() == tmp_path
    path = write(Path(name), content)
    with pytest.raises(MediaError) as exc:
        open_audio(path, **options)  # type: ignore[arg-type]
    return message(exc)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as exc:
        open_audio(tmp_path / "nope.wav")
    assert message(exc) == f"{tmp_path}/nope.wav: no such file; check the path"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as exc:
        open_audio(tmp_path)
    assert message(exc) == f"{tmp_path}: is a directory, not an audio file; pass the file itself"


def test_empty_file(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "call.wav", b"") == (
        "call.wav: the file is empty (0 bytes); pass a recording with audio in it"
    )


def test_not_a_wav_file_goes_to_ffmpeg(in_tmp: Path) -> None:
    # Not RIFF: FFmpeg probes it (bridge/files/decode.py); these two are cut short.
    assert wav_error(in_tmp, "call.mp3", b"ID3\x04\x00" + bytes(100)) == (
        "call.mp3: cannot read it (it starts like an MP3 file (ID3 tag), but FFmpeg: Invalid data"
        " found when processing input); the file is damaged or cut short: export it again"
    )


def test_not_a_wav_file_named_wav_with_space(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "my call.wav", b"OggS" + bytes(60)) == (
        "my call.wav: cannot read it (it starts like an Ogg file, but FFmpeg: End of file); the"
        " file is damaged or cut short: export it again"
    )


def test_riff_but_not_wave(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "movie.avi", riff(chunk(b"LIST", b"hdrl"), form=b"AVI ")) == (
        "movie.avi: cannot read it (it starts like a RIFF file (WAV, AVI), but FFmpeg: Invalid"
        " data found when processing input); the file is damaged or cut short: export it again"
    )


def test_no_fmt_chunk(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "a.wav", riff(chunk(b"data", b"\x00" * 8))) == (
        "a.wav: damaged WAV file (no fmt chunk with the audio format); export it again"
    )
    assert wav_error(in_tmp, "b.wav", b"RIFF\x04\x00\x00\x00WAVE") == (
        "b.wav: damaged WAV file (no fmt chunk with the audio format); export it again"
    )


def test_short_fmt_chunk(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "a.wav", riff(chunk(b"fmt ", b"\x01\x00\x01\x00"))) == (
        "a.wav: damaged WAV header (fmt chunk of 4 bytes); export it again"
    )


def test_no_data_chunk(in_tmp: Path) -> None:
    content = riff(chunk(b"fmt ", fmt_body(PCM, 1, 16000, 16)), chunk(b"LIST", b"INFO"))
    assert wav_error(in_tmp, "a.wav", content) == (
        "a.wav: damaged WAV file (no data chunk); export it again"
    )


def test_too_many_chunks_before_data_is_refused_quickly(in_tmp: Path) -> None:
    # Hostile input (issue 12): millions of empty JUNK chunks made the header parse take seconds
    # on the event loop.  The parse looks at MAX_HEADER_CHUNKS chunks at most.
    junk = chunk(b"JUNK", b"") * 2_000_000  # 16 MB of empty chunks
    content = riff(chunk(b"fmt ", fmt_body(PCM, 1, 16000, 16)), junk, chunk(b"data", b"\0" * 320))
    started = time.perf_counter()
    assert wav_error(in_tmp, "junk.wav", content) == (
        f"junk.wav: damaged WAV header (more than {MAX_HEADER_CHUNKS} chunks before the fmt and"
        " data chunks); export it again"
    )
    assert time.perf_counter() - started < 0.5


def test_chunks_up_to_the_cap_are_skipped(tmp_path: Path) -> None:
    pcm = noise(160).tobytes()
    junk = chunk(b"JUNK", b"") * (MAX_HEADER_CHUNKS - 2)  # with fmt and data: exactly the cap
    path = write(
        tmp_path / "padded.wav",
        riff(chunk(b"fmt ", fmt_body(PCM, 1, 16000, 16)), junk, chunk(b"data", pcm)),
    )
    audio = open_audio(path)
    assert audio.frames == 160
    assert read_all(audio, 160) == [pcm]


def test_empty_data_chunk(in_tmp: Path) -> None:
    content = riff(chunk(b"fmt ", fmt_body(PCM, 1, 16000, 16)), chunk(b"data", b""))
    assert wav_error(in_tmp, "a.wav", content) == (
        "a.wav: the WAV file has no audio (empty data chunk); pass a recording with audio"
    )


def test_truncated_data_chunk(in_tmp: Path) -> None:
    content = riff(
        chunk(b"fmt ", fmt_body(PCM, 1, 16000, 16)), chunk(b"data", b"\x00" * 100, size=32000)
    )
    assert wav_error(in_tmp, "rec.wav", content) == (
        "rec.wav: truncated WAV file (the data chunk says 32000 bytes, the file holds 100);"
        " repair it with: sox --ignore-length rec.wav rec-fixed.wav"
    )


def test_odd_byte_count_in_pcm16_wav(in_tmp: Path) -> None:
    content = riff(chunk(b"fmt ", fmt_body(PCM, 1, 16000, 16)), chunk(b"data", b"\x00" * 101))
    assert wav_error(in_tmp, "a.wav", content) == (
        "a.wav: odd byte count (101) for 16-bit PCM in the data chunk;"
        " the file is damaged, export it again"
    )


def decoded_samples(audio: AudioFile) -> list[list[int]]:
    return [np.frombuffer(ch, dtype="<i2").tolist() for ch in read_all(audio, 1000)]


def test_24_bit_wav_is_decoded_by_ffmpeg(tmp_path: Path) -> None:
    s24 = [0x123456, -0x123456, 0x7FFFFF, -0x800000, 0x0000FF]
    data = b"".join(struct.pack("<i", v)[:3] for v in s24)
    path = write(
        tmp_path / "hi.wav", riff(chunk(b"fmt ", fmt_body(PCM, 1, 48000, 24)), chunk(b"data", data))
    )
    audio = open_audio(path)
    assert audio.decoded is not None and audio.decoded.codec_name == "pcm_s24le"
    assert (audio.encoding, audio.sample_rate_hz, audio.frames) == (AudioEncoding.PCM16, 48000, 5)
    assert decoded_samples(audio) == [[0x1234, -0x1235, 32767, -32768, 0]]  # the top 16 bits


def test_float_wav_is_decoded_by_ffmpeg(tmp_path: Path) -> None:
    samples = np.array([0.5, -0.5, 1.0, -1.0, 0.25, 1.5], dtype="<f4")
    path = write(
        tmp_path / "f.wav",
        riff(chunk(b"fmt ", fmt_body(FLOAT, 1, 48000, 32)), chunk(b"data", samples.tobytes())),
    )
    assert decoded_samples(open_audio(path)) == [[16384, -16384, 32767, -32768, 8192, 32767]]
    stereo = np.column_stack([samples, -samples]).reshape(-1)
    extensible = write(
        tmp_path / "f2.wav",
        riff(
            chunk(b"fmt ", fmt_body(EXTENSIBLE, 2, 48000, 32, sub_tag=FLOAT)),
            chunk(b"data", stereo.tobytes()),
        ),
    )
    left, right = decoded_samples(open_audio(extensible))
    assert left[:2] == [16384, -16384] and right[:2] == [-16384, 16384]


def test_other_wav_encodings(in_tmp: Path) -> None:
    adpcm = write(
        Path("g.wav"), riff(chunk(b"fmt ", fmt_body(2, 1, 8000, 4)), chunk(b"data", bytes(8)))
    )
    decoded = open_audio(adpcm).decoded
    assert decoded is not None and decoded.description == "'wav' with adpcm_ms audio"
    odd_guid = fmt_body(EXTENSIBLE, 1, 8000, 16, sub_tag=PCM)[:-1] + b"\x00"
    assert wav_error(in_tmp, "g.wav", riff(chunk(b"fmt ", odd_guid), chunk(b"data", bytes(8)))) == (
        "g.wav: FFmpeg found 'wav' with audio it has no decoder for; convert it to a common"
        " format (WAV, MP3, OGG/Opus, M4A/AAC, FLAC, WebM)"
    )


def test_more_than_two_channels(in_tmp: Path) -> None:
    content = riff(chunk(b"fmt ", fmt_body(PCM, 6, 48000, 16)), chunk(b"data", b"\x00" * 12))
    assert wav_error(in_tmp, "surround.wav", content) == (
        "surround.wav: 6 channels are not supported (one leg per channel: mono or stereo, left"
        " caller and right agent); keep the first two with: ffmpeg -i surround.wav -af"
        " 'pan=stereo|c0=c0|c1=c1' surround-stereo.wav"
    )


def test_zero_channels(in_tmp: Path) -> None:
    content = riff(chunk(b"fmt ", fmt_body(PCM, 0, 8000, 16)), chunk(b"data", b"\x00" * 2))
    assert wav_error(in_tmp, "z.wav", content) == (
        "z.wav: damaged WAV header (0 channels); export it again"
    )


def test_wav_at_11025_hz_is_resampled_to_16k(tmp_path: Path) -> None:
    content = riff(
        chunk(b"fmt ", fmt_body(PCM, 1, 11025, 16)), chunk(b"data", noise(11025).tobytes())
    )
    audio = open_audio(write(tmp_path / "old.wav", content))
    assert audio.decoded is not None and audio.decoded.source_rate_hz == 11025
    assert (audio.encoding, audio.sample_rate_hz, audio.frames) == (
        AudioEncoding.PCM16,
        16000,
        16000,
    )
    assert len(read_all(audio, 320)[0]) == 2 * 16000


def test_raw_rate_must_be_a_rate(in_tmp: Path) -> None:
    for rate in (0, -8000, 1_000_000):
        assert wav_error(in_tmp, "x.ul", b"\xff" * 10, sample_rate_hz=rate) == (
            f"x.ul: --rate {rate} is not a sample rate; pass the recording's rate in Hz, e.g."
            " --rate 8000"
        )


def test_raw_pcm16_needs_rate(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "x.raw", b"\x00" * 10) == (
        "x.raw: raw PCM16 has no header to give its sample rate; pass it with --rate,"
        " e.g. --rate 16000"
    )


def test_raw_pcm16_odd_byte_count(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "x.pcm", b"\x00" * 11, sample_rate_hz=16000) == (
        "x.pcm: odd byte count (11) for 16-bit PCM; check --encoding and --channels,"
        " or whether the file was cut short"
    )
    assert wav_error(in_tmp, "x.pcm", b"\x00" * 10, sample_rate_hz=16000, channels=2) == (
        "x.pcm: 10 bytes are not a whole number of frames (2 channels x 2 bytes); check"
        " --encoding and --channels, or whether the file was cut short"
    )


def test_raw_bad_channels(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "x.ul", b"\xff" * 12, channels=3) == (
        "x.ul: --channels 3 is not supported; pass 1 or 2"
    )


def test_wav_header_disagrees_with_options(in_tmp: Path) -> None:
    content = riff(chunk(b"fmt ", fmt_body(MULAW, 1, 8000, 8)), chunk(b"data", b"\xff" * 160))
    assert wav_error(in_tmp, "m.wav", content, sample_rate_hz=16000) == (
        "m.wav: the WAV header says --rate 8000 but --rate 16000 was given;"
        " drop --rate (it is for raw files)"
    )
    assert wav_error(in_tmp, "m.wav", content, encoding=AudioEncoding.PCMA) == (
        "m.wav: the WAV header says --encoding pcmu but --encoding pcma was given;"
        " drop --encoding (it is for raw files)"
    )
    assert wav_error(in_tmp, "m.wav", content, channels=2) == (
        "m.wav: the WAV header says --channels 1 but --channels 2 was given;"
        " drop --channels (it is for raw files)"
    )


def test_file_cut_short_while_reading(tmp_path: Path) -> None:
    path = write(tmp_path / "x.ul", b"\xff" * 100_000)
    audio = open_audio(path)
    blocks = audio.read_blocks(1000)
    assert next(blocks) == [b"\xff" * 1000]  # streams: the rest is not read yet
    path.write_bytes(b"\xff" * 50_000)  # truncated in place while being read
    with pytest.raises(MediaError) as exc:
        list(blocks)
    assert message(exc) == (
        f"{path}: the file ended 50000 bytes early while reading (was it changed meanwhile?);"
        " read it again"
    )


def test_read_blocks_needs_a_positive_size(tmp_path: Path) -> None:
    audio = open_audio(write(tmp_path / "x.ul", b"\xff" * 10))
    with pytest.raises(ValueError, match="frames_per_block must be > 0"):
        next(audio.read_blocks(0))
