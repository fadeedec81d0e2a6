"""Kamailio in front of the SIP workers: one SIP address, calls spread over the workers.

::

    render_dispatcher_list(settings)          -> dispatcher.list: one line per worker (pure)
    render_kamailio_cfg(settings, list_path)  -> kamailio.cfg from sip_config/kamailio.cfg.tmpl
    options_request(...), reply_status(...)   the OPTIONS probe that says Kamailio listens (pure)
    kamailio_dispatcher(settings)             the process: ``async with ... as d: d.port``

The pjsua2 wheel takes at most 4 calls per process (pjsua2.md §4.1), so the bridge runs several
worker processes, worker ``k`` on ``port + k``; Kamailio's dispatcher module gives them one
address (``host:dispatcher_port``), sends each INVITE to the worker with the fewest calls, tries
the next one on 486/503/408 and answers 503 + Retry-After when every worker is full
(test-peers.md §3b).  What the routing script does, and why, is in its comments
(``sip_config/kamailio.cfg.tmpl``).

The process runs in the foreground (``-DD``) and logs to stderr (``-E``); its lines go to the
logger ``bridge.sip.kamailio``.  It is stopped by its PID (SIGTERM; the main process stops its
children).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

from bridge.errors import ConfigError, TransportError
from sip_config import SipSettings

logger = logging.getLogger(__name__)
kamailio_logger = logging.getLogger("bridge.sip.kamailio")

SETUP_HINT = "apt-get install kamailio (or bash .ci/setup-sip.sh)"
KAMAILIO_PATHS = ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio")  # not on a user's PATH
SET_ID = 1  # the dispatcher set of the workers
FR_TIMER_MS = 3000  # a worker answers 100 Trying at once: silence this long = gone (408)
FR_INV_TIMER_MS = 30000  # after 100 Trying, the final answer comes within this
PING_INTERVAL_S = 2  # OPTIONS keepalive to every worker
SHM_MB = 32  # kamailio -m: shared memory (transactions, dispatcher state)
PKG_MB = 8  # kamailio -M: private memory per process
READY_TIMEOUT_S = 10.0
PROBE_INTERVAL_S = 0.2
STOP_TIMEOUT_S = 5.0
LOG_LINES_KEPT = 30  # the last lines, quoted when kamailio fails to start

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
_LEVEL = re.compile(r"\b(ALERT|BUG|CRITICAL|ERROR|WARNING|NOTICE|INFO|DEBUG):")
# Kamailio's main process reports each child's normal exit at ALERT when it is stopped.
_NORMAL_EXIT = re.compile(r"handle_sigs\(\): child process \d+ exited normally")
_LEVELS = {
    "ALERT": logging.CRITICAL,
    "BUG": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "NOTICE": logging.INFO,  # the script's own lines: failovers, workers down/up
    "INFO": logging.DEBUG,  # start-up chatter
    "DEBUG": logging.DEBUG,
}


# -- rendering (pure) ---------------------------------------------------------------------------


def _uri_host(host: str) -> str:
    """An IP address as it goes into a SIP URI or a Kamailio socket: IPv6 in brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def worker_transport(settings: SipSettings) -> str:
    """How the dispatcher reaches the workers: UDP when they listen on it (loopback or LAN:
    no MTU trouble there), else TCP."""
    return "udp" if "udp" in settings.transports else "tcp"


def worker_uri(settings: SipSettings, index: int) -> str:
    """The SIP URI of worker ``index``, as a dispatcher destination."""
    uri = f"sip:{_uri_host(settings.host)}:{settings.worker_port(index)}"
    return uri if worker_transport(settings) == "udp" else f"{uri};transport=tcp"


def render_dispatcher_list(settings: SipSettings) -> str:
    """The dispatcher module's ``list_file``: "setid(int) destination(sip uri) flags(int,opt)
    priority(int,opt) attrs(str,opt)", one line per worker, each with its own ``duid`` (the
    key of its call load, algorithm 10)."""
    lines = [
        "# call-bridge SIP workers (rendered by bridge.sip.dispatcher; do not edit)",
        "# setid destination flags priority attrs",
    ]
    lines += [
        f"{SET_ID} {worker_uri(settings, k)} 0 0 duid=worker{k}" for k in range(settings.workers)
    ]
    return "\n".join(lines) + "\n"


@cache
def _template() -> str:
    return files("sip_config").joinpath("kamailio.cfg.tmpl").read_text(encoding="utf-8")


