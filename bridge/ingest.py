"""SIP ingest in the main process: SIP worker processes in, one transcribed leg per call out.

::

    pjsua2 worker k (python -m bridge.sip.worker, SIP port + k)     one per 4 calls (pjsua2.md §4)
      -- SOCK_SEQPACKET socket pair (bridge.sip.wire) -->
    SipIngest (asyncio, this module), each call a bridge.call.Call:
      CallStarted -> Call.open() (mode, SIPREC metadata kept as a "siprec.metadata" event)
      LegStarted  -> Call.add_leg(role, ..., LegAudio(rate, encoding))
      Frame       -> leg.receive_frame(pcm, position)      on the loop, no await
      Dtmf        -> Call.dtmf(leg, ...): a "dtmf" event at its leg-clock time, published
      Event       -> Call.event (sip.hold, sip.resume, siprec.metadata updates)
      CallEnded   -> Call.close(cause): every leg finishes (finals durable), the call ends
      worker gone -> its calls end as "worker-crashed"; the worker is started again

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
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bridge.call import Call, EndCause, TranscriptSink
from bridge.core.audio import LegAudio
from bridge.core.types import (
    AudioEncoding,
    LegRole,
    LegSource,
)
from bridge.errors import BridgeError, ConfigError, RemoteProtocolError, TransportError
from bridge.health import Health
from bridge.io.asr_client import AsrEndpoint
from bridge.leg import Leg, LegSettings, Listener, at_capacity
from bridge.sip import wire
from bridge.sip.dispatcher import kamailio_dispatcher
from bridge.sip.spec import PASSWORD_ENV, WorkerSpec, worker_spec
from sip_config import SipSettings

logger = logging.getLogger(__name__)

PENDING_FRAMES = 500  # 10 s of 20 ms frames per call while its leg is being created
PENDING_DTMF = 100  # DTMF digits per leg while it is being created
PENDING_EVENTS = 100  # call events while the call is being stored
ADMISSION_CHECK_S = 0.2  # how often the ASR capacity is compared with the live legs
READY_TIMEOUT_S = 30.0  # a worker's start-up (pjsua init) on a loaded box
STOP_TIMEOUT_S = 10.0  # a worker's hang-up-and-exit after Quit
MAX_MESSAGES_PER_READ = 1000  # fairness: one read callback handles at most this many
RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # a worker that keeps dying is retried this often
CRASH_LOOP_WINDOW_S = 60.0  # this many crashes within the window: /ready says SIP is down
CRASH_LOOP_COUNT = 3
SOCKET_BUFFER_BYTES = 1 << 20
PJSUA2_REQUIREMENT = "pjsua2-python==2.15.1.post1"  # the wheel pjsua2.md was measured with


def start_failure(host: str, port: int, code: int) -> str:
    """Why a worker could not listen (its exit status, ``bridge.sip.worker.START_FAILURES``),
    in one line with the fix."""
    if code == 3:
        return (
            f"SIP port {host}:{port} is taken by another program: stop it, or choose another "
            "port ([sip] port, BRIDGE_SIP_PORT or bridge serve --sip-port)"
        )
    if code == 4:
        return (
            f"SIP host {host} is not an address of this machine: set [sip] host "
            "(BRIDGE_SIP_HOST or bridge serve --sip-host) to one of its addresses "
            "(ip -brief address)"
        )
    return (
        f"the SIP worker for {host}:{port} could not start ({exit_cause(code)}); run with -vv "
        "to see pjsua's own lines"
    )


def exit_cause(code: int) -> str:
    """A child's exit status in words: ``killed by SIGABRT (pjsua assertion?)``, ``exited 2``."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {"SIGABRT": " (a pjsua assertion: its line is above)", "SIGSEGV": ""}.get(name, "")
        return f"killed by {name}{hint}"
    return f"exited with code {code}"


@dataclass(eq=False)
class _Leg:
    """One tapped stream of a call, as the main process sees it."""

    started: wire.LegStarted
    leg: Leg | None = None
    pending: deque[wire.Frame] = field(default_factory=lambda: deque(maxlen=PENDING_FRAMES))
    pending_dtmf: deque[wire.Dtmf] = field(default_factory=lambda: deque(maxlen=PENDING_DTMF))


@dataclass(eq=False)
class _Call:
    """One SIP call of one worker, as the main process sees it (its lifecycle: ``call``)."""

    worker: int
    started: wire.CallStarted
    call: Call
    legs: list[_Leg] = field(default_factory=list)
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


