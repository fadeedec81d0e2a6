"""Audio files for ``bridge transcribe FILE...``: WAV (PCM16, µ-law, A-law) and raw G.711/PCM16.

The stdlib ``wave`` module reads only integer PCM, so the RIFF header is parsed here (Microsoft
"Multimedia Programming Interface and Data Specifications 1.0": a ``RIFF`` header with form type
``WAVE``, then chunks of ``id (4 bytes), size (u32 LE), data``, each padded to an even length).  The
``fmt `` chunk gives the format tag (1 PCM, 6 A-law, 7 µ-law, 0xFFFE WAVE_FORMAT_EXTENSIBLE whose
SubFormat GUID carries the tag), channels, rate and bits per sample; ``data`` holds interleaved
frames.  Other chunks (``LIST``, ``fact``, ``bext``, ...) are skipped.

Raw files take their encoding from the extension or ``encoding``; their rate from
``sample_rate_hz`` (8000 by default for G.711; required for PCM16).

Every problem raises ``MediaError`` with one line naming the file, what is wrong and how to fix it.
Samples are streamed with ``AudioFile.read_blocks()``; nothing reads a whole file into memory.
The header parse is bounded: at most :data:`MAX_HEADER_CHUNKS` chunks are looked at (it still does
blocking file I/O: callers on an event loop run ``open_audio`` in a thread).
"""

from __future__ import annotations

import shlex
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np

from bridge.core.audio import SUPPORTED_SAMPLE_RATES_HZ
from bridge.core.types import AudioEncoding
from bridge.errors import MediaError

