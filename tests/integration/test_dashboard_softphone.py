"""The softphone's live transcript is readable: each line across the page with its time (issue 13
item 7d; it used to squeeze the text into the dashboards' ~110 px "who" column, without times).

Headless Chromium (fake microphone: a generated tone) on /softphone, logged in by a ?token=
link, sends its microphone over WHIP to the real app on 127.0.0.1; the session's real vLLM CPU
server transcribes it (scripted " hello world. ... how are you?").  At a 1366 px wide window
the text of each line must be wider than 400 px, and each line must show its time in the call,
the same as the stored segment's.  Screenshots go to ``<tmp_path>/artifacts/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from browser import CHROMIUM
from playwright.async_api import async_playwright
from test_whip import chromium_args, endpoint_of, loopback_ice, tone_wav, wait_for
from vllm_server import VllmServer

from bridge.webrtc.session import WhipSettings
from tests.http.served import ALICE, serve_bridge

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
__all__ = ["loopback_ice", "tone_wav"]  # fixtures of test_whip, used here

LINES = """() => [...document.querySelectorAll('#transcript .utterance')].map((row) => ({
  time: row.querySelector('time').textContent,
  who: row.querySelector('.who').textContent,
  text: row.querySelector('.text').textContent,
  final: row.classList.contains('final'),
  textWidth: row.querySelector('.text').getBoundingClientRect().width,
  textLeft: row.querySelector('.text').getBoundingClientRect().left,
  timeLeft: row.querySelector('time').getBoundingClientRect().left,
}))"""


def clock(ms: int) -> str:
    """mm:ss, as the pages show a time in the call."""
    return f"{ms // 60_000:02d}:{ms // 1000 % 60:02d}"


async def test_the_softphone_shows_each_line_across_the_page_with_its_time(
    vllm_server: VllmServer, tmp_path: Path, loopback_ice: None, tone_wav: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    whip = WhipSettings(loopback_only=True, media_timeout_s=5, connect_timeout_s=15)
    async with (
        serve_bridge(tmp_path / "t.db", endpoint=endpoint_of(vllm_server), whip=whip) as served,
        async_playwright() as pw,
        httpx.AsyncClient(base_url=served.base, headers=served.auth()) as http,
    ):
        browser = await pw.chromium.launch(
            headless=True,
            executable_path=CHROMIUM,
            args=[a for a in chromium_args(tone_wav, tmp_path / "p")[1:] if "user-data" not in a],
        )
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            await page.goto(f"{served.base}/softphone?token={ALICE}&autostart=1")
            assert page.url == f"{served.base}/softphone?autostart=1"  # the token taken
            info = await page.wait_for_function("window.__softphone", timeout=20_000)
            call_id = (await info.json_value())["callId"]
            await page.locator(".utterance.final .text", has_text="hello world.").first.wait_for(
                timeout=40_000
            )
            await page.locator(".utterance.final .text", has_text="how are you?").first.wait_for(
                timeout=40_000
            )
            await page.screenshot(path=artifacts / "softphone-live.png")
            lines = await page.evaluate(LINES)
            assert lines, "no lines"
            print(f"softphone text width: {min(line['textWidth'] for line in lines):.0f} px")
            for line in lines:
                assert line["textWidth"] > 400, line  # was ~110 px
                assert re.fullmatch(r"\d\d:\d\d", line["time"]), line
                assert line["who"] == "agent", line
                assert line["textLeft"] <= line["timeLeft"] + 1, line  # text under the time

            await page.click("#stop")

            async def ended() -> object:
                r = await http.get(f"/api/v1/calls/{call_id}")
                return r.json()["call"].get("end_cause")

            assert await wait_for(ended, 40, "call end") == "whip-delete"
            await page.locator("#status", has_text="ended: whip-delete").wait_for(timeout=20_000)
            # The times are the stored segments' times in the call.
            doc = (await http.get(f"/api/v1/calls/{call_id}")).json()
            offsets = {leg["id"]: leg["offset_ms"] for leg in doc["legs"]}
            stored = [
                (clock(offsets[s["leg_id"]] + s["start_ms"]), s["text"])
                for s in doc["segments"]
                if s["final"]
            ]
            shown = [(line["time"], line["text"]) for line in await page.evaluate(LINES)]
            assert [s for s in shown if s in stored] == stored, (shown, stored)
            await page.screenshot(path=artifacts / "softphone-ended.png")
        finally:
            await browser.close()
    print(f"\nscreenshots: {artifacts}")
