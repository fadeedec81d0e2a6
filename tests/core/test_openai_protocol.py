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

from bridge.core import g711
from bridge.core.asr_protocol import AudioDropped, Closed, ServerError, SessionStarted
from bridge.core.audio import LegAudio
from bridge.core.openai_protocol import (
    MIN_TURN_SAMPLES,
    OpenAiState,
    OpenAiTranscription,
    TurnCompleted,
    TurnDelta,
    TurnSegment,
)
from bridge.core.types import AudioEncoding
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
    wire.completed("b", "second")  # out of order: the first turn's text is still owed
    assert stream.samples_unacknowledged == SECOND
    stream.send_audio(speech(0.04))  # a 40 ms tail: padded to the 100 ms a commit needs
    stream.end_stream()
    wire.take()
    assert stream.state is OpenAiState.STREAMING  # two turns still without their text
    wire.completed("a", "first")
    wire.committed("c")
    wire.completed("c", "")
    assert stream.state is OpenAiState.CLOSED
    ends = [(e.text, e.start, e.end) for e in wire.events if isinstance(e, TurnCompleted)]
    # The tail's text is placed on its 40 ms of speech, not on the silence that pads it.
    assert ends == [("second", 16_000, 24_000), ("first", 0, 16_000), ("", 24_000, 24_640)]
    # ... and padded with silence to the 100 ms a commit needs: 1.5 s + 0.1 s at 24 kHz.
    assert wire_samples(wire.sent) == 36_000 + MIN_TURN_SAMPLES * 3 // 2
    assert wire.events[-1] == Closed("leg ended")
    commits = [f for f in wire.sent if isinstance(f, InputAudioBufferCommitEvent)]
    assert len(commits) == 3


