"""Run sipp (Debian ``sip-tester``) scenarios from ``tests/sip/scenarios`` against the bridge.

Each run writes its scenario copy, audio and traces into its own folder, binds only 127.0.0.1,
is bounded by a timeout and is stopped by its PID.  No pytest imports: benchmarks can use it.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SETUP_HINT = "bash .ci/setup-sip.sh"

# Placeholders a test leaves unfilled get these (uac_refused.xml's offer headers, callee user).
DEFAULT_FILL = {"HEADERS": "Content-Type: application/sdp", "USER": "bridge", "CONTACT_PARAMS": ""}

# RFC 3551 static payload types sipp's rtp_stream can play from a raw file.
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8}


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for UDP (and, checked too, TCP) on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, other) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port on 127.0.0.1")


def free_port_block(count: int, *, low: int = 20000, high: int = 60000) -> int:
    """The first (even) of ``count`` consecutive ports that are free for UDP right now."""
    first = random.randrange(low, high - count)
    for attempt in range(200):
        base = (low + (first - low + attempt * (count + 2)) % (high - low - count)) & ~1
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError(f"no {count} consecutive free UDP ports on 127.0.0.1")


@dataclass
class SippResult:
    returncode: int
    messages: str  # -trace_msg: every SIP message sent and received
    log: str  # -trace_logs: the scenario's <log> lines
    errors: str  # -trace_err
    output: str  # stdout + stderr

    def final_status(self) -> tuple[int, str] | None:
        """The last final response (status, reason phrase) the caller received."""
        found = re.findall(r"^SIP/2\.0 ([2-6]\d\d) ([^\r\n]*)", self.messages, re.M)
        return (int(found[-1][0]), found[-1][1]) if found else None


def run_scenario(
    work_dir: Path,
    name: str,
    target: str,
    *,
    fill: dict[str, str] | None = None,
    extra: list[str] | None = None,
    timeout_s: float = 30.0,
    calls: int = 1,
    rate_cps: float = 10.0,
    sip_port: int | None = None,
) -> SippResult:
    """Run ``calls`` of ``scenarios/<name>.xml`` (placeholders ``@KEY@`` filled from ``fill``,
    else :data:`DEFAULT_FILL`).

    Up to ``calls`` run at once, started at ``rate_cps`` calls per second.  ``sip_port``: where
    sipp listens (a callee scenario's address); a free port by default.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    text = (SCENARIOS / f"{name}.xml").read_text()
    for key, value in {**DEFAULT_FILL, **(fill or {})}.items():
        text = text.replace(f"@{key}@", value)
    scenario = work_dir / f"{name}.xml"
    scenario.write_text(text)
    sip_port = sip_port or free_port()
    media_port = free_port_block(4 * calls)
    command = [
        SIPP,
        target,
        "-sf",
        str(scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(sip_port),
        "-mi",
        "127.0.0.1",
        "-mp",
        str(media_port),
        "-m",
        str(calls),
        "-l",
        str(calls),
        "-r",
        str(rate_cps),
        "-nostdin",
        "-timeout",
        f"{int(timeout_s)}s",
        "-trace_msg",
        "-message_file",
        str(work_dir / "messages.log"),
        "-trace_err",
        "-error_file",
        str(work_dir / "errors.log"),
        "-trace_logs",
        "-log_file",
        str(work_dir / "scenario.log"),
        *(extra or []),
    ]
    process = subprocess.Popen(
        command,
        cwd=work_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s + 10)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate()
    return SippResult(
        process.returncode,
        _read(work_dir / "messages.log"),
        _read(work_dir / "scenario.log"),
        _read(work_dir / "errors.log"),
        output,
    )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
