"""Audio files through FFmpeg (bridge/files/decode.py): the formats people have, at any rate,
streamed.

Every recording is made here with PyAV's encoders from flite speech (tests/files/encoded.py) and
read back through ``open_audio`` and the leg pipeline (``LegAudio``, 16 kHz out, as the ASR gets
it), then compared with the source: the best correlation within 20 ms, the lag, the length.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from bridge.core.audio import LegAudio
from bridge.core.g711 import encode_ulaw
from bridge.core.types import AudioEncoding
from bridge.errors import MediaError
from bridge.files.reader import AudioFile, open_audio
from tests.files.encoded import SOURCE_RATE_HZ, encode, sentences

MS = SOURCE_RATE_HZ // 1000  # 16 kHz samples per millisecond

LEFT = "the caller asks about the invoice for march"
RIGHT = "the agent answers that it was paid"


@pytest.fixture(scope="module")
def voices() -> list[npt.NDArray[np.int16]]:
    return sentences(LEFT, RIGHT)


@dataclass(frozen=True)
class Kind:
    suffix: str
    container: str
    codec: str
    rate: int
    bit_rate: int | None = None
    leg_rate: int | None = None  # the rate of the blocks, if not ``rate``
    tail_ms: float = 2.0  # how much longer the decoded audio may be (codec frame padding)


KINDS = {
    "mp3": Kind(".mp3", "mp3", "libmp3lame", 44100, 64000),
    "mp3-8k": Kind(".mp3", "mp3", "libmp3lame", 8000, 16000),
    # Opus stereo at 32 kb/s keeps the channels apart (at 16 kb/s it codes them jointly).
    "opus": Kind(".ogg", "ogg", "libopus", 48000, 32000),
    # AAC pads the last frame of 1024 samples; nothing in an M4A says to drop it.
    "aac": Kind(".m4a", "ipod", "aac", 44100, 64000, tail_ms=1024 / 44.1),
    "flac": Kind(".flac", "flac", "flac", 16000),
    "wav-11025": Kind(".wav", "wav", "pcm_s16le", 11025, leg_rate=16000),
    "wav-22050": Kind(".wav", "wav", "pcm_s16le", 22050, leg_rate=16000),
    "wav-24bit": Kind(".wav", "wav", "pcm_s24le", 48000),
    "wav-float": Kind(".wav", "wav", "pcm_f32le", 8000),
}


def through_legs(audio: AudioFile) -> list[npt.NDArray[np.float64]]:
    """Each channel as its leg sends it to the ASR: 16 kHz, from 20 ms blocks."""
    legs = [LegAudio(audio.sample_rate_hz, audio.encoding) for _ in range(audio.channels)]
    chunks: list[list[bytes]] = [[] for _ in legs]
    for block in audio.read_blocks(audio.sample_rate_hz // 50):
        for leg, out, payload in zip(legs, chunks, block, strict=True):
            leg.receive_frame(payload)
            out += leg.chunks_ready()
    result = []
    for leg, out in zip(legs, chunks, strict=True):
        tail = leg.finish()
        out += leg.chunks_ready()
        pcm = np.frombuffer(b"".join(out) + (tail or b""), dtype="<i2")
        result.append(pcm.astype(np.float64))
    return result


def match(
    decoded: npt.NDArray[np.float64], source: npt.NDArray[np.int16], max_lag_ms: int = 20
) -> tuple[float, float]:
    """(best correlation, its lag in ms) of ``decoded`` against ``source`` within ±max_lag_ms."""
    ref = source.astype(np.float64)
    best = (-1.0, 0.0)
    for lag in range(-max_lag_ms * MS, max_lag_ms * MS + 1, 1):
        a, b = decoded[max(lag, 0) :], ref[max(-lag, 0) :]
        n = min(a.size, b.size)
        corr = float(np.corrcoef(a[:n], b[:n])[0, 1])
        if corr > best[0]:
            best = (corr, lag / MS)
    return best


@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
@pytest.mark.parametrize("kind", list(KINDS), ids=list(KINDS))
def test_each_format_decodes_to_its_source(
    tmp_path: Path, voices: list[npt.NDArray[np.int16]], kind: str, channels: int
) -> None:
    k = KINDS[kind]
    sources = voices[:channels]
    path = encode(
        tmp_path / f"call{k.suffix}",
        sources,
        container=k.container,
        codec=k.codec,
        rate=k.rate,
        bit_rate=k.bit_rate,
    )
    audio = open_audio(path)
    assert audio.decoded is not None  # FFmpeg's, not the plain WAV reader's
    assert (audio.encoding, audio.sample_rate_hz, audio.channels) == (
        AudioEncoding.PCM16,
        k.leg_rate or k.rate,
        channels,
    )
    source_ms = sources[0].size / MS
    assert abs(audio.duration_ms - source_ms) <= 10  # the container's estimate
    decoded = through_legs(audio)
    for leg, source in zip(decoded, sources, strict=True):
        corr, lag_ms = match(leg, source)
        assert corr > 0.95, (corr, lag_ms)
        # In time: 8 kHz legs keep the half-band filter's 2.4 ms (bridge/core/audio.py).
        assert abs(lag_ms) <= 3, lag_ms
        extra_ms = leg.size / MS - source_ms
        assert -2 <= extra_ms <= k.tail_ms + 2, extra_ms
    if channels == 2:  # left is the caller's leg, right the agent's: not swapped, not mixed
        n = min(decoded[0].size, voices[1].size)
        assert abs(np.corrcoef(decoded[0][:n], voices[1][:n].astype(np.float64))[0, 1]) < 0.3


def test_plain_wav_keeps_the_fast_path(tmp_path: Path, voices: list[npt.NDArray[np.int16]]) -> None:
    path = encode(tmp_path / "plain.wav", voices, container="wav", codec="pcm_s16le", rate=16000)
    audio = open_audio(path)
    assert audio.decoded is None and audio.data_offset > 0
    blocks = list(audio.read_blocks(320))
    assert b"".join(b[0] for b in blocks) == voices[0].astype("<i2").tobytes()


def test_raw_mulaw_at_a_rate_the_leg_does_not_take(
    tmp_path: Path, voices: list[npt.NDArray[np.int16]]
) -> None:
    # The source at 22.05 kHz (FFmpeg's resampler, via a WAV), then µ-law with no header.
    wav = encode(tmp_path / "x.wav", voices[:1], container="wav", codec="pcm_s16le", rate=22050)
    with av.open(str(wav)) as container:
        pcm = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    raw = tmp_path / "x.ul"
    raw.write_bytes(encode_ulaw(pcm.astype(np.int16)))
    audio = open_audio(raw, sample_rate_hz=22050)
    assert audio.decoded is not None and audio.decoded.format_name == "mulaw"
    assert (audio.encoding, audio.sample_rate_hz, audio.channels) == (AudioEncoding.PCM16, 16000, 1)
    (leg,) = through_legs(audio)
    corr, lag_ms = match(leg, voices[0])
    assert corr > 0.95 and abs(lag_ms) <= 1 and abs(leg.size / MS - voices[0].size / MS) <= 1


# -- refused: one line naming what FFmpeg found ---------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path, so messages show the relative names a user typed."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refusal(path: Path, **options: object) -> str:
    with pytest.raises(MediaError) as exc:
        open_audio(path, **options)  # type: ignore[arg-type]
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_unknown_bytes(in_tmp: Path) -> None:
    path = Path("call.xyz")
    path.write_bytes(np.random.default_rng(1).bytes(5000))
    assert refusal(path) == (
        "call.xyz: not an audio file FFmpeg can read (FFmpeg found no known format in it);"
        " pass a recording (WAV, MP3, OGG/Opus, M4A/AAC, FLAC, WebM, ...)"
    )


def test_corrupt_audio_names_the_format_found(
    in_tmp: Path, voices: list[npt.NDArray[np.int16]]
) -> None:
    # An M4A whose container is intact and whose AAC data is noise.
    path = encode(Path("call.m4a"), voices[:1], container="ipod", codec="aac", rate=16000)
    content = bytearray(path.read_bytes())
    at = content.index(b"mdat") + 4
    size = struct.unpack(">I", content[at - 8 : at - 4])[0] - 8
    content[at : at + size] = np.random.default_rng(2).bytes(size)
    path.write_bytes(bytes(content))
    assert refusal(path) == (
        "call.m4a: cannot decode it (FFmpeg found 'mov,mp4,m4a,3gp,3g2,mj2' with aac audio, but:"
        " Invalid data found when processing input); the file is damaged: export it again"
    )


def test_cut_short_files_name_what_they_start_like(
    in_tmp: Path, voices: list[npt.NDArray[np.int16]]
) -> None:
    ogg = encode(Path("a.ogg"), voices[:1], container="ogg", codec="libopus", rate=48000)
    ogg.write_bytes(ogg.read_bytes()[:40])
    assert refusal(ogg) == (
        "a.ogg: cannot read it (it starts like an Ogg file, but FFmpeg: End of file); the file is"
        " damaged or cut short: export it again"
    )
    mp3 = Path("b.mp3")
    mp3.write_bytes(b"ID3\x04\x00" + bytes(100))
    assert refusal(mp3) == (
        "b.mp3: cannot read it (it starts like an MP3 file (ID3 tag), but FFmpeg: Invalid data"
        " found when processing input); the file is damaged or cut short: export it again"
    )


def test_a_file_without_audio(in_tmp: Path) -> None:
    path = Path("screen.mp4")
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 32, 32
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    assert refusal(path) == (
        "screen.mp4: no audio in it (FFmpeg found 'mov,mp4,m4a,3gp,3g2,mj2' with only video"
        " streams); pass a recording with sound"
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("call.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{uri}\n#EXT-X-ENDLIST\n"),
        ("call.wav", "ffconcat version 1.0\nfile secret.mp3\n"),
    ],
    ids=["hls", "concat"],
)
def test_playlists_are_refused_and_read_nothing_else(
    in_tmp: Path, voices: list[npt.NDArray[np.int16]], name: str, text: str
) -> None:
    # Hostile upload: FFmpeg's HLS and concat demuxers open the files a playlist lists (here a
    # real MP3 next to it); its format whitelist lets neither in.
    secret = Path("secret.mp3").absolute()
    encode(secret, voices[:1], container="mp3", codec="libmp3lame", rate=16000)
    path = Path(name)
    path.write_text(text.format(uri=secret.as_uri()))
    assert refusal(path) == (
        f"{name}: not an audio format this bridge reads (FFmpeg found a playlist, image or other"
        " non-audio format); pass a recording (WAV, MP3, OGG/Opus, M4A/AAC, FLAC, WebM, ...)"
    )


def test_more_than_two_channels_are_refused_with_a_fix(
    in_tmp: Path, voices: list[npt.NDArray[np.int16]]
) -> None:
    three = [voices[0], voices[1], voices[0]]
    wav = encode(Path("conf call.wav"), three, container="wav", codec="pcm_s16le", rate=16000)
    assert refusal(wav) == (
        "conf call.wav: 3 channels are not supported (one leg per channel: mono or stereo, left"
        " caller and right agent); keep the first two with: ffmpeg -i 'conf call.wav' -af"
        " 'pan=stereo|c0=c0|c1=c1' 'conf call-stereo.wav'"
    )
    flac = encode(Path("surround.flac"), three * 2, container="flac", codec="flac", rate=48000)
    assert refusal(flac).startswith("surround.flac: 6 channels are not supported")


def test_options_for_raw_files_must_agree_with_the_header(
    in_tmp: Path, voices: list[npt.NDArray[np.int16]]
) -> None:
    mp3 = encode(Path("a.mp3"), voices, container="mp3", codec="libmp3lame", rate=44100)
    assert open_audio(mp3, sample_rate_hz=44100, channels=2).channels == 2  # matching is fine
    assert refusal(mp3, sample_rate_hz=16000) == (
        "a.mp3: the file says --rate 44100 but --rate 16000 was given; drop --rate (it is for raw"
        " files)"
    )
    wav = encode(Path("b.wav"), voices[:1], container="wav", codec="pcm_s24le", rate=48000)
    assert refusal(wav, encoding=AudioEncoding.PCM16) == (
        "b.wav: the WAV header gives the encoding (FFmpeg found 'wav' with pcm_s24le audio); drop"
        " --encoding (it is for raw files)"
    )


# -- damage inside a file, memory, the event loop -------------------------------------------------


def undecodable_packets(path: Path) -> int:
    """How many of ``path``'s audio packets FFmpeg refuses to decode, counted apart from the
    bridge's reader (a fresh decoder, every packet in turn)."""
    refused = 0
    with av.open(str(path)) as container:
        for packet in container.demux(audio=0):
            try:
                packet.decode()
            except (av.error.FFmpegError, ValueError):
                refused += 1
    return refused


