"""One RTP stream placed on its leg clock by RTP timestamps (bridge.sip.rtp): pure, no sockets.

Every arrival time is given explicitly (``now_s``); positions are leg samples since ``opened_s``.
"""

from __future__ import annotations

import struct

import pytest

from bridge.sip.offer import PayloadFormat
from bridge.sip.rtp import (
    EVENT_SLACK_MS,
    MAX_JUMP_MS,
    MAX_PACKET_MS,
    RELATCH_MS,
    STALL_MS,
    Audio,
    Digit,
    RtpReceiver,
    SourceLatch,
    StreamFormat,
)

PCMU_FORMATS = (
    PayloadFormat(0, "PCMU", 8000),
    PayloadFormat(101, "TELEPHONE-EVENT", 8000),
    PayloadFormat(13, "CN", 8000),
)
PCMU = StreamFormat.from_formats(PCMU_FORMATS)
G722 = StreamFormat.from_formats(
    (PayloadFormat(9, "G722", 8000), PayloadFormat(101, "TELEPHONE-EVENT", 8000))
)
OPENED = 10.0
SSRC = 0x1234ABCD
OTHER_SSRC = 0x0BADCAFE
FRAME = b"\xff" * 160  # 20 ms of PCMU (or of G.722: 320 samples)
COUNTERS = ("packets", "invalid", "foreign", "late", "lost", "reanchors", "stalls")


def rtp(
    seq: int,
    ts: int,
    payload: bytes = FRAME,
    *,
    pt: int = 0,
    ssrc: int = SSRC,
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    extension: bytes | None = None,
    padding: int = 0,
    version: int = 2,
) -> bytes:
    """An RTP packet (RFC 3550 §5.1): V, P, X, CC | M, PT | seq | ts | SSRC | CSRCs, then the
    §5.3.1 extension (16-bit profile data, 16-bit length in 32-bit words), the payload, and
    ``padding`` octets whose last one counts them, itself included."""
    assert len(extension or b"") % 4 == 0
    first = version << 6 | (0x20 if padding else 0) | (0x10 if extension is not None else 0)
    header = struct.pack(
        "!BBHII",
        first | len(csrcs),
        (0x80 if marker else 0) | pt,
        seq & 0xFFFF,
        ts & 0xFFFFFFFF,
        ssrc,
    )
    header += b"".join(struct.pack("!I", csrc) for csrc in csrcs)
    if extension is not None:
        header += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    tail = bytes(padding - 1) + bytes([padding]) if padding else b""
    return header + payload + tail


def dtmf(
    seq: int, ts: int, code: int, duration: int, *, end: bool = False, marker: bool = False
) -> bytes:
    """An RFC 4733 §2.3 telephone-event packet: event, E|R|volume, 16-bit duration."""
    payload = struct.pack("!BBH", code, (0x80 if end else 0) | 10, duration)
    return rtp(seq, ts, payload, pt=101, marker=marker)


def counts(**nonzero: int) -> dict[str, int]:
    """All the receiver's counters, zero unless named."""
    assert set(nonzero) <= set(COUNTERS), nonzero
    return {name: nonzero.get(name, 0) for name in COUNTERS}


def counters(receiver: RtpReceiver) -> dict[str, int]:
    return {name: getattr(receiver, name) for name in COUNTERS}


def audio(position: int, payload: bytes = FRAME, encoding: str = "PCMU") -> Audio:
    return Audio(position, payload, encoding)


def receiver(fmt: StreamFormat = PCMU) -> RtpReceiver:
    return RtpReceiver(fmt, opened_s=OPENED)


def flowing() -> RtpReceiver:
    """Two packets at 10.5 s (a burst: the wall clock says the stream is at 4320 then)."""
    r = receiver()
    assert r.receive_datagram(rtp(1, 1000), 10.5) == [audio(4000)]
    assert r.receive_datagram(rtp(2, 1160), 10.5) == [audio(4160)]
    return r


# -- header parsing (RFC 3550 §5.1, §5.3.1) ---------------------------------------------------


def test_csrcs_extension_and_padding_are_not_payload() -> None:
    """RFC 3550 §5.1: "The last octet of the padding contains a count of how many padding
    octets should be ignored, including itself"; the CSRC list and the §5.3.1 extension
    precede the payload."""
    r = receiver()
    payload = bytes(range(160))
    packet = rtp(
        1, 1000, payload, csrcs=(1, 2), extension=b"\x01\x02\x03\x04" * 2, padding=3, marker=True
    )
    assert len(packet) == 12 + 8 + 4 + 8 + 160 + 3
    assert r.receive_datagram(packet, 10.5) == [audio(4000, payload)]
    assert counters(r) == counts(packets=1)
    assert r.last_packet_s == 10.5


def test_a_whole_packet_of_padding_but_one_octet_still_parses() -> None:
    r = receiver()
    assert r.receive_datagram(rtp(1, 1000, b"\x7f", padding=255), 10.5) == [audio(4000, b"\x7f")]
    assert counters(r) == counts(packets=1)


