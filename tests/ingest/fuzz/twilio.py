"""Hostile Twilio Media Streams (/twilio, sent signed): missing connected/start, bad tracks and
roles, media on unannounced tracks, bad base64 and timestamps, sequence numbers out of order,
unknown events, non-JSON, binary, reused call SIDs, drops without a stop."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from tests.ingest.fuzz import WS_ENDINGS, Hostile
from tests.ingest.peers.twilio import CONNECTED


def connection(rng: random.Random) -> Hostile:
    """One connection's messages (mostly a valid stream, broken at random) and its ending."""
    call_sid = f"CA{rng.randrange(100)}"
    stream_sid = f"MZ{rng.randrange(1000)}"
    tracks = rng.choice([["inbound"], ["outbound"], ["inbound", "outbound"]] * 3 + [["both"], []])
    body = {
        "accountSid": "AC1",
        "streamSid": stream_sid,
        "callSid": call_sid,
        "tracks": tracks,
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": rng.choice([{}, {}, {"roles": "agent,customer"}, {"roles": "x"}, []]),
    }
    messages: list[str | bytes] = []
    if rng.random() < 0.95:
        messages.append(CONNECTED)
    seq = 1
    if rng.random() < 0.9:
        messages.append(json.dumps({"event": "start", "sequenceNumber": "1", "start": body}))
    for i in range(rng.randrange(1, 60)):
        seq += 1 if rng.random() < 0.97 else rng.choice([0, -1, 5])
        kind = rng.random()
        if kind < 0.75:
            payload = base64.b64encode(rng.randbytes(rng.choice([160, 0, 1, 320]))).decode()
            media = {
                "track": rng.choice(["inbound", "outbound", "inbound", "x"]),
                "chunk": str(i + 1),
                "timestamp": rng.choice([str(i * 20), str(i * 20), "-1", "1e3", "99999999"]),
                "payload": payload if rng.random() < 0.97 else "%%%",
            }
            message: dict[str, Any] = {"event": "media", "media": media}
        elif kind < 0.8:
            message = {"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": "5"}}
        elif kind < 0.85:
            message = {"event": rng.choice(["mark", "clear", "start", "connected", 5])}
        else:
            messages.append(rng.choice(["{", "[]", "null", "x" * 3000, b"\x01\x02"]))
            continue
        message |= {"sequenceNumber": str(seq), "streamSid": stream_sid}
        messages.append(json.dumps(message))
    if rng.random() < 0.5:
        stop = {"accountSid": "AC1", "callSid": call_sid}
        messages.append(json.dumps({"event": "stop", "sequenceNumber": str(seq + 1), "stop": stop}))
    return Hostile("/twilio", "", messages, rng.choice(WS_ENDINGS))
