"""One SIP worker process: a pjsua2 endpoint that answers calls and hands their audio over.

Run by :mod:`bridge.ingest` as ``python -m bridge.sip.worker --spec JSON --fd N``, where ``N`` is
its end of a ``SOCK_SEQPACKET`` socket pair (:mod:`bridge.sip.wire`).  The process lives until
the main process sends ``Quit`` or closes the socket, or until SIGTERM/SIGINT.

Threads (test-peers.md §2): ``onIncomingCall``/``onCallState``/``onCallMediaState`` run on
pjsua's ``pjsua_0`` thread, ``onFrameReceived`` on the conference ``clock`` thread, which serves
every call, so a frame callback only copies the bytes (ctypes, ~1.4 µs) and ``send()``s them
(~2 µs, pjsua2.md §4.2).  ``onDtmfEvent`` runs on the ``media`` thread (RTP receive, for RFC 4733
events) or on ``pjsua_0`` (SIP INFO ``application/dtmf-relay``, which pjsua answers 200 itself),
pjsua2.md §5: it only reads the tap's position and hands a small message over, never waiting.
Pitfalls handled here (pjsua2.md "Pitfalls"):

* P1: ``getInfo()`` is kept in a local before touching ``.media``;
* P2: an exception escaping a callback pins the ``Call`` and aborts ``libDestroy``: every
  callback catches everything and logs it;
* P3: taps are (re)connected on every ``onCallMediaState``;
* P6 / test-peers.md finding 3: ``Call`` and ``AudioMediaPort`` objects are kept for a grace
  period after DISCONNECTED (the graveyard) and all are gone before ``libDestroy``.
"""

from __future__ import annotations

import argparse
import ctypes
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
from typing import Any

import pjsua2 as pj

from bridge.errors import RemoteProtocolError
from bridge.sip import wire
from bridge.sip.policy import Decision, decide, end_cause
from bridge.sip.spec import WorkerSpec

logger = logging.getLogger("bridge.sip.worker")

GRAVE_S = 2.0  # keep ended calls this long before dropping the Python objects
STOP_WAIT_S = 3.0  # how long a stopping worker waits for its calls to disconnect
STOP_GRACE_S = 0.5  # then keeps their objects this long before libDestroy
POLL_S = 0.1
CONTROL_WAIT_S = 2.0  # a control message waits this long for room in the socket buffer
SOCKET_BUFFER_BYTES = 1 << 20
# onDtmfEvent flags (pjmedia_stream_dtmf_event_flags; the wheel exports no names for them).
DTMF_IS_UPDATE = 1
DTMF_IS_END = 2
DTMF_METHODS = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc4733", pj.PJSUA_DTMF_METHOD_SIP_INFO: "info"}
DTMF_BACKLOG = 1000  # DTMF messages waiting for room in the socket (all calls)


def frame_bytes(vec: Any) -> bytes:
    """Copy a SWIG ``ByteVector`` (libstdc++ vector: begin, end, capacity) without iterating.

    ``bytes(frame.buf)`` costs ~230 µs per frame; this ~1.4 µs (test-peers.md finding 2).
    """
    start, finish = (ctypes.c_void_p * 2).from_address(int(vec.this))
    if not start or not finish:
        return b""
    return ctypes.string_at(start, finish - start)


class PjLogWriter(pj.LogWriter):  # type: ignore[misc]
    """pjsua's own log lines into ``logging`` (logger ``bridge.sip.pjsua``), from any thread.

    pjsua answers some INVITEs itself before the application sees them: 400 "Bad SDP" for an
    offer it cannot parse, 488 when no codec matches, 486 past its 4-call cap.  Those refusals
    are only in its log (level 2), so they are forwarded.
    """

    LEVELS = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}

    def __init__(self) -> None:
        super().__init__()
        self.log = logging.getLogger("bridge.sip.pjsua")

    def write(self, entry: Any) -> None:
        try:
            level = self.LEVELS.get(int(entry.level), logging.DEBUG)
            self.log.log(level, "%s", " ".join(str(entry.msg).split()))
        except Exception:  # P2: nothing may escape a pjsua callback
            pass


def quiet_pjlib(level: int) -> None:
    """Set pjlib's log level before ``libCreate`` (which logs at level 4 otherwise)."""
    import pjsua2._pjsua2 as native

    ctypes.CDLL(native.__file__).pj_log_set_level(ctypes.c_int(level))


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
    """Receives the remote party's decoded audio at ``rate_hz`` and hands it over."""

    def __init__(self, outbox: Outbox, key: int, rate_hz: int) -> None:
        super().__init__()
        self.outbox = outbox
        self.key = key
        self.rate_hz = rate_hz
        self.frame_samples = rate_hz // 50  # 20 ms conference ticks
        self.position = 0
        self.dropped = 0
        self.header = wire.FRAME_HEADER.pack

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
        try:
            if frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
                self.position += self.frame_samples  # no audio this tick: the clock goes on
                return
            pcm = frame_bytes(frame.buf)
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