NOT_RTP = [
    (rtp(1, 1000, version=1), "version 1"),
    (rtp(1, 1000, version=0), "version 0"),
    (rtp(1, 1000, version=3), "version 3"),
    (b"", "empty datagram"),
    (rtp(1, 1000)[:11], "11 of the 12 header octets"),
    (rtp(1, 1000, b"", csrcs=(1, 2, 3))[:20], "a CSRC list cut short"),
    (bytes([0x90]) + rtp(1, 1000, b"")[1:], "X set, the extension header missing"),
    (rtp(1, 1000, b"", extension=b"\x00" * 8)[:18], "an extension cut short"),
    (rtp(1, 1000, padding=200)[:12] + b"\x00" * 50 + bytes([200]), "padding over the packet"),
    (rtp(1, 1000, b"\xaa", padding=1)[:-1] + b"\x00", "a padding count of 0"),
]


@pytest.mark.parametrize(("packet", "why"), NOT_RTP, ids=[why for _, why in NOT_RTP])
def test_what_is_not_a_whole_rtp_packet_is_invalid(packet: bytes, why: str) -> None:
    """RFC 3550 A.1: version 2, the header, CSRCs and extension within the packet, and "If the
    P bit is set, then the last octet of the packet must contain a valid octet count"."""
    r = receiver()
    assert r.receive_datagram(packet, 10.5) == [], why
    assert counters(r) == counts(invalid=1)
    assert r.last_packet_s is None
    # Nothing was anchored: the first good packet still anchors at the wall clock (6000),
    # rounded up to a whole 20 ms frame.
    assert r.receive_datagram(rtp(1, 1000), 10.75) == [audio(6080)]


# -- anchoring and placement by timestamp ------------------------------------------------------


def test_the_first_packet_anchors_at_the_wall_clock_since_opened() -> None:
    """Opened at 10.0 s, first packet at 10.5 s: 0.5 s * 8000 Hz = sample 4000."""
    r = receiver()
    assert r.receive_datagram(rtp(7, 123456), 10.5) == [audio(4000)]
    assert r.receive_datagram(rtp(8, 123456 + 160), 10.52) == [audio(4160)]


def test_a_packet_at_opening_is_sample_zero() -> None:
    assert receiver().receive_datagram(rtp(1, 99), OPENED) == [audio(0)]


def test_arrival_jitter_does_not_move_timestamps_places() -> None:
    """RFC 3550 §5.1: the timestamp is "the sampling instant of the first octet"; a packet read
    late or a burst keeps its place, 160 samples per 20 ms packet."""
    r = receiver()
    out: list[Audio | Digit] = []
    for seq, now_s in [(1, 10.5), (2, 10.6), (3, 10.6), (4, 10.6), (5, 10.61), (6, 10.7)]:
        payload = bytes([seq]) * 160
        out += r.receive_datagram(rtp(seq, 1000 + 160 * (seq - 1), payload), now_s)
    assert out == [audio(4000 + 160 * k, bytes([k + 1]) * 160) for k in range(6)]
    assert counters(r) == counts(packets=6)
    assert r.last_packet_s == 10.7


def test_a_lost_packet_leaves_a_gap_and_is_counted() -> None:
    r = receiver()
    assert r.receive_datagram(rtp(1, 1000), 10.5) == [audio(4000)]
    assert r.receive_datagram(rtp(3, 1320), 10.54) == [audio(4320)]  # seq 2 lost
    assert counters(r) == counts(packets=2, lost=1)
    assert r.receive_datagram(rtp(7, 1960), 10.62) == [audio(4960)]  # seq 4-6 lost
    assert counters(r) == counts(packets=3, lost=4)


def test_a_reordered_packet_whose_time_was_handed_over_is_late() -> None:
    """No reordering buffer: seq 2 after seq 3 is dropped (its samples lie before 4480)."""
    r = receiver()
    assert r.receive_datagram(rtp(1, 1000), 10.5) == [audio(4000)]
    assert r.receive_datagram(rtp(3, 1320), 10.54) == [audio(4320)]
    assert r.receive_datagram(rtp(2, 1160), 10.55) == []
    # seq 2 counts in both: skipped when seq 3 came, and its audio was never used.
    assert counters(r) == counts(packets=2, lost=1, late=1)
    assert r.last_packet_s == 10.54
    assert r.receive_datagram(rtp(4, 1480), 10.56) == [audio(4480)]
    assert counters(r) == counts(packets=3, lost=1, late=1)


def test_a_duplicate_is_late() -> None:
    r = flowing()
    assert r.receive_datagram(rtp(2, 1160), 10.52) == []
    assert r.receive_datagram(rtp(1, 1000), 10.53) == []
    assert counters(r) == counts(packets=2, late=2)
    assert r.receive_datagram(rtp(3, 1320), 10.54) == [audio(4320)]


def test_a_clock_slip_after_a_stall_reanchors_on_a_whole_frame() -> None:
    """After a stall fill (unaligned: wall - STALL_MS), a packet whose place was handed over
    starts a new anchor at the next whole 20 ms frame, so chunks stay packet-aligned."""
    r = flowing()
    [stall] = r.poll(10.78125)  # 4320 + 2250 - 1600 = 4970
    assert stall.position == 4970
    assert r.receive_datagram(rtp(3, 1320), 10.8) == [audio(5120)]  # 32 frames of 160
    assert counters(r) == counts(packets=3, reanchors=1, stalls=1)


