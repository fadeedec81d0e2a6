"""Audio files for ``bridge transcribe FILE...`` and uploads: any format and rate FFmpeg decodes.

Two readers behind one :class:`AudioFile`:

* **Plain samples, read as they are** (the fast path): WAV files of 16-bit PCM, µ-law or A-law at
  a rate the leg takes (:data:`SUPPORTED_SAMPLE_RATES_HZ`), and raw G.711/PCM16.  The blocks are
  the file's bytes, split per channel; no decoding, no conversion.  Measured on an hour of 8 kHz
  stereo µ-law in 20 ms blocks: 0.3 s of CPU read as is, 1.8 s through FFmpeg (and the legs'
  work after it: 0.9 s against 1.2 s per 10 minutes), so this path stays.
* **Everything else through FFmpeg** (:mod:`bridge.files.decode`): MP3, OGG/Opus, M4A/AAC, FLAC,
  WebM, WAVs of other encodings (24-bit, float, ADPCM, ...) or rates (11.025, 22.05 kHz, ...),
  raw files at such rates.  Blocks are PCM16 at the decoded rate when the leg takes it, else at
  16 kHz.

Channels become legs: mono is one leg, stereo two (left, right).  More channels are refused with a
command that keeps the first two: each channel is a leg with a role, and a recording of three or
more channels is rarely one speaker per channel.

The WAV header is parsed here (Microsoft "Multimedia Programming Interface and Data
Specifications 1.0": a ``RIFF`` header with form type ``WAVE``, then chunks of ``id (4 bytes),
size (u32 LE), data``, each padded to an even length).  The ``fmt `` chunk gives the format tag
(1 PCM, 6 A-law, 7 µ-law, 0xFFFE WAVE_FORMAT_EXTENSIBLE whose SubFormat GUID carries the tag),
channels, rate and bits per sample; ``data`` holds interleaved frames.  Other chunks (``LIST``,
``fact``, ``bext``, ...) are skipped.  A well-formed header of another encoding or rate goes to
FFmpeg; a damaged one is refused here.

Raw files take their encoding from the extension or ``encoding``; their rate from
``sample_rate_hz`` (8000 by default for G.711; required for PCM16).

Every problem raises ``MediaError`` with one line naming the file, what is wrong and how to fix it.
Samples are streamed with ``AudioFile.read_blocks()``; nothing reads a whole file into memory.
The header parse is bounded: at most :data:`MAX_HEADER_CHUNKS` chunks are looked at.  Opening and
reading do blocking file I/O (and FFmpeg's probing and decoding): callers on an event loop run
``open_audio`` in a thread and read with ``AudioFile.stream_blocks()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import struct
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np

from bridge.core.audio import SUPPORTED_SAMPLE_RATES_HZ
from bridge.core.types import AudioEncoding
from bridge.errors import MediaError
from bridge.files.decode import Decoded, RawInput, decode_blocks, probe

__all__ = [
    "BATCH_BLOCKS",
    "MAX_HEADER_CHUNKS",
    "RAW_EXTENSIONS",
    "SUPPORTED_SAMPLE_RATES_HZ",
    "AudioFile",
    "open_audio",
]

RAW_EXTENSIONS: Final[dict[str, AudioEncoding]] = {
    ".ul": AudioEncoding.PCMU,
    ".ulaw": AudioEncoding.PCMU,
    ".mulaw": AudioEncoding.PCMU,
    ".u8": AudioEncoding.PCMU,
    ".al": AudioEncoding.PCMA,
    ".alaw": AudioEncoding.PCMA,
    ".raw": AudioEncoding.PCM16,
    ".pcm": AudioEncoding.PCM16,
    ".s16": AudioEncoding.PCM16,
    ".sln": AudioEncoding.PCM16,
}
DEFAULT_G711_RATE_HZ: Final = 8000
MAX_CHANNELS: Final = 2  # one leg per channel: left and right
# Blocks ``stream_blocks`` reads per trip to a worker thread: 1 s of 20 ms blocks.
BATCH_BLOCKS: Final = 50
# FFmpeg's raw demuxers, for raw files at a rate the leg does not take.
_FFMPEG_RAW: Final = {
    AudioEncoding.PCMU: "mulaw",
    AudioEncoding.PCMA: "alaw",
    AudioEncoding.PCM16: "s16le",
}
_MAX_RAW_RATE_HZ: Final = 768_000

_WAVE_FORMAT_PCM: Final = 0x0001
_WAVE_FORMAT_ALAW: Final = 0x0006
_WAVE_FORMAT_MULAW: Final = 0x0007
_WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE
# KSDATAFORMAT_SUBTYPE_* GUIDs are the format tag (u16 LE) followed by these 14 bytes.
_SUBFORMAT_TAIL: Final = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_MAX_FMT_BYTES: Final = 1024
# Chunks read before both ``fmt `` and ``data`` are found.  Real recorders write a handful (LIST,
# bext, fact, iXML, JUNK/PAD); a file with millions of empty chunks would make the header parse
# take seconds, so past this many the file is refused.
MAX_HEADER_CHUNKS: Final = 1024
_OPTION_NAMES: Final = {
    "encoding": "--encoding",
    "sample_rate_hz": "--rate",
    "channels": "--channels",
}


@dataclass(frozen=True, slots=True)
class AudioFile:
    """An opened (header-checked) audio file; ``frames`` counts samples per channel.

    ``decoded``: set when FFmpeg reads it (:mod:`bridge.files.decode`); then ``encoding`` is PCM16,
    ``sample_rate_hz`` the rate of the decoded blocks and ``frames`` the container's estimate.
    """

    path: Path
    encoding: AudioEncoding
    sample_rate_hz: int
    channels: int
    frames: int
    data_offset: int = 0  # byte offset of the first sample in the file
    decoded: Decoded | None = None

    @property
    def duration_ms(self) -> int:
        return self.frames * 1000 // self.sample_rate_hz

    @property
    def bytes_per_frame(self) -> int:
        return self.channels * self.encoding.bytes_per_sample

    def read_blocks(self, frames_per_block: int) -> Generator[list[bytes]]:
        """Yield blocks of ``frames_per_block`` frames (the last may be shorter), streaming.

        Each block is a list with one ``bytes`` per channel, in ``encoding``, ready for
        ``LegAudio.receive_frame`` of that channel's leg.  Blocking: see ``stream_blocks``.
        """
        if frames_per_block <= 0:
            raise ValueError(f"frames_per_block must be > 0, got {frames_per_block}")
        if self.decoded is not None:
            yield from decode_blocks(self.path, self.decoded, frames_per_block)
            return
        bytes_per_frame = self.bytes_per_frame
        remaining = self.frames
        try:
            with self.path.open("rb") as f:
                f.seek(self.data_offset)
                while remaining > 0:
                    n = min(frames_per_block, remaining)
                    data = f.read(n * bytes_per_frame)
                    if len(data) != n * bytes_per_frame:
                        raise MediaError(
                            f"{self.path}: the file ended {remaining * bytes_per_frame - len(data)}"
                            " bytes early while reading (was it changed meanwhile?); read it again"
                        )
                    remaining -= n
                    yield self._split(data)
        except OSError as exc:
            raise MediaError(
                f"{self.path}: cannot read it ({exc.strerror or exc}); check the file"
            ) from exc

    async def stream_blocks(
        self, frames_per_block: int, *, batch_blocks: int = BATCH_BLOCKS
    ) -> AsyncIterator[list[bytes]]:
        """``read_blocks`` for an event loop: the reading and decoding run in a worker thread,
        ``batch_blocks`` blocks at a time, so neither a slow disk nor a hostile file (FFmpeg
        scanning megabytes of junk for the next packet) stalls the loop."""
        blocks = self.read_blocks(frames_per_block)
        try:
            while True:
                batch = await asyncio.to_thread(_take, blocks, batch_blocks)
                for block in batch:
                    yield block
                if len(batch) < batch_blocks:
                    return
        finally:
            # Cancelled while a batch is read: the thread still holds the generator ("already
            # executing"); it is closed when that batch ends and it is dropped.
            with contextlib.suppress(ValueError):
                blocks.close()

    def _split(self, data: bytes) -> list[bytes]:
        if self.channels == 1:
            return [data]
        if self.encoding.bytes_per_sample == 1:
            return [data[c :: self.channels] for c in range(self.channels)]
        frames = np.frombuffer(data, dtype="<i2").reshape(-1, self.channels)
        return [frames[:, c].tobytes() for c in range(self.channels)]


def _take(blocks: Iterator[list[bytes]], n: int) -> list[list[bytes]]:
    return [block for _, block in zip(range(n), blocks, strict=False)]


def open_audio(
    path: Path,
    *,
    encoding: AudioEncoding | None = None,
    sample_rate_hz: int | None = None,
    channels: int | None = None,
) -> AudioFile:
    """Check ``path`` and describe its audio; raise ``MediaError`` naming the problem and fix.

    A file is raw when its extension is in ``RAW_EXTENSIONS``, or when ``encoding`` is given and
    the file has no RIFF header; otherwise its header is authoritative (a WAV header, or what
    FFmpeg finds): ``encoding``/``sample_rate_hz``/``channels`` that disagree with it are an error.
    """
    path = Path(path)
    name = str(path)
    size = _file_size(path)
    if size == 0:
        raise MediaError(f"{name}: the file is empty (0 bytes); pass a recording with audio in it")
    raw_encoding = RAW_EXTENSIONS.get(path.suffix.lower())
    try:
        with path.open("rb") as f:
            head = f.read(12)
            is_riff = head[:4] == b"RIFF"
            if raw_encoding is not None or (encoding is not None and not is_riff):
                return _open_raw(path, size, encoding or raw_encoding, sample_rate_hz, channels)
            audio = _open_wav(path, f, size) if is_riff and head[8:12] == b"WAVE" else None
    except OSError as exc:
        raise MediaError(f"{name}: cannot read it ({exc.strerror or exc}); check the file") from exc
    if audio is None:
        audio = _open_decoded(path)
    decoded = audio.decoded
    header = "WAV header" if decoded is None or decoded.format_name == "wav" else "file"
    actual_rate = audio.sample_rate_hz if decoded is None else decoded.source_rate_hz
    for option, given, actual in (
        ("encoding", encoding, audio.encoding if decoded is None else None),
        ("sample_rate_hz", sample_rate_hz, actual_rate),
        ("channels", channels, audio.channels),
    ):
        if given is None or given == actual:
            continue
        flag = _OPTION_NAMES[option]
        shown_given = given.value if isinstance(given, AudioEncoding) else given
        if actual is None:
            assert decoded is not None
            raise MediaError(
                f"{name}: the {header} gives the encoding (FFmpeg found {decoded.description});"
                f" drop {flag} (it is for raw files)"
            )
        shown_actual = actual.value if isinstance(actual, AudioEncoding) else actual
        raise MediaError(
            f"{name}: the {header} says {flag} {shown_actual} but {flag} {shown_given} was"
            f" given; drop {flag} (it is for raw files)"
        )
    return audio


def _open_decoded(path: Path, raw: RawInput | None = None) -> AudioFile:
    """A file FFmpeg reads, mono or stereo."""
    decoded = probe(path, raw=raw)
    if decoded.channels > MAX_CHANNELS:
        out = _quote(_sibling(path, "stereo"))
        raise MediaError(
            f"{path}: {decoded.channels} channels are not supported (one leg per channel: mono or"
            f" stereo, left caller and right agent); keep the first two with: ffmpeg -i"
            f" {_quote(path)} -af 'pan=stereo|c0=c0|c1=c1' {out}"
        )
    return AudioFile(
        path,
        AudioEncoding.PCM16,
        decoded.sample_rate_hz,
        decoded.channels,
        decoded.frames,
        decoded=decoded,
    )


# -- raw ------------------------------------------------------------------------------------------


def _open_raw(
    path: Path,
    size: int,
    encoding: AudioEncoding | None,
    sample_rate_hz: int | None,
    channels: int | None,
) -> AudioFile:
    name = str(path)
    assert encoding is not None  # the caller only gets here with an extension or an encoding
    channels = 1 if channels is None else channels
    if channels not in (1, 2):
        raise MediaError(f"{name}: --channels {channels} is not supported; pass 1 or 2")
    if sample_rate_hz is None:
        if encoding is AudioEncoding.PCM16:
            raise MediaError(
                f"{name}: raw PCM16 has no header to give its sample rate;"
                " pass it with --rate, e.g. --rate 16000"
            )
        sample_rate_hz = DEFAULT_G711_RATE_HZ
    if not 0 < sample_rate_hz <= _MAX_RAW_RATE_HZ:
        raise MediaError(
            f"{name}: --rate {sample_rate_hz} is not a sample rate; pass the recording's rate in"
            " Hz, e.g. --rate 8000"
        )
    bytes_per_frame = channels * encoding.bytes_per_sample
    if size % bytes_per_frame:
        raise MediaError(
            f"{name}: {_partial_frame_problem(size, encoding, channels)}; check"
            " --encoding and --channels, or whether the file was cut short"
        )
    if sample_rate_hz not in SUPPORTED_SAMPLE_RATES_HZ:  # resampled by FFmpeg to 16 kHz
        return _open_decoded(path, RawInput(_FFMPEG_RAW[encoding], sample_rate_hz, channels))
    return AudioFile(path, encoding, sample_rate_hz, channels, size // bytes_per_frame, 0)


# -- WAV ------------------------------------------------------------------------------------------


def _open_wav(path: Path, f: BinaryIO, size: int) -> AudioFile | None:
    """A RIFF/WAVE file of plain samples (the fast path); None for a well-formed header of
    another encoding, rate or channel count (FFmpeg's); ``MediaError`` for a damaged one."""
    name = str(path)
    fmt: bytes | None = None
    data_offset = data_size = -1
    offset = 12
    chunks = 0
    while offset + 8 <= size and (fmt is None or data_offset < 0):
        chunks += 1
        if chunks > MAX_HEADER_CHUNKS:
            raise MediaError(
                f"{name}: damaged WAV header (more than {MAX_HEADER_CHUNKS} chunks before the"
                " fmt and data chunks); export it again"
            )
        f.seek(offset)
        chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
        body = offset + 8
        if chunk_id == b"fmt ":
            if chunk_size > _MAX_FMT_BYTES or body + chunk_size > size:
                raise MediaError(f"{name}: damaged WAV header (fmt chunk); export the file again")
            fmt = f.read(chunk_size)
        elif chunk_id == b"data" and data_offset < 0:
            data_offset, data_size = body, chunk_size
        offset = body + chunk_size + (chunk_size & 1)  # chunks are padded to an even size
    if fmt is None:
        raise MediaError(
            f"{name}: damaged WAV file (no fmt chunk with the audio format); export it again"
        )
    plain = _parse_fmt(path, fmt)
    if plain is None:
        return None
    encoding, sample_rate_hz, channels = plain
    if data_offset < 0:
        raise MediaError(f"{name}: damaged WAV file (no data chunk); export it again")
    if data_size == 0:
        raise MediaError(
            f"{name}: the WAV file has no audio (empty data chunk); pass a recording with audio"
        )
    available = size - data_offset
    if data_size > available:
        raise MediaError(
            f"{name}: truncated WAV file (the data chunk says {data_size} bytes, the file holds"
            f" {available}); repair it with: sox --ignore-length {_quote(path)}"
            f" {_quote(_sibling(path, 'fixed'))}"
        )
    bytes_per_frame = channels * encoding.bytes_per_sample
    if data_size % bytes_per_frame:
        raise MediaError(
            f"{name}: {_partial_frame_problem(data_size, encoding, channels)} in the data chunk;"
            " the file is damaged, export it again"
        )
    return AudioFile(
        path, encoding, sample_rate_hz, channels, data_size // bytes_per_frame, data_offset
    )


def _parse_fmt(path: Path, fmt: bytes) -> tuple[AudioEncoding, int, int] | None:
    """Encoding, rate and channels of plain samples the leg takes; None for others."""
    name = str(path)
    if len(fmt) < 16:
        raise MediaError(
            f"{name}: damaged WAV header (fmt chunk of {len(fmt)} bytes); export it again"
        )
    tag, channels, rate, _byte_rate, _block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if channels == 0:
        raise MediaError(f"{name}: damaged WAV header (0 channels); export it again")
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _SUBFORMAT_TAIL:
            return None
        (tag,) = struct.unpack("<H", fmt[24:26])
    if tag == _WAVE_FORMAT_PCM and bits == 16:
        encoding = AudioEncoding.PCM16
    elif tag in (_WAVE_FORMAT_MULAW, _WAVE_FORMAT_ALAW) and bits == 8:
        encoding = AudioEncoding.PCMU if tag == _WAVE_FORMAT_MULAW else AudioEncoding.PCMA
    else:
        return None  # 8/24/32-bit PCM, float, ADPCM, GSM, MP3 in WAV, ...
    if channels > MAX_CHANNELS or rate not in SUPPORTED_SAMPLE_RATES_HZ:
        return None
    return encoding, rate, channels


# -- helpers --------------------------------------------------------------------------------------


def _file_size(path: Path) -> int:
    name = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{name}: no such file; check the path") from None
    except OSError as exc:
        raise MediaError(f"{name}: cannot read it ({exc.strerror or exc}); check the file") from exc
    if path.is_dir():
        raise MediaError(f"{name}: is a directory, not an audio file; pass the file itself")
    return st.st_size


def _partial_frame_problem(n_bytes: int, encoding: AudioEncoding, channels: int) -> str:
    if encoding is AudioEncoding.PCM16 and n_bytes % 2:
        return f"odd byte count ({n_bytes}) for 16-bit PCM"
    return (
        f"{n_bytes} bytes are not a whole number of frames"
        f" ({channels} channels x {encoding.bytes_per_sample} bytes)"
    )


def _sibling(path: Path, tag: str) -> Path:
    """A fix command's output: ``call.mp3`` -> ``call.wav``, ``x.wav`` -> ``x-tag.wav``."""
    if path.suffix.lower() != ".wav":
        return path.with_suffix(".wav")
    return path.with_name(f"{path.stem}-{tag}.wav")


def _quote(path: Path) -> str:
    return shlex.quote(str(path))
