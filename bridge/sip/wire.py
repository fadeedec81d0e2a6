"""The worker -> main process protocol over one ``AF_UNIX`` ``SOCK_SEQPACKET`` socket pair.

SEQPACKET keeps message boundaries, order and reliability, so one message is one datagram and
there is no length prefix.  The first byte is the kind::

    FRAME    b"F" <u32 key> <u32 position> <mono samples: LegStarted.encoding, .rate_hz>
    control  <kind> <u32 key> <UTF-8 JSON object>
             kinds: R(eady) S(tarted call) L(eg started) V(event) D(tmf) E(nded);
             main -> worker: A(dmission) Q(uit)

A call (:class:`CallStarted` ... :class:`CallEnded`) has one leg per tapped audio stream
(:class:`LegStarted`): one in mode ``direct``, one per recorded stream in ``siprec``, caller and
agent in ``b2bua``.  ``key`` names a call or a leg inside one worker (one counter for both; pjsua's
call slot is reused, so the worker counts its own keys).  Frames and digits carry their leg's key.
``position`` is the frame's first sample on the leg clock (a pjsua tap's ticks, or the RTP
timestamps placed by :mod:`bridge.sip.rtp`): a frame the worker had to drop (socket full), a
lost packet or a pause leaves a hole that the leg fills with silence, so the leg clock never
skips (design.md §2); a frame with no samples only moves the clock on.  Samples are PCM16
little-endian, or G.711 bytes as they came in RTP (the leg decodes them).  Frames are the hot
path (50 per second per call); control messages are rare, so they carry JSON for easy growth.
A DTMF digit (:class:`Dtmf`) carries a ``position`` on the same leg clock as the frames.

Pure: bytes in, messages out.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from typing import Any

from bridge.errors import RemoteProtocolError

FRAME_HEADER = struct.Struct("<cII")
CONTROL_HEADER = struct.Struct("<cI")
KIND_FRAME = b"F"
KIND_READY = b"R"
KIND_STARTED = b"S"
KIND_LEG = b"L"
KIND_EVENT = b"V"
KIND_DTMF = b"D"
KIND_ENDED = b"E"
KIND_QUIT = b"Q"
KIND_ADMISSION = b"A"

# A 20 ms frame at 16 kHz is 640 bytes; the socket buffers are sized for ~1 s of all calls.
# Control messages may carry a SIP body (SIPREC metadata: at most a UDP datagram, 64 KiB, and JSON
# escaping can grow it).
MAX_MESSAGE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker listens (``sip_port``) and can take calls."""

    worker: int
    sip_port: int
    pid: int


MODES = ("direct", "siprec", "b2bua")


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A call was accepted (mode ``direct``/``siprec``: answered; ``b2bua``: ringing on).

    Its legs follow as :class:`LegStarted` once their media is up (a SIPREC session may start
    with every stream ``a=inactive``, i.e. none yet).
    """

    key: int
    sip_call_id: str
    from_uri: str
    to_uri: str
    source: str  # "ip:port" the INVITE came from
    mode: str = "direct"  # one of MODES
    agent_uri: str = ""  # whose call it is when From/To do not say: b2bua target, SIPREC agent
    detail: str = ""  # mode specifics for the call's event log, e.g. the B2BUA target
    metadata: str = ""  # SIPREC: the raw rs-metadata XML (RFC 7866 §6.1), kept with the call


@dataclass(frozen=True, slots=True)
class LegStarted:
    """One audio stream of call ``call_key`` is tapped; frames and digits with ``key`` follow."""

    key: int
    call_key: int
    role: str  # a bridge.core.types.LegRole value
    label: str  # who is heard: a participant's AOR and name, or the remote URI
    codec: str  # "pcmu/8000", "pcma/8000", "g722/16000"
    rate_hz: int  # sample rate of the frames (the leg clock)
    stream: str = ""  # SIPREC: the SDP a=label (RFC 4574) of the stream
    encoding: str = "pcm16"  # of the frames: an AudioEncoding value (G.711 comes as sent)


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to call ``key`` (hold, resume, a SIPREC metadata update, ...),
    stored as a timed event on the call (``kind`` like ``sip.hold``)."""

    key: int
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class Frame:
    key: int
    position: int  # first sample of the frame on the tap clock
    pcm: bytes


DTMF_METHODS = ("rfc4733", "info")


