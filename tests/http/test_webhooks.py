"""Webhooks to a local receiver: signed, retried after a failure, links on call end; a redirect
is not followed; undelivered events wait in the outbox (SQLite) across a restart, in order per
call."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bridge.live import LiveHub
from bridge.live.webhooks import Webhooks, verify
from storage import TranscriptStore

from .helpers import call, leg, seg

SECRET = "s3cret-webhook-key"


async def test_finals_and_call_end_are_posted_signed_and_retried() -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    fail_first = [True]

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if fail_first[0]:
                fail_first[0] = False
                self.send_response(503)
            else:
                received.append((dict(self.headers), body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub = LiveHub()
    hooks = Webhooks(
        f"http://127.0.0.1:{server.server_port}/hook",
        SECRET,
        base_url="http://bridge:8080",
        first_backoff_s=0.05,
    )
    try:
        hooks.attach(hub)
        await asyncio.sleep(0)
        hub.call_started(call())
        hub.segment(leg(), seg("partial"))
        hub.segment(leg(), seg("hello there", final=True))
        hub.call_ended("call-1", "bye", 5000)
        for _ in range(200):  # the receiver records a POST before it answers: wait for both
            if len(received) == 2 and hooks.delivered == 2:
                break
            await asyncio.sleep(0.02)
        kinds = [h["X-Bridge-Event"] for h, _ in received]
        assert kinds == ["segment.final", "call.ended"]
        for headers, body in received:
            assert verify(SECRET, body, headers["X-Bridge-Signature"])
        final = json.loads(received[0][1])
        assert final["segment"]["text"] == "hello there"
        ended = json.loads(received[1][1])
        assert ended["links"]["vtt"] == "http://bridge:8080/api/v1/calls/call-1/export?format=vtt"
        assert hooks.delivered == 2 and hooks.failed == 0
    finally:
        await hooks.close()
        server.shutdown()
        thread.join(5)


# -- a receiver that redirects, one that is down for a while, a restart in between ---------------


class Receiver:
    """A real HTTP receiver on 127.0.0.1 (a thread): records every request, answers per ``mode``:
    ``ok`` 204, ``redirect`` 302 to ``/elsewhere`` on itself."""

    def __init__(self, port: int = 0, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append((self.command, self.path, dict(self.headers), body))

            def do_POST(self) -> None:  # noqa: N802
                self._record()
                if outer.mode == "redirect" and self.path == "/hook":
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{outer.port}/elsewhere")
                else:
                    self.send_response(204)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                self._record()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def posts(self, path: str = "/hook") -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for m, p, h, b in self.requests if m == "POST" and p == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def depth_metric(hooks: Webhooks) -> float:
    registry = CollectorRegistry()
    registry.register(hooks.collector())
    value = registry.get_sample_value("bridge_webhook_outbox_depth")
    assert value is not None
    return value


async def test_a_redirect_is_not_followed_and_the_event_waits_in_the_outbox(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver(mode="redirect")
    hub = LiveHub()
    hooks = Webhooks(
        f"http://127.0.0.1:{receiver.port}/hook",
        SECRET,
        base_url="http://bridge:8080",
        db_path=tmp_path / "b.db",
        first_backoff_s=0.05,
        max_backoff_s=0.2,
    )
    try:
        hooks.attach(hub)
        hub.call_started(call())
        hub.segment(leg(), seg("hello there", final=True))
        hub.call_ended("call-1", "bye", 5000)
        await until(lambda: len(receiver.posts()) >= 3)  # tried, and tried again
        await asyncio.sleep(0.3)
        # Never followed: no GET (urllib's default for a 302 after a POST) nor POST elsewhere.
        assert [r for r in receiver.requests if r[1] != "/hook"] == []
        assert hooks.delivered == 0 and hooks.failed == 0
        assert hooks.depth == 2 and depth_metric(hooks) == 2
        # Only the call's first event was tried: its call.ended waits behind it.
        assert {h["X-Bridge-Event"] for h, _ in receiver.posts()} == {"segment.final"}
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(
            f"redirect to http://127.0.0.1:{receiver.port}/elsewhere not followed" in m
            for m in warned
        ), warned
        receiver.mode = "ok"  # the receiver is fixed: both go, in order
        await until(lambda: hooks.delivered == 2)
        delivered = [h["X-Bridge-Event"] for h, _ in receiver.posts()]
        assert delivered[-2:] == ["segment.final", "call.ended"]
        assert hooks.depth == 0 and depth_metric(hooks) == 0
    finally:
        await hooks.close()
        receiver.stop()


async def test_a_receiver_down_across_a_restart_gets_every_event_in_order_per_call(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens here yet: connection refused
    store = await TranscriptStore.open(tmp_path / "b.db")  # the outbox lives in the store's file
    url = f"http://127.0.0.1:{port}/hook"

    def sender() -> Webhooks:
        return Webhooks(
            url,
            SECRET,
            base_url="http://bridge:8080",
            store=store,
            first_backoff_s=0.05,
            max_backoff_s=0.2,
        )

    hub = LiveHub()
    hooks = sender()
    receiver = None
    try:
        hooks.attach(hub)
        hub.call_started(call("call-a"))
        hub.call_started(call("call-b"))
        hub.segment(
            leg("leg-a", "call-a"), seg("a one", final=True, leg_id="leg-a", call_id="call-a")
        )
        hub.segment(
            leg("leg-b", "call-b"), seg("b one", final=True, leg_id="leg-b", call_id="call-b")
        )
        hub.segment(
            leg("leg-a", "call-a"), seg("a two", 1, final=True, leg_id="leg-a", call_id="call-a")
        )
        hub.call_ended("call-a", "bye", 5000)
        hub.call_ended("call-b", "bye", 6000)
        await until(lambda: hooks.depth == 5)
        await asyncio.sleep(0.5)  # a few failed tries
        assert hooks.delivered == 0 and hooks.depth == 5
        await hooks.close()  # the bridge stops (or is killed): the outbox is in the file

        hooks = sender()  # the bridge again, with a new hub: the events come from the outbox
        hooks.attach(LiveHub())
        await hooks.wait_ready()
        assert hooks.depth == 5 and depth_metric(hooks) == 5
        await asyncio.sleep(0.5)  # still down
        receiver = Receiver(port)  # and back
        await until(lambda: hooks.delivered == 5)
        assert hooks.depth == 0 and hooks.failed == 0
        posts = receiver.posts()
        assert len(posts) == 5
        seen: dict[str, list[str]] = {}
        for headers, body in posts:
            assert verify(SECRET, body, headers["X-Bridge-Signature"])
            event = json.loads(body)
            text = event.get("segment", {}).get("text", event["type"])
            seen.setdefault(event["call_id"], []).append(text)
        assert seen == {
            "call-a": ["a one", "a two", "call.ended"],
            "call-b": ["b one", "call.ended"],
        }
        assert len({h["X-Bridge-Delivery"] for h, _ in posts}) == 5
    finally:
        await hooks.close()
        if receiver is not None:
            receiver.stop()
        await store.close()


async def test_events_older_than_max_age_are_given_up_with_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = LiveHub()
    hooks = Webhooks(
        f"http://127.0.0.1:{free_port()}/hook",
        SECRET,
        base_url="http://bridge:8080",
        first_backoff_s=0.05,
        max_backoff_s=0.1,
        max_age_s=0.4,
    )
    try:
        hooks.attach(hub)
        hub.call_started(call())
        hub.segment(leg(), seg("hello", final=True))
        await until(lambda: hooks.failed == 1)
        assert hooks.depth == 0
        assert any(
            "given up" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
        )
    finally:
        await hooks.close()


async def test_outbox_is_bounded_ordered_per_call_and_kept_in_the_file(tmp_path: Path) -> None:
    from storage.outbox import WebhookOutbox

    outbox = await WebhookOutbox.open(tmp_path / "b.db", max_rows=4)
    try:
        for n, call_id in enumerate(["a", "b", "a", "c", "a"]):
            _, dropped = await outbox.put(call_id, "segment.final", b"%d" % n, now_ms=n)
            assert dropped == (1 if n == 4 else 0)  # the fifth pushes out the oldest (a, #0)
        assert outbox.depth == 4
        heads = await outbox.heads()
        assert [(h.call_id, h.body) for h in heads] == [("b", b"1"), ("a", b"2"), ("c", b"3")]
        await outbox.postpone(heads[0].id, next_at_ms=99, error="HTTP 503")
        await outbox.remove(heads[1].id)
    finally:
        await outbox.close()
    reopened = await WebhookOutbox.open(tmp_path / "b.db", max_rows=4)
    try:
        assert reopened.depth == 3
        heads = await reopened.heads()
        assert [(h.call_id, h.body, h.attempts) for h in heads] == [
            ("b", b"1", 1),
            ("c", b"3", 0),
            ("a", b"4", 0),
        ]
        assert heads[0].last_error == "HTTP 503" and heads[0].next_at_ms == 99
        assert [x.body for x in await reopened.expire(created_before_ms=4)] == [b""] * 2
        assert reopened.depth == 1
    finally:
        await reopened.close()
