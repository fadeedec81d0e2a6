"""``bridge asr-server``: the embedded engine on its own, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence

from bridge.engine.config import EngineConfig
from bridge.engine.server import start_engine_server

__all__ = ["main_asr_server"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge asr-server",
        description=(
            "Embedded CPU speech engine (faster-whisper) behind vLLM's /v1/realtime protocol."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", default="base", help="base, tiny.en, or a faster-whisper name")
    model.add_argument("--model-dir", help="a CTranslate2 Whisper model directory")
    parser.add_argument("--language", help="e.g. en; default: detect per utterance stream")
    parser.add_argument("--served-model-name", help="name for session.update (default whisper-*)")
    parser.add_argument("--api-key", help="require Authorization: Bearer KEY on /v1/*")
    parser.add_argument("--max-legs", type=int, help="concurrent legs (default: measured/core)")
    parser.add_argument("--max-model-len", type=int, default=131_072)
    parser.add_argument("--transcription-delay-ms", type=int, default=480)
    parser.add_argument("--cpu-threads", type=int, default=0)
    parser.add_argument("--word-anchor", choices=("end", "start"), default="start")
    parser.add_argument(
        "--max-hold-ms",
        type=int,
        default=6000,
        help="longest a step waits for its text before it goes without it (default 6000)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


async def _serve_until_signalled(config: EngineConfig) -> None:
    engine = await start_engine_server(config)
    print(f"serving {engine.model} on {engine.url} ({engine.max_legs} legs)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await engine.close()


def main_asr_server(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bridge asr-server``; returns the exit status."""
    from bridge.errors import ConfigError

    args = _parser().parse_args(argv)
    level = args.log_level.upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":  # one INFO line per HTTP request and per close otherwise
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
    try:
        config = EngineConfig(
            host=args.host,
            port=args.port,
            model=args.model_dir or args.model,
            served_model_name=args.served_model_name,
            language=args.language,
            api_key=args.api_key,
            max_legs=args.max_legs,
            max_model_len=args.max_model_len,
            transcription_delay_ms=args.transcription_delay_ms,
            cpu_threads=args.cpu_threads,
            word_anchor=args.word_anchor,
            max_hold_ms=args.max_hold_ms,
        )
        asyncio.run(_serve_until_signalled(config))
    except ConfigError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main_asr_server())
