"""The blank-token rut guard's arithmetic (bridge/core/rut.py; a pure object, so a unit test;
the leg against a real vLLM server that goes blank is tests/integration/test_rut_guard.py)."""

from __future__ import annotations

from bridge.core.rut import RutGuard

RATE = 16_000
CHUNK = 1280  # 80 ms


def feed(guard: RutGuard, seconds: float, *, speech: bool = True) -> None:
    for _ in range(round(seconds * RATE / CHUNK)):
        guard.audio(CHUNK, speech)


def test_speech_without_text_for_the_wait_is_a_rut() -> None:
    guard = RutGuard(8.0, RATE)
    feed(guard, 7.92)
    assert not guard.due
    feed(guard, 0.08)
    assert guard.due
    assert guard.fired() == 8 * RATE and not guard.due


def test_quiet_audio_does_not_count_and_text_starts_again() -> None:
    guard = RutGuard(2.0, RATE)
    feed(guard, 30.0, speech=False)  # hold, silence between words
    feed(guard, 1.92)
    assert not guard.due
    guard.text()
    feed(guard, 1.92)
    assert not guard.due


def test_each_rut_in_a_row_doubles_the_wait_until_text() -> None:
    guard = RutGuard(2.0, RATE, max_after_s=6.0)
    waits = []
    for _ in range(4):
        fed = 0.0
        while not guard.due:
            feed(guard, 0.08)
            fed += 0.08
        waits.append(round(fed, 2))
        guard.fired()
    assert waits == [2.0, 4.0, 6.0, 6.0]  # music on hold is not recycled every 2 s for ever
    guard.text()
    feed(guard, 2.0)
    assert guard.due


def test_zero_turns_it_off() -> None:
    guard = RutGuard(0.0, RATE)
    feed(guard, 600.0)
    assert not guard.due
