"""Whether and how the worker takes an INVITE: judged once, before pjsua builds a call
(the request screen, :mod:`bridge.sip.pjnative`), then taken in ``onIncomingCall``."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pjsua2 as pj

from bridge.core.types import LegRole
from bridge.errors import RemoteProtocolError
from bridge.sip import siprec, wire
from bridge.sip.dtmf import parse_dtmf_relay
from bridge.sip.message import SipMessage, parse_message
from bridge.sip.offer import MAX_MEDIA
from bridge.sip.pjnative import Reply, pj_text, pjsua_calls_in_use
from bridge.sip.policy import AcceptRate, Decision, decide, source_allowed, unreadable_answer
from sip_config.routes import Route, select_route

from .call import BridgeCall, StreamPlan, answer_param, audio_count, describe, first_audio

if TYPE_CHECKING:
    from .endpoint import Worker

logger = logging.getLogger("bridge.sip.worker")

PJSUA_SLOTS = 4  # the wheel's compile-time call limit (docs/pjsua2.md §4.1)
MAX_NEW_CALLS_PER_S = 8
# Requests that only exist inside a dialog (or, CANCEL, a transaction): one the UA and
# transaction layers did not match reaches the screen and gets 481.
DIALOG_METHODS = frozenset({"BYE", "CANCEL", "INFO", "UPDATE", "PRACK", "NOTIFY", "REFER"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the worker made of an INVITE: its route and mode, and the answer to give."""

    sip_call_id: str
    message: SipMessage
    route: Route | None
    mode: str
    decision: Decision


