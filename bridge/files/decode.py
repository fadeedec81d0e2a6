"""Audio files through FFmpeg's libraries (PyAV): MP3, Ogg (Opus, Vorbis, FLAC), M4A/MP4 (AAC,
ALAC), FLAC, WebM/Matroska, WAV encodings and rates the plain WAV reader leaves, at any rate.

Streaming: one packet at a time (``av_read_frame``), decoded, converted to 16-bit PCM and cut into
blocks, so memory stays a few packets whatever the length.  The conversion is libswresample's
(PyAV's ``AudioResampler``): to planar s16 at the decoded rate when the leg takes that rate
(``LegAudio``'s soxr then does the one resampling, as for a WAV file), else to 16 kHz, the ASR
rate (measured: 11.025 and 22.05 kHz tones come out at > 82 dB SNR, in phase, with exact lengths).
The rate and channels are the first decoded frame's, not the container's: HE-AAC declares half
its output rate, a parametric-stereo stream one channel.  A frame that changes them later (a
concatenated file) is converted to the first ones.

Hostile uploads: FFmpeg opens only the demuxers in :data:`READABLE_FORMATS` (its
``format_whitelist``; an HLS or concat playlist would make it open the files it lists, the
CVE-2016-1897/1898 kind of attack) and only the ``file`` protocol.  A packet that does not decode
is skipped, as FFmpeg's own command line does, and counted in a WARNING; data that stops being
demuxable ends the stream there, with a WARNING.  Every other problem is a ``MediaError``.
``probe`` and the blocks do blocking file I/O and decoding: callers on an event loop run them in
a thread (:meth:`bridge.files.reader.AudioFile.stream_blocks`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.packet import Packet

from bridge.core.audio import SUPPORTED_SAMPLE_RATES_HZ
from bridge.core.types import ASR_SAMPLE_RATE_HZ
from bridge.errors import MediaError

__all__ = ["READABLE_FORMATS", "Decoded", "RawInput", "decode_blocks", "probe"]

logger = logging.getLogger(__name__)

# FFmpeg demuxer names (``ffmpeg -demuxers``); a multi-name demuxer such as
# "mov,mp4,m4a,3gp,3g2,mj2" or "matroska,webm" is let in by any one of its names.
READABLE_FORMATS: Final = (
    "wav", "w64", "mp3", "ogg", "mov", "flac", "aac", "matroska", "asf", "aiff", "caf", "au",
    "amr", "amrnb", "amrwb", "wv", "ac3", "gsm", "avi", "mpegts",
    "mulaw", "alaw", "s16le",  # raw G.711 and PCM16 at a rate the leg does not take (never probed)
)  # fmt: skip
FORMATS_TEXT: Final = "WAV, MP3, OGG/Opus, M4A/AAC, FLAC, WebM"
_OPEN_OPTIONS: Final = {
    "format_whitelist": ",".join(READABLE_FORMATS),
    "protocol_whitelist": "file",
}
# Packets read while looking for the first decoded frame (a decoder may take a few before it
# gives one); a file none of whose first packets decode is refused.
MAX_PROBE_PACKETS: Final = 64
_AV_TIME_BASE: Final = 1_000_000  # ``AVFormatContext.duration`` is in microseconds


@dataclass(frozen=True, slots=True)
class RawInput:
    """A headerless file read by one of FFmpeg's raw demuxers (``mulaw``, ``alaw``, ``s16le``)."""

    format: str
    sample_rate_hz: int
    channels: int


@dataclass(frozen=True, slots=True)
class Decoded:
    """What :func:`probe` found, and what :func:`decode_blocks` needs to read it again."""

    format_name: str  # FFmpeg's demuxer, e.g. "mp3", "ogg", "mov,mp4,m4a,3gp,3g2,mj2"
    codec_name: str  # e.g. "mp3", "opus", "aac"
    stream_index: int
    source_rate_hz: int  # the first decoded frame's rate
    sample_rate_hz: int  # the rate of the blocks: the source's when the leg takes it, else 16 kHz
    channels: int
    frames: int  # per channel at sample_rate_hz, from the container's duration (an estimate)
    raw: RawInput | None = None

    @property
    def description(self) -> str:
        return f"'{self.format_name}' with {self.codec_name} audio"


