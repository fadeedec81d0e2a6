"""The ``bridge`` command line's arguments: every command, its options and their variables.

Usage errors are one ``bridge: error:`` line with exit code 2 (:class:`ArgumentParser`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from bridge import __version__
from bridge.core.types import AudioEncoding
from bridge.export import FORMATS as EXPORT_FORMATS


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the bridge's error format: one ``bridge: error:`` line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"bridge: error: {message} (see {self.prog} --help)\n")


def call_prefix(text: str) -> str:
    """A CALL argument: an id or a prefix of one, never empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "an empty call id: pass an id or a unique prefix of one (listed by `bridge calls`)"
        )
    return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def port_number(text: str) -> int:
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 5 else 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1..65535, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="bridge",
        description="Call transcription bridge: live call legs to timestamped text.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-c", "--config", type=Path, metavar="FILE", help="TOML config file (env BRIDGE_CONFIG)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def asr_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--asr-url", help="ws://host:port/v1/realtime (env BRIDGE_ASR_URL)")
        p.add_argument("--model", help="served model name (env BRIDGE_ASR_MODEL)")
        p.add_argument(
            "--asr-dialect", choices=("vllm", "openai"),
            help="the server's protocol: vLLM's realtime session (default) or OpenAI's "
            "transcription session (env BRIDGE_ASR_DIALECT)",
        )  # fmt: skip
        p.add_argument("--api-key", help="server API key (prefer env BRIDGE_ASR_API_KEY)")
        p.add_argument(
            "--delay-ms", type=int,
            help="the server's transcription delay (default: the model directory's, or 480)",
        )  # fmt: skip
        p.add_argument(
            "--model-dir", type=Path, metavar="DIR",
            help="the served model's files: delay and step clock read from its tekken.json "
            "(env BRIDGE_ASR_MODEL_DIR; needs the model extra, pip install '.[model]')",
        )  # fmt: skip

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
    p.add_argument("--limit", type=positive_int, default=50, help="at most this many (50)")

    p = commands.add_parser("show", help="a call's transcript, speaker-labelled")
    p.add_argument(
        "call", metavar="CALL", type=call_prefix, help="call id (a unique prefix is enough)"
    )
    db_option(p)

    p = commands.add_parser("export", help="export a call's transcript")
    p.add_argument(
        "call", metavar="CALL", type=call_prefix, help="call id (a unique prefix is enough)"
    )
    p.add_argument("--format", "-f", choices=list(EXPORT_FORMATS), default="json")
    p.add_argument("--leg", help="only this leg (its id or role); default: all legs merged")
    p.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    db_option(p)

    p = commands.add_parser("check", help="check the ASR server speaks the realtime protocol")
    asr_options(p)
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="S",
        help="how long the test session may take before the server counts as stuck (default 60)",
    )  # fmt: skip

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

    p = commands.add_parser(
        "serve",
        help="run the bridge: SIP, WebRTC, dashboards and APIs",
        description="Answer SIP calls and WebRTC sessions, transcribe every leg live, serve the "
        "dashboards and APIs.  Options override the config file and the environment.",
        epilog="Out of the box SIP answers on 127.0.0.1:5080 and HTTP on 127.0.0.1:8080, for "
        "this machine only.  For a PBX on the LAN: --sip-host THIS_MACHINES_LAN_ADDRESS and "
        "BRIDGE_SIP_ALLOWED_SOURCES=THE_PBXS_ADDRESS.  Every [sip] setting: the README's SIP "
        "settings table.",
    )
    # default=SUPPRESS: `bridge -c FILE serve` keeps FILE unless `serve -c` names another.
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="TOML config file (env BRIDGE_CONFIG)",
    )
    p.add_argument(
        "--sip-host",
        metavar="ADDRESS",
        help="address the SIP workers bind (env BRIDGE_SIP_HOST; default 127.0.0.1)",
    )
    p.add_argument(
        "--sip-port",
        type=port_number,
        metavar="PORT",
        help="the first SIP worker's port (env BRIDGE_SIP_PORT; default 5080)",
    )
    p.add_argument(
        "--no-sip", action="store_true", help="answer no SIP calls (env BRIDGE_SIP_ENABLED=0)"
    )
    p.add_argument(
        "--http-host",
        metavar="ADDRESS",
        help="address of the dashboards and APIs (env BRIDGE_HOST; default 127.0.0.1)",
    )
    p.add_argument(
        "--http-port",
        type=port_number,
        metavar="PORT",
        help="port of the dashboards and APIs (env BRIDGE_PORT; default 8080)",
    )
    asr_options(p)
    db_option(p)
    return parser
