"""Value factories shared by the HTTP tests."""

from __future__ import annotations

from bridge.core.types import CallId, CallInfo, LegId, LegInfo, LegRole, LegSource, Segment, Word

T0 = 1_790_000_000_000


def call(call_id: str = "call-1", title: str = "Alice -> Bob", at: int = T0) -> CallInfo:
    return CallInfo(CallId(call_id), LegSource.SIP, at, title)


def leg(
    leg_id: str = "leg-a", call_id: str = "call-1", role: LegRole = LegRole.CALLER, at: int = T0
) -> LegInfo:
    return LegInfo(
        CallId(call_id),
        LegId(leg_id),
        role,
        f"{role.value} {leg_id}",
        "pcmu/8000",
        LegSource.SIP,
        at,
    )


def seg(
    text: str,
    seq: int = 0,
    *,
    final: bool = False,
    leg_id: str = "leg-a",
    call_id: str = "call-1",
    start_ms: int = 0,
) -> Segment:
    words = tuple(
        Word(w, start_ms + 300 * i, start_ms + 300 * i + 250) for i, w in enumerate(text.split())
    )
    end_ms = words[-1].end_ms if words else start_ms
    return Segment(CallId(call_id), LegId(leg_id), seq, start_ms, end_ms, text, final, words)
