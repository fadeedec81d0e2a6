"""The ``bridge`` command line: a command to its exit code (``main``, the console script).

Exit codes: 0 success, 1 the work failed (ASR server, storage, media, a port in use), 2 bad
usage or config.  Errors are one line on stderr, ``bridge: error: ...``, naming the problem and
the fix.

Every command ends: :func:`run_command` runs it on an event loop that stays open until the threads
the command stopped have ended (aiosqlite answers a failed open from its own thread), and if a
thread is still running once the interpreter should exit -- a resource the command left open, such
as a transcript store whose aiosqlite thread is not a daemon -- the process exits anyway with the
command's code after :data:`EXIT_GRACE_S` instead of waiting for it forever.

The loop is uvloop's where it is installed (a dependency on Linux and macOS): the media forks
wake the loop for every 20 ms frame of every leg, and uvloop's C loop and transports take about
a tenth off the CPU per call (benchmarks/README.md, `bench_forks.py --loop`).
``BRIDGE_EVENT_LOOP=asyncio`` chooses the standard library's loop instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bridge.cli import commands
from bridge.cli.parser import build_parser
from bridge.errors import BridgeError, ConfigError
from bridge.log import setup_logging

logger = logging.getLogger(__name__)

# How long a finished command's stopped threads get to end on the open loop, and how long the
# interpreter may wait for threads at exit before the process exits anyway.
SETTLE_S = 1.0
EXIT_GRACE_S = 2.0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["asr-server"]:
        # Its own options (argparse would take a leading --help for ours).
        from bridge.engine import main_asr_server  # loads the recognizer stack only when used

        return main_asr_server(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(run(args))


def run_command(command: Coroutine[Any, Any, int]) -> int:
    """Run a command to its exit code; errors become one ``bridge: error:`` line.

    Call it last, with the process about to exit: it arms :func:`exit_within`, so the process
    ends even if the command left a thread running.
    """
    try:
        code = _run(command)
    except KeyboardInterrupt:
        print("bridge: interrupted", file=sys.stderr)
        code = 130
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"bridge: error: {problem}", file=sys.stderr)
        code = 2
    except BridgeError as exc:
        print(f"bridge: error: {exc}", file=sys.stderr)
        code = 1
    exit_within(EXIT_GRACE_S, code)
    return code


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop the bridge runs on: uvloop's unless ``BRIDGE_EVENT_LOOP=asyncio`` or it
    is not installed (``None``: asyncio's default)."""
    choice = os.environ.get("BRIDGE_EVENT_LOOP", "uvloop")
    if choice not in ("uvloop", "asyncio"):
        raise ConfigError([f"BRIDGE_EVENT_LOOP={choice!r}: use uvloop or asyncio"])
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # a platform without its wheels (Windows): the standard loop
        return None
    return uvloop.new_event_loop


def _run(command: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run``, with the loop kept open until the threads the command stopped end."""
    try:
        factory = loop_factory()
    except ConfigError:
        command.close()  # never started
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        try:
            return runner.run(command)
        finally:
            # A thread told to stop may still answer the loop (aiosqlite's worker does after a
            # failed connect): with the loop closed it would die with a traceback on stderr.
            runner.run(runner.get_loop().shutdown_default_executor())
            runner.run(_threads_ended(SETTLE_S))


def _other_threads() -> list[threading.Thread]:
    """Threads the interpreter waits for at exit (not daemons), other than this one."""
    me = threading.current_thread()
    return [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]


async def _threads_ended(timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    # A thread has nothing to await: poll it, with the loop running for its callbacks.
    while _other_threads() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def exit_within(grace_s: float, code: int) -> None:
    """Make sure the process exits with ``code``: if threads still run ``grace_s`` after this
    call (the interpreter waits for every non-daemon thread before it exits), say which and
    exit anyway.  A command that closes what it opens never gets here."""
    main = threading.current_thread()

    def watch() -> None:
        time.sleep(grace_s)
        left = [t for t in _other_threads() if t is not main]
        if not left:
            return  # the interpreter is finishing on its own
        logger.error(
            "exiting although %d thread(s) still run: %s (a resource left open: a bridge bug)",
            len(left),
            ", ".join(t.name for t in left),
        )
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)

    threading.Thread(target=watch, name="exit-watchdog", daemon=True).start()


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
