"""``bridge serve`` as a newcomer runs it (issue 13 §4, §5): SIP on by default, its options in
``--help``, and start-up failures as one ``bridge: error:`` line with a documented exit code.

The ASR server is a closed port: ``serve`` reports it and goes on, which is all these need.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bridge_cli import bridge

from tests.sip.sipp import free_port, free_port_block

pytestmark = pytest.mark.integration

TIMEOUT_S = 60


def down_asr() -> str:
    return f"ws://127.0.0.1:{free_port(socket.SOCK_STREAM)}/v1/realtime"


def serve_args(tmp_path: Path, *extra: str | Path) -> list[str | Path]:
    return ["serve", "--db", tmp_path / "c.db", "--asr-url", down_asr(), *extra]


def rtp_env() -> dict[str, str]:
    rtp = free_port_block(40)
    return {"BRIDGE_SIP_RTP_PORT_MIN": str(rtp), "BRIDGE_SIP_RTP_PORT_MAX": str(rtp + 39)}


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``bridge: error:`` line, last; no traceback, no raw uvicorn or pjsua line."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if "error" in line.lower() or "Traceback" in line]
    assert errors == lines[-1:], result.stderr
    assert lines[-1].startswith("bridge: error: "), result.stderr
    return lines[-1]


def test_serve_help_lists_the_everyday_options_with_their_variables() -> None:
    result = bridge("serve", "--help", timeout_s=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split("options:", 1)[1].split())  # argparse wraps
    for option, variable in [
        ("-c FILE, --config FILE", "BRIDGE_CONFIG"),
        ("--sip-host ADDRESS", "BRIDGE_SIP_HOST"),
        ("--sip-port PORT", "BRIDGE_SIP_PORT"),
        ("--no-sip", "BRIDGE_SIP_ENABLED=0"),
        ("--http-host ADDRESS", "BRIDGE_HOST"),
        ("--http-port PORT", "BRIDGE_PORT"),
    ]:
        assert option in text, option
        after = text[text.index(option) :]
        assert variable in after[: after.index(")") + 1], (option, variable)
    assert "BRIDGE_SIP_ALLOWED_SOURCES" in text  # how to let a PBX on the LAN in


def test_config_file_after_serve_is_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[sip]\nport = 0\n[serve]\nport = 70000\n")
    for args in (["-c", bad, *serve_args(tmp_path)], [*serve_args(tmp_path), "-c", bad]):
        result = bridge(*args, timeout_s=TIMEOUT_S)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert all(line.startswith("bridge: error: ") for line in lines), result.stderr
        assert any("serve port 70000" in line for line in lines), result.stderr
        assert any("sip.port" in line for line in lines), result.stderr


class Serving:
    """``bridge serve`` started in the background, its stderr read until it listens."""

    def __init__(self, args: list[str | Path], env: dict[str, str]) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        environ.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", *map(str, args)],
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
        )
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if "dashboards and API at" in line or "bridge: error:" in line:
                break

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=TIMEOUT_S)
        return self.proc.returncode, err


@pytest.fixture
def started() -> Iterator[list[Serving]]:
    running: list[Serving] = []
    yield running
    for serving in running:
        serving.proc.kill()
        serving.proc.wait()


def sip_options(port: int) -> str:
    """Send a SIP OPTIONS over UDP (RFC 3261 §11) and return the status line of the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        me = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:bridge@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-cli-serve-{time.monotonic_ns()}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:test@127.0.0.1:{me}>;tag=cli-serve\r\n"
            f"To: <sip:bridge@127.0.0.1:{port}>\r\n"
            f"Call-ID: cli-serve-{time.monotonic_ns()}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            f"Contact: <sip:test@127.0.0.1:{me}>\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        for _ in range(20):  # the worker may still be starting
            sock.sendto(request.encode(), ("127.0.0.1", port))
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            return data.decode(errors="replace").split("\r\n", 1)[0]
    raise AssertionError(f"no answer to OPTIONS on 127.0.0.1:{port}")


def test_serve_answers_sip_by_default_and_says_where(
    tmp_path: Path, started: list[Serving]
) -> None:
    """No config, no BRIDGE_SIP_ENABLED: SIP answers on loopback from the first run."""
    sip_port, http_port = free_port(), free_port(socket.SOCK_STREAM)
    serving = Serving(
        serve_args(tmp_path, "--sip-port", str(sip_port), "--http-port", str(http_port)),
        rtp_env(),
    )
    started.append(serving)
    text = "\n".join(serving.lines)
    assert f"bridge: SIP on 127.0.0.1:{sip_port} (udp), 1 worker(s); calls from 127.0.0.0/8" in (
        text
    )
    assert "for a PBX on the LAN: --sip-host" in text and "BRIDGE_SIP_ALLOWED_SOURCES" in text
    assert "direct mode transcribes the party that reaches the bridge" in text
    assert "SIPREC" in text and "b2bua" in text
    assert f"bridge: HTTP on 127.0.0.1:{http_port} answers this machine only" in text
    assert f"bridge: dashboards and API at http://127.0.0.1:{http_port}/" in text
    assert sip_options(sip_port).startswith("SIP/2.0 200"), text
    code, err = serving.stop()
    assert code == 0, text + err


def test_no_sip_turns_it_off(tmp_path: Path, started: list[Serving]) -> None:
    sip_port, http_port = free_port(), free_port(socket.SOCK_STREAM)
    serving = Serving(
        serve_args(
            tmp_path, "--no-sip", "--sip-port", str(sip_port), "--http-port", str(http_port)
        ),
        {},
    )
    started.append(serving)
    text = "\n".join(serving.lines)
    assert "bridge: SIP ingest is off" in text and "SIP on " not in text, text
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", sip_port))  # nobody took it
    code, err = serving.stop()
    assert code == 0, text + err


def test_http_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = bridge(
            *serve_args(tmp_path, "--no-sip", "--http-port", str(port)), timeout_s=TIMEOUT_S
        )
    assert result.returncode == 1, result.stderr  # was uvicorn's exit code 3
    line = one_error_line(result)
    assert f"HTTP port 127.0.0.1:{port} is taken by another program" in line
    assert "--http-port" in line and "BRIDGE_PORT" in line


def test_http_host_not_on_this_machine_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = bridge(
        *serve_args(tmp_path, "--no-sip", "--http-host", "192.0.2.77"), timeout_s=TIMEOUT_S
    )
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert "HTTP host 192.0.2.77 is not an address of this machine" in line
    assert "--http-host" in line


def test_unwritable_database_is_one_line_and_exit_1() -> None:
    result = bridge("serve", "--db", "/proc/bridge-test.db", "--no-sip", timeout_s=TIMEOUT_S)
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)  # was this line, then a 20-line thread traceback
    assert "opening /proc/bridge-test.db failed" in line and "writable" in line


def test_sip_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = bridge(
            *serve_args(
                tmp_path, "--sip-port", str(port), "--http-port", str(free_port(socket.SOCK_STREAM))
            ),
            env=rtp_env(),
            timeout_s=TIMEOUT_S,
        )
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert f"SIP port 127.0.0.1:{port} is taken by another program" in line
    assert "--sip-port" in line


def test_sip_host_not_on_this_machine_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = bridge(
        *serve_args(
            tmp_path,
            "--sip-host",
            "192.0.2.77",
            "--sip-port",
            str(free_port()),
            "--http-port",
            str(free_port(socket.SOCK_STREAM)),
        ),
        env=rtp_env(),
        timeout_s=TIMEOUT_S,
    )
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert "SIP host 192.0.2.77 is not an address of this machine" in line
    assert "--sip-host" in line
