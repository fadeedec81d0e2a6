"""SIP ingest in the main process: SIP worker processes in, one transcribed leg per call out.

::

    pjsua2 worker k (python -m bridge.sip.worker, SIP port + k)     one per 4 calls (pjsua2.md §4)
      -- SOCK_SEQPACKET socket pair (bridge.sip.wire; processes: bridge.sip.supervisor) -->
    SipIngest (asyncio, this module), each call a bridge.call.Call:
      CallStarted -> Call.open() (mode, SIPREC metadata kept as a "siprec.metadata" event)
      LegStarted  -> Call.add_leg(role, ..., LegAudio(rate, encoding))
      Frame       -> leg.receive_frame(pcm, position)      on the loop, no await
      Dtmf        -> Call.dtmf(leg, ...): a "dtmf" event at its leg-clock time, published
      Event       -> Call.event (sip.hold, sip.resume, siprec.metadata updates)
      CallEnded   -> Call.close(cause): every leg finishes (finals durable), the call ends
      worker gone -> its calls end as "worker-crashed"; the worker is started again
      a leg starts or ends anywhere -> Admission(full) to every worker when capacity changes

A call has one leg per tapped stream: the remote party (mode ``direct``), each recorded stream
(``siprec``), caller and agent (``b2bua``); the worker names each leg's role.
Overflow rule: frames that arrive before their leg is ready wait in a bounded queue
(:data:`PENDING_FRAMES`, oldest dropped); their positions make the leg fill what was dropped
with silence, so the leg clock never skips.  DTMF digits that arrive then wait the same way
(:data:`PENDING_DTMF`), and so do call events (:data:`PENDING_EVENTS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import sys
from collections import deque
from dataclasses import dataclass, field

from bridge.asr.pool import AsrPool, AsrTarget
from bridge.call import Call, EndCause, TranscriptSink
from bridge.core.audio import LegAudio
from bridge.core.types import (
    AudioEncoding,
    LegRole,
    LegSource,
)
from bridge.errors import BridgeError, ConfigError
from bridge.health import Health
from bridge.leg import LIVE, Leg, LegSettings, Listener, capacity_problem
from bridge.sip import wire
from bridge.sip.dispatcher import kamailio_dispatcher
from bridge.sip.spec import worker_spec
from bridge.sip.supervisor import WorkerProcess, WorkerSupervisor
from sip_config import SipSettings

logger = logging.getLogger(__name__)

PENDING_FRAMES = 500  # 10 s of 20 ms frames per call while its leg is being created
PENDING_DTMF = 100  # DTMF digits per leg while it is being created
PENDING_EVENTS = 100  # call events while the call is being stored
PJSUA2_REQUIREMENT = "pjsua2-python==2.15.1.post1"  # the wheel pjsua2.md was measured with


@dataclass(eq=False)
class SipLeg:
    """One tapped stream of a call, as the main process sees it."""

    started: wire.LegStarted
    leg: Leg | None = None
    pending: deque[wire.Frame] = field(default_factory=lambda: deque(maxlen=PENDING_FRAMES))
    pending_dtmf: deque[wire.Dtmf] = field(default_factory=lambda: deque(maxlen=PENDING_DTMF))


@dataclass(eq=False)
class SipCall:
    """One SIP call of one worker, as the main process sees it (its lifecycle: ``call``)."""

    worker: int
    started: wire.CallStarted
    call: Call
    legs: list[SipLeg] = field(default_factory=list)
    events: deque[wire.Event] = field(default_factory=lambda: deque(maxlen=PENDING_EVENTS))
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # a leg or an event came
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    cause: str = EndCause.ERROR
    detail: str = ""

    def end(self, cause: str, detail: str) -> None:
        if not self.ended.is_set():
            self.cause, self.detail = cause, detail
            self.ended.set()
            self.wake.set()


class SipIngest:
    """The SIP worker processes and the calls they hand over.

    ``await start()`` returns once every worker listens; ``await close()`` hangs up every call,
    finishes the legs (their finals stored) and stops the workers.
    """

    def __init__(
        self,
        sip: SipSettings,
        *,
        store: TranscriptSink,
        endpoint: AsrTarget,
        leg_settings: LegSettings | None = None,
        listener: Listener | None = None,
        finish_timeout_s: float = 60.0,
        python: str = sys.executable,
        pj_log_level: int = 2,
        health: Health | None = None,
    ) -> None:
        self.sip = sip
        self.store = store
        self.endpoint = endpoint
        self.leg_settings = leg_settings
        self.listener = listener
        self.finish_timeout_s = finish_timeout_s
        self.health = health or Health()
        self.supervisor = WorkerSupervisor(
            [worker_spec(sip, k) for k in range(sip.workers)],
            on_message=self._receive,
            on_gone=self._worker_gone,
            on_restarted=lambda worker: self.supervisor.send(worker, wire.Admission(self._full)),
            health=self.health,
            auth_password=sip.auth_password,
            python=python,
            pj_log_level=pj_log_level,
        )
        self.health.add_check("sip", self.supervisor.problem)  # ready once every worker listens
        self.health.add_gauge(
            "sip_workers_up", "SIP worker processes listening", lambda: self.supervisor.workers_up
        )
        self._full = False  # the ASR side's capacity reached, as last told to the workers
        self._call_tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker and wait until each listens.

        Raises:
            ConfigError: the pjsua2 wheel is not installed.
            TransportError: a worker could not start (e.g. its SIP port is taken).
        """
        if importlib.util.find_spec("pjsua2") is None:  # checked without loading it here
            raise ConfigError(
                f"SIP ingest needs the pjsua2 wheel in {sys.prefix}: "
                f"pip install {PJSUA2_REQUIREMENT} (or bash .ci/setup-sip.sh)"
            )
        try:
            await self.supervisor.start()
        except BaseException:
            await self.close()
            raise
        LIVE.watch(self._admit)
        AsrPool.of(self.endpoint).subscribe(self._admit)
        self._admit()

    @property
    def workers(self) -> list[WorkerProcess]:
        return self.supervisor.workers

    def _admit(self) -> None:
        """Tell the workers whether the ASR side can take new calls (the pool's free budget,
        counting every live leg of this process: SIP and WebRTC), whenever a leg starts or
        ends, lags or catches up, or a server's health changes; they answer 503 while it
        cannot."""
        problem = capacity_problem(self.endpoint)
        full = problem is not None
        if full == self._full:
            return
        self._full = full
        if problem:
            logger.warning("%s: new SIP calls get 503", problem)
        else:
            logger.warning("ASR capacity available again: new SIP calls are taken")
        for worker in self.workers:
            self.supervisor.send(worker, wire.Admission(full))

    async def close(self) -> None:
        LIVE.unwatch(self._admit)
        AsrPool.of(self.endpoint).unsubscribe(self._admit)
        self.health.remove_check("sip")
        self.health.remove_gauge("sip_workers_up")
        await self.supervisor.close()
        if self._call_tasks:
            await asyncio.gather(*list(self._call_tasks), return_exceptions=True)

    @property
    def active_calls(self) -> int:
        return sum(len(w.calls) for w in self.workers)

    def _worker_gone(self, worker: WorkerProcess, cause: EndCause) -> None:
        for call in list(worker.calls.values()):
            call.end(cause, f"worker {worker.spec.index} exited")
        worker.calls.clear()
        worker.legs.clear()

    # -- messages from the workers (on the loop, synchronous) -----------------------------------

    def _receive(self, worker: WorkerProcess, message: wire.Message) -> None:
        if isinstance(message, wire.Frame | wire.Dtmf):
            found = worker.legs.get(message.key)
            if found is None:
                return
            call, state = found
            if isinstance(message, wire.Dtmf):
                if state.leg is None:
                    state.pending_dtmf.append(message)
                else:
                    self._put_dtmf(call, state.leg, message)
            elif state.leg is None:
                state.pending.append(message)
            else:
                self._feed(call, state.leg, message)
        elif isinstance(message, wire.LegStarted):
            owner = worker.calls.get(message.call_key)
            if owner is None:
                logger.error("SIP worker %d: leg of unknown call: %s", worker.spec.index, message)
                return
            state = SipLeg(message)
            worker.legs[message.key] = (owner, state)
            owner.legs.append(state)
            owner.wake.set()
        elif isinstance(message, wire.Event):
            owner = worker.calls.get(message.key)
            if owner is not None:
                owner.events.append(message)
                owner.wake.set()
        elif isinstance(message, wire.CallStarted):
            call = SipCall(worker.spec.index, message, self._new_call(message))
            worker.calls[message.key] = call
            name = f"sip-call-{call.call.call_id}"
            task = asyncio.create_task(self._run_call(call), name=name)
            self._call_tasks.add(task)
            task.add_done_callback(self._call_tasks.discard)
        elif isinstance(message, wire.CallEnded):
            ended = worker.calls.pop(message.key, None)
            if ended is not None:
                for state in ended.legs:
                    worker.legs.pop(state.started.key, None)
                ended.end(
                    message.cause,
                    f"status={message.status} reason={message.reason!r} "
                    f"frames_dropped={message.frames_dropped} "
                    f"foreign_rtp={message.foreign_rtp}",
                )
        elif isinstance(message, wire.Ready):
            if worker.ready is not None and not worker.ready.done():
                worker.ready.set_result(message)

    def _feed(self, call: SipCall, leg: Leg, frame: wire.Frame) -> None:
        try:
            leg.receive_frame(frame.pcm, position=frame.position)
        except (BridgeError, ValueError) as exc:
            logger.warning("call %s: frame refused: %s", call.started.sip_call_id, exc)

    def _put_dtmf(self, call: SipCall, leg: Leg, dtmf: wire.Dtmf) -> None:
        """A digit on the leg's clock (its start): ``digit=5 method=rfc4733 duration_ms=160``
        (``duration_ms=0``: its end was never seen)."""
        detail = f"digit={dtmf.digit} method={dtmf.method} duration_ms={dtmf.duration_ms}"
        at_ms = dtmf.position * 1000 // leg.audio.in_rate_hz
        # Keyed digits are often card numbers: which one is never logged (the stored event
        # follows the redaction policy: Call.dtmf).
        logger.info("call %s: DTMF digit (%s)", call.started.sip_call_id, dtmf.method)
        try:
            call.call.dtmf(leg, dtmf.digit, detail, at_ms, dtmf.duration_ms)
        except BridgeError as exc:
            logger.error("call %s: DTMF not stored: %s", call.started.sip_call_id, exc)

    # -- one call ------------------------------------------------------------------------------

    def _new_call(self, started: wire.CallStarted) -> Call:
        agent = self.sip.agent_for(started.from_uri, started.to_uri)
        if agent is None and started.agent_uri:
            agent = self.sip.agent_for(started.agent_uri, "")
        return Call.new(
            LegSource.SIP,
            self.store,
            endpoint=self.endpoint,
            title=f"{started.from_uri} -> {started.to_uri}",
            agent=agent,
            settings=self.leg_settings,
            listener=self.listener,
        )

    async def _run_call(self, call: SipCall) -> None:
        started, lifecycle = call.started, call.call
        log_id = f"{started.sip_call_id} ({lifecycle.call_id[:8]})"
        try:
            await lifecycle.open()
            lifecycle.event(
                "sip.call",
                f"call-id={started.sip_call_id} from={started.from_uri} to={started.to_uri} "
                f"source={started.source} mode={started.mode} worker={call.worker}"
                + (f" {started.detail}" if started.detail else ""),
                at_ms=lifecycle.info.started_at_ms,
            )
            if started.metadata:  # RFC 7866 §6.1: kept with the call as it came
                lifecycle.event(
                    "siprec.metadata", started.metadata, at_ms=lifecycle.info.started_at_ms
                )
            logger.info(
                "call %s: %s -> %s, mode %s", log_id, started.from_uri, started.to_uri, started.mode
            )
            while True:
                call.wake.clear()
                while call.events:
                    event = call.events.popleft()
                    lifecycle.event(event.kind, event.detail)
                for state in call.legs:
                    if state.leg is None:
                        await self._start_leg(call, state, log_id)
                if call.ended.is_set():
                    break
                await call.wake.wait()
        except BridgeError as exc:
            logger.error("call %s: %s", log_id, exc)
        finally:
            try:
                lifecycle.event("sip.ended", call.detail)
                await lifecycle.close(call.cause, finish_timeout_s=self.finish_timeout_s)
            except BridgeError as exc:
                logger.error("call %s: could not be closed cleanly: %s", log_id, exc)

    async def _start_leg(self, call: SipCall, state: SipLeg, log_id: str) -> None:
        started = state.started
        try:
            role = LegRole(started.role)
        except ValueError:
            logger.error("call %s: unknown leg role %r", log_id, started.role)
            role = LegRole.UNKNOWN
        leg = await call.call.add_leg(
            role,
            started.label,
            started.codec,
            LegAudio(started.rate_hz, AudioEncoding(started.encoding)),
        )
        logger.info(
            "call %s: leg %s as %s: %s, %s%s",
            log_id,
            leg.info.leg_id[:8],
            role.value,
            started.label,
            started.codec,
            f", stream {started.stream}" if started.stream else "",
        )
        state.leg = leg
        while state.pending:
            self._feed(call, leg, state.pending.popleft())
        while state.pending_dtmf:
            self._put_dtmf(call, leg, state.pending_dtmf.popleft())


