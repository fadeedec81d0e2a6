"""The live hub: sequence numbers, resume, coalescing, bounded slow clients, filters."""

from __future__ import annotations

import json

from bridge.core.types import Gap, LegRole
from bridge.live import LiveFilter, LiveHub

from .helpers import call, leg, seg


def types(events: list) -> list[str]:  # type: ignore[type-arg]
    return [e.type for e in events]


def test_events_have_increasing_seq_and_export_field_names() -> None:
    hub = LiveHub(clock_ms=lambda: 0)
    sub = hub.subscribe()
    hub.call_started(call(), agent="alice")
    hub.leg_started(leg())
    hub.segment(leg(), seg("hello", final=False))
    hub.segment(leg(), seg("hello there", final=True))
    hub.gap(leg(), Gap(call().call_id, leg().leg_id, 100, 200, "asr down"))
    hub.leg_ended("leg-a", 5000)
    hub.call_ended("call-1", "bye", 9000)
    events = sub.drain()
    assert [e.seq for e in events] == [1, 2, 4, 5, 6, 7]  # the partial was superseded
    assert types(events) == [
        "call.started",
        "leg.started",
        "segment.final",
        "gap",
        "leg.ended",
        "call.ended",
    ]
    final = events[2].data
    assert final["segment"]["text"] == "hello there"
    assert set(final["segment"]) == {
        "leg_id",
        "role",
        "seq",
        "start_ms",
        "end_ms",
        "text",
        "final",
        "timing",
        "words",
    }
    assert final["segment"]["role"] == "caller" and final["call_id"] == "call-1"
    assert events[0].data["call"]["agent"] == "alice"


def test_partials_of_one_segment_coalesce_and_finals_are_kept() -> None:
    hub = LiveHub()
    sub = hub.subscribe()
    hub.call_started(call())
    for i in range(50):
        hub.segment(leg(), seg("w " * (i + 1), seq=0))
        hub.segment(leg(leg_id="leg-b", role=LegRole.AGENT), seg("x " * (i + 1), leg_id="leg-b"))
    hub.segment(leg(), seg("one", seq=1, final=True))
    events = sub.drain()
    partials = [e.data["segment"] for e in events if e.type == "segment.partial"]
    assert [(p["leg_id"], p["text"].count("w") + p["text"].count("x")) for p in partials] == [
        ("leg-a", 50),
        ("leg-b", 50),
    ]
    assert sub.coalesced == 98
    assert types(events)[-1] == "segment.final"


def test_a_message_is_one_json_array_of_everything_queued() -> None:
    hub = LiveHub(clock_ms=lambda: 0, max_partials=2)
    sub = hub.subscribe()
    hub.call_started(call())
    for i in range(3):
        hub.segment(leg(), seg("w " * (i + 1)))
    hub.segment(leg(leg_id="leg-b", role=LegRole.AGENT), seg("x", leg_id="leg-b"))
    hub.segment(leg(), seg("w w w w", final=True))
    ring = {e.seq: e for e in hub.events_since(0)}
    message = sub.drain_message()
    assert message is not None and sub.pending == 0 and sub.drain_message() is None
    events = json.loads(message)
    # Oldest first; the partials of leg-a's segment were replaced by its final.
    assert [(e["seq"], e["type"]) for e in events] == [
        (1, "call.started"),
        (5, "segment.partial"),
        (6, "segment.final"),
    ]
    # The events' shared texts, joined: nothing is re-encoded per client.
    assert message == "[" + ",".join(ring[e["seq"]].text for e in events) + "]"
    # Draining freed the partial slots: two new partials fit without dropping.
    hub.segment(leg(), seg("y", seq=1))
    hub.segment(leg(leg_id="leg-b", role=LegRole.AGENT), seg("z", seq=1, leg_id="leg-b"))
    assert sub.pending == 2 and sub.dropped_partials == 0


def test_messages_are_bounded_in_order_and_what_waits_still_coalesces() -> None:
    hub = LiveHub()
    sub = hub.subscribe()
    hub.call_started(call())
    for i in range(10):
        hub.segment(leg(), seg(f"final {i}", seq=i, final=True))
    hub.segment(leg(), seg("par", seq=10))
    first = json.loads(sub.drain_message(max_events=4) or "")
    assert [e["seq"] for e in first] == [1, 2, 3, 4]
    one_text = len(next(iter(hub.events_since(4))).text)
    second = json.loads(sub.drain_message(max_chars=2 * one_text) or "")
    assert [e["seq"] for e in second] == [5]  # a second event would pass max_chars
    tiny = json.loads(sub.drain_message(max_chars=1) or "")
    assert [e["seq"] for e in tiny] == [6]  # but a message always carries one event
    # The queued partial is still replaced by its newer revision, then by its final.
    hub.segment(leg(), seg("partial", seq=10))
    hub.segment(leg(), seg("partial final", seq=10, final=True))
    rest = json.loads(sub.drain_message() or "")
    assert [e["seq"] for e in rest] == [7, 8, 9, 10, 11, 14]
    assert rest[-1]["segment"]["text"] == "partial final" and sub.coalesced == 2
    assert sub.drain_message() is None


