"""The worker's pjsua2 endpoint, account and calls; its loop and its shutdown."""

from __future__ import annotations

import gc
import logging
import os
import select
import socket
import sys
import time
from collections import deque
from typing import Any

import pjsua2 as pj

from bridge.core.types import EndCause
from bridge.errors import RemoteProtocolError
from bridge.sip import wire
from bridge.sip.media import MediaReceiver, RtpStream
from bridge.sip.pjnative import (
    DialogGuard,
    RequestScreen,
    add_supported_option_tag,
    forget_call_id,
    quiet_pjlib,
)
from bridge.sip.policy import end_cause, source_allowed
from bridge.sip.spec import PASSWORD_ENV, WorkerSpec

from .admission import PJSUA_SLOTS, Admission
from .call import BridgeCall, StreamPlan, answer_param
from .outbox import DTMF_BACKLOG, Outbox

logger = logging.getLogger("bridge.sip.worker")

GRAVE_S = 2.0  # keep ended calls this long before dropping the Python objects
STOP_WAIT_S = 3.0  # how long a stopping worker waits for its calls to disconnect
STOP_GRACE_S = 0.5  # then keeps their objects this long before libDestroy
POLL_S = 0.1
INACTIVITY_CHECK_S = 1.0  # how often the RTP counters of every call are read


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
            self.worker.admission.incoming_call(prm)
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
        # b2bua digits to send on to the other side, from the main thread (not a media thread)
        self.dtmf_relay: deque[tuple[BridgeCall, str]] = deque(maxlen=DTMF_BACKLOG)
        # The worker's RTP ports: pjsua's media transports take the lower half (b2bua calls,
        # and the ports pjsua opens for every call anyway), our own receivers the upper.
        half = spec.rtp_port_range // 2 // 2 * 2
        self.pjsua_ports = range(spec.rtp_port, spec.rtp_port + half)
        self.media = MediaReceiver(
            spec.host,
            range(spec.rtp_port + half, spec.rtp_port + spec.rtp_port_range),
            outbox.send,
            outbox.send_soon,
        )
        self.admission = Admission(self)
        self.screen = RequestScreen(self.admission.screen_request)
        self.dialog_guard = DialogGuard(self.admission.guard_dialog)

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
        # The wheel clamps maxCalls to 4 (pjsua2.md §4.1).  A 5th INVITE never reaches pjsua:
        # the admission screen (worker/admission.py, before pjsua's module) answers it 503 with
        # Retry-After when the worker's calls are all taken.
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
        self.dialog_guard.install()
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
            self.admission.answer_refusals()
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
                call.local_cause = EndCause.RTP_TIMEOUT
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
        self.dialog_guard.remove()
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
            caller.local_cause = EndCause.TARGET_FAILED
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
                local_cause=EndCause.BRIDGE_STOPPING if self.stopping else call.local_cause,
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


def _unlink(calls: list[BridgeCall]) -> None:
    """P6: break every b2bua A <-> B reference cycle."""
    for call in calls:
        call.caller = call.peer = None


def _safe_decode(data: bytes) -> wire.Message | None:
    try:
        return wire.decode(data)
    except RemoteProtocolError:
        return None
