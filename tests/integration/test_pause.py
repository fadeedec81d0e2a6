"""PCI pause/resume (issue 17 item 3) with real SIP calls: sipp streams flite speech as PCMU into
the pjsua2 workers, the embedded engine transcribes it.  Paused over REST (the HTTP app in the
same process, as ``bridge serve`` runs it) and by DTMF keys, the call stores a ``paused`` gap on
its leg and no word, no key and nothing pushed live from inside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import httpx
import numpy as np
import pytest
from engine_server import EngineServer
from test_sip import Bridge, sip_settings, stream_scenario
from test_sip_dtmf import dtmf_call

from bridge.asr.client import AsrEndpoint
from bridge.auth import Principal, Role
from bridge.call import _LIVE
from bridge.core.redact import RedactionPolicy
from bridge.core.types import Gap
from bridge.http.app import close_app, create_app
from bridge.leg import LegSettings
from bridge.live import LiveHub
from bridge.live.tee import PublishingStore
from bridge.sip.ingest import SipIngest
from storage import CallTranscript, TranscriptStore
from tests.engine import speech

pytestmark = pytest.mark.integration

EARLY_MS = 500
TOKENS = {
    "sup": Principal(Role.SUPERVISOR),
    "bob": Principal(Role.AGENT, "bob"),  # not this call's agent
}
SAID = [
    "please hold while I check your account",
    0.4,
    "the weather today is sunny and warm",
    1.6,  # the pause request comes in here, 4.2 s in
    "my card number is four one one one one one one one one one one one one one one one",
    0.4,
    "thank you for waiting I found your order",
    0.4,
    "it will arrive on monday morning",
]


def pcm_8k() -> np.ndarray:
    audio = speech.build(SAID).audio
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16)[::2]


async def live_call_id(timeout_s: float = 10.0) -> str:
    for _ in range(int(timeout_s / 0.05)):
        ids = [call_id for call_id, call in _LIVE.items() if call.cause is None]
        if ids:
            return ids[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no live call")


def inside(gap: Gap, at_ms: int) -> bool:
    return gap.start_ms <= at_ms < gap.start_ms + gap.duration_ms


def paused_gap(transcript: CallTranscript) -> Gap:
    [gap] = [g for g in transcript.gaps if g.reason == "paused"]
    return gap


@contextlib.asynccontextmanager
async def bridge_with_api(
    tmp_path: Path, server: EngineServer
) -> AsyncIterator[tuple[Bridge, httpx.AsyncClient, LiveHub]]:
    """SIP ingest and the HTTP app in one process over one store, every fact published live
    (as ``bridge serve`` runs them)."""
    hub = LiveHub()
    settings = sip_settings(codecs=("PCMU",))
    endpoint = AsrEndpoint(url=server.url, model=server.model, api_key=server.api_key)
    async with await TranscriptStore.open(tmp_path / "t.db") as store:
        tee = cast(TranscriptStore, PublishingStore(store, hub))
        ingest = SipIngest(settings, store=tee, endpoint=endpoint)
        await ingest.start()
        app = create_app(store=store, hub=hub, endpoint=endpoint, tokens=TOKENS)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
                yield Bridge(ingest, store, settings), http, hub
        finally:
            await close_app(app)
            await ingest.close()


async def test_a_call_paused_and_resumed_over_rest_keeps_nothing_in_between(
    tmp_path: Path, engine_server: EngineServer
) -> None:
    pcm = pcm_8k()
    async with bridge_with_api(tmp_path, engine_server) as (bridge, http, hub):
        stream_ms = len(pcm) * 1000 // 8000
        sipp = asyncio.create_task(
            stream_scenario(bridge, tmp_path / "sipp", "PCMU", pcm, bye_after_ms=stream_ms + 500)
        )
        call_id = await live_call_id()

        async def post(action: str, token: str, call: str = call_id) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"}
            return await http.post(f"/api/v1/calls/{call}/{action}", headers=headers)

        await asyncio.sleep(4.2)  # before the third sentence: the card number
        refused = await post("pause", "bob")
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        paused = await post("pause", "sup")
        assert paused.json() == {"id": call_id, "paused": True, "changed": True}
        again = await post("pause", "sup")
        assert again.json() == {"id": call_id, "paused": True, "changed": False}
        await asyncio.sleep(4.0)
        resumed = await post("resume", "sup")
        assert resumed.json() == {"id": call_id, "paused": False, "changed": True}
        result = await sipp
        assert result.returncode == 0, result.output + result.errors
        [transcript] = await bridge.calls(1)
        ended = await post("pause", "sup")
        assert ended.status_code == 409 and "has ended" in ended.json()["detail"]
        assert (await post("pause", "sup", "nope")).status_code == 404
    gap = paused_gap(transcript)
    assert 3000 <= gap.duration_ms <= 5000, gap
    words = [w for s in transcript.segments for w in s.words]
    # Whisper places words up to ~0.5 s early (tests/integration/test_openai_dialect.py), so a
    # word said right after the resume may be timed just before it.
    early = replace(gap, duration_ms=gap.duration_ms - EARLY_MS)
    assert not [w for w in words if inside(early, w.start_ms)], [
        (w.text, w.start_ms) for w in words
    ]
    before = [w for w in words if w.start_ms < gap.start_ms]
    after = [w for w in words if w.start_ms >= gap.start_ms + gap.duration_ms]
    assert before and after, words  # the call was transcribed on both sides of the pause
    said = " ".join(w.text.lower() for w in words)
    assert "card" not in said and "4" not in said, said  # paused before "my card number is four"
    kinds = [(e.kind, e.detail) for e in transcript.events if e.kind.startswith("call.")]
    assert kinds == [("call.paused", "by=supervisor"), ("call.resumed", "by=supervisor")]
    # Nothing from inside the pause was pushed live either: segments and the gap only.
    pushed = [e.data for e in hub.events_since(0) if e.type == "segment"]
    assert not [p for p in pushed for w in p["segment"]["words"] if inside(gap, w["start_ms"])]


async def test_dtmf_keys_pause_and_resume_a_sip_call(
    tmp_path: Path, engine_server: EngineServer
) -> None:
    """sipp keys 1, 2, 3, # (RFC 4733): "2" pauses, "#" resumes; "3", pressed while paused, is
    not stored at all, and the others only as "*"."""
    keys = LegSettings(redaction=RedactionPolicy(pause_keys="2", resume_keys="#"))
    transcript, result, _ = await dtmf_call(
        tmp_path,
        engine_server,
        "uac_dtmf_rfc4733",
        leg_settings=keys,  # type: ignore[arg-type]
    )
    assert result.returncode == 0
    stored = [e.detail.split()[0] for e in transcript.events if e.kind == "dtmf"]
    assert stored == ["digit=*", "digit=*"]  # 1 and #
    gap = paused_gap(transcript)
    dtmf = [e.at_ms for e in transcript.events if e.kind == "dtmf"]
    assert dtmf[0] < gap.start_ms and gap.start_ms + gap.duration_ms <= dtmf[1] + 100, (gap, dtmf)
    kinds = [(e.kind, e.detail) for e in transcript.events if e.kind.startswith("call.")]
    assert kinds == [("call.paused", "by=dtmf"), ("call.resumed", "by=dtmf")]
