"""The login page's ``next``: after a real login the browser stays on the bridge's origin.

Headless Chromium (Debian ``chromium``, Playwright) logs in on ``/login?next=...`` with a real
token.  Hostile values (``/\\evil.example``, which browsers read as ``//evil.example``, a
scheme, a tab or newline the URL parser drops, ...) land on ``/``; a request to any other host
is recorded by a route on the whole browser context and aborted.  A legitimate ``/calls/ID``
path is where the browser goes.  (Issue 12 item 8.)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from browser import ARGS, CHROMIUM
from playwright.async_api import Route, async_playwright

from tests.http.helpers import call
from tests.http.served import SUPERVISOR, serve_bridge

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOSTILE = [
    "/\\evil.example",  # the report: /%5Cevil.example
    "/\\/evil.example",
    "//evil.example",
    "///evil.example",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\\\\evil.example",
    " //evil.example",
    "%2F%2Fevil.example",
    "/%5Cevil.example",  # arrives decoded once: "/%5Cevil.example" as a path is harmless
    "evil.example",
    "",
]


async def test_next_stays_on_the_bridge_origin(tmp_path: Path) -> None:
    async with serve_bridge(tmp_path / "t.db") as served, async_playwright() as pw:
        await served.store.add_call(call("call-abc"))
        origin = urlsplit(served.base).netloc
        elsewhere: list[str] = []

        async def block_other_hosts(route: Route) -> None:
            if urlsplit(route.request.url).netloc != origin:
                elsewhere.append(route.request.url)
                await route.abort()
            else:
                await route.continue_()

        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = await browser.new_context()
            await context.route("**/*", block_other_hosts)
            page = await context.new_page()

            async def login(next_value: str) -> str:
                await page.goto(f"{served.base}/login?next={quote(next_value, safe='')}")
                await page.fill("#token", SUPERVISOR)
                async with page.expect_navigation():
                    await page.click("button[type=submit]")
                await page.wait_for_load_state()
                return page.url

            for value in HOSTILE:
                landed = await login(value)
                assert urlsplit(landed).netloc == origin, (value, landed)
                if value != "/%5Cevil.example":
                    assert landed == served.base + "/", (value, landed)
            assert elsewhere == []
            # The legitimate use: a dashboard link that needed a login first.
            for value in ("/calls/call-abc", "/history?q=router&since=2026-01-01"):
                assert await login(value) == served.base + value
            assert elsewhere == []
        finally:
            await browser.close()
