"""The engine's websocket server over real sockets, with a scripted recognizer (no model)."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from bridge.engine import EngineConfig, RunningEngine, start_engine_server
from bridge.engine.bench import stream_utterance
from bridge.engine.recognizer import ScriptedRecognizer, TimedWord
from bridge.errors import ConfigError

WORDS = [TimedWord(" hello", 16000, 20000), TimedWord(" world.", 20000, 26000)]


@pytest.fixture
async def engine() -> AsyncIterator[RunningEngine]:
    recognizer = ScriptedRecognizer(WORDS)
    running = await start_engine_server(
        EngineConfig(max_model_len=2048, max_legs=2, word_anchor="end"), recognizer=recognizer
    )
    try:
        yield running
    finally:
        await running.close()


async def open_session(engine: RunningEngine, model: str | None = None) -> ClientConnection:
    ws = await connect(engine.url)
    created = json.loads(await ws.recv())
    assert created["type"] == "session.created"
    assert created["id"].startswith("sess-") and len(created["id"]) == 21
    await ws.send(json.dumps({"type": "session.update", "model": model or engine.model}))
    return ws


def append(samples: int) -> str:
    audio = base64.b64encode(bytes(2 * samples)).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


async def until_done(ws: ClientConnection) -> tuple[list[str], dict[str, object]]:
    deltas = []
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if event["type"] == "transcription.delta":
            deltas.append(event["delta"])
        elif event["type"] == "transcription.done":
            return deltas, event
        else:
            raise AssertionError(event)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def test_words_land_on_the_step_of_their_end_plus_delay(engine: RunningEngine) -> None:
    result = await stream_utterance(engine.url, engine.model, bytes(2 * 16000 * 3))
    assert len(result.deltas) == (12760 + 48000) // 1280 + 1 == 48
    # " hello" ends at 20000: first step with 9000 + 1280 k >= 20000 + 7680 is k = 15.
    assert [(k, d) for k, d in enumerate(result.deltas) if d] == [(15, " hello"), (20, " world.")]
    assert result.done is not None
    assert result.done["text"] == " hello world." == result.text
    assert result.done["usage"] == {
        "prompt_tokens": 39,
        "total_tokens": 87,
        "completion_tokens": 48,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }
    # Read back like the bridge: 562.5 + 80 k - 480 ms lands on the word's end (+ < 80 ms).
    times = dict(result.word_times_ms())
    assert 1250 <= times["hello"] < 1330 and 1625 <= times["world."] < 1705


async def test_session_reuse_and_audio_after_final_dropped(engine: RunningEngine) -> None:
    ws = await open_session(engine)
    await ws.send('{"type":"input_audio_buffer.commit"}')
    await ws.send(append(16000))
    await ws.send('{"type":"input_audio_buffer.commit","final":true}')
    await ws.send(append(32000))  # between final and done: dropped
    deltas, done = await until_done(ws)
    assert len(deltas) == 23 and done["text"] == "".join(deltas)
    await ws.send('{"type":"input_audio_buffer.commit"}')
    await ws.send('{"type":"input_audio_buffer.commit","final":true}')
    deltas, done = await until_done(ws)
    assert deltas == [] and done["usage"]["total_tokens"] == 0  # type: ignore[index]
    await ws.close()


async def test_deltas_follow_the_audio_while_streaming(engine: RunningEngine) -> None:
    ws = await open_session(engine)
    await ws.send('{"type":"input_audio_buffer.commit"}')
    await ws.send(append(16000))  # 1 s: 6 deltas, then the generation waits for audio
    got = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(6)]
    assert [e["type"] for e in got] == ["transcription.delta"] * 6
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.3)
    await ws.close()


async def test_steps_wait_until_the_recognizer_knows_their_text() -> None:
    # This recognizer needs 1 s of audio after a point before it has decoded up to it.
    recognizer = ScriptedRecognizer(WORDS, lag_samples=16000)
    running = await start_engine_server(EngineConfig(), recognizer=recognizer)
    try:
        ws = await open_session(running)
        await ws.send('{"type":"input_audio_buffer.commit"}')
        await ws.send(append(16000))  # 6 steps are due, but nothing is decoded yet
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)
        await ws.send(append(16000))  # decoded to 1 s: steps ending by 1 s + 480 ms may go
        got = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(12)]
        assert {e["delta"] for e in got} == {""}
        with pytest.raises(TimeoutError):  # the next step could still get " hello"
            await asyncio.wait_for(ws.recv(), 0.3)
        await ws.send('{"type":"input_audio_buffer.commit","final":true}')
        deltas, done = await until_done(ws)
        assert len(deltas) == 35 - 12 and done["text"] == " hello world."
        await ws.close()
    finally:
        await running.close()


async def test_max_model_len_sends_an_unsolicited_done() -> None:
    recognizer = ScriptedRecognizer()
    running = await start_engine_server(EngineConfig(max_model_len=60), recognizer=recognizer)
    try:
        ws = await open_session(running)
        await ws.send('{"type":"input_audio_buffer.commit"}')
        await ws.send(append(16000 * 5))
        deltas, done = await until_done(ws)
        assert len(deltas) == 21 and done["usage"]["total_tokens"] == 60  # type: ignore[index]
        await ws.send('{"type":"input_audio_buffer.commit"}')  # the same socket goes on
        await ws.send(append(16000))
        await ws.send('{"type":"input_audio_buffer.commit","final":true}')
        deltas, _ = await until_done(ws)
        assert len(deltas) == 21  # capped again: 23 would exceed 60 - 39
        await ws.close()
    finally:
        await running.close()


async def test_errors_keep_the_socket_open(engine: RunningEngine) -> None:
    ws = await connect(engine.url)
    await ws.recv()
    await ws.send('{"type":"input_audio_buffer.commit"}')
    assert json.loads(await ws.recv())["code"] == "model_not_validated"
    await ws.send('{"type":"session.update","model":"nope"}')
    assert json.loads(await ws.recv()) == {
        "type": "error",
        "error": "The model `nope` does not exist.",
        "code": "model_not_found",
    }
    await ws.send("{not json")
    assert await ws.recv() == '{"type":"error","error":"Invalid JSON","code":"invalid_json"}'
    await ws.send('{"type":"session.update","model":""}')  # an empty name passes
    await ws.send('{"type":"input_audio_buffer.commit"}')
    await ws.send('{"type":"input_audio_buffer.commit","final":true}')
    deltas, done = await until_done(ws)
    assert deltas == [] and done["text"] == ""
    await ws.close()


async def test_binary_frame_drops_the_connection_without_close_frame(
    engine: RunningEngine,
) -> None:
    ws = await open_session(engine)
    await ws.send(b"\x00\x01")
    with pytest.raises(ConnectionClosedError) as caught:
        await asyncio.wait_for(ws.recv(), 5)
    assert caught.value.rcvd is None  # no close frame: the client sees 1006
    # The server is fine.
    assert (await stream_utterance(engine.url, engine.model, bytes(3200))).done is not None


async def test_capacity_exceeded_is_an_error_event_not_a_stall(engine: RunningEngine) -> None:
    first, second, third = [await open_session(engine) for _ in range(3)]
    for ws in (first, second):
        await ws.send('{"type":"input_audio_buffer.commit"}')
    await asyncio.sleep(0.05)
    assert engine.legs_in_use == 2
    await third.send('{"type":"input_audio_buffer.commit"}')
    error = json.loads(await asyncio.wait_for(third.recv(), 5))
    assert error["code"] == "capacity_exceeded"
    assert "all 2 legs are in use" in error["error"]
    await first.close()  # a leg frees when its connection closes
    await asyncio.sleep(0.1)
    assert engine.legs_in_use == 1
    await third.send('{"type":"input_audio_buffer.commit"}')
    await third.send(append(1600))
    await third.send('{"type":"input_audio_buffer.commit","final":true}')
    deltas, _ = await until_done(third)
    assert len(deltas) == (12760 + 1600) // 1280 + 1
    await second.close()
    await third.close()


async def test_recognizer_failure_is_a_processing_error() -> None:
    class Broken(ScriptedRecognizer):
        def open_stream(self, language=None):  # type: ignore[no-untyped-def]
            stream = super().open_stream(language)

            def decode() -> None:
                raise RuntimeError("decoder exploded at /usr/lib/libct2.so")

            stream.decode = decode  # type: ignore[method-assign]
            return stream

    running = await start_engine_server(EngineConfig(), recognizer=Broken())
    try:
        ws = await open_session(running)
        await ws.send('{"type":"input_audio_buffer.commit"}')
        await ws.send(append(1600))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error == {
            "type": "error",
            "error": "decoder exploded at <path>",
            "code": "processing_error",
        }
        await ws.send('{"type":"input_audio_buffer.commit"}')  # a new generation may start
        await ws.close()
    finally:
        await running.close()


async def test_http_routes(engine: RunningEngine) -> None:
    status, _, body = await asyncio.to_thread(get, engine.http_url + "/health")
    assert (status, body) == (200, "")
    status, kind, body = await asyncio.to_thread(get, engine.http_url + "/v1/models")
    assert (status, kind) == (200, "application/json")
    models = json.loads(body)
    assert models["object"] == "list"
    (card,) = models["data"]
    assert card["id"] == engine.model == "whisper-base"
    assert card["object"] == "model" and card["owned_by"] == "vllm"
    assert card["parent"] is None and card["max_model_len"] == 2048 and card["root"] == "scripted"
    assert list(card) == [
        "id",
        "object",
        "created",
        "owned_by",
        "root",
        "parent",
        "max_model_len",
        "permission",
    ]
    assert card["permission"][0]["object"] == "model_permission"
    assert card["permission"][0]["id"].startswith("modelperm-")
    assert body.startswith('{"object":"list","data":[{"id":"whisper-base","object":"model"')
    status, _, body = await asyncio.to_thread(get, engine.http_url + "/nope")
    assert (status, body) == (404, '{"detail":"Not Found"}')


async def test_api_key_guards_v1_like_vllm() -> None:
    running = await start_engine_server(
        EngineConfig(api_key="s3cret"), recognizer=ScriptedRecognizer()
    )
    try:
        status, kind, body = await asyncio.to_thread(get, running.http_url + "/v1/models")
        assert (status, kind, body) == (401, "application/json", '{"error":"Unauthorized"}')
        status, _, _ = await asyncio.to_thread(get, running.http_url + "/health")
        assert status == 200  # not guarded
        ok = {"Authorization": "Bearer s3cret"}
        status, _, _ = await asyncio.to_thread(get, running.http_url + "/v1/models", ok)
        assert status == 200
        with pytest.raises(InvalidStatus) as caught:
            await connect(running.url)
        assert caught.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            await connect(running.url, additional_headers={"Authorization": "Bearer nope"})
        result = await stream_utterance(running.url, running.model, bytes(3200), headers=ok)
        assert result.done is not None
    finally:
        await running.close()


async def test_session_language_reaches_the_recognizer() -> None:
    recognizer = ScriptedRecognizer()
    running = await start_engine_server(EngineConfig(), recognizer=recognizer)
    try:
        ws = await open_session(running)
        update = {"type": "session.update", "model": running.model, "language": "fr"}
        await ws.send(json.dumps(update))
        await ws.send('{"type":"input_audio_buffer.commit"}')
        await ws.send('{"type":"input_audio_buffer.commit","final":true}')
        await until_done(ws)
        assert recognizer.languages == ["fr"]
        await ws.close()
    finally:
        await running.close()


def test_config_validation_names_the_problem() -> None:
    with pytest.raises(ConfigError, match="multiple of 80"):
        EngineConfig(transcription_delay_ms=500)
    with pytest.raises(ConfigError, match="max_legs"):
        EngineConfig(max_legs=0)
    assert EngineConfig(model="tiny.en").model_name == "whisper-tiny.en"
    assert EngineConfig(model="/x/models/whisper-base").model_name == "whisper-base"
    assert EngineConfig(served_model_name="asr").model_name == "asr"
