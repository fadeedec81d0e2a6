"""A page of another origin for the browser tests: a real HTTP server (uvicorn, in the test's
loop) that serves one HTML page.

On ``http://127.0.0.1:PORT`` it is the same *site* as a bridge on 127.0.0.1 (a site is scheme and
host, no port: SameSite cookies go there) but another *origin*; on ``http://localhost:PORT`` it is
another site too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.http.served import _Quiet


@contextlib.asynccontextmanager
async def serve_page(html: str) -> AsyncIterator[int]:
    """Serves ``html`` at ``/`` on a free port of 127.0.0.1; yields the port."""

    async def page(request: Request) -> Response:
        return HTMLResponse(html)

    app = Starlette(routes=[Route("/", page)])
    server = _Quiet(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
