"""One leg's OpenAI-dialect turns become segments (bridge/core/turns.py): one ``seq`` per turn,
word times from the server's segments where they spell the text, else from the turn's speech."""

from __future__ import annotations

from bridge.core.asr_events import TurnCompleted, TurnDelta, TurnSegment
from bridge.core.turns import TurnAssembler, place_words
from bridge.core.types import CallId, LegId, Timing, Word

SECOND = 16_000


def assembler() -> TurnAssembler:
    return TurnAssembler(CallId("c"), LegId("l"))


def test_words_are_placed_by_their_share_of_the_letters() -> None:
    assert place_words("I  agree", 0, SECOND, Timing.ARRIVAL) == [
        Word("I", 0, 166, Timing.ARRIVAL),
        Word("agree", 166, 1000, Timing.ARRIVAL),
    ]
    assert place_words("   ", 0, SECOND, Timing.ARRIVAL) == []


def test_a_turn_grows_as_a_partial_and_its_final_replaces_it_under_one_seq() -> None:
    a = assembler()
    [first] = a.receive(TurnDelta(1, "Good ", SECOND, 2 * SECOND))
    [second] = a.receive(TurnDelta(1, "morning", SECOND, 2 * SECOND))
    assert (first.seq, first.text, first.final) == (0, "Good", False)
    assert (second.seq, second.text, second.timing) == (0, "Good morning", Timing.ARRIVAL)
    [final] = a.receive(TurnCompleted(1, "Good morning.", SECOND, 2 * SECOND))
    assert (final.seq, final.text, final.final, final.timing) == (
        0,
        "Good morning.",
        True,
        Timing.ARRIVAL,
    )
    assert (final.start_ms, final.end_ms) == (1000, 2000)
    assert a.receive(TurnDelta(2, "", 0, 0)) == []  # an empty delta changes nothing
    assert a.finish() == []


def test_server_segments_that_spell_the_text_time_the_words() -> None:
    a = assembler()
    a.receive(TurnDelta(3, "hello there", 0, SECOND))
    a.receive(TurnSegment(3, "hello", 1600, 4800, None))
    a.receive(TurnSegment(3, "there", 8000, 12800, None))
    [final] = a.receive(TurnCompleted(3, "hello there", 0, SECOND))
    assert final.timing is Timing.SERVER
    assert final.words == (
        Word("hello", 100, 300, Timing.SERVER),
        Word("there", 500, 800, Timing.SERVER),
    )
    assert (final.start_ms, final.end_ms) == (100, 800)


def test_segments_that_disagree_with_the_final_text_are_not_trusted() -> None:
    a = assembler()
    a.receive(TurnSegment(1, "hello", 1600, 4800, None))
    [final] = a.receive(TurnCompleted(1, "yellow there", 0, SECOND))
    assert final.timing is Timing.ARRIVAL
    assert [w.timing for w in final.words] == [Timing.ARRIVAL, Timing.ARRIVAL]


def test_turns_complete_out_of_order_and_silence_shows_nothing() -> None:
    a = assembler()
    a.receive(TurnDelta(1, "first", 0, SECOND))
    a.receive(TurnDelta(2, "second", SECOND, 2 * SECOND))
    [second] = a.receive(TurnCompleted(2, "second", SECOND, 2 * SECOND))
    [first] = a.receive(TurnCompleted(1, "first", 0, SECOND))
    assert (first.seq, second.seq) == (0, 1)
    assert a.receive(TurnCompleted(3, " ", 0, SECOND)) == []  # nothing said, nothing shown
    [emptied] = [
        *a.receive(TurnDelta(4, "uh", 0, SECOND)),
        *a.receive(TurnCompleted(4, "", 0, SECOND)),
    ][1:]
    # A partial that was shown ends as an empty final over its turn: it is not left hanging.
    assert (emptied.seq, emptied.text, emptied.final, emptied.words) == (2, "", True, ())


def test_a_partial_never_completed_is_kept_as_final_when_the_leg_ends() -> None:
    a = assembler()
    a.receive(TurnDelta(1, "card ending", 0, SECOND))
    [kept] = a.finish()
    assert (kept.text, kept.final) == ("card ending", True)