def test_a_timestamp_jump_reanchors_at_the_wall_clock() -> None:
    """Two seconds ahead of where the wall clock puts the stream (4320 + 0.25 s = 6320): the
    packet is "now" (rounded up to a whole 20 ms frame: 6400), nothing is dropped."""
    r = flowing()
    assert r.receive_datagram(rtp(3, 1320 + 16000), 10.75) == [audio(6400)]
    assert counters(r) == counts(packets=3, reanchors=1)
    assert r.receive_datagram(rtp(4, 1480 + 16000), 10.76) == [audio(6560)]
    assert counters(r) == counts(packets=4, reanchors=1)


def test_a_gap_of_exactly_max_jump_is_no_jump() -> None:
    r = flowing()
    ahead = MAX_JUMP_MS * 8  # samples at 8 kHz
    assert r.receive_datagram(rtp(3, 1320 + ahead), 10.5) == [audio(4320 + ahead)]
    assert counters(r) == counts(packets=3)
    r = flowing()
    assert r.receive_datagram(rtp(3, 1320 + ahead + 1), 10.5) == [audio(4320)]
    assert counters(r) == counts(packets=3, reanchors=1)


def test_an_old_sequence_number_far_ahead_is_late_not_a_jump() -> None:
    r = flowing()
    assert r.receive_datagram(rtp(1, 1000 + 16000), 10.75) == []
    assert counters(r) == counts(packets=2, late=1)


def test_a_clock_stepped_back_reanchors_after_what_was_handed_over() -> None:
    """In sequence but 500 ticks before the previous packet: placed right after it (4320)."""
    r = flowing()
    assert r.receive_datagram(rtp(3, 660), 10.54) == [audio(4320)]
    assert r.receive_datagram(rtp(4, 820), 10.56) == [audio(4480)]
    assert counters(r) == counts(packets=4, reanchors=1)


def test_a_clock_restart_after_a_loss_is_not_dropped() -> None:
    """Rule 3: a packet that lands in the past starts a new anchor; only an *older* sequence
    number is late (rule 4).  seq 3 was lost as the sender's clock restarted at 0."""
    r = flowing()
    assert r.receive_datagram(rtp(4, 160), 10.56) == [audio(4320)]
    assert r.receive_datagram(rtp(5, 320), 10.58) == [audio(4480)]
    assert counters(r) == counts(packets=4, lost=1, reanchors=1)


def test_a_packet_overlapping_the_handed_over_end_keeps_its_place() -> None:
    """Only a packet wholly before the end is re-anchored; the leg drops an overlap."""
    r = flowing()
    assert r.receive_datagram(rtp(3, 1160 + 80), 10.54) == [audio(4240)]
    assert counters(r) == counts(packets=3)


# -- a new SSRC (RFC 3550 §8.2, probation of A.1) -----------------------------------------------


@pytest.mark.parametrize(("now_s", "position"), [(10.5, 4320), (10.75, 6400)])
def test_a_new_ssrc_is_taken_on_its_second_packet(now_s: float, position: int) -> None:
    """Anchored at "now" (at 10.75 s: 6320, a whole frame up: 6400) but never before what was
    handed over (4320)."""
    r = flowing()
    assert r.receive_datagram(rtp(500, 90000, b"\x01" * 160, ssrc=OTHER_SSRC), now_s) == []
    assert counters(r) == counts(packets=2)
    assert r.receive_datagram(rtp(501, 90160, b"\x02" * 160, ssrc=OTHER_SSRC), now_s) == [
        audio(position, b"\x01" * 160),
        audio(position + 160, b"\x02" * 160),
    ]
    assert counters(r) == counts(packets=4, reanchors=1)
    assert r.receive_datagram(rtp(502, 90320, ssrc=OTHER_SSRC), now_s + 0.02) == [
        audio(position + 320)
    ]
    # The old stream is now the stranger.
    assert r.receive_datagram(rtp(3, 1320), now_s + 0.03) == []
    assert counters(r) == counts(packets=5, reanchors=1)


def test_a_stray_packet_of_another_ssrc_is_ignored() -> None:
    r = flowing()
    assert r.receive_datagram(rtp(9, 777, ssrc=OTHER_SSRC), 10.52) == []
    assert r.receive_datagram(rtp(3, 1320), 10.54) == [audio(4320)]
    assert r.receive_datagram(rtp(4, 1480), 10.56) == [audio(4480)]
    assert counters(r) == counts(packets=4)


def test_a_new_ssrc_out_of_sequence_restarts_its_probation() -> None:
    r = flowing()
    assert r.receive_datagram(rtp(9, 777, ssrc=OTHER_SSRC), 10.5) == []
    assert r.receive_datagram(rtp(11, 1097, ssrc=OTHER_SSRC), 10.5) == []
    assert counters(r) == counts(packets=2)
    assert r.receive_datagram(rtp(12, 1257, ssrc=OTHER_SSRC), 10.5) == [
        audio(4320),
        audio(4480),
    ]
    assert counters(r) == counts(packets=4, reanchors=1)


