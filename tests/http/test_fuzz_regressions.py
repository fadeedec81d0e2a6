"""Inputs that once gave HTTP 500 (issue 12 item 9): each is a 400 problem without a server path.

Non-ASCII digits (``'²'.isdigit()`` is true, ``int('٣')`` is 3), numbers of 20+ digits (past
SQLite's 64-bit integers), ``q=%00`` (FTS5 ends a string at NUL), and WHIP SDP ports and clock
rates written that way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .served import ALICE, SUPERVISOR, serve_bridge

CHROME = (Path(__file__).parent.parent / "webrtc" / "chrome156_two_audio.sdp").read_text()
LEAKS = ("/work/", "/tmp/", "/home/", "/root/", ".py", ".db", "Traceback")

BAD_QUERIES = [
    "since=²",
    "since=%D9%A3",  # Arabic-Indic three
    "since=1²",
    "until=" + "9" * 20,
    "since=" + "9" * 25,
    "until=" + "9" * 5000,
    "since=0001-01-01T00:00:00%2B14:00x",
    "since=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-01",  # fullwidth digits
    "limit=²",
    "limit=" + "9" * 30,
    "offset=%D9%A3",
    "offset=" + "9" * 30,
    "q=%00",
    "q=a%00b",
    "q=%22%00",
    "who=%00",
    "agent=%00",
    "q=" + "x" * 5000,
]


def assert_clean_400(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.text
    assert not any(leak in body for leak in LEAKS), body
    assert len(body) < 1000
    assert json.loads(body)["status"] == 400


@pytest.mark.parametrize("query", BAD_QUERIES)
async def test_list_query_values_are_400(tmp_path: Path, query: str) -> None:
    async with serve_bridge(tmp_path / "b.db") as served, httpx.AsyncClient() as client:
        response = await client.get(f"{served.base}/api/v1/calls?{query}", headers=served.auth())
        assert_clean_400(response)


async def test_good_numbers_still_work(tmp_path: Path) -> None:
    async with serve_bridge(tmp_path / "b.db") as served, httpx.AsyncClient() as client:
        for query in (
            "since=0&until=999999999999999&limit=200&offset=0",
            "since=2026-01-31T09:00:00Z&until=2026-02-01",
            "q=router+%22broken%22&who=%2B4930",
        ):
            response = await client.get(
                f"{served.base}/api/v1/calls?{query}", headers=served.auth()
            )
            assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/48000²/2"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/" + "9" * 5000 + "/2"),
        ("m=audio 38632 ", "m=audio ²² "),
        ("m=audio 38632 ", "m=audio " + "9" * 5000 + " "),
    ],
)
async def test_whip_sdp_numbers_are_400(tmp_path: Path, old: str, new: str) -> None:
    async with serve_bridge(tmp_path / "b.db") as served, httpx.AsyncClient() as client:
        response = await client.post(
            f"{served.base}/api/v1/whip",
            content=CHROME.replace(old, new, 1).encode(),
            headers={**served.auth(SUPERVISOR), "Content-Type": "application/sdp"},
        )
        assert_clean_400(response)


@pytest.mark.parametrize(
    ("query", "token"),
    [
        ("", None),  # no token
        ("", "wrong-token-123"),  # a token that is not configured
        ("?resume_from=%C2%B2", SUPERVISOR),  # a bad query: '²'
        ("?agent=bob", ALICE),  # another agent's calls
    ],
)
async def test_refused_live_handshake_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, query: str, token: str | None
) -> None:
    """Issue 12 item 12: a refused WebSocket upgrade logs nothing at ERROR (uvicorn's own
    "ASGI callable returned without completing handshake" included); the client sees HTTP 403."""
    caplog.set_level(logging.INFO)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with serve_bridge(tmp_path / "b.db") as served:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(served.ws + "/api/v1/live" + query, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 403
        await asyncio.sleep(0.1)  # uvicorn logs after the app returned
        # A good token on the same server still gets its stream.
        async with connect(served.ws + "/api/v1/live", additional_headers=served.auth()):
            pass
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert any("live WebSocket refused" in r.getMessage() for r in caplog.records)
    assert not any(SUPERVISOR in r.getMessage() for r in caplog.records)
