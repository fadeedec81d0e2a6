"""The OpenAI transcription session's sans-I/O client (bridge/core/openai_protocol.py), driven by
a scripted server whose every event is built from the ``openai`` package's typed realtime models,
and every frame the client sends validated against its ``RealtimeClientEvent`` union."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent as Completed,
)
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionDeltaEvent as Delta,
)
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionFailedEvent as Failed,
)
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionSegment as SegmentEvent,
)
from openai.types.realtime import (
    InputAudioBufferAppendEvent,
    InputAudioBufferCommitEvent,
    InputAudioBufferCommittedEvent,
    RealtimeClientEvent,
    RealtimeErrorEvent,
    RealtimeServerEvent,
    RealtimeTranscriptionSessionCreateRequest,
    SessionCreatedEvent,
    SessionUpdatedEvent,
    SessionUpdateEvent,
)
from pydantic import BaseModel, TypeAdapter

from bridge.core.asr_protocol import AudioDropped, Closed, ServerError, SessionStarted
from bridge.core.openai_protocol import (
    MIN_TURN_SAMPLES,
    OpenAiState,
    OpenAiTranscription,
    TurnCompleted,
    TurnDelta,
    TurnSegment,
)
from bridge.errors import AsrProtocolError

CLIENT: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
SERVER: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
SECOND = 16_000


def speech(seconds: float) -> bytes:
    t = np.arange(int(seconds * SECOND)) / SECOND
    return (3000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()


class Wire:
    """The server's side: what the client sent (validated), and typed events to send it."""

    def __init__(self, stream: OpenAiTranscription) -> None:
        self.stream = stream
        self.sent: list[BaseModel] = []
        self.raw: list[str] = []
        self.events: list[Any] = []
        self._n = 0

    def take(self) -> list[BaseModel]:
        """The client's frames since the last take, each one a valid RealtimeClientEvent."""
        raw = self.stream.data_to_send()
        self.raw += raw
        frames = [CLIENT.validate_json(frame) for frame in raw]
        self.sent += frames
        self.events += self.stream.events_received()
        return frames

    def send(self, event: BaseModel) -> None:
        text = event.model_dump_json(exclude_none=True)
        SERVER.validate_json(text)  # what the server sends is a valid server event too
        self.stream.receive_message(text)
        self.take()

    def eid(self) -> str:
        self._n += 1
        return f"event_{self._n}"

    def open(self) -> None:
        self.stream.receive_connected()
        session = RealtimeTranscriptionSessionCreateRequest(type="transcription")
        self.send(SessionCreatedEvent(event_id=self.eid(), type="session.created", session=session))
        self.send(SessionUpdatedEvent(event_id=self.eid(), type="session.updated", session=session))

    def committed(self, item: str) -> None:
        self.send(
            InputAudioBufferCommittedEvent(
                event_id=self.eid(), type="input_audio_buffer.committed", item_id=item
            )
        )

    def delta(self, item: str, text: str) -> None:
        self.send(
            Delta(
                event_id=self.eid(),
                type="conversation.item.input_audio_transcription.delta",
                item_id=item,
                delta=text,
            )
        )

    def completed(self, item: str, text: str) -> None:
        self.send(
            Completed(
                event_id=self.eid(),
                type="conversation.item.input_audio_transcription.completed",
                item_id=item,
                content_index=0,
                transcript=text,
                usage={"type": "duration", "seconds": 1.0},  # type: ignore[arg-type]
            )
        )


def wire_samples(frames: list[BaseModel]) -> int:
    """24 kHz samples in the appends among ``frames``."""
    return sum(
        len(base64.b64decode(f.audio)) // 2
        for f in frames
        if isinstance(f, InputAudioBufferAppendEvent)
    )