def test_a_new_ssrc_closes_an_open_digit() -> None:
    r = flowing()
    assert r.receive_datagram(dtmf(3, 1320, 4, 160, marker=True), 10.5) == []
    assert r.receive_datagram(rtp(1, 5000, ssrc=OTHER_SSRC), 10.5) == []
    assert r.receive_datagram(rtp(2, 5160, ssrc=OTHER_SSRC), 10.5) == [
        Digit("4", 4320, 0),
        audio(4320),
        audio(4480),
    ]
    assert r.close() == []


# -- what is not audio -------------------------------------------------------------------------


def test_a_payload_type_not_in_the_answer_is_foreign() -> None:
    r = receiver()
    assert r.receive_datagram(rtp(1, 1000, pt=8), 10.5) == []  # PCMA, not negotiated
    assert r.receive_datagram(rtp(2, 1160, pt=96), 10.52) == []
    assert counters(r) == counts(foreign=2)
    assert r.receive_datagram(rtp(3, 1320), 10.75) == [audio(6080)]  # 6000, a whole frame up


def test_comfort_noise_is_ignored_silently() -> None:
    """RFC 3389: the gap until the next packet is silence on the leg anyway."""
    r = flowing()
    assert r.receive_datagram(rtp(3, 1320, b"\x40", pt=13, marker=True), 10.54) == []
    assert counters(r) == counts(packets=2)
    assert r.last_packet_s == 10.5
    assert r.receive_datagram(rtp(4, 1320 + 1600), 10.74) == [audio(4320 + 1600)]
    assert counters(r) == counts(packets=3)  # seq 3 was seen: not lost
    assert r.receive_datagram(rtp(6, 1320 + 1600, b"\x40", pt=13), 10.76) == []
    assert counters(r) == counts(packets=3, lost=1)  # seq 5 was not
    assert r.receive_datagram(rtp(1, 0, b"\x40", pt=13, ssrc=OTHER_SSRC), 10.77) == []
    assert r.receive_datagram(rtp(7, 1320 + 3200), 10.94) == [audio(4320 + 3200)]
    assert counters(r) == counts(packets=4, lost=1)


def test_an_empty_audio_payload_is_invalid() -> None:
    r = receiver()
    assert r.receive_datagram(rtp(1, 1000, b""), 10.5) == []
    assert r.receive_datagram(rtp(2, 1000, b"\x01", padding=1)[:-2] + b"\x01", 10.5) == []
    assert counters(r) == counts(invalid=2)


def test_a_payload_over_max_packet_ms_is_invalid() -> None:
    r = receiver()
    longest = MAX_PACKET_MS * 8  # bytes of PCMU
    assert r.receive_datagram(rtp(1, 1000, b"\x01" * (longest + 1)), 10.5) == []
    assert counters(r) == counts(invalid=1)
    assert r.receive_datagram(rtp(2, 1000, b"\x01" * longest), 10.5) == [
        audio(4000, b"\x01" * longest)
    ]
    assert counters(r) == counts(invalid=1, packets=1)


def test_an_event_shorter_than_its_4_octets_is_invalid() -> None:
    r = receiver()
    assert r.receive_datagram(rtp(1, 1000, b"\x05\x8a\x03", pt=101), 10.5) == []
    assert counters(r) == counts(invalid=1)
    assert r.close() == []


# -- poll: the leg clock moves on without packets ----------------------------------------------


def stalled() -> RtpReceiver:
    """Packets to 4480 (the last at 10.75 s), then silence: polled at 11.0 and 11.25 s."""
    r = receiver()
    assert r.receive_datagram(rtp(1, 1000), 10.5) == [audio(4000)]
    assert r.poll(10.5) == []
    assert r.receive_datagram(rtp(2, 1160), 10.52) == [audio(4160)]
    assert r.poll(10.52) == []
    assert r.receive_datagram(rtp(3, 1320), 10.75) == [audio(4320)]  # read late
    assert r.poll(10.75) == []
    assert r.poll(10.875) == []
    assert r.poll(10.95) == []  # STALL_MS exactly: not longer
    # 0.25 s after the last packet's end: 4480 + 2000 - 1600.
    assert r.poll(11.0) == [Audio(4880, b"", "")]
    assert counters(r) == counts(packets=3, stalls=1)
    assert r.poll(11.0) == []
    assert r.poll(11.25) == [Audio(6880, b"", "")]
    assert counters(r) == counts(packets=3, stalls=2)
    return r


def test_poll_moves_the_clock_on_after_stall_ms_of_silence() -> None:
    assert STALL_MS == 200
    stalled()


def test_position_at_is_the_wall_clock_past_what_was_handed_over() -> None:
    r = flowing()
    assert r.position == 4320
    assert r.position_at(10.5) == 4320
    assert r.position_at(10.625) == 4320 + 1000
    assert r.poll(10.75) == [Audio(4320 + 2000 - STALL_MS * 8, b"", "")]
    assert r.position_at(10.75) == 4320 + 2000


