"""The fake Asterisk (``tests/ingest/peers/ari.py``) behaves as ARI and externalMedia RTP do:
driven by a hand-written ARI client (httpx + websockets) and UDP sockets, not by the bridge."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
import soxr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from bridge.core.g711 import decode_ulaw
from tests.ingest.peers import FakeAsterisk, basic_auth

pytestmark = pytest.mark.timeout(30)

AUTH = ("bridge", "secret")
RATE = 16000


def tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


class Receiver(asyncio.DatagramProtocol):
    """The controller's RTP socket: every datagram with its source and arrival time."""

    def __init__(self) -> None:
        self.got: list[tuple[float, tuple[str, int], bytes]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((time.monotonic(), addr, data))


@dataclass
class Controller:
    """A minimal ARI controller: on a PJSIP channel's StasisStart, one snoop, externalMedia
    channel and bridge per direction, then ``continue``."""

    client: httpx.AsyncClient
    directions: dict[str, tuple[int, str]]  # spy -> (UDP port, format)
    events: list[dict[str, Any]] = field(default_factory=list)
    made: dict[str, dict[str, Any]] = field(default_factory=dict)  # spy -> externalMedia JSON

    async def run(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                event = json.loads(message)
                self.events.append(event)
                name = event.get("channel", {}).get("name", "")
                if event["type"] == "StasisStart" and name.startswith("PJSIP/"):
                    await self.set_up(event["channel"]["id"])

    async def post(self, path: str, **params: str) -> httpx.Response:
        return await self.client.post(path, params=params)

    async def set_up(self, channel: str) -> None:
        for spy, (port, fmt) in self.directions.items():
            snoop = await self.post(f"/ari/channels/{channel}/snoop", spy=spy, app="bridge")
            ext = await self.post(
                "/ari/channels/externalMedia",
                app="bridge",
                external_host=f"127.0.0.1:{port}",
                format=fmt,
                encapsulation="rtp",
                transport="udp",
                connection_type="client",
                direction="both",
            )
            bridge = await self.post("/ari/bridges", type="mixing")
            assert (snoop.status_code, ext.status_code, bridge.status_code) == (200, 200, 200)
            self.made[spy] = ext.json()
            both = f"{snoop.json()['id']},{ext.json()['id']}"
            added = await self.post(f"/ari/bridges/{bridge.json()['id']}/addChannel", channel=both)
            assert added.status_code == 204
        assert (await self.post(f"/ari/channels/{channel}/continue")).status_code == 204


@contextlib.asynccontextmanager
async def controlled(
    asterisk: FakeAsterisk, formats: dict[str, str]
) -> AsyncIterator[tuple[Controller, dict[str, Receiver]]]:
    """A controller connected to ``asterisk`` with one UDP receiver per spy direction."""
    loop = asyncio.get_running_loop()
    receivers: dict[str, Receiver] = {}
    ports: dict[str, tuple[int, str]] = {}
    transports = []
    for spy, fmt in formats.items():
        transport, receiver = await loop.create_datagram_endpoint(
            Receiver, local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        receivers[spy] = receiver
        ports[spy] = (transport.get_extra_info("sockname")[1], fmt)
    async with (
        httpx.AsyncClient(base_url=asterisk.url, auth=AUTH) as client,
        connect(f"{asterisk.events_url}?app=bridge&api_key=bridge:secret") as ws,
    ):
        controller = Controller(client, ports)
        task = asyncio.create_task(controller.run(ws))
        try:
            yield controller, receivers
        finally:
            await ws.close()
            await task
            for transport in transports:
                transport.close()


def parse(datagram: bytes) -> tuple[int, int, int, int, int, int, bytes]:
    first, second, seq, ts, ssrc = struct.unpack_from("!BBHII", datagram)
    return first >> 6, second >> 7, second & 0x7F, seq, ts, ssrc, datagram[12:]


async def test_call_streams_rtp_from_the_reported_port_and_hangs_up() -> None:
    caller, callee = tone(440, 0.5), tone(660, 0.3)
    async with (
        FakeAsterisk() as asterisk,
        controlled(asterisk, {"in": "slin16", "out": "ulaw"}) as (
            controller,
            receivers,
        ),
    ):
        call = await asterisk.call(caller, callee)
        await asyncio.sleep(0.1)
        late = sum(len(r.got) for r in receivers.values())
        await asyncio.sleep(0.1)
        assert sum(len(r.got) for r in receivers.values()) == late  # RTP stopped at hangup

        assert call.sent == {"in": 25, "out": 25}  # the shorter side goes on with silence
        for spy, pt, size, step in (
            ("in", 118, 640, 320),
            ("out", 0, 160, 160),
        ):
            got = receivers[spy].got
            made = controller.made[spy]
            assert made["name"].startswith("UnicastRTP/127.0.0.1:")
            port = int(made["channelvars"]["UNICASTRTP_LOCAL_PORT"])
            assert made["channelvars"]["UNICASTRTP_LOCAL_ADDRESS"] == "127.0.0.1"
            assert {addr for _, addr, _ in got} == {("127.0.0.1", port)}
            packets = [parse(d) for _, _, d in got]
            assert len(packets) == 25 == call.packets[made["id"]]
            assert {p[0] for p in packets} == {2} and {p[2] for p in packets} == {pt}
            assert [p[1] for p in packets] == [1] + [0] * 24  # marker on the first
            assert len({p[5] for p in packets}) == 1
            assert all(len(p[6]) == size for p in packets)
            for a, b in zip(packets, packets[1:], strict=False):
                assert b[3] == (a[3] + 1) & 0xFFFF and b[4] == (a[4] + step) & 0xFFFFFFFF
            arrivals = [t for t, _, _ in got]
            assert 0.42 < arrivals[-1] - arrivals[0] < 0.65  # 24 intervals of 20 ms
            assert 0.015 < statistics.median(np.diff(arrivals)) < 0.025

        slin = b"".join(parse(d)[6] for _, _, d in receivers["in"].got)
        expected = (np.clip(caller, -1, 1) * 32767).astype(">i2")
        assert np.array_equal(np.frombuffer(slin, ">i2")[: len(caller)], expected)  # big-endian
        ulaw = b"".join(parse(d)[6] for _, _, d in receivers["out"].got)
        heard = decode_ulaw(ulaw).astype(np.float32) / 32768
        sent = soxr.resample(callee, RATE, 8000)
        assert np.corrcoef(heard[: len(sent)], sent)[0, 1] > 0.99
        assert ulaw[len(sent) + 80 :] == b"\xff" * (len(ulaw) - len(sent) - 80)  # µ-law silence

        events = [(e["type"], e["channel"]["name"].split("/")[0]) for e in controller.events]
        assert events[0] == ("StasisStart", "PJSIP")
        assert events.count(("StasisStart", "Snoop")) == 2
        assert events.count(("StasisStart", "UnicastRTP")) == 2
        assert events.count(("ChannelEnteredBridge", "Snoop")) == 2
        assert ("StasisEnd", "PJSIP") in events  # at continue; its hangup is not the app's
        assert ("ChannelDestroyed", "PJSIP") not in events
        assert events.count(("StasisEnd", "Snoop")) == events.count(("ChannelDestroyed", "Snoop"))
        assert events.count(("ChannelDestroyed", "Snoop")) == 2
        assert all(e["application"] == "bridge" and e["asterisk_id"] for e in controller.events)
        start = controller.events[0]
        assert start["channel"]["caller"] == {"name": "Alice", "number": "+15551230001"}
        assert start["channel"]["id"] == call.channel_id and start["args"] == []

        methods = [(m, p.split("/")[2]) for m, p, _ in asterisk.requests if p != "/ari/events"]
        assert methods == [
            ("POST", "channels"),
            ("POST", "channels"),
            ("POST", "bridges"),
            ("POST", "bridges"),
        ] * 2 + [("POST", "channels")]
        assert asterisk.requests[0] == ("GET", "/ari/events", {"app": "bridge"})
        assert len(call.created_channels) == 4 and len(call.created_bridges) == 2

        # The externalMedia channels stay until the controller hangs them up.
        for made in controller.made.values():
            assert (
                await controller.client.delete(f"/ari/channels/{made['id']}")
            ).status_code == 204
            assert (
                await controller.client.delete(f"/ari/channels/{made['id']}")
            ).status_code == 404


async def test_auth_and_errors() -> None:
    async with FakeAsterisk() as asterisk, httpx.AsyncClient(base_url=asterisk.url) as http:
        for auth in (None, ("bridge", "wrong")):
            refused = await http.get("/ari/asterisk/info", auth=auth)
            assert refused.status_code == 401
            assert refused.json() == {"message": "Authentication required"}
        keyed = await http.get("/ari/asterisk/info", params={"api_key": "bridge:secret"})
        assert keyed.status_code == 200 and keyed.json()["system"]["version"]
        with pytest.raises(InvalidStatus) as refused_ws:
            await connect(f"{asterisk.events_url}?app=bridge")
        assert refused_ws.value.response.status_code == 401

        http.auth = httpx.BasicAuth(*AUTH)
        bridge = (await http.post("/ari/bridges", params={"type": "mixing", "name": "b"})).json()
        assert {k: bridge[k] for k in ("technology", "bridge_type", "bridge_class", "creator")} == {
            "technology": "simple_bridge",
            "bridge_type": "mixing",
            "bridge_class": "stasis",
            "creator": "Stasis",
        }
        assert bridge["channels"] == [] and bridge["name"] == "b"
        media = {"app": "bridge", "external_host": "127.0.0.1:9", "format": "slin16"}
        cases = [
            ("POST", "/ari/channels/nope/snoop", {"spy": "in", "app": "bridge"}, 404),
            ("POST", "/ari/channels/nope/snoop", {"spy": "sideways", "app": "bridge"}, 400),
            ("POST", "/ari/channels/nope/snoop", {"spy": "in"}, 400),
            ("POST", "/ari/channels/externalMedia", media | {"format": ""}, 400),
            ("POST", "/ari/channels/externalMedia", media | {"format": "mp3"}, 400),
            ("POST", "/ari/channels/externalMedia", media | {"external_host": "nohost"}, 400),
            ("POST", "/ari/channels/externalMedia", {"format": "ulaw"}, 400),
            ("POST", "/ari/bridges/nope/addChannel", {"channel": "x"}, 404),
            ("POST", f"/ari/bridges/{bridge['id']}/addChannel", {"channel": "x"}, 400),
            ("POST", "/ari/channels/nope/continue", {}, 404),
            ("DELETE", "/ari/channels/nope", {}, 404),
            ("DELETE", "/ari/bridges/nope", {}, 404),
            ("GET", "/ari/endpoints", {}, 404),
            ("DELETE", f"/ari/bridges/{bridge['id']}", {}, 204),
        ]
        for method, path, params, status in cases:
            answer = await http.request(method, path, params=params)
            assert answer.status_code == status, (method, path, params, answer.text)
            if status >= 400:
                assert isinstance(answer.json()["message"], str)
        ext = (await http.post("/ari/channels/externalMedia", params=media)).json()
        assert ext["channelvars"]["UNICASTRTP_LOCAL_PORT"].isdigit()
        assert ("POST", "/ari/channels/externalMedia", media) in asterisk.requests


async def test_no_controller_fails_the_call_with_what_is_missing() -> None:
    async with FakeAsterisk() as asterisk:
        with pytest.raises(AssertionError, match="no events WebSocket subscribed to 'bridge'"):
            await asterisk.call(tone(440, 0.1), setup_timeout_s=0.2)
        async with connect(
            f"{asterisk.events_url}?app=bridge", additional_headers=basic_auth(*AUTH)
        ) as ws:
            with pytest.raises(AssertionError, match="did not bridge a snoop.*REST requests seen"):
                await asterisk.call(tone(440, 0.1), setup_timeout_s=0.3)
            types = [json.loads(await ws.recv())["type"] for _ in range(3)]
        assert types == ["StasisStart", "ChannelHangupRequest", "StasisEnd"]


async def test_drop_events_closes_the_socket_and_counts_reconnects() -> None:
    async with FakeAsterisk() as asterisk:
        url = f"{asterisk.events_url}?app=bridge"
        async with connect(
            url, additional_headers=basic_auth(*AUTH), subprotocols=[Subprotocol("ari")]
        ) as ws:
            assert ws.subprotocol == "ari"
            await asterisk.drop_events()
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1001
        async with connect(url, additional_headers=basic_auth(*AUTH)):
            await asyncio.sleep(0.05)
        assert asterisk.event_connections == 2


async def test_raw_datagrams_and_early_hangup() -> None:
    raw = [b"", b"\x80", b"\x00" * 11, bytes(range(256)), b"\x80\xc8" + bytes(30)]
    async with FakeAsterisk() as asterisk, controlled(asterisk, {"in": "slin16"}) as (_, receivers):
        call = await asterisk.call(raw=raw)
        await asyncio.sleep(0.05)
        assert [d for _, _, d in receivers["in"].got] == raw
        assert call.packets == {next(iter(call.packets)): len(raw)}

        receivers["in"].got.clear()
        call = await asterisk.call(tone(440, 5.0), hangup_after_s=0.2)
        assert 5 <= call.sent["in"] <= 14
        assert call.channel_id not in asterisk.channels
