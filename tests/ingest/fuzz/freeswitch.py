"""Hostile FreeSWITCH streams (/freeswitch): bad URLs, missing or broken metadata, odd byte
counts, messages over the limit, reused call uuids, drops without a close."""

from __future__ import annotations

import random

from tests.ingest.fuzz import WS_ENDINGS, Hostile


def connection(rng: random.Random) -> Hostile:
    """One connection's URL query, messages and ending."""
    query = rng.choice(
        [
            "",
            "mix=stereo&rate=16k",
            "mix=mixed",
            "rate=48000",
            "rate=12345",
            "mix=quad",
            "rate=²",
            "uuid=" + "x" * 300,
            f"uuid=k{rng.randrange(20)}",
            "roles=agent,customer",
        ]
    )
    messages: list[str | bytes] = []
    for _ in range(rng.randrange(1, 40)):
        kind = rng.random()
        if kind < 0.7:
            messages.append(rng.randbytes(rng.choice([320, 640, 1280, 0, 1, 3, 321, 2000])))
        elif kind < 0.85:
            messages.append(rng.choice(['{"uuid": 5}', "{", "[]", "\x00", "x" * 5000, "pause"]))
        elif kind < 0.9:
            messages.append(bytes(300_000))  # over max_message_bytes: closed with 1009
        else:
            messages.append(f'{{"uuid": "k{rng.randrange(20)}"}}')
    return Hostile("/freeswitch", query, messages, rng.choice(WS_ENDINGS))
