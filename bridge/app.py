"""``bridge serve``, wired in one place: the store (and the calls a killed run left active), the
ASR endpoint (a vLLM server, or the embedded CPU engine) and its pre-flight report, the live hub
and its webhooks, the SIP ingest, retention and the HTTP server, started together and stopped
together (``serve``; SIGINT/SIGTERM stop it).

Also the parts every command builds from its settings the same way: :func:`opened_store`,
:func:`asr_pool`, :func:`leg_settings`.  The HTTP app, the live hub, SIP and the engine are
imported when ``serve`` starts them, so the other commands do not load them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any

from bridge.asr.client import AsrEndpoint
from bridge.asr.pool import AsrPool, AsrTarget
from bridge.asr.probe import check_pool
from bridge.auth import Principal, Role
from bridge.config import BridgeConfig
from bridge.config.backends import BackendConfig, default_name
from bridge.core.transcript import SegmentPolicy
from bridge.errors import ConfigError, StorageError
from bridge.health import Health
from bridge.leg import LegSettings, Listener
from bridge.model_files import served_model
from sip_config import SipSettings
from storage import TranscriptStore, retention_loop

if TYPE_CHECKING:
    from bridge.call import TranscriptSink
    from bridge.http.server import ConnectionLimits
    from bridge.live import LiveHub
    from bridge.webrtc.session import WhipSettings


def pool_from(config: BridgeConfig, **overrides: float | None) -> AsrPool:
    """The configured servers: ``asr.backends``, or the one ``asr.url``."""
    asr = config.asr
    files = served_model(asr.model_dir, asr.delay_ms)
    delay_ms = files.clock().transcription_delay_ms if files else asr.delay_ms or 480
    backends = asr.backends or (
        BackendConfig(
            name=default_name(asr.url or ""),
            url=asr.url or "",
            model=asr.model,
            api_key=asr.api_key,
            max_legs=asr.max_legs,
            dialect=asr.dialect,
        ),
    )
    endpoints = [
        AsrEndpoint(
            url=b.url,
            model=b.model,
            dialect=b.dialect,
            api_key=b.api_key,
            delay_ms=delay_ms,
            model_files=files,
            language=asr.language,
            prompt=asr.prompt,
            stall_timeout_s=asr.stall_timeout_s,
            give_up_after_s=overrides.get("give_up_after_s"),
            max_legs=b.max_legs or None,
        )
        for b in backends
    ]
    return AsrPool(endpoints, [b.name for b in backends])


def uses_servers(config: BridgeConfig) -> bool:
    """Whether ASR servers are configured (else the embedded engine runs)."""
    return config.asr.url is not None or bool(config.asr.backends)


@contextlib.asynccontextmanager
async def asr_pool(config: BridgeConfig, **overrides: float | None) -> AsyncIterator[AsrPool]:
    """The configured vLLM servers, or the embedded CPU engine started in-process.

    Without ``asr.url`` or ``asr.backends`` the bridge serves itself with faster-whisper on the
    CPU (the ``bridge asr-server`` engine, same protocol): real words with no GPU, fewer legs.
    """
    if uses_servers(config):
        yield pool_from(config, **overrides)
        return
    from bridge.engine import EngineConfig, start_engine_server
    from bridge.engine.weights import ModelWeightsError

    print(
        "bridge: no ASR server configured (BRIDGE_ASR_URL): starting the embedded CPU engine "
        "(faster-whisper base); for Voxtral on a GPU run the Procfile's vllm line",
        file=sys.stderr,
    )
    try:
        engine = await start_engine_server(EngineConfig(language=config.asr.language))
    except ModelWeightsError as exc:
        raise ConfigError(f"{exc} (or set BRIDGE_ASR_URL to a vLLM server)") from exc
    print(
        f"bridge: embedded engine {engine.model} at {engine.url}, {engine.max_legs} "
        "leg(s) in real time",
        file=sys.stderr,
    )
    embedded = AsrEndpoint(
        url=engine.url,
        model=engine.model,
        dialect=config.asr.dialect,  # the engine speaks both
        language=config.asr.language,
        stall_timeout_s=config.asr.stall_timeout_s,
        give_up_after_s=overrides.get("give_up_after_s"),
        max_legs=min(engine.max_legs, config.asr.max_legs or engine.max_legs),
    )
    try:
        yield AsrPool([embedded], ["embedded"])
    finally:
        await engine.close()


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def leg_settings(config: BridgeConfig) -> LegSettings:
    # Voxtral's guards need its step clock: vLLM servers, not the OpenAI dialect's turns.
    backends = config.asr.backends
    dialect = backends[0].dialect if backends else config.asr.dialect
    voxtral = uses_servers(config) and dialect == "vllm"
    return LegSettings(
        recycle_after_s=config.asr.recycle_after_s,
        # Voxtral's guards are for vLLM servers (asr.url, asr.backends).  The embedded engine's
        # blank text over loud non-speech is right, it holds deltas while it decodes by design,
        # and it admits legs by its own measured budget.
        rut_after_s=config.asr.rut_after_s if voxtral else 0.0,
        max_step_lag_ms=config.asr.max_step_lag_ms if voxtral else 0.0,
        max_buffer_s=config.asr.max_buffer_s,
        g711_passthrough=config.asr.g711_passthrough,
        redaction=config.redaction,
        segments=SegmentPolicy(
            pause_steps=max(1, config.segments.pause_ms // 80),
            max_segment_ms=int(config.segments.max_segment_s * 1000),
        ),
    )


@contextlib.asynccontextmanager
async def opened_store(config: BridgeConfig, *, existing: bool) -> AsyncIterator[TranscriptStore]:
    """The transcript store for one ``async with`` block, closed when it ends however it ends.

    Every command opens its store here: a store left open keeps aiosqlite's (non-daemon) threads
    running, and the process would never exit.  ``existing``: the file must be there already
    (commands that only read).
    """
    if existing and not config.db_path.exists():
        raise StorageError(
            f"{config.db_path}: no transcript database yet; transcribe something first or "
            "pass --db",
            retryable=False,
        )
    async with await TranscriptStore.open(config.db_path) as store:
        yield store


async def run_until_stopped(services: list[Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
    """Run every service until ``stop``; if one fails, stop the others and raise its error."""
    tasks = [asyncio.create_task(service) for service in services]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sip_summary(sip: SipSettings) -> list[str]:
    """What ``serve`` says about SIP at start: where it listens, who may call, what it hears."""
    front = (
        f"; Kamailio in front on {sip.host}:{sip.dispatcher_port} (point the PBX there)"
        if sip.dispatcher_active
        else ""
    )
    ports = f"{sip.port}" if sip.workers == 1 else f"{sip.port}..{sip.port + sip.workers - 1}"
    sources = ", ".join(str(net) for net in sip.allowed_sources)
    lines = [
        f"SIP on {sip.host}:{ports} ({'+'.join(sip.transports)}), {sip.workers} worker(s)"
        f"{front}; calls from {sources}"
    ]
    if is_loopback(sip.host):
        lines.append(
            "SIP answers this machine only; for a PBX on the LAN: --sip-host "
            "THIS_MACHINES_LAN_ADDRESS (BRIDGE_SIP_HOST, [sip] host) and "
            "BRIDGE_SIP_ALLOWED_SOURCES=THE_PBXS_ADDRESS ([sip] allowed_sources)"
        )
    elif all(net.is_loopback for net in sip.allowed_sources):
        lines.append(
            f"SIP allowed_sources is {sources} only: calls from the PBX get 403 until its "
            "address is in BRIDGE_SIP_ALLOWED_SOURCES ([sip] allowed_sources)"
        )
    lines.append(
        "SIP direct mode transcribes the party that reaches the bridge (one side of the call); "
        "for both sides have the PBX send SIPREC or route the call through the bridge (b2bua): "
        "README, A first SIP call"
    )
    return lines


async def serve(config: BridgeConfig, sip: SipSettings) -> int:
    """Run the bridge until SIGINT or SIGTERM; every service stops when one fails."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    async with opened_store(config, existing=False) as store:
        print(f"bridge: config from {config.source}", file=sys.stderr)
        print(f"bridge: transcripts in {store.path}", file=sys.stderr)
        # Calls a previous run left active (it was killed): each ends at its last stored
        # activity, its legs closed, the untranscribed rest of an upload stored as a gap.  The
        # files of its uploads are removed when the HTTP app starts (UploadRunner).
        now_ms = int(time.time() * 1000)
        dangling = await store.end_dead_calls(cause="bridge-restarted", now_ms=now_ms)
        if dangling:
            print(
                f"bridge: {len(dangling)} call(s) left active by a previous run marked ended "
                "(bridge-restarted) at their last stored activity",
                file=sys.stderr,
            )
        async with asr_pool(config) as pool:
            reports = await check_pool(pool)
            for backend, report in zip(pool.backends, reports, strict=True):
                print("\n".join(report.lines), file=sys.stderr)
                if not report.ok:
                    pool.failed(backend, report.problem or "bridge check failed")
            if not any(report.ok for report in reports):
                print("bridge: no ASR server is ready; calls will wait for one", file=sys.stderr)
            elif not all(report.ok for report in reports):
                print(
                    "bridge: ASR servers that are not ready take no calls until their probe passes",
                    file=sys.stderr,
                )
            from bridge.live import LiveHub
            from bridge.live.tee import PublishingStore

            hub = LiveHub()
            health = Health()
            services = [
                pool.watch(stop),
                run_http(
                    config,
                    store=store,
                    hub=hub,
                    endpoint=pool,
                    stop=stop,
                    settings=leg_settings(config),
                    health=health,
                ),
            ]
            if sip.enabled:
                from bridge.sip.ingest import run_sip_ingest

                for line in sip_summary(sip):
                    print(f"bridge: {line}", file=sys.stderr)
                services.append(
                    run_sip_ingest(
                        sip,
                        store=PublishingStore(store, hub),
                        endpoint=pool,
                        stop=stop,
                        leg_settings=leg_settings(config),
                        listener=hub.listener,
                        health=health,
                    )
                )
            else:
                print(
                    "bridge: SIP ingest is off (--no-sip, BRIDGE_SIP_ENABLED or [sip] enabled)",
                    file=sys.stderr,
                )
            if config.audiosocket.enabled or config.forks.enabled or config.ari.enabled:
                services.append(
                    run_forks(
                        config,
                        sink=PublishingStore(store, hub),
                        endpoint=pool,
                        stop=stop,
                        listener=hub.listener,
                    )
                )
            if is_loopback(config.serve.host):
                print(
                    f"bridge: HTTP on {config.serve.host}:{config.serve.port} answers this "
                    "machine only; for browsers elsewhere: --http-host THIS_MACHINES_ADDRESS "
                    "(BRIDGE_HOST)",
                    file=sys.stderr,
                )
            await run_until_stopped(services, stop)
    print("bridge: stopped", file=sys.stderr)
    return 0


