"""The SIP worker processes, seen from the main process: started, watched, restarted, stopped.

Each worker (``python -m bridge.sip.worker --spec JSON --fd N``) talks to the main process over
one ``SOCK_SEQPACKET`` socket pair (:mod:`bridge.sip.wire`).  The supervisor owns the processes
and the sockets; what the messages mean is :mod:`bridge.sip.ingest`'s (``on_message``), and so
are the calls a worker had when it went (``on_gone``).  A worker that exits is started again
after :data:`RESTART_DELAYS_S`; :data:`CRASH_LOOP_COUNT` exits within
:data:`CRASH_LOOP_WINDOW_S` make ``/ready`` say SIP is down (:meth:`WorkerSupervisor.problem`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.core.types import EndCause
from bridge.errors import RemoteProtocolError, TransportError
from bridge.health import Health
from bridge.sip import wire
from bridge.sip.spec import PASSWORD_ENV, WorkerSpec

if TYPE_CHECKING:
    from bridge.sip.ingest import SipCall, SipLeg

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0  # a worker's start-up (pjsua init) on a loaded box
STOP_TIMEOUT_S = 10.0  # a worker's hang-up-and-exit after Quit
MAX_MESSAGES_PER_READ = 1000  # fairness: one read callback handles at most this many
RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # a worker that keeps dying is retried this often
CRASH_LOOP_WINDOW_S = 60.0  # this many crashes within the window: /ready says SIP is down
CRASH_LOOP_COUNT = 3
SOCKET_BUFFER_BYTES = 1 << 20


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
class WorkerProcess:
    """One worker: its process and socket, and the calls and legs it handed over."""

    spec: WorkerSpec
    process: asyncio.subprocess.Process | None = None
    sock: socket.socket | None = None
    ready: asyncio.Future[wire.Ready] | None = None
    calls: dict[int, SipCall] = field(default_factory=dict)  # by call key
    legs: dict[int, tuple[SipCall, SipLeg]] = field(default_factory=dict)  # by leg key
    restarts: int = 0
    crashes: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=16))
    up: bool = False  # listening (Ready received), not exited since


class WorkerSupervisor:
    """Starts the workers of ``specs``, restarts one that exits, stops them all."""

    def __init__(
        self,
        specs: list[WorkerSpec],
        *,
        on_message: Callable[[WorkerProcess, wire.Message], None],
        on_gone: Callable[[WorkerProcess, EndCause], None],
        on_restarted: Callable[[WorkerProcess], None],
        health: Health,
        auth_password: str | None = None,
        python: str = sys.executable,
        pj_log_level: int = 2,
    ) -> None:
        self.workers = [WorkerProcess(spec) for spec in specs]
        self.on_message, self.on_gone, self.on_restarted = on_message, on_gone, on_restarted
        self.health = health
        self.auth_password = auth_password
        self.python = python
        self.pj_log_level = pj_log_level
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start every worker and wait until each listens.

        Raises:
            TransportError: a worker could not start (e.g. its SIP port is taken).
        """
        for worker in self.workers:
            await self._spawn(worker)
        for worker in self.workers:
            await self._wait_ready(worker)
        self._tasks = [
            asyncio.create_task(self._supervise(w), name=f"sip-worker-{w.spec.index}")
            for w in self.workers
        ]

    async def close(self) -> None:
        """Ask every worker to hang up and exit; wait for them (killed if they do not)."""
        self._closing = True
        for worker in self.workers:
            self.send(worker, wire.Quit())
        for worker in self.workers:
            await self.stop_process(worker)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in self.workers:
            self.gone(worker, EndCause.BRIDGE_STOPPING)

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
                    f"(last: {recent[-1]}); see the ERROR lines of bridge.sip.supervisor"
                )
            elif not worker.up and worker.crashes:
                problems.append(f"{where} is restarting after {worker.crashes[-1][1]}")
            elif not worker.up:
                problems.append(f"{where} is starting")
        return "; ".join(problems) or None

    async def _spawn(self, worker: WorkerProcess) -> None:
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
                env={**os.environ, PASSWORD_ENV: self.auth_password or ""},
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

    async def _wait_ready(self, worker: WorkerProcess) -> None:
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

    async def _supervise(self, worker: WorkerProcess) -> None:
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
            self.gone(worker, EndCause.WORKER_CRASHED)
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
            self.on_restarted(worker)
            logger.info("SIP worker %d is back on port %d", worker.spec.index, worker.spec.sip_port)

    async def stop_process(self, worker: WorkerProcess) -> None:
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

    def send(self, worker: WorkerProcess, message: wire.Message) -> None:
        if worker.sock is None:
            return
        try:
            worker.sock.send(wire.encode(message))
        except OSError as exc:
            logger.debug("SIP worker %d: cannot send %s: %s", worker.spec.index, message, exc)

    def gone(self, worker: WorkerProcess, cause: EndCause) -> None:
        if worker.sock is not None:
            asyncio.get_running_loop().remove_reader(worker.sock.fileno())
            worker.sock.close()
            worker.sock = None
        if worker.ready is not None and not worker.ready.done():
            worker.ready.cancel()
        self.on_gone(worker, cause)

    def _on_readable(self, worker: WorkerProcess) -> None:
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
                self.gone(worker, gone)
                return
            try:
                message = wire.decode(data)
            except RemoteProtocolError as exc:
                logger.error("SIP worker %d: %s", worker.spec.index, exc)
                continue
            self.on_message(worker, message)