async def run_sip_ingest(
    sip: SipSettings,
    *,
    store: TranscriptSink,
    endpoint: AsrTarget,
    stop: asyncio.Event,
    leg_settings: LegSettings | None = None,
    listener: Listener | None = None,
    health: Health | None = None,
) -> None:
    """Serve SIP calls until ``stop`` is set; then hang up, finish every leg and stop.

    ``listener`` sees every segment and gap as it happens (the live hub's).

    With several workers (``sip.dispatcher_active``), Kamailio runs in front of them on
    ``sip.host:sip.dispatcher_port`` (:mod:`bridge.sip.dispatcher`).

    Raises:
        ConfigError: the pjsua2 wheel or Kamailio is not installed.
        TransportError: a worker or Kamailio could not start (e.g. its SIP port is taken).
    """
    ingest = SipIngest(
        sip,
        store=store,
        endpoint=endpoint,
        leg_settings=leg_settings,
        listener=listener,
        health=health,
    )
    await ingest.start()
    async with contextlib.AsyncExitStack() as stack:
        try:
            if sip.dispatcher_active:  # after the workers listen, or its first pings fail
                dispatcher = await stack.enter_async_context(kamailio_dispatcher(sip))
                logger.info(
                    "Kamailio dispatcher on %s:%d in front of %d worker(s)",
                    sip.host,
                    dispatcher.port,
                    sip.workers,
                )
            await stop.wait()
        finally:
            await ingest.close()  # before Kamailio stops: the workers' BYEs go through it