def test_poll_before_any_packet_moves_the_clock_on() -> None:
    r = receiver()
    assert r.poll(10.125) == []
    assert r.poll(10.5) == [Audio(4000 - 1600, b"", "")]
    assert r.receive_datagram(rtp(1, 1000), 10.5) == [audio(4000)]
    assert counters(r) == counts(packets=1, stalls=1)


def test_a_stall_ms_of_the_receivers_own() -> None:
    r = RtpReceiver(PCMU, opened_s=OPENED, stall_ms=50)
    assert r.receive_datagram(rtp(1, 1000), 10.5) == [audio(4000)]
    assert r.poll(10.625) == [Audio(4160 + 1000 - 400, b"", "")]


def test_after_a_stall_a_packet_at_its_place_beyond_the_stall_keeps_it() -> None:
    """Silence suppression: the sender's timestamps moved on with the pause (0.75 s)."""
    r = stalled()
    assert r.receive_datagram(rtp(4, 1480 + 6000), 11.5) == [audio(4480 + 6000)]
    assert counters(r) == counts(packets=4, stalls=2)
    assert r.poll(11.5) == []


def test_after_a_stall_a_packet_whose_place_was_handed_over_follows_the_stall() -> None:
    """Hold: the sender's timestamps resumed where they stopped (4480 < 6880)."""
    r = stalled()
    assert r.receive_datagram(rtp(4, 1480), 11.5) == [audio(6880)]
    assert r.receive_datagram(rtp(5, 1640), 11.52) == [audio(7040)]
    assert counters(r) == counts(packets=5, stalls=2, reanchors=1)


def test_after_a_stall_a_lost_first_packet_does_not_drop_the_rest() -> None:
    """As above with seq 4 lost: seq 5 is newer, so it is re-anchored, not late (rule 4)."""
    r = stalled()
    assert r.receive_datagram(rtp(5, 1640), 11.5) == [audio(6880)]
    assert r.receive_datagram(rtp(6, 1800), 11.52) == [audio(7040)]
    assert counters(r) == counts(packets=5, stalls=2, reanchors=1, lost=1)


def test_after_a_stall_a_reordered_packet_is_still_late() -> None:
    r = stalled()
    assert r.receive_datagram(rtp(2, 1160), 11.5) == []
    assert counters(r) == counts(packets=3, stalls=2, late=1)


# -- RFC 4733 telephone events -----------------------------------------------------------------


def test_a_digit_is_handed_over_once_at_its_start() -> None:
    """RFC 4733 §2.5.1: every packet of an event carries its start timestamp and the duration so
    far; the E bit marks the last, "sent a total of three times" (§2.5.1.4)."""
    r = flowing()
    packets = [
        dtmf(3, 1320, 5, 160, marker=True),
        dtmf(4, 1320, 5, 320),
        dtmf(5, 1320, 5, 480),
        dtmf(6, 1320, 5, 800, end=True),
        dtmf(7, 1320, 5, 800, end=True),
        dtmf(8, 1320, 5, 800, end=True),
    ]
    out: list[Audio | Digit] = []
    for k, packet in enumerate(packets):
        out += r.receive_datagram(packet, 10.54 + 0.02 * k)
    assert out == [Digit("5", 4320, 100)]  # 800 ticks at 8 kHz
    assert counters(r) == counts(packets=8)
    assert r.close() == []
    # The audio after the digit goes on at its own timestamps.
    assert r.receive_datagram(rtp(9, 1320 + 800), 10.7) == [audio(4320 + 800)]


def test_a_digit_stamped_far_from_its_arrival_is_placed_by_its_arrival() -> None:
    """A replayed event (sipp's dtmf_2833_*.pcap) carries a timestamp unrelated to the audio:
    here 1 s after the audio's clock although it arrives 100 ms after the last packet.  It is
    placed where it arrived, less the duration its first packet reports."""
    r = flowing()
    late_stamp = 1320 + 8000
    assert r.receive_datagram(dtmf(3, late_stamp, 4, 160, marker=True), 10.625) == []
    assert r.receive_datagram(dtmf(4, late_stamp, 4, 800, end=True), 10.75) == [
        Digit("4", 4320 + 1000 - 160, 100)  # 10.625 s is 1000 samples past the audio's end
    ]
    # Within EVENT_SLACK_MS the timestamp is kept.
    slack = EVENT_SLACK_MS * 8
    assert r.receive_datagram(dtmf(5, 1320 + 3000 + slack, 7, 0, end=True), 10.875) == [
        Digit("7", 4320 + 3000 + slack, 0)
    ]


def test_a_lone_end_packet_is_a_digit() -> None:
    r = flowing()
    assert r.receive_datagram(dtmf(3, 1320, 11, 400, end=True), 10.6) == [Digit("#", 4320, 50)]


@pytest.mark.parametrize(("code", "digit"), list(enumerate("0123456789*#ABCD")))
def test_events_0_to_15_are_the_dtmf_digits(code: int, digit: str) -> None:
    """RFC 4733 §3.2 table 7."""
    r = flowing()
    assert r.receive_datagram(dtmf(3, 1320, code, 160, end=True), 10.6) == [Digit(digit, 4320, 20)]


