"""WHIP ingest end to end, with real peers:

* headless Chromium (fake microphone: a generated tone) -> /softphone -> POST /api/v1/whip and
  trickle ICE PATCHes -> aiortc -> leg -> the scripted vLLM server -> SQLite and live API;
* an aiortc WHIP client (``tests/webrtc/peer.py``: real ICE, DTLS-SRTP, Opus or G.711) for what a
  browser does not do on demand: an offer without candidates then PATCHes (trickle ICE), G.711
  only, a peer that vanishes before ICE completes.

Loopback only (test-peers.md §4): aioice skips 127.0.0.1, so its host addresses are patched to
127.0.0.1, and the bridge keeps only the loopback candidates of offers and PATCHes
(``loopback_only``).
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
import aioice.stun
import httpx
import numpy as np
import pytest
import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from browser import ARGS, CHROMIUM
from engine_server import EngineServer
from playwright.async_api import Request, async_playwright
from vllm_server import VllmServer

from bridge.asr.client import AsrEndpoint
from bridge.live import LiveHub
from bridge.webrtc.session import WhipSettings
from storage import TranscriptStore
from tests.engine import speech
from tests.http.served import ALICE, NO_ASR, SUPERVISOR, serve_bridge
from tests.webrtc.peer import (
    PcmTrack,
    sdpfrag,
    sendonly_offer,
    split_candidates,
    tone,
    without_candidates,
)

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


def endpoint_of(server: VllmServer | EngineServer) -> AsrEndpoint:
    return AsrEndpoint(
        url=server.url,
        model=server.model,
        api_key=server.api_key,
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
            requests: list[Request] = []  # what the page sends: its trickle PATCHes
            page.on("request", lambda request: requests.append(request))
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
            # Chromium trickled its candidates (RFC 9725 §4.3.2) and the bridge took them.
            patches = []
            for request in (r for r in requests if r.method == "PATCH"):
                response = await request.response()
                patches.append((request.post_data or "", response.status if response else 0))
            assert patches and all(status == 204 for _, status in patches), patches
            assert any("a=candidate:" in body and "127.0.0.1" in body for body, _ in patches)
            assert "a=end-of-candidates" in patches[-1][0]
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
        assert r.status_code == 200 and "POST" in r.headers["access-control-allow-methods"]
        assert r.headers["accept-post"] == "application/sdp"
        r = await http.options("/api/v1/whip/any")
        assert r.headers["accept-patch"] == "application/trickle-ice-sdpfrag"
        assert "PATCH" in r.headers["access-control-allow-methods"]
        r = await http.delete("/api/v1/whip/nope", headers=auth())
        assert r.status_code == 404
        r = await http.patch("/api/v1/whip/nope", content="a=end-of-candidates", headers=auth())
        assert r.status_code == 404
        r = await http.patch("/api/v1/whip", content="a=end-of-candidates", headers=auth())
        assert r.status_code == 405


# -- aiortc WHIP clients -------------------------------------------------------------------------

SDP = "application/sdp"
FRAG = "application/trickle-ice-sdpfrag"


async def post_offer(http: httpx.AsyncClient, sdp: str) -> httpx.Response:
    return await http.post("/api/v1/whip", content=sdp, headers={**auth(), "Content-Type": SDP})


async def end_cause(http: httpx.AsyncClient, call_id: str, timeout_s: float = 40) -> str:
    async def ended() -> Any:
        r = await http.get(f"/api/v1/calls/{call_id}", headers=auth())
        return r.json()["call"].get("end_cause")

    cause: str = await wait_for(ended, timeout_s, "call end")
    return cause


async def legs_of(http: httpx.AsyncClient, call_id: str) -> list[dict[str, Any]]:
    legs: list[dict[str, Any]] = (
        await http.get(f"/api/v1/calls/{call_id}", headers=auth())
    ).json()["legs"]
    return legs


async def test_trickle_ice_patch_connects_an_offer_without_candidates(
    tmp_path: Path, loopback_ice: None
) -> None:
    """RFC 9725 §4.3: the offer carries no candidates and the answer's are withheld from the
    client, so only the candidates PATCHed to the bridge can connect them; the refused PATCHes
    (415, 428, 412, 422 ICE restart, 400) leave the session running."""
    whip = WhipSettings(loopback_only=True, media_timeout_s=5, connect_timeout_s=20)
    pc = RTCPeerConnection()
    async with (
        serve(tmp_path / "t.db", NO_ASR, whip) as (base, _, _),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        try:
            offer = split_candidates(await sendonly_offer(pc, PcmTrack(tone(30.0))))
            assert offer.candidates and "a=candidate" not in offer.sdp
            r = await post_offer(http, offer.sdp)
            assert r.status_code == 201, r.text
            url, etag, call_id = (
                r.headers["location"],
                r.headers["etag"],
                r.headers["bridge-call-id"],
            )
            assert etag.startswith('"') and etag.endswith('"')
            await pc.setRemoteDescription(
                RTCSessionDescription(without_candidates(r.text), "answer")
            )
            body = sdpfrag(offer, offer.candidates, end=True)
            frag = {**auth(), "Content-Type": FRAG, "If-Match": etag}

            r = await http.patch(url, content=body, headers={**frag, "Content-Type": SDP})
            assert r.status_code == 415 and r.headers["accept-patch"] == FRAG
            r = await http.patch(url, content=body, headers={**auth(), "Content-Type": FRAG})
            assert r.status_code == 428 and "If-Match" in r.json()["detail"]
            r = await http.patch(url, content=body, headers={**frag, "If-Match": '"stale"'})
            assert r.status_code == 412
            restart = sdpfrag(offer, offer.candidates, ufrag="NEWU")
            r = await http.patch(url, content=restart, headers={**frag, "If-Match": "*"})
            assert r.status_code == 422 and "ICE restart" in r.json()["detail"]
            r = await http.patch(url, content="m=audio 9\r\n", headers=frag)
            assert r.status_code == 400 and "media line" in r.json()["detail"]

            # Nothing connects without the candidates: no leg after 1.5 s.
            await asyncio.sleep(1.5)
            assert pc.iceConnectionState != "completed" and await legs_of(http, call_id) == []

            r = await http.patch(url, content=body, headers=frag)
            assert r.status_code == 204 and r.content == b"" and "etag" not in r.headers

            async def leg() -> Any:
                return await legs_of(http, call_id)

            (only,) = await wait_for(leg, 20, "a leg once the candidates are PATCHed")
            assert only["codec"] == "opus/48000" and pc.connectionState == "connected"
            r = await http.delete(url, headers=auth())
            assert r.status_code == 200
            assert await end_cause(http, call_id) == "whip-delete"
            r = await http.patch(url, content=body, headers=frag)
            assert r.status_code == 404
        finally:
            await pc.close()


async def test_g711_from_an_aiortc_peer_is_a_transcribed_leg_and_its_close_ends_the_call(
    engine_server: EngineServer, tmp_path: Path, loopback_ice: None
) -> None:
    """A WebRTC peer that offers only PCMU (RFC 7874 §3: G.711 is mandatory in WebRTC too):
    flite speech goes out as 8 kHz µ-law over SRTP, comes back as real words from the embedded
    engine; the peer's close (DTLS close_notify) ends the call as peer-closed."""
    whip = WhipSettings(loopback_only=True, media_timeout_s=10, connect_timeout_s=15)
    said = speech.build([1.0, "my package never arrived", 1.5])
    pcm = (np.clip(said.audio, -1, 1) * 32767).astype(np.int16)
    track = PcmTrack(pcm, rate_hz=speech.SAMPLE_RATE_HZ, channels=1)
    pc = RTCPeerConnection()
    async with (
        serve(tmp_path / "t.db", endpoint_of(engine_server), whip) as (base, _, _),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        try:
            offer = await sendonly_offer(pc, track, codec="PCMU")
            assert "PCMU/8000" in offer and "opus" not in offer
            r = await post_offer(http, offer)
            assert r.status_code == 201, r.text
            call_id = r.headers["bridge-call-id"]
            await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))

            async def spoken() -> Any:
                return track.audio_done

            await wait_for(spoken, 30, "the speech to be sent")
            await asyncio.sleep(1.0)  # the last RTP packets and the engine's last step
            await pc.close()
            assert await end_cause(http, call_id) == "peer-closed"
            doc = (await http.get(f"/api/v1/calls/{call_id}", headers=auth())).json()
        finally:
            await pc.close()
    (leg,) = doc["legs"]
    assert leg["codec"] == "pcmu/8000" and leg["source"] == "webrtc" and leg["role"] == "agent"
    assert leg["duration_ms"] >= len(pcm) * 1000 // speech.SAMPLE_RATE_HZ - 500
    text = speech.normalize(" ".join(s["text"] for s in doc["segments"] if s["final"]))
    assert "package" in text and "arrived" in text, text


