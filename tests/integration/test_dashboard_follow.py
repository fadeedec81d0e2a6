"""An agent's dashboard follows the agent's own live call from one call to the next (issue 13
item 7c); supervisors keep the table of every active call.

Headless Chromium (Debian ``chromium``, Playwright) against the real app on 127.0.0.1 over a real
SQLite file.  The calls are recordings POSTed at real-time pace (``?agent=`` from the token:
alice's token makes alice's calls) and transcribed by the session's real vLLM CPU server
(scripted text " hello world. ... how are you?").  Screenshots go to ``<tmp_path>/artifacts/``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from other_origin import serve_page
from playwright.async_api import Request
from test_dashboard_more import SeededCall, chromium, vllm_endpoint, wait_until_ended, wav_bytes
from vllm_server import VllmServer

from bridge.http.auth import SESSION_COOKIE, session_cookie_value
from tests.http.served import ALICE, BOB, SUPERVISOR, Served, serve_bridge

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# Every title the page shows, in order (a title may last only a moment).
WATCH_TITLES = """
window.__titles = [];
new MutationObserver(() => {
  const t = document.getElementById('title');
  if (t && window.__titles[window.__titles.length - 1] !== t.textContent)
    window.__titles.push(t.textContent);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


async def upload(served: Served, token: str, title: str, seconds: float) -> str:
    """A recording POSTed as a live call of the token's agent, at real-time pace."""
    async with httpx.AsyncClient(base_url=served.base) as client:
        r = await client.post(
            f"/api/v1/calls?pace=realtime&roles=agent&title={title}",
            content=wav_bytes(seconds),
            headers={"Content-Type": "audio/wav", "Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 202, r.text
    call_id: str = r.json()["id"]
    return call_id


async def test_the_agent_view_follows_the_agent_from_call_to_call(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    async with (
        serve_bridge(tmp_path / "t.db", endpoint=vllm_endpoint(vllm_server)) as served,
        chromium(tmp_path, token=None, init_scripts=(WATCH_TITLES,)) as browser,
    ):
        # alice opens the dashboard from a link with her token: no call yet, it waits.
        page = await browser.open(f"{served.base}/?token={ALICE}")
        assert page.url == served.base + "/"
        notice = page.locator("#notice")
        await page.locator("#status.waiting").wait_for(timeout=10_000)
        assert (await notice.inner_text()).startswith("No live call right now.")
        assert await page.locator("table").count() == 0  # not the supervisors' table
        await page.screenshot(path=artifacts / "1-waiting.png")

        # bob's call is not hers: the page goes on waiting.
        bobs = await upload(served, BOB, "bob-call.wav", 2.0)
        await wait_until_ended(served, bobs)
        assert await page.locator("#status").inner_text() == "waiting"

        # Her first call: the page opens on it, live.
        first = await upload(served, ALICE, "first-call.wav", 5.0)
        await page.locator("#title", has_text="first-call.wav").wait_for(timeout=15_000)
        await page.locator("#status.live").wait_for(timeout=10_000)
        await page.locator(".seg.final .text", has_text="hello world.").wait_for(timeout=20_000)
        assert await notice.is_hidden()
        assert await page.get_attribute("#export-txt", "href") == (
            f"/api/v1/calls/{first}/export?format=txt"
        )
        await page.screenshot(path=artifacts / "2-first-call-live.png")

        # It ends: the page says so and waits, the call stays on screen for the wrap-up.
        await wait_until_ended(served, first)
        await page.locator("#status.waiting").wait_for(timeout=10_000)
        assert (await notice.inner_text()).startswith("This call has ended. Waiting for your next")
        assert await page.locator("#title").inner_text() == "first-call.wav"
        first_rows = await page.locator(".seg.final .text").all_inner_texts()
        assert any("hello world." in t for t in first_rows), first_rows
        await page.screenshot(path=artifacts / "3-first-call-ended-waiting.png")

        # Her next call: the view moves to it by itself.
        second = await upload(served, ALICE, "second-call.wav", 5.0)
        await page.locator("#title", has_text="second-call.wav").wait_for(timeout=15_000)
        await page.locator("#status.live").wait_for(timeout=10_000)
        assert await notice.is_hidden()
        assert await page.get_attribute("#export-json", "href") == (
            f"/api/v1/calls/{second}/export?format=json"
        )
        await page.locator(".seg.final .text", has_text="hello world.").wait_for(timeout=20_000)
        await page.screenshot(path=artifacts / "4-second-call-live.png")
        doc = await wait_until_ended(served, second)
        await page.locator("#status.waiting").wait_for(timeout=10_000)
        # Exactly the second call's lines: the first one's left the view when it moved.
        finals = await page.locator(".seg.final .text").all_inner_texts()
        assert finals == [s["text"] for s in doc["segments"] if s["final"]], finals
        assert await page.locator(".seg").count() == len(doc["segments"]) + len(doc["gaps"])
        assert page.url == served.base + "/"  # the same page all along
        titles = await page.evaluate("window.__titles")
        assert "bob-call.wav" not in titles, titles
        assert titles.index("first-call.wav") < titles.index("second-call.wav"), titles

        # A supervisor's "/" is the table of every active call, as before.
        third = await upload(served, ALICE, "third-call.wav", 4.0)
        async with chromium(tmp_path, token=SUPERVISOR) as supervisor:
            table = await supervisor.open(served.base + "/")
            row = table.locator("tr.call-row", has_text="third-call.wav")
            await row.wait_for(timeout=10_000)
            assert "agent alice" in await row.inner_text()
            await table.screenshot(path=artifacts / "5-supervisor-table.png")
        await wait_until_ended(served, third)
    print(f"\nscreenshots: {artifacts}")


async def test_an_agent_who_comes_from_another_site_gets_the_own_call_view(
    tmp_path: Path,
) -> None:
    """A link on another site opens "/" without the SameSite=Strict cookie, so the server
    cannot tell an agent from a supervisor; the page's own request can, and sends an agent on
    to their view."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    async with serve_bridge(tmp_path / "t.db") as served:
        call = await SeededCall(served, title="live-alice", live=True, agent="alice").start()
        call.say("Hello from a live call.")
        async with (
            serve_page(f'<!doctype html><a id="go" href="{served.base}/">Call bridge</a>') as port,
            chromium(tmp_path, token=ALICE) as browser,
        ):
            page = await browser.open(f"{served.base}/history")  # logged in as alice
            await page.goto(f"http://localhost:{port}/")
            pages: list[Request] = []  # navigations to the bridge's pages
            page.on(
                "request",
                lambda r: (
                    pages.append(r) if r.is_navigation_request() and "/api/" not in r.url else None
                ),
            )
            await page.click("#go")
            await page.locator("#title", has_text="live-alice").wait_for(timeout=10_000)
            await page.locator(".seg.final .text", has_text="Hello from a live call.").wait_for(
                timeout=10_000
            )
            await page.locator("#status.live").wait_for(timeout=10_000)
            assert page.url == served.base + "/"
            # The link's request went without the cookie (so "/" was the supervisors' page);
            # the page's own request for "/" carried it (so it was the agent's).
            cookies = [(await r.all_headers()).get("cookie") for r in pages]
            assert [r.url for r in pages] == [served.base + "/", served.base + "/?mine"], pages
            assert cookies[0] is None and cookies[1] is not None, cookies
            await page.screenshot(path=artifacts / "from-another-site.png")

        # A link with her token on another site, in a browser not logged in yet: the same.
        async with (
            serve_page(
                f'<!doctype html><a id="go" href="{served.base}/?token={ALICE}">Call bridge</a>'
            ) as port,
            chromium(tmp_path, token=None) as browser,
        ):
            page = await browser.open(f"http://localhost:{port}/")
            await page.click("#go")
            await page.locator("#title", has_text="live-alice").wait_for(timeout=10_000)
            await page.locator("#status.live").wait_for(timeout=10_000)
            assert page.url == served.base + "/"
            [cookie] = [c for c in await browser.context.cookies() if c["name"] == SESSION_COOKIE]
            assert cookie["value"] == session_cookie_value(ALICE)
