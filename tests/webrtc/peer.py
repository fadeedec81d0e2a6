"""A WHIP client on aiortc, for the integration tests and ``benchmarks/bench_webrtc.py``.

It is a real peer (DTLS-SRTP, ICE, Opus or G.711 encoding by aiortc), not a mock: the bridge
cannot tell it from any other WHIP encoder.  What it sends is a :class:`PcmTrack`: 16-bit PCM
paced in real time in 20 ms frames (a microphone), then silence.  Helpers take the offer apart
for trickle ICE (RFC 9725 §4.3.2): candidates out of the POST, into a PATCH fragment.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field

import av
import numpy as np
import numpy.typing as npt
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

FRAME_MS = 20


class PcmTrack(MediaStreamTrack):
    """``pcm`` (int16, mono) at ``rate_hz`` as a live microphone: one 20 ms frame per 20 ms,
    stereo if ``channels`` is 2 (what a browser gives Opus), then silence until stopped.

    ``started_ns``: ``time.monotonic_ns()`` when the first frame was handed to the encoder;
    frame ``k`` is handed over at ``started_ns + k * 20 ms`` (``sent_ns`` keeps every time).
    """

    kind = "audio"

    def __init__(
        self, pcm: npt.NDArray[np.int16], *, rate_hz: int = 48_000, channels: int = 2
    ) -> None:
        super().__init__()
        self.pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        self.rate_hz = rate_hz
        self.channels = channels
        self.samples = rate_hz * FRAME_MS // 1000
        self.sent_ns: list[int] = []
        self.started_ns: int | None = None
        self._k = 0

    @property
    def audio_done(self) -> bool:
        return self._k * self.samples >= len(self.pcm)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.started_ns is None:
            self.started_ns = time.monotonic_ns()
        due_ns = self.started_ns + self._k * FRAME_MS * 1_000_000
        wait_ns = due_ns - time.monotonic_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        start = self._k * self.samples
        chunk = self.pcm[start : start + self.samples]
        if len(chunk) < self.samples:
            chunk = np.concatenate([chunk, np.zeros(self.samples - len(chunk), np.int16)])
        data = np.repeat(chunk, self.channels) if self.channels == 2 else chunk
        frame = av.AudioFrame.from_ndarray(
            data.reshape(1, -1), format="s16", layout="stereo" if self.channels == 2 else "mono"
        )
        frame.sample_rate = self.rate_hz
        frame.pts = start
        frame.time_base = fractions.Fraction(1, self.rate_hz)
        self.sent_ns.append(time.monotonic_ns())
        self._k += 1
        return frame


def tone(seconds: float, *, rate_hz: int = 48_000, lead_s: float = 0.5) -> npt.NDArray[np.int16]:
    """A -14 dBFS 440 Hz tone after ``lead_s`` of silence."""
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    pcm = (0.2 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    pcm[: int(lead_s * rate_hz)] = 0
    return pcm


async def sendonly_offer(
    pc: RTCPeerConnection, track: MediaStreamTrack, *, codec: str | None = None
) -> str:
    """Add ``track`` sendonly, optionally offering only ``codec`` ("PCMU", "opus"); gather all
    candidates (aiortc always does) and return the offer SDP."""
    transceiver = pc.addTransceiver(track, direction="sendonly")
    if codec is not None:
        wanted = [
            c
            for c in RTCRtpSender.getCapabilities("audio").codecs
            if c.mimeType.lower() == f"audio/{codec.lower()}"
        ]
        assert wanted, f"aiortc has no {codec} encoder"
        transceiver.setCodecPreferences(wanted)
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


@dataclass
class SplitOffer:
    """An offer without its candidates, and what a trickle PATCH needs to send them."""

    sdp: str  # no a=candidate, no a=end-of-candidates
    mid: str
    ufrag: str
    pwd: str
    candidates: list[str] = field(default_factory=list)  # values of a=candidate:


def split_candidates(sdp: str) -> SplitOffer:
    kept: list[str] = []
    mid = ufrag = pwd = ""
    candidates: list[str] = []
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("a=candidate:"):
            candidates.append(line[len("a=candidate:") :])
            continue
        if line == "a=end-of-candidates":
            continue
        if line.startswith("a=mid:") and not mid:
            mid = line[len("a=mid:") :]
        elif line.startswith("a=ice-ufrag:") and not ufrag:
            ufrag = line[len("a=ice-ufrag:") :]
        elif line.startswith("a=ice-pwd:") and not pwd:
            pwd = line[len("a=ice-pwd:") :]
        kept.append(line)
    return SplitOffer("\r\n".join(kept), mid, ufrag, pwd, candidates)


def sdpfrag(
    offer: SplitOffer, candidates: list[str], *, end: bool = False, ufrag: str | None = None
) -> str:
    """An ``application/trickle-ice-sdpfrag`` body (RFC 8840 §4.4; RFC 9725 §4.3.2's example)."""
    lines = [
        f"a=ice-ufrag:{ufrag or offer.ufrag}",
        f"a=ice-pwd:{offer.pwd if ufrag is None else 'R' * 24}",
        "m=audio 9 UDP/TLS/RTP/SAVPF 0",
        f"a=mid:{offer.mid}",
        *(f"a=candidate:{c}" for c in candidates),
    ]
    if end:
        lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def without_candidates(answer_sdp: str) -> str:
    """The answer with its candidates removed: the client cannot start checks by itself."""
    return split_candidates(answer_sdp).sdp
