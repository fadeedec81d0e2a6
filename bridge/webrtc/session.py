"""WHIP sessions on aiortc: one ``RTCPeerConnection`` per session, one leg per audio track.

Thin adapter (design.md §5): the offer was checked by :mod:`bridge.webrtc.offer`; here aiortc
negotiates, decodes (Opus -> 48 kHz s16, usually stereo; G.711 -> 8 kHz mono) and each track's
task copies frames into its :class:`~bridge.leg.Leg` (downmix to mono, position from ``pts``).
``recv()`` runs on the event loop thread, so no hand-off is needed.

ICE: aiortc gathers all of its own candidates before the answer is sent (the server never
trickles, as RFC 9725 §4.3.2 requires); the client may trickle its candidates later with PATCH
(:mod:`bridge.webrtc.trickle` checks them, :meth:`WhipSession.add_remote` hands them to aiortc).
aioice keeps checking for as long as the client has not signalled end-of-candidates, so an offer
without candidates waits for them (bounded by ``connect_timeout_s``).

A session ends once, with a cause stored on the call:

* ``whip-delete``   the client DELETEd the session URL (RFC 9725 §4.2)
* ``ice-failed``    the connection state went ``failed``, or no media arrived in time
* ``disconnected``  media stopped for ``media_timeout_s`` (a killed browser sends nothing)
* ``peer-closed``   the peer closed DTLS (the track ended)
* ``shutdown``      the bridge stops
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from bridge.asr.pool import AsrTarget
from bridge.call import Call
from bridge.core.audio import LegAudio, downmix
from bridge.core.types import AudioEncoding, EndCause, LegRole, LegSource
from bridge.leg import Leg, LegSettings
from bridge.live import LiveHub
from bridge.live.tee import PublishingStore
from bridge.log import LegLogger, leg_logger
from storage import TranscriptStore

from .clock import PtsClock
from .offer import Offer, advertise_public_address, keep_candidates
from .trickle import MAX_REMOTE_CANDIDATES, TricklePatch

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class WhipSettings:
    """Limits and timeouts of WHIP ingest."""

    max_sessions: int = 16  # more POSTs get 503 + Retry-After
    roles: tuple[LegRole, ...] = (LegRole.AGENT, LegRole.CUSTOMER)  # by track order
    connect_timeout_s: float = 15.0  # first audio frame must arrive within this
    media_timeout_s: float = 10.0  # no frame for this long: the peer is gone
    finish_timeout_s: float = 30.0  # per leg, for the last text after the end
    max_jump_ms: int = 5000  # larger RTP timestamp jumps rebase the leg clock
    loopback_only: bool = False  # tests: use only 127.0.0.1 candidates of the offer
    # STUN/TURN servers for aiortc's candidates: (urls, username, credential).
    ice_servers: tuple[tuple[tuple[str, ...], str | None, str | None], ...] = ()
    public_address: str | None = None  # 1:1 NAT: also offer the host candidates on this IP


def peer_configuration(settings: WhipSettings) -> RTCConfiguration:
    """aiortc's configuration: the ICE servers to gather reflexive/relay candidates from."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=list(urls), username=username, credential=credential)
            for urls, username, credential in settings.ice_servers
        ]
    )


