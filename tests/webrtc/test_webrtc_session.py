"""The aiortc side's pure configuration (the session itself is tested with Chromium)."""

from __future__ import annotations

from bridge.webrtc.session import WhipSettings, peer_configuration


def test_ice_servers_reach_aiortc() -> None:
    settings = WhipSettings(
        ice_servers=((("stun:s.example.com:3478",), None, None), (("turn:t:3478",), "u", "p"))
    )
    servers = peer_configuration(settings).iceServers or []
    assert [(s.urls, s.username, s.credential) for s in servers] == [
        (["stun:s.example.com:3478"], None, None),
        (["turn:t:3478"], "u", "p"),
    ]
