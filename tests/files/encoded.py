"""Recordings for the reader's tests, made on the fly with PyAV (FFmpeg's encoders): speech from
flite (``tests.engine.speech``), never a committed audio file."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from tests.engine import speech

SOURCE_RATE_HZ = speech.SAMPLE_RATE_HZ  # flite's 16 kHz
FRAME_SAMPLES = 1024  # samples per frame handed to the encoder


def sentences(*texts: str) -> list[npt.NDArray[np.int16]]:
    """One channel per text, spoken by flite at 16 kHz, padded to one length with silence."""
    voices = [speech.flite(text) for text in texts]
    n = max(v.size for v in voices)
    return [(np.pad(v, (0, n - v.size)) * 32767 * 0.8).astype(np.int16) for v in voices]


def encode(
    path: Path,
    channels: list[npt.NDArray[np.int16]],
    *,
    container: str,
    codec: str,
    rate: int,
    bit_rate: int | None = None,
    source_rate: int = SOURCE_RATE_HZ,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Write ``channels`` (int16 at ``source_rate``) as ``codec`` in ``container`` at ``rate``;
    FFmpeg's encoder converts the rate and sample format itself."""
    layout = {1: "mono", 2: "stereo"}.get(len(channels), f"{len(channels)}c")
    pcm = np.ascontiguousarray(np.stack(channels))
    with av.open(str(path), "w", format=container, container_options=container_options) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for start in range(0, pcm.shape[1], FRAME_SAMPLES):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm[:, start : start + FRAME_SAMPLES]),
                format="s16p",
                layout=layout,
            )
            frame.sample_rate = source_rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