@dataclass(frozen=True, slots=True)
class Dtmf:
    """One DTMF digit of call ``key``, sent once the digit has ended (its duration is known).

    ``position`` is the tap-clock sample (as in :class:`Frame`) at which the digit started: an
    RFC 4733 event's first packet, or a SIP INFO's arrival.
    """

    key: int
    digit: str  # "0".."9", "*", "#", "A".."D"
    method: str  # one of DTMF_METHODS
    duration_ms: int  # 0 when the digit's end was never seen
    position: int


@dataclass(frozen=True, slots=True)
class CallEnded:
    """No more frames for ``key``."""

    key: int
    cause: str  # "bye-remote", "cancel", "error", "bridge-stopping", ...
    status: int  # last SIP status of the dialog
    reason: str  # its reason phrase
    frames_dropped: int = 0  # frames the worker could not hand over (socket full)
    foreign_rtp: int = 0  # RTP packets dropped for coming from another address (rtp.SourceLatch)


@dataclass(frozen=True, slots=True)
class Admission:
    """Main process -> worker: whether new calls can be transcribed (``full``: the ASR side
    runs as many legs as it takes, so INVITEs get 503 + Retry-After)."""

    full: bool


@dataclass(frozen=True, slots=True)
class Quit:
    """Main process -> worker: hang up every call and exit."""


Message = Ready | CallStarted | LegStarted | Event | Frame | Dtmf | CallEnded | Admission | Quit

_Control = (
    type[Ready]
    | type[CallStarted]
    | type[LegStarted]
    | type[Event]
    | type[Dtmf]
    | type[CallEnded]
    | type[Admission]
    | type[Quit]
)
_CONTROL: dict[bytes, _Control] = {
    KIND_READY: Ready,
    KIND_STARTED: CallStarted,
    KIND_LEG: LegStarted,
    KIND_EVENT: Event,
    KIND_DTMF: Dtmf,
    KIND_ENDED: CallEnded,
    KIND_ADMISSION: Admission,
    KIND_QUIT: Quit,
}
_KIND_OF = {cls: kind for kind, cls in _CONTROL.items()}


def encode_frame(key: int, position: int, pcm: bytes) -> bytes:
    return FRAME_HEADER.pack(KIND_FRAME, key, position & 0xFFFFFFFF) + pcm


def encode(message: Message) -> bytes:
    if isinstance(message, Frame):
        return encode_frame(message.key, message.position, message.pcm)
    fields = asdict(message)
    key = fields.pop("key", 0)
    body = json.dumps(fields, separators=(",", ":")).encode()
    return CONTROL_HEADER.pack(_KIND_OF[type(message)], key) + body


def decode(data: bytes) -> Message:
    """One datagram -> one message.

    Raises:
        RemoteProtocolError: the datagram is not a message of this protocol.
    """
    if len(data) < CONTROL_HEADER.size:
        raise RemoteProtocolError(f"SIP worker message of {len(data)} bytes: too short")
    kind = data[:1]
    if kind == KIND_FRAME:
        if len(data) < FRAME_HEADER.size:
            raise RemoteProtocolError(f"SIP worker frame of {len(data)} bytes: header is 9")
        _, key, position = FRAME_HEADER.unpack_from(data)
        return Frame(key, position, data[FRAME_HEADER.size :])
    cls = _CONTROL.get(kind)
    if cls is None:
        raise RemoteProtocolError(f"SIP worker message of unknown kind {kind!r}")
    _, key = CONTROL_HEADER.unpack_from(data)
    try:
        fields: dict[str, Any] = json.loads(data[CONTROL_HEADER.size :])
        if cls is not Ready and cls is not Quit and cls is not Admission:
            fields["key"] = key
        message = cls(**fields)
    except (ValueError, TypeError) as exc:
        raise RemoteProtocolError(f"SIP worker {cls.__name__} message is malformed: {exc}") from exc
    if isinstance(message, Dtmf) and not _valid_dtmf(message):
        raise RemoteProtocolError(f"SIP worker Dtmf message is malformed: {message}")
    if isinstance(message, CallStarted) and message.mode not in MODES:
        raise RemoteProtocolError(f"SIP worker CallStarted has unknown mode {message.mode!r}")
    return message


def _valid_dtmf(message: Dtmf) -> bool:
    return (
        isinstance(message.digit, str)
        and len(message.digit) == 1
        and message.method in DTMF_METHODS
        and isinstance(message.duration_ms, int)
        and message.duration_ms >= 0
        and isinstance(message.position, int)
        and message.position >= 0
    )
