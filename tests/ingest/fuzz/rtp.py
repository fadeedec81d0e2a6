"""Hostile RTP: datagrams a broken or malicious sender could put on an ARI externalMedia port.

:func:`datagrams` gives one stream's worth: mostly well-formed slin16 RTP (RFC 3550 §5.1: version
2, 20 ms of L16 at 16 kHz, 640 bytes, sequence +1 and timestamp +320 a packet) with hostile
datagrams mixed in, each one of these kinds:

* ``empty``: a datagram of 0 bytes;
* ``short``: 1-11 bytes, less than the 12-byte fixed header (§5.1);
* ``version``: a whole packet with version 0, 1 or 3 (§5.1: "This field identifies the version
  of RTP ... (2)");
* ``csrc``: a CSRC count (CC, §5.1) whose 4-byte entries run past the end of the datagram;
* ``extension``: the X bit with a header extension (§5.3.1: 16 bits profile-defined, 16 bits
  length in 32-bit words) whose length runs past the end, or whose header is cut;
* ``padding``: the P bit with a last octet of 0 or larger than the payload (§5.1: "the last
  octet of the padding contains a count of how many padding octets should be ignored,
  including itself");
* ``payload_type``: a well-formed packet of a payload type other than the stream's;
* ``odd``: an L16 payload of an odd number of bytes (not whole 16-bit samples);
* ``oversize``: a payload over 200 ms (6401 bytes or more at 16 kHz);
* ``ssrc``: a few in-sequence packets from a new SSRC (§8.2; a receiver takes a new source
  after ``MIN_SEQUENTIAL`` packets in sequence, Appendix A.1), then back to the old one;
* ``sequence``: a sequence-number jump, a duplicate of the last packet, or two packets swapped
  (Appendix A.1: ``MAX_DROPOUT``, ``MAX_MISORDER``);
* ``timestamp``: the stream's timestamp moved by ±2^31 (it stays there) or a little backwards;
* ``rtcp``: RTCP-looking packets, version 2 with a second octet of 200-204 (SR, RR, SDES, BYE,
  APP: the marker bit set and payload type 72-76, §5.1 and §6.4; Appendix A.1 notes an RTP
  receiver must tell them apart);
* ``random``: random bytes.

Deterministic for a seed: everything comes from ``rng``.  Used by the ARI externalMedia fuzz test
through :meth:`tests.ingest.peers.ari.FakeAsterisk.call` (``raw=``).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

HEADER = struct.Struct("!BBHII")
FRAME = 640  # 20 ms of L16 at 16 kHz
SAMPLES = 320  # timestamp units per FRAME
HOSTILE_SHARE = 0.25


@dataclass
class _Stream:
    """The sender's state: what the next well-formed packet carries."""

    payload_type: int
    ssrc: int
    seq: int
    ts: int
    last: bytes = b""

    def packet(self, rng: random.Random, payload: bytes | None = None, **fields: int) -> bytes:
        """The next packet (``first``/``pt``/``ssrc`` overridable); moves sequence and time on."""
        first = fields.get("first", 0x80)
        second = fields.get("pt", self.payload_type)
        ssrc = fields.get("ssrc", self.ssrc)
        body = rng.randbytes(FRAME) if payload is None else payload
        data = HEADER.pack(first, second, self.seq, self.ts, ssrc) + body
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + SAMPLES) & 0xFFFFFFFF
        self.last = data
        return data


def _empty(rng: random.Random, s: _Stream) -> list[bytes]:
    return [b""]


def _short(rng: random.Random, s: _Stream) -> list[bytes]:
    return [s.packet(rng)[: rng.randrange(1, HEADER.size)]]


def _version(rng: random.Random, s: _Stream) -> list[bytes]:
    return [s.packet(rng, first=rng.choice((0, 1, 3)) << 6)]


def _csrc(rng: random.Random, s: _Stream) -> list[bytes]:
    count = rng.randrange(1, 16)
    return [s.packet(rng, rng.randbytes(rng.randrange(0, 4 * count)), first=0x80 | count)]