def test_a_new_event_before_the_end_hands_the_open_one_over_without_duration() -> None:
    r = flowing()
    assert r.receive_datagram(dtmf(3, 1320, 1, 160, marker=True), 10.54) == []
    assert r.receive_datagram(dtmf(4, 1320, 1, 320), 10.56) == []
    assert r.receive_datagram(dtmf(5, 2000, 2, 160, marker=True), 10.64) == [Digit("1", 4320, 0)]
    assert r.receive_datagram(dtmf(6, 2000, 2, 480, end=True), 10.68) == [Digit("2", 5000, 60)]
    # A late update of the first digit does not bring it back.
    assert r.receive_datagram(dtmf(7, 1320, 1, 480), 10.7) == []
    assert r.close() == []


def test_a_repeated_end_after_the_next_event_began_does_not_cut_it_short() -> None:
    """§2.5.1.4's third end packet of '5' reordered after '7' began: '7' still gets its end."""
    r = flowing()
    assert r.receive_datagram(dtmf(3, 1320, 5, 800, end=True), 10.6) == [Digit("5", 4320, 100)]
    assert r.receive_datagram(dtmf(4, 1320, 5, 800, end=True), 10.62) == []
    assert r.receive_datagram(dtmf(6, 2400, 7, 160, marker=True), 10.7) == []
    assert r.receive_datagram(dtmf(5, 1320, 5, 800, end=True), 10.71) == []
    assert r.receive_datagram(dtmf(7, 2400, 7, 640, end=True), 10.76) == [Digit("7", 5400, 80)]
    assert r.close() == []


def test_close_hands_over_an_open_digit_without_duration() -> None:
    r = flowing()
    assert r.receive_datagram(dtmf(3, 1320, 9, 160, marker=True), 10.54) == []
    assert r.receive_datagram(dtmf(4, 1320, 9, 320), 10.56) == []
    assert r.close() == [Digit("9", 4320, 0)]
    assert r.close() == []
    # Its end packet after all: handed over already.
    assert r.receive_datagram(dtmf(5, 1320, 9, 480, end=True), 10.58) == []


def test_events_from_16_on_are_ignored() -> None:
    """RFC 4733 §3.2: 16 is flash; tones (RFC 4734) are no digits."""
    r = flowing()
    assert r.receive_datagram(dtmf(3, 1320, 16, 160, marker=True), 10.54) == []
    assert r.receive_datagram(dtmf(4, 1320, 16, 800, end=True), 10.56) == []
    assert r.receive_datagram(dtmf(5, 2000, 255, 800, end=True), 10.58) == []
    assert r.close() == []
    assert counters(r) == counts(packets=5)


def test_a_flash_after_a_digit_began_hands_the_digit_over() -> None:
    r = flowing()
    assert r.receive_datagram(dtmf(3, 1320, 0, 160, marker=True), 10.54) == []
    assert r.receive_datagram(dtmf(4, 2000, 16, 160, marker=True), 10.6) == [Digit("0", 4320, 0)]
    assert r.close() == []


def test_a_digit_is_timed_by_the_events_clock() -> None:
    fmt = StreamFormat.from_formats(
        (PayloadFormat(0, "PCMU", 8000), PayloadFormat(101, "TELEPHONE-EVENT", 16000))
    )
    assert fmt.events == 101 and fmt.events_clock_hz == 16000
    r = receiver(fmt)
    assert r.receive_datagram(rtp(1, 1000), 10.5) == [audio(4000)]
    assert r.receive_datagram(dtmf(2, 1160, 3, 1600, end=True), 10.6) == [Digit("3", 4160, 100)]


def test_a_digit_as_the_first_packet_anchors_the_stream() -> None:
    r = receiver()
    assert r.receive_datagram(dtmf(1, 1000, 8, 160, marker=True), 10.5) == []
    assert r.receive_datagram(dtmf(2, 1000, 8, 400, end=True), 10.55) == [Digit("8", 4000, 50)]
    assert r.receive_datagram(rtp(3, 1400), 10.55) == [audio(4400)]
    assert counters(r) == counts(packets=3)


# -- wrap-around (RFC 3550 §5.1: both start random and wrap) -----------------------------------


def test_sequence_numbers_wrap() -> None:
    r = receiver()
    out: list[Audio | Digit] = []
    for k, seq in enumerate([65534, 65535, 0, 1]):
        out += r.receive_datagram(rtp(seq, 1000 + 160 * k), 10.5 + 0.02 * k)
    assert out == [audio(4000 + 160 * k) for k in range(4)]
    assert counters(r) == counts(packets=4)
    assert r.receive_datagram(rtp(65535, 1160), 10.6) == []  # before the wrap: old
    assert r.receive_datagram(rtp(3, 1000 + 160 * 5), 10.62) == [audio(4800)]
    assert counters(r) == counts(packets=5, late=1, lost=1)


