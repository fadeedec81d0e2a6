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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), max_size=12))
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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), max_size=12), st.integers(0, 3))
def test_the_client_raises_only_protocol_errors(frames: list[str], turns: int) -> None:
    stream = OpenAiTranscription("m")
    stream.receive_connected()
    script = [
        '{"type": "session.created", "event_id": "e", "session": {"type": "transcription"}}',
        '{"type": "session.updated", "event_id": "e", "session": {"type": "transcription"}}',
    ]
    for text in script:
        stream.receive_message(text)
    for _ in range(turns):
        stream.send_audio(bytes(3200))
        stream.end_turn()
    for frame in frames:
        if stream.state is OpenAiState.CLOSED:  # a permanent error: the adapter stops here
            return
        try:
            stream.receive_message(frame)
        except AsrProtocolError:
            stream.receive_connection_lost()  # what the adapter does: drop and start again
            stream.receive_connected()
            for text in script:
                stream.receive_message(text)
        stream.data_to_send()
        stream.events_received()
