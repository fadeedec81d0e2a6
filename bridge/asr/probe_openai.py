"""``bridge check``'s session probe for a server of the OpenAI dialect (``dialect = "openai"``).

One transcription session: ``session.created`` -> ``session.update`` -> ``session.updated``, one
second of audio committed as a turn, its ``input_audio_buffer.committed`` and ``...completed``
(empty text is fine: the audio is a quiet tone).  A server of the other dialect is named as such:
vLLM's ``session.created`` has no ``session`` object and vLLM refuses the transcription
``session.update`` (``invalid_event``: it wants a top-level ``model``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import numpy as np
import websockets
from websockets.asyncio.client import connect

from bridge.asr.client import describe_connect_error
from bridge.asr.endpoint import AsrEndpoint
from bridge.core.asr_protocol import ServerError, SessionStarted
from bridge.core.openai_protocol import OpenAiTranscription
from bridge.core.types import ASR_SAMPLE_RATE_HZ
from bridge.errors import AsrProtocolError

if TYPE_CHECKING:
    from bridge.asr.probe import CheckReport

WHAT = "/v1/realtime"


def dialect_mismatch(first_event: str, dialect: str) -> str | None:
    """What is wrong when the server's ``session.created`` is the other dialect's, else None."""
    try:
        event = json.loads(first_event)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("type") != "session.created":
        return None
    openai_shaped = isinstance(event.get("session"), dict)
    if dialect == "openai" and not openai_shaped:
        return (
            "the server's session.created has no session object: it speaks vLLM's realtime "
            'dialect, not OpenAI\'s transcription session; set dialect = "vllm" for it'
        )
    if dialect == "vllm" and openai_shaped:
        return (
            "the server's session.created carries an OpenAI session object: it speaks OpenAI's "
            'transcription session; set dialect = "openai" for it (BRIDGE_ASR_DIALECT=openai)'
        )
    return None


def _quiet_tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * ASR_SAMPLE_RATE_HZ)) / ASR_SAMPLE_RATE_HZ
    return (np.sin(2 * np.pi * 440 * t) * 300).astype(np.int16).tobytes()


async def probe_transcription(endpoint: AsrEndpoint, timeout_s: float, report: CheckReport) -> None:
    """Add the session probe's line to ``report``."""
    session = OpenAiTranscription(endpoint.model, language=endpoint.language)
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    started = time.monotonic()
    stage = "session.created"
    try:
        async with asyncio.timeout(timeout_s):
            async with connect(
                endpoint.session_url,
                additional_headers=headers,
                open_timeout=endpoint.open_timeout_s,
            ) as ws:
                session.receive_connected()
                first = str(await ws.recv())
                mismatch = dialect_mismatch(first, "openai")
                if mismatch:
                    report.add(False, WHAT, mismatch)
                    return
                session.receive_message(first)
                stage = "session.updated"
                session.send_audio(_quiet_tone(1.0))
                session.end_stream()
                while not session.closed:
                    for frame in session.data_to_send():
                        await ws.send(frame)
                    session.receive_message(str(await ws.recv()))
                    for event in session.events_received():
                        if isinstance(event, ServerError):
                            report.add(False, WHAT, _refusal(event, stage))
                            return
                        if isinstance(event, SessionStarted):
                            stage = "transcription of the turn"
    except TimeoutError:
        report.add(
            False,
            WHAT,
            f"no {stage} within {timeout_s:g} s: the server is stuck or overloaded, or does "
            "not speak OpenAI's transcription session",
        )
        return
    except (OSError, websockets.WebSocketException) as exc:
        message, _ = describe_connect_error(endpoint.url, exc)
        report.add(False, WHAT, message)
        return
    except AsrProtocolError as exc:
        report.add(False, WHAT, f"not OpenAI's transcription session: {exc}")
        return
    took = time.monotonic() - started
    report.add(
        True,
        WHAT,
        f"session {session.session_id}: a 1 s turn transcribed in {took:.1f} s (OpenAI "
        "transcription session)",
    )


def _refusal(event: ServerError, stage: str) -> str:
    error = event.error
    if stage == "session.updated" and error.code == "invalid_event":
        return (
            f"the server refused the transcription session.update ({error}): it speaks vLLM's "
            'realtime dialect; set dialect = "vllm" for it'
        )
    return f"the server answered with an error waiting for {stage}: {error}"