class WhipSession:
    """One WHIP resource: a peer connection, its call and legs."""

    def __init__(
        self,
        *,
        session_id: str,
        pc: RTCPeerConnection,
        tee: PublishingStore,
        endpoint: AsrTarget,
        leg_settings: LegSettings,
        settings: WhipSettings,
        hub: LiveHub,
        roles: Sequence[LegRole],
        title: str,
        offer: Offer,
    ) -> None:
        self.session_id = session_id
        self.offer = offer
        # RFC 9725 §4.3.1: a strong entity-tag for the ICE session, sent as ETag in the 201.
        # There are no ICE restarts, so it never changes.
        self.etag = f'"{uuid.uuid4().hex}"'
        self.remote_candidates = 0  # added by PATCH, at most MAX_REMOTE_CANDIDATES
        self.call = Call.new(
            LegSource.WEBRTC,
            tee,
            endpoint=endpoint,
            title=title,
            settings=leg_settings,
            listener=hub.listener,
        )
        self.call_id = self.call.call_id
        self.pc = pc
        self.tee = tee
        self.endpoint = endpoint
        self.leg_settings = leg_settings
        self.settings = settings
        self.hub = hub
        self.roles = tuple(roles)
        self.title = title
        self.answer_sdp = ""
        self.cause: str | None = None
        self.ended = asyncio.Event()
        self._tracks: list[MediaStreamTrack] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None
        self.log = leg_logger(logger, self.call_id, "-", "whip")

    # -- setup ---------------------------------------------------------------------------------

    async def negotiate(self, offer_sdp: str) -> str:
        """Offer in, answer out (aiortc gathers all its candidates first: no server trickle)."""

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._tracks.append(track)

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            state = self.pc.connectionState
            self.log.debug("connection state %s", state)
            if state == "failed":
                self.end(EndCause.ICE_FAILED)

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.answer_sdp = self.pc.localDescription.sdp
        if self.settings.public_address:
            self.answer_sdp = advertise_public_address(
                self.answer_sdp, self.settings.public_address
            )
        return self.answer_sdp

    @property
    def legs(self) -> list[Leg]:
        return self.call.legs

    async def start(self) -> None:
        """Store the call and start one task per audio track."""
        await self.call.open()
        self.log.info("WHIP session %s: %d audio track(s)", self.session_id, len(self._tracks))
        for n, track in enumerate(self._tracks):
            role = self.roles[n] if n < len(self.roles) else LegRole.UNKNOWN
            task = asyncio.create_task(self._consume(track, role, n), name=f"whip-{n}")
            self._tasks.append(task)

    @property
    def candidate_room(self) -> int:
        """How many more remote candidates a PATCH may add."""
        return max(0, MAX_REMOTE_CANDIDATES - self.remote_candidates)

    async def add_remote(self, patch: TricklePatch) -> None:
        """Hand trickled candidates (and end-of-candidates) to aiortc's ICE agent."""
        for remote in patch.candidates:
            candidate = candidate_from_sdp(remote.candidate)
            candidate.sdpMid = remote.mid
            await self.pc.addIceCandidate(candidate)
        self.remote_candidates += len(patch.candidates)
        if patch.end_of_candidates:
            await self.pc.addIceCandidate(None)
        self.log.debug(
            "PATCH: %d remote candidate(s) added, %d discarded%s",
            len(patch.candidates),
            patch.discarded,
            ", end of candidates" if patch.end_of_candidates else "",
        )

    # -- media ---------------------------------------------------------------------------------

    async def _consume(self, track: MediaStreamTrack, role: LegRole, n: int) -> None:
        leg: Leg | None = None
        clock: PtsClock | None = None
        log: LegLogger = self.log
        while True:
            wait_s = self.settings.media_timeout_s if leg else self.settings.connect_timeout_s
            try:
                async with asyncio.timeout(wait_s):
                    frame = await track.recv()
            except TimeoutError:
                cause = EndCause.DISCONNECTED if leg else EndCause.ICE_FAILED
                log.info("no audio for %.1f s on track %d: ending (%s)", wait_s, n, cause)
                self.end(cause)
                return
            except MediaStreamError:
                log.info("track %d ended by the peer", n)
                self.end(EndCause.PEER_CLOSED)
                return
            frame_any = cast(Any, frame)
            rate_hz = int(frame_any.sample_rate)
            if leg is None:
                leg = await self._open_leg(role, n, rate_hz, frame_any)
                log = leg.log
                clock = PtsClock(max_jump_samples=self.settings.max_jump_ms * rate_hz // 1000)
            channels = len(frame_any.layout.channels)
            pcm = np.ascontiguousarray(frame_any.to_ndarray(), dtype=np.int16).reshape(-1)
            mono = downmix(pcm, channels)
            assert clock is not None
            position = clock.position(frame_any.pts, leg.audio.next_position)
            leg.receive_frame(mono.tobytes(), position=position)

    async def _open_leg(self, role: LegRole, n: int, rate_hz: int, frame: Any) -> Leg:
        codec = self._codec_name(n) or f"pcm16/{rate_hz}"
        leg = await self.call.add_leg(
            role, f"WebRTC track {n + 1}", codec, LegAudio(rate_hz, AudioEncoding.PCM16)
        )
        leg.log.info("leg started: %s, %s, first frame %s", role.value, codec, frame.format.name)
        return leg

    def _codec_name(self, n: int) -> str | None:
        with contextlib.suppress(Exception):  # aiortc internals: best effort, for labels
            receivers = [r for r in self.pc.getReceivers() if r.track.kind == "audio"]
            codecs = receivers[n]._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
            for codec in codecs.values():
                if codec.name.lower() in ("opus", "pcmu", "pcma"):
                    return f"{codec.name.lower()}/{codec.clockRate}"
        return None

    # -- ending --------------------------------------------------------------------------------

    def end(self, cause: str) -> None:
        """End the session once (later causes are ignored); returns at once."""
        if self._closing is None:
            self.cause = cause
            self._closing = asyncio.create_task(self._close(cause), name="whip-close")

    async def close(self, cause: str) -> None:
        self.end(cause)
        assert self._closing is not None
        await asyncio.shield(self._closing)

    async def _close(self, cause: str) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in self._tasks if t is not current), return_exceptions=True)
        with contextlib.suppress(Exception):  # aiortc teardown errors must not keep the call open
            await self.pc.close()
        await self.call.close(cause, finish_timeout_s=self.settings.finish_timeout_s)
        self.log.info("WHIP session %s ended: %s", self.session_id, cause)
        self.ended.set()


