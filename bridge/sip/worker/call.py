"""One pjsua call as the worker sees it: its media taps, SIPREC updates, DTMF and end."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pjsua2 as pj

from bridge.errors import RemoteProtocolError
from bridge.sip import siprec, wire
from bridge.sip.dtmf import Digit, DigitAssembler
from bridge.sip.media import RtpPorts, RtpStream
from bridge.sip.message import parse_message
from bridge.sip.offer import PayloadFormat, SdpOffer, parse_sdp, receive_on
from bridge.sip.pjnative import pj_text, print_sdp
from bridge.sip.rtp import RTP_CLOCK_HZ, SourceLatch, StreamFormat

from .taps import TapPort

if TYPE_CHECKING:
    from .endpoint import Worker

logger = logging.getLogger("bridge.sip.worker")

PJSIP_ESESSIONTERMINATED = 171140  # pjsip/sip_errno.h: PJSIP_ERRNO_START_PJSIP + 140
# onDtmfEvent flags (pjmedia_stream_dtmf_event_flags; the wheel exports no names for them).
DTMF_IS_END = 2
DTMF_METHODS = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc4733", pj.PJSUA_DTMF_METHOD_SIP_INFO: "info"}


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What a tapped audio stream is: its speaker's role, who is heard, its SIPREC label."""

    role: str
    label: str
    stream: str = ""


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
        self.digits = DigitAssembler()  # RFC 4733 events of a b2bua side (pjsua's callbacks)

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
                if not self._update_recording(pj_text(prm.rdata.wholeMsg)):
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
            offer = parse_sdp(pj_text(prm.offer.wholeSdp), require_connection=False)
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
                whole = pj_text(state.src.rdata.wholeMsg)
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
            self.worker.admission.check_streams(updated)
        except RemoteProtocolError as exc:
            logger.warning("call %s: SIPREC update refused: %s", self.sip_call_id, exc)
            return False
        before, self.recording = self.recording, updated
        self.plans.update(self.worker.admission.stream_plans(updated))  # new streams get their legs
        self.worker.bind_rtp(self)
        if updated.metadata_xml and updated.metadata_xml != before.metadata_xml:
            logger.info("call %s: SIPREC metadata updated", self.sip_call_id)
            self.worker.outbox.send_control(
                wire.Event(self.call_key, "siprec.metadata", updated.metadata_xml)
            )
        return True

    # -- DTMF ----------------------------------------------------------------------------------

    def onDtmfEvent(self, prm: Any) -> None:  # noqa: N802 - 'media' (RFC 4733) or 'pjsua_0' (INFO)
        """One DTMF event callback (docs/pjsua2.md §5); a digit is handed over once it ended.

        RFC 4733: a start (flags 0), updates every packet (flag 1, duration rising),
        then one end (``DTMF_IS_END``, redundant end packets already de-duplicated by pjmedia):
        the same assembler as our RTP receiver's (:mod:`bridge.sip.dtmf`), timed at the start.
        SIP INFO: one callback with the end flag and the body's ``Duration``, timed at its
        arrival.  It lands on the call's first tapped leg.
        """
        try:
            tap = next(iter(self.taps.values()), None)
            method = DTMF_METHODS.get(prm.method)
            if tap is None or method is None:  # no media tapped yet: no clock to place it on
                return
            position = tap.position
            digit, duration_ms = str(prm.digit), _duration_ms(int(prm.duration))
            if method == "info":  # INFO of a type the dialog guard leaves to pjsua
                self._digit(tap, Digit(digit, position, duration_ms), method)
                return
            start = max(0, position - duration_ms * tap.rate_hz // 1000)  # its start, if lost
            ended = bool(int(prm.flags) & DTMF_IS_END)
            for found in self.digits.receive(
                int(prm.timestamp), digit, start, ended=ended, duration_ms=duration_ms
            ):
                self._digit(tap, found, method)
        except Exception:  # P2
            logger.exception("call %s: DTMF callback failed", self.sip_call_id)

    def info_digit(self, digit: str, duration_ms: int) -> None:
        """A SIP INFO ``dtmf-relay`` digit the worker read itself (docs/pjsua2.md P15), timed
        at its arrival on the call's first tapped leg (``pjsua_0`` thread)."""
        tap = next(iter(self.taps.values()), None)
        if tap is not None:  # no media tapped yet: no clock to place it on
            self._digit(tap, Digit(digit, tap.position, duration_ms), "info")

    def _digit(self, tap: TapPort | RtpStream, digit: Digit, method: str) -> None:
        """A finished digit: handed over (O(µs), any pjsua thread); in a b2bua call it is also
        queued for the other side, which the conference bridge would not carry (audio only)."""
        self.worker.outbox.send_soon(
            wire.Dtmf(tap.key, digit.digit, method, digit.duration_ms, digit.position)
        )
        if self.peer is not None:
            self.worker.dtmf_relay.append((self.peer, digit.digit))

    def close_dtmf(self) -> None:
        """Hand over an RFC 4733 digit whose end never came (duration 0: unknown)."""
        tap = next(iter(self.taps.values()), None)
        for digit in self.digits.close():
            if tap is not None:
                self._digit(tap, digit, "rfc4733")

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


def _duration_ms(duration: int) -> int:
    """pjsua's DTMF duration in ms; 0 for its "unknown" (0xFFFFFFFF) or nonsense."""
    return duration if 0 <= duration < 0xFFFF_0000 else 0
