"""Values that cross module boundaries: ids, roles, words, segments, gaps.

Times on a leg are integer milliseconds on the *leg clock*: the count of 16 kHz samples since the
leg started (design.md §2), so they never depend on when a packet happened to arrive.  Wall-clock
instants are integer milliseconds since the Unix epoch (UTC) and are named ``*_at_ms``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NewType

CallId = NewType("CallId", str)
LegId = NewType("LegId", str)

# Voxtral Realtime: 16 kHz PCM16 mono, one model step per 80 ms (vllm-realtime.md §2.1, §2.2).
ASR_SAMPLE_RATE_HZ = 16_000
CHUNK_MS = 80
CHUNK_SAMPLES = ASR_SAMPLE_RATE_HZ * CHUNK_MS // 1000  # 1280
CHUNK_BYTES = CHUNK_SAMPLES * 2  # 2560


def samples_to_ms(samples: int, sample_rate_hz: int = ASR_SAMPLE_RATE_HZ) -> int:
    """Milliseconds covered by ``samples`` at ``sample_rate_hz``, rounded down."""
    return samples * 1000 // sample_rate_hz


class LegRole(enum.Enum):
    """Who speaks on a leg."""

    CALLER = "caller"
    CALLEE = "callee"
    AGENT = "agent"
    CUSTOMER = "customer"
    SPEAKER = "speaker"  # a mono recording: one unnamed speaker
    UNKNOWN = "unknown"


def roles_from_text(text: str, *, example: str) -> tuple[LegRole, ...]:
    """``"Agent, customer"`` -> the roles of one or two channels (or tracks), in order.

    Raises:
        ValueError: an unknown role, or not one or two of them.  The message says which (with
            ``example``, how to give them); the caller adds where the text came from.
    """
    roles = []
    for name in text.split(","):
        try:
            roles.append(LegRole(name.strip().lower()))
        except ValueError:
            known = ", ".join(r.value for r in LegRole)
            raise ValueError(f"unknown role {name.strip()!r} (known: {known})") from None
    if not 1 <= len(roles) <= 2:
        raise ValueError(f"give one role per channel, e.g. {example}")
    return tuple(roles)


class LegSource(enum.Enum):
    """Where a leg's audio comes from."""

    FILE = "file"
    SIP = "sip"
    SIPREC = "siprec"
    WEBRTC = "webrtc"
    ASTERISK = "asterisk"  # AudioSocket, chan_websocket
    FREESWITCH = "freeswitch"  # mod_audio_stream, mod_audio_fork
    TWILIO = "twilio"  # Twilio Media Streams
    JAMBONZ = "jambonz"  # the listen verb, the custom speech API
    GENESYS = "genesys"  # Genesys Cloud AudioHook


class AudioEncoding(enum.Enum):
    """Sample encodings the leg pipeline decodes itself (others are decoded by pjsua2/aiortc)."""

    PCM16 = "pcm16"  # signed 16-bit little-endian
    L16 = "l16"  # signed 16-bit big-endian (RFC 3551 §4.5.11: "in network byte order")
    PCMU = "pcmu"  # G.711 µ-law
    PCMA = "pcma"  # G.711 A-law

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self in (AudioEncoding.PCM16, AudioEncoding.L16) else 1


class Timing(enum.StrEnum):
    """How a word's or segment's ``start_ms``/``end_ms`` were obtained (stored, exported, pushed).

    Consumers need this to know how far to trust a time: only ``step-clock`` is exact per word.
    """

    # vLLM realtime (Voxtral): the 80 ms model step that carried the text; exact to 80 ms.
    STEP_CLOCK = "step-clock"
    # OpenAI transcription dialect: a span the server stated (a segment's start/end, or word
    # offsets); several words inside one span are placed in it by character count.
    SERVER = "server"
    # OpenAI transcription dialect, no time stated: the speech in the audio the bridge committed
    # as one turn (its energy detector's span); words are placed inside it by character count.
    ARRIVAL = "arrival"


TIMINGS: tuple[str, ...] = tuple(t.value for t in Timing)  # in schemas and docs, in this order


@dataclass(frozen=True, slots=True)
class Word:
    """One word on the leg clock. ``text`` has no surrounding spaces."""

    text: str
    start_ms: int
    end_ms: int
    timing: Timing = Timing.STEP_CLOCK