def test_a_loss_across_the_sequence_wrap_is_counted() -> None:
    r = receiver()
    assert r.receive_datagram(rtp(65535, 1000), 10.5) == [audio(4000)]
    assert r.receive_datagram(rtp(1, 1320), 10.54) == [audio(4320)]
    assert counters(r) == counts(packets=2, lost=1)


def test_timestamps_wrap() -> None:
    r = receiver()
    start = 0xFFFFFFF0
    out: list[Audio | Digit] = []
    for k in range(4):
        out += r.receive_datagram(rtp(k + 1, (start + 160 * k) & 0xFFFFFFFF), 10.5 + 0.02 * k)
    assert rtp(2, start + 160)[4:8] == struct.pack("!I", 144)
    assert out == [audio(4000 + 160 * k) for k in range(4)]
    assert counters(r) == counts(packets=4)
    # A packet from before the wrap is still recognised as old.
    assert r.receive_datagram(rtp(1, start), 10.6) == []
    assert counters(r) == counts(packets=4, late=1)


def test_a_digit_across_the_timestamp_wrap() -> None:
    r = receiver()
    assert r.receive_datagram(rtp(1, 0xFFFFFF00), 10.5) == [audio(4000)]
    assert r.receive_datagram(dtmf(2, 0x60, 6, 320, end=True), 10.52) == [
        Digit("6", 4000 + 0x100 + 0x60, 40)
    ]


# -- G.722: 16 kHz samples on an 8 kHz RTP clock (RFC 3551 §4.5.2) ----------------------------


def test_g722_positions_are_two_samples_per_tick() -> None:
    r = receiver(G722)
    assert r.rate_hz == 16000
    assert r.receive_datagram(rtp(1, 1000, pt=9), 10.5) == [audio(8000, encoding="G722")]
    assert r.receive_datagram(rtp(2, 1160, pt=9), 10.5) == [audio(8320, encoding="G722")]
    assert r.receive_datagram(rtp(4, 1480, pt=9), 10.5) == [audio(8960, encoding="G722")]
    assert counters(r) == counts(packets=3, lost=1)
    # 160 bytes are 320 samples: the stall counts from 9280, 0.25 s later, at 16 kHz.
    assert r.poll(10.75) == [Audio(9280 + 4000 - 3200, b"", "")]


def test_g722_a_digit_at_its_tick_and_its_duration_in_ms() -> None:
    r = receiver(G722)
    assert r.receive_datagram(rtp(1, 1000, pt=9), 10.5) == [audio(8000, encoding="G722")]
    assert r.receive_datagram(dtmf(2, 1160, 2, 800, end=True), 10.6) == [Digit("2", 8320, 100)]


def test_g722_a_jump_and_the_longest_payload() -> None:
    r = receiver(G722)
    assert r.receive_datagram(rtp(1, 1000, pt=9), 10.5) == [audio(8000, encoding="G722")]
    # MAX_JUMP_MS is 8000 ticks ahead: no jump; one tick more is.
    ahead = MAX_JUMP_MS * 8
    assert r.receive_datagram(rtp(2, 1160 + ahead, pt=9), 10.5) == [
        audio(8320 + 2 * ahead, encoding="G722")
    ]
    assert r.receive_datagram(rtp(3, 1320 + 2 * ahead + 1, pt=9), 10.5) == [
        audio(8640 + 2 * ahead, encoding="G722")
    ]
    assert counters(r) == counts(packets=3, reanchors=1)
    longest = MAX_PACKET_MS * 16 // 2  # bytes: 2 samples each
    assert r.receive_datagram(rtp(4, 0, b"\x00" * (longest + 1), pt=9), 10.5) == []
    assert counters(r) == counts(packets=3, reanchors=1, invalid=1)
    [placed] = r.receive_datagram(rtp(4, 1480 + 2 * ahead + 1, b"\x00" * longest, pt=9), 10.5)
    assert placed == audio(8960 + 2 * ahead, b"\x00" * longest, "G722")


# -- StreamFormat --------------------------------------------------------------------------------


def test_stream_format_from_an_answer() -> None:
    assert PCMU.audio == {0: PayloadFormat(0, "PCMU", 8000)}
    assert (PCMU.events, PCMU.events_clock_hz, PCMU.comfort_noise) == (101, 8000, frozenset({13}))
    assert PCMU.sample_rate_hz == 8000
    assert G722.sample_rate_hz == 16000
    both = StreamFormat.from_formats((PayloadFormat(8, "PCMA", 8000), PCMU_FORMATS[0]))
    assert set(both.audio) == {0, 8} and both.sample_rate_hz == 8000
    assert both.events is None and both.comfort_noise == frozenset()


