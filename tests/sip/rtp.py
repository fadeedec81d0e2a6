"""A plain RTP endpoint for SIP tests: sends G.711 paced at 20 ms, keeps what it receives.

sipp's ``rtp_stream`` can only feed the first ``m=audio`` of an answer (docs/test-peers.md §2) and
records nothing, so SIPREC (two streams) and B2BUA (audio both ways) tests put the media of their
sipp dialogs on these peers instead: the scenario's SDP names :attr:`RtpPeer.port`.
Stdlib + numpy; one thread per direction; stopped by :meth:`close`.
"""

from __future__ import annotations

import random
import re
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np

from bridge.core.g711 import decode_alaw, decode_ulaw
from tests.sip.sipp import free_port

RTP_HEADER = struct.Struct("!BBHII")
FRAME_BYTES = 160  # 20 ms of 8 kHz G.711


class RtpPeer:
    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.settimeout(0.1)
        self.received: list[tuple[int, bytes]] = []  # (payload type, payload)
        self.sent_packets = 0
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=self._receive, daemon=True)]
        self._threads[0].start()

    def send(self, dest_port: int, payload: bytes, pt: int = 0, *, delay_s: float = 0.0) -> None:
        """Stream ``payload`` (G.711 bytes) to 127.0.0.1:``dest_port`` in the background."""
        thread = threading.Thread(
            target=self._send, args=(dest_port, payload, pt, delay_s), daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def wait_sent(self, timeout_s: float = 60.0) -> None:
        for thread in self._threads[1:]:
            thread.join(timeout_s)

    def received_pcm(self, pt: int = 0) -> np.ndarray:
        """The received payloads of type ``pt`` decoded to 8 kHz PCM16, in arrival order."""
        decode = decode_ulaw if pt == 0 else decode_alaw
        data = b"".join(p for t, p in self.received if t == pt)
        return decode(data) if data else np.zeros(0, np.int16)

    def close(self) -> None:
        self._closed.set()
        for thread in self._threads:
            thread.join(5)
        self.sock.close()

    def _send(self, dest_port: int, payload: bytes, pt: int, delay_s: float) -> None:
        if self._closed.wait(delay_s):
            return
        ssrc, seq, ts = random.getrandbits(32), random.getrandbits(16), random.getrandbits(32)
        start = time.monotonic()
        for n, i in enumerate(range(0, len(payload) - FRAME_BYTES + 1, FRAME_BYTES)):
            marker = 0x80 if n == 0 else 0
            header = RTP_HEADER.pack(0x80, pt | marker, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            try:
                self.sock.sendto(header + payload[i : i + FRAME_BYTES], ("127.0.0.1", dest_port))
            except OSError:
                return
            self.sent_packets += 1
            seq, ts = seq + 1, ts + FRAME_BYTES
            pause = start + (n + 1) * 0.02 - time.monotonic()
            if self._closed.wait(max(0.0, pause)):
                return

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) > RTP_HEADER.size and data[0] >> 6 == 2:
                self.received.append((data[1] & 0x7F, data[RTP_HEADER.size :]))


def sdp_ports(messages_log: Path, first_line: str) -> list[int] | None:
    """The ``m=audio`` ports of the first message in sipp's trace that starts with
    ``first_line`` (e.g. ``SIP/2.0 200 OK`` or ``INVITE``), once it is there."""
    text = messages_log.read_text(errors="replace") if messages_log.exists() else ""
    for message in text.split("-----"):
        body = message.strip()
        lines = [line for line in body.splitlines() if line.strip()]
        start = next(
            (
                n
                for n, line in enumerate(lines)
                if re.match(r"^(SIP/2\.0 \d|[A-Z]+ \S+ SIP/2\.0)", line)
            ),
            None,
        )
        if start is not None and lines[start].startswith(first_line):
            ports = re.findall(r"^m=audio (\d+)", "\n".join(lines[start:]), re.M)
            if ports:
                return [int(p) for p in ports]
    return None
