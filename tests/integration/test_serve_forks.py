"""``bridge serve`` with the media forks on: where they listen, a call through each into the
store and the REST API, and a taken port as one ``bridge: error:`` line."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from bridge_cli import bridge
from engine_server import EngineServer
from test_cli_serve import Serving, one_error_line, started  # noqa: F401 (fixture)

from tests.engine import speech
from tests.ingest.peers import AudioSocketPeer, FakeAsterisk, FreeSwitchPeer
from tests.sip.sipp import free_port

pytestmark = pytest.mark.integration
TOKEN = "serve-forks-supervisor"


def forks_env(audiosocket: int, forks: int) -> dict[str, str]:
    return {
        "BRIDGE_AUDIOSOCKET_ENABLED": "1",
        "BRIDGE_AUDIOSOCKET_PORT": str(audiosocket),
        "BRIDGE_FORKS_ENABLED": "1",
        "BRIDGE_FORKS_PORT": str(forks),
        "BRIDGE_FORKS_SECRET": "s3cret",
        "BRIDGE_API_TOKENS": f"{TOKEN}:supervisor",
    }


def calls(http_port: int) -> list[dict[str, object]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/api/v1/calls",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return list(json.loads(response.read())["calls"])


def test_serve_takes_audiosocket_and_freeswitch_calls(
    engine_server: EngineServer,
    tmp_path: Path,
    started: list[Serving],  # noqa: F811
) -> None:
    tcp = [free_port(socket.SOCK_STREAM) for _ in range(3)]
    audiosocket, forks, http_port = tcp
    args = ["serve", "--db", tmp_path / "c.db", "--no-sip", "--http-port", str(http_port)]
    args += ["--asr-url", engine_server.url, "--model", engine_server.model]
    key = {"BRIDGE_ASR_API_KEY": engine_server.api_key} if engine_server.api_key else {}
    serving = Serving(args, forks_env(audiosocket, forks) | key)
    started.append(serving)
    text = "\n".join(serving.lines)
    assert f"bridge: AudioSocket on 127.0.0.1:{audiosocket} (from 127.0.0.0/8, ::1/128" in text
    (line,) = [x for x in serving.lines if "media-fork WebSocket" in x]
    assert line.startswith(f"bridge: media-fork WebSocket on ws://127.0.0.1:{forks} (/freeswitch")
    assert line.endswith("; the shared secret)"), line

    async def both() -> None:
        peer = AudioSocketPeer(audiosocket, uuid.uuid4())
        await peer.connect()
        await peer.stream(bytes(8000))
        await peer.hangup()
        fs = FreeSwitchPeer(f"ws://127.0.0.1:{forks}/freeswitch?uuid=fs-1", token="s3cret")
        await fs.connect('{"caller": "+4930"}')
        await fs.stream(bytes(8000), frame_bytes=320)
        await fs.hangup()

    asyncio.run(both())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = calls(http_port)
        if len(listed) == 2 and all(c["end_cause"] for c in listed):
            break
        time.sleep(0.2)
    assert sorted((c["source"], c["end_cause"]) for c in listed) == [
        ("asterisk", "hangup"),
        ("freeswitch", "hangup"),
    ], listed
    code, err = serving.stop()
    assert code == 0, text + err


def test_serve_runs_the_ari_controller_and_stops_cleanly(
    engine_server: EngineServer,
    tmp_path: Path,
    started: list[Serving],  # noqa: F811
) -> None:
    """``[asterisk] ari_url``: ``bridge serve`` taps a Stasis call in both directions, and on
    SIGTERM exits 0 (the controller's legs end, its channels are hung up)."""
    http_port = free_port(socket.SOCK_STREAM)
    args = ["serve", "--db", tmp_path / "c.db", "--no-sip", "--http-port", str(http_port)]
    args += ["--asr-url", engine_server.url, "--model", engine_server.model]
    key = {"BRIDGE_ASR_API_KEY": engine_server.api_key} if engine_server.api_key else {}

    async def tapped() -> tuple[list[dict[str, object]], list[str], int]:
        async with FakeAsterisk() as pbx:
            env = {"BRIDGE_ARI_URL": pbx.url, "BRIDGE_ARI_PASSWORD": pbx.password}
            env["BRIDGE_API_TOKENS"] = f"{TOKEN}:supervisor"
            serving = await asyncio.to_thread(Serving, args, env | key)
            started.append(serving)
            audio = speech.build([0.2, "one two three", 0.2]).audio
            await pbx.call(audio, audio, setup_timeout_s=20)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                listed = await asyncio.to_thread(calls, http_port)
                if listed and all(c["end_cause"] for c in listed):
                    break
                await asyncio.sleep(0.2)
            # A call still up when the bridge stops: its legs end, its channels are hung up.
            await pbx.start_call(audio, audio, setup_timeout_s=20)
            code, err = await asyncio.to_thread(serving.stop)
            hung_up = [p for m, p, _ in pbx.requests if m == "DELETE"]
            return listed, serving.lines + err.splitlines() + hung_up, code

    listed, lines, code = asyncio.run(tapped())
    text = "\n".join(lines)
    assert code == 0, text
    assert "bridge: ARI controller for Stasis(bridge) at http://127.0.0.1:" in text
    assert [(c["source"], c["end_cause"]) for c in listed] == [("asterisk", "hangup")], listed
    deletes = [line for line in lines if line.startswith("/ari/")]
    assert len([d for d in deletes if d.startswith("/ari/channels/")]) >= 6, deletes
    assert len([d for d in deletes if d.startswith("/ari/bridges/")]) == 4, deletes


def test_audiosocket_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = bridge(
            "serve",
            "--db",
            tmp_path / "c.db",
            "--no-sip",
            "--http-port",
            str(free_port(socket.SOCK_STREAM)),
            env={
                "BRIDGE_AUDIOSOCKET_ENABLED": "1",
                "BRIDGE_AUDIOSOCKET_PORT": str(port),
                "BRIDGE_ASR_URL": "ws://127.0.0.1:9/v1/realtime",
            },
        )
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert f"AudioSocket port 127.0.0.1:{port} is taken" in line
    assert "BRIDGE_AUDIOSOCKET_PORT" in line


def test_forks_off_loopback_without_a_secret_is_a_config_error(tmp_path: Path) -> None:
    result = bridge(
        "serve",
        "--db",
        tmp_path / "c.db",
        "--no-sip",
        env={
            "BRIDGE_FORKS_ENABLED": "1",
            "BRIDGE_FORKS_HOST": "0.0.0.0",
            "BRIDGE_AUDIOSOCKET_ENABLED": "1",
            "BRIDGE_AUDIOSOCKET_HOST": "0.0.0.0",
        },
    )
    assert result.returncode == 2, result.stderr
    assert "set BRIDGE_FORKS_SECRET" in result.stderr
    assert "name the PBX's addresses in BRIDGE_AUDIOSOCKET_ALLOWED_SOURCES" in result.stderr