def session_with_turns(*seconds: float, model: str = "m") -> tuple[OpenAiTranscription, Wire]:
    """A configured session that has committed one turn of speech per ``seconds`` (items a, b,
    ...), none completed."""
    stream = OpenAiTranscription(model)
    wire = Wire(stream)
    wire.open()
    for n, length in enumerate(seconds):
        stream.send_audio(speech(length))
        stream.end_turn()
        wire.committed("abcdefgh"[n])
    return stream, wire


def test_a_turn_from_session_to_completed_text() -> None:
    stream = OpenAiTranscription("gpt-4o-transcribe", language="de", prompt="Telefonat")
    wire = Wire(stream)
    stream.send_audio(speech(0.5))  # before the session: buffered, nothing sent
    stream.receive_connected()
    assert wire.take() == []
    session = RealtimeTranscriptionSessionCreateRequest(type="transcription")
    wire.send(SessionCreatedEvent(event_id="e0", type="session.created", session=session))
    [update] = wire.sent
    assert isinstance(update, SessionUpdateEvent)
    assert update.session.model_dump(exclude_none=True) == {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {
                    "model": "gpt-4o-transcribe",
                    "language": "de",
                    "prompt": "Telefonat",
                },
            }
        },
    }
    # turn_detection and noise_reduction are sent as null: off (model_dump hid them above).
    audio_input = json.loads(wire.raw[0])["session"]["audio"]["input"]
    assert audio_input["turn_detection"] is None and audio_input["noise_reduction"] is None
    assert stream.state is OpenAiState.CONFIGURING and wire_samples(wire.sent) == 0
    wire.send(SessionUpdatedEvent(event_id="e1", type="session.updated", session=session))
    assert wire.events == [SessionStarted("")]
    stream.send_audio(speech(0.5))
    assert stream.end_turn() is True
    frames = wire.take()
    assert isinstance(frames[-1], InputAudioBufferCommitEvent)
    # One second at 16 kHz on the leg clock is exactly one second at 24 kHz on the wire.
    assert wire_samples(wire.sent) == 24_000
    wire.committed("item_1")
    wire.delta("item_1", "Guten ")
    wire.delta("item_1", "Tag")
    assert stream.samples_unacknowledged == SECOND  # kept until the turn's text is final
    wire.completed("item_1", "Guten Tag.")
    assert wire.events[1:] == [
        TurnDelta(1, "Guten ", 0, SECOND),
        TurnDelta(1, "Tag", 0, SECOND),
        TurnCompleted(1, "Guten Tag.", 0, SECOND),
    ]
    assert stream.samples_unacknowledged == 0


def test_turns_stream_while_earlier_ones_are_transcribed_and_the_end_waits_for_all() -> None:
    stream = OpenAiTranscription("m")
    wire = Wire(stream)
    wire.open()
    stream.send_audio(speech(1.0))
    stream.end_turn()
    stream.send_audio(speech(0.5))
    stream.end_turn()
    wire.take()
    wire.committed("a")
    wire.committed("b")
    wire.completed("b", "second")  # out of order: the first turn's audio is still kept
    assert stream.samples_unacknowledged == 24_000
    stream.send_audio(speech(0.04))  # a 40 ms tail: padded to the 100 ms a commit needs
    stream.end_stream()
    wire.take()
    assert stream.state is OpenAiState.STREAMING  # two turns still without their text
    wire.completed("a", "first")
    wire.committed("c")
    wire.completed("c", "")
    assert stream.state is OpenAiState.CLOSED
    ends = [(e.text, e.start, e.end) for e in wire.events if isinstance(e, TurnCompleted)]
    tail_end = 24_000 + MIN_TURN_SAMPLES
    assert ends == [("second", 16_000, 24_000), ("first", 0, 16_000), ("", 24_000, tail_end)]
    assert wire.events[-1] == Closed("leg ended")
    commits = [f for f in wire.sent if isinstance(f, InputAudioBufferCommitEvent)]
    assert len(commits) == 3


