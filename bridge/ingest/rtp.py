"""Asterisk ARI externalMedia over RTP: one UDP port per leg, placed on the leg clock.

An externalMedia channel (``POST /channels/externalMedia``, ``encapsulation=rtp``,
``transport=udp``) sends the audio of what it is bridged with as RTP to the ``external_host``
it was given, in the one ``format`` it was given: no SDP, "no negotiation".  The bridge opens a
UDP port for each leg before the channel is made, so a port *is* a leg and nothing has to be
guessed from source ports; the packets are placed by the SIP path's receiver
(:mod:`bridge.sip.rtp`: RTP timestamps on the leg clock, losses and stalls filled with silence,
RFC 4733 digits), and only the first permitted source a port hears is taken
(:class:`~bridge.sip.rtp.SourceLatch`).

With no SDP, Asterisk numbers a format by the first entry of its ``rtp_engine.c`` static
payload table: ``ulaw`` (PT 0), ``alaw`` (8), ``slin`` (10, 8 kHz) and ``slin16`` (118); slin is
L16, big-endian (RFC 3551 §4.5.11: "network byte order").  Another payload type is taken as the
format asked for (``StreamFormat.fallback``), RFC 4733 events (101) as digits, comfort noise
(13, 19) not at all.  ::

    ports = RtpPorts(host="10.0.0.5", permitted=lambda ip: ...)
    port = await ports.open(stream, "slin16")   # stream: a one-leg ForkStream
    port.address                                # -> external_host for Asterisk
    ...
    ports.close(port)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from bridge.core.sdp import PayloadFormat
from bridge.core.types import AudioEncoding, EndCause
from bridge.ingest.fork import ForkFormat, ForkStream
from bridge.sip.rtp import Address, Audio, Output, RtpReceiver, SourceLatch, StreamFormat

logger = logging.getLogger(__name__)

POLL_S: Final = 0.1  # how often silent ports move their leg clock on (RtpReceiver.poll)
EVENTS_PT: Final = 101  # Asterisk's static telephone-event payload type


@dataclass(frozen=True, slots=True)
class ExternalFormat:
    """An externalMedia ``format`` and what its RTP carries."""

    payload: PayloadFormat
    encoding: AudioEncoding

    @property
    def fork(self) -> ForkFormat:
        return ForkFormat(self.payload.rtp_clock_hz, self.encoding)


FORMATS: Final = {
    "ulaw": ExternalFormat(PayloadFormat(0, "PCMU", 8000), AudioEncoding.PCMU),
    "alaw": ExternalFormat(PayloadFormat(8, "PCMA", 8000), AudioEncoding.PCMA),
    "slin": ExternalFormat(PayloadFormat(10, "L16", 8000), AudioEncoding.L16),
    "slin16": ExternalFormat(PayloadFormat(118, "L16", 16000), AudioEncoding.L16),
}


class RtpPort(asyncio.DatagramProtocol):
    """One leg's UDP port: datagrams from the latched source to the leg."""

    def __init__(self, stream: ForkStream, fmt: ExternalFormat, latch: SourceLatch) -> None:
        self.stream = stream
        self.latch = latch
        self.receiver = RtpReceiver(
            StreamFormat(
                audio={fmt.payload.payload_type: fmt.payload},
                events=EVENTS_PT,
                events_clock_hz=fmt.payload.rtp_clock_hz,
                comfort_noise=frozenset({13, 19}),  # RFC 3389, and Asterisk's old CN type
                fallback=fmt.payload,
            ),
            opened_s=time.monotonic(),
        )
        self.transport: asyncio.DatagramTransport | None = None
        self.address: Address = ("", 0)
        self.errors = 0  # datagrams the leg refused (logged once)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.address = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        now = time.monotonic()
        if self.latch.accept((str(addr[0]), addr[1]), now):
            self.hand_over(self.receiver.receive_datagram(data, now))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable and the like
        self.stream.call.log.debug("RTP port %s: %s", self.address[1], exc)

    def poll(self, now: float) -> None:
        self.hand_over(self.receiver.poll(now))

    def hand_over(self, outputs: list[Output]) -> None:
        try:
            for out in outputs:
                if isinstance(out, Audio):  # its payload at its place (empty: time goes on)
                    self.stream.feed_at(out.payload, out.position)
                else:
                    self.stream.dtmf(out.digit)
        except Exception:  # one bad datagram must not end the port, nor reach the loop
            self.errors += 1
            if self.errors == 1:
                self.stream.call.log.exception("RTP port %s: a datagram failed", self.address[1])

    def counters(self) -> dict[str, int]:
        r = self.receiver
        return {
            "packets": r.packets,
            "lost": r.lost,
            "late": r.late,
            "invalid": r.invalid,
            "other sources": self.latch.foreign_source,
            "stalls": r.stalls,
            "refused by the leg": self.errors,
        }


class RtpPorts:
    """The externalMedia ports that are open, and the one task that polls them."""

    def __init__(self, *, host: str, permitted: Callable[[str], bool]) -> None:
        self.host = host
        self.permitted = permitted
        self._ports: set[RtpPort] = set()
        self.totals: Counter[str] = Counter()  # the counters of every port closed
        self._poller: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._ports)

    async def open(self, stream: ForkStream, fmt: ExternalFormat) -> RtpPort:
        """A UDP port on ``host`` (the system picks it) feeding ``stream``'s one leg."""
        loop = asyncio.get_running_loop()
        latch = SourceLatch(None, self.permitted)
        _, port = await loop.create_datagram_endpoint(
            lambda: RtpPort(stream, fmt, latch), local_addr=(self.host, 0)
        )
        self._ports.add(port)
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll())
        return port

    async def close(self, port: RtpPort, cause: EndCause) -> None:
        """The leg's channel is gone: the port closes and its stream leaves with ``cause``."""
        if port not in self._ports:
            return
        self._ports.discard(port)
        if port.transport is not None:
            port.transport.close()
        port.hand_over(port.receiver.close())  # a digit whose end never came
        counters = port.counters()
        self.totals.update(counters)
        shown = ", ".join(f"{n} {name}" for name, n in counters.items())
        port.stream.call.log.info("RTP from Asterisk: %s", shown)
        await port.stream.leave(cause)

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        for port in list(self._ports):
            await self.close(port, EndCause.SHUTDOWN)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            now = time.monotonic()
            for port in list(self._ports):
                try:
                    port.poll(now)
                except Exception:  # one leg's failure must not stop the others' clocks
                    port.stream.call.log.exception("RTP port %s: poll failed", port.address[1])