@dataclass(eq=False)
class _Worker:
    spec: WorkerSpec
    process: asyncio.subprocess.Process | None = None
    sock: socket.socket | None = None
    ready: asyncio.Future[wire.Ready] | None = None
    calls: dict[int, _Call] = field(default_factory=dict)  # by call key
    legs: dict[int, tuple[_Call, _Leg]] = field(default_factory=dict)  # by leg key
    restarts: int = 0
    crashes: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=16))
    up: bool = False  # listening (Ready received), not exited since


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
        endpoint: AsrEndpoint,
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
        self.python = python
        self.pj_log_level = pj_log_level
        self.workers = [_Worker(worker_spec(sip, k)) for k in range(sip.workers)]
        self.health = health or Health()
        self.health.add_check("sip", self.problem)  # not ready until every worker listens
        self.health.add_gauge(
            "sip_workers_up", "SIP worker processes listening", lambda: self.workers_up
        )
        self._closing = False
        self._asr_full = False  # as last told to the workers
        self._supervisors: list[asyncio.Task[None]] = []
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
        for worker in self.workers:
            await self._spawn(worker)
        try:
            for worker in self.workers:
                await self._wait_ready(worker)
        except BaseException:
            await self.close()
            raise
        self._supervisors = [
            asyncio.create_task(self._supervise(w), name=f"sip-worker-{w.spec.index}")
            for w in self.workers
        ]
        self._supervisors.append(asyncio.create_task(self._admit(), name="sip-admission"))

    async def _admit(self) -> None:
        """Tell the workers whether the ASR side can take new calls (``endpoint.max_legs``,
        counting every live leg of this process: SIP and WebRTC); they answer 503 while not."""
        while not self._closing:
            full = at_capacity(self.endpoint.max_legs)
            if full != self._asr_full:
                self._asr_full = full
                logger.warning(
                    "ASR capacity %s (%s legs): new SIP calls %s",
                    "reached" if full else "available again",
                    self.endpoint.max_legs,
                    "get 503" if full else "are taken",
                )
                for worker in self.workers:
                    self._send(worker, wire.Admission(full))
            await asyncio.sleep(ADMISSION_CHECK_S)

    @property
    def workers_up(self) -> int:
        return sum(1 for w in self.workers if w.up)

    def problem(self) -> str | None:
        """Why SIP cannot take calls now (for ``/ready``), or ``None``."""
        now = time.monotonic()
        problems = []
        for worker in self.workers:
            recent = [cause for at, cause in worker.crashes if now - at < CRASH_LOOP_WINDOW_S]
            where = f"SIP worker {worker.spec.index} ({worker.spec.host}:{worker.spec.sip_port})"
            if len(recent) >= CRASH_LOOP_COUNT:
                problems.append(
                    f"{where} crashed {len(recent)} times in {CRASH_LOOP_WINDOW_S:.0f} s "
                    f"(last: {recent[-1]}); see the ERROR lines of bridge.ingest"
                )
            elif not worker.up and worker.crashes:
                problems.append(f"{where} is restarting after {worker.crashes[-1][1]}")
            elif not worker.up:
                problems.append(f"{where} is starting")
        return "; ".join(problems) or None

    async def close(self) -> None:
        self._closing = True
        self.health.remove_check("sip")
        self.health.remove_gauge("sip_workers_up")
        for worker in self.workers:
            self._send(worker, wire.Quit())
        for worker in self.workers:
            await self._stop_process(worker)
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        for worker in self.workers:
            self._worker_gone(worker, EndCause.BRIDGE_STOPPING)
        if self._call_tasks:
            await asyncio.gather(*list(self._call_tasks), return_exceptions=True)

    @property
    def active_calls(self) -> int:
        return sum(len(w.calls) for w in self.workers)

    # -- worker processes ------------------------------------------------------------------------

    async def _spawn(self, worker: _Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        worker.ready = loop.create_future()
        worker.sock = ours
        try:
            worker.process = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "bridge.sip.worker",
                "--spec",
                worker.spec.to_json(),
                "--fd",
                str(theirs.fileno()),
                "--pj-log-level",
                str(self.pj_log_level),
                "--log-level",
                logging.getLevelName(logging.getLogger().getEffectiveLevel()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, PASSWORD_ENV: self.sip.auth_password or ""},
            )
        finally:
            theirs.close()
        loop.add_reader(ours.fileno(), self._on_readable, worker)
        logger.info(
            "SIP worker %d started (pid %d) for port %d",
            worker.spec.index,
            worker.process.pid,
            worker.spec.sip_port,
        )

    async def _wait_ready(self, worker: _Worker) -> None:
        assert worker.ready is not None and worker.process is not None
        exited = asyncio.ensure_future(worker.process.wait())
        waiters: set[asyncio.Future[Any]] = {worker.ready, exited}
        try:
            done, _ = await asyncio.wait(
                waiters,
                timeout=READY_TIMEOUT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            exited.cancel()
        if worker.ready in done and not worker.ready.cancelled():
            worker.up = True
            return
        if worker.process.returncode is None and worker.ready.cancelled():
            with contextlib.suppress(TimeoutError):  # EOF came first; the exit code follows
                await asyncio.wait_for(worker.process.wait(), 5.0)
        where = f"{worker.spec.host}:{worker.spec.sip_port}"
        code = worker.process.returncode
        if code is not None:
            raise TransportError(
                start_failure(worker.spec.host, worker.spec.sip_port, code), retryable=False
            )
        raise TransportError(
            f"SIP worker {worker.spec.index} for {where} did not start within {READY_TIMEOUT_S} s"
        )

    async def _supervise(self, worker: _Worker) -> None:
        """Wait for the worker to exit; close its calls; start it again unless stopping."""
        while not self._closing:
            assert worker.process is not None
            code = await worker.process.wait()
            worker.up = False
            if self._closing:
                return
            cause = exit_cause(code)
            worker.crashes.append((time.monotonic(), cause))
            self.health.crashes[(f"sip-worker-{worker.spec.index}", cause)] += 1
            delay = RESTART_DELAYS_S[min(worker.restarts, len(RESTART_DELAYS_S) - 1)]
            logger.error(
                "SIP worker %d (pid %d) %s; its %d call(s) end as worker-crashed, the calls of "
                "other workers go on; restarting it in %.1f s%s",
                worker.spec.index,
                worker.process.pid,
                cause,
                len(worker.calls),
                delay,
                " (it keeps crashing: /ready answers 503)" if self.problem() else "",
            )
            self._worker_gone(worker, EndCause.WORKER_CRASHED)
            worker.restarts += 1
            await asyncio.sleep(delay)
            if self._closing:
                return
            await self._spawn(worker)
            try:
                await self._wait_ready(worker)
            except TransportError as exc:
                logger.error("%s; trying again", exc)
                continue
            worker.restarts = 0
            self._send(worker, wire.Admission(self._asr_full))
            logger.info("SIP worker %d is back on port %d", worker.spec.index, worker.spec.sip_port)

    async def _stop_process(self, worker: _Worker) -> None:
        process = worker.process
        if process is None or process.returncode is not None:
            return
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            return
        except TimeoutError:
            logger.warning("SIP worker %d did not stop; terminating it", worker.spec.index)
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 3.0)
        except TimeoutError:
            process.kill()
            await process.wait()

    def _send(self, worker: _Worker, message: wire.Message) -> None:
        if worker.sock is None:
            return
        try:
            worker.sock.send(wire.encode(message))
        except OSError as exc:
            logger.debug("SIP worker %d: cannot send %s: %s", worker.spec.index, message, exc)

    def _worker_gone(self, worker: _Worker, cause: str) -> None:
        if worker.sock is not None:
            asyncio.get_running_loop().remove_reader(worker.sock.fileno())
            worker.sock.close()
            worker.sock = None
        if worker.ready is not None and not worker.ready.done():
            worker.ready.cancel()
        for call in list(worker.calls.values()):
            call.end(cause, f"worker {worker.spec.index} exited")
        worker.calls.clear()
        worker.legs.clear()

    # -- messages from the workers (on the loop, synchronous) -----------------------------------

    def _on_readable(self, worker: _Worker) -> None:
        sock = worker.sock
        if sock is None:
            return
        for _ in range(MAX_MESSAGES_PER_READ):
            try:
                data = sock.recv(wire.MAX_MESSAGE_BYTES)
            except BlockingIOError:
                return
            except OSError as exc:
                logger.warning("SIP worker %d: socket failed: %s", worker.spec.index, exc)
                data = b""
            if not data:  # EOF: the worker exited (the supervisor restarts it)
                gone = EndCause.BRIDGE_STOPPING if self._closing else EndCause.WORKER_CRASHED
                self._worker_gone(worker, gone)
                return
            try:
                message = wire.decode(data)
            except RemoteProtocolError as exc:
                logger.error("SIP worker %d: %s", worker.spec.index, exc)
                continue
            self._receive(worker, message)

    def _receive(self, worker: _Worker, message: wire.Message) -> None:
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
            state = _Leg(message)
            worker.legs[message.key] = (owner, state)
            owner.legs.append(state)
            owner.wake.set()
        elif isinstance(message, wire.Event):
            owner = worker.calls.get(message.key)
            if owner is not None:
                owner.events.append(message)
                owner.wake.set()
        elif isinstance(message, wire.CallStarted):
            call = _Call(worker.spec.index, message, self._new_call(message))
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

    def _feed(self, call: _Call, leg: Leg, frame: wire.Frame) -> None:
        try:
            leg.receive_frame(frame.pcm, position=frame.position)
        except (BridgeError, ValueError) as exc:
            logger.warning("call %s: frame refused: %s", call.started.sip_call_id, exc)

    def _put_dtmf(self, call: _Call, leg: Leg, dtmf: wire.Dtmf) -> None:
        """A digit on the leg's clock (its start): ``digit=5 method=rfc4733 duration_ms=160``
        (``duration_ms=0``: its end was never seen)."""
        detail = f"digit={dtmf.digit} method={dtmf.method} duration_ms={dtmf.duration_ms}"
        at_ms = dtmf.position * 1000 // leg.audio.in_rate_hz
        # Keyed digits are often card numbers: which one is logged at DEBUG only.
        logger.info("call %s: DTMF digit (%s)", call.started.sip_call_id, dtmf.method)
        logger.debug("call %s: DTMF %s", call.started.sip_call_id, detail)
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

    async def _run_call(self, call: _Call) -> None:
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

    async def _start_leg(self, call: _Call, state: _Leg, log_id: str) -> None:
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
    endpoint: AsrEndpoint,
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
