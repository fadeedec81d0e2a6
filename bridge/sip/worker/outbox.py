"""The worker's end of its socket to the main process (:mod:`bridge.sip.wire`)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque

from bridge.sip import wire

logger = logging.getLogger("bridge.sip.worker")

CONTROL_WAIT_S = 2.0  # a control message waits this long for room in the socket buffer
DTMF_BACKLOG = 1000  # DTMF messages waiting for room in the socket (all calls)


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
