"""Real words through the real server: flite speech, faster-whisper, websockets.

Word times are read back from the step clock as the bridge does (delta ``k`` → ``562.5 + 80 k
- 480`` ms) and must fall within 500 ms of where the word was spoken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bridge.engine import EngineConfig, RunningEngine, start_engine_server
from bridge.engine.bench import StreamResult, stream_utterance
from bridge.engine.recognizer import Recognizer
from tests.engine import speech


@pytest.fixture(autouse=True, scope="module")
def _tools() -> None:
    if speech.FLITE is None or speech.SOX is None:
        pytest.fail("the speech tests need flite and sox: run bash .ci/setup.sh (apt-get)")


KEY_WORDS = ["please", "alice", "tomorrow", "morning", "invoice", "billing", "department"]


@pytest.fixture(scope="module")
def utterance() -> speech.Speech:
    return speech.build(
        [
            1.0,
            "Please call Alice tomorrow morning",
            1.2,
            "The invoice is in the billing department",
            1.0,
        ],
        by_word=True,
    )


@pytest.fixture
async def engine(whisper_recognizer: Recognizer) -> AsyncIterator[RunningEngine]:
    running = await start_engine_server(
        EngineConfig(language="en", max_legs=4), recognizer=whisper_recognizer
    )
    try:
        yield running
    finally:
        await running.close()


def check_words_and_times(result: StreamResult, spoken: speech.Speech) -> None:
    assert result.done is not None, result.errors
    assert result.done["text"] == result.text
    samples = spoken.audio.size
    assert len(result.deltas) == (12760 + samples) // 1280 + 1
    heard = {speech.normalize(word): at for word, at in reversed(result.word_times_ms())}
    missing = [w for w in KEY_WORDS if w not in heard]
    assert not missing, f"missing {missing} in {result.text!r}"
    for word in KEY_WORDS:
        span = spoken.span(word)
        assert span.start_ms - 500 <= heard[word] <= span.end_ms + 500, (
            f"{word!r} spoken {span.start_ms:.0f}-{span.end_ms:.0f} ms, "
            f"read back at {heard[word]:.0f} ms"
        )


async def test_clean_speech_words_and_times(
    engine: RunningEngine, utterance: speech.Speech
) -> None:
    result = await stream_utterance(engine.url, engine.model, utterance.pcm16)
    check_words_and_times(result, utterance)


async def test_mulaw_speech_words_and_times(
    engine: RunningEngine, utterance: speech.Speech
) -> None:
    result = await stream_utterance(engine.url, engine.model, speech.mulaw(utterance).pcm16)
    check_words_and_times(result, utterance)


async def test_real_time_text_arrives_while_audio_streams(engine: RunningEngine) -> None:
    spoken = speech.build([0.5, "Good morning Alice", 4.0], voice="kal16")
    result = await stream_utterance(engine.url, engine.model, spoken.pcm16, realtime=True)
    assert result.done is not None
    assert "alice" in speech.normalize(result.text)
    first_text = next(k for k, d in enumerate(result.deltas) if d.strip())
    # Text came while audio was still being sent (not only after final), a few seconds after
    # the word was spoken (~1.5 s on an idle 2-core machine; generous for shared CI).
    assert result.arrivals_s[first_text] < result.chunk_sent_s[-1]
    word_end_s = result.started_s + spoken.words[0].end_ms / 1000
    assert result.arrivals_s[first_text] - word_end_s < 5.0
