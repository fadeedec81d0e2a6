"""Transcript exports.  Pure functions of a stored ``CallTranscript``.

JSON schema ``call-bridge.transcript/1``::

    {
      "schema": "call-bridge.transcript/1",
      "call": {"id", "source", "title", "started_at" (ISO 8601 UTC), "started_at_ms",
               "ended_at", "ended_at_ms", "end_cause", "duration_ms"},
      "legs": [{"id", "role", "label", "codec", "source", "started_at_ms", "ended_at_ms",
                "duration_ms", "offset_ms"}],
      "segments": [{"leg_id", "role", "seq", "start_ms", "end_ms", "text", "final", "timing",
                    "words": [{"text", "start_ms", "end_ms", "timing"}]}],
      "gaps": [{"leg_id", "start_ms", "duration_ms", "reason"}],
      "events": [{"leg_id", "at_ms", "kind", "detail"}]
    }

``*_at_ms`` are milliseconds since the Unix epoch.  ``start_ms``/``end_ms`` of segments, words
and gaps are on the leg clock (milliseconds of audio since the leg started); ``offset_ms`` of a
leg is when it started relative to the call, so ``offset_ms + start_ms`` orders all legs on one
call timeline (segments are listed in that order).

``timing`` says how a segment's or word's ``start_ms``/``end_ms`` were obtained
(:class:`~bridge.core.types.Timing`): ``step-clock``, the 80 ms model step that carried the
text (vLLM realtime), exact to 80 ms; ``server``, a span the ASR server stated (OpenAI
transcription dialect), several words inside it placed by character count; ``arrival``, no time
stated, the speech in the audio the bridge committed as one turn, words placed by character
count.  The
field was added within ``/1``: readers that ignore unknown fields are unaffected, and a document
without it means ``step-clock``.

Subtitles: ``vtt`` is WebVTT (https://www.w3.org/TR/webvtt1/) with one cue per segment and the
speaker's role as a voice span (``<v agent>``, §4.2.2); ``srt`` is SubRip with the role as a
``agent:`` prefix.  Both are on the call timeline, merged over all legs or for one leg (``leg``:
a leg id or a role).  :func:`iter_render` yields the document in pieces for streaming downloads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from bridge.core.types import Gap, LegInfo, Segment
from storage import CallTranscript, LegRecord

SCHEMA = "call-bridge.transcript/1"
FORMATS = ("json", "txt", "vtt", "srt")
MEDIA_TYPES = {
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
}


def iso_utc(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def leg_offsets(transcript: CallTranscript) -> dict[str, int]:
    start = transcript.call.started_at_ms
    return {leg.leg_id: max(0, leg.started_at_ms - start) for leg in transcript.legs}


def ordered_segments(transcript: CallTranscript) -> list[Segment]:
    """Segments of all legs in call-time order; simultaneous ones in leg order."""
    offsets = leg_offsets(transcript)
    order = {leg.leg_id: i for i, leg in enumerate(transcript.legs)}
    return sorted(
        transcript.segments,
        key=lambda s: (offsets.get(s.leg_id, 0) + s.start_ms, order.get(s.leg_id, 0), s.seq),
    )


# The JSON shapes of a leg, a segment and a gap: the export's, and the live API's events.


def leg_json(leg: LegInfo | LegRecord, offset_ms: int) -> dict[str, Any]:
    return {
        "id": leg.leg_id,
        "role": leg.role.value,
        "label": leg.label,
        "codec": leg.codec,
        "source": leg.source.value,
        "started_at_ms": leg.started_at_ms,
        "offset_ms": offset_ms,
    }


def segment_json(segment: Segment, role: str) -> dict[str, Any]:
    return {
        "leg_id": segment.leg_id,
        "role": role,
        "seq": segment.seq,
        "start_ms": segment.start_ms,
        "end_ms": segment.end_ms,
        "text": segment.text,
        "final": segment.final,
        "timing": segment.timing.value,
        "words": [
            {"text": w.text, "start_ms": w.start_ms, "end_ms": w.end_ms, "timing": w.timing.value}
            for w in segment.words
        ],
    }


def gap_json(gap: Gap) -> dict[str, Any]:
    return {
        "leg_id": gap.leg_id,
        "start_ms": gap.start_ms,
        "duration_ms": gap.duration_ms,
        "reason": gap.reason,
    }


def to_json(transcript: CallTranscript) -> str:
    call = transcript.call
    roles = {leg.leg_id: leg.role.value for leg in transcript.legs}
    offsets = leg_offsets(transcript)
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "call": {
            "id": call.call_id,
            "source": call.source.value,
            "title": call.title,
            "started_at": iso_utc(call.started_at_ms),
            "started_at_ms": call.started_at_ms,
            "ended_at": iso_utc(call.ended_at_ms),
            "ended_at_ms": call.ended_at_ms,
            "end_cause": call.end_cause,
            "duration_ms": call.duration_ms,
        },
        "legs": [
            {
                **leg_json(leg, offsets[leg.leg_id]),
                "ended_at_ms": leg.ended_at_ms,
                "duration_ms": leg.duration_ms,
            }
            for leg in transcript.legs
        ],
        "segments": [
            segment_json(s, roles.get(s.leg_id, "unknown")) for s in ordered_segments(transcript)
        ],
        "gaps": [gap_json(g) for g in transcript.gaps],
        "events": [
            {"leg_id": e.leg_id, "at_ms": e.at_ms, "kind": e.kind, "detail": e.detail}
            for e in transcript.events
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def to_txt(transcript: CallTranscript) -> str:
    """Speaker-labelled lines on the call timeline: ``[01:02.3] agent: text``."""
    call = transcript.call
    legs = {leg.leg_id: leg for leg in transcript.legs}
    offsets = leg_offsets(transcript)
    lines = [
        f"Call {call.call_id}  {call.title}".rstrip(),
        f"Started {iso_utc(call.started_at_ms)}"
        + (f", ended {iso_utc(call.ended_at_ms)} ({call.end_cause})" if call.ended_at_ms else ""),
        "",
    ]
    for segment in ordered_segments(transcript):
        leg = legs.get(segment.leg_id)
        speaker = leg.role.value if leg else "unknown"
        at = offsets.get(segment.leg_id, 0) + segment.start_ms
        marker = "" if segment.final else " …"
        lines.append(f"[{fmt_ms(at)}] {speaker}: {segment.text}{marker}")
    for gap in transcript.gaps:
        leg = legs.get(gap.leg_id)
        at = offsets.get(gap.leg_id, 0) + gap.start_ms
        speaker = leg.role.value if leg else "unknown"
        lines.append(
            f"[{fmt_ms(at)}] {speaker}: (not transcribed: {gap.duration_ms} ms, {gap.reason})"
        )
    return "\n".join(lines) + "\n"


def select_leg(transcript: CallTranscript, leg: str | None) -> CallTranscript:
    """Only the leg ``leg`` (its id, or its role if one leg has it); ``None``: all legs.

    Raises ValueError naming the call's legs when no leg matches.
    """
    if leg is None:
        return transcript
    chosen = [x for x in transcript.legs if x.leg_id == leg] or [
        x for x in transcript.legs if x.role.value == leg
    ]
    if not chosen:
        known = ", ".join(f"{x.leg_id} ({x.role.value})" for x in transcript.legs) or "none"
        raise ValueError(f"call {transcript.call.call_id} has no leg {leg!r}; its legs: {known}")
    ids = {x.leg_id for x in chosen}
    return CallTranscript(
        call=transcript.call,
        legs=tuple(chosen),
        segments=tuple(s for s in transcript.segments if s.leg_id in ids),
        gaps=tuple(g for g in transcript.gaps if g.leg_id in ids),
        events=tuple(e for e in transcript.events if e.leg_id is None or e.leg_id in ids),
    )


def _cues(transcript: CallTranscript) -> Iterator[tuple[int, int, str, str]]:
    """(start, end on the call timeline, role, text) of every segment with text."""
    roles = {leg.leg_id: leg.role.value for leg in transcript.legs}
    offsets = leg_offsets(transcript)
    for s in ordered_segments(transcript):
        text = " ".join(s.text.split())
        if not text:
            continue
        offset = offsets.get(s.leg_id, 0)
        start = offset + s.start_ms
        yield start, max(start + 1, offset + s.end_ms), roles.get(s.leg_id, "unknown"), text


def _clock(ms: int, sep: str) -> str:
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{sep}{millis:03d}"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def iter_vtt(transcript: CallTranscript) -> Iterator[str]:
    call = transcript.call
    title = " ".join(f"{call.title} ({call.call_id})".split()).replace("-->", "->")
    yield f"WEBVTT - {title}\n\n"
    for i, (start, end, role, text) in enumerate(_cues(transcript), 1):
        yield (
            f"{i}\n{_clock(start, '.')} --> {_clock(end, '.')}\n"
            f"<v {_vtt_escape(role)}>{_vtt_escape(text)}</v>\n\n"
        )


def iter_srt(transcript: CallTranscript) -> Iterator[str]:
    for i, (start, end, role, text) in enumerate(_cues(transcript), 1):
        yield f"{i}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{role}: {text}\n\n"


def iter_render(transcript: CallTranscript, fmt: str, *, leg: str | None = None) -> Iterator[str]:
    """The export in pieces (one per cue for subtitles), for streaming downloads.

    Raises ValueError for an unknown format or leg (before yielding anything).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    transcript = select_leg(transcript, leg)
    if fmt == "vtt":
        return iter_vtt(transcript)
    if fmt == "srt":
        return iter_srt(transcript)
    return iter([to_json(transcript) if fmt == "json" else to_txt(transcript)])


def render(transcript: CallTranscript, fmt: str, *, leg: str | None = None) -> str:
    return "".join(iter_render(transcript, fmt, leg=leg))


def fmt_ms(ms: int) -> str:
    """``75300`` -> ``01:15.3``; hours when needed."""
    seconds, tenths = divmod(ms // 100, 10)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    head = f"{hours}:{minutes:02d}" if hours else f"{minutes:02d}"
    return f"{head}:{seconds:02d}.{tenths}"
