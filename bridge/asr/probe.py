"""Probes of an ASR server: is it reachable, a realtime server, and serving our model?

``bridge check`` (:func:`check_server`) runs three probes, each reported on its own line with
what to do when it fails:

1. ``GET /v1/models`` - the served model names and ``max_model_len``;
2. the configured model is among them;
3. ``/v1/realtime`` - one second of silence through a real session: ``session.created``, one
   ``transcription.delta`` per 80 ms step as Voxtral Realtime produces them, and
   ``transcription.done`` (for the OpenAI dialect a transcription session and one turn:
   :mod:`bridge.asr.probe_openai`); a server of the other dialect is named as such.

The first two are :func:`probe_models`, which is also the pre-flight of the commands that need
the server (:func:`preflight`): one request, one verdict, told as a report line or as an error.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import connect

from bridge.asr.client import AsrEndpoint, describe_connect_error
from bridge.asr.pool import AsrPool, AsrTarget
from bridge.asr.probe_openai import dialect_mismatch, probe_transcription
from bridge.core.asr_protocol import AsrState, AsrStream, ServerError, StepText
from bridge.core.step_clock import StepClock
from bridge.core.types import ASR_SAMPLE_RATE_HZ, CHUNK_MS, CHUNK_SAMPLES
from bridge.errors import AsrConnectionError, BridgeError, ConfigError


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    max_model_len: int | None

    def describe(self, clock: StepClock) -> str:
        if self.max_model_len is None:
            return self.name
        seconds = clock.session_seconds(self.max_model_len)
        length = f"max_model_len {self.max_model_len} = {seconds:.0f} s of audio per session"
        return f"{self.name} ({length})"


@dataclass
class CheckReport:
    ok: bool = True
    lines: list[str] = field(default_factory=list)
    models: list[ServedModel] = field(default_factory=list)

    problem: str | None = None  # the first check that failed, as "what: text"

    def add(self, ok: bool, what: str, text: str) -> None:
        self.ok = self.ok and ok
        if not ok and self.problem is None:
            self.problem = f"{what}: {text}"
        self.lines.append(f"  {what:<13} {'OK  ' if ok else 'FAIL'} {text}")


def http_base(ws_url: str) -> str:
    """``ws://h:p/v1/realtime`` -> ``http://h:p``."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def fetch_models(endpoint: AsrEndpoint, timeout_s: float = 5.0) -> list[ServedModel]:
    """``GET /v1/models`` as vLLM's OpenAI-compatible server answers it.

    Raises:
        ValueError: the answer is not the OpenAI model list (a JSON object whose ``data`` is a
            list of objects).
    """
    request = urllib.request.Request(http_base(endpoint.url) + "/v1/models")
    if endpoint.api_key:
        request.add_header("Authorization", f"Bearer {endpoint.api_key}")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        try:
            body = json.load(response)
        except ValueError:
            raise ValueError("not JSON") from None
    entries = body.get("data", []) if isinstance(body, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"not an OpenAI model list: {json.dumps(body)[:80]}")
    models = []
    for entry in entries:
        length = entry.get("max_model_len")
        models.append(
            ServedModel(str(entry.get("id")), length if isinstance(length, int) else None)
        )
    return models


@dataclass(frozen=True, slots=True)
class ModelsProblem:
    """Why the server cannot transcribe for us, said two ways: ``line`` for the ``what`` row of
    ``bridge check``, ``error`` for a command that needs the server."""

    what: str  # the check row: "/v1/models" (no usable answer) or "model" (not served)
    line: str
    error: BridgeError

    @property
    def reason(self) -> str:
        """One line for a server marked unhealthy (the pool's log, metrics and page)."""
        return f"{self.what}: {self.line}"


