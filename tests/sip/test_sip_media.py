"""The worker's own RTP receive path (bridge.sip.media) on real UDP sockets, and its G.722
decoder against FFmpeg's."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import av
import numpy as np
import pytest

from bridge.sip import wire
from bridge.sip.media import G722Decoder, MediaReceiver
from bridge.sip.offer import PayloadFormat
from bridge.sip.rtp import SourceLatch, StreamFormat
from tests.sip.sipp import free_port_block

PCMU = StreamFormat.from_formats(
    (PayloadFormat(0, "PCMU", 8000), PayloadFormat(101, "TELEPHONE-EVENT", 8000))
)
G722 = StreamFormat.from_formats((PayloadFormat(9, "G722", 8000),))


def any_source() -> SourceLatch:
    """These tests send from 127.0.0.1 sockets of their own: every source is taken."""
    return SourceLatch(None, lambda ip: True)


def packet(seq: int, ts: int, payload: bytes, pt: int = 0, ssrc: int = 0x5EED) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + payload


def next_audio(main: socket.socket, within_s: float = 5.0) -> wire.Message:
    """The next message that is not a stall (an empty frame: the clock moved on meanwhile);
    fails after ``within_s`` (stalls keep coming while a stream waits for its packets)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        message = wire.decode(main.recv(4096))
        if not (isinstance(message, wire.Frame) and message.pcm == b""):
            return message
    raise AssertionError(f"no audio frame within {within_s} s, only stalls")


def g722_encode(pcm: np.ndarray) -> bytes:
    """FFmpeg's G.722 encoder (PyAV, which aiortc brings)."""
    enc = av.CodecContext.create("g722", "w")
    enc.sample_rate, enc.layout, enc.format = 16000, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 16000
    return b"".join(bytes(p) for p in [*enc.encode(frame), *enc.encode(None)])


