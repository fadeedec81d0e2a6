"""Property-based fuzzing of the RTP path (sans-I/O): any datagrams, from anyone, in any order.

Whatever arrives, :class:`~bridge.sip.rtp.RtpReceiver` never raises, never hands audio over
before what it already handed over (the leg clock only moves forward), never runs ahead of the
wall clock by more than a timestamp jump allows, and :class:`~bridge.sip.rtp.SourceLatch` never
lets a stranger's packet through.  ``benchmarks/fuzz_rtp.py`` runs the same properties long.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.sip.offer import PayloadFormat
from bridge.sip.rtp import MAX_JUMP_MS, Audio, RtpReceiver, SourceLatch, StreamFormat

PCMU = StreamFormat.from_formats(
    (
        PayloadFormat(0, "PCMU", 8000),
        PayloadFormat(101, "TELEPHONE-EVENT", 8000),
        PayloadFormat(13, "CN", 8000),
    )
)
G722 = StreamFormat.from_formats((PayloadFormat(9, "G722", 8000),))
CALLER = ("192.0.2.10", 40000)
STRANGER_IPS = ("203.0.113.9", "198.51.100.7")


@st.composite
def rtp_packet(draw: st.DrawFn) -> bytes:
    """A header that parses (mostly), with hostile values, and a payload of any size."""
    first = draw(st.sampled_from([0x80, 0x80, 0x80, 0x90, 0xA0, 0x8F, 0x40, 0x00, 0xFF]))
    pt = draw(st.sampled_from([0, 0, 0, 8, 9, 13, 101, 127, 96]))
    marker = draw(st.sampled_from([0, 0x80]))
    seq = draw(st.integers(0, 0xFFFF))
    ts = draw(st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 160, 0xFFFFFF60])))
    ssrc = draw(st.sampled_from([0x1234, 0x1234, 0x1234, 0xDEADBEEF, 0]))
    payload = draw(st.binary(min_size=0, max_size=1700))
    return struct.pack("!BBHII", first, pt | marker, seq, ts, ssrc) + payload


datagram = st.one_of(rtp_packet(), rtp_packet(), st.binary(max_size=64))
arrivals = st.lists(
    st.tuples(datagram, st.floats(0.0, 0.5), st.booleans()), min_size=1, max_size=80
)


def check_stream(fmt: StreamFormat, arrivals: list[tuple[bytes, float, bool]]) -> None:
    receiver = RtpReceiver(fmt, opened_s=100.0)
    jump = MAX_JUMP_MS * receiver.rate_hz // 1000
    now, end = 100.0, 0
    for data, gap_s, poll in arrivals:
        now += gap_s
        outputs = receiver.poll(now) if poll else receiver.receive_datagram(data, now)
        wall = int((now - 100.0) * receiver.rate_hz)
        for out in outputs:
            if isinstance(out, Audio):
                assert out.position >= end, (out.position, end)  # never backwards
                assert out.position <= wall + jump + receiver.rate_hz, (out.position, wall)
                end = max(end, out.position)
        assert receiver.position >= 0
    receiver.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals)
def test_pcmu_stream_survives_anything_and_its_clock_only_moves_forward(
    arrivals: list[tuple[bytes, float, bool]],
) -> None:
    check_stream(PCMU, arrivals)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals)
def test_g722_stream_survives_anything(arrivals: list[tuple[bytes, float, bool]]) -> None:
    check_stream(G722, arrivals)


sources = st.one_of(
    st.just(CALLER),
    st.tuples(st.just(CALLER[0]), st.integers(1024, 65535)),
    st.tuples(st.sampled_from(STRANGER_IPS), st.integers(1, 65535)),
    st.tuples(st.just("192.0.2.11"), st.integers(1024, 65535)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(sources, st.floats(0.0, 2.0)), min_size=1, max_size=60))
def test_a_stranger_is_never_taken(packets: list[tuple[tuple[str, int], float]]) -> None:
    latch = SourceLatch(CALLER, lambda ip: ip == "192.0.2.11")
    now, dropped = 0.0, 0
    for source, gap_s in packets:
        now += gap_s
        taken = latch.accept(source, now)
        if source[0] in STRANGER_IPS:
            assert not taken
        if source == CALLER:
            assert taken  # the SDP's own address is always the stream's
        dropped += not taken
    assert latch.foreign_source == dropped
