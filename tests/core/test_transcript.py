"""Unit tests of the transcript assembler: words get frame times, segments finalize on rules."""

from __future__ import annotations

from bridge.core.asr_protocol import GenerationEnded, StepText
from bridge.core.transcript import SegmentPolicy, TranscriptAssembler
from bridge.core.types import CallId, LegId, Segment, Word

CHUNK = 1280  # 80 ms


def feed(asm: TranscriptAssembler, deltas: list[str], first_step: int = 0) -> list[Segment]:
    out: list[Segment] = []
    for i, text in enumerate(deltas, start=first_step):
        out += asm.receive_step(StepText(1, i, text, i * CHUNK, (i + 1) * CHUNK))
    return out


def assembler(**policy: int) -> TranscriptAssembler:
    return TranscriptAssembler(CallId("c"), LegId("l"), policy=SegmentPolicy(**policy))


def test_words_take_the_times_of_the_frames_that_carried_them() -> None:
    out = feed(assembler(), ["", " hel", "lo", "", " world"])
    assert out[-1].words == (Word("hello", 80, 240), Word("world", 320, 400))
    assert (out[-1].text, out[-1].start_ms, out[-1].end_ms, out[-1].final) == (
        "hello world",
        80,
        400,
        False,
    )


def test_partials_grow_with_the_same_seq_and_empty_steps_change_nothing() -> None:
    out = feed(assembler(), [" a", "", " b"])
    assert [(s.seq, s.text, s.final) for s in out] == [(0, "a", False), (0, "a b", False)]


def test_sentence_end_then_new_word_starts_a_new_segment() -> None:
    out = feed(assembler(), [" Hi.", " Bye"])
    assert [(s.seq, s.text, s.final) for s in out] == [
        (0, "Hi.", False),
        (0, "Hi.", True),
        (1, "Bye", False),
    ]
    assert out[2].start_ms == 80


def test_punctuation_inside_a_growing_word_is_not_a_sentence_end() -> None:
    out = feed(assembler(), [" 3.", "5", " apples"])
    assert out[-1].text == "3.5 apples" and not out[-1].final


def test_sentence_end_then_short_pause_finalizes() -> None:
    out = feed(assembler(sentence_pause_steps=2), [" Yes.", "", ""])
    assert [(s.text, s.final) for s in out] == [("Yes.", False), ("Yes.", True)]


def test_long_pause_finalizes_without_punctuation() -> None:
    out = feed(assembler(pause_steps=3), [" so", "", "", ""])
    assert out[-1].final and out[-1].text == "so"
    assert feed(assembler(pause_steps=3), [" so", "", ""])[-1].final is False


def test_segment_longer_than_the_maximum_is_cut_at_a_word() -> None:
    out = feed(assembler(max_segment_ms=150), [" one", " two", " three"])
    finals = [s for s in out if s.final]
    assert [s.text for s in finals] == ["one two"]
    assert out[-1].text == "three" and out[-1].seq == 1


def test_generation_end_finalizes_and_numbering_continues() -> None:
    asm = assembler()
    feed(asm, [" first"])
    ended = GenerationEnded(1, 0, CHUNK, 1, " first", 1, solicited=True)
    [final] = asm.receive_generation_end(ended)
    assert final.final and final.seq == 0
    assert asm.receive_generation_end(ended) == []
    assert feed(asm, [" second"], first_step=5)[0].seq == 1


def test_finish_without_text_yields_nothing() -> None:
    assert assembler().finish() == []


def test_unicode_text_is_kept() -> None:
    out = feed(assembler(), [" h", "é", "llo", " wörld €"])
    assert out[-1].text == "héllo wörld €"
    assert [w.text for w in out[-1].words] == ["héllo", "wörld", "€"]