@dataclass(frozen=True, slots=True)
class Segment:
    """One utterance on one leg at one revision.

    ``text`` is the whole utterance so far, never a delta; consumers upsert on ``(leg_id, seq)``,
    so replaying a segment never duplicates it.  A final segment never changes again.
    """

    call_id: CallId
    leg_id: LegId
    seq: int
    start_ms: int
    end_ms: int
    text: str
    final: bool
    words: tuple[Word, ...] = field(default=())
    timing: Timing = Timing.STEP_CLOCK  # of start_ms/end_ms; each word says its own


@dataclass(frozen=True, slots=True)
class Gap:
    """Audio of a leg that was never transcribed (ASR unreachable, buffer overflow, ...)."""

    call_id: CallId
    leg_id: LegId
    start_ms: int
    duration_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A call as it starts."""

    call_id: CallId
    source: LegSource
    started_at_ms: int
    title: str = ""  # e.g. the file name or "From -> To"
    agent: str | None = None  # the agent whose call it is (they may see it); None: supervisors


@dataclass(frozen=True, slots=True)
class LegInfo:
    """A leg as it starts."""

    call_id: CallId
    leg_id: LegId
    role: LegRole
    label: str  # human name: "left channel", "Alice <sip:alice@example.com>", ...
    codec: str  # as received: "pcmu/8000", "pcm16/16000", "opus/48000", ...
    source: LegSource
    started_at_ms: int


@dataclass(frozen=True, slots=True)
class LegEvent:
    """Something that happened on a call or leg, stored in the ``events`` table."""

    call_id: CallId
    leg_id: LegId | None
    at_ms: int  # leg clock when leg_id is set, else wall clock
    kind: str  # "asr.session", "asr.recycle", "asr.error", "asr.rut", ... (/metrics counts them)
    detail: str = ""


class EndCause(enum.StrEnum):
    """Why a call ended, as stored (``calls.end_cause``, the export's ``end_cause``)."""

    # Files (bridge transcribe, uploads)
    COMPLETED = "completed"  # all audio transcribed
    INTERRUPTED = "interrupted"  # stopped before its end (Ctrl-C, the bridge stopping)
    CANCELLED = "cancelled"  # an upload DELETEd while queued or running
    ASR_FAILED = "asr-failed"  # the ASR server failed for good
    # SIP
    BYE_REMOTE = "bye-remote"  # direct/SIPREC: the far end hung up
    BYE_CALLER = "bye-caller"  # b2bua: the caller hung up
    BYE_AGENT = "bye-agent"  # b2bua: the dialled side hung up
    CANCEL = "cancel"  # RFC 3261 §9: CANCEL before the answer
    TARGET_FAILED = "target-failed"  # b2bua: the target could not be dialled
    RTP_TIMEOUT = "rtp-timeout"  # no RTP for rtp_timeout_s
    WORKER_CRASHED = "worker-crashed"  # the SIP worker process died
    BRIDGE_STOPPING = "bridge-stopping"  # bridge serve stopped with the call up
    ERROR = "error"  # the call failed otherwise
    # WebRTC
    WHIP_DELETE = "whip-delete"  # RFC 9725 §4.2: the client DELETEd the session
    ICE_FAILED = "ice-failed"  # no connection, or no media in time
    DISCONNECTED = "disconnected"  # media stopped
    PEER_CLOSED = "peer-closed"  # the peer closed DTLS
    SHUTDOWN = "shutdown"  # the bridge stopped
    # Media forks (bridge/ingest: AudioSocket, ...); DISCONNECTED and SHUTDOWN as above
    HANGUP = "hangup"  # the PBX said the channel hung up (AudioSocket 0x00)
    PEER_ERROR = "peer-error"  # the PBX reported an error on the stream (AudioSocket 0xFF)
    PROTOCOL_ERROR = "protocol-error"  # the peer broke the framing; the bridge closed
    # Any source
    BRIDGE_RESTARTED = "bridge-restarted"  # found active after a crash of the bridge


def target_cause(status: int) -> str:
    """b2bua: the dialled side's final failure status, ``target-486`` (RFC 3261 §16.7)."""
    if not 300 <= status <= 699:
        raise ValueError(f"a target's failure status is 300..699, got {status}")
    return f"target-{status}"