class Admission:
    """The worker's INVITE decisions (pjsua's ``pjsua_0`` thread, and the worker loop)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.screened: Verdict | None = None  # the INVITE the screen let through last
        self.refusals: deque[tuple[BridgeCall, Decision]] = deque()  # answered by the loop
        self.rate = AcceptRate(MAX_NEW_CALLS_PER_S)
        # pjsua opens a transport per answered audio stream; it aborts when it cannot for a
        # re-offer (pjsua_call.c: "answer->media_count == offer->media_count"), so a call may
        # record no more streams than its share of pjsua's port pairs (all 4 slots in use).
        pairs = len(worker.pjsua_ports) // 2
        self.max_streams = max(1, min(MAX_MEDIA, pairs // PJSUA_SLOTS))

    def screen_request(self, source: str, raw: bytes) -> Reply | None:
        """The :class:`RequestScreen`'s question for an out-of-dialog request, before pjsua
        builds a call: a refusal, or ``None`` to let pjsua go on (and, for an INVITE we take,
        call :meth:`incoming_call` with the verdict kept here)."""
        text = raw.decode("utf-8", "replace")  # RFC 3261 §7: UTF-8; anything else is replaced
        source_ip = source.rsplit(":", 1)[0]
        method = text.split(" ", 1)[0]
        if method != "INVITE":
            if not source_allowed(source_ip, self.worker.networks):
                return Reply(403, f"Forbidden (source {source_ip} not allowed)")
            if method in DIALOG_METHODS:
                # RFC 3261 §12.2.2 (and §9.2 for CANCEL): no dialog or transaction matched it.
                return Reply(481, "Call/Transaction Does Not Exist")
            return None
        verdict = self.judge(source, text)
        if verdict.decision.accepted:
            self.screened = verdict
            return None
        log_refusal(verdict.sip_call_id, source, verdict.decision)
        decision = verdict.decision
        return Reply(decision.status, decision.reason, decision.retry_after_s)

    def guard_dialog(self, source: str, raw: bytes) -> Reply | str | None:
        """The :class:`DialogGuard`'s question for every request and response, before any
        transaction or dialog: INFO DTMF read here (docs/pjsua2.md P15), or why an SDP answer
        must not reach pjmedia (P14; logged here, naming the call), or ``None``."""
        message = parse_message(raw.decode("utf-8", "replace"))
        method = message.start_line.split(" ", 1)[0]
        content_type = (message.header("content-type") or "").split(";")[0].strip().lower()
        if method == "INFO" and content_type == "application/dtmf-relay":
            return self.info_dtmf(source, message)
        if not message.body:
            return None  # nothing for pjmedia to negotiate
        problem = unreadable_answer(message)
        if problem is not None:
            logger.warning(
                "call %s: %s from %s dropped, its SDP answer is unusable (%s); the call ends"
                " when the transaction times out",
                message.header("call-id") or "?",
                method[:20],
                source,
                problem,
            )
        return problem

    def info_dtmf(self, source: str, message: SipMessage) -> Reply:
        """A SIP INFO digit (``application/dtmf-relay``) for one of our calls: handed over
        like pjsua's own INFO digits (:meth:`BridgeCall.info_digit`) and answered 200."""
        sip_call_id = message.header("call-id") or "?"
        if not source_allowed(source.rsplit(":", 1)[0], self.worker.networks):
            return Reply(403, f"Forbidden (source {source.rsplit(':', 1)[0]} not allowed)")
        call = next(
            (c for c in list(self.worker.calls.values()) if c.sip_call_id == sip_call_id), None
        )
        if call is None or ";tag=" not in (message.header("to") or ""):
            return Reply(481, "Call/Transaction Does Not Exist")  # RFC 3261 §12.2.2
        try:
            digit, duration_ms = parse_dtmf_relay(message.body)
        except RemoteProtocolError as exc:
            logger.warning("call %s: INFO from %s refused: %s", sip_call_id, source, exc)
            return Reply(400, f"Bad Request ({exc})")
        call.info_digit(digit, duration_ms)
        return Reply(200, "OK")

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
            self.worker.routes, user=message.request_user, source_ip=source_ip, headers=headers
        )
        siprec_invite = siprec.is_siprec_invite(message)
        mode = "siprec" if siprec_invite else (route.mode if route else "direct")
        full = self.worker.stopping
        decision = decide(
            source_ip=source_ip,
            whole_msg=whole_msg,
            siprec=siprec_invite,
            active_calls=0 if full else max(self.worker.busy_slots(), pjsua_calls_in_use()),
            slots_needed=2 if mode == "b2bua" else 1,
            max_calls=0 if full else self.worker.spec.max_calls,
            allowed_sources=self.worker.networks,
            codecs=self.worker.spec.codecs,
            retry_after_s=self.worker.spec.retry_after_s,
            asr_full=self.worker.asr_full,
        )
        if decision.accepted and decision.recording is not None:
            try:
                self.check_streams(decision.recording)
            except RemoteProtocolError as exc:
                decision = Decision(488, f"Not Acceptable Here ({exc})")
        if decision.accepted and mode == "b2bua" and route is not None:
            if route.b2bua_target(user=message.request_user, headers=headers) is None:
                decision = Decision(404, f"Not Found (no target header {route.target_header})")
        if decision.accepted and not self.rate.take(time.monotonic()):
            decision = Decision(
                503, "Service Unavailable (too many new calls per second)", retry_after_s=1
            )
        return Verdict(sip_call_id, message, route, mode, decision)

    def incoming_call(self, prm: Any) -> None:
        """pjsua's new call for an INVITE the screen let through (``pjsua_0`` thread)."""
        source = str(prm.rdata.srcAddress)
        call = BridgeCall(self.worker, prm.callId, self.worker.new_key(), source)
        self.worker.calls[call.key] = call  # keep the Python object before anything can call back
        try:
            ci = call.getInfo()
            call.sip_call_id, call.from_uri, call.to_uri = (
                ci.callIdString,
                ci.remoteUri,
                ci.localUri,
            )
            verdict, self.screened = self.screened, None
            if verdict is None or verdict.sip_call_id != ci.callIdString:
                verdict = self.judge(source, pj_text(prm.rdata.wholeMsg))
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
            remote_role = route.role.value if route else self.worker.spec.direct_role
            call.plans = {first_audio(decision.offer): StreamPlan(remote_role, call.from_uri)}
        call.mode = mode
        if decision.offer is not None:
            call.media_count = len(decision.offer.media)
        if mode != "b2bua" and not self.worker.bind_rtp(call):
            reason = "Service Unavailable (no free RTP port)"
            retry_s = self.worker.spec.retry_after_s
            self.refuse_later(call, Decision(503, reason, retry_after_s=retry_s))
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
        self.worker.outbox.send_control(
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
        self.worker.dial(call, target, route.agent_role.value)

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
        roles = siprec.assign_roles(session, self.worker.spec.agent_users)
        return {
            stream.index: StreamPlan(role.value, describe(stream), stream.label or "")
            for stream, role in zip(session.streams, roles, strict=True)
        }

    def agent_aor(self, session: siprec.RecordingSession) -> str:
        """The AOR of the recorded agent, for the call's agent (``[sip.agents]``); "" if none."""
        roles = siprec.assign_roles(session, self.worker.spec.agent_users)
        for stream, role in zip(session.streams, roles, strict=True):
            if role is LegRole.AGENT and stream.sender is not None and stream.sender.aor:
                return stream.sender.aor
        return ""


def log_refusal(sip_call_id: str, source: str, decision: Decision) -> None:
    logger.warning(
        "call %s: from %s refused: %d %s", sip_call_id, source, decision.status, decision.reason
    )
