"""One login per browser session, kept out of URLs, usable only from the bridge's own pages
(issue 13 item 7b).

Headless Chromium (Debian ``chromium``, Playwright) against the real app on a real 127.0.0.1
socket over a real SQLite file:

* logging in once on /login logs in every tab of the browser (a session cookie: HttpOnly,
  SameSite=Strict, no expiry), the export buttons link without a token and download; Log out in
  one tab logs out every tab;
* a ``?token=`` link logs in and the page reloads without the token (address bar and history);
  a wrong one logs nobody in;
* a page of another origin cannot use the login: from another port of the same host (same site,
  so the cookie goes along) a POST that would start a transcription is refused (403) and so is
  the live WebSocket; from another site the cookie does not even go along (401).  The same code
  on the bridge's own page works.

And the rules over plain HTTP (httpx, websockets): which requests the cookie authorizes with and
without an ``Origin`` / ``Sec-Fetch-Site`` header; Bearer API calls need neither.
Screenshots go to ``<tmp_path>/artifacts/``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from other_origin import serve_page
from playwright.async_api import Download, Page, Response
from test_dashboard_more import SeededCall, chromium, wav_bytes
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bridge.http.auth import SESSION_COOKIE, session_cookie_value
from tests.http.served import ALICE, SUPERVISOR, Served, serve_bridge

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def seeded(served: Served, title: str, lines: list[str], agent: str | None = None) -> str:
    call = await SeededCall(served, title=title, live=False, agent=agent).start()
    for line in lines:
        call.say(line)
    await call.end()
    return call.id


async def downloaded(download: Download) -> str:
    """The text of a file the browser downloaded."""
    return await asyncio.to_thread(Path(await download.path()).read_text)


async def session_cookies(page: Page) -> list[dict[str, object]]:
    return [dict(c) for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]


async def test_one_login_serves_every_tab_and_log_out_ends_it(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    async with serve_bridge(tmp_path / "t.db") as served:
        call_id = await seeded(
            served, "session-call", ["Hello, how can I help?", "My router is broken."]
        )
        async with chromium(tmp_path, token=None) as browser:
            page = await browser.open(served.base + "/history")
            await page.wait_for_url(f"{served.base}/login?next=%2Fhistory")
            await page.screenshot(path=artifacts / "login.png")
            await page.fill("#token", SUPERVISOR)
            await page.press("#token", "Enter")
            await page.wait_for_url(served.base + "/history")
            await page.locator("#rows tr a", has_text="session-call").wait_for(timeout=10_000)
            await page.screenshot(path=artifacts / "history.png")

            # The login is a session cookie no script can read, and nothing else.
            [cookie] = await session_cookies(page)
            assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict", cookie
            assert cookie["expires"] == -1, cookie  # ends with the browser session
            assert cookie["secure"] is False and cookie["path"] == "/", cookie  # plain http here
            assert await page.evaluate("document.cookie") == ""
            stored = await page.evaluate("JSON.stringify([{...sessionStorage}, {...localStorage}])")
            assert stored == "[{},{}]"

            # A second tab of the same browser is logged in: no login page.
            tab = await browser.context.new_page()
            await tab.goto(f"{served.base}/calls/{call_id}")
            await tab.locator("#status.ended").wait_for(timeout=10_000)
            assert tab.url == f"{served.base}/calls/{call_id}"
            assert await tab.locator(".seg.final .text").all_inner_texts() == [
                "Hello, how can I help?",
                "My router is broken.",
            ]
            # The export buttons carry no token; the cookie authorizes the download.
            for fmt in ("txt", "vtt", "srt", "json"):
                href = await tab.get_attribute(f"#export-{fmt}", "href")
                assert href == f"/api/v1/calls/{call_id}/export?format={fmt}", href
            async with tab.expect_download() as info:
                await tab.click("#export-txt")
            download = await info.value
            assert download.suggested_filename == f"call-{call_id[:12]}.txt"
            text = await downloaded(download)
            assert "My router is broken." in text, text
            async with tab.expect_download() as info:
                await tab.click("#export-json")
            document = json.loads(await downloaded(await info.value))
            assert document["call"]["id"] == call_id
            await tab.screenshot(path=artifacts / "second-tab-agent-view.png")

            # A third tab: the supervisors' table, live.
            third = await browser.context.new_page()
            await third.goto(served.base + "/")
            await third.locator("#status.live").wait_for(timeout=10_000)
            await third.screenshot(path=artifacts / "third-tab-supervisor.png")

            # Log out in one tab: the cookie is gone, every tab is logged out.
            await tab.click("#logout")
            await tab.wait_for_url(served.base + "/login")
            assert await session_cookies(page) == []
            await page.reload()
            await page.wait_for_url(f"{served.base}/login?next=%2Fhistory")
            await third.goto(served.base + "/")
            await third.wait_for_url(f"{served.base}/login?next=%2F")
    print(f"\nscreenshots: {artifacts}")


async def test_a_token_link_logs_in_once_and_leaves_no_token_behind(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    async with serve_bridge(tmp_path / "t.db") as served:
        mine = await seeded(served, "alice-call", ["Good morning."], agent="alice")
        await seeded(served, "bob-call", ["Not for alice."], agent="bob")
        async with chromium(tmp_path, token=None) as browser:
            tokens_sent: list[tuple[str, int | None]] = []

            async def record(response: Response) -> None:
                if "token=" in response.url:
                    tokens_sent.append((response.url, response.status))

            browser.context.on("response", record)
            page = await browser.open(f"{served.base}/calls/{mine}?token={ALICE}")
            assert page.url == f"{served.base}/calls/{mine}"
            await page.locator(".seg.final .text", has_text="Good morning.").wait_for(
                timeout=10_000
            )
            assert await page.evaluate("location.href") == f"{served.base}/calls/{mine}"
            # The history holds the page without the token: Back goes to where the tab was.
            assert await page.evaluate("history.length") == 2  # about:blank, the page
            await page.go_back()
            assert page.url == "about:blank"
            await page.go_forward()
            assert page.url == f"{served.base}/calls/{mine}"
            await page.locator(".seg.final .text", has_text="Good morning.").wait_for(
                timeout=10_000
            )
            # The token went out once, in the link itself; the answer was the redirect.
            assert tokens_sent == [(f"{served.base}/calls/{mine}?token={ALICE}", 303)]
            await page.screenshot(path=artifacts / "token-link.png")

            # Another tab is logged in as alice: her calls only.
            tab = await browser.context.new_page()
            await tab.goto(served.base + "/history")
            await tab.locator("#count", has_text="1 call(s)").wait_for(timeout=10_000)
            assert "alice-call" in await tab.locator("#rows").inner_text()
            who = await tab.evaluate("fetch('/api/v1/session').then((r) => r.json())")
            assert who == {"role": "agent", "agent": "alice"}
            # Other query parameters stay; every token parameter goes.
            await tab.goto(f"{served.base}/history?q=morning&token={ALICE}&status=ended&token=x")
            assert tab.url == f"{served.base}/history?q=morning&status=ended"

        # A link with a wrong token logs nobody in: the login page, without the token.
        async with chromium(tmp_path, token=None) as browser:
            page = await browser.open(f"{served.base}/history?token=wrong-token-123")
            await page.wait_for_url(f"{served.base}/login?next=%2Fhistory")
            assert await session_cookies(page) == []
    print(f"\nscreenshots: {artifacts}")


# Run in a page: a POST that would start a transcription (multipart, as a form could send it,
# so no CORS preflight) and the live WebSocket, both relying on the browser's cookies.
ATTACK = """async ([bridge, wav]) => {
  const bytes = Uint8Array.from(atob(wav), (c) => c.charCodeAt(0));
  const form = new FormData();
  form.append("file", new Blob([bytes], { type: "audio/wav" }), "csrf.wav");
  const mode = new URL(bridge).origin === location.origin ? "same-origin" : "no-cors";
  let post;
  try {
    const r = await fetch(bridge + "/api/v1/calls?pace=fast&title=csrf", {
      method: "POST", mode, credentials: "include", body: form });
    post = r.type === "opaque" ? "opaque" : r.status;
  } catch (e) { post = "error: " + e.message; }
  const ws = await new Promise((done) => {
    const s = new WebSocket(bridge.replace("http:", "ws:") + "/api/v1/live");
    s.onopen = () => { s.close(); done("open"); };
    s.onerror = () => done("refused");
  });
  return { post, ws };
}"""


async def test_a_page_of_another_origin_cannot_use_the_login(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    wav = base64.b64encode(wav_bytes(0.5)).decode()
    async with (
        serve_bridge(tmp_path / "t.db") as served,
        serve_page("<!doctype html><title>elsewhere</title><p>Another origin.</p>") as port,
        chromium(tmp_path, token=None) as browser,
    ):
        statuses: dict[str, list[int]] = {}

        def record(response: Response) -> None:
            if "/api/v1/calls?pace=fast" in response.url:
                statuses.setdefault(response.frame.url.split("/")[2], []).append(response.status)

        browser.context.on("response", record)
        page = await browser.open(f"{served.base}/?token={SUPERVISOR}")  # logged in
        await page.locator("#status.live").wait_for(timeout=10_000)
        bridge_host = urlsplit(served.base).netloc

        # Another port of this host: the same site, so the SameSite=Strict cookie goes along;
        # the bridge refuses it for lack of a same-origin Origin.
        other = await browser.context.new_page()
        await other.goto(f"http://127.0.0.1:{port}/")
        result = await other.evaluate(ATTACK, [served.base, wav])
        assert result == {"post": "opaque", "ws": "refused"}, result
        # Another site: the cookie stays home.
        far = await browser.context.new_page()
        await far.goto(f"http://localhost:{port}/")
        result = await far.evaluate(ATTACK, [served.base, wav])
        assert result == {"post": "opaque", "ws": "refused"}, result
        # The same code on the bridge's own page: the cookie is all it needs.
        result = await page.evaluate(ATTACK, [served.base, wav])
        assert result["post"] == 202 and result["ws"] == "open", result

        assert statuses == {
            f"127.0.0.1:{port}": [403],  # the cookie came, the Origin did not match
            f"localhost:{port}": [401],  # no cookie at all
            bridge_host: [202],
        }, statuses
        async with httpx.AsyncClient(base_url=served.base, headers=served.auth()) as client:
            calls = (await client.get("/api/v1/calls")).json()["calls"]
        assert [c["title"] for c in calls] == ["csrf.wav"]  # only the bridge page's own upload
    print(f"\nscreenshots: {artifacts}")


async def test_the_cookie_changes_things_only_from_this_origin(tmp_path: Path) -> None:
    """The rules over plain HTTP: reads with the cookie need no proof; a change needs Origin (or
    Sec-Fetch-Site: same-origin) naming this bridge; Bearer needs neither; the WebSocket with
    the cookie needs the Origin too."""
    async with serve_bridge(tmp_path / "t.db") as served:
        ids = [await seeded(served, f"call-{n}", ["A line."]) for n in range(4)]
        host = urlsplit(served.base).netloc
        port = int(host.rsplit(":", 1)[1])
        cookie = {"Cookie": f"{SESSION_COOKIE}={session_cookie_value(SUPERVISOR)}"}
        async with httpx.AsyncClient(base_url=served.base) as client:
            r = await client.get("/api/v1/calls", headers=cookie)
            assert r.status_code == 200 and r.json()["total"] == 4
            refused: list[dict[str, str]] = [
                {},  # no proof at all (a script outside a browser, an old browser)
                {"Origin": f"http://127.0.0.1:{port + 1}"},  # another port of this host
                {"Origin": "http://evil.example"},
                {"Origin": "null"},  # a sandboxed frame, a data: URL
                {"Origin": f"http://{host}.evil.example"},
                {"Origin": served.base, "Sec-Fetch-Site": "same-site"},
                {"Sec-Fetch-Site": "cross-site"},
            ]
            for extra in refused:
                r = await client.delete(f"/api/v1/calls/{ids[0]}", headers={**cookie, **extra})
                assert r.status_code == 403, (extra, r.text)
                assert r.json()["type"].endswith("/cross-site"), r.text
                assert "Authorization: Bearer" in r.json()["detail"], r.text
            r = await client.delete(
                f"/api/v1/calls/{ids[0]}", headers={**cookie, "Origin": served.base}
            )
            assert r.status_code == 204, r.text
            r = await client.delete(
                f"/api/v1/calls/{ids[1]}", headers={**cookie, "Sec-Fetch-Site": "same-origin"}
            )
            assert r.status_code == 204, r.text
            # An API client with its Bearer token: no Origin needed, none checked.
            r = await client.delete(f"/api/v1/calls/{ids[2]}", headers=served.auth())
            assert r.status_code == 204, r.text
            r = await client.delete(
                f"/api/v1/calls/{ids[3]}",
                headers={**served.auth(), "Origin": "http://evil.example"},
            )
            assert r.status_code == 204, r.text

            # A cookie whose token is not (any more) valid: 401, and the cookie is cleared.
            r = await client.get(
                "/api/v1/calls", headers={"Cookie": f"{SESSION_COOKIE}=wrong-token-123"}
            )
            assert r.status_code == 401 and "log in again at /login" in r.json()["detail"]
            assert r.headers["set-cookie"].startswith(f'{SESSION_COOKIE}=""; ')
            assert "Max-Age=0" in r.headers["set-cookie"]

            # Behind a proxy that ends TLS (X-Forwarded-Proto from a trusted address, here
            # loopback: uvicorn's default), the cookie is Secure.
            r = await client.post(
                "/api/v1/session", headers={**served.auth(), "X-Forwarded-Proto": "https"}
            )
            assert r.status_code == 200
            assert "secure" in [a.strip().lower() for a in r.headers["set-cookie"].split(";")]
            # The login: the token only as Bearer; the cookie's attributes.
            r = await client.post(f"/api/v1/session?token={SUPERVISOR}")
            assert r.status_code == 400 and "Authorization: Bearer" in r.json()["detail"]
            r = await client.post("/api/v1/session", headers=served.auth(ALICE))
            assert r.status_code == 200 and r.json() == {"role": "agent", "agent": "alice"}
            attributes = [a.strip().lower() for a in r.headers["set-cookie"].split(";")]
            assert attributes[0] == f"{SESSION_COOKIE}={session_cookie_value(ALICE)}".lower()
            assert {"httponly", "samesite=strict", "path=/"} <= set(attributes), attributes
            assert not [a for a in attributes if a.startswith(("max-age", "expires", "secure"))]
            # Logging out is a change too.
            r = await client.delete("/api/v1/session", headers=cookie)
            assert r.status_code == 403
            r = await client.delete("/api/v1/session", headers={**cookie, "Origin": served.base})
            assert r.status_code == 204 and "Max-Age=0" in r.headers["set-cookie"]

        # The live WebSocket with the cookie: only from this origin.
        url = served.ws + "/api/v1/live"
        for extra in ({}, {"Origin": "http://evil.example"}):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url, additional_headers={**cookie, **extra}):
                    pass
            assert info.value.response.status_code == 403
        async with connect(url, additional_headers={**cookie, "Origin": served.base}) as ws:
            await ws.ping()