def test_undecodable_packets_are_skipped_with_a_warning(
    tmp_path: Path, voices: list[npt.NDArray[np.int16]], caplog: pytest.LogCaptureFixture
) -> None:
    path = encode(tmp_path / "hit.mp3", voices[:1], container="mp3", codec="libmp3lame", rate=16000)
    with av.open(str(path)) as container:
        starts = [p.pos for p in container.demux(audio=0) if p.size]
    assert undecodable_packets(path) == 0  # the counter finds nothing in the clean file
    content = bytearray(path.read_bytes())
    rng = np.random.default_rng(3)
    middle = starts[len(starts) // 2 : len(starts) // 2 + 8]
    for pos in middle:  # frame headers kept, side information and data scrambled
        content[pos + 4 : pos + 40] = rng.bytes(36)
    path.write_bytes(bytes(content))
    audio = open_audio(path)
    with caplog.at_level(logging.WARNING, logger="bridge.files.decode"):
        (leg,) = through_legs(audio)
    (record,) = caplog.records
    damaged = undecodable_packets(path)  # FFmpeg's own count, decoding packet by packet
    # The premise, exactly: of the 8 packets scrambled (seeded), FFmpeg (PyAV 18.1.0, pinned)
    # refuses 5 and decodes the other 3 as noise; the clean file had none.  The bridge's
    # warning must give that same count.
    assert (damaged, len(middle)) == (5, 8)
    assert record.getMessage() == (
        f"{path}: {damaged} packet(s) of its 'mp3' with mp3 audio could not be decoded and were"
        " skipped"
    )
    # The speech after the damage is there: the last second matches the source's last second.
    tail = voices[0][-SOURCE_RATE_HZ:]
    corr, _ = match(leg[-SOURCE_RATE_HZ - 200 * MS :], tail, max_lag_ms=200)
    assert corr > 0.9


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_60_minute_mp3_is_read_in_constant_memory(
    tmp_path: Path, voices: list[npt.NDArray[np.int16]]
) -> None:
    # 10 s of speech as 8 kb/s MP3 frames (no Xing or ID3 header), repeated into an hour.
    silence = np.zeros(10 * SOURCE_RATE_HZ - voices[0].size, dtype=np.int16)
    unit = encode(
        tmp_path / "unit.mp3",
        [np.concatenate([voices[0], silence])],
        container="mp3",
        codec="libmp3lame",
        rate=8000,
        bit_rate=8000,
        container_options={"write_xing": "0", "id3v2_version": "0"},
    ).read_bytes()
    path = tmp_path / "hour.mp3"
    path.write_bytes(unit * 360)
    audio = open_audio(path)
    assert audio.duration_ms >= 3600_000
    decoded_bytes = audio.frames * 2
    assert decoded_bytes > 55 * 2**20  # what reading it whole would hold

    started = time.perf_counter()
    blocks = audio.read_blocks(160)  # 20 ms at 8 kHz, as a leg reads it
    for _ in zip(range(3000), blocks, strict=False):  # the first minute: buffers settle
        pass
    settled = peak = _rss_bytes()
    frames = 3000 * 160
    for i, block in enumerate(blocks):
        frames += len(block[0]) // 2
        if i % 1000 == 0:
            peak = max(peak, _rss_bytes())
    seconds = time.perf_counter() - started
    print(
        f"\n60-minute MP3: {frames / 8000 / 60:.1f} min read in {seconds:.1f} s,"
        f" RSS {settled / 2**20:.1f} MB after a minute, peak {peak / 2**20:.1f} MB"
    )
    assert abs(frames - audio.frames) <= 8000  # all of it, within a second of the estimate
    assert peak - settled < 8 * 2**20, (settled, peak)


async def test_stream_blocks_reads_off_the_event_loop(
    tmp_path: Path, voices: list[npt.NDArray[np.int16]]
) -> None:
    # Hostile: 64 MB of junk between two stretches of MP3 frames; FFmpeg's MP3 parser scans
    # it for the next frame in a single read, which blocks for as long as that takes.
    mp3 = encode(tmp_path / "a.mp3", voices[:1], container="mp3", codec="libmp3lame", rate=8000)
    frames = mp3.read_bytes()
    path = tmp_path / "junk.mp3"
    path.write_bytes(frames + bytes(64 * 2**20) + frames)
    audio = open_audio(path)

    last = time.perf_counter()
    blocking = 0.0
    expected = []
    for block in audio.read_blocks(160):
        now = time.perf_counter()
        blocking, last = max(blocking, now - last), now
        expected.append(block)

    stalls: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    got = [block async for block in audio.stream_blocks(160)]
    done.set()
    await tick
    assert got == expected
    worst = max(stalls)
    print(f"\njunk MP3: one read blocks {blocking * 1000:.0f} ms; loop stall {worst * 1000:.0f} ms")
    assert worst * 3 < blocking, (worst, blocking)
