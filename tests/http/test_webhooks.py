"""Webhooks to a local receiver: signed, retried after a failure, links on call end."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from bridge.live import LiveHub
from bridge.webhooks import Webhooks, verify

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
