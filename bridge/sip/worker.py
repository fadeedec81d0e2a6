"""One SIP worker process: a pjsua2 endpoint that answers calls and hands their audio over.

Modes (chosen per INVITE: ``Require: siprec`` -> ``siprec``, else the first matching
``[[sip.routes]]``, else ``direct``):

* ``direct``: answer, tap the remote party (one leg);
* ``siprec``: a recording server (RFC 7866): answer every offered audio stream recvonly, with
  its ``a=label``; one leg per stream, its role and speaker from the rs-metadata (RFC 7865);
  ``siprec`` is added to ``Supported`` by ctypes (pjsua2.md §1.3), else pjsua answers 420;
* ``b2bua``: ring the caller, dial the route's target, answer the caller when the target
  answers, bridge the media both ways and tap both (caller and agent legs); hangups, CANCEL and
  the target's failure status pass through (pjsua2.md §2).

Every mode: a hold (RFC 3264 inactive/sendonly re-offer) feeds the legs silence and is stored
as ``sip.hold``/``sip.resume``; a call without RTP for ``rtp_timeout_s`` (not on hold) is hung
up by the bridge (``rtp-timeout``).

Run by :mod:`bridge.ingest` as ``python -m bridge.sip.worker --spec JSON --fd N``, where ``N`` is
its end of a ``SOCK_SEQPACKET`` socket pair (:mod:`bridge.sip.wire`).  The process lives until
the main process sends ``Quit`` or closes the socket, or until SIGTERM/SIGINT.

Media: the RTP of ``direct`` and ``siprec`` calls comes to the worker's own sockets, named in
our answer (:mod:`bridge.sip.media`, placed by :mod:`bridge.sip.rtp`), so pjsua's jitter buffer
and conference clock never touch it; ``b2bua`` calls go through pjsua's conference, which plays
each side out to the other, and are tapped there (:class:`TapPort`).

Threads (test-peers.md §2): ``onIncomingCall``/``onCallState``/``onCallMediaState`` run on
pjsua's ``pjsua_0`` thread; our own RTP sockets are read by the ``rtp-in`` thread; a b2bua tap's
``onFrameReceived`` runs on the conference ``clock`` thread, which serves every call, so a frame
callback only copies the bytes (ctypes, ~1.4 µs) and ``send()``s them (~2 µs, pjsua2.md §4.2).
``onDtmfEvent`` runs on the ``media`` thread (RTP receive, for a b2bua call's RFC 4733 events)
or on ``pjsua_0`` (SIP INFO ``application/dtmf-relay``, which pjsua answers 200 itself),
pjsua2.md §5: it only reads the leg's position and hands a small message over, never waiting.
Pitfalls handled here (pjsua2.md "Pitfalls"):

* P1: ``getInfo()`` is kept in a local before touching ``.media``;
* P2: an exception escaping a callback pins the ``Call`` and aborts ``libDestroy``: every
  callback catches everything and logs it;
* P3: taps are (re)connected, and our streams' formats re-read, on every ``onCallMediaState``;
* P6 / test-peers.md finding 3: ``Call`` and ``AudioMediaPort`` objects are kept for a grace
  period after DISCONNECTED (the graveyard) and all are gone before ``libDestroy``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj

from bridge.core.types import LegRole
from bridge.errors import RemoteProtocolError
from bridge.log import install_repeat_filter
from bridge.sip import siprec, wire
from bridge.sip.media import MediaReceiver, RtpPorts, RtpStream
from bridge.sip.message import SipMessage, parse_message
from bridge.sip.offer import MAX_MEDIA, PayloadFormat, SdpOffer, parse_sdp, receive_on
from bridge.sip.pjnative import (
    Refusal,
    RequestScreen,
    add_supported_option_tag,
    forget_call_id,
    frame_bytes,
    pjsua_calls_in_use,
    print_sdp,
    quiet_pjlib,
)
from bridge.sip.policy import Decision, decide, end_cause, source_allowed
from bridge.sip.rtp import RTP_CLOCK_HZ, SourceLatch, StreamFormat
from bridge.sip.spec import PASSWORD_ENV, WorkerSpec
from sip_config.routes import Route, select_route

logger = logging.getLogger("bridge.sip.worker")

# Requests that only exist inside a dialog (or, CANCEL, a transaction): one the UA and
# transaction layers did not match reaches the screen and gets 481.
DIALOG_METHODS = frozenset({"BYE", "CANCEL", "INFO", "UPDATE", "PRACK", "NOTIFY", "REFER"})
PJSUA_SLOTS = 4  # the wheel's compile-time call limit (docs/pjsua2.md §4.1)
PJSIP_ESESSIONTERMINATED = 171140  # pjsip/sip_errno.h: PJSIP_ERRNO_START_PJSIP + 140
# Exit statuses of a worker that could not start (bridge.ingest words them for the operator):
# pjlib reports an OS error e as PJ_ERRNO_START_SYS (120000) + e.
START_FAILED = 2
START_FAILURES = {120000 + 98: 3, 120000 + 99: 4}  # EADDRINUSE: port taken; EADDRNOTAVAIL
GRAVE_S = 2.0  # keep ended calls this long before dropping the Python objects
STOP_WAIT_S = 3.0  # how long a stopping worker waits for its calls to disconnect
STOP_GRACE_S = 0.5  # then keeps their objects this long before libDestroy
POLL_S = 0.1
INACTIVITY_CHECK_S = 1.0  # how often the RTP counters of every call are read
CONTROL_WAIT_S = 2.0  # a control message waits this long for room in the socket buffer
SOCKET_BUFFER_BYTES = 1 << 20
# onDtmfEvent flags (pjmedia_stream_dtmf_event_flags; the wheel exports no names for them).
DTMF_IS_UPDATE = 1
DTMF_IS_END = 2
DTMF_METHODS = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc4733", pj.PJSUA_DTMF_METHOD_SIP_INFO: "info"}
DTMF_BACKLOG = 1000  # DTMF messages waiting for room in the socket (all calls)


class PjLogWriter(pj.LogWriter):  # type: ignore[misc]
    """pjsua's own log lines into ``logging`` (logger ``bridge.sip.pjsua``), from any thread.

    The bridge logs what it decides itself (refusals with their reasons, crashes), so pjsua's
    lines are detail: once the worker listens, its errors and warnings (levels 0-2: a packet it
    could not parse, a port it could not bind) at WARNING, the rest at DEBUG; before that all at
    DEBUG (a failed start is worded by the main process, in one line).  A line is cut at
    :data:`MAX_CHARS`: pjsip quotes whole packets of hostile peers in its errors.
    """

    LEVELS = {0: logging.WARNING, 1: logging.WARNING, 2: logging.WARNING}
    MAX_CHARS = 240

    def __init__(self) -> None:
        super().__init__()
        self.log = logging.getLogger("bridge.sip.pjsua")
        self.started = False  # until the worker listens, all at DEBUG: a failed start is one line

    def write(self, entry: Any) -> None:
        try:
            level = self.LEVELS.get(int(entry.level), logging.DEBUG)
            if not self.started:
                level = logging.DEBUG
            if self.log.isEnabledFor(level):
                text = " ".join(str(entry.msg).split())
                if len(text) > self.MAX_CHARS:
                    text = f"{text[: self.MAX_CHARS]}... ({len(text)} characters)"
                self.log.log(level, "%s", text)
        except Exception:  # P2: nothing may escape a pjsua callback
            pass


class Outbox:
    """The worker's end of the socket, shared by pjsua's threads; it never blocks for long.

    Overflow rule: a frame that does not fit in the socket buffer (~1 s of all calls) is
    dropped and counted; its samples become silence on the leg (the frame positions say where).
    A control message waits up to :data:`CONTROL_WAIT_S` for room, then the main process is
    taken as gone.  A message from the media thread (:meth:`send_soon`, DTMF) never waits: when
    the socket is full it joins a bounded backlog that the main thread's loop, or the next
    control message, sends first (so a call's digits still precede its ``CallEnded``).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.send = sock.send  # non-blocking
        self.broken = False
        self.backlog: deque[bytes] = deque(maxlen=DTMF_BACKLOG)
        self.backlog_lock = threading.Lock()

    def send_soon(self, message: wire.Message) -> None:
        """Send now if the socket has room, else queue; O(µs), for pjsua's media thread."""
        data = wire.encode(message)
        if not self.backlog:
            try:
                self.send(data)
                return
            except BlockingIOError:
                pass
            except OSError:
                self.broken = True
                return
        self.backlog.append(data)

    def flush(self) -> None:
        """Send the backlog (waiting for room like a control message); any thread."""
        with self.backlog_lock:
            while self.backlog and not self.broken:
                self._send_waiting(self.backlog[0])
                if not self.broken:
                    self.backlog.popleft()

    def send_control(self, message: wire.Message) -> None:
        if self.backlog:
            self.flush()
        self._send_waiting(wire.encode(message))

    def _send_waiting(self, data: bytes) -> None:
        if self.broken:
            return
        for _ in range(int(CONTROL_WAIT_S / 0.005)):
            try:
                self.send(data)
                return
            except BlockingIOError:
                time.sleep(0.005)
            except OSError as exc:
                logger.warning("cannot reach the main process: %s", exc)
                break
        self.broken = True


class TapPort(pj.AudioMediaPort):  # type: ignore[misc]
    """Receives the remote party's decoded audio at ``rate_hz`` and hands it over.

    The conference clock ticks a port until its C++ object is gone, which happens after Python
    has already cleared the object's attributes (seen once in 40 calls ending together).  So a
    tap is ``closed`` when its call ends, and the class-level ``closed = True`` is what such a
    half-destroyed tap reads: either way the tick is ignored.
    """

    closed = True

    def __init__(self, outbox: Outbox, key: int, rate_hz: int) -> None:
        super().__init__()
        self.outbox = outbox
        self.key = key
        self.rate_hz = rate_hz
        self.frame_samples = rate_hz // 50  # 20 ms conference ticks
        self.position = 0
        self.dropped = 0
        self.header = wire.FRAME_HEADER.pack
        self.silence = bytes(2 * self.frame_samples)
        self.closed = False

    def create(self, name: str) -> TapPort:
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = self.rate_hz
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = 20000
        self.createPort(name, fmt)
        return self

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802 - 'clock' thread, every 20 ms
        if self.closed:
            return
        try:
            if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
                pcm = frame_bytes(frame.buf)
            else:  # no audio this tick (hold, inactive stream): the leg hears silence, live
                pcm = self.silence
            try:
                self.outbox.send(self.header(wire.KIND_FRAME, self.key, self.position) + pcm)
            except BlockingIOError:
                self.dropped += 1
            except OSError:
                self.outbox.broken = True
            self.position = (self.position + len(pcm) // 2) & 0xFFFFFFFF
        except Exception:  # P2: nothing may escape a pjsua callback
            logger.exception("tap %d: frame callback failed", self.key)

    def onFrameRequested(self, frame: Any) -> None:  # noqa: N802 - we never send audio
        frame.type = pj.PJMEDIA_FRAME_TYPE_NONE


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What a tapped audio stream is: its speaker's role, who is heard, its SIPREC label."""

    role: str
    label: str
    stream: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the worker made of an INVITE: its route and mode, and the answer to give."""

    sip_call_id: str
    message: SipMessage
    route: Route | None
    mode: str
    decision: Decision


class BridgeCall(pj.Call):  # type: ignore[misc]
    """One pjsua call: an answered call (``direct``/``siprec``), or one side of a ``b2bua`` call.

    A b2bua call is two of these, the caller (A, :attr:`owner`) and the dialled side (B, whose
    :attr:`caller` is A), each the other's ``peer``; the conference bridge connects their media
    both ways (pjsua2.md §2).  Both sides' legs belong to A's call key.
    """

    def __init__(self, worker: Worker, call_id: int, key: int, source: str) -> None:
        super().__init__(worker.account, call_id)
        self.worker = worker
        self.key = key
        self.source = source
        self.mode = "direct"
        self.caller: BridgeCall | None = None  # b2bua callee: the side that called in
        self.peer: BridgeCall | None = None
        self.sip_call_id = "?"
        self.from_uri = ""
        self.to_uri = ""
        # media index (SDP m-line) -> plan
        self.plans: dict[int, StreamPlan] = {}
        # media index -> the leg's source once its media is up: pjsua's conference (b2bua),
        # or the worker's own RTP sockets (direct, siprec: bridge.sip.media)
        self.taps: dict[int, TapPort | RtpStream] = {}
        self.rtp_ports: dict[int, RtpPorts] = {}  # media index -> the pair our answer names
        self.retired_dropped = 0  # frames dropped by legs replaced after a codec change
        self.audio: Any = None  # b2bua: this side's stream in the bridge
        self.media_count = 1  # m-lines of the session (pjsua's own offer has one audio line)
        self.held = False
        self.accepted = False
        self.confirmed = False
        self.ended = False
        self.local_cause: str | None = None  # set before the bridge hangs up itself
        self.first_end: str | None = None  # owner: the cause, from the side that ended first
        self.recording: siprec.RecordingSession | None = None  # SIPREC: as last offered
        self.rx_packets = -1  # RTP packets received at the last inactivity check
        self.rx_since = time.monotonic()  # ... and since when that count has not moved
        # The RFC 4733 event under way: (RTP timestamp, digit, tap position at its start).
        self.dtmf_open: tuple[int, str, int] | None = None

    @property
    def call_key(self) -> int:
        return self.owner.key

    @property
    def owner(self) -> BridgeCall:
        """The call the bridge answered: A of a b2bua call, else this one."""
        return self.caller or self

    # -- media ---------------------------------------------------------------------------------

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        try:
            self._attach_media()
        except Exception:  # P2
            logger.exception("call %s: media state callback failed", self.sip_call_id)

    def _attach_media(self) -> None:
        """(Re)connect every receiving audio stream to its tap, and a b2bua call's two sides.

        P3: a re-INVITE recreates the stream with a new conference slot, so this runs again on
        every ``onCallMediaState``; ``startTransmit`` on an existing link is a no-op.
        """
        ci = self.getInfo()  # P1: keep CallInfo alive while reading .media
        receiving, audio = False, None
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            # P4: a sendonly offer (SIPREC, a remote hold with music) is REMOTE_HOLD, DECODING.
            up = mi.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD)
            if not up or not mi.dir & pj.PJMEDIA_DIR_DECODING:
                continue
            plan = self.plans.get(mi.index)
            if plan is None and mi.index not in self.taps:
                continue  # a stream nobody asked for (e.g. a second m-line of a direct call)
            receiving = True
            if self.rtp_ports:  # direct, siprec: the RTP comes to our own sockets
                self._update_rtp_leg(mi.index, plan)
                continue
            media = self.getAudioMedia(mi.index)
            audio = audio or media
            tap = self.taps.get(mi.index)
            if tap is None and plan is not None:
                tap = self._start_leg(mi.index, plan)
            if isinstance(tap, TapPort):
                media.startTransmit(tap)
        self._set_held(not receiving)
        self.audio = audio
        peer = self.peer
        if audio is not None and peer is not None and peer.audio is not None:
            audio.startTransmit(peer.audio)  # pjsua2.md §2: A <-> B through the bridge
            peer.audio.startTransmit(audio)

    def _update_rtp_leg(self, index: int, plan: StreamPlan | None) -> None:
        """Open the leg of stream ``index`` on its port pair, or take a re-offer's formats."""
        ports = self.rtp_ports.get(index)
        if ports is None:
            return  # not ours (no pair could be bound for it): pjsua receives and drops it
        si = self.getStreamInfo(index)
        fmt = stream_format(si)
        tap = self.taps.get(index)
        media = self.worker.media
        if isinstance(tap, RtpStream):
            if media.same_codec(tap, fmt):
                media.update(tap, fmt, rtp_address(si))
                return
            # A re-offer changed the codec (a transfer to a G.722 phone, say): the leg's
            # encoding and rate are fixed, so it ends here and a new leg goes on.
            codec = "/".join(sorted(fmt.encodings))
            logger.info("call %s: media %d: now %s, a new leg", self.sip_call_id, index, codec)
            media.close(tap, keep_ports=True)
            self.retired_dropped += tap.dropped
            del self.taps[index]
            plan = self.plans.get(index)
        if plan is not None:
            self._start_leg(index, plan, ports, fmt)

    def _start_leg(
        self,
        index: int,
        plan: StreamPlan,
        ports: RtpPorts | None = None,
        fmt: StreamFormat | None = None,
    ) -> TapPort | RtpStream:
        """A new leg for stream ``index``: on ``ports`` (direct, siprec), else a pjsua tap."""
        si = self.getStreamInfo(index)
        codec, rate = si.codecName.lower(), int(si.codecClockRate)
        key = self.worker.new_key()
        tap: TapPort | RtpStream
        encoding = "pcm16"
        if ports is not None and fmt is not None:
            latch = SourceLatch(rtp_address(si), self.worker.permits_rtp_from)
            tap, encoding = self.worker.media.open(key, ports, fmt, latch)
            rate = tap.rate_hz
        else:
            tap = TapPort(self.worker.outbox, key, rate).create(f"tap{key}")
        logger.info(
            "call %s: media %d up, %s/%d, %s (%s)",
            self.sip_call_id,
            index,
            codec,
            rate,
            plan.role,
            plan.label,
        )
        self.worker.outbox.send_control(
            wire.LegStarted(
                key=key,
                call_key=self.call_key,
                role=plan.role,
                label=plan.label,
                codec=f"{codec}/{rate}",
                rate_hz=rate,
                stream=plan.stream,
                encoding=encoding,
            )
        )
        self.taps[index] = tap  # after LegStarted: a DTMF message names a leg the main knows
        return tap

    def _set_held(self, held: bool) -> None:
        """RFC 3264 §8.4: a hold is a re-offer with sendonly/inactive; the taps get silence."""
        if held == self.held or not self.taps:
            self.held = held
            return
        self.held = held
        self.rx_since = time.monotonic()
        kind = "sip.hold" if held else "sip.resume"
        logger.info("call %s: %s", self.sip_call_id, kind)
        self.worker.outbox.send_control(wire.Event(self.call_key, kind, f"side={self.side}"))

    @property
    def side(self) -> str:
        return "caller" if self.caller is None else "agent"

    def rx_packets_now(self) -> int:
        """RTP packets received on every tapped stream so far (main thread)."""
        total = 0
        for index, tap in list(self.taps.items()):
            if isinstance(tap, RtpStream):
                total += tap.packets
                continue
            try:
                total += int(self.getStreamStat(index).rtcp.rxStat.pkt)
            except pj.Error:
                pass  # the stream is being recreated (re-INVITE)
        return total

    # -- SIPREC: answer labels, metadata updates -----------------------------------------------

    def onCallSdpCreated(self, prm: Any) -> None:  # noqa: N802
        """Our SDP (an answer, or an offer in a 200 to an offerless INVITE): the streams with
        a port pair of ours are received there (:mod:`bridge.sip.media`), a direct call's
        recvonly; SIPREC: each stream is named with the offer's ``a=label`` (RFC 4574), so the
        SRC can match them (pjsua2.md §1.3).  pjsua re-parses the edited SDP."""
        try:
            sdp = str(prm.sdp.wholeSdp) or print_sdp(prm.sdp.pjSdpSession)
            if not sdp:
                logger.error("call %s: pjsua's SDP cannot be read; sent as it is", self.sip_call_id)
                return
            if self.mode == "siprec" and self.recording is not None:
                labels = [m.label for m in self.recording.offer.media]
                if any(labels):
                    sdp = siprec.label_answer(sdp, labels)
            if self.rtp_ports:
                ports = {index: pair.port for index, pair in self.rtp_ports.items()}
                sdp = receive_on(sdp, ports, recvonly=self.mode == "direct")
            if sdp != str(prm.sdp.wholeSdp):
                prm.sdp.wholeSdp = sdp
        except Exception:  # P2
            logger.exception("call %s: SDP callback failed", self.sip_call_id)

    def onCallRxReinvite(self, prm: Any) -> None:  # noqa: N802
        """A SIPREC re-INVITE may add or drop streams, pause them (``a=inactive``) and carry new
        metadata (RFC 7866 §9); a hold re-INVITE has SDP only, so the metadata is merged."""
        try:
            if self.mode == "siprec":
                if not self._update_recording(str(prm.rdata.wholeMsg)):
                    prm.statusCode = pj.PJSIP_SC_NOT_ACCEPTABLE_HERE
                    return
                if self.recording is not None:
                    prm.opt.audioCount = audio_count(self.recording)  # P5
        except Exception:  # P2
            logger.exception("call %s: re-INVITE callback failed", self.sip_call_id)
            prm.statusCode = pj.PJSIP_SC_INTERNAL_SERVER_ERROR

    def onCallRxOffer(self, prm: Any) -> None:  # noqa: N802
        """Every re-offer (re-INVITE or UPDATE, after :meth:`onCallRxReinvite`): one we cannot
        read, or with another number of m-lines than the session has, gets 488 and the session
        goes on unchanged (RFC 3261 §14.2).  pjsua aborts on a re-offer it cannot answer
        m-line for m-line (pjsua_call.c: ``answer->media_count == offer->media_count``)."""
        try:
            offer = parse_sdp(str(prm.offer.wholeSdp), require_connection=False)
            expected = self.media_count
            if self.recording is not None:  # SIPREC: as updated by this re-INVITE
                expected = len(self.recording.offer.media)
            if len(offer.media) != expected:
                raise RemoteProtocolError(
                    f"re-offer with {len(offer.media)} media streams (the session has {expected})"
                )
        except RemoteProtocolError as exc:
            logger.warning("call %s: re-offer refused: %s", self.sip_call_id, exc)
            prm.statusCode = pj.PJSIP_SC_NOT_ACCEPTABLE_HERE
        except Exception:  # P2
            logger.exception("call %s: offer callback failed", self.sip_call_id)
            prm.statusCode = pj.PJSIP_SC_INTERNAL_SERVER_ERROR

    def onCallTsxState(self, prm: Any) -> None:  # noqa: N802
        """An UPDATE may carry a metadata snapshot alone (RFC 7866 §9); pjsua answers it 200."""
        try:
            if self.mode != "siprec" or not self.confirmed:
                return
            event = prm.e
            if event.type != pj.PJSIP_EVENT_TSX_STATE:
                return
            state = event.body.tsxState
            if state.type == pj.PJSIP_EVENT_RX_MSG:
                whole = str(state.src.rdata.wholeMsg)
                if whole.startswith("UPDATE "):
                    self._update_recording(whole)
        except Exception:  # P2
            logger.exception("call %s: transaction callback failed", self.sip_call_id)

    def _update_recording(self, whole_msg: str) -> bool:
        """Take a SIPREC update; ``False`` (and a log line) if it is refused."""
        if self.recording is None:
            return True
        message = parse_message(whole_msg)
        try:
            updated = siprec.update_session(
                self.recording, message.header("content-type") or "", message.body
            )
            self.worker.check_streams(updated)
        except RemoteProtocolError as exc:
            logger.warning("call %s: SIPREC update refused: %s", self.sip_call_id, exc)
            return False
        before, self.recording = self.recording, updated
        self.plans.update(self.worker.stream_plans(updated))  # new streams get their legs
        self.worker.bind_rtp(self)
        if updated.metadata_xml and updated.metadata_xml != before.metadata_xml:
            logger.info("call %s: SIPREC metadata updated", self.sip_call_id)
            self.worker.outbox.send_control(
                wire.Event(self.call_key, "siprec.metadata", updated.metadata_xml)
            )
        return True

    # -- DTMF ----------------------------------------------------------------------------------

    def onDtmfEvent(self, prm: Any) -> None:  # noqa: N802 - 'media' (RFC 4733) or 'pjsua_0' (INFO)
        """One DTMF event callback (pjsua2.md §5); a digit is handed over once it has ended.

        RFC 4733: a start (flags 0), updates every packet (``DTMF_IS_UPDATE``, duration rising),
        then one end (``DTMF_IS_END``, redundant end packets already de-duplicated by pjmedia).
        The digit is timed at its start.  SIP INFO: one callback with the end flag and the
        body's ``Duration``, timed at its arrival.  It lands on the call's first tapped leg.
        """
        try:
            tap = next(iter(self.taps.values()), None)
            method = DTMF_METHODS.get(prm.method)
            if tap is None or method is None:  # no media tapped yet: no clock to place it on
                return
            position = tap.position
            digit, duration, flags = str(prm.digit), int(prm.duration), int(prm.flags)
            if method == "info":
                self._digit(tap, digit, method, _duration_ms(duration), position)
                return
            timestamp = int(prm.timestamp)
            opened = self.dtmf_open
            if opened is not None and opened[0] != timestamp:
                self.close_dtmf()  # a new event before the last one's end: send it as it is
                opened = None
            if not flags & DTMF_IS_END:
                if opened is None:
                    self.dtmf_open = (timestamp, digit, position)
                return
            self.dtmf_open = None
            duration_ms = _duration_ms(duration)
            if opened is not None:
                start = opened[2]
            else:  # the start was lost: count back from the end
                start = max(0, position - duration_ms * tap.rate_hz // 1000)
            self._digit(tap, digit, method, duration_ms, start)
        except Exception:  # P2
            logger.exception("call %s: DTMF callback failed", self.sip_call_id)

    def _digit(
        self, tap: TapPort | RtpStream, digit: str, method: str, duration_ms: int, start: int
    ) -> None:
        """A finished digit: handed over (O(µs), any pjsua thread); in a b2bua call it is also
        queued for the other side, which the conference bridge would not carry (audio only)."""
        self.worker.outbox.send_soon(wire.Dtmf(tap.key, digit, method, duration_ms, start))
        if self.peer is not None:
            self.worker.dtmf_relay.append((self.peer, digit))

    def close_dtmf(self) -> None:
        """Hand over an RFC 4733 digit whose end never came (duration 0: unknown)."""
        opened, self.dtmf_open = self.dtmf_open, None
        tap = next(iter(self.taps.values()), None)
        if opened is not None and tap is not None:
            _, digit, start = opened
            self._digit(tap, digit, "rfc4733", 0, start)

    # -- call state ----------------------------------------------------------------------------

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        try:
            ci = self.getInfo()
            if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and not self.confirmed:
                self.confirmed = True
                if self.caller is not None:  # B answered: now answer A (pjsua2.md §2)
                    self.worker.answer_owner(self)
            elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
                self.ended = True
                self.worker.call_ended(self, int(ci.lastStatusCode), str(ci.lastReason))
        except Exception:  # P2
            logger.exception("call %s: state callback failed", self.sip_call_id)

    def hang_up(self, status: int, reason: str = "") -> None:
        """End this side: BYE when confirmed, CANCEL when we are calling, ``status`` when
        ringing in; a side that is already gone is left alone."""
        if self.ended:
            return
        op = pj.CallOpParam(True)
        op.statusCode = status
        if reason:
            op.reason = reason
        try:
            self.hangup(op)
        except pj.Error as exc:  # already terminated (pjsua2.md §6: PJSIP_ESESSIONTERMINATED)
            logger.debug("call %s: hangup: %s", self.sip_call_id, exc.info())
            if exc.status == PJSIP_ESESSIONTERMINATED and not self.ended:
                # pjsua ended the session without a DISCONNECTED callback for it (seen under
                # a flood of hostile requests): end the call here, or it would be kept, and
                # hung up again, forever.
                self.ended = True
                self.worker.call_ended(self, status, "session already terminated")


class BridgeAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    def onRegState(self, prm: Any) -> None:  # noqa: N802 - 'pjsua_0' thread
        """Registration with the PBX: logged (a refusal names the status, e.g. 403 for a wrong
        password), and pjsua retries by itself."""
        try:
            code, reason = int(prm.code), str(prm.reason)
            if 200 <= code < 300:
                logger.info(
                    "registered with %s (%d %s, expires %d s)",
                    self.worker.spec.registrar,
                    code,
                    reason,
                    int(prm.expiration),
                )
            else:
                logger.error(
                    "registration with %s failed: %d %s (check auth_user/auth_password)",
                    self.worker.spec.registrar,
                    code,
                    reason,
                )
        except Exception:  # P2
            logger.exception("registration callback failed")

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802 - 'pjsua_0' thread
        try:
            self.worker.incoming_call(prm)
        except Exception:  # P2
            logger.exception("incoming call failed")


class Worker:
    """The pjsua2 endpoint, its account and the calls it holds."""

    def __init__(self, spec: WorkerSpec, outbox: Outbox, *, pj_log_level: int = 2) -> None:
        self.spec = spec
        self.outbox = outbox
        self.pj_log_level = pj_log_level
        self.networks = spec.networks()
        self.routes = spec.route_table()
        self.endpoint = pj.Endpoint()
        self.log_writer = PjLogWriter()  # referenced until after libDestroy
        self.account: BridgeAccount | None = None
        self.calls: dict[int, BridgeCall] = {}  # key -> call: keeps the Python objects alive
        self.graveyard: deque[tuple[float, BridgeCall]] = deque()
        self.next_key = 1
        self.next_check = 0.0
        self.stopping = False
        self.asr_full = False  # the main process says: no ASR capacity for new calls
        self.screen = RequestScreen(self.screen_request)
        self.screened: Verdict | None = None  # the INVITE the screen let through last
        self.refusals: deque[tuple[BridgeCall, Decision]] = deque()  # answered by run()
        # b2bua digits to send on to the other side, from the main thread (not a media thread)
        self.dtmf_relay: deque[tuple[BridgeCall, str]] = deque(maxlen=DTMF_BACKLOG)
        # The worker's RTP ports: pjsua's media transports take the lower half (b2bua calls,
        # and the ports pjsua opens for every call anyway), our own receivers the upper.
        half = spec.rtp_port_range // 2 // 2 * 2
        self.pjsua_ports = range(spec.rtp_port, spec.rtp_port + half)
        # pjsua opens a transport per answered audio stream; it aborts when it cannot for a
        # re-offer (pjsua_call.c: "answer->media_count == offer->media_count"), so a call may
        # record no more streams than its share of pjsua's port pairs (all 4 slots in use).
        self.max_streams = max(1, min(MAX_MEDIA, len(self.pjsua_ports) // 2 // PJSUA_SLOTS))
        self.media = MediaReceiver(
            spec.host,
            range(spec.rtp_port + half, spec.rtp_port + spec.rtp_port_range),
            outbox.send,
            outbox.send_soon,
        )

    def new_key(self) -> int:
        key = self.next_key
        self.next_key = self.next_key % 0xFFFFFFFF + 1
        return key

    # -- lifecycle (main thread) ---------------------------------------------------------------

    def start(self) -> None:
        spec, ep = self.spec, self.endpoint
        quiet_pjlib(self.pj_log_level)
        ep.libCreate()
        cfg = pj.EpConfig()
        # The wheel clamps maxCalls to 4 (pjsua2.md §4.1); asking for all 4 keeps a slot free for
        # our own 503 answer when spec.max_calls < 4.  With max_calls == 4, pjsua answers the
        # 5th INVITE with 486 Busy Here before the application sees it.
        cfg.uaConfig.maxCalls = PJSUA_SLOTS
        cfg.uaConfig.threadCnt = 1
        cfg.uaConfig.userAgent = "call-bridge"
        cfg.medConfig.clockRate = spec.bridge_rate_hz
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        cfg.logConfig.level = cfg.logConfig.consoleLevel = self.pj_log_level
        cfg.logConfig.decor = pj.PJ_LOG_HAS_SENDER
        cfg.logConfig.writer = self.log_writer
        ep.libInit(cfg)
        ep.audDevManager().setNullDev()  # the wheel has no sound devices
        public = spec.public_address or spec.host
        kinds = {
            "udp": pj.PJSIP_TRANSPORT_UDP,
            "tcp": pj.PJSIP_TRANSPORT_TCP,
            "tls": pj.PJSIP_TRANSPORT_TLS,
        }
        for name in spec.transports:
            tc = pj.TransportConfig()
            tc.port = spec.sip_port
            tc.boundAddress = spec.host
            tc.publicAddress = public
            if name == "tls":  # RFC 3261 §26.2: SIP over TLS, on its own port
                tc.port = spec.tls_port
                tc.tlsConfig.certFile = spec.tls_cert_file or ""
                tc.tlsConfig.privKeyFile = spec.tls_key_file or ""
            ep.transportCreate(kinds[name], tc)
        ep.libStart()
        add_supported_option_tag("siprec")
        self.screen.install()
        for codec in ep.codecEnum2():
            name = codec.codecId.split("/")[0].upper()
            if name in spec.codecs:
                priority = 200 - spec.codecs.index(name)
            else:
                priority = 0  # off (speex, iLBC, GSM, L16)
            ep.codecSetPriority(codec.codecId, priority)
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:bridge@{public}:{spec.sip_port}"
        if spec.registrar and spec.auth_user:
            # RFC 3261 §10: register as an extension of the PBX, digest auth (§22).
            domain = spec.registrar.split(":", 1)[1].split(";")[0]
            acfg.idUri = f"sip:{spec.auth_user}@{domain}"
            acfg.regConfig.registrarUri = spec.registrar
            password = os.environ.get(PASSWORD_ENV, "")
            acfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", spec.auth_realm, spec.auth_user, 0, password)
            )
        mt = acfg.mediaConfig.transportConfig
        mt.boundAddress = spec.host
        mt.publicAddress = public
        mt.port = self.pjsua_ports.start
        mt.portRange = len(self.pjsua_ports)
        self.account = BridgeAccount(self)
        self.account.create(acfg)
        self.media.start()

    def run(self, sock: socket.socket, stop: list[bool]) -> None:
        """Until Quit, EOF from the main process, or a signal; reaps the graveyard and checks
        for RTP inactivity meanwhile."""
        while not stop[0] and not self.outbox.broken:
            readable, _, _ = select.select([sock], [], [], POLL_S)
            if readable:
                try:
                    data = sock.recv(wire.MAX_MESSAGE_BYTES)
                except BlockingIOError:
                    data = b"?"
                except OSError:
                    data = b""
                message = _safe_decode(data) if data else None
                if not data or isinstance(message, wire.Quit):
                    break
                if isinstance(message, wire.Admission):
                    self.asr_full = message.full
            if self.outbox.backlog:
                self.outbox.flush()
            self.answer_refusals()
            self.relay_dtmf()
            now = time.monotonic()
            self.reap(now)
            if now >= self.next_check:
                self.next_check = now + INACTIVITY_CHECK_S
                self.check_inactivity(now)

    def relay_dtmf(self) -> None:
        """b2bua: send the digits one side pressed to the other (RFC 4733, pjsua's default)."""
        while self.dtmf_relay:
            call, digit = self.dtmf_relay.popleft()
            if call.ended or not call.confirmed:
                continue
            try:
                call.dialDtmf(digit)
            except pj.Error as exc:
                logger.warning(
                    "call %s: DTMF %s not relayed: %s", call.sip_call_id, digit, exc.info()
                )

    def check_inactivity(self, now: float) -> None:
        """Hang up a call whose tapped streams received no RTP for ``spec.rtp_timeout_s``.

        A held call (RFC 3264 inactive/recvonly: no media is expected) never times out.
        """
        timeout = self.spec.rtp_timeout_s
        if timeout <= 0:
            return
        for call in list(self.calls.values()):
            if call.ended or not call.confirmed or not call.taps or call.held:
                continue
            packets = call.rx_packets_now()
            if packets != call.rx_packets:
                call.rx_packets, call.rx_since = packets, now
            elif now - call.rx_since >= timeout:
                logger.warning(
                    "call %s: no RTP for %.0f s, hanging up (rtp-timeout)",
                    call.sip_call_id,
                    now - call.rx_since,
                )
                call.local_cause = "rtp-timeout"
                call.hang_up(408)

    def shutdown(self) -> None:
        self.stopping = True
        active = sum(1 for c in list(self.calls.values()) if not c.ended)
        if active:
            logger.info("hanging up %d call(s)", active)
            self.endpoint.hangupAllCalls()
            deadline = time.monotonic() + STOP_WAIT_S
            while (
                any(not c.ended for c in list(self.calls.values())) and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            time.sleep(STOP_GRACE_S)  # let pjsua finish with the just-ended calls' objects
        self.media.stop()
        _unlink(list(self.calls.values()))  # P6: in a function, so no loop variable lingers
        self.graveyard.clear()
        self.calls.clear()
        if self.account is not None:
            self.account.shutdown()
        self.account = None
        # P2/P6: no traceback and no cycle may keep a Call alive into libDestroy.
        sys.last_type = sys.last_value = sys.last_traceback = None
        gc.collect()
        self.screen.remove()
        self.endpoint.libDestroy()

    def reap(self, now: float) -> None:
        while self.graveyard and now - self.graveyard[0][0] > GRAVE_S:
            _, call = self.graveyard.popleft()
            self.calls.pop(call.key, None)
            self.forget(call)
            if call.peer is None or call.peer.ended:
                call.caller = call.peer = None  # P6

    def forget(self, call: BridgeCall) -> None:
        """Before an ended call's object goes: its pjsua call id may be a newer call's already."""
        if call.getId() != pj.PJSUA_INVALID_ID and not forget_call_id(call):
            logger.error("call %s: its pjsua call id could not be released", call.sip_call_id)

    # -- pjsua callbacks ('pjsua_0' thread) -----------------------------------------------------

    def busy_slots(self) -> int:
        """pjsua calls in use (a b2bua call holds two: pjsua2.md P7)."""
        return sum(1 for c in list(self.calls.values()) if c.accepted and not c.ended)

    def screen_request(self, source: str, raw: bytes) -> Refusal | None:
        """The :class:`RequestScreen`'s question for an out-of-dialog request, before pjsua
        builds a call: a refusal, or ``None`` to let pjsua go on (and, for an INVITE we take,
        call :meth:`incoming_call` with the verdict kept here)."""
        text = raw.decode("utf-8", "replace")  # RFC 3261 §7: UTF-8; anything else is replaced
        source_ip = source.rsplit(":", 1)[0]
        method = text.split(" ", 1)[0]
        if method != "INVITE":
            if not source_allowed(source_ip, self.networks):
                return Refusal(403, f"Forbidden (source {source_ip} not allowed)")
            if method in DIALOG_METHODS:
                # RFC 3261 §12.2.2 (and §9.2 for CANCEL): no dialog or transaction matched it.
                return Refusal(481, "Call/Transaction Does Not Exist")
            return None
        verdict = self.judge(source, text)
        if verdict.decision.accepted:
            self.screened = verdict
            return None
        log_refusal(verdict.sip_call_id, source, verdict.decision)
        decision = verdict.decision
        return Refusal(decision.status, decision.reason, decision.retry_after_s)

    def judge(self, source: str, whole_msg: str) -> Verdict:
        """Whether and how the bridge takes this INVITE.  Never raises: a bug of ours in
        reading it is a 500 (RFC 3261 §21.5.1) and a log line with the traceback."""
        message = parse_message(whole_msg)
        sip_call_id = message.header("call-id") or "?"
        try:
            return self._judge(source, message, whole_msg)
        except Exception:
            logger.exception("call %s: from %s: cannot read the INVITE", sip_call_id, source)
            reason = "Server Internal Error (the bridge could not read this INVITE)"
            return Verdict(sip_call_id, message, None, "direct", Decision(500, reason))

    def _judge(self, source: str, message: SipMessage, whole_msg: str) -> Verdict:
        source_ip = source.rsplit(":", 1)[0]
        sip_call_id = message.header("call-id") or "?"
        headers = dict(message.headers)
        route = select_route(
            self.routes, user=message.request_user, source_ip=source_ip, headers=headers
        )
        siprec_invite = siprec.is_siprec_invite(message)
        mode = "siprec" if siprec_invite else (route.mode if route else "direct")
        full = self.stopping
        decision = decide(
            source_ip=source_ip,
            whole_msg=whole_msg,
            siprec=siprec_invite,
            active_calls=0 if full else max(self.busy_slots(), pjsua_calls_in_use()),
            slots_needed=2 if mode == "b2bua" else 1,
            max_calls=0 if full else self.spec.max_calls,
            allowed_sources=self.networks,
            codecs=self.spec.codecs,
            retry_after_s=self.spec.retry_after_s,
            asr_full=self.asr_full,
        )
        if decision.accepted and decision.recording is not None:
            try:
                self.check_streams(decision.recording)
            except RemoteProtocolError as exc:
                decision = Decision(488, f"Not Acceptable Here ({exc})")
        if decision.accepted and mode == "b2bua" and route is not None:
            if route.b2bua_target(user=message.request_user, headers=headers) is None:
                decision = Decision(404, f"Not Found (no target header {route.target_header})")
        return Verdict(sip_call_id, message, route, mode, decision)

    def incoming_call(self, prm: Any) -> None:
        """pjsua's new call for an INVITE the screen let through (``pjsua_0`` thread)."""
        source = str(prm.rdata.srcAddress)
        call = BridgeCall(self, prm.callId, self.new_key(), source)
        self.calls[call.key] = call  # keep the Python object before anything can call back
        try:
            ci = call.getInfo()
            call.sip_call_id, call.from_uri, call.to_uri = (
                ci.callIdString,
                ci.remoteUri,
                ci.localUri,
            )
            verdict, self.screened = self.screened, None
            if verdict is None or verdict.sip_call_id != ci.callIdString:
                verdict = self.judge(source, str(prm.rdata.wholeMsg))
            self.take_call(call, verdict, ci)
        except Exception:
            logger.exception("call %s: from %s: cannot take the call", call.sip_call_id, source)
            reason = "Server Internal Error (the bridge could not take this call)"
            self.refuse_later(call, Decision(500, reason))

    def refuse_later(self, call: BridgeCall, decision: Decision) -> None:
        """Answer ``call`` with a refusal from the main loop, after ``onIncomingCall`` has
        returned: pjsua2 frees the INVITE's cloned rdata after the callback, unchecked, and a
        non-2xx answered inside it may reset the call first (the worker then aborts:
        :mod:`bridge.sip.pjnative`).  Within :data:`POLL_S`."""
        log_refusal(call.sip_call_id, call.source, decision)
        self.refusals.append((call, decision))

    def answer_refusals(self) -> None:
        while self.refusals:
            call, decision = self.refusals.popleft()
            if call.ended:
                continue
            try:
                call.answer(answer_param(decision.status, decision.reason, decision.retry_after_s))
            except pj.Error as exc:  # cancelled meanwhile (docs/pjsua2.md §6)
                logger.debug("call %s: refusal not sent: %s", call.sip_call_id, exc.info())

    def take_call(self, call: BridgeCall, verdict: Verdict, ci: Any) -> None:
        source, message, route, mode = call.source, verdict.message, verdict.route, verdict.mode
        decision = verdict.decision
        if decision.accepted and decision.offer is not None and not ci.remOfferer:
            # We read an offer where pjsip read none (a body its parser gave up on): answering
            # would put pjsua's own offer in the 200, which the caller cannot take (RFC 3264 §4).
            reason = "Bad Request (the SIP stack cannot read the SDP offer in this body)"
            decision = Decision(400, reason)
        headers = dict(message.headers)
        target = None
        if decision.accepted and mode == "b2bua" and route is not None:
            target = route.b2bua_target(user=message.request_user, headers=headers)
        if not decision.accepted:
            self.refuse_later(call, decision)
            return
        detail, metadata, agent_uri = "", "", target or ""
        if decision.recording is not None:
            agent_uri = self.agent_aor(decision.recording)
            call.recording = decision.recording
            call.plans = self.stream_plans(decision.recording)
            metadata = decision.recording.metadata_xml
            detail = f"streams={len(decision.recording.streams)}"
        else:
            remote_role = route.role.value if route else self.spec.direct_role
            call.plans = {first_audio(decision.offer): StreamPlan(remote_role, call.from_uri)}
        call.mode = mode
        if decision.offer is not None:
            call.media_count = len(decision.offer.media)
        if mode != "b2bua" and not self.bind_rtp(call):
            reason = "Service Unavailable (no free RTP port)"
            self.refuse_later(call, Decision(503, reason, retry_after_s=self.spec.retry_after_s))
            return
        call.accepted = True
        if target is not None:
            detail = f"target={target}"
        logger.info(
            "call %s: from %s (%s) to %s, mode %s, %s",
            call.sip_call_id,
            call.from_uri,
            source,
            call.to_uri,
            mode,
            detail or decision.codec,
        )
        self.outbox.send_control(
            wire.CallStarted(
                key=call.key,
                sip_call_id=call.sip_call_id,
                from_uri=call.from_uri,
                to_uri=call.to_uri,
                source=source,
                mode=mode,
                detail=detail,
                metadata=metadata,
                agent_uri=agent_uri,
            )
        )
        if target is None:
            op = answer_param(200, "OK")
            if decision.recording is not None:
                op.opt.audioCount = audio_count(decision.recording)  # P5
            call.answer(op)
            return
        assert route is not None
        call.answer(answer_param(180, "Ringing"))
        self.dial(call, target, route.agent_role.value)

    def bind_rtp(self, call: BridgeCall) -> bool:
        """A port pair of our own for each planned stream of ``call`` that has none yet;
        ``False`` (and a log line) if one could not be bound."""
        for index in call.plans:
            if index not in call.rtp_ports:
                ports = self.media.bind()
                if ports is None:
                    logger.error(
                        "call %s: no free RTP port pair in %d..%d for media %d",
                        call.sip_call_id,
                        self.media.ports.start,
                        self.media.ports.stop - 1,
                        index,
                    )
                    return False
                call.rtp_ports[index] = ports
        return True

    def permits_rtp_from(self, ip: str) -> bool:
        """Whether ``ip`` may latch a stream before its SDP address sends (rtp.SourceLatch)."""
        return source_allowed(ip, self.networks)

    def check_streams(self, session: siprec.RecordingSession) -> None:
        """Raise a 488 for a recording offer with more audio streams than a call may have."""
        count = audio_count(session)
        if count > self.max_streams:
            raise RemoteProtocolError(
                f"{count} audio streams offered; this bridge records at most "
                f"{self.max_streams} per call",
                status_hint=488,
            )

    def stream_plans(self, session: siprec.RecordingSession) -> dict[int, StreamPlan]:
        """One plan per recorded stream, keyed by its media index (its SDP m-line)."""
        roles = siprec.assign_roles(session, self.spec.agent_users)
        return {
            stream.index: StreamPlan(role.value, describe(stream), stream.label or "")
            for stream, role in zip(session.streams, roles, strict=True)
        }

    def agent_aor(self, session: siprec.RecordingSession) -> str:
        """The AOR of the recorded agent, for the call's agent (``[sip.agents]``); "" if none."""
        roles = siprec.assign_roles(session, self.spec.agent_users)
        for stream, role in zip(session.streams, roles, strict=True):
            if role is LegRole.AGENT and stream.sender is not None and stream.sender.aor:
                return stream.sender.aor
        return ""

    def dial(self, caller: BridgeCall, target: str, role: str) -> None:
        """b2bua: call ``target`` for ``caller`` (pjsua2.md §2; fine from ``pjsua_0``)."""
        callee = BridgeCall(self, pj.PJSUA_INVALID_ID, self.new_key(), target)
        callee.caller, callee.mode, callee.accepted = caller, "b2bua", True
        callee.sip_call_id, callee.to_uri = caller.sip_call_id, target
        callee.plans = {0: StreamPlan(role, target)}  # our offer's one audio m-line
        caller.peer, callee.peer = callee, caller
        self.calls[callee.key] = callee
        try:
            callee.makeCall(target, pj.CallOpParam(True))
        except pj.Error as exc:
            reason = f"Bad Gateway (cannot call {target}: {exc.reason})"
            logger.warning("call %s: %s", caller.sip_call_id, reason)
            callee.ended = True
            self.graveyard.append((time.monotonic(), callee))
            caller.local_cause = "target-failed"
            caller.hang_up(502, reason)

    def answer_owner(self, callee: BridgeCall) -> None:
        """b2bua: the dialled side answered; answer the caller (its 200 follows B's)."""
        caller = callee.owner
        if caller.ended:
            callee.hang_up(200)
            return
        try:
            caller.answer(answer_param(200, "OK"))
        except pj.Error as exc:  # the caller cancelled meanwhile (pjsua2.md §6)
            logger.info("call %s: caller gone before the answer: %s", caller.sip_call_id, exc)

    def call_ended(self, call: BridgeCall, status: int, reason: str) -> None:
        """One pjsua call is DISCONNECTED: end its b2bua peer the same way, and report the call
        (its cause taken from the side that ended first) once every side of it has ended."""
        call.close_dtmf()
        for tap in call.taps.values():
            if isinstance(tap, RtpStream):
                self.media.close(tap)  # its last digit now, before CallEnded
            tap.closed = True  # no frame after the call's end (see TapPort)
        opened = {id(tap.ports) for tap in call.taps.values() if isinstance(tap, RtpStream)}
        for ports in call.rtp_ports.values():
            if id(ports) not in opened:
                self.media.release(ports)  # bound for a stream that never came up
        self.graveyard.append((time.monotonic(), call))
        owner, peer = call.owner, call.peer
        if not owner.accepted:
            return  # refused: the main process never heard of it
        if owner.first_end is None:
            owner.first_end = end_cause(
                side=call.side,
                mode=owner.mode,
                confirmed=call.confirmed,
                status=status,
                local_cause="bridge-stopping" if self.stopping else call.local_cause,
            )
        if peer is not None and not peer.ended:
            if call is owner:  # the caller left: BYE, or CANCEL while the callee rings
                peer.hang_up(200 if peer.confirmed else 487)
            elif owner.confirmed:  # the callee hung up
                owner.hang_up(200)
            else:  # the callee refused or failed: RFC 3261 §16.7 passes its final status on
                owner.hang_up(status if 300 <= status < 700 else 502, reason)
        if not owner.ended or (owner.peer is not None and not owner.peer.ended):
            return
        sides = [owner] + ([owner.peer] if owner.peer is not None else [])
        dropped = sum(
            side.retired_dropped + sum(tap.dropped for tap in side.taps.values()) for side in sides
        )
        foreign = sum(
            tap.latch.foreign_source
            for side in sides
            for tap in side.taps.values()
            if isinstance(tap, RtpStream)
        )
        cause = owner.first_end
        self.outbox.send_control(
            wire.CallEnded(
                key=owner.key,
                cause=cause,
                status=status,
                reason=reason,
                frames_dropped=dropped,
                foreign_rtp=foreign,
            )
        )
        logger.info(
            "call %s: ended (%s, %d %s), %d frame(s) dropped",
            owner.sip_call_id,
            cause,
            status,
            reason,
            dropped,
        )


def first_audio(offer: SdpOffer | None) -> int:
    """The media index of a direct call's tapped stream: the offer's first audio m-line
    with a port (0 for an offerless INVITE: pjsua's offer has one audio m-line)."""
    return offer.media.index(offer.audio[0]) if offer is not None and offer.audio else 0


def rtp_address(si: Any) -> tuple[str, int] | None:
    """Where the SDP said the stream's RTP comes from (pjsua's ``remoteRtpAddress``, "ip:port"
    or "[v6]:port"), or ``None`` (0.0.0.0, unreadable)."""
    host, _, port = str(si.remoteRtpAddress).rpartition(":")
    host = host.strip("[]")
    if not host or host in ("0.0.0.0", "::") or not port.isascii() or not port.isdigit():
        return None
    return host, int(port)


def stream_format(si: Any) -> StreamFormat:
    """What one negotiated stream carries (pjsua's ``StreamInfo``): its codec's receive
    payload type and the RFC 4733 one, if any (RFC 4733 §7: dynamic, 96..127)."""
    name = str(si.codecName).upper()
    codec = PayloadFormat(int(si.rxPt), name, RTP_CLOCK_HZ)
    events = int(si.audRxEventPt)
    return StreamFormat(
        audio={codec.payload_type: codec},
        events=events if 96 <= events <= 127 else None,
        comfort_noise=frozenset({13}),  # RFC 3389's static payload type
    )


def audio_count(session: siprec.RecordingSession) -> int:
    """P5: how many audio m-lines to answer (pjsua's default, 1, refuses the second)."""
    return max(1, sum(1 for m in session.offer.media if m.kind == "audio"))


def describe(stream: siprec.RecordedStream) -> str:
    """Who is heard on a recorded stream: ``"Alice" <sip:1001@pbx>``, several for a mixed one."""
    names = [
        " ".join(
            part
            for part in (f'"{p.name}"' if p.name else "", f"<{p.aor}>" if p.aor else "")
            if part
        )
        for p in stream.senders
    ]
    return ", ".join(n for n in names if n) or f"stream {stream.label or stream.index}"


def answer_param(status: int, reason: str, retry_after_s: int | None = None) -> Any:
    """A ``CallOpParam`` for ``answer()``; a 503's ``Retry-After`` (RFC 3261 §20.33) rides in
    its headers (``hangup()`` would drop them for an unanswered INVITE in pjsua 2.15)."""
    op = pj.CallOpParam(True)  # True: op.opt is an initialised CallSetting
    op.statusCode = status
    op.reason = reason
    if retry_after_s is not None:
        header = pj.SipHeader()
        header.hName = "Retry-After"
        header.hValue = str(retry_after_s)
        op.txOption.headers.append(header)
    return op


def _unlink(calls: list[BridgeCall]) -> None:
    """P6: break every b2bua A <-> B reference cycle."""
    for call in calls:
        call.caller = call.peer = None


def _duration_ms(duration: int) -> int:
    """pjsua's DTMF duration in ms; 0 for its "unknown" (0xFFFFFFFF) or nonsense."""
    return duration if 0 <= duration < 0xFFFF_0000 else 0


def log_refusal(sip_call_id: str, source: str, decision: Decision) -> None:
    logger.warning(
        "call %s: from %s refused: %d %s", sip_call_id, source, decision.status, decision.reason
    )


def _safe_decode(data: bytes) -> wire.Message | None:
    try:
        return wire.decode(data)
    except RemoteProtocolError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.sip.worker")
    parser.add_argument("--spec", required=True, help="WorkerSpec as JSON")
    parser.add_argument("--fd", type=int, required=True, help="SOCK_SEQPACKET socket to report on")
    parser.add_argument("--pj-log-level", type=int, default=2, help="pjsua log level 0..6")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    spec = WorkerSpec.from_json(args.spec)
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s %(levelname)s sip-worker[{spec.index}]: %(message)s",
    )
    install_repeat_filter()  # a flood of one failure is one line a minute
    sock = socket.socket(fileno=args.fd)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    sock.setblocking(False)
    stop = [False]

    def on_signal(signum: int, frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    outbox = Outbox(sock)
    worker = Worker(spec, outbox, pj_log_level=args.pj_log_level)
    try:
        worker.start()
    except pj.Error as exc:
        # The main process words the failure (its exit status says which); details at DEBUG.
        logger.debug("cannot start on %s:%d: %s", spec.host, spec.sip_port, exc.info())
        return START_FAILURES.get(int(exc.status), START_FAILED)
    worker.log_writer.started = True
    outbox.send_control(wire.Ready(worker=spec.index, sip_port=spec.sip_port, pid=os.getpid()))
    logger.info(
        "listening on %s:%d (%s), RTP %d..%d, codecs %s",
        spec.host,
        spec.sip_port,
        "+".join(spec.transports),
        spec.rtp_port,
        spec.rtp_port + spec.rtp_port_range - 1,
        ",".join(spec.codecs),
    )
    try:
        worker.run(sock, stop)
    finally:
        worker.shutdown()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
