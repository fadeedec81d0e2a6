"""A small ARI controller: each call of a Stasis application becomes two legs over RTP.

Asterisk's dialplan hands a channel to the application (``Stasis(bridge)``); the controller,
connected to ARI's events WebSocket, then taps it the way every open-source Asterisk
transcriber does (docs/media-forks.md §2.1), once per direction:

====================  ==========================================================================
``spy=in``            what the channel sends into Asterisk: its own party, the ``caller`` leg
``spy=out``           what Asterisk sends to it: the other party, the ``callee`` leg
====================  ==========================================================================

and per direction, with ids chosen here so the events of its own channels are known on sight:

1. a UDP port for the leg (:mod:`bridge.ingest.rtp`);
2. ``POST /bridges?type=mixing&bridgeId=…``;
3. ``POST /channels/{id}/snoop?spy=in|out&whisper=none&app=…&snoopId=…``;
4. ``POST /channels/externalMedia?app=…&external_host=<rtp_host>:<port>&format=…&
   encapsulation=rtp&transport=udp&connection_type=client&direction=both&channelId=…``;
5. ``POST /bridges/{bridgeId}/addChannel?channel=<snoop>,<externalMedia>``;

then ``POST /channels/{id}/continue``: the call goes on in the dialplan, the snoops stay on it.
A snoop channel ends when the channel it snoops hangs up (``StasisEnd``/``ChannelDestroyed`` of
the snoop): its leg ends ``hangup``, its externalMedia channel is hung up and its bridge
destroyed.  A call that cannot be tapped (ASR capacity full, an ARI error) still continues in
the dialplan, untranscribed, with a log line naming the channel and the reason.

The events socket is reconnected with a back-off when it drops; the REST calls and the
resources are those of Asterisk's published ARI schema (``rest-api/api-docs/*.json``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.typing import Subprotocol

from bridge.config.ingest import LOOPBACK, AriConfig, IpNetwork
from bridge.core.types import EndCause, LegRole, LegSource
from bridge.errors import RemoteProtocolError
from bridge.ingest.fork import ForkCalls, ForkRefused
from bridge.ingest.rtp import FORMATS, RtpPort, RtpPorts

logger = logging.getLogger(__name__)

DIRECTIONS: Final = ((LegRole.CALLER, "in"), (LegRole.CALLEE, "out"))
BACKOFF_S: Final = (1.0, 2.0, 5.0, 10.0, 30.0)  # between tries to reach the events socket
ENDS: Final = frozenset({"StasisEnd", "ChannelDestroyed"})


class AriError(RemoteProtocolError):
    """An ARI request Asterisk refused (its status and ``message``), or could not be made."""


@dataclass(slots=True, eq=False)
class _Direction:
    """One tapped direction of a call: its leg's port and the three ARI resources it holds."""

    key: str  # the tapped channel's id
    role: LegRole
    snoop_id: str
    media_id: str
    bridge_id: str
    port: RtpPort | None = None
    made: list[str] = field(default_factory=list)  # "bridge", "snoop", "media" once created


