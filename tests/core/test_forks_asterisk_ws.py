"""Asterisk chan_websocket control messages (bridge.core.forks.asterisk_ws).

The texts are what ``channels/chan_websocket.c`` prints (``_create_event_MEDIA_START`` and the
other ``_create_event_*`` functions) in both control formats.
"""

from __future__ import annotations

import json

import pytest

from bridge.core.forks.asterisk_ws import (
    Control,
    UnsupportedFormat,
    pairing,
    read_control,
    read_dtmf,
    read_media_start,
)
from bridge.core.types import AudioEncoding, LegRole
from bridge.errors import RemoteProtocolError

JSON_START = {
    "event": "MEDIA_START",
    "connection_id": "bridge",
    "channel": "WebSocket/bridge/0x7f0c2c001234",
    "channel_id": "1761245643.1",
    "format": "ulaw",
    "optimal_frame_size": 160,
    "ptime": 20,
    "channel_variables": {"__BRIDGE_CALL": "c-1", "BRIDGE_ROLE": "callee", "AGENT": "alice"},
}


def test_json_media_start_keeps_every_field_and_unknown_keys() -> None:
    start = read_media_start(json.dumps(JSON_START | {"codec_detail": {"x": 1}}))
    assert (start.connection_id, start.channel, start.channel_id) == (
        "bridge",
        "WebSocket/bridge/0x7f0c2c001234",
        "1761245643.1",
    )
    assert (start.format, start.rate_hz, start.encoding) == ("ulaw", 8000, AudioEncoding.PCMU)
    assert (start.optimal_frame_size, start.ptime_ms, start.json) == (160, 20, True)
    assert start.channel_variables["AGENT"] == "alice"
    assert start.variable("BRIDGE_CALL") == "c-1" and start.extra == {"codec_detail": {"x": 1}}


