"""Conformance of the sans-I/O ``/v1/realtime`` server protocol.

Expected frames are the live-verified ones of vllm-cpu.md §4 and vllm-realtime.md §1.
"""

from __future__ import annotations

import base64
import json

import pytest

from bridge.engine.protocol import (
    AudioEnded,
    AudioReceived,
    Event,
    GenerationStarted,
    RealtimeServerProtocol,
    SendFrame,
    StepClock,
    sanitize_message,
)

MODEL = "whisper-base"


def frames(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, SendFrame)]


def append(samples: int) -> str:
    audio = base64.b64encode(bytes(2 * samples)).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


UPDATE = json.dumps({"type": "session.update", "model": MODEL})
COMMIT = '{"type":"input_audio_buffer.commit"}'
FINAL = '{"type":"input_audio_buffer.commit","final":true}'


def make(**kwargs: object) -> RealtimeServerProtocol:
    options: dict[str, object] = {"model_names": [MODEL], "max_model_len": 131_072}
    options.update(kwargs)
    return RealtimeServerProtocol(**options)  # type: ignore[arg-type]


def run_steps(p: RealtimeServerProtocol, text: str = "") -> list[str]:
    out = []
    while p.steps_ready:
        out.append(p.send_delta(text).text)
    return out


# ---- frames and errors (exact texts verified on a live vLLM, vllm-cpu.md §4.3)


def test_session_created_is_compact_json() -> None:
    frame = make().connection_made("sess-0123456789abcdef", 1795583287)
    assert (
        frame.text == '{"type":"session.created","id":"sess-0123456789abcdef","created":1795583287}'
    )


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        ("{not json", '{"type":"error","error":"Invalid JSON","code":"invalid_json"}'),
        (
            '{"type":"response.create"}',
            '{"type":"error","error":"Unknown event type: response.create","code":"unknown_event"}',
        ),
        ('{"foo":1}', '{"type":"error","error":"Unknown event type: None","code":"unknown_event"}'),
        (
            "[1,2]",
            '{"type":"error","error":"\'list\' object has no attribute \'get\'",'
            '"code":"processing_error"}',
        ),
        (
            COMMIT,
            '{"type":"error","error":"Model not validated. Make sure to validate the model by '
            'sending a session.update event.","code":"model_not_validated"}',
        ),
        (
            FINAL,
            '{"type":"error","error":"Model not validated. Make sure to validate the model by '
            'sending a session.update event.","code":"model_not_validated"}',
        ),
        (
            '{"type":"session.update"}',
            '{"type":"error","error":"Missing required field: model","code":"invalid_event"}',
        ),
        (
            '{"type":"session.update","model":"nope/nope"}',
            '{"type":"error","error":"The model `nope/nope` does not exist.",'
            '"code":"model_not_found"}',
        ),
        (
            '{"type":"session.update","model":"/root/models/whisper"}',
            '{"type":"error","error":"The model `<path>` does not exist.",'
            '"code":"model_not_found"}',
        ),
        (
            '{"type":"input_audio_buffer.append","audio":"!!!not-base64!!!"}',
            '{"type":"error","error":"Invalid audio data","code":"invalid_audio"}',
        ),
        (
            '{"type":"input_audio_buffer.append","audio":"YWJj"}',
            '{"type":"error","error":"Invalid audio data","code":"invalid_audio"}',
        ),
        (
            '{"type":"input_audio_buffer.append","audio":""}',
            '{"type":"error","error":"Invalid audio data","code":"invalid_audio"}',
        ),
        (
            '{"type":"input_audio_buffer.append"}',
            json.dumps(
                {
                    "type": "error",
                    "error": "1 validation error for InputAudioBufferAppend\naudio\n  "
                    "Field required [type=missing, "
                    "input_value={'type': 'input_audio_buffer.append'}, input_type=dict]\n"
                    "    For further information visit "
                    "https://errors.pydantic.dev/2.14/v/missing",
                    "code": "processing_error",
                },
                separators=(",", ":"),
            ),
        ),
    ],
)
def test_error_events(sent: str, answer: str) -> None:
    p = make()
    assert frames(p.receive_text(sent)) == [answer]
    assert not p.generating


def test_session_update_is_silent_and_empty_model_passes() -> None:
    p = make()
    assert p.receive_text(json.dumps({"type": "session.update", "model": ""})) == []
    assert p.model_validated
    assert make().receive_text(UPDATE) == []


