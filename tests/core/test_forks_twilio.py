"""Twilio Media Streams messages and signatures (bridge.core.forks.twilio)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from bridge.core.forks.twilio import (
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    StreamReader,
    roles_of,
    signature_matches,
)
from bridge.core.types import LegRole
from bridge.errors import RemoteProtocolError

CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}


def start(seq: str = "1", **fields: Any) -> dict[str, Any]:
    body = {
        "accountSid": "AC123",
        "streamSid": "MZ1",
        "callSid": "CA1",
        "tracks": ["inbound", "outbound"],
        "mediaFormat": FORMAT,
        "customParameters": {"agent": "alice"},
    } | fields
    return {"event": "start", "sequenceNumber": seq, "start": body, "streamSid": "MZ1"}


def media(seq: str, track: str = "inbound", ts: str = "0", payload: str = "//8=") -> dict[str, Any]:
    body = {"track": track, "chunk": "1", "timestamp": ts, "payload": payload}
    return {"event": "media", "sequenceNumber": seq, "media": body, "streamSid": "MZ1"}


def started() -> StreamReader:
    reader = StreamReader()
    assert reader.read(json.dumps(CONNECTED)) is None
    assert isinstance(reader.read(json.dumps(start())), Start)
    return reader


def test_a_stream_reads_as_twilio_documents_it() -> None:
    reader = StreamReader()
    assert reader.read(json.dumps(CONNECTED)) is None
    first = reader.read(json.dumps(start()))
    assert first == Start("MZ1", "CA1", "AC123", ("inbound", "outbound"), {"agent": "alice"})
    assert first.metadata()["customParameters"] == {"agent": "alice"}
    audio = base64.b64encode(bytes(range(160))).decode()
    got = reader.read(json.dumps(media("2", "outbound", "1020", audio)))
    assert got == Media("outbound", 1, 1020, bytes(range(160)))
    assert isinstance(got, Media) and got.position == 8160
    dtmf = {"track": "inbound_track", "digit": "#"}
    message = {"event": "dtmf", "sequenceNumber": "3", "streamSid": "MZ1", "dtmf": dtmf}
    assert reader.read(json.dumps(message)) == Dtmf("inbound", "#")
    mark = {"event": "mark", "sequenceNumber": "4", "streamSid": "MZ1", "mark": {"name": "m"}}
    assert reader.read(json.dumps(mark)) == Mark("m")
    stop = {"accountSid": "AC123", "callSid": "CA1"}
    message = {"event": "stop", "sequenceNumber": "5", "streamSid": "MZ1", "stop": stop}
    assert reader.read(json.dumps(message)) == Stop("CA1", "AC123")
    with pytest.raises(RemoteProtocolError, match="media after stop"):
        reader.read(json.dumps(media("6")))


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"\x00\x01", "binary message"),
        ("{", "not JSON"),
        ("[1]", "not a JSON object"),
        (media("2"), "media before start"),
        ({"event": "hello", "sequenceNumber": "2", "streamSid": "MZ1"}, "unknown event 'hello'"),
        ({"event": "stop", "sequenceNumber": "2", "stop": {}}, "stop before start"),
        (start(seq="2", tracks=["inbound", "inbound"]), "tracks"),
        (start(seq="2", tracks=["both"]), "tracks"),
        (start(seq="2", tracks=[]), "tracks"),
        (start(seq="2", mediaFormat=FORMAT | {"sampleRate": 16000}), "mediaFormat"),
        (start(seq="2", mediaFormat=FORMAT | {"encoding": "audio/x-alaw"}), "mediaFormat"),
        (start(seq="2", callSid=5), "callSid"),
        (start(seq="2", callSid="x" * 65), "callSid"),
        (start(seq="2", accountSid="A C"), "accountSid"),
        (start(seq="2", customParameters={"a": 1}), "customParameters"),
        (start(seq="2", customParameters=[]), "customParameters"),
        (start(seq="2", streamSid=None), "streamSid"),
        (start(seq="٣"), "sequenceNumber"),
        (start(seq="²"), "sequenceNumber"),
        (start(seq=" 2"), "sequenceNumber"),
        (start(seq="9" * 11), "sequenceNumber"),
        ({"event": "start", "sequenceNumber": 2, "start": {}}, "string of digits"),
        ({"event": "connected", "protocol": "Call", "version": "1.0.0"}, "second connected"),
    ],
)
def test_bad_messages_before_start_are_protocol_errors(message: Any, error: str) -> None:
    reader = StreamReader()
    reader.read(json.dumps(CONNECTED))
    text = message if isinstance(message, str | bytes) else json.dumps(message)
    with pytest.raises(RemoteProtocolError, match=error):
        reader.read(text)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (start(seq="2"), "second start"),
        (media("2", track="outbound_track"), "not announced"),
        (media("2", payload="not base64!"), "not base64"),
        (media("2", payload="//8"), "not base64"),
        (media("2", payload=5), "base64 text"),
        (media("2", payload="A" * 100_000), "base64 text"),
        (media("2", ts="-20"), "timestamp"),
        (media("2", ts="1.5"), "timestamp"),
        (media("2", ts="٣"), "timestamp"),
        (media("1"), "sequenceNumber 1 after 1"),
        (media("2") | {"streamSid": "MZ2"}, "streamSid"),
        (media("2") | {"media": "x"}, "media must be an object"),
        ({"event": "dtmf", "sequenceNumber": "2", "streamSid": "MZ1", "dtmf": {}}, "track"),
        (
            {
                "event": "dtmf",
                "sequenceNumber": "2",
                "streamSid": "MZ1",
                "dtmf": {"track": "inbound_track", "digit": "x"},
            },
            "digit",
        ),
        (
            {"event": "stop", "sequenceNumber": "2", "streamSid": "MZ1", "stop": {"callSid": "C"}},
            "callSid C is not this stream's",
        ),
        ({"event": "clear", "sequenceNumber": "2", "streamSid": "MZ1"}, "unknown event 'clear'"),
        ({"sequenceNumber": "2", "streamSid": "MZ1"}, "unknown event None"),
    ],
)
def test_bad_messages_after_start_are_protocol_errors(message: Any, error: str) -> None:
    reader = started()
    with pytest.raises(RemoteProtocolError, match=error):
        reader.read(json.dumps(message))


def test_the_first_message_must_be_connected_for_the_call_protocol() -> None:
    with pytest.raises(RemoteProtocolError, match="start before connected"):
        StreamReader().read(json.dumps(start()))
    with pytest.raises(RemoteProtocolError, match="protocol"):
        StreamReader().read(json.dumps(CONNECTED | {"protocol": "Other"}))


def test_roles_are_caller_and_callee_unless_a_parameter_names_them() -> None:
    both = Start("MZ", "CA", "AC", ("inbound", "outbound"))
    assert roles_of(both, {}) == (LegRole.CALLER, LegRole.CALLEE)
    assert roles_of(both, {"roles": "customer,agent"}) == (LegRole.CUSTOMER, LegRole.AGENT)
    outbound = Start("MZ", "CA", "AC", ("outbound",))
    assert roles_of(outbound, {}) == (LegRole.CALLEE,)
    assert roles_of(outbound, {"roles": "customer,agent"}) == (LegRole.AGENT,)
    assert roles_of(outbound, {"roles": "agent"}) == (LegRole.AGENT,)
    with pytest.raises(RemoteProtocolError, match="name two"):
        roles_of(both, {"roles": "agent"})
    with pytest.raises(RemoteProtocolError, match="unknown role"):
        roles_of(both, {"roles": "boss,agent"})


def test_signatures_are_what_the_twilio_library_computes_for_the_url() -> None:
    validator = RequestValidator("token-1")
    url = "wss://bridge.example.com/twilio"
    signature = validator.compute_signature(url, {})
    assert signature_matches("token-1", url, signature)
    assert not signature_matches("token-2", url, signature)
    assert not signature_matches("token-1", url + "x", signature)
    # Signed with the default port, checked without it, and the other way round.
    with_port = validator.compute_signature("wss://bridge.example.com:443/twilio", {})
    assert signature_matches("token-1", url, with_port)
    assert signature_matches("token-1", "wss://bridge.example.com:443/twilio", signature)
    # Not with another port (the library's own validate() tries :80 for wss, a quirk).
    assert not signature_matches("token-1", "wss://bridge.example.com:8443/twilio", signature)
    assert not signature_matches("token-1", url, "")
