"""The benchmark's client-side helpers."""

from __future__ import annotations

from bridge.engine.bench import StreamResult, word_error_rate


def test_bench_helpers_read_words_back_like_the_bridge() -> None:
    assert word_error_rate("Call me at 7, please!", "call me at seven please") == 0.0
    assert word_error_rate("a b c d", "a x c") == 0.5
    result = StreamResult(deltas=["", " hel", "lo", " big world", ""])
    assert result.word_times_ms() == [("hello", 162.5), ("big", 322.5), ("world", 322.5)]
