"""Hostile Genesys AudioHook sessions (/audiohook, sent with the API key and signed): broken
counters, versions, ids, durations, offers, JSON, audio before open and odd byte counts, reused
conversation ids, drops without a close."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from tests.ingest.fuzz import Hostile
from tests.ingest.peers.audiohook import STEREO

NULL = "00000000-0000-0000-0000-000000000000"


def connection(rng: random.Random) -> Hostile:
    """One connection's messages: mostly a plausible session, broken in one of many ways."""
    sid, seq = str(uuid.uuid4()), 0

    def message(kind: str, **parameters: Any) -> str:
        nonlocal seq
        seq += 1
        body: dict[str, Any] = {
            "version": "2",
            "id": sid,
            "type": kind,
            "seq": seq,
            "serverseq": 0,
            "position": "PT0S",
            "parameters": parameters,
        }
        if rng.random() < 0.04:  # one field broken
            key, value = rng.choice(
                [
                    ("version", rng.choice(["1", 2, None])),
                    ("id", rng.choice([str(uuid.uuid4()), "x", 7])),
                    ("seq", rng.choice([seq + 1, seq - 1, True, -1, 2**60, "1"])),
                    ("serverseq", rng.choice([99, -1, None])),
                    ("position", rng.choice(["PT١S", "PT1e9S", "", "PT999999999S", 1.5])),
                    ("parameters", rng.choice([[], None, "x"])),
                ]
            )
            body[key] = value
        return json.dumps(body)

    conversation = f"00000000-0000-4000-8000-{rng.randrange(60):012d}"
    media = rng.choice(
        [
            [STEREO],
            [STEREO],
            [STEREO],
            [{"type": "audio", "format": "L16", "channels": ["internal"], "rate": 8000}],
            [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 16000}],
            "PCMU",
        ]
    )
    out: list[str | bytes] = []
    if rng.random() < 0.9:
        out.append(
            message(
                "open",
                organizationId=str(uuid.uuid4()),
                conversationId=rng.choice([conversation] * 9 + [NULL]),
                participant={"id": sid, "ani": "+1", "aniName": "", "dnis": "+2"},
                media=media,
                customConfig=rng.choice([{}, {"a": 1}, {}, []]),
            )
        )
    for _ in range(rng.randrange(1, 40)):
        kind = rng.random()
        if kind < 0.7:
            out.append(rng.randbytes(rng.choice([1600] * 12 + [800, 0, 1, 3, 1601])))
        elif kind < 0.85:
            out.append(message(rng.choice(["ping", "ping", "paused", "update", "error"])))
        elif kind < 0.9:
            out.append(message("resumed", start="PT0S", discarded=rng.choice(["PT0.2S", "PT9S"])))
        elif kind < 0.95:
            discarded = rng.choice(["PT0.5S", "PT99999S", "PT0.1S", "PT-1S"])
            out.append(message("discarded", start="PT0S", discarded=discarded))
        elif kind < 0.98:
            out.append(rng.choice(["{", "[]", "null", "x" * 70_000, '{"version": "2"}']))
        else:
            out.append(message(rng.choice(["open", "hello"]), media=[]))
    if rng.random() < 0.7:
        out.append(message("close", reason=rng.choice(["end", "reconnect", "error", 5])))
    return Hostile("/audiohook", "", out, "drop" if rng.random() < 0.3 else "close")
