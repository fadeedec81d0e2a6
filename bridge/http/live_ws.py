"""The live API's WebSocket adapter: one hub subscription per connection.

Each connection has two tasks: one sends what the subscription queued (woken by its
``on_ready``), one reads from the client only to notice a disconnect.  On each wake-up the sender
sends everything queued as one message, a JSON array of events (``Subscription.drain_message``:
the events' shared JSON texts joined, no per-client encoding).  There is no timer: the wake-up
comes on the loop's next turn after a publish, so a burst of events published together (one leg
step, one replay) goes out as one message.  A sender has at most one write in progress; what is
published meanwhile waits, coalescing, in the subscription and goes out in the next message.
A client that does not read blocks only its own sender; the hub keeps queueing for it by the
subscription's overflow rule (``bridge.live``) and closes it with ``too-slow`` (code 1013, try
again later) when it falls too far behind.  It then reconnects with ``resume_from`` and misses
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http import HTTPStatus

from starlette.websockets import WebSocket, WebSocketDisconnect

from bridge.live import LiveFilter, LiveHub

logger = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455 §7.4.1 registry: "Try Again Later"
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008


async def refuse_handshake(websocket: WebSocket, status: int, detail: str) -> None:
    """Refuse a WebSocket upgrade before accepting it: a refusal, not an error.

    The ASGI way is ``websocket.close`` before ``websocket.accept``: every uvicorn WebSocket
    implementation then answers the upgrade with HTTP 403 and logs nothing above INFO.  (A
    problem+json denial through the ``websocket.http.response`` extension reaches the client too,
    but uvicorn 0.54's default ``websockets-sansio`` protocol then logs "ASGI callable returned
    without completing handshake" at ERROR for every refused token.)  The close code goes with
    the ASGI message for servers that pass it on: 1008 (policy violation, RFC 6455 §7.4.1) with
    the status' phrase as reason.  Why it was refused is logged here at INFO (never the token).
    """
    logger.info("live WebSocket refused (%d): %s", status, detail)
    await websocket.close(CLOSE_POLICY_VIOLATION, HTTPStatus(status).phrase)


async def serve_subscription(
    websocket: WebSocket,
    hub: LiveHub,
    live_filter: LiveFilter,
    resume_from: int | None,
    stopping: asyncio.Event,
) -> None:
    await websocket.accept()
    wake = asyncio.Event()
    sub = hub.subscribe(live_filter, resume_from=resume_from)
    sub.on_ready = wake.set
    if sub.pending:
        wake.set()
    gone = asyncio.Event()

    async def read_until_gone() -> None:
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            gone.set()
            wake.set()

    reader = asyncio.create_task(read_until_gone())
    stop_waiter = asyncio.create_task(stopping.wait())
    stop_waiter.add_done_callback(lambda _: wake.set())
    try:
        while not gone.is_set() and not stopping.is_set():
            await wake.wait()
            wake.clear()
            while (message := sub.drain_message()) is not None:
                await websocket.send_text(message)
            if sub.closed_reason is not None:
                logger.info("live client closed: %s", sub.closed_reason)
                await websocket.close(CLOSE_TRY_AGAIN_LATER, sub.closed_reason)
                return
        if stopping.is_set() and not gone.is_set():
            await websocket.close(CLOSE_GOING_AWAY, "bridge stopping")
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        sub.close("disconnected")
        reader.cancel()
        stop_waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