__all__ = [
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

_WAVE_FORMAT_PCM: Final = 0x0001
_WAVE_FORMAT_IEEE_FLOAT: Final = 0x0003
_WAVE_FORMAT_ALAW: Final = 0x0006
_WAVE_FORMAT_MULAW: Final = 0x0007
_WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE
# KSDATAFORMAT_SUBTYPE_* GUIDs are the format tag (u16 LE) followed by these 14 bytes.
_SUBFORMAT_TAIL: Final = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_TAG_NAMES: Final = {
    0x0002: "Microsoft ADPCM",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MP3",
}
_MAX_FMT_BYTES: Final = 1024
# Chunks read before both ``fmt `` and ``data`` are found.  Real recorders write a handful (LIST,
# bext, fact, iXML, JUNK/PAD); a file with millions of empty chunks would make the header parse
# take seconds, so past this many the file is refused.
MAX_HEADER_CHUNKS: Final = 1024
_SUPPORTED_FORMATS: Final = "16-bit PCM, µ-law or A-law only"
_SOX_RAW_TYPE: Final = {
    AudioEncoding.PCMU: "ul",
    AudioEncoding.PCMA: "al",
    AudioEncoding.PCM16: "s16",
}
_OPTION_NAMES: Final = {
    "encoding": "--encoding",
    "sample_rate_hz": "--rate",
    "channels": "--channels",
}


@dataclass(frozen=True, slots=True)
class AudioFile:
    """An opened (header-checked) audio file; ``frames`` counts samples per channel."""

    path: Path
    encoding: AudioEncoding
    sample_rate_hz: int
    channels: int
    frames: int
    data_offset: int = 0  # byte offset of the first sample in the file

    @property
    def duration_ms(self) -> int:
        return self.frames * 1000 // self.sample_rate_hz

    @property
    def bytes_per_frame(self) -> int:
        return self.channels * self.encoding.bytes_per_sample

    def read_blocks(self, frames_per_block: int) -> Iterator[list[bytes]]:
        """Yield blocks of ``frames_per_block`` frames (the last may be shorter), streaming.

        Each block is a list with one ``bytes`` per channel, in the file's own encoding, ready for
        ``LegAudio.receive_frame`` of that channel's leg.
        """
        if frames_per_block <= 0:
            raise ValueError(f"frames_per_block must be > 0, got {frames_per_block}")
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

    def _split(self, data: bytes) -> list[bytes]:
        if self.channels == 1:
            return [data]
        if self.encoding.bytes_per_sample == 1:
            return [data[c :: self.channels] for c in range(self.channels)]
        frames = np.frombuffer(data, dtype="<i2").reshape(-1, self.channels)
        return [frames[:, c].tobytes() for c in range(self.channels)]


def open_audio(
    path: Path,
    *,
    encoding: AudioEncoding | None = None,
    sample_rate_hz: int | None = None,
    channels: int | None = None,
) -> AudioFile:
    """Check ``path`` and describe its audio; raise ``MediaError`` naming the problem and fix.

    A file is raw when its extension is in ``RAW_EXTENSIONS``, or when ``encoding`` is given and
    the file has no RIFF header; otherwise it must be a WAV file, whose header is authoritative:
    ``encoding``/``sample_rate_hz``/``channels`` that disagree with it are an error.
    """
    path = Path(path)
    name = str(path)
    size = _file_size(path)
    if size == 0:
        raise MediaError(f"{name}: the file is empty (0 bytes); pass a recording with audio in it")
    raw_encoding = RAW_EXTENSIONS.get(path.suffix.lower())
    try:
        with path.open("rb") as f:
            is_riff = f.read(4) == b"RIFF"
            if raw_encoding is not None or (encoding is not None and not is_riff):
                return _open_raw(path, size, encoding or raw_encoding, sample_rate_hz, channels)
            audio = _open_wav(path, f, size)
    except OSError as exc:
        raise MediaError(f"{name}: cannot read it ({exc.strerror or exc}); check the file") from exc
    for option, given, actual in (
        ("encoding", encoding, audio.encoding),
        ("sample_rate_hz", sample_rate_hz, audio.sample_rate_hz),
        ("channels", channels, audio.channels),
    ):
        if given is not None and given != actual:
            shown_given = given.value if isinstance(given, AudioEncoding) else given
            shown_actual = actual.value if isinstance(actual, AudioEncoding) else actual
            flag = _OPTION_NAMES[option]
            raise MediaError(
                f"{name}: the WAV header says {flag} {shown_actual} but {flag} {shown_given} was"
                f" given; drop {flag} (it is for raw files)"
            )
    return audio


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
    if sample_rate_hz not in SUPPORTED_SAMPLE_RATES_HZ:
        out = _quote(_sibling(path, "16k"))
        raise MediaError(
            f"{name}: --rate {sample_rate_hz} is not supported ({_rates_text()});"
            f" convert it with: sox -t {_SOX_RAW_TYPE[encoding]} -r {sample_rate_hz}"
            f" -c {channels} {_quote(path)} -r 16000 {out}"
        )
    bytes_per_frame = channels * encoding.bytes_per_sample
    if size % bytes_per_frame:
        raise MediaError(
            f"{name}: {_partial_frame_problem(size, encoding, channels)}; check"
            " --encoding and --channels, or whether the file was cut short"
        )
    return AudioFile(path, encoding, sample_rate_hz, channels, size // bytes_per_frame, 0)


# -- WAV ------------------------------------------------------------------------------------------


def _open_wav(path: Path, f: BinaryIO, size: int) -> AudioFile:
    name = str(path)
    f.seek(0)
    head = f.read(12)
    if head[:4] != b"RIFF":
        raise MediaError(
            f"{name}: not a WAV file (no RIFF header); convert it with:"
            f" sox {_quote(path)} -r 16000 -c 1 {_quote(_sibling(path, '16k'))}"
        )
    if head[8:12] != b"WAVE":
        form = head[8:12].decode("latin-1")
        raise MediaError(
            f"{name}: not a WAV file (RIFF type {form!r}, not 'WAVE'); convert it with:"
            f" sox {_quote(path)} -r 16000 -c 1 {_quote(_sibling(path, '16k'))}"
        )

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
    encoding, sample_rate_hz, channels = _parse_fmt(path, fmt)
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


def _parse_fmt(path: Path, fmt: bytes) -> tuple[AudioEncoding, int, int]:
    name = str(path)
    if len(fmt) < 16:
        raise MediaError(
            f"{name}: damaged WAV header (fmt chunk of {len(fmt)} bytes); export it again"
        )
    tag, channels, rate, _byte_rate, _block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _SUBFORMAT_TAIL:
            raise MediaError(
                f"{name}: WAV sub-format is not supported ({_SUPPORTED_FORMATS}); convert it with:"
                f" sox {_quote(path)} -b 16 -e signed-integer {_quote(_sibling(path, '16bit'))}"
            )
        (tag,) = struct.unpack("<H", fmt[24:26])

    fix_16bit = (
        f"convert it with: sox {_quote(path)} -b 16 -e signed-integer"
        f" {_quote(_sibling(path, '16bit'))}"
    )
    if tag == _WAVE_FORMAT_PCM:
        if bits != 16:
            raise MediaError(
                f"{name}: {bits}-bit PCM WAV is not supported ({_SUPPORTED_FORMATS}); {fix_16bit}"
            )
        encoding = AudioEncoding.PCM16
    elif tag in (_WAVE_FORMAT_MULAW, _WAVE_FORMAT_ALAW):
        encoding = AudioEncoding.PCMU if tag == _WAVE_FORMAT_MULAW else AudioEncoding.PCMA
        if bits != 8:
            raise MediaError(
                f"{name}: damaged WAV header ({encoding.value} with {bits} bits per sample);"
                f" {fix_16bit}"
            )
    elif tag == _WAVE_FORMAT_IEEE_FLOAT:
        raise MediaError(
            f"{name}: {bits}-bit float WAV is not supported ({_SUPPORTED_FORMATS}); {fix_16bit}"
        )
    else:
        what = _TAG_NAMES.get(tag, "unknown")
        raise MediaError(
            f"{name}: WAV encoding 0x{tag:04X} ({what}) is not supported ({_SUPPORTED_FORMATS});"
            f" {fix_16bit}"
        )

    if channels == 0:
        raise MediaError(f"{name}: damaged WAV header (0 channels); export it again")
    if channels > 2:
        raise MediaError(
            f"{name}: {channels} channels are not supported (mono or stereo only); keep two with:"
            f" sox {_quote(path)} {_quote(_sibling(path, 'stereo'))} remix 1 2"
        )
    if rate not in SUPPORTED_SAMPLE_RATES_HZ:
        raise MediaError(
            f"{name}: sample rate {rate} Hz is not supported ({_rates_text()}); convert it with:"
            f" sox {_quote(path)} -r 16000 {_quote(_sibling(path, '16k'))}"
        )
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
    """The sox command's output: ``call.mp3`` -> ``call.wav``, ``x.wav`` -> ``x-tag.wav``."""
    if path.suffix.lower() != ".wav":
        return path.with_suffix(".wav")
    return path.with_name(f"{path.stem}-{tag}.wav")


def _quote(path: Path) -> str:
    return shlex.quote(str(path))


def _rates_text() -> str:
    rates = [str(r) for r in SUPPORTED_SAMPLE_RATES_HZ]
    return f"{', '.join(rates[:-1])} or {rates[-1]} Hz"
