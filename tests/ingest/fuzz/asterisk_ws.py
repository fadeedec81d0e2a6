"""Hostile Asterisk chan_websocket streams (/asterisk): MEDIA_START in both forms and in
formats the bridge refuses, none at all, twice, broken JSON, odd byte counts, bad digits,
unknown events, messages over the limits, reused call keys and roles, drops without a close."""

from __future__ import annotations

import random

from tests.ingest.fuzz import WS_ENDINGS, Hostile
from tests.ingest.peers.asterisk_ws import AsteriskWsPeer


def start_text(rng: random.Random) -> str | bytes:
    """A first message: mostly a MEDIA_START Asterisk could send, sometimes not."""
    fmt = rng.choice(["ulaw", "alaw", "slin", "slin16", "slin16", "opus", "g729", "slin12"])
    peer = AsteriskWsPeer(
        "ws://unused",
        fmt=fmt,
        json_control=rng.random() < 0.5,
        legacy=rng.random() < 0.2,
        variables={"BRIDGE_CALL": f"k{rng.randrange(20)}"} if rng.random() < 0.3 else None,
    )
    if rng.random() < 0.85:
        return peer.media_start()
    broken: list[str | bytes] = [
        bytes(640),
        "{",
        "MEDIA_START",
        '{"event":"MEDIA_START"}',
        "DTMF_END digit:1",
        "\x00",
    ]
    return rng.choice(broken)


def connection(rng: random.Random) -> Hostile:
    """One connection's URL query, messages and ending."""
    query = rng.choice(
        [
            "",
            "",
            f"call=k{rng.randrange(20)}",
            f"call=k{rng.randrange(20)}&role=caller",
            f"call=k{rng.randrange(20)}&role=callee",
            "role=boss",
            "format=slin16",
            "call=" + "x" * 300,
        ]
    )
    messages: list[str | bytes] = [start_text(rng)]
    for _ in range(rng.randrange(1, 40)):
        kind = rng.random()
        if kind < 0.7:
            messages.append(rng.randbytes(rng.choice([160, 320, 640, 0, 1, 3, 321, 2000])))
        elif kind < 0.8:
            messages.append(
                rng.choice(
                    [
                        "DTMF_END digit:5",
                        '{"event":"DTMF_END","digit":"#"}',
                        "DTMF_END digit:55",
                        '{"event":"DTMF_END","digit":7}',
                        "MEDIA_XOFF",
                        "MEDIA_XON",
                        '{"event":"STATUS","queue_length":3}',
                        "ERROR channel_id:1.1 error_text:Unable to parse JSON command",
                        "SOMETHING_NEW key:value",
                    ]
                )
            )
        elif kind < 0.9:
            messages.append(rng.choice(["{", "[]", "\x00", "x" * 5000, "hello", '{"event":5}']))
        elif kind < 0.95:
            messages.append(start_text(rng))
        else:
            messages.append(bytes(rng.choice([70_000, 300_000])))  # over the limits: 1009
    return Hostile("/asterisk", query, messages, rng.choice(WS_ENDINGS))
