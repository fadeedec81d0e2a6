"""One received RTP stream placed on its leg clock by RTP timestamps (sans-I/O).

The SIP worker receives the RTP of a ``direct`` or ``siprec`` call on its own sockets instead
of through pjsua's jitter buffer and conference tick (``bridge.sip.media``), because a
transcription leg wants every sample at its RTP timestamp as soon as it arrives, not a
playout-smoothed timeline: pjsua's adaptive jitter buffer held audio back 20-35 ms and
stretched or shrank calls by 10-20 ms at a time (benchmarks/README.md, ``bench_sip.py``).
Asterisk's ARI externalMedia RTP (:mod:`bridge.ingest.rtp`) is placed the same way: L16 at 8 or
16 kHz (big-endian, RFC 3551 §4.5.11) or G.711, one format set up without negotiation
(:attr:`StreamFormat.fallback`).

:class:`RtpReceiver` takes datagrams with their arrival time and gives back what to hand to the
leg, each on the leg's sample clock (samples at the codec's rate since the stream was opened):

* :class:`Audio` - a packet's payload at its RTP timestamp (RFC 3550 §5.1: "the sampling
  instant of the first octet in the RTP data packet").  A gap in the timestamps (a lost packet,
  a silence-suppressed pause) is filled with silence by the leg (``LegAudio``).
* :class:`Audio` with an empty payload - the stream has been silent for longer than
  ``stall_ms`` (hold, an RTP outage): the leg clock is moved on with silence, so it never lags
  real time by more than that.
* :class:`Digit` - an RFC 4733 telephone event, once its end packet has come (or the next
  event has begun), timed at its start: its timestamp, unless that disagrees with its arrival
  by more than :data:`EVENT_SLACK_MS`.

Placement rules, in the order :meth:`RtpReceiver.receive_datagram` applies them:

1. Not RTP version 2 with a whole header (RFC 3550 §5.1, §5.3.1 extension, §5.1 padding),
   a payload type the answer did not name, comfort noise (RFC 3389), a payload over
   :data:`MAX_PACKET_MS` or of a size that is not whole samples: counted and dropped.
2. The first packet anchors its timestamp at the wall-clock position since the stream was
   opened, so the legs of one call (two SIPREC streams) stay aligned.  A new SSRC (RFC 3550
   §8.2, e.g. the SBC re-originating the stream) is taken only when a second packet of it
   follows in sequence (the probation of RFC 3550 Appendix A.1), then anchored at "now".
   Every anchor is rounded up to a whole :data:`FRAME_MS` frame (RFC 3551 §4.2: 20 ms is the
   default packet time), so 20 ms packets end where the leg's 80 ms chunks end and a chunk goes
   to the ASR with the packet that completes it, not with the next one.
3. A packet more than :data:`MAX_JUMP_MS` ahead of where the wall clock says the stream is
   (a timestamp jump) starts a new anchor at "now"; an in-sequence packet that lands before
   what was already handed over (the sender's clock slipped back, or restarted) starts a new
   anchor right after it.  Neither drops audio; both are counted in ``reanchors``.  Packets
   that are merely late (read late, or sent in a burst) keep their timestamps' places.
4. An older sequence number whose time was already handed over (a reordered or duplicated
   packet) is dropped and counted in ``late``: there is no reordering buffer, which would hold
   every packet after a loss back by its wait.

Positions are Python ints (no 32-bit wrap on the leg clock); timestamps and sequence numbers
wrap as RFC 3550 says.

Before any of that, :class:`SourceLatch` decides whose packets a stream takes at all (RFC 3550
§8.2 leaves it to the application: "a receiver ... should only accept data from the sender it
expects"):

* the address the SDP named for the stream (pjsua's ``remoteRtpAddress``: the offer's c= and
  m= port) is always taken, and the stream latches on it;
* before anything is latched, the first packet from that IP (another port: a NAT on the way)
  or from a network SIP calls are accepted from (``allowed_sources``) latches the stream on
  its source address and port (symmetric RTP, RFC 4961: the sender sends from where it
  receives);
* after that, packets from any other address are dropped and counted (``foreign_source``),
  unless the latched source has been silent for :data:`RELATCH_MS` and the new one would have
  been taken first (a NAT rebinding or an SBC fail-over moves the stream, once).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bridge.sip.dtmf import EVENT_DIGITS, Digit, DigitAssembler
from bridge.sip.offer import PayloadFormat

__all__ = [
    "EVENT_SLACK_MS",
    "FRAME_MS",
    "MAX_JUMP_MS",
    "MAX_PACKET_MS",
    "RTP_CLOCK_HZ",
    "STALL_MS",
    "Audio",
    "Digit",
    "Output",
    "RtpReceiver",
    "SourceLatch",
    "StreamFormat",
]

MAX_PACKET_MS: Final = 200  # longest payload taken (RFC 3551 §4.2: 20 ms by default)
MAX_JUMP_MS: Final = 1000  # a timestamp this far from the wall clock's guess is a jump
EVENT_SLACK_MS: Final = 200  # an RFC 4733 timestamp this far from the arrival is not trusted
FRAME_MS: Final = 20  # anchors are whole frames of RFC 3551 §4.2's default packet time
STALL_MS: Final = 200  # the leg clock never lags the last packet's pace by more than this
RELATCH_MS: Final = 1000  # a latched source silent this long may be replaced (SourceLatch)
PROBATION: Final = 2  # RFC 3550 A.1 MIN_SEQUENTIAL: packets in sequence to accept a new SSRC

_HEADER: Final = struct.Struct("!BBHII")
_EXTENSION: Final = struct.Struct("!HH")
_EVENT: Final = struct.Struct("!BBH")
# RFC 4733 §3.2: events 0-9, *, #, A-D are the DTMF digits; others (flash, tones) are ignored.


@dataclass(frozen=True, slots=True)
class StreamFormat:
    """The payload types a stream may carry (from the SDP answer) and the leg's sample rate."""

    audio: dict[int, PayloadFormat]  # PCMU, PCMA, G722 or L16 payload types -> format
    events: int | None  # telephone-event payload type (RFC 4733), if negotiated
    events_clock_hz: int = 8000
    comfort_noise: frozenset[int] = frozenset()  # CN payload types (RFC 3389): ignored
    # Any other payload type is this format: a stream set up without negotiation (Asterisk's
    # ARI externalMedia takes one ``format`` and "no negotiation" happens).
    fallback: PayloadFormat | None = None

    @property
    def encodings(self) -> frozenset[str]:
        """The audio codecs' names, e.g. ``{"PCMU"}``."""
        return frozenset(f.encoding for f in self.audio.values())

    @property
    def rtp_clock_hz(self) -> int:
        """The timestamps' clock (every audio format of one stream has the same rate)."""
        return next(iter(self.audio.values())).rtp_clock_hz

    @property
    def sample_rate_hz(self) -> int:
        """The leg's sample rate: G.722 samples at 16 kHz on an 8 kHz RTP clock (RFC 3551
        §4.5.2), G.711 at 8 kHz, L16 at its clock (§4.5.11)."""
        return sample_rate(next(iter(self.audio.values())))

    @classmethod
    def from_formats(cls, formats: tuple[PayloadFormat, ...]) -> StreamFormat:
        """From an SDP answer's formats; raises ``ValueError`` if no audio codec is usable or
        two of them run at different sample rates (one leg has one rate)."""
        audio = {f.payload_type: f for f in formats if f.encoding in SIP_CODECS}
        if not audio:
            shown = ", ".join(f.encoding for f in formats) or "no formats"
            raise ValueError(f"no PCMU, PCMA or G722 in the answer ({shown})")
        if len({sample_rate(f) for f in audio.values()}) > 1:
            raise ValueError("G722 and G.711 in one stream: one leg has one sample rate")
        events = [f for f in formats if f.encoding == "TELEPHONE-EVENT"]
        return cls(
            audio=audio,
            events=events[0].payload_type if events else None,
            events_clock_hz=events[0].rtp_clock_hz if events else 8000,
            comfort_noise=frozenset(f.payload_type for f in formats if f.encoding == "CN"),
        )