def render_kamailio_cfg(
    settings: SipSettings, *, list_path: str = "dispatcher.list", template: str | None = None
) -> str:
    """``kamailio.cfg`` for ``settings``: listen on ``host:dispatcher_port`` (each transport),
    workers from ``list_path`` (:func:`render_dispatcher_list`), ``allowed_sources`` checked.

    Raises:
        ValueError: ``list_path`` cannot go into the file, or the template and this function
            disagree on the placeholders (a bug).
    """
    if any(c in list_path for c in '"\n\r'):
        raise ValueError(f"dispatcher list path {list_path!r}: no quotes or newlines allowed")
    address = _uri_host(settings.host)
    advertise = ""
    if settings.public_address:
        advertise = f" advertise {_uri_host(settings.public_address)}:{settings.dispatcher_port}"
    listen = "\n".join(
        f"listen={t}:{address}:{settings.dispatcher_port}{advertise}" for t in settings.transports
    )
    if settings.retry_after_s > 0:
        retry_after = f'append_to_reply("Retry-After: {settings.retry_after_s}\\r\\n");'
    else:
        retry_after = 'xlog("L_DBG", "retry_after_s = 0: no Retry-After header\\n");'
    values = {
        "LISTEN": listen,
        "TCP": "" if "tcp" in settings.transports else "disable_tcp=yes",
        "ADDRESS": address,
        "LIST_FILE": list_path,
        "ALLOWED_SOURCES": ",".join(str(net) for net in settings.allowed_sources),
        "RETRY_AFTER": retry_after,
        "FR_TIMER_MS": str(FR_TIMER_MS),
        "FR_INV_TIMER_MS": str(FR_INV_TIMER_MS),
        "PING_INTERVAL_S": str(PING_INTERVAL_S),
    }
    text = _template() if template is None else template
    used: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"kamailio template: unknown placeholder @{name}@")
        used.add(name)
        return values[name]

    rendered = _PLACEHOLDER.sub(fill, text)
    if unused := set(values) - used:
        raise ValueError(f"kamailio template: placeholders never used: {sorted(unused)}")
    return rendered


def options_request(
    target: tuple[str, int], local: tuple[str, int], call_id: str, transport: str = "udp"
) -> bytes:
    """An out-of-dialog OPTIONS to the dispatcher (RFC 3261 §11: "query a server as to its
    capabilities"); any answer shows it is listening."""
    host, port = _uri_host(target[0]), target[1]
    via_host = _uri_host(local[0])
    branch = f"z9hG4bK{call_id[:16]}"  # RFC 3261 §8.1.1.7: the magic cookie, then unique
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} {via_host}:{local[1]};branch={branch};rport\r\n"
        f"From: <sip:bridge@{via_host}>;tag={call_id[:8]}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def reply_status(data: bytes, call_id: str) -> int | None:
    """The status code of ``data`` if it is a SIP response to the request with ``call_id``."""
    text = data.decode("utf-8", "replace")
    status = re.match(r"SIP/2\.0 ([1-6]\d\d) ", text)
    if status is None:
        return None
    # RFC 3261 §7.3.3: Call-ID has the compact form "i".
    found = re.search(r"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", text, re.M | re.I)
    if found is None or found.group(1) != call_id:
        return None
    return int(status.group(1))


# -- the process (I/O) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dispatcher:
    """A running Kamailio: where it listens and what it was started from."""

    host: str
    port: int
    pid: int
    run_dir: Path


