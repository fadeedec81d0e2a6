"""Exports are pure functions of a stored transcript."""

from __future__ import annotations

import json

import pytest

from bridge.core.types import CallId, Gap, LegId, LegRole, LegSource, Segment, Timing, Word
from bridge.export import fmt_ms, render, to_json, to_txt
from storage import CallRecord, CallTranscript, LegRecord

CALL = CallId("c" * 32)
T0 = 1_790_000_000_000


def leg(leg_id: str, role: LegRole, offset_ms: int) -> LegRecord:
    return LegRecord(
        CALL,
        LegId(leg_id),
        role,
        leg_id,
        "pcmu/8000",
        LegSource.SIP,
        T0 + offset_ms,
        T0 + 60_000,
        60_000 - offset_ms,
    )


def segment(leg_id: str, seq: int, start: int, text: str, final: bool = True) -> Segment:
    words = tuple(
        Word(w, start + 300 * i, start + 300 * i + 250) for i, w in enumerate(text.split())
    )
    return Segment(CALL, LegId(leg_id), seq, start, words[-1].end_ms, text, final, words)


TRANSCRIPT = CallTranscript(
    call=CallRecord(CALL, LegSource.SIP, "Alice -> Bob", T0, T0 + 60_000, "bye", 2, 60_000, False),
    # the agent leg joined 2 s after the caller's
    legs=(leg("b", LegRole.CALLER, 0), leg("a", LegRole.AGENT, 2_000)),
    segments=(
        segment("a", 0, 500, "how can I help"),  # call time 2.5 s
        segment("b", 0, 1_000, "hello there"),  # call time 1.0 s
        segment("b", 1, 3_000, "my order", final=False),  # call time 3.0 s
    ),
    gaps=(Gap(CALL, LegId("b"), 10_000, 1_500, "ASR backlog over the buffer bound"),),
    events=(),
)


def test_json_orders_segments_on_the_call_timeline_with_roles_and_words() -> None:
    doc = json.loads(to_json(TRANSCRIPT))
    assert doc["schema"] == "call-bridge.transcript/1"
    assert doc["call"]["started_at"] == "2026-09-21T14:13:20.000+00:00"
    assert [(leg["id"], leg["offset_ms"]) for leg in doc["legs"]] == [("b", 0), ("a", 2000)]
    assert [(s["role"], s["text"]) for s in doc["segments"]] == [
        ("caller", "hello there"),
        ("agent", "how can I help"),
        ("caller", "my order"),
    ]
    assert doc["segments"][0]["words"][1] == {
        "text": "there",
        "start_ms": 1300,
        "end_ms": 1550,
        "timing": "step-clock",
    }
    assert doc["gaps"][0]["duration_ms"] == 1500


def test_json_says_how_each_segment_and_word_was_timed() -> None:
    words = (Word("hi", 500, 700, Timing.SERVER), Word("you", 700, 1_000, Timing.ARRIVAL))
    server = Segment(CALL, LegId("a"), 7, 500, 1_000, "hi you", True, words, Timing.SERVER)
    arrival = Segment(CALL, LegId("b"), 8, 4_000, 4_500, "", True, (), Timing.ARRIVAL)
    transcript = CallTranscript(
        call=TRANSCRIPT.call,
        legs=TRANSCRIPT.legs,
        segments=(*TRANSCRIPT.segments, server, arrival),
        gaps=(),
        events=(),
    )
    doc = json.loads(to_json(transcript))
    timings = {(s["leg_id"], s["seq"]): s["timing"] for s in doc["segments"]}
    assert timings == {
        ("a", 0): "step-clock",
        ("b", 0): "step-clock",
        ("b", 1): "step-clock",
        ("a", 7): "server",
        ("b", 8): "arrival",
    }
    (timed,) = [s for s in doc["segments"] if s["seq"] == 7]
    assert [(w["text"], w["timing"]) for w in timed["words"]] == [
        ("hi", "server"),
        ("you", "arrival"),
    ]
    assert all(
        w["timing"] == "step-clock" for s in doc["segments"] if s["seq"] < 7 for w in s["words"]
    )


def test_txt_is_speaker_labelled_on_the_call_timeline() -> None:
    lines = to_txt(TRANSCRIPT).splitlines()
    assert lines[0] == f"Call {CALL}  Alice -> Bob"
    assert lines[3:] == [
        "[00:01.0] caller: hello there",
        "[00:02.5] agent: how can I help",
        "[00:03.0] caller: my order …",
        "[00:10.0] caller: (not transcribed: 1500 ms, ASR backlog over the buffer bound)",
    ]


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown export format 'docx'"):
        render(TRANSCRIPT, "docx")


@pytest.mark.parametrize(
    "ms, text", [(0, "00:00.0"), (75_300, "01:15.3"), (3_725_000, "1:02:05.0")]
)
def test_fmt_ms(ms: int, text: str) -> None:
    assert fmt_ms(ms) == text