def test_a_lost_connection_replays_every_turn_without_text_as_one() -> None:
    stream, wire = session_with_turns(1.0, 0.5)
    wire.completed("a", "kept")  # b: committed, no text yet
    stream.send_audio(speech(0.25))
    wire.take()
    stream.receive_connection_lost()
    stream.send_audio(speech(0.25))  # the call goes on meanwhile
    sent_before = len(wire.sent)
    wire.open()
    replay = wire.sent[sent_before:]
    # The new session hears everything after the completed turn again, as one open turn: no
    # commit until the next pause, and then exactly that 1 s (0.5 + 0.25 + 0.25).
    assert [type(f) for f in replay[:1]] == [SessionUpdateEvent]
    assert replay[1:] and all(isinstance(f, InputAudioBufferAppendEvent) for f in replay[1:])
    stream.end_turn()
    wire.take()
    assert wire_samples(wire.sent[sent_before:]) == 24_000
    wire.committed("c")
    wire.completed("c", "replayed")
    assert [(e.text, e.start, e.end) for e in wire.events if isinstance(e, TurnCompleted)] == [
        ("kept", 0, SECOND),
        ("replayed", SECOND, 2 * SECOND),
    ]


def test_a_failed_turn_is_a_gap_and_the_server_error_is_reported() -> None:
    stream, wire = session_with_turns(1.0)
    wire.send(
        Failed(
            event_id=wire.eid(),
            type="conversation.item.input_audio_transcription.failed",
            item_id="a",
            content_index=0,
            error={"message": "audio too noisy", "type": "transcription_error"},  # type: ignore[arg-type]
        )
    )
    assert AudioDropped(0, SECOND, "transcription failed: audio too noisy") in wire.events
    assert stream.samples_unacknowledged == 0
    wire.send(
        RealtimeErrorEvent(
            event_id=wire.eid(),
            type="error",
            error={"type": "invalid_request_error", "code": "model_not_found", "message": "no m"},  # type: ignore[arg-type]
        )
    )
    [error] = [e for e in wire.events if isinstance(e, ServerError)]
    assert error.error.code == "model_not_found" and not error.error.retryable
    assert stream.state is OpenAiState.CLOSED


def test_server_timed_segments_land_inside_their_turn() -> None:
    stream, wire = session_with_turns(2.0, 1.0, model="gpt-4o-transcribe-diarize")
    wire.send(
        SegmentEvent(
            id="seg_1",
            event_id=wire.eid(),
            type="conversation.item.input_audio_transcription.segment",
            item_id="b",
            content_index=0,
            start=0.25,
            end=0.75,
            speaker="A",
            text="hello",
        )
    )
    assert wire.events[-1] == TurnSegment(2, "hello", 2 * SECOND + 4000, 2 * SECOND + 12000, "A")


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        '{"no": "type"}',
        '{"type": "conversation.item.input_audio_transcription.delta", "item_id": "x", '
        '"delta": "a", "event_id": "e"}',
        '{"type": "input_audio_buffer.committed", "item_id": "x", "event_id": "e"}',
    ],
)
def test_what_a_broken_server_sends_is_a_protocol_error(frame: str) -> None:
    stream = OpenAiTranscription("m")
    Wire(stream).open()
    with pytest.raises(AsrProtocolError):
        stream.receive_message(frame)


def test_events_out_of_order_are_protocol_errors() -> None:
    stream = OpenAiTranscription("m")
    stream.receive_connected()
    with pytest.raises(
        AsrProtocolError, match="session.updated is not allowed in state AWAITING_SESSION"
    ):
        stream.receive_message('{"type": "session.updated", "event_id": "e", "session": {}}')


def test_the_buffer_is_bounded() -> None:
    stream = OpenAiTranscription("m", max_buffer_samples=SECOND)
    stream.send_audio(speech(1.5))  # no connection
    assert stream.events_received() == [
        AudioDropped(0, SECOND // 2, "ASR backlog over the buffer bound")
    ]
    assert stream.samples_unacknowledged == SECOND and stream.samples_received == 24_000
