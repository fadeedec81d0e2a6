"""A leg's ASR session object and the assembler for its events, by the pool's dialect."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.asr.pool import AsrPool
from bridge.core.asr_protocol import AsrStream
from bridge.core.audio import LegAudio
from bridge.core.openai_protocol import OpenAiTranscription
from bridge.core.openai_wire import PCM, PCMA, PCMU
from bridge.core.transcript import TranscriptAssembler
from bridge.core.turns import TurnAssembler
from bridge.core.types import ASR_SAMPLE_RATE_HZ, CHUNK_SAMPLES, AudioEncoding, LegInfo

if TYPE_CHECKING:
    from bridge.leg import LegSettings

Session = AsrStream | OpenAiTranscription
Assembler = TranscriptAssembler | TurnAssembler


def open_session(
    pool: AsrPool, settings: LegSettings, audio: LegAudio, info: LegInfo
) -> tuple[Session, Assembler]:
    """vLLM: a realtime stream and the step-clock assembler.  OpenAI: a transcription session
    whose turns end where segments do (a pause of the segment policy's length, or its longest
    segment), G.711 passed through for an 8 kHz G.711 leg, and the turn assembler."""
    buffer = int(settings.max_buffer_s * ASR_SAMPLE_RATE_HZ)
    model = pool.first.model  # each connection says its own server's (receive_connected)
    if pool.dialect == "openai":
        g711 = {AudioEncoding.PCMU: PCMU, AudioEncoding.PCMA: PCMA}.get(audio.encoding)
        passthrough = settings.g711_passthrough and audio.in_rate_hz == 8000
        session = OpenAiTranscription(
            model,
            wire_format=g711 if g711 and passthrough else PCM,
            language=pool.language,
            prompt=pool.first.prompt,
            max_buffer_samples=buffer,
            max_session_samples=int(settings.session_max_s * ASR_SAMPLE_RATE_HZ),
            pause_samples=settings.segments.pause_steps * CHUNK_SAMPLES,
            max_turn_samples=settings.segments.max_segment_ms * ASR_SAMPLE_RATE_HZ // 1000,
        )
        return session, TurnAssembler(info.call_id, info.leg_id)
    stream = AsrStream(
        model, delay_ms=pool.delay_ms, max_buffer_samples=buffer, language=pool.language
    )
    return stream, TranscriptAssembler(info.call_id, info.leg_id, policy=settings.segments)
