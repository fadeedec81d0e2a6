"""AudioSocket framing (bridge.core.forks.audiosocket) on bytes as Asterisk sends them."""

from __future__ import annotations

import uuid

import pytest

from bridge.core.forks import audiosocket as wire
from bridge.errors import InvalidState, RemoteProtocolError

UID = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")


def test_frames_are_read_whatever_the_byte_boundaries() -> None:
    stream = (
        wire.frame(wire.Kind.UUID, UID.bytes)
        + wire.frame(wire.Kind.AUDIO_SLIN, bytes(range(256)) + bytes(64))
        + wire.frame(wire.Kind.DTMF, b"7")
        + wire.frame(wire.Kind.HANGUP)
    )
    for step in (1, 2, 3, 7, 320, len(stream)):
        reader = wire.FrameReader()
        frames = [
            f for at in range(0, len(stream), step) for f in reader.feed(stream[at : at + step])
        ]
        assert [f.kind for f in frames] == [0x01, 0x10, 0x03, 0x00]
        assert wire.read_uuid(frames[0]) == UID
        assert len(frames[1].payload) == 320 and frames[1].payload[:3] == b"\x00\x01\x02"
        assert wire.read_dtmf(frames[2]) == "7"
        assert reader.pending == 0


def test_a_truncated_frame_is_held_as_pending() -> None:
    reader = wire.FrameReader()
    assert reader.feed(wire.frame(wire.Kind.AUDIO_SLIN, bytes(320))[:200]) == []
    assert reader.pending == 200


def test_a_length_over_the_maximum_is_a_protocol_error_and_closes_the_reader() -> None:
    reader = wire.FrameReader()
    with pytest.raises(RemoteProtocolError, match="announces 65535 bytes"):
        reader.feed(b"\x10\xff\xff" + bytes(10))
    with pytest.raises(InvalidState):
        reader.feed(b"")


@pytest.mark.parametrize(
    ("kind", "rate"),
    [(0x10, 8000), (0x11, 12000), (0x12, 16000), (0x16, 48000), (0x18, 192000), (0x19, None)],
)
def test_audio_kinds_name_their_rate(kind: int, rate: int | None) -> None:
    assert wire.audio_rate(kind) == rate


@pytest.mark.parametrize(
    ("first", "message"),
    [
        (wire.frame(wire.Kind.AUDIO_SLIN, bytes(320)), "first frame must be the UUID"),
        (wire.frame(wire.Kind.UUID, b"short"), "carries 16 bytes, got 5"),
    ],
)
def test_the_first_frame_must_be_a_uuid(first: bytes, message: str) -> None:
    (frame,) = wire.FrameReader().feed(first)
    with pytest.raises(RemoteProtocolError, match=message):
        wire.read_uuid(frame)


@pytest.mark.parametrize("payload", [b"", b"12", b"x", b"\xff"])
def test_a_dtmf_frame_is_one_digit(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="one digit"):
        wire.read_dtmf(wire.Frame(wire.Kind.DTMF, payload))
