"""More of the dashboards in a real browser (headless Debian ``chromium`` driven by Playwright).

Each test runs the real app on a real 127.0.0.1 socket over a real SQLite file:

* the agent view of a live call survives a bridge restart on the same port (lost connection
  shown, reconnects by itself, ends with the call's stored finals, re-read over REST);
* ``/history``: full-text search finds the one call that said a word, a click opens it;
* keyboard use: Tab order and accessible names of the agent view's toolbar, Enter on a call
  link of the supervisor view;
* auto-scroll of the agent view pauses while the user reads above and resumes at the bottom.

The live call and the fast upload use the session's real vLLM CPU server (scripted text
" hello world. ... how are you?"); other calls are seeded through the storage API (and the live
hub, for calls that must look active).  Screenshots go to ``<tmp_path>/artifacts/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import uvicorn
from browser import ARGS, CHROMIUM
from playwright.async_api import BrowserContext, Page, async_playwright
from playwright.async_api import Error as PlaywrightError
from vllm_server import VllmServer

from bridge.asr.client import AsrEndpoint
from bridge.core.types import CallId, CallInfo, LegId, LegInfo, LegRole, LegSource, Segment
from bridge.http.app import close_app, create_app
from bridge.http.auth import SESSION_COOKIE, session_cookie_value
from bridge.live import LiveHub
from bridge.live.tee import PublishingStore
from storage import TranscriptStore
from tests.http.served import ALICE, SUPERVISOR, TOKENS, Served, serve_bridge

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


# Every status the page shows, in order (a state may last only a moment).
WATCH_STATUS = """
window.__statuses = [];
new MutationObserver(() => {
  const s = document.getElementById('status');
  if (s && window.__statuses[window.__statuses.length - 1] !== s.className)
    window.__statuses.push(s.className);
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
"""


def wav_bytes(seconds: float, rate: int = 16_000) -> bytes:
    """A mono 440 Hz tone (the scripted server says its text whatever the audio)."""
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.1 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def login_cookie(base: str, token: str) -> dict[str, Any]:
    """The session cookie for the bridge at ``base``, as the login page leaves it."""
    return {
        "name": SESSION_COOKIE,
        "value": session_cookie_value(token),
        "url": base,
        "httpOnly": True,
        "sameSite": "Strict",
    }


class Browser:
    """A fresh headless Chromium (own profile) whose pages start logged in."""

    def __init__(self, context: BrowserContext, token: str | None) -> None:
        self.context = context
        self.token = token

    async def open(self, url: str) -> Page:
        """A page showing ``url`` (logged in to its bridge if the browser has a token).

        This Chromium's renderer now and then (about 1 launch in 30 here, test_dashboard.py too)
        crashes on a profile's first navigation ("Page crashed"); a crashed page cannot navigate
        again, so that one attempt is repeated once in a new page.
        """
        if self.token is not None:
            parts = urlsplit(url)
            await self.context.add_cookies(
                [login_cookie(f"{parts.scheme}://{parts.netloc}", self.token)]
            )
        page = self.context.pages[0] if self.context.pages else await self.context.new_page()
        try:
            await page.goto(url)
        except PlaywrightError as exc:  # TargetClosedError "Page.goto: Page crashed"
            if "crashed" not in str(exc):
                raise
            await page.close()
            page = await self.context.new_page()
            await page.goto(url)
        return page


@contextlib.asynccontextmanager
async def chromium(
    tmp_path: Path, *, token: str | None = SUPERVISOR, init_scripts: tuple[str, ...] = ()
) -> AsyncIterator[Browser]:
    """Chromium logged in with ``token`` (None: not logged in)."""
    async with async_playwright() as pw:
        context: BrowserContext = await pw.chromium.launch_persistent_context(
            str(tmp_path / f"chromium-profile-{uuid.uuid4().hex[:8]}"),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1366, "height": 768},
        )
        try:
            for script in init_scripts:
                await context.add_init_script(script)
            yield Browser(context, token)
        finally:
            await context.close()


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def serve_on_port(db: Path, port: int, *, endpoint: AsrEndpoint) -> AsyncIterator[Served]:
    """Like :func:`tests.http.served.serve_bridge`, but on a given port (for a restart), and
    starting as ``bridge serve`` does: calls a previous run left active are marked ended."""
    store = await TranscriptStore.open(db)
    await store.end_active_calls(ended_at_ms=int(time.time() * 1000), cause="bridge-restarted")
    hub = LiveHub()
    app = create_app(store=store, hub=hub, endpoint=endpoint, tokens=TOKENS)
    server = task = None
    try:
        # uvicorn binds with SO_REUSEADDR, so the old server's TIME_WAIT connections do not block
        # the port; only another process taking it meanwhile could (then retry for a while).
        for _ in range(50):
            server = _Quiet(
                uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
            )
            task = asyncio.create_task(server.serve())
            for _ in range(1000):
                if server.started or task.done():
                    break
                await asyncio.sleep(0.01)
            if server.started:
                break
            with contextlib.suppress(SystemExit, OSError):
                await task  # uvicorn exits (SystemExit) when it cannot bind
            await asyncio.sleep(0.1)
        assert server is not None and server.started, f"cannot bind 127.0.0.1:{port} again"
        yield Served(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", store, hub)
    finally:
        await close_app(app)
        if server is not None and task is not None and server.started:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
        await store.close()


def vllm_endpoint(vllm_server: VllmServer) -> AsrEndpoint:
    return AsrEndpoint(
        url=vllm_server.url,
        model=vllm_server.model,
        api_key=vllm_server.api_key,
        stall_timeout_s=10,
    )


async def wait_until_ended(served: Served, call_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """The call's REST document once it has ended (polls; no sleeps of fixed length)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=served.base, headers=served.auth()) as client:
        while True:
            doc: dict[str, Any] = (await client.get(f"/api/v1/calls/{call_id}")).json()
            if not doc["call"]["active"] or time.monotonic() > deadline:
                assert not doc["call"]["active"], f"call {call_id} still active"
                return doc
            await asyncio.sleep(0.1)


class SeededCall:
    """A call written through the storage API (and, if ``live``, published to the hub)."""

    def __init__(self, served: Served, *, title: str, live: bool, agent: str | None = None):
        self.served = served
        self.sink: TranscriptStore | PublishingStore = (
            PublishingStore(served.store, served.hub) if live else served.store
        )
        self.live = live
        # An ended call started an hour ago; a live one now (so its ASR lag looks sane).
        self.started_at_ms = int(time.time() * 1000) - (0 if live else 3_600_000)
        self.call = CallInfo(
            call_id=CallId(uuid.uuid4().hex),
            source=LegSource.FILE,
            started_at_ms=self.started_at_ms,
            title=title,
            agent=agent,
        )
        self.leg = LegInfo(
            call_id=self.call.call_id,
            leg_id=LegId(uuid.uuid4().hex),
            role=LegRole.AGENT,
            label="left channel",
            codec="pcm16/16000",
            source=LegSource.FILE,
            started_at_ms=self.started_at_ms,
        )
        self.seq = 0

    @property
    def id(self) -> str:
        return self.call.call_id

    async def start(self) -> SeededCall:
        await self.sink.add_call(self.call)
        await self.sink.add_leg(self.leg)
        return self

    def say(self, text: str, *, publish: bool = True) -> None:
        """One final segment, 2 s long, after the previous ones."""
        start = self.seq * 2_000
        seg = Segment(
            self.call.call_id, self.leg.leg_id, self.seq, start, start + 1_900, text, True
        )
        self.seq += 1
        self.served.store.put_segment(seg)
        if self.live and publish:
            self.served.hub.listener(self.leg, seg)

    async def end(self) -> None:
        await self.served.store.flush()
        end = self.started_at_ms + self.seq * 2_000
        await self.sink.end_leg(self.leg.leg_id, ended_at_ms=end, duration_ms=self.seq * 2_000)
        await self.sink.end_call(self.id, ended_at_ms=end, cause="completed")


# -- 1. the agent view survives a bridge restart -----------------------------------------------


async def test_agent_view_reconnects_after_a_bridge_restart_and_shows_the_stored_finals(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    db = tmp_path / "t.db"
    endpoint = vllm_endpoint(vllm_server)
    async with chromium(tmp_path, init_scripts=(WATCH_STATUS,)) as browser:
        async with serve_bridge(db, endpoint=endpoint) as first:
            port = int(first.base.rsplit(":", 1)[1])
            async with httpx.AsyncClient(base_url=first.base) as client:
                r = await client.post(
                    "/api/v1/calls?pace=realtime&roles=agent&agent=alice&title=restart.wav",
                    content=wav_bytes(8.0),
                    headers={"Content-Type": "audio/wav", "Authorization": f"Bearer {ALICE}"},
                )
            assert r.status_code == 202, r.text
            call_id = r.json()["id"]
            page = await browser.open(f"{first.base}/calls/{call_id}")
            await page.locator("#status.live").wait_for(timeout=10_000)
            await page.locator(".seg.final .text", has_text="hello world.").wait_for(timeout=20_000)
            await page.evaluate("window.__samePage = true")  # gone if the page reloads
            await page.screenshot(path=artifacts / "restart-1-live.png")
        # Closing the bridge stopped the upload cleanly: its legs finished, no ASR task is left.
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("asr-")]
        # The bridge is down (its socket closed, the upload cancelled): the page says so.
        await page.locator("#status.reconnecting").wait_for(timeout=10_000)
        await page.screenshot(path=artifacts / "restart-2-down.png")
        assert await page.locator("#status").inner_text() == "reconnecting"

        rest_reads: list[str] = []
        page.on(
            "request",
            lambda req: (
                rest_reads.append(req.url) if f"/api/v1/calls/{call_id}" in req.url else None
            ),
        )
        async with serve_on_port(db, port, endpoint=endpoint) as second:
            assert second.base == first.base
            # A new hub: the page's resume_from is beyond its seq, so it gets a resync, re-reads
            # the call over REST and shows what the store kept: the call has ended.
            await page.locator("#status.ended").wait_for(timeout=20_000)
            await page.screenshot(path=artifacts / "restart-3-resynced.png")
            assert await page.evaluate("window.__samePage === true"), "the page was reloaded"
            assert rest_reads, "the page did not re-read the call over REST"
            async with httpx.AsyncClient(base_url=second.base, headers=second.auth()) as client:
                doc = (await client.get(f"/api/v1/calls/{call_id}")).json()
            # The old bridge ended the call as it shut down (the upload stopped, its legs
            # finished): nothing was left for the new one to close at start-up.
            assert doc["call"]["end_cause"] == "interrupted", doc["call"]
            stored_finals = [s["text"] for s in doc["segments"] if s["final"]]
            assert any("hello world." in t for t in stored_finals), doc["segments"]
            shown_finals = await page.locator(".seg.final .text").all_inner_texts()
            assert shown_finals == stored_finals
            assert await page.locator(".seg").count() == len(doc["segments"]) + len(doc["gaps"])
            statuses = await page.evaluate("window.__statuses")
            i = statuses.index("status live")
            j = statuses.index("status reconnecting", i)
            assert "status ended" in statuses[j:], statuses
    print(f"\nscreenshots: {artifacts}")


# -- 2. history and search ---------------------------------------------------------------------


async def test_history_search_finds_the_one_call_that_said_the_word_and_opens_it(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    async with serve_bridge(tmp_path / "t.db", endpoint=vllm_endpoint(vllm_server)) as served:
        # One call transcribed by the real pipeline (says "hello world. ... how are you?") ...
        async with httpx.AsyncClient(base_url=served.base, headers=served.auth()) as client:
            r = await client.post(
                "/api/v1/calls?pace=fast&roles=agent&title=greeting.wav",
                content=wav_bytes(3.0),
                headers={"Content-Type": "audio/wav"},
            )
        assert r.status_code == 202, r.text
        greeting = r.json()["id"]
        # ... and two seeded through the storage API, each with its own words.
        refund = await SeededCall(served, title="refund-call", live=False).start()
        refund.say("I would like a refund for order 1234.")
        refund.say("Thank you, goodbye.")
        await refund.end()
        delivery = await SeededCall(served, title="delivery-call", live=False).start()
        delivery.say("The parcel delivery was late again.")
        await delivery.end()
        await wait_until_ended(served, greeting)

        async with chromium(tmp_path) as browser:
            page = await browser.open(served.base + "/history")
            count = page.locator("#count")
            await count.filter(has_text="3 call(s)").wait_for(timeout=10_000)
            assert await page.locator("#rows tr").count() == 3

            await page.get_by_label("Words said").fill("refund")
            await page.get_by_role("button", name="Search").click()
            await count.filter(has_text="1 call(s)").wait_for(timeout=10_000)
            [only] = await page.locator("#rows tr").all_inner_texts()
            assert "refund-call" in only
            await page.screenshot(path=artifacts / "history-refund.png")

            # A word only the transcribed call said (Enter in the field submits too).
            await page.get_by_label("Words said").fill("hello")
            await page.get_by_label("Words said").press("Enter")
            await page.locator("#rows tr a", has_text="greeting.wav").wait_for(timeout=10_000)
            await count.filter(has_text="1 call(s)").wait_for(timeout=10_000)
            assert await page.locator("#rows tr").count() == 1

            await page.get_by_label("Words said").fill("nobody said this")
            await page.get_by_label("Words said").press("Enter")
            await count.filter(has_text="0 call(s)").wait_for(timeout=10_000)
            assert await page.locator("#rows tr").count() == 0

            await page.get_by_label("Words said").fill("refund order")
            await page.get_by_label("Words said").press("Enter")
            link = page.locator("#rows tr a", has_text="refund-call")
            await link.wait_for(timeout=10_000)
            await link.click()
            await page.wait_for_url(f"**/calls/{refund.id}")
            await page.locator("#status.ended").wait_for(timeout=10_000)
            assert await page.locator("#title").inner_text() == "refund-call"
            assert await page.locator(".seg.final .text").all_inner_texts() == [
                "I would like a refund for order 1234.",
                "Thank you, goodbye.",
            ]
            await page.screenshot(path=artifacts / "history-opened.png")
    print(f"\nscreenshots: {artifacts}")


# -- 3. keyboard use ---------------------------------------------------------------------------

FOCUSED = """() => {
  const e = document.activeElement;
  if (!e) return '';
  return (e.id || e.tagName.toLowerCase()) + '|' + (e.textContent || '').trim().slice(0, 30);
}"""


async def tab_stops(page: Page, limit: int = 20) -> list[str]:
    """What Tab focuses, in order, from the top of the page until it wraps to the first again."""
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    stops: list[str] = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        here = await page.evaluate(FOCUSED)
        if stops and here == stops[0]:
            break
        if here and not here.startswith("body|"):
            stops.append(here)
    return stops


async def test_keyboard_reaches_the_toolbar_in_order_and_enter_opens_a_call(
    tmp_path: Path,
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    async with serve_bridge(tmp_path / "t.db") as served:
        ended = await SeededCall(served, title="keyboard-call", live=False).start()
        ended.say("First line of the call.")
        ended.say("Second line of the call.")
        await ended.end()
        live = await SeededCall(served, title="live-keyboard-call", live=True).start()
        live.say("Still talking here.")

        async with chromium(tmp_path) as browser:
            await browser.context.grant_permissions(
                ["clipboard-read", "clipboard-write"], origin=served.base
            )
            page = await browser.open(f"{served.base}/calls/{ended.id}")
            await page.locator("#status.ended").wait_for(timeout=10_000)
            stops = await tab_stops(page)
            assert [s.split("|")[0] for s in stops] == [
                "a",  # nav: Active calls
                "a",  # nav: History
                "copy",
                "export-txt",
                "export-vtt",
                "export-srt",
                "export-json",
                "logout",
                "transcript",
            ], stops
            # Every control has an accessible name (what a screen reader announces).
            assert await page.get_by_role("button", name="Copy", exact=True).count() == 1
            for name in ["TXT", "WebVTT", "SRT", "JSON"]:
                assert await page.get_by_role("link", name=name, exact=True).count() == 1, name
            assert await page.get_by_label("Transcript", exact=True).count() == 1

            # Enter on the focused Copy button copies the final lines.
            await page.locator("#copy").focus()
            await page.keyboard.press("Enter")
            await page.wait_for_function(
                "navigator.clipboard.readText().then((t) => t.includes('Second line'))",
                timeout=5_000,
            )
            copied = await page.evaluate("navigator.clipboard.readText()")
            assert copied.splitlines() == [
                "[00:00] agent: First line of the call.",
                "[00:02] agent: Second line of the call.",
            ]
            await page.screenshot(path=artifacts / "agent-keyboard.png")

            # Supervisor view: Tab reaches the live call's link; Enter opens the agent view.
            await page.goto(served.base + "/")
            await page.locator("tr.call-row", has_text="live-keyboard-call").wait_for(
                timeout=10_000
            )
            await page.evaluate("document.activeElement && document.activeElement.blur()")
            for _ in range(10):
                await page.keyboard.press("Tab")
                if "live-keyboard-call" in await page.evaluate(FOCUSED):
                    break
            else:
                raise AssertionError("Tab never reached the call's link")
            await page.screenshot(path=artifacts / "supervisor-focus.png")
            await page.keyboard.press("Enter")
            await page.wait_for_url(f"**/calls/{live.id}")
            await page.locator(".seg.final .text", has_text="Still talking here.").wait_for(
                timeout=10_000
            )
            await page.locator("#status.live").wait_for(timeout=10_000)
    print(f"\nscreenshots: {artifacts}")


# -- 4. auto-scroll pauses while the user reads above ------------------------------------------

SCROLL = """() => {
  const b = document.getElementById('transcript');
  return {top: b.scrollTop, height: b.scrollHeight, client: b.clientHeight,
          rows: b.querySelectorAll('.seg').length};
}"""
LAST_ROW_BELOW_VIEW = """(() => {
  const box = document.getElementById('transcript').getBoundingClientRect();
  return [...document.querySelectorAll('.seg')].pop().getBoundingClientRect().top >= box.bottom;
})()"""
AT_BOTTOM = (
    "(() => { const b = document.getElementById('transcript');"
    " return b.scrollHeight - b.scrollTop - b.clientHeight < 2; })()"
)


async def test_auto_scroll_pauses_when_scrolled_up_and_resumes_at_the_bottom(
    tmp_path: Path,
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    async with serve_bridge(tmp_path / "t.db") as served:
        call = await SeededCall(served, title="long-call", live=True).start()
        for i in range(200):
            call.say(f"Line {i} of a long call.", publish=False)  # history: the store only
        await served.store.flush()

        async with chromium(tmp_path) as browser:
            page = await browser.open(f"{served.base}/calls/{call.id}")
            await page.locator("#status.live").wait_for(timeout=10_000)
            await page.locator(".seg", has_text="Line 199 of").wait_for(timeout=10_000)
            assert (await page.evaluate(SCROLL))["rows"] == 200
            await page.wait_for_function(AT_BOTTOM, timeout=5_000)  # opens at the live end

            # The user scrolls up with the wheel: the jump button appears.
            box = page.locator("#transcript")
            await box.hover()
            await page.mouse.wheel(0, -3000)
            await page.locator("#jump.show").wait_for(timeout=5_000)
            before = await page.evaluate(SCROLL)
            assert before["top"] < before["height"] - before["client"] - 1000, before
            for i in range(200, 210):
                call.say(f"Line {i} arrives live.")
            await page.locator(".seg", has_text="Line 209 arrives").wait_for(
                state="attached", timeout=10_000
            )
            after = await page.evaluate(SCROLL)
            assert after["rows"] == 210
            assert after["height"] > before["height"]
            assert after["top"] == before["top"], (before, after)  # the viewport did not move
            assert await page.evaluate(LAST_ROW_BELOW_VIEW)  # the new rows are out of sight
            await page.screenshot(path=artifacts / "scrolled-up.png")

            # Scrolling back to the bottom resumes following.
            await box.hover()
            for _ in range(20):
                await page.mouse.wheel(0, 5000)
                if await page.evaluate(AT_BOTTOM):
                    break
            await page.locator("#jump.show").wait_for(state="hidden", timeout=5_000)
            for i in range(210, 215):
                call.say(f"Line {i} follows.")
            await page.locator(".seg", has_text="Line 214 follows.").wait_for(timeout=10_000)
            await page.wait_for_function(AT_BOTTOM, timeout=5_000)
            assert not await page.evaluate(LAST_ROW_BELOW_VIEW)
            await page.screenshot(path=artifacts / "following-again.png")

            # The jump button (and End) bring a reader back to the live end, too.
            await box.hover()
            await page.mouse.wheel(0, -3000)
            await page.locator("#jump.show").wait_for(timeout=5_000)
            await page.locator("#jump").click()
            await page.wait_for_function(AT_BOTTOM, timeout=5_000)
            call.say("Line 215 after the jump.")
            await page.locator(".seg", has_text="Line 215 after the jump.").wait_for(timeout=10_000)
            await page.wait_for_function(AT_BOTTOM, timeout=5_000)
    print(f"\nscreenshots: {artifacts}")