def test_resume_replays_what_was_missed_and_resync_when_too_old() -> None:
    hub = LiveHub(ring_size=10)
    hub.call_started(call())
    for i in range(5):
        hub.segment(leg(), seg(f"s{i}", seq=i, final=True))
    sub = hub.subscribe(resume_from=3)
    assert [e.seq for e in sub.drain()] == [4, 5, 6]
    assert hub.subscribe(resume_from=6).drain() == []
    for i in range(5, 20):
        hub.segment(leg(), seg(f"s{i}", seq=i, final=True))
    late = hub.subscribe(resume_from=3).drain()
    assert types(late) == ["resync"] and late[0].data["seq"] == hub.seq
    restarted = LiveHub().subscribe(resume_from=hub.seq).drain()  # a seq from an earlier run
    assert types(restarted) == ["resync"]
    assert [e.seq for e in hub.subscribe(resume_from=hub.seq - 10).drain()] == list(
        range(hub.seq - 9, hub.seq + 1)
    )


def test_a_slow_client_is_closed_when_too_many_finals_wait_others_unaffected() -> None:
    hub = LiveHub(max_pending=20)
    slow, fast = hub.subscribe(), hub.subscribe()
    reasons = []
    slow.on_ready = lambda: reasons.append(slow.closed_reason)
    hub.call_started(call())
    for i in range(30):
        hub.segment(leg(), seg(f"s{i}", seq=i, final=True))
        assert len(fast.drain()) >= 1
    assert slow.closed_reason == "too-slow" and slow.pending == 0
    assert hub.subscribers == 1 and hub.slow_disconnects == 1
    # It resumes from what it saw and misses no final.
    resumed = hub.subscribe(resume_from=1).drain()
    assert [e.data["segment"]["seq"] for e in resumed] == list(range(30))


def test_partials_are_bounded_per_client() -> None:
    hub = LiveHub(max_partials=5)
    sub = hub.subscribe()
    for i in range(20):
        hub.segment(leg(leg_id=f"l{i}"), seg("x", leg_id=f"l{i}"))
    assert sub.pending == 5 and sub.dropped_partials == 15
    assert [e.data["segment"]["leg_id"] for e in sub.drain()] == [f"l{i}" for i in range(15, 20)]


def test_filters_by_call_and_agent() -> None:
    hub = LiveHub()
    by_call = hub.subscribe(LiveFilter(call_id="call-2"))
    by_agent = hub.subscribe(LiveFilter(agent="alice"))
    everything = hub.subscribe()
    hub.call_started(call("call-1"), agent="alice")
    hub.call_started(call("call-2"), agent="bob")
    hub.segment(leg(call_id="call-1"), seg("a", call_id="call-1", final=True))
    hub.segment(leg("leg-b", call_id="call-2"), seg("b", call_id="call-2", leg_id="leg-b"))
    assert {e.call_id for e in by_call.drain()} == {"call-2"}
    assert {e.call_id for e in by_agent.drain()} == {"call-1"}
    assert len(everything.drain()) == 4


def test_snapshot_has_latest_line_and_health_per_leg() -> None:
    now = [10_000]
    hub = LiveHub(clock_ms=lambda: now[0])
    hub.call_started(call(at=0), agent="alice")
    hub.leg_started(leg(at=0))
    hub.segment(leg(at=0), seg("hello wor", start_ms=1000))
    hub.asr_event(leg(at=0), "asr.error", "buffer_full: slow down")
    snap = hub.snapshot()
    line = snap["calls"][0]["legs"][0]
    assert line["latest"] == {"text": "hello wor", "final": False, "start_ms": 1000}
    assert line["health"]["errors"] == 1 and line["health"]["lag_ms"] == 10_000 - 1550
    assert snap["seq"] == hub.seq and hub.asr_errors == {"buffer_full": 1}
    hub.call_ended("call-1", "bye", 20_000)
    assert hub.snapshot()["calls"] == [] and hub.snapshot(LiveFilter(agent="x"))["calls"] == []