def find_kamailio() -> str:
    """The kamailio binary.

    Raises:
        ConfigError: it is not installed.
    """
    found = shutil.which("kamailio") or next(
        (p for p in KAMAILIO_PATHS if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise ConfigError(
            "the SIP dispatcher needs Kamailio, which is not installed: "
            f'{SETUP_HINT}; or set [sip] dispatcher = "off" (BRIDGE_SIP_DISPATCHER=off) '
            "and send calls to the workers' own ports"
        )
    return found


@contextlib.asynccontextmanager
async def kamailio_dispatcher(
    settings: SipSettings,
    *,
    run_dir: Path | None = None,
    kamailio: str | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> AsyncIterator[Dispatcher]:
    """Run Kamailio in front of the workers of ``settings`` until the block ends.

    The config files go to ``run_dir`` (a fresh temporary folder, removed afterwards, when
    ``None``).  Returns once Kamailio answers an OPTIONS on ``host:dispatcher_port``.  Start it
    after the workers listen: a worker that does not answer is marked down until a keepalive
    reaches it.

    Raises:
        ConfigError: Kamailio is not installed.
        TransportError: it exited or did not answer within ``ready_timeout_s`` (its last log
            lines are in the message: a port taken, a bad address).
    """
    binary = kamailio or find_kamailio()
    with contextlib.ExitStack() as stack:
        if run_dir is None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kamailio-")))
        run_dir.mkdir(parents=True, exist_ok=True)
        list_path = run_dir / "dispatcher.list"
        cfg_path = run_dir / "kamailio.cfg"
        list_path.write_text(render_dispatcher_list(settings), encoding="utf-8")
        cfg_path.write_text(
            render_kamailio_cfg(settings, list_path=str(list_path)), encoding="utf-8"
        )
        process = await asyncio.create_subprocess_exec(
            binary,
            "-f",
            str(cfg_path),
            "-DD",  # "do not daemonize creator": stays our child, stopped by its PID
            "-E",  # log to stderr
            "-m",
            str(SHM_MB),
            "-M",
            str(PKG_MB),
            "-w",
            str(run_dir),  # working directory (core files)
            "-Y",
            str(run_dir),  # runtime directory, instead of /run/kamailio
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        where = f"{_uri_host(settings.host)}:{settings.dispatcher_port}"
        logger.info(
            "SIP dispatcher: kamailio (pid %d) on %s (%s) for %d worker(s)",
            process.pid,
            where,
            "+".join(settings.transports),
            settings.workers,
        )
        lines: deque[str] = deque(maxlen=LOG_LINES_KEPT)
        assert process.stdout is not None
        reader = asyncio.create_task(_forward_log(process.stdout, lines), name="kamailio-log")
        try:
            failure = await _wait_listening(process, settings, ready_timeout_s)
            if failure is not None:
                await _stop(process)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), 2.0)  # its last lines
                log = "\n  ".join(lines) or "(no output)"
                raise TransportError(
                    f"SIP dispatcher: kamailio for {where} {failure} (port taken? its log:)\n"
                    f"  {log}",
                    retryable=False,
                )
            yield Dispatcher(settings.host, settings.dispatcher_port, process.pid, run_dir)
        finally:
            await _stop(process)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, 2.0)  # EOF once every kamailio process is gone
            reader.cancel()
            logger.info("SIP dispatcher: kamailio (pid %d) stopped", process.pid)


async def _forward_log(stream: asyncio.StreamReader, lines: deque[str]) -> None:
    while raw := await stream.readline():
        line = raw.decode("utf-8", "replace").rstrip()
        if not line:
            continue
        lines.append(line)
        level = _LEVEL.search(line)
        if level is None or _NORMAL_EXIT.search(line):
            kamailio_logger.debug("%s", line)
        else:
            kamailio_logger.log(_LEVELS[level.group(1)], "%s", line)


async def _wait_listening(
    process: asyncio.subprocess.Process, settings: SipSettings, timeout_s: float
) -> str | None:
    """``None`` once kamailio answers an OPTIONS, else why it did not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if process.returncode is not None:
            return f"exited with code {process.returncode} before listening"
        if await _probe(settings):
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), PROBE_INTERVAL_S)
    return f"did not answer OPTIONS within {timeout_s} s"


async def _probe(settings: SipSettings) -> bool:
    """Whether something answers an OPTIONS on the dispatcher's address (one try)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    target = (settings.host, settings.dispatcher_port)
    call_id = f"{uuid.uuid4().hex}@bridge-probe"
    if "udp" in settings.transports:
        loop = asyncio.get_running_loop()
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.bind((settings.host, 0))
            local = sock.getsockname()[:2]
            await loop.sock_sendto(sock, options_request(target, local, call_id), target)
            try:
                async with asyncio.timeout(PROBE_INTERVAL_S):
                    while True:
                        data = await loop.sock_recv(sock, 65535)
                        if reply_status(data, call_id) is not None:
                            return True
            except (TimeoutError, ConnectionRefusedError):
                return False
    try:
        async with asyncio.timeout(PROBE_INTERVAL_S):
            reader, writer = await asyncio.open_connection(*target)
            try:
                local = writer.get_extra_info("sockname")[:2]
                writer.write(options_request(target, local, call_id, "tcp"))
                head = await reader.readuntil(b"\r\n\r\n")
                return reply_status(head, call_id) is not None
            finally:
                writer.close()
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        return False


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    # kamailio's main process stops its children on SIGTERM ("Thank you for flying kamailio").
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        logger.warning("SIP dispatcher: kamailio (pid %d) did not stop; killing it", process.pid)
        process.kill()
        await process.wait()
