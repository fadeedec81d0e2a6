"""Audio file reader: WAV (PCM16, µ-law, A-law, extensible), raw G.711/PCM16, every bad input."""

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
from bridge.io.audio_files import MAX_HEADER_CHUNKS, AudioFile, open_audio

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


def test_not_a_wav_file(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "call.mp3", b"ID3\x04\x00" + bytes(100)) == (
        "call.mp3: not a WAV file (no RIFF header); convert it with:"
        " sox call.mp3 -r 16000 -c 1 call.wav"
    )


def test_not_a_wav_file_named_wav_with_space(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "my call.wav", b"OggS" + bytes(60)) == (
        "my call.wav: not a WAV file (no RIFF header); convert it with:"
        " sox 'my call.wav' -r 16000 -c 1 'my call-16k.wav'"
    )


def test_riff_but_not_wave(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "movie.avi", riff(chunk(b"LIST", b"hdrl"), form=b"AVI ")) == (
        "movie.avi: not a WAV file (RIFF type 'AVI ', not 'WAVE'); convert it with:"
        " sox movie.avi -r 16000 -c 1 movie.wav"
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


def test_24_bit_wav(in_tmp: Path) -> None:
    content = riff(chunk(b"fmt ", fmt_body(PCM, 1, 48000, 24)), chunk(b"data", b"\x00" * 6))
    assert wav_error(in_tmp, "hi.wav", content) == (
        "hi.wav: 24-bit PCM WAV is not supported (16-bit PCM, µ-law or A-law only); convert it"
        " with: sox hi.wav -b 16 -e signed-integer hi-16bit.wav"
    )


def test_float_wav(in_tmp: Path) -> None:
    content = riff(chunk(b"fmt ", fmt_body(FLOAT, 1, 48000, 32)), chunk(b"data", b"\x00" * 8))
    assert wav_error(in_tmp, "f.wav", content) == (
        "f.wav: 32-bit float WAV is not supported (16-bit PCM, µ-law or A-law only); convert it"
        " with: sox f.wav -b 16 -e signed-integer f-16bit.wav"
    )
    extensible = riff(
        chunk(b"fmt ", fmt_body(EXTENSIBLE, 2, 48000, 32, sub_tag=FLOAT)),
        chunk(b"data", b"\x00" * 8),
    )
    assert wav_error(in_tmp, "f.wav", extensible).startswith(
        "f.wav: 32-bit float WAV is not supported"
    )


def test_unknown_wav_encodings(in_tmp: Path) -> None:
    adpcm = riff(chunk(b"fmt ", fmt_body(2, 1, 8000, 4)), chunk(b"data", b"\x00" * 8))
    assert wav_error(in_tmp, "g.wav", adpcm) == (
        "g.wav: WAV encoding 0x0002 (Microsoft ADPCM) is not supported (16-bit PCM, µ-law or"
        " A-law only); convert it with: sox g.wav -b 16 -e signed-integer g-16bit.wav"
    )
    odd_guid = fmt_body(EXTENSIBLE, 1, 8000, 16, sub_tag=PCM)[:-1] + b"\x00"
    assert wav_error(in_tmp, "g.wav", riff(chunk(b"fmt ", odd_guid))) == (
        "g.wav: WAV sub-format is not supported (16-bit PCM, µ-law or A-law only); convert it"
        " with: sox g.wav -b 16 -e signed-integer g-16bit.wav"
    )


def test_more_than_two_channels(in_tmp: Path) -> None:
    content = riff(chunk(b"fmt ", fmt_body(PCM, 6, 48000, 16)), chunk(b"data", b"\x00" * 12))
    assert wav_error(in_tmp, "surround.wav", content) == (
        "surround.wav: 6 channels are not supported (mono or stereo only); keep two with:"
        " sox surround.wav surround-stereo.wav remix 1 2"
    )


def test_zero_channels(in_tmp: Path) -> None:
    content = riff(chunk(b"fmt ", fmt_body(PCM, 0, 8000, 16)), chunk(b"data", b"\x00" * 2))
    assert wav_error(in_tmp, "z.wav", content) == (
        "z.wav: damaged WAV header (0 channels); export it again"
    )


def test_unsupported_wav_rate(in_tmp: Path) -> None:
    content = riff(chunk(b"fmt ", fmt_body(PCM, 1, 11025, 16)), chunk(b"data", b"\x00" * 2))
    assert wav_error(in_tmp, "old.wav", content) == (
        "old.wav: sample rate 11025 Hz is not supported (8000, 16000, 24000, 32000, 44100 or"
        " 48000 Hz); convert it with: sox old.wav -r 16000 old-16k.wav"
    )


def test_unsupported_raw_rate(in_tmp: Path) -> None:
    assert wav_error(in_tmp, "x.ul", b"\xff" * 10, sample_rate_hz=22050) == (
        "x.ul: --rate 22050 is not supported (8000, 16000, 24000, 32000, 44100 or 48000 Hz);"
        " convert it with: sox -t ul -r 22050 -c 1 x.ul -r 16000 x.wav"
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
