"""The CLI's commands.  Each takes the parsed arguments and returns an exit code.

``serve`` only reads its settings here; :mod:`bridge.app` wires and runs the bridge.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sqlite3
import sys
from pathlib import Path

from bridge import app
from bridge.asr.endpoint import AsrEndpoint
from bridge.asr.pool import AsrPool
from bridge.asr.probe import CheckReport, check_pool, preflight
from bridge.cli.view import TerminalView
from bridge.config import BridgeConfig, load_config
from bridge.config.reader import config_path
from bridge.core.step_clock import STEP_MS
from bridge.core.types import AudioEncoding, LegRole
from bridge.errors import ConfigError, StorageError
from bridge.export import fmt_ms, iso_utc, render
from bridge.files.reader import AudioFile, open_audio
from bridge.model_prepare import find_snapshot, prepare_model, serve_hint
from bridge.transcribe import parse_roles, transcribe_file
from sip_config import SipSettings, load_sip_settings
from storage import CallRecord, CallTranscript, TranscriptStore

logger = logging.getLogger(__name__)


def config_from(args: argparse.Namespace) -> BridgeConfig:
    overrides = {
        ("asr", "url"): getattr(args, "asr_url", None),
        ("asr", "model"): getattr(args, "model", None),
        ("asr", "dialect"): getattr(args, "asr_dialect", None),
        ("asr", "api_key"): getattr(args, "api_key", None),
        ("asr", "language"): getattr(args, "language", None),
        ("asr", "delay_ms"): getattr(args, "delay_ms", None),
        ("asr", "model_dir"): str(args.model_dir) if getattr(args, "model_dir", None) else None,
        ("storage", "db"): getattr(args, "db", None),
        ("serve", "host"): getattr(args, "http_host", None),
        ("serve", "port"): getattr(args, "http_port", None),
    }
    return load_config(args.config, os.environ, overrides)


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
        app.opened_store(config, existing=False) as store,  # a bad --db too
        # A file may wait out a short ASR outage; then it stops, keeping what it has.
        app.asr_pool(config, give_up_after_s=60.0) as pool,
    ):
        await preflight(pool)
        return await _transcribe(args, config, files, roles, pool, store)


async def _transcribe(
    args: argparse.Namespace,
    config: BridgeConfig,
    files: list[AudioFile],
    roles: tuple[LegRole, ...],
    pool: AsrPool,
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
            f"{audio.encoding.value} {audio.sample_rate_hz} Hz -> {pool.summary()}"
            f"{' (fast)' if args.fast else ' (real time)'}",
            file=sys.stderr,
        )
        view = TerminalView(write_stderr, tty=tty)
        try:
            result = await transcribe_file(
                audio,
                endpoint=pool,
                store=store,
                settings=app.leg_settings(config),
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


async def calls(args: argparse.Namespace) -> int:
    config = config_from(args)
    async with app.opened_store(config, existing=True) as store:
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
    async with app.opened_store(config, existing=True) as store:
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
    if not args.timeout > 0:
        raise ConfigError(f"--timeout {args.timeout:g}: give the seconds to wait, more than 0")
    async with app.asr_pool(config) as pool:
        files = pool.first.model_files
        if files is not None:
            print(f"Model files {files.directory}\n  {'tekken.json':<13} OK   {files.describe()}")
        reports = await check_pool(pool, timeout_s=args.timeout)
    for backend, report in zip(pool.backends, reports, strict=True):
        print("\n".join(report.lines + session_length_note(report, backend.endpoint, config)))
    return 0 if all(report.ok for report in reports) else 1


def session_length_note(
    report: CheckReport, endpoint: AsrEndpoint, config: BridgeConfig
) -> list[str]:
    """A warning when the server's sessions end before the bridge recycles them: no audio is
    lost (the leg starts a new session where the server ended one), but the cut may fall inside
    a word instead of at a pause (the recipe: one text token per 80 ms of audio)."""
    served = next((m for m in report.models if m.name == endpoint.model), None)
    if served is None or served.max_model_len is None:
        return []
    held_s = endpoint.clock.session_seconds(served.max_model_len)
    # A leg recycles at the first pause after recycle_after_s; a segment is cut at max_segment_s.
    needed_s = config.asr.recycle_after_s + config.segments.max_segment_s
    if held_s >= needed_s:
        return []
    tokens = endpoint.clock.prompt_tokens + int(needed_s * 1000 / STEP_MS) + 1
    return [
        f"  {'session':<13} WARN a session holds {held_s:.0f} s of audio, but the bridge "
        f"recycles after up to {needed_s:g} s (asr.recycle_after_s + segments.max_segment_s): "
        f"serve with --max-model-len {tokens} or more, or lower asr.recycle_after_s"
    ]


async def model(args: argparse.Namespace) -> int:
    source: Path = args.source or find_snapshot(os.environ)
    copy = prepare_model(source, args.out, args.delay_ms)
    print(
        f"wrote {copy.directory / 'tekken.json'} (transcription_delay_ms={args.delay_ms}), other "
        f"files linked from {source}"
    )
    print(f"mistral-common reads it back: {copy.describe()}")
    print(serve_hint(args.out, args.delay_ms))
    return 0


def serve_settings(args: argparse.Namespace) -> tuple[BridgeConfig, SipSettings]:
    """The bridge's and the SIP settings, every problem of both in one ConfigError."""
    problems: list[str] = []
    try:
        config = config_from(args)
    except ConfigError as exc:
        problems += exc.problems
    path = config_path(args.config, os.environ)
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
        sip = load_sip_settings(path, environ)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))  # a missing file is both's problem
    return config, sip


async def serve(args: argparse.Namespace) -> int:
    config, sip = serve_settings(args)  # every problem before anything starts
    return await app.serve(config, sip)
