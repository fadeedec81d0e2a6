"""The ``bridge`` command line.

Exit codes: 0 success, 1 the work failed (ASR server, storage, media), 2 bad usage or config.
Errors are one line on stderr, ``bridge: error: ...``, naming the problem and the fix.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from bridge import __version__, commands
from bridge.core.types import AudioEncoding
from bridge.errors import BridgeError, ConfigError
from bridge.export import FORMATS as EXPORT_FORMATS
from bridge.log import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge",
        description="Call transcription bridge: live call legs to timestamped text.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-c", "--config", type=Path, help="TOML config file (env BRIDGE_CONFIG)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def asr_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--asr-url", help="ws://host:port/v1/realtime (env BRIDGE_ASR_URL)")
        p.add_argument("--model", help="served model name (env BRIDGE_ASR_MODEL)")
        p.add_argument("--api-key", help="server API key (prefer env BRIDGE_ASR_API_KEY)")
        p.add_argument(
            "--delay-ms", type=int, help="the server's transcription delay (default 480)"
        )

    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", help="SQLite file (env BRIDGE_DB)")

    p = commands.add_parser("transcribe", help="transcribe WAV or raw audio files")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    asr_options(p)
    db_option(p)
    p.add_argument("--fast", action="store_true", help="as fast as the server allows")
    p.add_argument(
        "--language", help="language hint (ISO 639-1), for engines that use it; Voxtral detects it"
    )
    p.add_argument(
        "--roles", default="caller,agent", help="roles of the left,right channels (or one for mono)"
    )
    p.add_argument(
        "--encoding",
        choices=[e.value for e in AudioEncoding],
        help="raw files: sample encoding (default from the extension)",
    )
    p.add_argument("--rate", type=int, help="raw files: sample rate in Hz")
    p.add_argument("--channels", type=int, help="raw files: channels (default 1)")

    p = commands.add_parser("calls", help="list stored calls, newest first")
    db_option(p)
    p.add_argument("--limit", type=int, default=50)

    p = commands.add_parser("show", help="a call's transcript, speaker-labelled")
    p.add_argument("call", metavar="CALL", help="call id (a unique prefix is enough)")
    db_option(p)

    p = commands.add_parser("export", help="export a call's transcript")
    p.add_argument("call", metavar="CALL", help="call id (a unique prefix is enough)")
    p.add_argument("--format", "-f", choices=list(EXPORT_FORMATS), default="json")
    p.add_argument("--leg", help="only this leg (its id or role); default: all legs merged")
    p.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    db_option(p)

    p = commands.add_parser("check", help="check the ASR server speaks the realtime protocol")
    asr_options(p)

    p = commands.add_parser("model", help="model utilities")
    model_commands = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    p = model_commands.add_parser(
        "prepare", help="a local model directory with another transcription delay"
    )
    p.add_argument("--delay-ms", type=int, required=True, help="80..1200 in steps of 80, or 2400")
    p.add_argument("--out", type=Path, required=True, help="new model directory")
    p.add_argument(
        "--from", dest="source", type=Path, help="model snapshot (default: the local HF cache)"
    )

    p = commands.add_parser(
        "asr-server",
        help="the embedded CPU speech engine behind vLLM's /v1/realtime protocol",
        add_help=False,
    )
    p.add_argument("engine_args", nargs=argparse.REMAINDER, help="see bridge asr-server --help")

    p = commands.add_parser("serve", help="run the bridge service")
    asr_options(p)
    db_option(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["asr-server"]:
        # Its own options (argparse would take a leading --help for ours).
        from bridge.engine import main_asr_server  # loads the recognizer stack only when used

        return main_asr_server(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("bridge: interrupted", file=sys.stderr)
        return 130
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"bridge: error: {problem}", file=sys.stderr)
        return 2
    except BridgeError as exc:
        print(f"bridge: error: {exc}", file=sys.stderr)
        return 1


async def run(args: argparse.Namespace) -> int:
    handler = {
        "transcribe": commands.transcribe,
        "calls": commands.calls,
        "show": commands.show,
        "export": commands.export,
        "check": commands.check,
        "model": commands.model,
        "serve": commands.serve,
    }[args.command]
    return await handler(args)