def test_plain_text_media_start_new_and_legacy_forms() -> None:
    new = read_media_start(
        "MEDIA_START connection_id:bridge channel:WebSocket/bridge/0x1 channel_id:17.2 "
        "format:slin16 optimal_frame_size:640 ptime:20 future_key:yes"
    )
    assert (new.format, new.rate_hz, new.encoding, new.json) == (
        "slin16",
        16000,
        AudioEncoding.PCM16,
        False,
    )
    assert (new.channel_id, new.optimal_frame_size, new.extra) == (
        "17.2",
        640,
        {"future_key": "yes"},
    )
    legacy = "MEDIA_START connection_id:bridge channel:WebSocket/bridge/0x2 optimal_frame_size:320"
    with pytest.raises(RemoteProtocolError, match="names no format"):
        read_media_start(legacy)
    old = read_media_start(legacy, default_format="slin")
    assert (old.rate_hz, old.channel_id, old.ptime_ms) == (8000, "", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"event": "MEDIA_START", "format": "ulaw"}', "without connection_id"),
        ("MEDIA_START channel:x format:ulaw", "without connection_id"),
        ('{"event": "MEDIA_START", "connection_id": "b"}', "names no format"),
        ('{"event": "MEDIA_START", "connection_id": 5, "format": "ulaw"}', "not a string"),
        ("MEDIA_START connection_id:b format:ulaw optimal_frame_size:²", "optimal_frame_size"),
        ("MEDIA_START connection_id:b format:ulaw optimal_frame_size:-1", "optimal_frame_size"),
        ("MEDIA_START connection_id:b format:ulaw optimal_frame_size:99999999", "optimal_frame"),
        ('{"event":"MEDIA_START","connection_id":"b","format":"ulaw","ptime":0}', "ptime"),
        ('{"event":"MEDIA_START","connection_id":"b","format":"ulaw","ptime":true}', "ptime"),
        ('{"event":"MEDIA_START","connection_id":"b","format":"ulaw","ptime":2.5}', "ptime"),
        (
            '{"event":"MEDIA_START","connection_id":"b","format":"ulaw","channel_variables":[1]}',
            "not an object",
        ),
        (
            '{"event":"MEDIA_START","connection_id":"b","format":"ulaw",'
            '"channel_variables":{"A":{"b":1}}}',
            "'A' is not a string",
        ),
        ("MEDIA_START connection_id:b connection_id:c format:ulaw", "given twice"),
        ("MEDIA_START connection_id:a\x00b format:ulaw", "printable"),
        ('{"event": "MEDIA_START", "connection_id": "b", "format": "ulaw"', "not JSON"),
        ("[1, 2]", "names no event"),
        ('{"connection_id": "b"}', 'without an "event"'),
        ('"MEDIA_START"', "names no event"),
        ("DTMF_END digit:5", "DTMF_END before MEDIA_START"),
        ("media_start connection_id:b", "names no event"),
        ("", "names no event"),
        ("x" * 70_000, "at most 65,500"),
    ],
)
def test_bad_media_starts_are_protocol_errors(text: str, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        read_media_start(text)


@pytest.mark.parametrize("name", ["opus", "g729", "g722", "slin12", "slin96", "ULAW", "x" * 99])
def test_formats_the_bridge_does_not_decode_are_refused_by_name(name: str) -> None:
    with pytest.raises(UnsupportedFormat, match="is not taken: use c\\(slin16\\)"):
        read_media_start(json.dumps(JSON_START | {"format": name}))


def test_every_taken_format_has_its_rate() -> None:
    rates = {
        name: read_media_start(json.dumps(JSON_START | {"format": name})).rate_hz
        for name in ("alaw", "slin", "slin24", "slin32", "slin44", "slin48")
    }
    assert rates == {
        "alaw": 8000,
        "slin": 8000,
        "slin24": 24000,
        "slin32": 32000,
        "slin44": 44100,
        "slin48": 48000,
    }


def test_later_events_in_both_forms() -> None:
    assert read_control('{"event":"DTMF_END","channel_id":"1.2","digit":"#"}') == Control(
        "DTMF_END", {"channel_id": "1.2", "digit": "#"}
    )
    plain = read_control("DTMF_END digit:7 channel_id:1.2")
    assert read_dtmf(plain) == "7" and read_dtmf(Control("DTMF_END", {"digit": "a"})) == "A"
    assert read_control("MEDIA_XOFF") == Control("MEDIA_XOFF", {})
    assert read_control("MEDIA_BUFFERING_COMPLETED id-9") == Control(
        "MEDIA_BUFFERING_COMPLETED", {"id": "id-9"}
    )
    error = read_control("ERROR channel_id:1.2 error_text:Unable to parse JSON command")
    assert error.fields == {"channel_id": "1.2", "error_text": "Unable to parse JSON command"}


@pytest.mark.parametrize("digit", [None, "", "12", "x", 5, "\x00"])
def test_bad_dtmf_digits_are_protocol_errors(digit: object) -> None:
    with pytest.raises(RemoteProtocolError, match="DTMF_END with digit"):
        read_dtmf(Control("DTMF_END", {} if digit is None else {"digit": digit}))


def test_pairing_from_the_url_then_the_channel_variables_then_the_channel() -> None:
    start = read_media_start(json.dumps(JSON_START))
    by_url = pairing(start, {"call": "url-call", "role": "Caller"})
    assert (by_url.key, by_url.role, by_url.shared) == ("url-call", LegRole.CALLER, True)
    by_vars = pairing(start, {})
    assert (by_vars.key, by_vars.role, by_vars.shared) == ("c-1", LegRole.CALLEE, True)
    alone = pairing(read_media_start(json.dumps(JSON_START | {"channel_variables": {}})), {})
    assert (alone.key, alone.role, alone.shared) == ("1761245643.1", None, False)
    keyed = pairing(start, {"call": "k"} | {"role": ""})
    assert keyed.role is LegRole.CALLEE  # the variable stands in for an empty URL role
    with pytest.raises(RemoteProtocolError, match="role 'boss'"):
        pairing(start, {"role": "boss"})
    with pytest.raises(RemoteProtocolError, match="call: at most 128"):
        pairing(start, {"call": "x" * 200})
