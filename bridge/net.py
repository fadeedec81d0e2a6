"""Listening sockets for the bridge's TCP services (HTTP, AudioSocket, the media-fork WebSocket).

Bound here, not by the server library (uvicorn logs an OSError and exits the process with code
3): a port in use, a host that is not this machine's or a privileged port is one
:class:`~bridge.errors.TransportError` naming the setting that fixes it.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from bridge.errors import TransportError


@dataclass(frozen=True, slots=True)
class Listener:
    """What a service listens as, for its error messages: ``HTTP`` and its settings."""

    what: str  # "HTTP", "AudioSocket"
    host_setting: str  # "serve.host (BRIDGE_HOST or bridge serve --http-host)"
    port_setting: str  # "serve.port, BRIDGE_PORT or bridge serve --http-port"


HTTP = Listener(
    "HTTP",
    "serve.host (BRIDGE_HOST or bridge serve --http-host)",
    "serve.port, BRIDGE_PORT or bridge serve --http-port",
)


def listen_sockets(host: str, port: int, listener: Listener = HTTP) -> list[socket.socket]:
    """TCP sockets bound to ``host:port`` (each address ``host`` resolves to)."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise TransportError(
            f"{listener.what} host {host!r} does not resolve ({exc.strerror}): set "
            f"{listener.host_setting} to an address of this machine",
            retryable=False,
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            # What asyncio's create_server does for a host and port (uvicorn's default path).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise TransportError(_bind_failure(host, port, exc, listener), retryable=False) from None
    return sockets


def _bind_failure(host: str, port: int, exc: OSError, listener: Listener) -> str:
    where, what = f"{host}:{port}", listener.what
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{what} port {where} is taken by another program (another bridge serve?): stop "
            f"it, or choose another port ({listener.port_setting})"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{what} host {host} is not an address of this machine: set "
            f"{listener.host_setting} to one of its addresses (ip -brief address)"
        )
    if exc.errno == errno.EACCES:
        return (
            f"{what} port {where}: ports below 1024 need privileges; choose a port from 1024 "
            f"({listener.port_setting})"
        )
    return f"cannot listen for {what} on {where}: {exc.strerror or exc}"