def _extension(rng: random.Random, s: _Stream) -> list[bytes]:
    words = rng.randrange(1, 65536)
    extension = struct.pack("!HH", 0xBEDE, words) + rng.randbytes(
        rng.randrange(0, min(4 * words, 1024))
    )
    cut = rng.randrange(0, 4) if rng.random() < 0.3 else len(extension)
    return [s.packet(rng, extension[:cut], first=0x90)]


def _padding(rng: random.Random, s: _Stream) -> list[bytes]:
    if rng.random() < 0.5:  # a pad count of 0
        payload, count = rng.randbytes(rng.randrange(0, FRAME)), 0
    else:  # more padding than the payload holds
        payload = rng.randbytes(rng.randrange(0, 200))
        count = rng.randrange(len(payload) + 2, 256)
    return [s.packet(rng, payload + bytes((count,)), first=0xA0)]


def _payload_type(rng: random.Random, s: _Stream) -> list[bytes]:
    pt = rng.choice([p for p in range(128) if p != s.payload_type])
    return [s.packet(rng, pt=pt)]


def _odd(rng: random.Random, s: _Stream) -> list[bytes]:
    return [s.packet(rng, rng.randbytes(rng.choice((1, FRAME - 1, FRAME + 1, 2 * FRAME + 3))))]


def _oversize(rng: random.Random, s: _Stream) -> list[bytes]:
    return [s.packet(rng, rng.randbytes(rng.randrange(6401, 20000)))]


def _ssrc(rng: random.Random, s: _Stream) -> list[bytes]:
    other = rng.getrandbits(32)
    return [s.packet(rng, ssrc=other) for _ in range(rng.randrange(1, 4))]


def _sequence(rng: random.Random, s: _Stream) -> list[bytes]:
    choice = rng.randrange(3)
    if choice == 0:  # a jump, forwards or back
        s.seq = (s.seq + rng.choice((-1, 1)) * rng.randrange(2, 40000)) & 0xFFFF
        return [s.packet(rng)]
    if choice == 1 and s.last:  # a duplicate
        return [s.last]
    first, second = s.packet(rng), s.packet(rng)
    return [second, first]


def _timestamp(rng: random.Random, s: _Stream) -> list[bytes]:
    step = rng.choice((1 << 31, -(1 << 31), -rng.randrange(1, 16000)))
    s.ts = (s.ts + step) & 0xFFFFFFFF
    return [s.packet(rng)]


def _rtcp(rng: random.Random, s: _Stream) -> list[bytes]:
    kind = rng.randrange(200, 205)
    words = rng.randrange(1, 20)
    body = struct.pack("!I", s.ssrc) + rng.randbytes(4 * (words - 1))
    return [struct.pack("!BBH", 0x80 | rng.randrange(0, 4), kind, words) + body]


def _random(rng: random.Random, s: _Stream) -> list[bytes]:
    return [rng.randbytes(rng.randrange(1, 1500))]


KINDS: dict[str, Callable[[random.Random, _Stream], list[bytes]]] = {
    "empty": _empty,
    "short": _short,
    "version": _version,
    "csrc": _csrc,
    "extension": _extension,
    "padding": _padding,
    "payload_type": _payload_type,
    "odd": _odd,
    "oversize": _oversize,
    "ssrc": _ssrc,
    "sequence": _sequence,
    "timestamp": _timestamp,
    "rtcp": _rtcp,
    "random": _random,
}


def datagrams(
    rng: random.Random, count: int, *, payload_type: int = 118, ssrc: int | None = None
) -> list[bytes]:
    """``count`` datagrams of one stream: the first well-formed, then about a quarter hostile
    (each kind equally likely), the rest well-formed ``payload_type`` packets of ``ssrc``."""
    stream = _Stream(
        payload_type,
        rng.getrandbits(32) if ssrc is None else ssrc,
        rng.getrandbits(16),
        rng.getrandbits(32),
    )
    out = [stream.packet(rng, first=0x80, pt=0x80 | payload_type)]  # the marker on the first
    kinds = list(KINDS.values())
    while len(out) < count:
        if rng.random() < HOSTILE_SHARE:
            out.extend(rng.choice(kinds)(rng, stream))
        else:
            out.append(stream.packet(rng))
    return out[:count]
