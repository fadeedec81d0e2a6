"""Hostile frames for both sides of the OpenAI dialect (hypothesis, bounded in CI): the engine's
server protocol answers anything with events - never an exception - and every frame it sends is
an OpenAI event; the bridge's client object raises nothing but ``AsrProtocolError`` (what drops a
connection) for whatever a server sends, in any state it can be in."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.core.openai_protocol import OpenAiState, OpenAiTranscription
from bridge.engine.openai_server import OpenAiServerProtocol, SendFrame, TurnCommitted
from bridge.errors import AsrProtocolError

KINDS = [
    "session.update",
    "session.created",
    "session.updated",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "input_audio_buffer.committed",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.segment",
    "conversation.item.input_audio_transcription.failed",
    "error",
]
WORDS = st.sampled_from(["model_not_found", "processing_error", "item_1", "transcription"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | WORDS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
AUDIO = st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode()) | st.text(max_size=30)


@st.composite
def events(draw: st.DrawFn) -> str:
    """A frame: mostly objects with a known type and fields of any shape, sometimes junk."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=40) | JSON.map(json.dumps))
    event: dict[str, Any] = {"type": draw(st.sampled_from(KINDS) | st.text(max_size=12))}
    for key in draw(
        st.lists(
            st.sampled_from(
                [
                    "session",
                    "audio",
                    "item_id",
                    "delta",
                    "transcript",
                    "error",
                    "start",
                    "end",
                    "text",
                ]
            ),
            max_size=4,
        )
    ):
        event[key] = draw(AUDIO if key == "audio" else JSON)
    if event["type"] == "error" and draw(st.booleans()):
        event["error"] = {"code": draw(WORDS), "message": "m"}
    if event["type"] == "session.update" and draw(st.booleans()):
        event["session"] = {"type": "transcription"}
    return json.dumps(event)


#: The engine's input: a client's frames.
ENGINE_FRAMES = st.lists(events(), max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ENGINE_FRAMES)
def test_the_engine_answers_anything_with_openai_events(frames: list[str]) -> None:
    protocol = OpenAiServerProtocol(["whisper-base"])
    json.loads(protocol.connection_made().text)
    for frame in frames:
        for event in protocol.receive_text(frame):
            if isinstance(event, SendFrame):
                sent = json.loads(event.text)
                assert isinstance(sent["type"], str) and sent["event_id"]
            else:
                assert isinstance(event, TurnCommitted) and len(event.pcm16) % 2 == 0


#: What the leg and the adapter do between the server's frames: speech, quiet, a turn ended or
#: dropped by hand, the socket lost and opened again (``reopen``), the leg's end.
ACTIONS = ["speech", "quiet", "end_turn", "drop_turn", "reopen", "end"]
SCRIPT = [
    '{"type": "session.created", "event_id": "e", "session": {"type": "transcription"}}',
    '{"type": "session.updated", "event_id": "e", "session": {"type": "transcription"}}',
]


def act(stream: OpenAiTranscription, action: str) -> None:
    if action in ("speech", "quiet"):
        loud = action == "speech"
        stream.send_audio(b"\x10\x27" * 1280 if loud else bytes(2560), speech=loud)
    elif action == "end_turn":
        stream.end_turn()
    elif action == "drop_turn":
        stream.drop_turn()
    elif action == "end":
        stream.end_stream()
    else:
        stream.receive_connection_lost()
        stream.receive_connected()
        for text in SCRIPT:
            stream.receive_message(text)


#: The client's input: the server's frames and the leg's doings, interleaved.
CLIENT_STEPS = st.lists(st.one_of(events(), st.sampled_from(ACTIONS)), max_size=24)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CLIENT_STEPS)
def test_the_client_raises_only_protocol_errors(steps: list[str]) -> None:
    # Short pauses, turns and sessions, so the pause rule, clears and renewals all happen.
    stream = OpenAiTranscription(
        "m", pause_samples=2560, max_turn_samples=12_800, max_session_samples=16_000
    )
    stream.receive_connected()
    for text in SCRIPT:
        stream.receive_message(text)
    for step in steps:
        if stream.state is OpenAiState.CLOSED:  # a permanent error, or the end: the adapter stops
            return
        try:
            if step in ACTIONS:
                act(stream, step)
            else:
                stream.receive_message(step)
        except AsrProtocolError:
            act(stream, "reopen")  # what the adapter does: drop and start again
        stream.data_to_send()
        stream.events_received()
        # What the adapter relies on holds in every state.
        assert stream.samples_unacknowledged >= 0 and stream.samples_in_flight >= 0
        assert not (stream.wants_new_session and stream.awaiting_reply)