async def run_forks(
    config: BridgeConfig,
    *,
    sink: TranscriptSink,
    endpoint: AsrTarget,
    stop: asyncio.Event,
    listener: Listener,
) -> None:
    """The media forks ([ingest.audiosocket], [ingest.websocket], [asterisk]) until ``stop``;
    their calls then end ``shutdown``."""
    from bridge.config.ingest import allowed
    from bridge.ingest.ari import AriController, rtp_sources
    from bridge.ingest.audiosocket import AudioSocketServer
    from bridge.ingest.fork import ForkCalls
    from bridge.ingest.rtp import RtpPorts
    from bridge.ingest.websocket import ForkSocketServer, fork_protocols

    calls = ForkCalls(
        sink,
        endpoint=endpoint,
        settings=leg_settings(config),
        listener=listener,
        rejoin_s=max(config.audiosocket.rejoin_s, config.forks.rejoin_s),
    )
    servers: list[AudioSocketServer | ForkSocketServer] = []
    controller: asyncio.Task[None] | None = None
    ports: RtpPorts | None = None
    try:
        if config.audiosocket.enabled:
            audiosocket = AudioSocketServer(calls, config.audiosocket)
            await audiosocket.start()
            servers.append(audiosocket)
            sources = ", ".join(str(n) for n in config.audiosocket.allowed_sources) or "none"
            print(
                f"bridge: AudioSocket on {config.audiosocket.host}:{audiosocket.port} (from "
                f"{sources}; sockets paired by {config.audiosocket.pair_by})",
                file=sys.stderr,
            )
        if config.forks.enabled:
            forks = ForkSocketServer(calls, config.forks, fork_protocols())
            await forks.start()
            servers.append(forks)
            paths = ", ".join(f"/{name}" for name in forks.protocols)
            guard = " and ".join(config.forks.guards()) or "no secret: this machine only"
            print(
                f"bridge: media-fork WebSocket on ws://{config.forks.host}:{forks.port} "
                f"({paths}; {guard})",
                file=sys.stderr,
            )
        if config.ari.enabled:
            ari = config.ari
            senders = await rtp_sources(ari)
            ports = RtpPorts(host=ari.rtp_host, permitted=lambda ip: allowed(ip, senders))
            controller = asyncio.create_task(AriController(calls, ports, ari).run(stop))
            print(
                f"bridge: ARI controller for Stasis({ari.app}) at {ari.ari_url}; externalMedia "
                f"{ari.format} RTP to {ari.rtp_advertise} (from "
                f"{', '.join(str(n) for n in senders)})",
                file=sys.stderr,
            )
        await stop.wait()
    finally:
        if controller is not None:
            await controller  # it ends its legs and hangs up its channels
        if ports is not None:
            await ports.stop()
        for server in servers:
            await server.stop()
        await calls.close()


