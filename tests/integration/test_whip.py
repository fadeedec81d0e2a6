"""WHIP ingest end to end: headless Chromium (fake microphone: a generated tone) -> /softphone ->
POST /api/v1/whip -> aiortc -> leg -> the session's scripted vLLM server -> SQLite and live API.

Loopback only (test-peers.md §4): aioice skips 127.0.0.1, so its host addresses are patched to
127.0.0.1, and the bridge keeps only the offer's loopback candidates (``loopback_only``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioice.ice
import httpx
import numpy as np
import pytest
import websockets
from browser import ARGS, CHROMIUM
from playwright.async_api import async_playwright
from vllm_server import VllmServer

from bridge.io.asr_client import AsrEndpoint
from bridge.live import LiveHub
from bridge.webrtc.session import WhipSettings
from storage import TranscriptStore
from tests.http.served import ALICE, NO_ASR, SUPERVISOR, serve_bridge

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

OFFER = (Path(__file__).parent.parent / "webrtc" / "chrome156_two_audio.sdp").read_text()


def chromium_args(wav: Path, profile: Path) -> list[str]:
    return [
        *ARGS,
        f"--user-data-dir={profile}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--allow-loopback-in-peer-connection",
    ]


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    """48 kHz mono: 0.5 s silence, then a 440 Hz tone (the scripted server ignores content)."""
    rate = 48_000
    t = np.arange(int(6.0 * rate)) / rate
    pcm = (0.2 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    pcm[: rate // 2] = 0
    path = tmp_path / "tone48k.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


@contextlib.asynccontextmanager
async def serve(
    db: Path, endpoint: AsrEndpoint, whip: WhipSettings
) -> AsyncIterator[tuple[str, TranscriptStore, LiveHub]]:
    async with serve_bridge(db, endpoint=endpoint, whip=whip) as served:
        yield served.base, served.store, served.hub


async def wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def endpoint_of(vllm_server: VllmServer) -> AsrEndpoint:
    return AsrEndpoint(
        url=vllm_server.url,
        model=vllm_server.model,
        api_key=vllm_server.api_key,
        stall_timeout_s=10,
    )


async def test_softphone_transcript_lands_in_sqlite_and_live_then_delete_ends_call(
    vllm_server: VllmServer, tmp_path: Path, loopback_ice: None, tone_wav: Path
) -> None:
    whip = WhipSettings(loopback_only=True, media_timeout_s=5, connect_timeout_s=15)
    async with (
        serve(tmp_path / "t.db", endpoint_of(vllm_server), whip) as (base, store, hub),
        async_playwright() as pw,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[a for a in chromium_args(tone_wav, tmp_path / "p")[1:] if "user-data" not in a],
        )
        try:
            page = await browser.new_page()
            posted_at = time.monotonic()
            await page.goto(f"{base}/softphone?token={ALICE}&autostart=1")
            info = await page.wait_for_function("window.__softphone", timeout=20_000)
            call_id = (await info.json_value())["callId"]
            # A live client of our own: when does the first final word arrive?
            live_url = base.replace("http", "ws") + f"/api/v1/live?call={call_id}&token={ALICE}"
            async with websockets.connect(live_url) as ws:
                first_final = None
                deadline = time.monotonic() + 40
                while first_final is None and time.monotonic() < deadline:
                    raw = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                    data = json.loads(raw)
                    for event in data if isinstance(data, list) else [data]:
                        if event["type"] == "segment.final" and "hello" in event["segment"]["text"]:
                            first_final = time.monotonic() - posted_at
            assert first_final is not None, "no final 'hello world' on the live API"
            print(f"POST->first final on the live API: {first_final:.2f} s")
            # The page shows it too (its own live subscription).
            await page.wait_for_function(
                "document.getElementById('transcript').textContent.includes('hello world')",
                timeout=20_000,
            )
            # Stored on a webrtc leg with role agent.
            record = await http.get(f"/api/v1/calls/{call_id}", headers=auth(ALICE))
            doc = record.json()
            assert doc["call"]["source"] == "webrtc"
            assert doc["call"]["agent"] == "alice"
            (leg,) = doc["legs"]
            assert leg["role"] == "agent" and leg["codec"] == "opus/48000"
            assert any("hello world" in s["text"] for s in doc["segments"] if s["final"])
            # Stop = DELETE on the Location: the call ends as whip-delete.
            await page.click("#stop")

            async def ended() -> Any:
                r = await http.get(f"/api/v1/calls/{call_id}", headers=auth(SUPERVISOR))
                return r.json()["call"].get("end_cause")

            assert await wait_for(ended, 40, "call end") == "whip-delete"
        finally:
            await browser.close()


async def test_killed_browser_ends_call_as_disconnected(
    vllm_server: VllmServer, tmp_path: Path, loopback_ice: None, tone_wav: Path
) -> None:
    whip = WhipSettings(loopback_only=True, media_timeout_s=2, connect_timeout_s=15)
    async with serve(tmp_path / "t.db", endpoint_of(vllm_server), whip) as (base, store, hub):
        proc = subprocess.Popen(  # noqa: ASYNC220 (starts at once; killed below)
            [
                CHROMIUM,
                *chromium_args(tone_wav, tmp_path / "profile"),
                f"{base}/softphone?token={SUPERVISOR}&autostart=1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:

                async def active_leg() -> Any:
                    calls = (await http.get("/api/v1/calls", headers=auth())).json()["calls"]
                    if not calls:
                        return None
                    doc = (await http.get(f"/api/v1/calls/{calls[0]['id']}", headers=auth())).json()
                    return calls[0]["id"] if doc["legs"] else None

                call_id = await wait_for(active_leg, 30, "a WebRTC leg")
                await asyncio.sleep(1.0)
                killed_at = time.monotonic()
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)

                async def ended() -> Any:
                    r = await http.get(f"/api/v1/calls/{call_id}", headers=auth())
                    return r.json()["call"].get("end_cause")

                assert await wait_for(ended, 40, "call end") == "disconnected"
                print(f"kill -> call ended: {time.monotonic() - killed_at:.2f} s")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)


def auth(token: str = SUPERVISOR) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_bad_offers_get_documented_statuses(tmp_path: Path) -> None:
    async with (
        serve(tmp_path / "t.db", NO_ASR, WhipSettings(max_sessions=0)) as (base, _, _),
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        sdp = {"Content-Type": "application/sdp"}
        r = await http.post("/api/v1/whip", content=OFFER, headers=sdp)
        assert r.status_code == 401
        r = await http.post(
            "/api/v1/whip", content=OFFER, headers={**auth(), "Content-Type": "text/plain"}
        )
        assert r.status_code == 415 and r.headers["content-type"] == "application/problem+json"
        r = await http.post("/api/v1/whip", content="hello", headers={**auth(), **sdp})
        assert r.status_code == 400 and "v=0" in r.json()["detail"]
        only_g722 = "\n".join(
            line
            for line in OFFER.splitlines()
            if not line.startswith("a=rtpmap:") or "G722" in line
        ).replace(" 111 63 9 0 8 13 110 126", " 9")
        r = await http.post("/api/v1/whip", content=only_g722, headers={**auth(), **sdp})
        assert r.status_code == 406 and "opus" in r.json()["detail"]
        r = await http.post("/api/v1/whip", content=OFFER, headers={**auth(), **sdp})
        assert r.status_code == 503 and r.headers["retry-after"] == "10"
        r = await http.options("/api/v1/whip")
        assert r.status_code == 204 and "POST" in r.headers["access-control-allow-methods"]
        r = await http.delete("/api/v1/whip/nope", headers=auth())
        assert r.status_code == 404
