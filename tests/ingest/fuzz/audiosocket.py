"""Hostile AudioSocket connections: frame sequences a broken or malicious Asterisk could send.

Each connection is a list of byte strings written in order (split anywhere), then a hangup, a
plain close or an abrupt reset.  Used by the CI test (a few thousand frames) and by
``benchmarks/fuzz_forks.py`` (as many as asked).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from bridge.core.forks.audiosocket import AUDIO_RATES, Kind, frame

ENDINGS = ("hangup", "close", "error", "none")


@dataclass(frozen=True, slots=True)
class Connection:
    chunks: list[bytes]  # written in this order
    frames: int  # frames (or frame-like pieces) in it
    ending: str  # hangup | close | error | none (left open: the server's idle timeout)


def _audio(rng: random.Random) -> bytes:
    kind = rng.choice([Kind.AUDIO_SLIN] * 8 + list(AUDIO_RATES))
    size = rng.choice([320, 320, 320, 0, 1, 319, 321, 640, rng.randrange(0, 4000)])
    return frame(kind, rng.randbytes(size))


def _hostile(rng: random.Random) -> bytes:
    choice = rng.randrange(10)
    if choice == 0:  # a length field larger than what follows, or larger than any frame
        return bytes((Kind.AUDIO_SLIN,)) + rng.randrange(0, 65536).to_bytes(2, "big") + b"x" * 9
    if choice == 1:  # an unknown kind
        return frame(rng.choice([0x02, 0x04, 0x0F, 0x19, 0x7F, 0xFE]), rng.randbytes(4))
    if choice == 2:  # DTMF that is not one digit
        return frame(Kind.DTMF, rng.choice([b"", b"12", b"\xff", b"Z", b"\x00"]))
    if choice == 3:  # a second UUID
        return frame(Kind.UUID, uuid.uuid4().bytes)
    if choice == 4:  # a UUID of the wrong size
        return frame(Kind.UUID, rng.randbytes(rng.choice([0, 15, 17])))
    if choice == 5:  # random bytes
        return rng.randbytes(rng.randrange(1, 64))
    if choice == 6:  # an error frame with or without its code
        return frame(Kind.ERROR, rng.randbytes(rng.randrange(0, 3)))
    if choice == 7:  # a truncated frame
        return frame(Kind.AUDIO_SLIN, bytes(320))[: rng.randrange(1, 322)]
    if choice == 8:  # audio at another rate than the stream's
        return frame(0x12, bytes(640))
    return frame(Kind.DTMF, rng.choice(b"0123456789*#").to_bytes(1, "big"))


def connection(rng: random.Random, keys: list[uuid.UUID]) -> Connection:
    """One connection: mostly a well-formed start, then audio with hostile frames mixed in."""
    chunks: list[bytes] = []
    if rng.random() < 0.9:
        chunks.append(frame(Kind.UUID, rng.choice(keys).bytes))
    n = rng.randrange(1, 60)
    for _ in range(n):
        chunks.append(_hostile(rng) if rng.random() < 0.08 else _audio(rng))
    ending = rng.choice(ENDINGS)
    if ending == "hangup":
        chunks.append(frame(Kind.HANGUP))
    elif ending == "error":
        chunks.append(frame(Kind.ERROR, b"\x02"))
    return Connection(chunks, n + 1, ending)
