"""A small ``/v1/realtime`` client: one utterance, every delta timed (the benchmark's, the tests').

It speaks the protocol as ``docs/vllm-realtime.md`` describes it: ``session.update``, a commit
that starts the generation, 80 ms appends (at real-time pace or as fast as possible), the final
commit, then deltas until ``transcription.done``.  The bridge's own client is
``bridge/asr/client.py``; this one keeps no state beyond one utterance.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect

from bridge.core.step_clock import SAMPLE_RATE_HZ, StepClock
from bridge.core.step_clock import STEP_SAMPLES as CHUNK_SAMPLES

__all__ = ["StreamResult", "stream_utterance"]


@dataclass
class StreamResult:
    deltas: list[str] = field(default_factory=list)
    arrivals_s: list[float] = field(default_factory=list)  # monotonic, per delta
    done: dict[str, object] | None = None
    errors: list[dict[str, object]] = field(default_factory=list)
    started_s: float = 0.0  # monotonic time of the first append
    chunk_sent_s: list[float] = field(default_factory=list)  # per 80 ms chunk

    @property
    def text(self) -> str:
        return "".join(self.deltas)

    def word_times_ms(self, delay_ms: int = 480) -> list[tuple[str, float]]:
        """Each word of the deltas with its time read back from the step clock."""
        clock = StepClock(delay_ms)
        first_ms = clock.first_step_samples * 1000 / SAMPLE_RATE_HZ
        words: list[tuple[str, float]] = []
        for k, delta in enumerate(self.deltas):
            for i, word in enumerate(delta.split(" ")):
                if not word:
                    continue
                if i == 0 and not delta.startswith(" ") and words:
                    words[-1] = (words[-1][0] + word, words[-1][1])  # continues a word
                    continue
                words.append((word, first_ms + 80 * k - delay_ms))
        return words


async def stream_utterance(
    url: str,
    model: str,
    pcm16: bytes,
    *,
    realtime: bool = False,
    headers: dict[str, str] | None = None,
    timeout_s: float = 120.0,
) -> StreamResult:
    """One utterance over ``/v1/realtime``: update, commit, 80 ms appends, final, until done."""
    result = StreamResult()
    async with connect(url, additional_headers=headers, max_size=None) as ws:
        created = json.loads(await ws.recv())
        assert created["type"] == "session.created", created
        await ws.send(json.dumps({"type": "session.update", "model": model}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))

        async def receive() -> None:
            async for message in ws:
                event = json.loads(message)
                if event["type"] == "transcription.delta":
                    result.deltas.append(event["delta"])
                    result.arrivals_s.append(time.monotonic())
                elif event["type"] == "transcription.done":
                    result.done = event
                    return
                else:
                    result.errors.append(event)
                    return

        receiver = asyncio.create_task(receive())
        result.started_s = start = time.monotonic()
        step_bytes = CHUNK_SAMPLES * 2
        for n, i in enumerate(range(0, len(pcm16), step_bytes)):
            if realtime:
                await asyncio.sleep(max(0.0, start + n * 0.08 - time.monotonic()))
            audio = base64.b64encode(pcm16[i : i + step_bytes]).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            result.chunk_sent_s.append(time.monotonic())
            if receiver.done():
                break
        await ws.send(json.dumps({"type": "input_audio_buffer.commit", "final": True}))
        await asyncio.wait_for(receiver, timeout_s)
    return result