# (leg samples, payload bytes) per unit of each codec's payload: G.722 packs two 16 kHz samples
# in a byte, L16 one sample in two bytes (RFC 3551 §4.5.2, §4.5.11).
SIZES: Final = {"PCMU": (1, 1), "PCMA": (1, 1), "G722": (2, 1), "L16": (1, 2)}
SIP_CODECS: Final = ("PCMU", "PCMA", "G722")  # what the SIP worker answers with
RTP_CLOCK_HZ: Final = 8000  # the SIP codecs' clock (G.722's too: RFC 3551 §4.5.2)


def sample_rate(fmt: PayloadFormat) -> int:
    """The leg's samples per second of ``fmt``: its clock, doubled for G.722 (RFC 3551 §4.5.2:
    "the RTP clock rate ... is 8,000 Hz ... even though the actual sampling rate ... is 16,000")."""
    return fmt.rtp_clock_hz * 2 if fmt.encoding == "G722" else fmt.rtp_clock_hz


@dataclass(frozen=True, slots=True)
class Audio:
    """``payload`` (in its codec, ``encoding``) starts at leg sample ``position``; an empty
    payload only moves the leg clock to ``position`` (silence until there)."""

    position: int
    payload: bytes
    encoding: str


Output = Audio | Digit


Address = tuple[str, int]


