"""Hostile jambonz streams on both paths: the listen verb (/jambonz) with broken or missing
start frames, rates and mixes the bridge does not take, odd byte counts, messages over the
limit, reused callSids; the custom speech API (/jambonz-stt) with second starts, unknown types
and stops mid-stream; drops without a close."""

from __future__ import annotations

import json
import random

from tests.ingest.fuzz import WS_ENDINGS, Hostile


def listen(rng: random.Random) -> list[str | bytes]:
    first = rng.choice(
        [
            json.dumps({"callSid": f"k{rng.randrange(20)}", "sampleRate": 8000}),
            json.dumps({"callSid": f"k{rng.randrange(20)}", "mixType": "stereo"}),
            json.dumps({"mixType": "mixed", "sampleRate": rng.choice([16000, 24000, 64000])}),
            json.dumps({"sampleRate": rng.choice([7, 11025, "x", None])}),
            '{"mixType": "quad"}',
            "{",
            "[]",
            "x" * 70_000,
        ]
    )
    messages: list[str | bytes] = [] if rng.random() < 0.05 else [first]
    for _ in range(rng.randrange(1, 40)):
        kind = rng.random()
        if kind < 0.75:
            messages.append(rng.randbytes(rng.choice([320, 640, 1280, 0, 1, 3, 321, 2000])))
        elif kind < 0.85:
            messages.append(rng.choice(['{"event":"dtmf","dtmf":"5"}', '{"event":"dtmf"}', "{"]))
        elif kind < 0.88:
            messages.append(bytes(300_000))  # over max_message_bytes: closed with 1009
        else:
            messages.append(first)
    return messages


def stt(rng: random.Random) -> list[str | bytes]:
    start: dict[str, object] = {"type": "start", "format": "raw", "encoding": "LINEAR16"}
    start |= rng.choice(
        [{}, {"interimResults": True}, {"callSid": f"s{rng.randrange(10)}"}, {"sampleRateHz": 3}]
    )
    messages: list[str | bytes] = [] if rng.random() < 0.05 else [json.dumps(start)]
    for _ in range(rng.randrange(1, 40)):
        kind = rng.random()
        if kind < 0.75:
            messages.append(rng.randbytes(rng.choice([320, 640, 0, 1, 321])))
        elif kind < 0.9:
            messages.append(rng.choice(['{"type":"pause"}', "{", "[1]", '{"type":"start"}']))
        else:
            messages.append('{"type":"stop"}')
    return messages


def connection(rng: random.Random) -> Hostile:
    """Half on each path."""
    if rng.random() < 0.5:
        return Hostile("/jambonz", "", listen(rng), rng.choice(WS_ENDINGS))
    return Hostile("/jambonz-stt", "", stt(rng), rng.choice(WS_ENDINGS))