def probe(path: Path, *, raw: RawInput | None = None) -> Decoded:
    """Open ``path`` with FFmpeg, decode its first audio frame; raise ``MediaError`` if it can't."""
    name = str(path)
    with _open(path, raw) as container:
        found = f"'{container.format.name}'"
        stream = container.streams.best("audio")
        if not isinstance(stream, AudioStream):
            kinds = sorted({s.type for s in container.streams})
            has = f"only {' and '.join(kinds)} streams" if kinds else "no streams"
            raise MediaError(
                f"{name}: no audio in it (FFmpeg found {found} with {has}); pass a recording"
                " with sound"
            )
        codec = _codec_name(stream)
        if codec is None:
            raise MediaError(
                f"{name}: FFmpeg found {found} with audio it has no decoder for; convert it to"
                f" a common format ({FORMATS_TEXT})"
            )
        found = f"{found} with {codec} audio"
        first = _first_frame(path, container, stream, found)
        source_rate_hz, channels = first.sample_rate, first.layout.nb_channels
        if source_rate_hz <= 0 or channels <= 0:
            raise MediaError(
                f"{name}: damaged audio header (FFmpeg found {found} at {source_rate_hz} Hz with"
                f" {channels} channels); export the file again"
            )
        rate = source_rate_hz if source_rate_hz in SUPPORTED_SAMPLE_RATES_HZ else ASR_SAMPLE_RATE_HZ
        seconds = _duration_s(container, stream)
        if seconds is None:
            seconds = _packets_duration_s(path, raw, stream.index, found)
        return Decoded(
            format_name=container.format.name,
            codec_name=codec,
            stream_index=stream.index,
            source_rate_hz=source_rate_hz,
            sample_rate_hz=rate,
            channels=channels,
            frames=max(0, round(seconds * rate)),
            raw=raw,
        )


def decode_blocks(path: Path, decoded: Decoded, frames_per_block: int) -> Iterator[list[bytes]]:
    """Yield blocks of ``frames_per_block`` frames (the last may be shorter): one PCM16 LE
    ``bytes`` per channel, at ``decoded.sample_rate_hz``."""
    name = str(path)
    with _open(path, decoded.raw) as container:
        stream = container.streams[decoded.stream_index]
        assert isinstance(stream, AudioStream)
        to_pcm16 = _ToPcm16(decoded.sample_rate_hz, decoded.channels)
        blocks = _Blocks(decoded.channels, frames_per_block)
        skipped = 0
        for packet in _packets(path, container, stream, decoded.description):
            try:
                frames = stream.decode(packet)
            except (av.error.FFmpegError, ValueError) as exc:
                skipped += 1
                logger.debug("%s: packet at %s not decoded: %s", name, packet.pts, exc)
                continue
            for frame in frames:
                for pcm in to_pcm16.convert(frame):
                    yield from blocks.push(pcm)
        for pcm in to_pcm16.flush():
            yield from blocks.push(pcm)
        yield from blocks.rest()
        if skipped:
            logger.warning(
                "%s: %d packet(s) of its %s could not be decoded and were skipped",
                name,
                skipped,
                decoded.description,
            )


# -- FFmpeg ---------------------------------------------------------------------------------------


def _open(path: Path, raw: RawInput | None) -> InputContainer:
    name = str(path)
    options = dict(_OPEN_OPTIONS)
    if raw is not None:
        options |= {
            "sample_rate": str(raw.sample_rate_hz),
            "ch_layout": "mono" if raw.channels == 1 else "stereo",
        }
    try:
        return av.open(
            str(path),
            format=raw.format if raw is not None else None,
            container_options=options,
            metadata_errors="replace",
        )
    except av.error.ArgumentError:
        # format_whitelist refused what the probe found (FFmpeg does not say what it was).
        raise MediaError(
            f"{name}: not an audio format this bridge reads (FFmpeg found a playlist, image or"
            f" other non-audio format); pass a recording ({FORMATS_TEXT}, ...)"
        ) from None
    except av.error.FFmpegError as exc:
        looks = _signature(path)
        if looks is None and isinstance(exc, av.error.InvalidDataError):
            raise MediaError(
                f"{name}: not an audio file FFmpeg can read (FFmpeg found no known format in"
                f" it); pass a recording ({FORMATS_TEXT}, ...)"
            ) from None
        if looks is None:
            raise MediaError(
                f"{name}: cannot read it (FFmpeg: {_reason(exc)}); check the file"
            ) from None
        raise MediaError(
            f"{name}: cannot read it (it starts like {looks}, but FFmpeg: {_reason(exc)}); the"
            " file is damaged or cut short: export it again"
        ) from None


# First bytes of the formats people have, to name a file FFmpeg cannot open (FFmpeg does not say
# which demuxer failed): (offset, bytes, name).
_SIGNATURES: Final = (
    (0, b"OggS", "an Ogg file"),
    (0, b"fLaC", "a FLAC file"),
    (0, b"ID3", "an MP3 file (ID3 tag)"),
    (4, b"ftyp", "an MP4/M4A file"),
    (0, b"\x1a\x45\xdf\xa3", "a WebM/Matroska file"),
    (0, b"RIFF", "a RIFF file (WAV, AVI)"),
    (0, b"#!AMR", "an AMR file"),
    (0, b"FORM", "an AIFF file"),
    (0, b"caff", "a CAF file"),
    (0, b".snd", "an AU file"),
    (0, b"0&\xb2u\x8ef\xcf\x11", "an ASF/WMA file"),
)