async def run_http(
    config: BridgeConfig,
    *,
    store: TranscriptStore,
    hub: LiveHub,
    endpoint: AsrTarget,
    stop: asyncio.Event,
    settings: LegSettings | None = None,
    limits: ConnectionLimits | None = None,
    health: Health | None = None,
) -> None:
    """Serve the dashboards and APIs on ``config.serve.host:port`` until ``stop`` is set: uvicorn
    on this loop (``stop`` ends it gracefully: live clients get close code 1001, uploads are
    cancelled, open requests finish), webhooks on the hub, and the retention task, which deletes
    ended calls older than ``http.retention_days`` once at start and then hourly."""
    from bridge.http.app import close_app, create_app
    from bridge.http.server import Server, raise_open_file_limit, server_config
    from bridge.live.webhooks import Webhooks
    from bridge.net import listen_sockets

    tokens = api_tokens(config)
    base_url = config.http.public_url or f"http://{config.serve.host}:{config.serve.port}"
    webhooks = None
    if config.http.webhook_url and config.http.webhook_secret:
        webhooks = Webhooks(
            config.http.webhook_url, config.http.webhook_secret, base_url=base_url, store=store
        )
        webhooks.attach(hub)
    app = create_app(
        store=store,
        hub=hub,
        endpoint=endpoint,
        tokens=tokens,
        settings=settings,
        on_call_ended=webhooks.call_ended if webhooks else None,
        health=health,
        whip=whip_settings(config),
    )
    if webhooks is not None:
        app.state.registry.register(webhooks.collector())  # bridge_webhook_* metrics
    raise_open_file_limit()
    try:
        sockets = listen_sockets(config.serve.host, config.serve.port)
    except BaseException:
        await close_app(app)
        if webhooks is not None:
            await webhooks.close()
        raise
    server = Server(server_config(app, config.serve.host, config.serve.port, limits))
    serving = asyncio.create_task(server.serve(sockets=sockets), name="http")
    retention = None
    if config.http.retention_days > 0:
        retention = asyncio.create_task(
            retention_loop(store, config.http.retention_days, stop), name="retention"
        )
    try:
        listening = asyncio.ensure_future(server.listening.wait())
        await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if server.started:  # announce only what really listens
            print(f"bridge: dashboards and API at {base_url}/", file=sys.stderr)
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
    finally:
        await close_app(app)
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        if retention is not None:
            retention.cancel()
            await asyncio.gather(retention, return_exceptions=True)
        if webhooks is not None:
            await webhooks.close()
    error = serving.exception() if serving.done() and not serving.cancelled() else None
    if error is not None:
        raise error
    if server.started is False and not stop.is_set():
        raise OSError(f"cannot serve HTTP on {config.serve.host}:{config.serve.port}")


def api_tokens(config: BridgeConfig) -> dict[str, Principal]:
    """The configured API tokens; without any, one supervisor token for this run, printed."""
    tokens = dict(config.http.api_tokens)
    if not tokens:
        token = secrets.token_urlsafe(24)
        tokens[token] = Principal(Role.SUPERVISOR)
        print(
            "bridge: no API tokens configured (BRIDGE_API_TOKENS); this run's supervisor token: "
            f"{token}",
            file=sys.stderr,
        )
    return tokens


def whip_settings(config: BridgeConfig) -> WhipSettings:
    """WebRTC ingest: its session cap, STUN and TURN servers, and the public address."""
    from bridge.webrtc.session import WhipSettings

    webrtc = config.webrtc
    ice_servers: list[tuple[tuple[str, ...], str | None, str | None]] = []
    if webrtc.stun_urls:
        ice_servers.append((webrtc.stun_urls, None, None))
    if webrtc.turn_urls:
        ice_servers.append((webrtc.turn_urls, webrtc.turn_username, webrtc.turn_password))
    return WhipSettings(
        max_sessions=webrtc.max_sessions,
        ice_servers=tuple(ice_servers),
        public_address=webrtc.public_address,
    )
