"""The one ``/v1/models`` probe, against a real HTTP server in this process: ``bridge check``
reports its verdict as a line, the pre-flight of ``transcribe`` raises it as one error, and both
come from the same request (``bridge.asr.probe.probe_models``)."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from bridge.asr.client import AsrEndpoint
from bridge.asr.pool import AsrPool
from bridge.asr.probe import check_server, preflight, probe_models
from bridge.errors import AsrConnectionError, ConfigError

MODEL = "tiny-voxtral"
KEY = "secret"


class Models(http.server.BaseHTTPRequestHandler):
    """``GET /v1/models`` as vLLM answers it, behind ``--api-key secret``; 404 elsewhere, and
    everywhere while ``vllm`` is false (some other HTTP server)."""

    protocol_version = "HTTP/1.1"  # as uvicorn answers; websockets rejects a 1.0 status line
    requests = 0
    vllm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).requests += 1
        if self.path != "/v1/models" or not self.vllm:
            self.send_error(404)
            return
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self.send_error(401)
            return
        body = json.dumps({"data": [{"id": MODEL, "max_model_len": 512}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    """The ``ws://`` URL of the server above, on a free port of 127.0.0.1."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Models)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Models.requests = 0
    Models.vllm = True
    try:
        yield f"ws://127.0.0.1:{httpd.server_address[1]}/v1/realtime"
    finally:
        httpd.shutdown()
        httpd.server_close()


def down_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{sock.getsockname()[1]}/v1/realtime"


async def test_a_served_model_passes_the_preflight(server: str) -> None:
    endpoint = AsrEndpoint(url=server, model=MODEL, api_key=KEY)
    models, problem = await probe_models(endpoint)
    assert problem is None
    assert [(m.name, m.max_model_len) for m in models] == [(MODEL, 512)]
    # 512 tokens less the 39-token prompt (BOS, 32 left-pad, 6 delay), 80 ms each.
    assert models[0].describe(endpoint.clock) == (
        f"{MODEL} (max_model_len 512 = 38 s of audio per session)"
    )
    assert endpoint.clock.session_seconds(512) == pytest.approx(37.84)
    await preflight(endpoint)
    assert Models.requests == 2  # one GET each


async def test_a_server_without_the_realtime_route_is_told_why(server: str) -> None:
    """/v1/models answers but the WebSocket upgrade to /v1/realtime gets 404, as from a vLLM
    older than 0.16 or one serving a model without the realtime task (vllm-realtime.md §1)."""
    report = await check_server(AsrEndpoint(url=server, model=MODEL, api_key=KEY))
    assert not report.ok
    assert report.lines[-1] == (
        f"  /v1/realtime  FAIL {server} has no realtime endpoint (HTTP 404): check the path is "
        "/v1/realtime; vLLM before 0.16 has none (upgrade: bash scripts/install.sh gpu), and "
        "vLLM opens it only for a realtime model such as Voxtral Mini 4B Realtime"
    )


@pytest.mark.parametrize(
    ("model", "key", "vllm", "what", "line", "error", "message"),
    [
        (
            MODEL,
            None,
            True,
            "/v1/models",
            "HTTP 401: wrong or missing API key (--api-key)",
            ConfigError,
            "/v1/realtime: wrong or missing API key (HTTP 401); pass --api-key or set "
            "BRIDGE_ASR_API_KEY",
        ),
        (
            MODEL,
            KEY,
            False,
            "/v1/models",
            "HTTP 404: is this a vLLM server?",
            AsrConnectionError,
            "/v1/models answered HTTP 404: is this a vLLM server? Run `bridge check`",
        ),
        (
            "voxtral",
            KEY,
            True,
            "model",
            "'voxtral' is not served; pass --model tiny-voxtral",
            ConfigError,
            "the ASR server does not serve model 'voxtral'; it serves tiny-voxtral: pass "
            "--model tiny-voxtral",
        ),
    ],
)
async def test_check_and_preflight_tell_the_same_verdict_their_own_way(
    server: str,
    model: str,
    key: str | None,
    vllm: bool,
    what: str,
    line: str,
    error: type[Exception],
    message: str,
) -> None:
    Models.vllm = vllm
    endpoint = AsrEndpoint(url=server, model=model, api_key=key)
    report = await check_server(endpoint)  # stops at the failed row: no realtime session
    assert not report.ok
    assert report.lines[-1] == f"  {what:<13} FAIL {line}"
    with pytest.raises(error) as raised:
        await preflight(endpoint)
    assert message in str(raised.value)
    assert str(raised.value).count("\n") == 0
    if isinstance(raised.value, AsrConnectionError):
        assert not raised.value.retryable
    assert Models.requests == 2  # one GET each


async def test_a_server_that_is_down_is_one_line_with_the_fix() -> None:
    url = down_url()
    base = url.removeprefix("ws://").removesuffix("/v1/realtime")
    endpoint = AsrEndpoint(url=url, model=MODEL)
    report = await check_server(endpoint)
    assert report.lines[-1].startswith(f"  /v1/models    FAIL cannot reach http://{base}: ")
    assert report.lines[-1].endswith(
        "(is the ASR server running? start it with the Procfile's vllm line, or pass --asr-url; "
        "a vLLM that stops at start over its tokenizer lacks --tokenizer-mode mistral)"
    )
    with pytest.raises(AsrConnectionError, match=f"cannot reach the ASR server at http://{base}"):
        await preflight(endpoint)


class Nonsense(http.server.BaseHTTPRequestHandler):
    """A server whose /health is fine and whose /v1/models answers ``answer``."""

    protocol_version = "HTTP/1.1"
    answer = b"[1, 2]"

    def do_GET(self) -> None:  # noqa: N802
        body = b"" if self.path == "/health" else self.answer
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"[1, 2]", "not an OpenAI model list: [1, 2]"),
        (b'{"data": [1]}', 'not an OpenAI model list: {"data": [1]}'),
        (b'{"data": "x"}', "not an OpenAI model list"),
        (b"<html>", "not JSON"),
    ],
)
async def test_a_server_answering_nonsense_is_unhealthy_and_the_probes_go_on(
    answer: bytes, said: str
) -> None:
    """The pool's probe loop against a server that answers /v1/models with something else:
    the server is marked with what it said, and the loop keeps probing (it once could raise,
    and a failed service stops ``bridge serve``)."""
    Nonsense.answer = answer
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Nonsense)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"ws://127.0.0.1:{httpd.server_address[1]}/v1/realtime"
    pool = AsrPool([AsrEndpoint(url=url, model=MODEL)])
    stop = asyncio.Event()
    watching = asyncio.create_task(pool.watch(stop, interval_s=0.05))
    try:
        for _ in range(100):
            if pool.backends[0].problem:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # a few more rounds
        assert not watching.done()
        [backend] = pool.backends
        assert not backend.healthy and said in (backend.problem or ""), backend.problem
        assert (backend.problem or "").endswith("is this a vLLM server?")
    finally:
        stop.set()
        await watching
        httpd.shutdown()
        httpd.server_close()