class BridgeCall(pj.Call):  # type: ignore[misc]
    def __init__(self, worker: Worker, call_id: int, key: int, source: str) -> None:
        super().__init__(worker.account, call_id)
        self.worker = worker
        self.key = key
        self.source = source
        self.sip_call_id = "?"
        self.from_uri = ""
        self.to_uri = ""
        self.tap: TapPort | None = None
        self.accepted = False
        self.confirmed = False
        self.ended = False
        # The RFC 4733 event under way: (RTP timestamp, digit, tap position at its start).
        self.dtmf_open: tuple[int, str, int] | None = None

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        try:
            self._attach_tap()
        except Exception:  # P2
            logger.exception("call %s: media state callback failed", self.sip_call_id)

    def _attach_tap(self) -> None:
        ci = self.getInfo()  # P1: keep CallInfo alive while reading .media
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status not in (
                pj.PJSUA_CALL_MEDIA_ACTIVE,
                pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,  # P4: a sendonly offer is REMOTE_HOLD
            ):
                continue
            media = self.getAudioMedia(mi.index)
            if self.tap is None:
                si = self.getStreamInfo(mi.index)
                codec, rate = si.codecName.lower(), int(si.codecClockRate)
                tap = TapPort(self.worker.outbox, self.key, rate).create(f"tap{self.key}")
                logger.info(
                    "call %s: media up, %s/%d from %s", self.sip_call_id, codec, rate, self.source
                )
                self.worker.outbox.send_control(
                    wire.CallStarted(
                        key=self.key,
                        sip_call_id=self.sip_call_id,
                        from_uri=self.from_uri,
                        to_uri=self.to_uri,
                        source=self.source,
                        codec=f"{codec}/{rate}",
                        rate_hz=rate,
                    )
                )
                self.tap = tap  # after CallStarted: a DTMF message names a call the main knows
            media.startTransmit(self.tap)  # P3: a no-op when the link already exists
            return

    def onDtmfEvent(self, prm: Any) -> None:  # noqa: N802 - 'media' (RFC 4733) or 'pjsua_0' (INFO)
        """One DTMF event callback (pjsua2.md §5); a digit is handed over once it has ended.

        RFC 4733: a start (flags 0), updates every packet (``DTMF_IS_UPDATE``, duration rising),
        then one end (``DTMF_IS_END``, redundant end packets already de-duplicated by pjmedia).
        The digit is timed at its start.  SIP INFO: one callback with the end flag and the
        body's ``Duration``, timed at its arrival.
        """
        try:
            tap = self.tap
            method = DTMF_METHODS.get(prm.method)
            if tap is None or method is None:  # no media tapped yet: no clock to place it on
                return
            position = tap.position
            digit, duration, flags = str(prm.digit), int(prm.duration), int(prm.flags)
            if method == "info":
                self.worker.outbox.send_soon(
                    wire.Dtmf(self.key, digit, method, _duration_ms(duration), position)
                )
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
            self.worker.outbox.send_soon(wire.Dtmf(self.key, digit, method, duration_ms, start))
        except Exception:  # P2
            logger.exception("call %s: DTMF callback failed", self.sip_call_id)

    def close_dtmf(self) -> None:
        """Hand over an RFC 4733 digit whose end never came (duration 0: unknown)."""
        opened, self.dtmf_open = self.dtmf_open, None
        if opened is not None:
            _, digit, start = opened
            self.worker.outbox.send_soon(wire.Dtmf(self.key, digit, "rfc4733", 0, start))

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        try:
            ci = self.getInfo()
            if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
                self.confirmed = True
            elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
                self.ended = True
                status, reason = int(ci.lastStatusCode), str(ci.lastReason)
                self.worker.call_ended(self, status, reason)
        except Exception:  # P2
            logger.exception("call %s: state callback failed", self.sip_call_id)


class BridgeAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

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
        self.endpoint = pj.Endpoint()
        self.log_writer = PjLogWriter()  # referenced until after libDestroy
        self.account: BridgeAccount | None = None
        self.calls: dict[int, BridgeCall] = {}  # key -> call: keeps the Python objects alive
        self.graveyard: deque[tuple[float, BridgeCall]] = deque()
        self.next_key = 1
        self.stopping = False

    # -- lifecycle (main thread) ---------------------------------------------------------------

    def start(self) -> None:
        spec, ep = self.spec, self.endpoint
        quiet_pjlib(self.pj_log_level)
        ep.libCreate()
        cfg = pj.EpConfig()
        # The wheel clamps maxCalls to 4 (pjsua2.md §4.1); asking for all 4 keeps a slot free for
        # our own 503 answer when spec.max_calls < 4.  With max_calls == 4, pjsua answers the
        # 5th INVITE with 486 Busy Here before the application sees it.
        cfg.uaConfig.maxCalls = 4
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
        for name in spec.transports:
            tc = pj.TransportConfig()
            tc.port = spec.sip_port
            tc.boundAddress = spec.host
            tc.publicAddress = public
            kind = pj.PJSIP_TRANSPORT_TCP if name == "tcp" else pj.PJSIP_TRANSPORT_UDP
            ep.transportCreate(kind, tc)
        ep.libStart()
        for codec in ep.codecEnum2():
            name = codec.codecId.split("/")[0].upper()
            if name in spec.codecs:
                priority = 200 - spec.codecs.index(name)
            else:
                priority = 0  # off (speex, iLBC, GSM, L16)
            ep.codecSetPriority(codec.codecId, priority)
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:bridge@{public}:{spec.sip_port}"
        mt = acfg.mediaConfig.transportConfig
        mt.boundAddress = spec.host
        mt.publicAddress = public
        mt.port = spec.rtp_port
        mt.portRange = spec.rtp_port_range
        self.account = BridgeAccount(self)
        self.account.create(acfg)

    def run(self, sock: socket.socket, stop: list[bool]) -> None:
        """Until Quit, EOF from the main process, or a signal; reaps the graveyard meanwhile."""
        while not stop[0] and not self.outbox.broken:
            readable, _, _ = select.select([sock], [], [], POLL_S)
            if readable:
                try:
                    data = sock.recv(wire.MAX_MESSAGE_BYTES)
                except BlockingIOError:
                    data = b"?"
                except OSError:
                    data = b""
                if not data or isinstance(_safe_decode(data), wire.Quit):
                    break
            if self.outbox.backlog:
                self.outbox.flush()
            self.reap(time.monotonic())

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
        self.graveyard.clear()
        self.calls.clear()
        if self.account is not None:
            self.account.shutdown()
        self.account = None
        # P2/P6: no traceback and no cycle may keep a Call alive into libDestroy.
        sys.last_type = sys.last_value = sys.last_traceback = None
        gc.collect()
        self.endpoint.libDestroy()

    def reap(self, now: float) -> None:
        while self.graveyard and now - self.graveyard[0][0] > GRAVE_S:
            _, call = self.graveyard.popleft()
            self.calls.pop(call.key, None)

    # -- pjsua callbacks ('pjsua_0' thread) -----------------------------------------------------

    def incoming_call(self, prm: Any) -> None:
        source = str(prm.rdata.srcAddress)
        key = self.next_key
        self.next_key = self.next_key % 0xFFFFFFFF + 1
        call = BridgeCall(self, prm.callId, key, source)
        self.calls[key] = call  # keep the Python object before anything can call back
        ci = call.getInfo()
        call.sip_call_id, call.from_uri, call.to_uri = ci.callIdString, ci.remoteUri, ci.localUri
        active = sum(1 for c in list(self.calls.values()) if c.accepted and not c.ended)
        decision = decide(
            source_ip=source.rsplit(":", 1)[0],
            whole_msg=str(prm.rdata.wholeMsg),
            active_calls=0 if self.stopping else active,
            max_calls=0 if self.stopping else self.spec.max_calls,
            allowed_sources=self.networks,
            codecs=self.spec.codecs,
            retry_after_s=self.spec.retry_after_s,
        )
        op = pj.CallOpParam(True)
        op.statusCode = decision.status
        op.reason = decision.reason
        if decision.retry_after_s is not None:
            header = pj.SipHeader()
            header.hName = "Retry-After"
            header.hValue = str(decision.retry_after_s)
            op.txOption.headers.append(header)
        if decision.accepted:
            call.accepted = True
            logger.info(
                "call %s: from %s (%s) to %s, answering 200 (%s)",
                ci.callIdString,
                ci.remoteUri,
                source,
                ci.localUri,
                decision.codec,
            )
        else:
            log_refusal(ci.callIdString, source, decision)
        # A final non-2xx answer ends the call.  (hangup() would drop the txOption headers,
        # Retry-After included, for an unanswered INVITE in pjsua 2.15.)
        call.answer(op)

    def call_ended(self, call: BridgeCall, status: int, reason: str) -> None:
        local = "bridge-stopping" if self.stopping else None
        cause = end_cause(confirmed=call.confirmed, hung_up_locally=local, status=status)
        if call.tap is not None:
            call.close_dtmf()
            dropped = call.tap.dropped
            self.outbox.send_control(
                wire.CallEnded(
                    key=call.key, cause=cause, status=status, reason=reason, frames_dropped=dropped
                )
            )
            logger.info(
                "call %s: ended (%s, %d %s), %d frame(s) dropped",
                call.sip_call_id,
                cause,
                status,
                reason,
                dropped,
            )
        self.graveyard.append((time.monotonic(), call))


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
        logger.error("cannot start on %s:%d: %s", spec.host, spec.sip_port, exc.info())
        return 2
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
