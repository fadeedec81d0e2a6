"""Transcript exports.  Pure functions of a stored ``CallTranscript``.

JSON schema ``call-bridge.transcript/1``::

    {
      "schema": "call-bridge.transcript/1",
      "call": {"id", "source", "title", "started_at" (ISO 8601 UTC), "started_at_ms",
               "ended_at", "ended_at_ms", "end_cause", "duration_ms"},
      "legs": [{"id", "role", "label", "codec", "source", "started_at_ms", "ended_at_ms",
                "duration_ms", "offset_ms"}],
      "segments": [{"leg_id", "role", "seq", "start_ms", "end_ms", "text", "final",
                    "words": [{"text", "start_ms", "end_ms"}]}],
      "gaps": [{"leg_id", "start_ms", "duration_ms", "reason"}],
      "events": [{"leg_id", "at_ms", "kind", "detail"}]
    }

``*_at_ms`` are milliseconds since the Unix epoch.  ``start_ms``/``end_ms`` of segments, words
and gaps are on the leg clock (milliseconds of audio since the leg started); ``offset_ms`` of a
leg is when it started relative to the call, so ``offset_ms + start_ms`` orders all legs on one
call timeline (segments are listed in that order).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bridge.core.types import Segment
from storage import CallTranscript

SCHEMA = "call-bridge.transcript/1"
FORMATS = ("json", "txt")


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
                "id": leg.leg_id,
                "role": leg.role.value,
                "label": leg.label,
                "codec": leg.codec,
                "source": leg.source.value,
                "started_at_ms": leg.started_at_ms,
                "ended_at_ms": leg.ended_at_ms,
                "duration_ms": leg.duration_ms,
                "offset_ms": offsets[leg.leg_id],
            }
            for leg in transcript.legs
        ],
        "segments": [
            {
                "leg_id": s.leg_id,
                "role": roles.get(s.leg_id, "unknown"),
                "seq": s.seq,
                "start_ms": s.start_ms,
                "end_ms": s.end_ms,
                "text": s.text,
                "final": s.final,
                "words": [
                    {"text": w.text, "start_ms": w.start_ms, "end_ms": w.end_ms} for w in s.words
                ],
            }
            for s in ordered_segments(transcript)
        ],
        "gaps": [
            {
                "leg_id": g.leg_id,
                "start_ms": g.start_ms,
                "duration_ms": g.duration_ms,
                "reason": g.reason,
            }
            for g in transcript.gaps
        ],
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


def render(transcript: CallTranscript, fmt: str) -> str:
    if fmt == "json":
        return to_json(transcript)
    if fmt == "txt":
        return to_txt(transcript)
    raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")


def fmt_ms(ms: int) -> str:
    """``75300`` -> ``01:15.3``; hours when needed."""
    seconds, tenths = divmod(ms // 100, 10)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    head = f"{hours}:{minutes:02d}" if hours else f"{minutes:02d}"
    return f"{head}:{seconds:02d}.{tenths}"
