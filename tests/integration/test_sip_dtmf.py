"""DTMF on SIP calls end to end: sipp presses keys -> pjsua2 worker -> stored ``dtmf`` events.

Real peers, as in ``test_sip.py``: sipp (Debian ``sip-tester``, its packaged RFC 4733 pcaps),
the ``bridge.sip.worker`` process and the scripted vLLM CPU server.  The ingest's store is the
``PublishingStore`` that ``bridge serve`` gives it, so the live hub's ``dtmf`` events are checked
too.  Set up with ``bash .ci/setup-sip.sh``.

Timing: the leg clock starts when the worker taps the call's media, just before its 200 OK, so a
digit's ``at_ms`` is about (when sipp sent it - when sipp got the 200 OK).  Both instants are
sipp's own ``[timestamp]`` log lines; the tolerance covers the jitter buffer and a loaded box.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from vllm_server import VllmServer

from bridge.asr.client import AsrEndpoint
from bridge.core.redact import RedactionPolicy
from bridge.core.types import LegSource
from bridge.export import to_json
from bridge.leg import LegSettings
from bridge.live import LiveHub
from bridge.live.tee import PublishingStore
from bridge.sip.ingest import SipIngest
from sip_config import SipSettings
from storage import CallTranscript, TranscriptStore
from tests.sip.sipp import SETUP_HINT, SIPP, SippResult, free_port, free_port_block, run_scenario

pytestmark = pytest.mark.integration

PCAPS = Path("/usr/share/sip-tester")  # sip-tester's dtmf_2833_*.pcap (docs/test-peers.md §1)
TOLERANCE_MS = 200


@pytest.fixture(autouse=True)
def _needs_sipp() -> None:
    if not os.path.exists(SIPP) or not (PCAPS / "dtmf_2833_1.pcap").exists():
        pytest.fail(f"sipp or its DTMF pcaps are missing: run {SETUP_HINT}")


def sip_settings() -> SipSettings:
    port, rtp = free_port(), free_port_block(32)
    return replace(SipSettings(), port=port, rtp_port_min=rtp, rtp_port_max=rtp + 31)


def sent_digits(result: SippResult) -> tuple[float, list[tuple[str, float]]]:
    """When sipp got the 200 OK, and each digit it sent: epoch seconds from its log lines
    (``[timestamp]`` is ``date<TAB>time<TAB>epoch``)."""
    answered = re.search(r"^answered \S+\t\S+\t([\d.]+)$", result.log, re.M)
    assert answered, result.log
    digits = re.findall(r"^dtmf (\S) \S+\t\S+\t([\d.]+)$", result.log, re.M)
    return float(answered.group(1)), [(d, float(t)) for d, t in digits]


async def dtmf_call(
    tmp_path: Path,
    server: VllmServer,
    scenario: str,
    *,
    mask: bool = False,
    leg_settings: LegSettings | None = None,
) -> tuple[CallTranscript, SippResult, LiveHub]:
    """A sipp call that keys digits; ``mask``: redaction's default (stored as ``*``), else the
    digits are kept so the tests can check each one; ``leg_settings`` instead of either."""
    hub = LiveHub()
    settings = sip_settings()
    endpoint = AsrEndpoint(
        url=server.url, model=server.model, api_key=server.api_key, stall_timeout_s=10
    )
    async with await TranscriptStore.open(tmp_path / "t.db") as store:
        tee = PublishingStore(store, hub)
        keep = leg_settings or LegSettings(redaction=RedactionPolicy(dtmf=mask))
        ingest = SipIngest(
            settings, store=cast(TranscriptStore, tee), endpoint=endpoint, leg_settings=keep
        )
        await ingest.start()
        try:
            result = await asyncio.to_thread(
                run_scenario,
                tmp_path / "sipp",
                scenario,
                f"127.0.0.1:{settings.port}",
                fill={"PCAPS": str(PCAPS)},
            )
            assert result.returncode == 0, result.output + result.errors + result.messages
            for _ in range(600):
                records = await store.list_calls()
                if records and not records[0].active:
                    break
                await asyncio.sleep(0.1)
            [record] = await store.list_calls()
            transcript = await store.get_call(record.call_id)
        finally:
            await ingest.close()
    assert transcript is not None and transcript.call.end_cause == "bye-remote"
    return transcript, result, hub


def check_dtmf(
    transcript: CallTranscript, result: SippResult, hub: LiveHub, expect: list[tuple[str, str, int]]
) -> None:
    """``expect``: (digit, method, duration_ms) in the order pressed."""
    [leg] = transcript.legs
    assert leg.source is LegSource.SIP
    events = [e for e in transcript.events if e.kind == "dtmf"]
    assert [e.detail for e in events] == [
        f"digit={d} method={m} duration_ms={ms}" for d, m, ms in expect
    ]
    assert all(e.leg_id == leg.leg_id for e in events)
    answered, sent = sent_digits(result)
    assert [d for d, _ in sent] == [d for d, _, _ in expect]
    for event, (digit, at) in zip(events, sent, strict=True):
        expected_ms = (at - answered) * 1000
        assert abs(event.at_ms - expected_ms) <= TOLERANCE_MS, (digit, event.at_ms, expected_ms)
    # The export lists them as events of the leg (no format change).
    exported = json.loads(to_json(transcript))["events"]
    assert [(e["leg_id"], e["at_ms"], e["detail"]) for e in exported if e["kind"] == "dtmf"] == [
        (leg.leg_id, e.at_ms, e.detail) for e in events
    ]
    # And the live hub had them as they happened, on the leg clock.
    live = [e.data for e in hub.events_since(0) if e.type == "dtmf"]
    assert [
        (x["call_id"], x["dtmf"]["leg_id"], x["dtmf"]["digit"], x["dtmf"]["duration_ms"])
        for x in live
    ] == [(leg.call_id, leg.leg_id, d, ms) for d, _, ms in expect]
    assert [x["dtmf"]["at_ms"] for x in live] == [e.at_ms for e in events]


async def test_rfc4733_digits_are_timed_events_on_the_leg(
    tmp_path: Path, vllm_server: VllmServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bridge")
    transcript, result, hub = await dtmf_call(tmp_path, vllm_server, "uac_dtmf_rfc4733")
    # Each pcap's events end at duration 2240 (8 kHz units) = 280 ms.
    expect = [(d, "rfc4733", 280) for d in "123#"]
    check_dtmf(transcript, result, hub, expect)
    # Keyed digits are often card numbers: at INFO the log says a digit came, never which.
    arrived = [r.getMessage() for r in caplog.records if "DTMF" in r.getMessage()]
    assert len(arrived) == 4 and all(m.endswith("DTMF digit (rfc4733)") for m in arrived)
    assert not [r for r in caplog.records if "digit=" in r.getMessage()]


async def test_sip_info_digits_are_answered_and_stored(
    tmp_path: Path, vllm_server: VllmServer
) -> None:
    transcript, result, hub = await dtmf_call(tmp_path, vllm_server, "uac_dtmf_info")
    # INVITE, three INFOs and the BYE: each answered 200 (the scenario requires it, in order).
    assert len(re.findall(r"^SIP/2\.0 200 OK", result.messages, re.M)) == 5
    expect = [("5", "info", 160), ("*", "info", 250), ("0", "info", 100)]
    check_dtmf(transcript, result, hub, expect)


async def test_keyed_digits_are_stored_pushed_exported_and_logged_as_stars_by_default(
    tmp_path: Path, vllm_server: VllmServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redaction's default (issue 17): a keyed digit is as likely a card number as a menu
    choice, so no digit leaves the call - not the store, the live push, the export or the log."""
    caplog.set_level(logging.DEBUG, "bridge")
    transcript, result, hub = await dtmf_call(tmp_path, vllm_server, "uac_dtmf_rfc4733", mask=True)
    assert [d for d, _ in sent_digits(result)[1]] == list("123#")
    events = [e for e in transcript.events if e.kind == "dtmf"]
    assert [e.detail for e in events] == ["digit=* method=rfc4733 duration_ms=280"] * 4
    live = [e.data["dtmf"]["digit"] for e in hub.events_since(0) if e.type == "dtmf"]
    assert live == ["*"] * 4
    exported = json.loads(to_json(transcript))["events"]
    assert [e["detail"] for e in exported if e["kind"] == "dtmf"] == [e.detail for e in events]
    keyed = re.compile(r"digit=[0-9#]|DTMF [0-9#]")
    assert not [r.getMessage() for r in caplog.records if keyed.search(r.getMessage())]