@pytest.mark.parametrize(
    ("formats", "message"),
    [
        ((), r"no PCMU, PCMA or G722 in the answer \(no formats\)"),
        (
            (PayloadFormat(3, "GSM", 8000), PayloadFormat(101, "TELEPHONE-EVENT", 8000)),
            r"no PCMU, PCMA or G722 in the answer \(GSM, TELEPHONE-EVENT\)",
        ),
        ((PayloadFormat(9, "G722", 8000), PayloadFormat(0, "PCMU", 8000)), "G722 and G.711"),
        ((PayloadFormat(8, "PCMA", 8000), PayloadFormat(9, "G722", 8000)), "G722 and G.711"),
    ],
)
def test_stream_format_refuses_what_one_leg_cannot_take(
    formats: tuple[PayloadFormat, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        StreamFormat.from_formats(formats)


def test_update_format_keeps_the_rate() -> None:
    r = flowing()
    with pytest.raises(ValueError, match="rate changed from 8000 Hz"):
        r.update_format(G722)
    assert r.format is PCMU
    pcma = StreamFormat.from_formats((PayloadFormat(8, "PCMA", 8000),))
    r.update_format(pcma)
    assert r.receive_datagram(rtp(3, 1320, pt=8), 10.54) == [audio(4320, encoding="PCMA")]
    assert r.receive_datagram(rtp(4, 1480), 10.56) == []  # PCMU is no longer in the answer
    assert counters(r) == counts(packets=3, foreign=1)
    g722 = receiver(G722)
    with pytest.raises(ValueError, match="rate changed from 16000 Hz"):
        g722.update_format(PCMU)


# -- whose packets a stream takes (SourceLatch) ---------------------------------------------------

SDP_SOURCE = ("192.0.2.10", 40000)


def latch(permitted: tuple[str, ...] = ("192.0.2.10", "192.0.2.11")) -> SourceLatch:
    return SourceLatch(SDP_SOURCE, lambda ip: ip in permitted)


def test_the_sdp_address_latches_and_others_are_dropped_and_counted() -> None:
    stream = latch()
    assert stream.accept(SDP_SOURCE, 0.0)
    assert not stream.accept(("192.0.2.11", 5000), 0.02)  # permitted, but the stream is taken
    assert not stream.accept(("203.0.113.9", 40000), 0.04)  # a stranger
    assert stream.accept(SDP_SOURCE, 0.06)
    assert (stream.latched, stream.foreign_source, stream.relatches) == (SDP_SOURCE, 2, 0)


def test_nat_the_sdp_ip_from_another_port_latches_first() -> None:
    stream = latch(permitted=())
    assert stream.accept(("192.0.2.10", 61000), 0.0)  # symmetric RTP through a NAT
    assert not stream.accept(("192.0.2.10", 61002), 0.02)
    assert stream.latched == ("192.0.2.10", 61000)


def test_a_stranger_never_latches_even_first() -> None:
    stream = latch()
    assert not stream.accept(("203.0.113.9", 4000), 0.0)
    assert stream.latched is None and stream.foreign_source == 1


def test_the_sdp_address_takes_the_stream_back_at_once() -> None:
    stream = latch()
    assert stream.accept(("192.0.2.11", 5000), 0.0)  # a permitted source came first
    assert stream.accept(SDP_SOURCE, 0.02)
    assert not stream.accept(("192.0.2.11", 5000), 0.04)
    assert stream.relatches == 1


def test_a_silent_source_is_replaced_after_the_relatch_time() -> None:
    stream = latch()
    assert stream.accept(("192.0.2.11", 5000), 0.0)
    assert not stream.accept(("192.0.2.11", 5002), RELATCH_MS / 1000 - 0.01)
    assert stream.accept(("192.0.2.11", 5002), RELATCH_MS / 1000 + 0.02)  # NAT rebinding
    assert not stream.accept(("203.0.113.9", 1), 5.0)  # never a stranger, however silent
    assert stream.latched == ("192.0.2.11", 5002)


def test_a_re_offer_moves_the_expected_address() -> None:
    stream = latch(permitted=())
    assert stream.accept(SDP_SOURCE, 0.0)
    stream.expect(("192.0.2.20", 30000))
    assert stream.accept(("192.0.2.20", 30000), 0.02)
    assert not stream.accept(SDP_SOURCE, 0.04)


# -- ARI externalMedia: one format, no negotiation; L16 (RFC 3551 §4.5.11) ---------------------

SLIN16 = StreamFormat(
    audio={118: PayloadFormat(118, "L16", 16000)},  # Asterisk's static payload type for slin16
    events=None,
    comfort_noise=frozenset({13}),
    fallback=PayloadFormat(118, "L16", 16000),
)


def test_l16_is_placed_on_its_own_16khz_clock_and_any_other_payload_type_is_that_format() -> None:
    r = receiver(SLIN16)
    frame = bytes(640)  # 20 ms of 16-bit samples at 16 kHz
    assert r.rate_hz == 16000
    assert r.receive_datagram(rtp(1, 5000, frame, pt=118), 10.5) == [audio(8000, frame, "L16")]
    assert r.receive_datagram(rtp(2, 5320, frame, pt=96), 10.52) == [audio(8320, frame, "L16")]
    assert r.receive_datagram(rtp(3, 5640, frame, pt=13), 10.54) == []  # comfort noise
    assert r.receive_datagram(rtp(4, 5960, frame[:-1]), 10.56) == []  # half a sample
    assert r.receive_datagram(rtp(5, 6280, bytes(6402)), 10.58) == []  # over MAX_PACKET_MS
    assert counters(r) == counts(packets=2, invalid=2)
