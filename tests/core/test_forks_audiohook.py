"""Genesys AudioHook v2: the session state machine, media choice, durations, signatures
(bridge.core.forks.audiohook, bridge.core.forks.httpsig)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from bridge.core.forks import httpsig
from bridge.core.forks.audiohook import (
    Media,
    Session,
    choose_media,
    format_duration,
    parse_duration,
    read_open,
)
from bridge.errors import RemoteProtocolError

SESSION = "30b0e395-84d3-4570-ac13-9a62d8f514c0"
ORG = "d7934305-0972-4844-938e-9060eef73d05"
CONVERSATION = "e160e428-53e2-487c-977d-96989bf5c99d"
PCMU_STEREO = {
    "type": "audio",
    "format": "PCMU",
    "channels": ["external", "internal"],
    "rate": 8000,
}


def client(kind: str, seq: int, serverseq: int = 0, **parameters: Any) -> str:
    return json.dumps(
        {
            "version": "2",
            "id": SESSION,
            "type": kind,
            "seq": seq,
            "serverseq": serverseq,
            "position": "PT0S",
            "parameters": parameters,
        }
    )


def open_params(media: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "organizationId": ORG,
        "conversationId": CONVERSATION,
        "participant": {"id": SESSION, "ani": "+4930123", "aniName": "Ann", "dnis": "+4940999"},
        "media": [PCMU_STEREO] if media is None else media,
        "language": "en-US",
        "customConfig": {"team": "billing"},
    }


@pytest.mark.parametrize(
    ("text", "seconds"), [("PT1.5S", 1.5), ("PT0S", 0.0), ("PT.25S", 0.25), ("PT12S", 12.0)]
)
def test_durations_are_iso_8601_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text, what="position") == seconds
    assert parse_duration(format_duration(seconds), what="x") == seconds


@pytest.mark.parametrize(
    "text",
    ["PT1.5", "P1S", "PT-1S", "PT٣S", "PT1e3S", "PT" + "9" * 40 + "S", "", 5, None, "PT1,5S"],
)
def test_bad_durations_are_protocol_errors(text: object) -> None:
    with pytest.raises(RemoteProtocolError, match="start: .* is not an ISO 8601 duration"):
        parse_duration(text, what="start")


def test_media_prefers_both_parties_then_pcmu_and_keeps_the_channel_order() -> None:
    l16 = {**PCMU_STEREO, "format": "L16"}
    mono = {**PCMU_STEREO, "channels": ["external"]}
    assert choose_media([l16, mono, PCMU_STEREO]) == Media("PCMU", ("external", "internal"))
    assert choose_media([mono, l16]) == Media("L16", ("external", "internal"))
    swapped = {**PCMU_STEREO, "channels": ["internal", "external"]}
    assert choose_media([swapped]) == Media("PCMU", ("internal", "external"))
    assert choose_media([{"type": "video"}, mono]) == Media("PCMU", ("external",))
    assert choose_media([]) is None


@pytest.mark.parametrize(
    "offer",
    [
        [{**PCMU_STEREO, "rate": 16000}],
        [{**PCMU_STEREO, "rate": True}],
        [{**PCMU_STEREO, "format": "opus"}],
        [{**PCMU_STEREO, "channels": ["external", "external"]}],
        [{**PCMU_STEREO, "channels": []}],
        ["PCMU"],
    ],
)
def test_offers_the_bridge_cannot_take_are_refused_with_a_reason(offer: list[object]) -> None:
    with pytest.raises(RemoteProtocolError, match="no offered media format the bridge takes"):
        choose_media(offer)
    with pytest.raises(RemoteProtocolError, match="must be a list"):
        choose_media({"format": "PCMU"})


def test_open_then_opened_and_ping_pong_count_both_sides() -> None:
    session = Session()
    message = session.receive(client("open", 1, **open_params()))
    opening = read_open(message.parameters)
    assert (opening.conversation_id, opening.participant["ani"]) == (CONVERSATION, "+4930123")
    assert opening.metadata()["customConfig"] == {"team": "billing"} and not opening.probe
    opened = session.opened(opening.media)
    assert opened == {
        "version": "2",
        "type": "opened",
        "id": SESSION,
        "seq": 1,
        "clientseq": 1,
        "parameters": {"media": [PCMU_STEREO], "startPaused": False},
    }
    session.check_audio(bytes(1600))
    assert session.receive(client("ping", 2, serverseq=1)).type == "ping"
    pong = session.reply("pong")
    assert (pong["type"], pong["seq"], pong["clientseq"], pong["parameters"]) == ("pong", 2, 2, {})
    assert session.receive(client("close", 3, serverseq=2, reason="end")).type == "close"
    assert session.closed()["seq"] == 3 and session.state == "closed"


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        (["{"], "not valid JSON"),
        (["[1]"], "not a JSON object"),
        ([client("open", 1).replace('"2"', '"1"', 1)], "version '1'"),
        ([client("open", 2)], "seq 2 after 0"),
        ([client("ping", 1), client("ping", 1)], "seq 1 after 1"),
        ([client("ping", 1, serverseq=4)], "serverseq 4 is above the server's 0"),
        ([client("ping", 1), client("ping", 2).replace(SESSION, ORG)], "not this session's"),
        ([client("paused", 1)], "paused before open"),
        ([client("hello", 1)], "'hello' is not a client message type"),
        ([client("ping", 1).replace('"seq": 1', '"seq": true')], "seq: must be"),
        ([client("ping", 1).replace("PT0S", "PT0,5S")], "position"),
        ([client("ping", 1, pad="x" * 70_000)], "at most 64K"),
        ([client("ping", 1).replace(SESSION, "not-a-uuid")], "id: must be the session UUID"),
    ],
)
def test_bad_messages_are_protocol_errors(messages: list[str], error: str) -> None:
    session = Session()
    with pytest.raises(RemoteProtocolError, match=error):
        for text in messages:
            session.receive(text)


def test_a_second_open_and_audio_out_of_place_are_refused() -> None:
    session = Session()
    with pytest.raises(RemoteProtocolError, match="audio while the session is new"):
        session.check_audio(bytes(160))
    session.receive(client("open", 1, **open_params()))
    session.opened(Media("PCMU", ("external", "internal")))
    with pytest.raises(RemoteProtocolError, match="3 bytes .* 2-channel PCMU"):
        session.check_audio(bytes(3))
    with pytest.raises(RemoteProtocolError, match="a second open"):
        session.receive(client("open", 2, serverseq=1, **open_params()))
    l16 = Session(state="open", media=Media("L16", ("external", "internal")))
    with pytest.raises(RemoteProtocolError, match="6 bytes"):
        l16.check_audio(bytes(6))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"organizationId": "x"}, "organizationId must be a UUID"),
        ({"conversationId": None}, "conversationId must be a UUID"),
        ({"participant": []}, "participant must be an object"),
        ({"participant": {"ani": "\x00"}}, "participant.ani"),
        ({"customConfig": "x"}, "customConfig must be an object"),
        ({"media": [{**PCMU_STEREO, "rate": 44100}]}, "no offered media"),
    ],
)
def test_bad_open_parameters_say_which(change: dict[str, Any], error: str) -> None:
    with pytest.raises(RemoteProtocolError, match=error):
        read_open({**open_params(), **change})


def test_the_null_conversation_is_a_probe() -> None:
    probe = read_open({**open_params([]), "conversationId": "00000000-0000-0000-0000-000000000000"})
    assert probe.probe and probe.media is None


# The AudioHook documentation's signature example, as the reference server's tests use it
# (audiohook-reference-implementation, app/audiohook/test/httpsignature/signature-verifier.test.ts).
DOC_HEADERS = {
    "host": "audiohook.example.com",
    "audiohook-organization-id": ORG,
    "audiohook-session-id": SESSION,
    "audiohook-correlation-id": CONVERSATION,
    "x-api-key": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
    "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "signature-input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" '
    '"audiohook-session-id" "audiohook-correlation-id" "x-api-key");'
    'keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";'
    'alg="hmac-sha256";created=1641013200;expires=3282026430',
}
DOC_KEY = base64.b64decode("TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU=")
DOC_TARGET = "/api/v1/voicebiometrics/ws"


def doc_verify(headers: dict[str, str], key: bytes = DOC_KEY, now: float = 1641013205) -> None:
    httpsig.verify(headers.get, DOC_TARGET, key, now=now, api_key=headers["x-api-key"])


def test_the_documented_signature_verifies_and_any_change_fails() -> None:
    doc_verify(DOC_HEADERS)
    with pytest.raises(httpsig.SignatureError, match="does not match"):
        doc_verify(DOC_HEADERS, key=b"other secret")
    with pytest.raises(httpsig.SignatureError, match="does not match"):
        doc_verify({**DOC_HEADERS, "audiohook-session-id": CONVERSATION})
    with pytest.raises(httpsig.SignatureError, match="older than 10 s"):
        doc_verify(DOC_HEADERS, now=1641013200 + 60)
    with pytest.raises(httpsig.SignatureError, match="created is in the future"):
        doc_verify(DOC_HEADERS, now=1641013100)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"signature": None}, "unsigned"),
        ({"signature-input": "sig1=(;"}, "expected"),
        ({"signature": "sig1=:!!:"}, "not base64"),
        ({"signature": "sig2=:AAAA:"}, "no byte-sequence Signature"),
        ({"x-api-key": "other"}, "keyid is not the X-API-KEY"),
        ({"host": None}, "'@authority' is not in the request"),
    ],
)
def test_bad_signatures_say_why(change: dict[str, str | None], error: str) -> None:
    headers = {k: v for k, v in {**DOC_HEADERS, **change}.items() if v is not None}
    headers.setdefault("x-api-key", "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh")
    with pytest.raises(httpsig.SignatureError, match=error):
        httpsig.verify(
            headers.get, DOC_TARGET, DOC_KEY, now=1641013205, api_key=headers["x-api-key"]
        )


def test_signatures_need_every_component_and_a_long_nonce() -> None:
    parts = [("@request-target", "/audiohook"), ("@authority", "bridge:8081")]
    signed = httpsig.sign(parts, b"k", keyid="key", nonce="n" * 22, created=1000)
    headers = {"host": "bridge:8081", **{k.lower(): v for k, v in signed.items()}}
    with pytest.raises(httpsig.SignatureError, match="does not cover audiohook-organization-id"):
        httpsig.verify(headers.get, "/audiohook", b"k", now=1001, api_key="key")
    short = httpsig.sign(parts, b"k", keyid="key", nonce="n" * 8, created=1000)
    with pytest.raises(httpsig.SignatureError, match="nonce of at least 22"):
        httpsig.verify(
            {**headers, **{k.lower(): v for k, v in short.items()}}.get,
            "/",
            b"k",
            now=1001,
            api_key="key",
        )