async def probe_models(endpoint: AsrEndpoint) -> tuple[list[ServedModel], ModelsProblem | None]:
    """``GET /v1/models``: the served models, and the problem if it is not serving ours."""
    base = http_base(endpoint.url)
    try:
        models = await asyncio.to_thread(fetch_models, endpoint)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return [], ModelsProblem(
                "/v1/models",
                "HTTP 401: wrong or missing API key (--api-key)",
                ConfigError(
                    f"{endpoint.url}: wrong or missing API key (HTTP 401); pass --api-key or set "
                    "BRIDGE_ASR_API_KEY"
                ),
            )
        return [], ModelsProblem(
            "/v1/models",
            f"HTTP {exc.code}: is this a vLLM server?",
            AsrConnectionError(
                f"{base}/v1/models answered HTTP {exc.code}: is this a vLLM server? Run "
                "`bridge check`",
                retryable=False,
            ),
        )
    except ValueError as exc:  # JSON that is not the model list (or not JSON at all)
        return [], ModelsProblem(
            "/v1/models",
            f"{exc}: is this a vLLM server?",
            AsrConnectionError(
                f"{base}/v1/models: {exc}: is this a vLLM server? Run `bridge check`",
                retryable=False,
            ),
        )
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return [], ModelsProblem(
            "/v1/models",
            f"cannot reach {base}: {reason} (is the ASR server running? start it with the "
            "Procfile's vllm line, or pass --asr-url; a vLLM that stops at start over its "
            "tokenizer lacks --tokenizer-mode mistral)",
            AsrConnectionError(
                f"cannot reach the ASR server at {base} ({reason}): start it (Procfile `vllm` "
                "line) or pass --asr-url",
                retryable=False,
            ),
        )
    names = [m.name for m in models]
    if endpoint.model in names:
        return models, None
    fix = f"pass --model {names[0] if names else 'NAME'}"
    return models, ModelsProblem(
        "model",
        f"{endpoint.model!r} is not served; {fix}",
        ConfigError(
            f"the ASR server does not serve model {endpoint.model!r}; it serves "
            f"{', '.join(names) or 'nothing'}: {fix}"
        ),
    )


def _get_health(endpoint: AsrEndpoint, timeout_s: float) -> None:
    with urllib.request.urlopen(http_base(endpoint.url) + "/health", timeout=timeout_s):
        pass


async def probe_health(endpoint: AsrEndpoint, *, timeout_s: float = 5.0) -> str | None:
    """The pool's periodic probe: ``GET /health`` (the engine is alive: vLLM answers 503 or
    nothing when its EngineCore is dead or stuck), then ``GET /v1/models`` (the model is
    served).  Returns what is wrong, or None."""
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.to_thread(_get_health, endpoint, timeout_s)
    except urllib.error.HTTPError as exc:
        return f"GET /health answered HTTP {exc.code}: the engine is not serving (its log says why)"
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc) or "timed out"
        return f"cannot reach {http_base(endpoint.url)}/health: {reason}"
    _, problem = await probe_models(endpoint)
    return None if problem is None else problem.reason


async def preflight(target: AsrTarget) -> None:
    """Fail fast, with the fix, when no server is up and serving its model; the servers that
    are not are marked unhealthy, so legs start on the others."""
    pool = AsrPool.of(target)
    found = await asyncio.gather(*(probe_models(b.endpoint) for b in pool.backends))
    problems = [problem for _, problem in found]
    if all(problems):
        if len(problems) == 1 and problems[0] is not None:
            raise problems[0].error
        raise ConfigError(
            [f"{b.name}: {p.error}" for b, p in zip(pool.backends, problems, strict=True) if p]
        )
    for backend, problem in zip(pool.backends, problems, strict=True):
        if problem is not None:
            pool.failed(backend, problem.reason)


async def check_server(
    endpoint: AsrEndpoint, *, probe_s: float = 1.0, timeout_s: float = 60.0
) -> CheckReport:
    report = CheckReport()
    report.lines.append(f"ASR server {endpoint.url}")
    report.models, problem = await probe_models(endpoint)
    if problem is not None and problem.what == "/v1/models":
        report.add(False, problem.what, problem.line)
        return report
    served = ", ".join(m.describe(endpoint.clock) for m in report.models)
    report.add(True, "/v1/models", f"serves {served or 'nothing'}")
    if problem is not None:
        report.add(False, problem.what, problem.line)
        return report
    report.add(True, "model", endpoint.model)
    if endpoint.dialect == "openai":
        await probe_transcription(endpoint, timeout_s, report)
    else:
        await _probe_realtime(endpoint, probe_s, timeout_s, report)
    return report


async def check_pool(pool: AsrPool, *, timeout_s: float = 60.0) -> list[CheckReport]:
    """:func:`check_server` on every backend at once; one report each, named, in order."""
    reports = await asyncio.gather(
        *(check_server(b.endpoint, timeout_s=timeout_s) for b in pool.backends)
    )
    if len(pool.backends) > 1:
        for backend, report in zip(pool.backends, reports, strict=True):
            report.lines[0] = f"ASR server {backend.name} ({backend.endpoint.url})"
    return list(reports)