def test_a_lost_connection_replays_every_turn_without_text_as_the_same_turn() -> None:
    stream, wire = session_with_turns(1.0, 0.5)
    wire.delta("b", "par")  # b: committed, a partial shown, no final text yet
    wire.completed("a", "kept")
    stream.send_audio(speech(0.25))
    wire.take()
    stream.receive_connection_lost()
    stream.send_audio(speech(0.25))  # the call goes on meanwhile
    sent_before = len(wire.sent)
    wire.open()
    replay = wire.sent[sent_before:]
    # The new session hears turn b again and commits it at once, then the open turn's 0.5 s.
    kinds = [type(f).__name__ for f in replay]
    assert kinds[0] == "SessionUpdateEvent" and kinds.count("InputAudioBufferCommitEvent") == 1
    wire.committed("b2")
    wire.completed("b2", "partial")
    stream.end_turn()
    wire.take()
    # 0.5 s of b, then the 0.5 s that was open: nothing heard twice.
    assert wire_samples(wire.sent[sent_before:]) == 24_000
    wire.committed("c")
    wire.completed("c", "replayed")
    completed = [
        (e.turn, e.text, e.start, e.end) for e in wire.events if isinstance(e, TurnCompleted)
    ]
    # b keeps its number (2): its partial is replaced by its final, never shown twice.
    assert completed == [
        (1, "kept", 0, SECOND),
        (2, "partial", SECOND, 3 * SECOND // 2),
        (3, "replayed", 3 * SECOND // 2, 2 * SECOND),
    ]


def chunks(stream: OpenAiTranscription, seconds: float, *, voiced: bool) -> None:
    """``seconds`` of tone (``voiced``) or silence in 80 ms chunks, as a leg sends them."""
    audio = speech(seconds) if voiced else bytes(2 * int(seconds * SECOND))
    for i in range(0, len(audio), 2560):
        stream.send_audio(audio[i : i + 2560], speech=voiced)


def test_a_pause_after_speech_ends_the_turn_and_silence_alone_is_cleared_not_committed() -> None:
    stream = OpenAiTranscription("m", pause_samples=SECOND // 2, max_turn_samples=2 * SECOND)
    wire = Wire(stream)
    wire.open()
    chunks(stream, 0.32, voiced=False)
    chunks(stream, 1.0, voiced=True)
    chunks(stream, 0.48, voiced=False)  # not yet a pause
    assert not any(isinstance(f, InputAudioBufferCommitEvent) for f in wire.take())
    chunks(stream, 0.08, voiced=False)  # 560 ms quiet: the turn ends
    assert isinstance(wire.take()[-1], InputAudioBufferCommitEvent)
    chunks(stream, 0.56, voiced=False)  # a turn of silence as long as a pause: cleared
    assert [type(f).__name__ for f in wire.take()][-1] == "InputAudioBufferClearEvent"
    chunks(stream, 2.4, voiced=True)  # no pause: the turn ends at its longest, 2 s
    wire.take()
    assert sum(isinstance(f, InputAudioBufferCommitEvent) for f in wire.sent) == 2
    chunks(stream, 0.16, voiced=False)
    stream.end_stream()  # 0.4 s of speech and 0.16 s quiet left: one last turn
    wire.take()
    for item in ("a", "b", "c"):
        wire.committed(item)
        wire.completed(item, item)
    spans = [(e.start, e.end) for e in wire.events if isinstance(e, TurnCompleted)]
    # Each turn's text is placed on its speech, not on the quiet around it.
    start_b = int(2.44 * SECOND)  # after the cleared silence
    assert spans == [
        (int(0.32 * SECOND), int(1.32 * SECOND)),
        (start_b, start_b + 2 * SECOND),
        (start_b + 2 * SECOND, start_b + int(2.4 * SECOND)),
    ]
    assert stream.state is OpenAiState.CLOSED


def test_a_tail_of_silence_is_not_committed_at_the_end() -> None:
    stream = OpenAiTranscription("m", pause_samples=SECOND)
    wire = Wire(stream)
    wire.open()
    chunks(stream, 0.4, voiced=False)
    stream.end_stream()
    wire.take()
    assert not any(isinstance(f, InputAudioBufferCommitEvent) for f in wire.sent)
    assert stream.state is OpenAiState.CLOSED


def test_a_session_is_renewed_at_a_turn_boundary_once_its_turns_are_done() -> None:
    stream = OpenAiTranscription("m", max_session_samples=2 * SECOND)
    wire = Wire(stream)
    wire.open()
    for item, seconds in (("a", 1.0), ("b", 1.5)):
        stream.send_audio(speech(seconds))
        stream.end_turn()
        wire.committed(item)
    # 2.5 s in: due.  New audio and turns wait; the one in flight completes first.
    stream.send_audio(speech(0.5))
    stream.end_turn()
    sent = len(wire.sent)
    wire.completed("a", "one")
    assert not stream.wants_new_session
    wire.completed("b", "two")
    assert stream.wants_new_session and wire.sent[sent:] == []
    stream.receive_connection_lost()
    assert not stream.wants_new_session
    wire.open()
    # The new session hears only the waiting turn: 0.5 s, committed.
    assert wire_samples(wire.sent[sent:]) == 12_000
    wire.committed("c")
    wire.completed("c", "three")
    starts = [e.start for e in wire.events if isinstance(e, TurnCompleted)]
    assert starts == [0, SECOND, 5 * SECOND // 2]
    assert [e for e in wire.events if isinstance(e, SessionStarted)] == [SessionStarted("")] * 2


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
    assert stream.samples_received == 24_000
    wire = Wire(stream)
    wire.open()  # the second that is left is what a session hears
    stream.end_turn()
    wire.take()
    assert wire_samples(wire.sent) == 24_000


@pytest.mark.parametrize(
    ("encoding", "wire"), [(AudioEncoding.PCMU, "audio/pcmu"), (AudioEncoding.PCMA, "audio/pcma")]
)
def test_g711_from_the_phone_is_passed_through_bit_for_bit(
    encoding: AudioEncoding, wire: str
) -> None:
    # Two seconds of what a phone sends, 20 ms packets, as bytes G.711 can produce (mu-law
    # has two codes for zero; the encoder writes one of them).
    codes = np.random.default_rng(7).integers(0, 256, 16_000, dtype=np.uint8).tobytes()
    decode = g711.decode_ulaw if encoding is AudioEncoding.PCMU else g711.decode_alaw
    encode = g711.encode_ulaw if encoding is AudioEncoding.PCMU else g711.encode_alaw
    sent = encode(decode(codes))
    audio = LegAudio(8000, encoding)
    stream = OpenAiTranscription("m", wire_format=wire)
    wire_side = Wire(stream)
    wire_side.open()
    assert json.loads(wire_side.raw[0])["session"]["audio"]["input"]["format"] == {"type": wire}
    for i in range(0, len(sent), 160):
        audio.receive_frame(sent[i : i + 160])
        for chunk in audio.chunks_ready():
            stream.send_audio(chunk)
    stream.end_turn()
    wire_side.take()
    on_wire = b"".join(
        base64.b64decode(f.audio)
        for f in wire_side.sent
        if isinstance(f, InputAudioBufferAppendEvent)
    )
    # The half-band filter's 19 samples (2.4 ms) of delay are silence at the start; the bytes
    # the phone sent follow, unchanged, up to what the filter still holds.
    silence = encode(np.zeros(19, dtype=np.int16))
    assert on_wire == silence + sent[: len(sent) - 19]