class AriController:
    """Taps every call of ``config.app``; :meth:`run` until the bridge stops."""

    def __init__(self, calls: ForkCalls, ports: RtpPorts, config: AriConfig) -> None:
        self.calls = calls
        self.ports = ports
        self.config = config
        self.format = FORMATS[config.format]
        self.base = (config.ari_url or "").rstrip("/")  # Asterisk's HTTP server
        self.connected = asyncio.Event()
        self._http = httpx.AsyncClient(
            base_url=f"{self.base}/ari",
            auth=(config.user, config.password),
            timeout=config.request_timeout_s,
        )
        self._own: dict[str, _Direction] = {}  # snoop and externalMedia channel ids
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Listen for the application's events, reconnecting, until ``stop``."""
        tries = 0
        try:
            while not stop.is_set():
                try:
                    await self._listen(stop)
                    tries = 0
                except (OSError, WebSocketException, TimeoutError) as exc:
                    wait = BACKOFF_S[min(tries, len(BACKOFF_S) - 1)]
                    logger.warning(
                        "ARI events at %s: %s; trying again in %.0f s (check [asterisk] "
                        "ari_url, the ARI user and password, and http.conf/ari.conf)",
                        self.config.ari_url,
                        _reason(exc),
                        wait,
                    )
                    tries += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
        finally:
            await self.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for direction in {*self._own.values()}:
            await self._end(direction, EndCause.SHUTDOWN)
        await self._http.aclose()

    async def _listen(self, stop: asyncio.Event) -> None:
        query = urlencode({"app": self.config.app, "subscribeAll": "false"})
        url = self.base.replace("http", "ws", 1) + f"/ari/events?{query}"
        basic = base64.b64encode(f"{self.config.user}:{self.config.password}".encode()).decode()
        headers = {"Authorization": f"Basic {basic}"}
        async with connect(
            url, additional_headers=headers, subprotocols=[Subprotocol("ari")], open_timeout=10
        ) as ws:
            logger.info("ARI: listening to Stasis application %r", self.config.app)
            self.connected.set()
            stopped = asyncio.create_task(stop.wait())
            try:
                while True:
                    message = asyncio.create_task(ws.recv())
                    done, _ = await asyncio.wait(
                        {message, stopped}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if stopped in done:
                        message.cancel()
                        return
                    self._event(message.result())
            finally:
                stopped.cancel()
                self.connected.clear()

    def _event(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
            kind, channel = event.get("type"), event.get("channel") or {}
            channel_id = str(channel.get("id", ""))
        except (ValueError, AttributeError):
            logger.warning("ARI: an event that is not a JSON object: %.80r", message)
            return
        if kind == "StasisStart" and channel_id and channel_id not in self._own:
            self._spawn(self._tap(channel))
        elif kind in ENDS and channel_id in self._own:
            self._spawn(self._end(self._own[channel_id], EndCause.HANGUP))

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tap(self, channel: dict[str, Any]) -> None:
        """Both directions of a new call, then the call goes on in the dialplan."""
        key = str(channel["id"])
        try:
            for role, spy in DIRECTIONS:
                direction = _Direction(key, role, _new_id(), _new_id(), _new_id())
                try:
                    await self._tap_direction(channel, direction, spy)
                except ForkRefused as exc:
                    logger.warning(
                        "ARI channel %s: %s leg not transcribed: %s", key, role.value, exc
                    )
                except (RemoteProtocolError, httpx.HTTPError, OSError) as exc:
                    logger.error(
                        "ARI channel %s: %s leg could not be tapped, not transcribed: %s",
                        key,
                        role.value,
                        exc,
                    )
                    await self._end(direction, EndCause.ERROR)
        finally:  # also when the bridge stops mid-way: a call is never left in Stasis
            with contextlib.suppress(AriError, httpx.HTTPError):
                await self._request("POST", f"/channels/{key}/continue", expect_gone=True)

    async def _tap_direction(
        self, channel: dict[str, Any], direction: _Direction, spy: str
    ) -> None:
        key, role, app = direction.key, direction.role, self.config.app
        stream = await self.calls.join(
            LegSource.ASTERISK,
            key,
            self.format.fork,
            roles=(role,),
            title=_title(channel),
            metadata=_metadata(channel),
            labels=(f"{_party(channel, role)} ({spy})",),
        )
        try:
            direction.port = await self.ports.open(stream, self.format)
        except OSError:
            await stream.leave(EndCause.ERROR)
            raise
        self._own[direction.snoop_id] = self._own[direction.media_id] = direction
        await self._request("POST", "/bridges", type="mixing", bridgeId=direction.bridge_id)
        direction.made.append("bridge")
        await self._request(
            "POST",
            f"/channels/{key}/snoop",
            spy=spy,
            whisper="none",
            app=app,
            snoopId=direction.snoop_id,
        )
        direction.made.append("snoop")
        await self._request(
            "POST",
            "/channels/externalMedia",
            app=app,
            channelId=direction.media_id,
            external_host=f"{self.config.rtp_advertise}:{direction.port.address[1]}",
            format=self.config.format,
            encapsulation="rtp",
            transport="udp",
            connection_type="client",
            direction="both",
        )
        direction.made.append("media")
        await self._request(
            "POST",
            f"/bridges/{direction.bridge_id}/addChannel",
            channel=f"{direction.snoop_id},{direction.media_id}",
        )
        stream.call.log.info(
            "ARI: %s leg of channel %s on RTP port %d (%s)",
            role.value,
            key,
            direction.port.address[1],
            self.config.format,
        )

    async def _end(self, direction: _Direction, cause: EndCause) -> None:
        """A tapped direction is over: its leg ends and its ARI resources go (once)."""
        if self._own.pop(direction.snoop_id, None) is None:
            return
        self._own.pop(direction.media_id, None)
        if direction.port is None:
            await self._release(direction, cause)
        else:  # the leg finishes its transcript while Asterisk lets go of the channels
            await asyncio.gather(
                self.ports.close(direction.port, cause), self._release(direction, cause)
            )

    async def _release(self, direction: _Direction, cause: EndCause) -> None:
        """Hang up the direction's externalMedia (and, unless it went already, snoop) channel
        and destroy its bridge; one that is gone already (404) is fine."""
        with contextlib.suppress(AriError, httpx.HTTPError):
            if "media" in direction.made:
                await self._request("DELETE", f"/channels/{direction.media_id}", expect_gone=True)
            if "snoop" in direction.made and cause is not EndCause.HANGUP:
                await self._request("DELETE", f"/channels/{direction.snoop_id}", expect_gone=True)
            if "bridge" in direction.made:
                await self._request("DELETE", f"/bridges/{direction.bridge_id}", expect_gone=True)

    async def _request(
        self, method: str, path: str, *, expect_gone: bool = False, **params: str
    ) -> None:
        """One ARI call (every resource's id is the bridge's own, so no answer is read back);
        a 4xx/5xx is an :class:`AriError` with Asterisk's ``message`` (``expect_gone``: a 404,
        the resource already went away, is not an error)."""
        response = await self._http.request(method, path, params=params)
        if response.status_code == 404 and expect_gone:
            return
        if response.status_code >= 400:
            try:
                message = str(response.json().get("message", ""))
            except (ValueError, AttributeError):
                message = response.text[:200]
            raise AriError(f"{method} /ari{path}: {response.status_code} {message}".strip())


async def rtp_sources(config: AriConfig) -> tuple[IpNetwork, ...]:
    """Who may send the legs' RTP: ``rtp_sources``, or else the ARI host's addresses and
    loopback (externalMedia RTP comes from the Asterisk the controller talks to)."""
    if config.rtp_sources:
        return config.rtp_sources
    host = urlsplit(config.ari_url or "").hostname or "localhost"
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError as exc:
        logger.warning("ARI host %s does not resolve (%s): RTP from loopback only", host, exc)
        infos = []
    found = {ipaddress.ip_network(str(info[4][0]).split("%", 1)[0]) for info in infos}
    return tuple(sorted(found | set(LOOPBACK), key=str))


def _new_id() -> str:
    return f"bridge-{uuid.uuid4().hex}"


def _party(channel: dict[str, Any], role: LegRole) -> str:
    side = channel.get("caller" if role is LegRole.CALLER else "connected") or {}
    return str(side.get("number") or side.get("name") or role.value)


def _title(channel: dict[str, Any]) -> str:
    dialplan = channel.get("dialplan") or {}
    return f"{_party(channel, LegRole.CALLER)} → {dialplan.get('exten') or channel.get('name')}"


def _metadata(channel: dict[str, Any]) -> dict[str, object]:
    """What the call is (ARI's Channel model): name, parties, dialplan place, variables."""
    keys = ("id", "name", "caller", "connected", "dialplan", "accountcode", "channelvars")
    return {k: channel[k] for k in keys if channel.get(k)}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return f"HTTP {status}" + (" (wrong ARI user or password)" if status == 401 else "")
    return str(exc) or type(exc).__name__