async def _probe_realtime(
    endpoint: AsrEndpoint, probe_s: float, timeout_s: float, report: CheckReport
) -> None:
    """One session: find the server's delay from its first step, then count every step.

    The first step needs ``1320 + 16 * delay_ms`` samples (vllm-realtime.md §2.4), so feeding
    80 ms chunks one at a time and waiting briefly after each shows which chunk completed it:
    chunk ``c`` means a delay of ``80 * (c - 2)`` ms.  The total count of steps does not depend on
    the delay (the right padding grows with it), so it checks the step clock itself.
    """
    stream = AsrStream(endpoint.model, delay_ms=endpoint.delay_ms)
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    chunk = bytes(CHUNK_SAMPLES * 2)  # silence
    started = time.monotonic()
    steps = 0
    first_chunk: int | None = None
    chunks = 0

    def handle() -> bool:
        nonlocal steps
        for event in stream.events_received():
            if isinstance(event, StepText):
                steps += 1
            elif isinstance(event, ServerError):
                report.add(False, "/v1/realtime", str(event.error))
                return False
        return True

    try:
        async with asyncio.timeout(timeout_s):
            async with connect(
                endpoint.url, additional_headers=headers, open_timeout=endpoint.open_timeout_s
            ) as ws:
                stream.receive_connected()
                created = str(await ws.recv())
                mismatch = dialect_mismatch(created, "vllm")
                if mismatch:
                    report.add(False, "/v1/realtime", mismatch)
                    return
                stream.receive_message(created)
                while first_chunk is None and chunks < 40:  # 40 chunks > the 2400 ms delay
                    stream.send_audio(chunk)
                    chunks += 1
                    for frame in stream.data_to_send():
                        await ws.send(frame)
                    try:
                        message = await asyncio.wait_for(ws.recv(), 0.25)
                    except TimeoutError:
                        continue
                    stream.receive_message(str(message))
                    if not handle():
                        return
                    first_chunk = chunks if steps else None
                while chunks * CHUNK_SAMPLES < probe_s * ASR_SAMPLE_RATE_HZ:
                    stream.send_audio(chunk)
                    chunks += 1
                stream.end_stream()
                while stream.state is not AsrState.CLOSED:
                    for frame in stream.data_to_send():
                        await ws.send(frame)
                    stream.receive_message(str(await ws.recv()))
                    if not handle():
                        return
    except TimeoutError:
        if steps:
            text = f"{steps} steps, then none; no transcription.done within {timeout_s:g} s"
        else:
            took_s = chunks * CHUNK_MS / 1000
            text = f"the session took {took_s:g} s of audio but ran no step in {timeout_s:g} s"
        report.add(
            False,
            "/v1/realtime",
            f"{text}: the engine is stuck (restart it) or overloaded (a busy GPU: fewer "
            "sessions per server, asr.max_legs)",
        )
        return
    except (OSError, websockets.WebSocketException) as exc:
        message, _ = describe_connect_error(endpoint.url, exc)
        report.add(False, "/v1/realtime", message)
        return
    samples = chunks * CHUNK_SAMPLES
    want = endpoint.clock.steps_available(samples, ended=True)
    took = time.monotonic() - started
    seconds = samples / ASR_SAMPLE_RATE_HZ
    if steps != want:
        report.add(
            False,
            "/v1/realtime",
            f"{steps} deltas for {seconds:g} s of audio, expected {want}: not Voxtral "
            "Realtime's step clock (is the served model mistralai/Voxtral-Mini-4B-Realtime-2602?)",
        )
        return
    report.add(
        True,
        "/v1/realtime",
        f"session {stream.session_id}: {steps} deltas for {seconds:g} s of audio in "
        f"{took:.1f} s (Voxtral step clock)",
    )
    delay_ms = 80 * (first_chunk - 2) if first_chunk else None
    source = "the model directory" if endpoint.model_files else "configured"
    if delay_ms == endpoint.delay_ms:
        report.add(True, "delay", f"{delay_ms} ms, as {source}")
    elif endpoint.model_files:
        report.add(
            False,
            "delay",
            f"the server's first step came after {first_chunk} chunks: its delay is "
            f"{delay_ms} ms, but the model directory says {endpoint.delay_ms} ms; the server "
            "runs other model files: pass the --model-dir it serves",
        )
    else:
        report.add(
            False,
            "delay",
            f"the server's first step came after {first_chunk} chunks: its delay is "
            f"{delay_ms} ms, but the bridge is set to {endpoint.delay_ms} ms; pass --delay-ms "
            f"{delay_ms} (or BRIDGE_ASR_DELAY_MS) so word times are right",
        )