def test_session_language_extension() -> None:
    p = make()
    p.receive_text(json.dumps({"type": "session.update", "model": MODEL, "language": "fr"}))
    assert p.language == "fr"
    p.receive_text(json.dumps({"type": "session.update", "model": "nope", "language": "de"}))
    assert p.language == "fr"  # a refused update changes nothing


def test_extra_fields_are_ignored() -> None:
    p = make()
    assert p.receive_text(json.dumps({"type": "session.update", "model": MODEL, "x": 1})) == []
    events = p.receive_text(json.dumps({"type": "input_audio_buffer.commit", "event_id": "e1"}))
    assert events == [GenerationStarted(1)]


def test_invalid_final_value_is_a_processing_error() -> None:
    p = make()
    p.receive_text(UPDATE)
    (frame,) = frames(p.receive_text('{"type":"input_audio_buffer.commit","final":"maybe"}'))
    event = json.loads(frame)
    assert event["code"] == "processing_error"
    assert event["error"].startswith("1 validation error for InputAudioBufferCommit\nfinal\n")
    assert "input_value='maybe', input_type=str" in event["error"]


def test_lax_booleans_like_pydantic() -> None:
    p = make()
    p.receive_text(UPDATE)
    assert p.receive_text('{"type":"input_audio_buffer.commit","final":"no"}') == [
        GenerationStarted(1)
    ]
    assert p.receive_text('{"type":"input_audio_buffer.commit","final":1}') == [AudioEnded(1)]


def test_sanitize_message_redacts_paths_and_addresses() -> None:
    assert sanitize_message("at /home/u/x.py, <obj at 0xdeadbeef>") == "at <path>, <obj>"


# ---- audio queue and generations (vllm-realtime.md §1.5)


def test_append_before_commit_is_queued_then_consumed() -> None:
    p = make()
    assert p.receive_text(append(1280)) == []  # not gated, no event
    p.receive_text(UPDATE)
    events = p.receive_text(COMMIT)
    assert events == [GenerationStarted(1), AudioReceived(1, bytes(2560))]
    assert p.received_samples == 1280


def test_second_commit_during_generation_is_ignored() -> None:
    p = make()
    p.receive_text(UPDATE)
    p.receive_text(COMMIT)
    assert p.receive_text(COMMIT) == []
    assert p.generation == 1


def test_commit_then_final_without_audio_gives_empty_done_with_zero_usage() -> None:
    p = make()
    p.receive_text(UPDATE)
    p.receive_text(COMMIT)
    assert p.receive_text(FINAL) == [AudioEnded(1)]
    assert p.steps_ready == 0 and p.generation_complete
    assert p.send_done().text == (
        '{"type":"transcription.done","text":"","usage":{"prompt_tokens":0,"total_tokens":0,'
        '"completion_tokens":0,"prompt_tokens_details":null,"completion_tokens_details":null}}'
    )
    assert not p.generating


def test_final_before_generation_ends_the_next_one_at_once() -> None:
    p = make()
    p.receive_text(UPDATE)
    p.receive_text(append(16000))
    p.receive_text(FINAL)  # marker waits in the queue
    p.receive_text(append(16000))  # behind the marker: dropped at done
    events = p.receive_text(COMMIT)
    assert events == [GenerationStarted(1), AudioReceived(1, bytes(32000)), AudioEnded(1)]
    assert len(run_steps(p)) == 23
    p.send_done()
    p.receive_text(COMMIT)
    assert p.received_samples == 0  # the queue was cleared


def test_audio_between_final_and_done_is_dropped_and_session_is_reusable() -> None:
    p = make()
    p.receive_text(UPDATE)
    p.receive_text(COMMIT)
    p.receive_text(append(16000))
    p.receive_text(FINAL)
    assert p.receive_text(append(32000)) == []  # queued behind the marker
    assert len(run_steps(p, "x")) == 23
    done = json.loads(p.send_done().text)
    assert done["text"] == "x" * 23
    assert done["usage"] == {
        "prompt_tokens": 39,
        "total_tokens": 62,
        "completion_tokens": 23,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }
    # Same socket, next utterance: a fresh generation with only new audio.
    assert p.receive_text(COMMIT) == [GenerationStarted(2)]
    p.receive_text(append(32000))
    p.receive_text(FINAL)
    assert len(run_steps(p)) == 35


def test_deltas_concatenate_to_done_text() -> None:
    p = make()
    p.receive_text(UPDATE)
    p.receive_text(COMMIT)
    p.receive_text(append(20000))
    p.receive_text(FINAL)
    parts = [" hé", "", "llo €", ""]
    sent = []
    i = 0
    while p.steps_ready:
        sent.append(json.loads(p.send_delta(parts[i % 4]).text)["delta"])
        i += 1
    assert json.loads(p.send_done().text)["text"] == "".join(sent)


