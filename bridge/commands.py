"""The CLI's commands.  Each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, cast

from bridge.asr.client import AsrEndpoint
from bridge.asr.probe import check_server, preflight
from bridge.config import BridgeConfig, load_config
from bridge.core.transcript import SegmentPolicy
from bridge.core.types import AudioEncoding, LegRole
from bridge.errors import ConfigError, StorageError
from bridge.export import fmt_ms, iso_utc, render
from bridge.health import Health
from bridge.io.audio_files import AudioFile, open_audio
from bridge.leg import LegSettings
from bridge.model_prepare import find_snapshot, prepare_model, serve_hint
from bridge.transcribe import TerminalView, parse_roles, transcribe_file
from sip_config import SipSettings, load_sip_settings
from storage import CallRecord, CallTranscript, TranscriptStore

logger = logging.getLogger(__name__)


def config_from(args: argparse.Namespace) -> BridgeConfig:
    overrides = {
        ("asr", "url"): getattr(args, "asr_url", None),
        ("asr", "model"): getattr(args, "model", None),
        ("asr", "api_key"): getattr(args, "api_key", None),
        ("asr", "language"): getattr(args, "language", None),
        ("asr", "delay_ms"): getattr(args, "delay_ms", None),
        ("storage", "db"): getattr(args, "db", None),
        ("serve", "host"): getattr(args, "http_host", None),
        ("serve", "port"): getattr(args, "http_port", None),
    }
    return load_config(args.config, os.environ, overrides)


def endpoint_from(config: BridgeConfig, url: str, **overrides: float | None) -> AsrEndpoint:
    return AsrEndpoint(
        url=url,
        model=config.asr.model,
        api_key=config.asr.api_key,
        delay_ms=config.asr.delay_ms,
        language=config.asr.language,
        stall_timeout_s=config.asr.stall_timeout_s,
        give_up_after_s=overrides.get("give_up_after_s"),
        max_legs=config.asr.max_legs or None,
    )


@contextlib.asynccontextmanager
async def asr_endpoint(
    config: BridgeConfig, **overrides: float | None
) -> AsyncIterator[AsrEndpoint]:
    """The configured vLLM server, or the embedded CPU engine started in-process.

    Without ``asr.url`` the bridge serves itself with faster-whisper on the CPU (the
    ``bridge asr-server`` engine, same protocol): real words with no GPU, fewer legs.
    """
    if config.asr.url is not None:
        yield endpoint_from(config, config.asr.url, **overrides)
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
    try:
        yield AsrEndpoint(
            url=engine.url,
            model=engine.model,
            language=config.asr.language,
            stall_timeout_s=config.asr.stall_timeout_s,
            give_up_after_s=overrides.get("give_up_after_s"),
            max_legs=min(engine.max_legs, config.asr.max_legs or engine.max_legs),
        )
    finally:
        await engine.close()


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def leg_settings(config: BridgeConfig) -> LegSettings:
    return LegSettings(
        recycle_after_s=config.asr.recycle_after_s,
        max_buffer_s=config.asr.max_buffer_s,
        segments=SegmentPolicy(
            pause_steps=max(1, config.segments.pause_ms // 80),
            max_segment_ms=int(config.segments.max_segment_s * 1000),
        ),
    )


def write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def open_inputs(args: argparse.Namespace) -> list[AudioFile]:
    encoding = AudioEncoding(args.encoding) if args.encoding else None
    return [
        open_audio(path, encoding=encoding, sample_rate_hz=args.rate, channels=args.channels)
        for path in args.files
    ]


async def transcribe(args: argparse.Namespace) -> int:
    config = config_from(args)
    roles = parse_roles(args.roles)
    files = open_inputs(args)  # every bad file is reported before any work starts
    async with (
        opened_store(config, existing=False) as store,  # a bad --db too
        # A file may wait out a short ASR outage; then it stops, keeping what it has.
        asr_endpoint(config, give_up_after_s=60.0) as endpoint,
    ):
        await preflight(endpoint)
        return await _transcribe(args, config, files, roles, endpoint, store)


async def _transcribe(
    args: argparse.Namespace,
    config: BridgeConfig,
    files: list[AudioFile],
    roles: tuple[LegRole, ...],
    endpoint: AsrEndpoint,
    store: TranscriptStore,
) -> int:
    tty = sys.stderr.isatty()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        # First Ctrl-C: stop feeding, let the legs finish and store what they have.
        # A second one interrupts for real.
        print("\nbridge: stopping; finishing the legs (Ctrl-C again to abort)", file=sys.stderr)
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, interrupt)
    for audio in files:
        if stop.is_set():
            break
        print(
            f"{audio.path}: {fmt_ms(audio.duration_ms)}, {audio.channels} channel(s), "
            f"{audio.encoding.value} {audio.sample_rate_hz} Hz -> {endpoint.url}"
            f"{' (fast)' if args.fast else ' (real time)'}",
            file=sys.stderr,
        )
        view = TerminalView(write_stderr, tty=tty)
        try:
            result = await transcribe_file(
                audio,
                endpoint=endpoint,
                store=store,
                settings=leg_settings(config),
                fast=args.fast,
                roles=roles,
                listener=view.on_segment,
                on_progress=view.on_progress,
                stop=stop,
            )
        finally:
            view.close()
        finals = sum(leg.segments_final for leg in result.legs)
        print(f"{audio.path}: {finals} segment(s) stored in {store.path}", file=sys.stderr)
        print(result.call_id)
    return 130 if stop.is_set() else 0


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


async def calls(args: argparse.Namespace) -> int:
    config = config_from(args)
    async with opened_store(config, existing=True) as store:
        records = await store.list_calls(limit=args.limit)
    if not records:
        print("no calls stored", file=sys.stderr)
        return 0
    print(f"{'CALL':<10} {'STARTED (UTC)':<20} {'DURATION':>9} {'LEGS':>4}  {'STATUS':<12} TITLE")
    for r in records:
        started = (iso_utc(r.started_at_ms) or "")[:19].replace("T", " ")
        duration = "-" if r.active else fmt_ms(call_duration_ms(r))
        status = "active" if r.active else (r.end_cause or "ended")
        print(
            f"{r.call_id[:10]:<10} {started:<20} {duration:>9} {r.leg_count:>4}  {status:<12}",
            r.title,
        )
    return 0


def call_duration_ms(record: CallRecord) -> int:
    """How long an ended call is: its audio (the longest leg), not the time it took to
    transcribe (a ``--fast`` file), else start to end."""
    if record.audio_ms is not None:
        return record.audio_ms
    return record.duration_ms or 0


async def find_call(store: TranscriptStore, prefix: str) -> str:
    """The one call id ``prefix`` names; ConfigError (exit 2) when none or several do."""
    try:
        call_id = await store.find_call_id(prefix)
    except StorageError as exc:
        if isinstance(exc.__cause__, sqlite3.Error):
            raise  # SQLite failed: the work failed (exit 1)
        raise ConfigError(str(exc)) from None  # empty or ambiguous: the user's to fix
    if call_id is None:
        raise ConfigError(f"no call {prefix!r} in {store.path}; list them with `bridge calls`")
    return call_id


async def read_transcript(args: argparse.Namespace) -> CallTranscript:
    """The stored transcript of the call ``args.call`` names."""
    config = config_from(args)
    async with opened_store(config, existing=True) as store:
        call_id = await find_call(store, args.call)
        transcript = await store.get_call(call_id)
    if transcript is None:  # deleted between the two reads
        raise ConfigError(f"call {call_id} was just deleted from {config.db_path}")
    return transcript


async def show(args: argparse.Namespace) -> int:
    sys.stdout.write(render(await read_transcript(args), "txt"))
    return 0


async def export(args: argparse.Namespace) -> int:
    transcript = await read_transcript(args)
    try:
        text = render(transcript, args.format, leg=args.leg)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.output:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot write {args.output}: {exc.strerror or exc}; choose another --output "
                "(or none, for stdout)"
            ) from None
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


async def check(args: argparse.Namespace) -> int:
    config = config_from(args)
    async with asr_endpoint(config) as endpoint:
        report = await check_server(endpoint)
    print("\n".join(report.lines))
    return 0 if report.ok else 1


async def model(args: argparse.Namespace) -> int:
    source: Path = args.source or find_snapshot(os.environ)
    tekken = prepare_model(source, args.out, args.delay_ms)
    print(
        f"wrote {tekken} (transcription_delay_ms={args.delay_ms}), other files linked from {source}"
    )
    print(serve_hint(args.out, args.delay_ms))
    return 0


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


def serve_settings(args: argparse.Namespace) -> tuple[BridgeConfig, SipSettings]:
    """The bridge's and the SIP settings, every problem of both in one ConfigError."""
    problems: list[str] = []
    try:
        config = config_from(args)
    except ConfigError as exc:
        problems += exc.problems
    config_path = args.config or (
        Path(os.environ["BRIDGE_CONFIG"]) if os.environ.get("BRIDGE_CONFIG") else None
    )
    # serve's SIP options go where their variables would (sip_config reads file, then env).
    environ = dict(os.environ)
    for name, value in (
        ("BRIDGE_SIP_HOST", args.sip_host),
        ("BRIDGE_SIP_PORT", args.sip_port),
        ("BRIDGE_SIP_ENABLED", "0" if args.no_sip else None),
    ):
        if value is not None:
            environ[name] = str(value)
    try:
        sip = load_sip_settings(config_path, environ)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))  # a missing file is both's problem
    return config, sip


async def serve(args: argparse.Namespace) -> int:
    config, sip = serve_settings(args)  # every problem before anything starts
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
        async with asr_endpoint(config) as endpoint:
            report = await check_server(endpoint)
            print("\n".join(report.lines), file=sys.stderr)
            if not report.ok:
                print(
                    "bridge: the ASR server is not ready; calls will wait for it", file=sys.stderr
                )
            from bridge.http.server import run_http
            from bridge.live import LiveHub
            from bridge.live.tee import PublishingStore

            hub = LiveHub()
            health = Health()
            services = [
                run_http(
                    config,
                    store=store,
                    hub=hub,
                    endpoint=endpoint,
                    stop=stop,
                    settings=leg_settings(config),
                    health=health,
                )
            ]
            if sip.enabled:
                from bridge.sip.ingest import run_sip_ingest

                for line in sip_summary(sip):
                    print(f"bridge: {line}", file=sys.stderr)
                services.append(
                    run_sip_ingest(
                        sip,
                        store=cast(TranscriptStore, PublishingStore(store, hub)),
                        endpoint=endpoint,
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
