"""The worker -> main process framing (bridge.sip.wire): pure, no sockets."""

from __future__ import annotations

import pytest

from bridge.errors import RemoteProtocolError
from bridge.sip import wire


@pytest.mark.parametrize(
    "message",
    [
        wire.Ready(worker=2, sip_port=5082, pid=1234),
        wire.CallStarted(
            key=7,
            sip_call_id="1-2@127.0.0.1",
            from_uri='"Ann" <sip:ann@example.com>',
            to_uri="<sip:bridge@127.0.0.1:5080>",
            source="127.0.0.1:5070",
        ),
        wire.CallStarted(
            key=8,
            sip_call_id="x",
            from_uri="<sip:src@sbc>",
            to_uri="<sip:srs@bridge>",
            source="10.0.0.1:5060",
            mode="siprec",
            metadata='<recording xmlns="urn:ietf:params:xml:ns:recording:1"/>',
        ),
        wire.LegStarted(
            key=9,
            call_key=8,
            role="agent",
            label="sip:alice@example.com (Alice)",
            codec="g722/16000",
            rate_hz=16000,
            stream="2",
        ),
        wire.Event(key=8, kind="sip.hold", detail="stream 0 inactive"),
        wire.Frame(key=7, position=160, pcm=bytes(range(256)) * 2 + b"\x00" * 128),
        wire.CallEnded(key=7, cause="bye-remote", status=200, reason="Normal call clearing"),
        wire.CallEnded(key=1, cause="error", status=500, reason="é", frames_dropped=3),
        wire.Admission(full=True),
        wire.Quit(),
    ],
)
def test_every_message_survives_the_round_trip(message: wire.Message) -> None:
    assert wire.decode(wire.encode(message)) == message


def test_an_unknown_mode_is_refused() -> None:
    data = wire.encode(wire.CallStarted(7, "x", "a", "b", "s", mode="direct")).replace(
        b'"direct"', b'"fax"'
    )
    with pytest.raises(RemoteProtocolError, match="unknown mode 'fax'"):
        wire.decode(data)


def test_a_frame_is_a_9_byte_header_and_the_pcm() -> None:
    data = wire.encode_frame(3, 320, b"\x01\x02" * 160)
    assert data[:9] == b"F\x03\x00\x00\x00\x40\x01\x00\x00"
    assert len(data) == 9 + 320


def test_frame_positions_wrap_at_32_bits() -> None:
    frame = wire.decode(wire.encode_frame(1, 2**32 + 5, b""))
    assert frame == wire.Frame(1, 5, b"")


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"", "too short"),
        (b"F\x00", "too short"),
        (b"F\x00\x00\x00\x00\x00", "header is 9"),
        (b"Z\x00\x00\x00\x00{}", "unknown kind"),
        (b"S\x00\x00\x00\x00{not json", "CallStarted message is malformed"),
        (b'E\x00\x00\x00\x00{"cause": 1}', "CallEnded message is malformed"),
    ],
)
def test_garbage_is_a_remote_protocol_error(data: bytes, what: str) -> None:
    with pytest.raises(RemoteProtocolError, match=what):
        wire.decode(data)


@pytest.mark.parametrize(
    "message",
    [
        wire.Dtmf(key=7, digit="5", method="rfc4733", duration_ms=160, position=8160),
        wire.Dtmf(key=1, digit="#", method="info", duration_ms=250, position=0),
        wire.Dtmf(key=2**32 - 1, digit="*", method="rfc4733", duration_ms=0, position=2**32 - 1),
    ],
)
def test_dtmf_survives_the_round_trip(message: wire.Dtmf) -> None:
    data = wire.encode(message)
    assert data[:1] == wire.KIND_DTMF
    assert wire.decode(data) == message


@pytest.mark.parametrize(
    "body",
    [
        b'{"digit":"55","method":"info","duration_ms":1,"position":0}',
        b'{"digit":"5","method":"inband","duration_ms":1,"position":0}',
        b'{"digit":"5","method":"info","duration_ms":-1,"position":0}',
        b'{"digit":"5","method":"info","duration_ms":1,"position":-8}',
        b'{"digit":5,"method":"info","duration_ms":1,"position":0}',
        b'{"digit":"5","method":"info","duration_ms":"1","position":0}',
        b'{"digit":"5","method":"info","position":0}',
        b"[1, 2]",
    ],
)
def test_a_malformed_dtmf_is_a_remote_protocol_error(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="Dtmf message is malformed"):
        wire.decode(wire.CONTROL_HEADER.pack(wire.KIND_DTMF, 3) + body)
