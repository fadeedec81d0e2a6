"""WebVTT and SRT exports, parsed back with webvtt-py and srt."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import srt
import webvtt

from bridge.export import iter_render, render
from tests.unit.test_export import TRANSCRIPT


def test_vtt_has_voice_tags_on_the_call_timeline() -> None:
    text = render(TRANSCRIPT, "vtt")
    captions = webvtt.from_buffer(io.StringIO(text)).captions
    assert [(c.start, c.voice, c.text) for c in captions] == [
        ("00:00:01.000", "caller", "hello there"),
        ("00:00:02.500", "agent", "how can I help"),
        ("00:00:03.000", "caller", "my order"),
    ]
    assert all(c.end > c.start for c in captions)  # zero-padded: string order is time order


def test_srt_has_speaker_prefixes_and_one_leg_selects() -> None:
    subs = list(srt.parse(render(TRANSCRIPT, "srt")))
    assert [s.content for s in subs] == [
        "caller: hello there",
        "agent: how can I help",
        "caller: my order",
    ]
    assert subs[1].start == timedelta(seconds=2.5)
    agent_only = list(srt.parse(render(TRANSCRIPT, "srt", leg="agent")))
    assert [s.content for s in agent_only] == ["agent: how can I help"]
    by_id = list(srt.parse(render(TRANSCRIPT, "srt", leg="b")))
    assert len(by_id) == 2


def test_markup_is_escaped_in_vtt() -> None:
    from dataclasses import replace

    seg = replace(TRANSCRIPT.segments[0], text="a <b> & c")
    text = render(replace(TRANSCRIPT, segments=(seg,)), "vtt")
    assert "a &lt;b&gt; &amp; c" in text
    caption = webvtt.from_buffer(io.StringIO(text)).captions[0]
    assert caption.voice == "agent" and caption.text == "a &lt;b&gt; &amp; c"  # entities kept


def test_unknown_leg_and_format_are_clear_errors() -> None:
    with pytest.raises(
        ValueError, match="has no leg 'zz'; its legs: b \\(caller\\), a \\(agent\\)"
    ):
        render(TRANSCRIPT, "vtt", leg="zz")
    with pytest.raises(ValueError, match="expected one of json, txt, vtt, srt"):
        iter_render(TRANSCRIPT, "docx")
