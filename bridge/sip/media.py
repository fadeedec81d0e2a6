"""The RTP of ``direct`` and ``siprec`` calls, received on the worker's own sockets.

pjsua negotiates these calls' media as usual, but the answer it sends names a port pair of
this module instead of pjsua's (``BridgeCall.onCallSdpCreated``), so the caller's or the SRC's
RTP never enters pjsua's jitter buffer and conference clock: a transcription leg wants every
sample at its RTP timestamp as soon as it arrives, not a playout-smoothed timeline
(:mod:`bridge.sip.rtp`, which places the packets).  ``b2bua`` calls keep pjsua's media, which
must play each side's audio out to the other.

::

    caller's RTP --UDP--> RtpPorts (a bound even/odd pair, RFC 3550 §11)
      'rtp-in' thread: selector over every open pair, one per worker
        RtpReceiver.receive_datagram -> Audio   -> wire frame (G.711 as sent, G.722 decoded)
                                     -> Digit   -> wire.Dtmf (RFC 4733)
        every POLL_S: RtpReceiver.poll -> the leg clock moves on through holds and outages
      -> Outbox (the worker's socket to the main process), never waiting

Threads: pairs are bound and streams opened or closed by pjsua's ``pjsua_0`` thread; the
selector is only touched by the ``rtp-in`` thread (commands go through a deque and a wake-up
socket); one lock covers the open streams, so a stream that is closed hands over its last
digit before its call's ``CallEnded`` and sends nothing after it.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bridge.sip import wire
from bridge.sip.rtp import Address, Audio, Output, RtpReceiver, SourceLatch, StreamFormat

__all__ = ["G722Decoder", "MediaReceiver", "RtpPorts", "RtpStream"]

logger = logging.getLogger("bridge.sip.media")

POLL_S: Final = 0.02  # how often silent streams are polled (their stall fill)
READS_PER_WAKE: Final = 64  # datagrams read from one socket before the others get a turn
DATAGRAM_BYTES: Final = 2048  # an RTP packet of MAX_PACKET_MS of G.722 is 1612 bytes
SOCKET_BUFFER_BYTES: Final = 256 * 1024  # ~1 s of a G.711 stream's packets, with headroom
# Encodings the main process's LegAudio decodes itself (bridge.core.types.AudioEncoding).
PASSED_ON: Final = {"PCMU": "pcmu", "PCMA": "pcma"}


def _pjsua_library() -> ctypes.CDLL:
    import pjsua2._pjsua2 as native

    return ctypes.CDLL(native.__file__)  # already loaded: the same handle


class G722Decoder:
    """ITU-T G.722 at 64 kbit/s, decoded by pjmedia's decoder (exported by the pjsua2 wheel).

    ``g722_dec_decode`` returns samples at half of full scale; pjmedia's G.722 codec shifts
    them left by its ``pcm_shift`` (1, ``PJMEDIA_G722_DEFAULT_PCM_SHIFT``), and so does this
    (checked against FFmpeg's decoder in tests/sip/test_sip_media.py).
    """

    STATE_BYTES: Final = 4096  # sizeof(g722_dec_t) is well under 1 KiB
    PCM_SHIFT: Final = 1

    def __init__(self, max_bytes: int = DATAGRAM_BYTES) -> None:
        # numpy only once a G.722 call comes: it adds 12 MiB to a worker that has none.
        import numpy as np

        lib = _pjsua_library()
        self._decode = lib.g722_dec_decode
        self._decode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t),
        ]
        self._state = ctypes.create_string_buffer(self.STATE_BYTES)
        if lib.g722_dec_init(self._state) != 0:
            raise RuntimeError("g722_dec_init failed")
        self._out: Any = np.zeros(2 * max_bytes, dtype=np.int16)  # 2 samples per byte
        self._out_ptr = self._out.ctypes.data
        self._count = ctypes.c_size_t()
        self._count_ref = ctypes.byref(self._count)

    def decode(self, payload: bytes) -> bytes:
        """One packet's G.722 octets -> PCM16 (little-endian) at 16 kHz, 2 samples per octet."""
        n = len(payload)
        if 2 * n > self._out.size:
            raise ValueError(f"G.722 payload of {n} bytes is over {self._out.size // 2}")
        self._count.value = self._out.size
        if self._decode(self._state, payload, n, self._out_ptr, self._count_ref) != 0:
            raise ValueError("g722_dec_decode failed")
        pcm: bytes = (self._out[: self._count.value] << self.PCM_SHIFT).tobytes()
        return pcm


@dataclass(eq=False)
class RtpPorts:
    """A bound RTP/RTCP socket pair (RFC 3550 §11: RTP on an even port, RTCP on the next)."""

    port: int
    rtp: socket.socket
    rtcp: socket.socket

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


@dataclass(eq=False)
class RtpStream:
    """One leg's stream: where it is received, its receiver, and what is done to payloads."""

    key: int
    ports: RtpPorts
    receiver: RtpReceiver
    decode: Callable[[bytes], bytes] | None  # None: the payload goes on as it is (G.711)
    latch: SourceLatch
    dropped: int = 0  # frames that did not fit in the socket to the main process
    closed: bool = False

    @property
    def rate_hz(self) -> int:
        return self.receiver.rate_hz

    @property
    def position(self) -> int:
        """Where the leg is now (a SIP INFO digit is timed here)."""
        return self.receiver.position_at(time.monotonic())

    @property
    def packets(self) -> int:
        return self.receiver.packets


class MediaReceiver:
    """Every ``direct``/``siprec`` stream of one worker: port pairs, the ``rtp-in`` thread.

    ``send`` is the worker's non-blocking frame send (``Outbox.send``), ``send_soon`` its
    queueing send for digits (``Outbox.send_soon``).  Overflow rule: a frame that does not fit
    in the socket to the main process is dropped and counted; its samples become silence on
    the leg (the next frame's position says where it starts).
    """

    def __init__(
        self,
        host: str,
        ports: range,
        send: Callable[[bytes], object],
        send_soon: Callable[[wire.Message], object],
    ) -> None:
        self.host = host
        self.ports = ports
        self._send = send
        self._send_soon = send_soon
        self._in_use: set[int] = set()
        self._streams: dict[int, RtpStream] = {}  # key -> open stream (under _lock)
        self._lock = threading.Lock()
        self._commands: deque[tuple[str, RtpStream]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="rtp-in", daemon=True)

    # -- pjsua_0 thread ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def bind(self) -> RtpPorts | None:
        """A free even/odd pair of :attr:`ports`, bound on :attr:`host`; ``None`` if none is."""
        first = self.ports.start + self.ports.start % 2
        for port in range(first, self.ports.stop - 1, 2):
            if port in self._in_use:
                continue
            pair = _bind_pair(self.host, port)
            if pair is not None:
                self._in_use.add(port)
                return pair
        return None

    def release(self, ports: RtpPorts) -> None:
        """Close a pair that no stream was opened on."""
        ports.close()
        self._in_use.discard(ports.port)

    def open(
        self, key: int, ports: RtpPorts, fmt: StreamFormat, latch: SourceLatch
    ) -> tuple[RtpStream, str]:
        """Start receiving leg ``key`` on ``ports``; returns the encoding of its frames
        (``pcmu``, ``pcma`` or ``pcm16``: AudioEncoding values).  ``fmt`` names one codec, the
        negotiated one: like pjmedia's stream, packets of the answer's other codecs are dropped
        (counted as ``foreign``); ``latch`` says whose packets are taken at all."""
        if len(fmt.encodings) != 1:
            raise ValueError(f"one codec per stream, got {sorted(fmt.encodings)}")
        [encoding] = fmt.encodings
        passed = PASSED_ON.get(encoding)
        decode = None if passed is not None else G722Decoder().decode
        receiver = RtpReceiver(fmt, opened_s=time.monotonic())
        stream = RtpStream(key, ports, receiver, decode, latch)
        with self._lock:
            self._streams[key] = stream
        self._command("open", stream)
        return stream, passed or "pcm16"

    @staticmethod
    def same_codec(stream: RtpStream, fmt: StreamFormat) -> bool:
        """Whether ``fmt`` (a re-offer's) carries the codec the stream's leg was opened with."""
        return fmt.encodings == stream.receiver.format.encodings

    def update(self, stream: RtpStream, fmt: StreamFormat, expected: Address | None) -> None:
        """A re-offer renumbered the stream's payload types (:meth:`same_codec`), or moved it."""
        with self._lock:
            stream.receiver.update_format(fmt)
            stream.latch.expect(expected)

    def close(self, stream: RtpStream, *, keep_ports: bool = False) -> None:
        """Stop a leg's stream: its open digit is handed over now, nothing of it after this.
        ``keep_ports``: the pair stays bound, for the leg that :meth:`open` starts on it next
        (a re-offer changed the codec: one leg has one encoding and rate)."""
        with self._lock:
            if self._streams.pop(stream.key, None) is None:
                return
            stream.closed = True
            self._hand_over(stream, stream.receiver.close())
        self._command("pause" if keep_ports else "close", stream)

    def stop(self) -> None:
        """Close every stream and stop the thread (the worker is shutting down)."""
        for stream in list(self._streams.values()):
            self.close(stream)
        self._stop = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _command(self, what: str, stream: RtpStream) -> None:
        self._commands.append((what, stream))
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (the buffer holds a wake-up), or stopping

    # -- rtp-in thread -------------------------------------------------------------------------

    def _run(self) -> None:
        next_poll = time.monotonic() + POLL_S
        while not self._stop:
            try:
                ready = self._selector.select(timeout=POLL_S)
                now = time.monotonic()
                for key, _ in ready:
                    if isinstance(key.data, RtpStream):
                        self._read(key.data, now)
                    else:  # the wake-up socket, or RTCP: the leg clock needs only RTP
                        _discard(key.fileobj)  # type: ignore[arg-type]
                self._run_commands()
                if now >= next_poll:
                    next_poll = now + POLL_S
                    self._poll(now)
            except Exception:  # the thread must outlive any one stream's trouble
                logger.exception("RTP receive loop")
        self._run_commands()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run_commands(self) -> None:
        while self._commands:
            what, stream = self._commands.popleft()
            ports = stream.ports
            if what == "open":
                if not stream.closed:
                    self._selector.register(ports.rtp, selectors.EVENT_READ, stream)
                    self._selector.register(ports.rtcp, selectors.EVENT_READ, _RTCP)
                continue
            for sock in (ports.rtp, ports.rtcp):
                try:
                    self._selector.unregister(sock)
                except (KeyError, ValueError):
                    pass  # closed before its open command ran
            if what == "close":
                ports.close()
                self._in_use.discard(ports.port)

    def _read(self, stream: RtpStream, now: float) -> None:
        sock = stream.ports.rtp
        latch = stream.latch
        for _ in range(READS_PER_WAKE):
            if stream.closed:  # its ports may be the next leg's (a codec change): leave the
                return  # datagram for that leg's stream, registered by the commands below
            try:
                data, source = sock.recvfrom(DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP port unreachable reported on a later recv
                if exc.errno not in (errno.ECONNREFUSED, errno.EBADF):
                    logger.warning("leg %d: RTP socket: %s", stream.key, exc)
                break
            if not latch.accept(source[:2], now):
                if latch.foreign_source == 1:  # once per stream; the count goes in CallEnded
                    logger.warning(
                        "leg %d: RTP from %s:%d dropped: the stream takes %s:%d's",
                        stream.key,
                        *source[:2],
                        *(latch.latched or ("?", 0)),
                    )
                continue
            with self._lock:
                if stream.closed:
                    return
                self._hand_over(stream, stream.receiver.receive_datagram(data, now))

    def _poll(self, now: float) -> None:
        with self._lock:
            for stream in self._streams.values():
                out = stream.receiver.poll(now)
                if out:
                    self._hand_over(stream, out)

    def _hand_over(self, stream: RtpStream, outputs: list[Output]) -> None:
        """Each output of the receiver to the main process (under ``_lock``)."""
        for out in outputs:
            if isinstance(out, Audio):
                payload = out.payload
                if payload and stream.decode is not None:
                    try:
                        payload = stream.decode(payload)
                    except ValueError as exc:
                        logger.warning("leg %d: packet not decoded: %s", stream.key, exc)
                        continue
                frame = _FRAME_HEADER(wire.KIND_FRAME, stream.key, out.position & 0xFFFFFFFF)
                try:
                    self._send(frame + payload)
                except BlockingIOError:
                    stream.dropped += 1
                except OSError:
                    return  # the main process is gone; the worker's loop notices
            else:  # an RFC 4733 digit, timed at its start
                self._send_soon(
                    wire.Dtmf(stream.key, out.digit, "rfc4733", out.duration_ms, out.position)
                )


_FRAME_HEADER: Final = wire.FRAME_HEADER.pack
_RTCP: Final = object()  # selector data of an RTCP socket


def _discard(sock: socket.socket) -> None:
    """Read and drop what is waiting on ``sock``."""
    try:
        for _ in range(READS_PER_WAKE):
            sock.recv(DATAGRAM_BYTES)
    except OSError:
        pass  # empty (BlockingIOError), or an ICMP error reported on the socket


def _bind_pair(host: str, port: int) -> RtpPorts | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for p in (port, port + 1):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
            sock.bind((host, p))
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        return None
    return RtpPorts(port, socks[0], socks[1])