async def test_ice_failure_ends_the_call_as_ice_failed(
    tmp_path: Path, loopback_ice: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client vanishes after its offer: the bridge's connectivity checks to its candidates
    go unanswered, ICE fails (RFC 8445: every pair failed) and the call ends ice-failed, no leg.
    ``connect_timeout_s`` is longer than the test, so only aiortc's failed state can end it;
    fewer STUN retransmissions (aioice's Rc, RFC 8489 §6.2.1) make the checks fail in seconds."""
    monkeypatch.setattr(aioice.stun, "RETRY_MAX", 3)
    whip = WhipSettings(loopback_only=True, media_timeout_s=5, connect_timeout_s=300)
    pc = RTCPeerConnection()
    async with (
        serve(tmp_path / "t.db", NO_ASR, whip) as (base, _, _),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        offer = await sendonly_offer(pc, PcmTrack(tone(5.0)))
        await pc.close()  # its sockets are gone; nothing will answer the checks
        r = await post_offer(http, offer)
        assert r.status_code == 201, r.text
        call_id, url = r.headers["bridge-call-id"], r.headers["location"]
        assert await end_cause(http, call_id, timeout_s=60) == "ice-failed"
        assert await legs_of(http, call_id) == []
        r = await http.delete(url, headers=auth())
        assert r.status_code == 404


async def test_over_capacity_is_503_with_retry_after_until_a_session_ends(
    tmp_path: Path, loopback_ice: None
) -> None:
    whip = WhipSettings(loopback_only=True, max_sessions=1, connect_timeout_s=20)
    first, second = RTCPeerConnection(), RTCPeerConnection()
    async with (
        serve(tmp_path / "t.db", NO_ASR, whip) as (base, _, _),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        try:
            r = await post_offer(http, await sendonly_offer(first, PcmTrack(tone(20.0))))
            assert r.status_code == 201, r.text
            url = r.headers["location"]
            await first.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
            offer = await sendonly_offer(second, PcmTrack(tone(5.0)))
            r = await post_offer(http, offer)
            assert r.status_code == 503 and r.headers["retry-after"] == "10"
            assert r.json()["type"].endswith("/busy") and "at most 1" in r.json()["detail"]
            assert (await http.delete(url, headers=auth())).status_code == 200
            r = await post_offer(http, offer)
            assert r.status_code == 201, r.text
            assert (await http.delete(r.headers["location"], headers=auth())).status_code == 200
        finally:
            await first.close()
            await second.close()


async def test_softphone_says_why_it_is_refused_and_retries_when_busy(
    tmp_path: Path, loopback_ice: None, tone_wav: Path
) -> None:
    """The page as an agent sees it: a busy bridge (503) is a "reconnecting in N s" message and
    a retry that gets through once a slot frees; a bad token is a final refusal naming the
    status; a denied microphone says how to allow it."""
    whip = WhipSettings(loopback_only=True, max_sessions=1, connect_timeout_s=30)
    holder = RTCPeerConnection()
    async with (
        serve(tmp_path / "t.db", NO_ASR, whip) as (base, _, _),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[a for a in chromium_args(tone_wav, tmp_path / "p")[1:] if "user-data" not in a],
        )
        try:
            r = await post_offer(http, await sendonly_offer(holder, PcmTrack(tone(60.0))))
            assert r.status_code == 201, r.text  # the one slot is taken
            page = await browser.new_page()
            await page.goto(f"{base}/softphone?token={ALICE}&autostart=1")
            message = page.locator("#message")
            await page.wait_for_function(
                "document.getElementById('message').textContent.includes('reconnecting in')",
                timeout=20_000,
            )
            text = await message.text_content() or ""
            assert "The bridge refused the call (503)" in text and "at most 1" in text, text
            assert await page.evaluate("window.__softphone") is None
            assert (await http.delete(r.headers["location"], headers=auth())).status_code == 200
            info = await page.wait_for_function("window.__softphone", timeout=40_000)
            call_id = (await info.json_value())["callId"]
            assert call_id and (await message.text_content() or "") == ""  # cleared
            await page.click("#stop")
            # A wrong token: refused for good (no retry), and the page says so.
            bad = await browser.new_page()
            await bad.goto(f"{base}/softphone?token=not-a-token&autostart=1")
            await bad.wait_for_function(
                "document.getElementById('status').textContent === 'stopped'", timeout=20_000
            )
            text = await bad.locator("#message").text_content() or ""
            assert text.startswith("The bridge refused the call (401)"), text
            # No fake permission UI: the microphone is denied, and the page says how to fix it.
            denied = await pw.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    a
                    for a in chromium_args(tone_wav, tmp_path / "q")[1:]
                    if "user-data" not in a and "fake-ui" not in a
                ],
            )
            try:
                page = await (await denied.new_context(permissions=[])).new_page()
                await page.goto(f"{base}/softphone?token={ALICE}&autostart=1")
                await page.wait_for_function(
                    "document.getElementById('message').textContent.includes('denied')",
                    timeout=20_000,
                )
                text = await page.locator("#message").text_content() or ""
                assert text.startswith("Microphone access was denied: allow it"), text
            finally:
                await denied.close()
        finally:
            await browser.close()
            await holder.close()