def test_g722_decoder_matches_ffmpeg_at_full_scale() -> None:
    """pjmedia's decoder returns half scale; with its pcm_shift of 1 it matches FFmpeg's."""
    t = np.arange(16000) / 16000
    pcm = (10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    data = g722_encode(pcm)
    assert len(data) == 8000  # 64 kbit/s
    ffmpeg = av.CodecContext.create("g722", "r")
    ffmpeg.sample_rate, ffmpeg.layout = 16000, "mono"
    reference = np.concatenate([f.to_ndarray().ravel() for f in ffmpeg.decode(av.Packet(data))])
    decoder = G722Decoder()
    ours = np.concatenate(
        [np.frombuffer(decoder.decode(data[i : i + 160]), np.int16) for i in range(0, 8000, 160)]
    )
    assert ours.size == 16000
    n = min(ours.size, reference.size)
    assert np.abs(ours[:n].astype(int) - reference[:n]).max() <= 2
    assert 9500 < np.abs(ours[1000:]).max() < 10500


def test_g722_decoder_refuses_an_oversized_payload() -> None:
    with pytest.raises(ValueError, match="over"):
        G722Decoder(max_bytes=160).decode(bytes(161))


@pytest.fixture
def main_end() -> Iterator[tuple[socket.socket, MediaReceiver]]:
    """A receiver on real UDP ports, handing over to a real SEQPACKET pair as the worker does."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    base = free_port_block(8)
    media = MediaReceiver(
        "127.0.0.1",
        range(base, base + 8),
        ours.send,
        lambda message: ours.send(wire.encode(message)),
    )
    media.start()
    theirs.settimeout(2.0)
    yield theirs, media
    media.stop()
    ours.close()
    theirs.close()


def test_packets_become_frames_at_their_timestamps(
    main_end: tuple[socket.socket, MediaReceiver],
) -> None:
    main, media = main_end
    ports = media.bind()
    assert ports is not None and ports.port % 2 == 0
    stream, encoding = media.open(7, ports, PCMU, any_source())
    assert encoding == "pcmu"  # G.711 goes on as it came; the leg decodes it
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", ports.port)
    sender.sendto(packet(1, 1000, b"\x11" * 160), target)
    first = next_audio(main)
    assert isinstance(first, wire.Frame) and (first.key, first.pcm) == (7, b"\x11" * 160)
    sender.sendto(packet(3, 1320, b"\x22" * 160), target)  # seq 2 lost
    sender.sendto(b"\x00garbage", target)
    sender.sendto(packet(4, 1480, bytes(4), pt=101), target)  # RFC 4733 '0', no end yet
    second = next_audio(main)
    assert isinstance(second, wire.Frame)
    assert second.position == first.position + 320  # the lost packet's 160 samples left open
    assert stream.receiver.lost == 1
    deadline = time.monotonic() + 2
    while stream.receiver.invalid < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (stream.packets, stream.receiver.invalid) == (3, 1)
    media.close(stream)  # the open digit is handed over before close returns
    digit = next_audio(main)
    assert isinstance(digit, wire.Dtmf)
    assert (digit.key, digit.digit, digit.method, digit.duration_ms) == (7, "0", "rfc4733", 0)
    sender.close()


def test_a_silent_stream_moves_the_leg_clock_on(
    main_end: tuple[socket.socket, MediaReceiver],
) -> None:
    """No packets (hold, an outage): empty frames move the leg on, never more than STALL_MS
    behind the wall clock."""
    main, media = main_end
    ports = media.bind()
    assert ports is not None
    opened = time.monotonic()
    stream, _ = media.open(3, ports, PCMU, any_source())
    frame = wire.decode(main.recv(4096))
    assert isinstance(frame, wire.Frame) and frame.pcm == b""
    behind = (time.monotonic() - opened) * 8000 - frame.position
    assert 0.2 * 8000 - 8 <= behind <= 0.4 * 8000  # 200 ms, plus the poll period and scheduling
    media.close(stream)


def test_g722_frames_are_decoded_in_the_worker(
    main_end: tuple[socket.socket, MediaReceiver],
) -> None:
    main, media = main_end
    ports = media.bind()
    assert ports is not None
    stream, encoding = media.open(5, ports, G722, any_source())
    assert (encoding, stream.rate_hz) == ("pcm16", 16000)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(packet(1, 0, bytes(160), pt=9), ("127.0.0.1", ports.port))
    frame = next_audio(main)
    assert isinstance(frame, wire.Frame) and len(frame.pcm) == 640  # 320 samples of PCM16
    media.close(stream)
    sender.close()


def test_pairs_are_even_and_not_handed_out_twice(
    main_end: tuple[socket.socket, MediaReceiver],
) -> None:
    _, media = main_end
    pairs = [media.bind() for _ in range(4)]
    assert all(p is not None for p in pairs)
    ports = [p.port for p in pairs if p is not None]
    assert len(set(ports)) == 4 and all(p % 2 == 0 for p in ports)
    assert media.bind() is None  # 8 ports: 4 pairs
    first = pairs[0]
    assert first is not None
    media.release(first)
    again = media.bind()
    assert again is not None and again.port == first.port


def test_a_codec_change_starts_a_new_leg_on_the_same_ports(
    main_end: tuple[socket.socket, MediaReceiver],
) -> None:
    """A re-offer from PCMU to G.722 (a transfer to a wideband phone): the first leg's stream
    closes with its ports kept, and the next leg receives the new codec on them."""
    main, media = main_end
    ports = media.bind()
    assert ports is not None
    first, _ = media.open(1, ports, PCMU, any_source())
    assert media.same_codec(first, PCMU) and not media.same_codec(first, G722)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", ports.port)
    sender.sendto(packet(1, 0, b"\x11" * 160), target)
    frame = next_audio(main)
    assert isinstance(frame, wire.Frame) and frame.key == 1
    media.close(first, keep_ports=True)
    second, encoding = media.open(2, ports, G722, any_source())
    assert encoding == "pcm16" and second.rate_hz == 16000
    sender.sendto(packet(2, 160, bytes(160), pt=9), target)
    frame = next_audio(main)
    assert isinstance(frame, wire.Frame) and (frame.key, len(frame.pcm)) == (2, 640)
    assert first.packets == 1 and second.packets == 1
    media.close(second)
    sender.close()


def test_a_closed_stream_leaves_its_ports_datagrams_to_the_next_leg(
    main_end: tuple[socket.socket, MediaReceiver],
) -> None:
    """The rtp-in thread may wake for a socket still registered to a stream that was just
    closed with its ports kept (a codec change); reading then would drop the next leg's first
    packet.  Forced here by the read the thread would have made."""
    main, media = main_end
    ports = media.bind()
    assert ports is not None
    first, _ = media.open(1, ports, PCMU, any_source())
    media.close(first, keep_ports=True)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(packet(1, 0, b"\x11" * 160), ("127.0.0.1", ports.port))
    time.sleep(0.05)  # it has arrived
    media._read(first, time.monotonic())
    second, _ = media.open(2, ports, PCMU, any_source())
    frame = next_audio(main)
    assert isinstance(frame, wire.Frame) and frame.key == 2 and frame.pcm == b"\x11" * 160
    assert second.packets == 1
    media.close(second)
    sender.close()