class SourceLatch:
    """Whose RTP a stream takes (see the module docstring).  ``permitted(ip)``: whether a
    source IP may latch the stream before anything is latched (``allowed_sources``)."""

    def __init__(self, expected: Address | None, permitted: Callable[[str], bool]) -> None:
        self.expected = expected
        self.permitted = permitted
        self.latched: Address | None = None
        self.last_s = 0.0
        self.foreign_source = 0  # packets dropped for coming from elsewhere
        self.relatches = 0

    def accept(self, source: Address, now_s: float) -> bool:
        """Whether a packet from ``source``, arriving at ``now_s``, belongs to the stream."""
        if source == self.latched:
            self.last_s = now_s
            return True
        may_latch = source[0] == (self.expected or ("", 0))[0] or self.permitted(source[0])
        silent = self.latched is None or now_s - self.last_s >= RELATCH_MS / 1000
        if source == self.expected or (may_latch and silent):
            self.relatches += self.latched is not None
            self.latched, self.last_s = source, now_s
            return True
        self.foreign_source += 1
        return False

    def expect(self, expected: Address | None) -> None:
        """A re-offer named another address for the stream (RFC 3264 §8.3.1)."""
        self.expected = expected


class RtpReceiver:
    """One stream's RTP in, :data:`Output` on the leg clock out; see the module docstring.

    Counters: ``packets`` (accepted), ``invalid`` (not RTP, bad size), ``foreign`` (payload
    types not negotiated), ``late`` (old or duplicate, dropped), ``lost`` (sequence numbers
    never seen), ``reanchors``, ``stalls`` (times the clock was moved on without packets);
    ``last_packet_s`` is the arrival time of the last accepted packet (``None``: none yet).
    """

    def __init__(self, fmt: StreamFormat, *, opened_s: float, stall_ms: int = STALL_MS) -> None:
        self.format = fmt
        self.rate_hz: Final = fmt.sample_rate_hz
        self.opened_s: Final = opened_s
        self._stall_samples = stall_ms * self.rate_hz // 1000
        self._jump_samples = MAX_JUMP_MS * self.rate_hz // 1000
        self._max_samples = MAX_PACKET_MS * self.rate_hz // 1000
        self._event_slack = EVENT_SLACK_MS * self.rate_hz // 1000
        self._frame = FRAME_MS * self.rate_hz // 1000
        self._ticks = self.rate_hz // fmt.rtp_clock_hz  # leg samples per timestamp unit
        self._ssrc: int | None = None
        self._anchor_ts = 0
        self._anchor_pos = 0
        self._seq = 0  # highest sequence number taken
        self._end = 0  # leg position up to which audio or silence was handed over
        self._pace_pos = 0  # where the stream was at _pace_s (the last audio's end)
        self._pace_s = opened_s
        self._candidate: tuple[int, int, list[tuple[bytes, float]]] | None = None
        self._digits = DigitAssembler()
        self.packets = self.invalid = self.foreign = self.late = 0
        self.lost = self.reanchors = self.stalls = 0
        self.last_packet_s: float | None = None

    @property
    def position(self) -> int:
        """The leg sample up to which audio or silence has been handed over."""
        return self._end

    def position_at(self, now_s: float) -> int:
        """Where the leg is at ``now_s``: the wall clock's guess, never before what was handed
        over (a SIP INFO digit is timed here)."""
        return max(self._end, self._wall_position(now_s))

    def update_format(self, fmt: StreamFormat) -> None:
        """A re-offer changed the payload types; the leg's sample rate must stay the same."""
        if fmt.sample_rate_hz != self.rate_hz:
            raise ValueError(f"the stream's rate changed from {self.rate_hz} Hz")
        self.format = fmt

    # -- in ----------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, now_s: float) -> list[Output]:
        """One UDP datagram that arrived at ``now_s`` (monotonic seconds)."""
        parsed = _parse(data)
        if parsed is None:
            self.invalid += 1
            return []
        pt, seq, ts, ssrc, payload = parsed
        fmt = self.format
        is_event = pt == fmt.events
        audio = None if is_event or pt in fmt.comfort_noise else fmt.audio.get(pt, fmt.fallback)
        if audio is None and not is_event:
            if pt in fmt.comfort_noise:  # RFC 3389: the gap is filled with silence anyway
                ahead = (seq - self._seq) & 0xFFFF
                if ssrc == self._ssrc and 0 < ahead < 0x8000:
                    self.lost += ahead - 1  # its own sequence number was seen: not lost
                    self._seq = seq
                return []
            self.foreign += 1
            return []
        n = 0  # leg samples of audio in it
        if audio is not None:
            samples, width = SIZES[audio.encoding]
            n = len(payload) // width * samples
            if not n or len(payload) % width or n > self._max_samples:
                self.invalid += 1
                return []
        if is_event and len(payload) < _EVENT.size:
            self.invalid += 1
            return []
        if ssrc != self._ssrc:
            if self._ssrc is not None:
                return self._probation(data, ssrc, seq, now_s)
            self._ssrc, self._seq = ssrc, (seq - 1) & 0xFFFF
            self._anchor(ts, max(self._end, self._wall_position(now_s)))
        return self._take(pt, seq, ts, payload, audio, n, now_s)

    def poll(self, now_s: float) -> list[Output]:
        """Move the leg clock on if the stream has been silent for longer than ``stall_ms``."""
        target = self._wall_position(now_s) - self._stall_samples
        if target <= self._end:
            return []
        self._end = target
        self.stalls += 1
        return [Audio(target, b"", "")]

    def close(self) -> list[Output]:
        """The stream ends: a digit whose end never came is handed over as it is."""
        return list(self._digits.close())

    # -- placement ---------------------------------------------------------------------------

    def _wall_position(self, now_s: float) -> int:
        """Where the stream is by the wall clock: the last audio's end plus the time since."""
        return self._pace_pos + int((now_s - self._pace_s) * self.rate_hz)

    def _anchor(self, ts: int, position: int) -> None:
        """Timestamp ``ts`` is at ``position``, rounded up to a whole frame (see rule 2)."""
        frame = self._frame
        self._anchor_ts, self._anchor_pos = ts, -(-position // frame) * frame

    def _position(self, ts: int) -> int:
        delta = (ts - self._anchor_ts) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        return self._anchor_pos + delta * self._ticks

    def _take(
        self,
        pt: int,
        seq: int,
        ts: int,
        payload: bytes,
        audio: PayloadFormat | None,
        n: int,
        now_s: float,
    ) -> list[Output]:
        ahead = (seq - self._seq) & 0xFFFF
        newer = 0 < ahead < 0x8000
        position = self._position(ts)
        if audio is None:
            self._count(seq, ahead, newer, now_s)
            return self._receive_event(ts, position, self._wall_position(now_s), payload)
        wall = self._wall_position(now_s)
        if position - wall > self._jump_samples:
            if not newer:
                self.late += 1
                return []
            self.reanchors += 1  # a timestamp jump: the packet is "now"
            self._anchor(ts, max(self._end, wall))
            position = self._anchor_pos
        elif position + n <= self._end:
            if not newer:
                self.late += 1  # reordered or duplicated: its time was handed over already
                return []
            self.reanchors += 1  # in sequence but in the past: the sender's clock slipped back
            self._anchor(ts, self._end)
            position = self._anchor_pos
        self._count(seq, ahead, newer, now_s)
        end = position + n
        if end > self._end:
            self._end = end
        self._pace_pos, self._pace_s = end, now_s
        return [Audio(position, payload, audio.encoding)]

    def _count(self, seq: int, ahead: int, newer: bool, now_s: float) -> None:
        if newer:
            self.lost += ahead - 1
            self._seq = seq
        self.packets += 1
        self.last_packet_s = now_s

    def _probation(self, data: bytes, ssrc: int, seq: int, now_s: float) -> list[Output]:
        """RFC 3550 A.1: a new SSRC is taken once ``PROBATION`` packets of it came in
        sequence; its first packets are then placed at "now" and handed over."""
        candidate = self._candidate
        if candidate is None or candidate[0] != ssrc or (seq - candidate[1]) & 0xFFFF != 1:
            self._candidate = (ssrc, seq, [(data, now_s)])
            return []
        candidate[2].append((data, now_s))
        if len(candidate[2]) < PROBATION:
            self._candidate = (ssrc, seq, candidate[2])
            return []
        self._candidate = None
        out: list[Output] = list(self._digits.close())
        first_data, first_s = candidate[2][0]
        parsed = _parse(first_data)
        assert parsed is not None  # it was parsed once already
        self._ssrc, self._seq = ssrc, (parsed[1] - 1) & 0xFFFF
        self._anchor(parsed[2], max(self._end, self._wall_position(first_s)))
        self.reanchors += 1
        for held, at_s in candidate[2]:
            out += self.receive_datagram(held, at_s)
        return out

    # -- RFC 4733 events -----------------------------------------------------------------------

    def _receive_event(self, ts: int, stamped: int, wall: int, payload: bytes) -> list[Output]:
        """RFC 4733 §2.5 packets to digits (:class:`~bridge.sip.dtmf.DigitAssembler`).

        A digit is placed at its timestamp (``stamped``) when that agrees, to within
        :data:`EVENT_SLACK_MS`, with its packet's arrival less the duration that packet reports
        (``wall`` is the arrival); otherwise at the latter: senders that replay recorded events
        (sipp's pcaps) stamp them unrelated to their audio.
        """
        code, flags, duration = _EVENT.unpack_from(payload)
        if code >= len(EVENT_DIGITS):  # not a digit (flash, tones): it still ends an open one
            return list(self._digits.interrupt(ts))
        arrived = wall - duration * self.rate_hz // self.format.events_clock_hz
        start = stamped if abs(stamped - arrived) <= self._event_slack else max(0, arrived)
        ms = duration * 1000 // self.format.events_clock_hz
        digits = self._digits.receive(
            ts, EVENT_DIGITS[code], start, ended=bool(flags & 0x80), duration_ms=ms
        )
        return list(digits)


def _parse(data: bytes) -> tuple[int, int, int, int, bytes] | None:
    """(payload type, sequence number, timestamp, SSRC, payload) of an RTP packet, or ``None``
    if it is not one (RFC 3550 §5.1: version 2, CSRC list, §5.3.1 extension, padding)."""
    size = len(data)
    if size < _HEADER.size:
        return None
    first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        return None
    start = _HEADER.size + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 16-bit profile data, 16-bit length in words
        if size < start + _EXTENSION.size:
            return None
        _, words = _EXTENSION.unpack_from(data, start)
        start += _EXTENSION.size + 4 * words
    end = size
    if first & 0x20:  # padding: the last octet counts the padding octets, itself included
        if not data[-1]:
            return None
        end -= data[-1]
    if end < start:
        return None
    return second & 0x7F, seq, ts, ssrc, data[start:end]