class WhipSessions:
    """The WHIP sessions of this bridge, at most ``settings.max_sessions`` at once."""

    def __init__(
        self,
        *,
        store: TranscriptStore,
        hub: LiveHub,
        endpoint: AsrTarget,
        leg_settings: LegSettings,
        settings: WhipSettings | None = None,
        on_call_ended: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.endpoint = endpoint
        self.leg_settings = leg_settings
        self.settings = settings or WhipSettings()
        self.on_call_ended = on_call_ended
        self.sessions: dict[str, WhipSession] = {}
        self._opening = 0
        self._watchers: set[asyncio.Task[None]] = set()

    @property
    def full(self) -> bool:
        return len(self.sessions) + self._opening >= self.settings.max_sessions

    def get(self, session_id: str) -> WhipSession | None:
        return self.sessions.get(session_id)

    async def open(
        self,
        offer_sdp: str,
        offer: Offer,
        *,
        agent: str | None,
        title: str,
        roles: Sequence[LegRole] | None = None,
    ) -> WhipSession:
        """Negotiate and start; raises ``ValueError`` if aiortc cannot answer the offer."""
        self._opening += 1
        try:
            tee = PublishingStore(
                self.store, self.hub, agent=agent, on_call_ended=self.on_call_ended
            )
            session = WhipSession(
                session_id=uuid.uuid4().hex,
                pc=RTCPeerConnection(peer_configuration(self.settings)),
                tee=tee,
                endpoint=self.endpoint,
                leg_settings=self.leg_settings,
                settings=self.settings,
                hub=self.hub,
                roles=roles or self.settings.roles,
                title=title or f"WebRTC ({len(offer.tracks)} track(s))",
                offer=offer,
            )
            sdp = keep_candidates(offer_sdp, loopback_only=self.settings.loopback_only)
            try:
                await session.negotiate(sdp)
                await session.start()
            except BaseException:
                await session.pc.close()
                raise
        finally:
            self._opening -= 1
        self.sessions[session.session_id] = session
        task = asyncio.create_task(self._forget(session), name="whip-forget")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return session

    async def _forget(self, session: WhipSession) -> None:
        await session.ended.wait()
        self.sessions.pop(session.session_id, None)

    async def close_all(self, cause: str = EndCause.SHUTDOWN) -> None:
        await asyncio.gather(
            *(s.close(cause) for s in list(self.sessions.values())), return_exceptions=True
        )
        await asyncio.gather(*self._watchers, return_exceptions=True)
