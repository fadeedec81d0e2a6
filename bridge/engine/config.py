"""Settings of the embedded speech engine (``bridge asr-server`` and the in-process server)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bridge.engine.align import WordAnchor
from bridge.errors import ConfigError

__all__ = ["DEFAULT_LEGS_PER_CORE", "EngineConfig", "default_max_legs"]

# Legs one CPU core keeps in real time, measured with bridge/engine/bench.py on the project's
# 2-core machine, shared with other agents, every leg speaking continuously (the worst case).
# Before (load ~2-5): every decode fed Whisper's encoder 30 s (~0.75 s a decode); base held 1-2
# legs.  Now the encoder sees the window + a 4 s tail (>= 8 s; whisper.py), ~0.15-0.25 s a
# decode: base stayed in real time (lag not growing) with 6 legs at load ~3.7 (delay from a
# word's end to its text p50 1.7 s / p95 2.7 s) and with 4 and 6 legs at load ~10 (p50 2.1 s /
# p95 3.3-3.6 s).  2 per core (4 legs on 2 cores) leaves headroom for the rest of the bridge and
# noisy neighbours; tiny.en (smaller, not re-measured) the same.  Conversation legs (speech
# half the time) fit more: 8 stayed in real time at load ~4.
DEFAULT_LEGS_PER_CORE: dict[str, float] = {"base": 2.0, "tiny.en": 2.0}


def default_max_legs(model: str, cores: int | None = None) -> int:
    cores = cores or os.cpu_count() or 1
    name = Path(model).name.removeprefix("whisper-")
    return max(1, int(DEFAULT_LEGS_PER_CORE.get(name, 1.0) * cores))


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything ``start_engine_server`` needs; the defaults suit a 2-core CPU box."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (in-process); the CLI defaults to 8000 like vLLM
    model: str = "base"  # packaged name (base, tiny.en), model directory, or faster-whisper name
    served_model_name: str | None = None  # default: whisper-<model name>
    language: str | None = None  # e.g. "en"; None: detected per generation
    api_key: str | None = None  # Bearer key for /v1/* (HTTP 401 otherwise), like vLLM --api-key
    max_legs: int | None = None  # None: default_max_legs(model)
    max_model_len: int = 131_072  # Voxtral's default: a generation stops itself after ~2 h 54 m
    transcription_delay_ms: int = 480
    cpu_threads: int = 0  # CTranslate2 threads; 0: all cores
    decode_workers: int = 1  # parallel decodes (each with cpu_threads threads)
    beam_size: int = 1
    decode_interval_ms: int = 1000  # partial decodes; every 2 s when saturated (whisper.py)
    word_anchor: WordAnchor = "start"  # Voxtral: step k carries the text of frame k
    # The longest a step whose audio is in may wait for its text (steps.py): past it the step
    # goes without the words not yet known, which come in a later step.  Normal commits take
    # 2-3 s (two agreeing decodes, 1 s apart); speech that never agrees or never pauses must
    # not hold the stream, or a client that waits for steps before sending more (--fast) and
    # the engine wait for each other forever.
    max_hold_ms: int = 6000

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be 0..65535, got {self.port}")
        if self.max_legs is not None and self.max_legs < 1:
            problems.append(f"max_legs must be at least 1, got {self.max_legs}")
        delay = self.transcription_delay_ms
        if delay % 80 or not 80 <= delay <= 2400:
            problems.append(f"transcription_delay_ms must be a multiple of 80 in 80..2400: {delay}")
        prompt = 1 + 32 + delay // 80
        if self.max_model_len <= prompt:
            problems.append(f"max_model_len must exceed the {prompt}-token prompt")
        if self.word_anchor not in ("end", "start"):
            problems.append(f"word_anchor must be 'end' or 'start', got {self.word_anchor!r}")
        if self.max_hold_ms < 0:
            problems.append(f"max_hold_ms must be >= 0, got {self.max_hold_ms}")
        if self.decode_workers < 1 or self.beam_size < 1 or self.decode_interval_ms < 80:
            problems.append("decode_workers and beam_size >= 1, decode_interval_ms >= 80")
        if problems:
            raise ConfigError(problems)

    @property
    def model_name(self) -> str:
        """The served model name ``session.update`` must carry (or an empty one)."""
        if self.served_model_name is not None:
            return self.served_model_name
        name = Path(self.model).name or self.model
        return name if name.startswith("whisper-") else f"whisper-{name}"

    @property
    def legs(self) -> int:
        return self.max_legs if self.max_legs is not None else default_max_legs(self.model)