def _signature(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        return None
    for offset, magic, what in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return what
    return None


def _first_frame(
    path: Path, container: InputContainer, stream: AudioStream, found: str
) -> AudioFrame:
    error: Exception | None = None
    for n, packet in enumerate(_packets(path, container, stream, found), 1):
        try:
            frames = stream.decode(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            error = exc
        else:
            for frame in frames:
                if frame.samples:
                    return frame
        if n >= MAX_PROBE_PACKETS:
            break
    if error is not None:
        raise MediaError(
            f"{path}: cannot decode it (FFmpeg found {found}, but: {_reason(error)}); the file"
            " is damaged: export it again"
        )
    raise MediaError(
        f"{path}: no audio decoded (FFmpeg found {found}, but no samples in it); the file is"
        " empty or damaged: export it again"
    )


def _packets(
    path: Path, container: InputContainer, stream: AudioStream, found: str
) -> Iterator[Packet[AudioStream]]:
    """``container.demux(stream)``, its flush packet included; data that stops demuxing ends it
    (a WARNING), a read error is a ``MediaError``."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.InvalidDataError as exc:
            logger.warning("%s: reading stopped at damaged data (%s): %s", path, found, exc)
            return
        except (av.error.FFmpegError, OSError) as exc:
            raise MediaError(f"{path}: cannot read it ({_reason(exc)}); check the file") from None
        yield packet


def _duration_s(container: InputContainer, stream: AudioStream) -> float | None:
    """The stream's duration, else the container's (estimated from the bit rate for some MP3s)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / _AV_TIME_BASE
    return None


def _packets_duration_s(path: Path, raw: RawInput | None, index: int, found: str) -> float:
    """The sum of the stream's packet durations: one pass without decoding, for a file whose
    header gives no duration."""
    with _open(path, raw) as container:
        stream = container.streams[index]
        assert isinstance(stream, AudioStream)
        time_base = stream.time_base or Fraction(1, stream.rate or 1)
        total = sum(p.duration or 0 for p in _packets(path, container, stream, found))
    return float(total * time_base)


def _codec_name(stream: AudioStream) -> str | None:
    try:
        codec = stream.codec_context.codec
    except (av.error.FFmpegError, ValueError, AttributeError):
        return None
    return None if codec is None else str(codec.canonical_name)


def _reason(exc: Exception) -> str:
    """FFmpeg's text of an error, without the file name PyAV appends."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).rstrip(".")


# -- conversion -----------------------------------------------------------------------------------


class _ToPcm16:
    """Decoded frames -> planar int16 arrays ``(channels, n)`` at one rate and layout.

    PyAV's resampler takes its input format from the first frame and refuses others, so a frame
    with another rate, layout or sample format starts a new one (the old one flushed first)."""

    def __init__(self, sample_rate_hz: int, channels: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.layout = f"{channels}c"  # FFmpeg's default layout for that many: mono, stereo
        self._resampler: av.AudioResampler | None = None
        self._input: tuple[str, str, int] | None = None

    def convert(self, frame: AudioFrame) -> Iterator[npt.NDArray[np.int16]]:
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if shape != self._input:
            yield from self.flush()
            self._input = shape
            self._resampler = av.AudioResampler("s16p", self.layout, self.sample_rate_hz)
        assert self._resampler is not None
        for out in self._resampler.resample(frame):
            yield np.asarray(out.to_ndarray(), dtype=np.int16)

    def flush(self) -> Iterator[npt.NDArray[np.int16]]:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                yield np.asarray(out.to_ndarray(), dtype=np.int16)
        self._resampler = self._input = None


class _Blocks:
    """Planar int16 arrays of any length -> blocks of ``frames_per_block``, PCM16 LE bytes."""

    def __init__(self, channels: int, frames_per_block: int) -> None:
        self.channels = channels
        self.frames_per_block = frames_per_block
        self._rest: npt.NDArray[np.int16] = np.zeros((channels, 0), dtype=np.int16)

    def push(self, pcm: npt.NDArray[np.int16]) -> Iterator[list[bytes]]:
        if self._rest.shape[1]:
            pcm = np.concatenate((self._rest, pcm), axis=1)
        n = self.frames_per_block
        end = pcm.shape[1] - pcm.shape[1] % n
        for i in range(0, end, n):
            yield self._split(pcm[:, i : i + n])
        self._rest = pcm[:, end:]

    def rest(self) -> Iterator[list[bytes]]:
        if self._rest.shape[1]:
            yield self._split(self._rest)
            self._rest = self._rest[:, :0]

    def _split(self, pcm: npt.NDArray[np.int16]) -> list[bytes]:
        return [pcm[c].astype("<i2", copy=False).tobytes() for c in range(self.channels)]