def test_send_delta_without_a_ready_step_is_a_bug() -> None:
    p = make()
    with pytest.raises(RuntimeError):
        p.send_delta("")
    with pytest.raises(RuntimeError):
        p.send_done()


def test_failed_generation_sends_processing_error_and_allows_a_new_commit() -> None:
    p = make()
    p.receive_text(UPDATE)
    p.receive_text(COMMIT)
    frame = p.fail_generation("decoder crashed in /usr/lib/x.so")
    assert json.loads(frame.text) == {
        "type": "error",
        "error": "decoder crashed in <path>",
        "code": "processing_error",
    }
    assert p.receive_text(COMMIT) == [GenerationStarted(2)]


# ---- the step clock (vllm-cpu.md §4.1-4.2)


@pytest.mark.parametrize(("seconds", "deltas"), [(1, 23), (2, 35), (3, 48), (10, 135), (0.001, 10)])
def test_delta_count_after_final(seconds: float, deltas: int) -> None:
    samples = int(seconds * 16000)
    assert deltas == (12760 + samples) // 1280 + 1
    p = make()
    p.receive_text(UPDATE)
    p.receive_text(COMMIT)
    p.receive_text(append(samples))
    p.receive_text(FINAL)
    assert len(run_steps(p)) == deltas
    assert p.generation_complete


def test_first_delta_needs_9000_samples_then_one_per_1280() -> None:
    p = make()
    p.receive_text(UPDATE)
    p.receive_text(COMMIT)
    p.receive_text(append(8999))
    assert p.steps_ready == 0
    p.receive_text(append(1))
    assert p.steps_ready == 1
    assert p.next_step_end_samples == 9000
    p.send_delta("")
    p.receive_text(append(1279))
    assert p.steps_ready == 0
    p.receive_text(append(1))
    assert p.steps_ready == 1 and p.next_step_end_samples == 10280


def test_pause_without_final_parks_the_generation() -> None:
    p = make()
    p.receive_text(UPDATE)
    p.receive_text(COMMIT)
    p.receive_text(append(16000))
    assert len(run_steps(p)) == 6  # 1 s: 6 deltas, then nothing until more audio
    assert not p.generation_complete
    p.receive_text(append(16000))
    p.receive_text(FINAL)
    assert len(run_steps(p)) == 29  # 35 in all, the 2 s value


def test_max_model_len_ends_the_generation_unsolicited() -> None:
    p = make(max_model_len=60)  # 60 - 39 = 21 steps
    p.receive_text(UPDATE)
    p.receive_text(COMMIT)
    p.receive_text(append(16000 * 5))
    assert len(run_steps(p)) == 21
    assert p.generation_complete  # no final needed
    done = json.loads(p.send_done().text)
    assert done["usage"]["total_tokens"] == 60
    p.receive_text(append(16000))  # after done: kept for the next generation
    assert p.receive_text(COMMIT) == [GenerationStarted(2), AudioReceived(2, bytes(32000))]


@pytest.mark.parametrize(("delay_ms", "prompt", "first"), [(80, 34, 2600), (480, 39, 9000)])
def test_step_clock_follows_the_delay(delay_ms: int, prompt: int, first: int) -> None:
    clock = StepClock(delay_ms)
    assert clock.prompt_tokens == prompt
    assert clock.first_step_samples == first
    # The total after final does not depend on the delay.
    assert clock.steps_available(16000, ended=True) == 23


def test_step_clock_rejects_odd_delays() -> None:
    with pytest.raises(ValueError, match="multiple of 80"):
        StepClock(500)


# ---- capacity (our addition)


def test_capacity_exceeded_refuses_the_commit_and_keeps_the_socket() -> None:
    p = make(acquire_leg=lambda: False, capacity_message="full")
    p.receive_text(UPDATE)
    assert frames(p.receive_text(COMMIT)) == [
        '{"type":"error","error":"full","code":"capacity_exceeded"}'
    ]
    assert not p.generating and not p.holds_leg


def test_a_leg_is_acquired_once_per_connection() -> None:
    calls = []

    def acquire() -> bool:
        calls.append(1)
        return True

    p = make(acquire_leg=acquire)
    p.receive_text(UPDATE)
    p.receive_text(COMMIT)
    p.receive_text(FINAL)
    p.send_done()
    p.receive_text(COMMIT)
    assert len(calls) == 1 and p.holds_leg
