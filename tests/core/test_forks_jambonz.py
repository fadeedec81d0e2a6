"""jambonz listen start frames, custom speech control messages, Basic auth (core.forks.jambonz)."""

from __future__ import annotations

import base64
import json

import pytest

from bridge.core.forks.jambonz import (
    SttOther,
    SttStart,
    SttStop,
    basic_credentials,
    read_listen_dtmf,
    read_listen_start,
    read_stt_control,
    stt_role,
    transcription,
)
from bridge.core.types import LegRole
from bridge.errors import RemoteProtocolError

# listen.js: Object.assign({sampleRate, mixType}, callInfo, metadata)
START = {
    "sampleRate": 16000,
    "mixType": "stereo",
    "callSid": "aad0115d-ec21-40db-aa02-31b7b01540c5",
    "direction": "inbound",
    "from": "+15083084809",
    "to": "+15083728363",
    "accountSid": "4bfe85c1-96bb-4af7-ac83-68fe7ebd562d",
    "agent": "alice",  # the verb's metadata, merged flat
}


def test_listen_start_names_the_call_rate_mix_and_keeps_every_attribute() -> None:
    start = read_listen_start(json.dumps(START), {})
    assert start.call_sid == START["callSid"] and start.rate_hz == 16000
    assert (start.mix, start.roles) == ("stereo", (LegRole.CALLER, LegRole.CALLEE))
    assert start.attributes == START
    assert start.title == "jambonz +15083084809 → +15083728363"


def test_listen_defaults_are_mono_8k_and_mixed_is_one_speaker() -> None:
    plain = read_listen_start("{}", {})
    assert (plain.call_sid, plain.rate_hz, plain.roles) == (None, 8000, (LegRole.CALLER,))
    assert plain.title == "jambonz call"
    mixed = read_listen_start('{"mixType": "mixed", "sampleRate": "24000"}', {})
    assert (mixed.roles, mixed.rate_hz) == ((LegRole.SPEAKER,), 24000)
    named = read_listen_start('{"mixType": "stereo"}', {"roles": "agent,customer"})
    assert named.roles == (LegRole.AGENT, LegRole.CUSTOMER)


@pytest.mark.parametrize(
    ("text", "query", "message"),
    [
        ("not json", {}, "not JSON"),
        ("[1]", {}, "not a JSON object"),
        ("x" * 70_000, {}, "at most"),
        ('{"mixType": "quad"}', {}, "expected mono, stereo or mixed"),
        ('{"sampleRate": 4000}', {}, "8000..64000"),
        ('{"sampleRate": 96000}', {}, "8000..64000"),
        ('{"sampleRate": true}', {}, "not a sample rate"),
        ('{"sampleRate": "16k"}', {}, "not a sample rate"),
        ('{"callSid": 5}', {}, "callSid"),
        ('{"callSid": "a\\u0000b"}', {}, "callSid"),
        ('{"mixType": "stereo"}', {"roles": "agent"}, "name a role for each"),
        ("{}", {"roles": "boss"}, "unknown role"),
    ],
)
def test_bad_listen_starts_are_protocol_errors(
    text: str, query: dict[str, str], message: str
) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        read_listen_start(text, query)


def test_listen_dtmf_is_read_and_other_text_is_not_a_digit() -> None:
    assert read_listen_dtmf('{"event": "dtmf", "dtmf": "5", "duration": 1280}') == "5"
    assert read_listen_dtmf('{"event": "dtmf", "dtmf": "55"}') is None
    assert read_listen_dtmf('{"event": "other"}') is None
    assert read_listen_dtmf("{") is None


def test_basic_credentials() -> None:
    token = base64.b64encode(b"jambonz:s3cr:et").decode()
    assert basic_credentials(f"Basic {token}") == ("jambonz", "s3cr:et")
    assert basic_credentials(f"basic {token}") == ("jambonz", "s3cr:et")
    assert basic_credentials("Bearer abc") is None
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials("Basic " + base64.b64encode(b"nocolon").decode()) is None
    assert basic_credentials("Basic " + base64.b64encode(b"\xff:x").decode()) is None
    assert basic_credentials(None) is None


def test_stt_start_as_mod_jambonz_transcribe_sends_it() -> None:
    text = (
        '{"type":"start","language":"en-US","format":"raw","encoding":"LINEAR16",'
        '"interimResults":true,"sampleRateHz":8000,"options":{"hints":["invoice"]}}'
    )
    start = read_stt_control(text)
    assert start == SttStart("en-US", 8000, True, {"hints": ["invoice"]}, None)
    with_sid = read_stt_control('{"type": "start", "callSid": "c1"}')
    assert isinstance(with_sid, SttStart) and with_sid.call_sid == "c1"
    assert read_stt_control('{"type":"stop"}') == SttStop()
    assert read_stt_control('{"type":"resume"}') == SttOther("resume")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stop", "not JSON"),
        ('{"type": "start", "encoding": "MULAW"}', "LINEAR16"),
        ('{"type": "start", "format": "wav"}', "raw"),
        ('{"type": "start", "sampleRateHz": 1}', "8000..64000"),
        ('{"type": "start", "interimResults": "yes"}', "true or false"),
        ('{"type": "start", "options": []}', "options"),
        ('{"type": "start", "language": 7}', "language"),
        ('{"type": "start", "callSid": "' + "x" * 200 + '"}', "callSid"),
    ],
)
def test_bad_stt_control_messages_are_protocol_errors(text: str, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        read_stt_control(text)


def test_stt_role_and_transcription_message() -> None:
    assert stt_role({}) is LegRole.CALLER
    assert stt_role({"role": "agent"}) is LegRole.AGENT
    assert stt_role({"roles": "customer"}) is LegRole.CUSTOMER
    with pytest.raises(RemoteProtocolError, match="role"):
        stt_role({"role": "boss"})
    assert transcription("hello there", final=True, language="en-US") == {
        "type": "transcription",
        "is_final": True,
        "alternatives": [{"transcript": "hello there", "confidence": 1.0}],
        "language": "en-US",
        "channel": 1,
    }
