"""What a leg's ASR dialect costs the bridge per 80 ms of audio: the sans-I/O session objects
(bridge/core/asr_protocol.py, bridge/core/openai_protocol.py) and their assemblers, in-process,
no sockets, with the server's answers scripted as each dialect sends them.

Run by hand, from the repository root::

    .venv/bin/python benchmarks/bench_dialects.py [--minutes 10] [--rounds 3]

* ``vllm``: ``AsrStream`` (16 kHz PCM16, base64 appends) and a delta per step (a word every
  400 ms of speech, empty otherwise) into the ``TranscriptAssembler``;
* ``openai-pcm``: ``OpenAiTranscription`` resampling to 24 kHz, a turn committed at each pause
  (3 s of speech, 0.8 s of quiet) and its ``completed`` into the ``TurnAssembler``;
* ``openai-pcmu``: the same, the leg's G.711 passed through as ``audio/pcmu``.

Each is CPU µs per 80 ms chunk (the best of ``--rounds``); the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.core.asr_protocol import AsrStream  # noqa: E402
from bridge.core.openai_protocol import OpenAiTranscription  # noqa: E402
from bridge.core.transcript import TranscriptAssembler  # noqa: E402
from bridge.core.turns import TurnAssembler  # noqa: E402
from bridge.core.types import CHUNK_SAMPLES, CallId, LegId  # noqa: E402

SPEECH_CHUNKS, PAUSE_CHUNKS = 38, 10  # 3.04 s of speech, 0.8 s of quiet


def chunks(minutes: float) -> list[tuple[bytes, bool]]:
    """80 ms chunks of a tone (speech) and silence (quiet), alternating like a conversation."""
    t = np.arange(CHUNK_SAMPLES) / 16_000
    voiced = (3000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    quiet = bytes(2 * CHUNK_SAMPLES)
    n = int(minutes * 60 / 0.08)
    cycle = [(voiced, True)] * SPEECH_CHUNKS + [(quiet, False)] * PAUSE_CHUNKS
    return [cycle[i % len(cycle)] for i in range(n)]


def run_vllm(audio: list[tuple[bytes, bool]]) -> None:
    stream = AsrStream("m")
    assembler = TranscriptAssembler(CallId("c"), LegId("l"))
    stream.receive_connected()
    stream.receive_message('{"type":"session.created","id":"s"}')
    stream.data_to_send()
    for n, (chunk, _) in enumerate(audio):
        stream.send_audio(chunk)
        stream.data_to_send()
        if n >= 7:  # the first step needs 562.5 ms of audio; it is the text of chunk n - 7
            said = audio[n - 7][1] and n % 5 == 0  # a word every 400 ms of speech
            stream.receive_message(_WORD if said else _EMPTY)
        for event in stream.events_received():
            assembler.receive(event)


def run_openai(audio: list[tuple[bytes, bool]], wire: str) -> None:
    stream = OpenAiTranscription("m", pause_samples=PAUSE_CHUNKS * CHUNK_SAMPLES, wire_format=wire)
    assembler = TurnAssembler(CallId("c"), LegId("l"))
    stream.receive_connected()
    stream.receive_message('{"type":"session.created","session":{"id":"s"}}')
    stream.receive_message('{"type":"session.updated","session":{}}')
    items = 0
    for chunk, voiced in audio:
        stream.send_audio(chunk, speech=voiced)
        for frame in stream.data_to_send():
            if frame.endswith('commit"}'):
                items += 1
                item = f"i{items}"
                for answer in (
                    {"type": "input_audio_buffer.committed", "item_id": item},
                    {"type": _T + "delta", "item_id": item, "delta": " some words"},
                    {"type": _T + "completed", "item_id": item, "transcript": "some words"},
                ):
                    stream.receive_message(json.dumps(answer))
        for event in stream.events_received():
            assembler.receive(event)


_T = "conversation.item.input_audio_transcription."
_WORD = '{"type":"transcription.delta","delta":" word"}'
_EMPTY = '{"type":"transcription.delta","delta":""}'


def best_us_per_chunk(run: Callable[[], None], count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="audio per dialect")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    audio = chunks(args.minutes)
    report = {
        "chunks": len(audio),
        "vllm_us_per_chunk": best_us_per_chunk(lambda: run_vllm(audio), len(audio), args.rounds),
        "openai_pcm_us_per_chunk": best_us_per_chunk(
            lambda: run_openai(audio, "audio/pcm"), len(audio), args.rounds
        ),
        "openai_pcmu_us_per_chunk": best_us_per_chunk(
            lambda: run_openai(audio, "audio/pcmu"), len(audio), args.rounds
        ),
    }
    for key, value in report.items():
        print(f"{key:28} {value:10.2f}" if isinstance(value, float) else f"{key:28} {value}")
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in report.items()}))


if __name__ == "__main__":
    main()
