"""``bridge serve`` as deployed: a sipp call in, its text out over the live API and REST."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from vllm_server import VllmServer
from websockets.asyncio.client import connect

from bridge.core.g711 import encode_ulaw
from tests.sip.sipp import free_port, free_port_block, run_scenario

pytestmark = pytest.mark.integration

TOKEN = "serve-test-supervisor-token"
ALICE = "serve-test-alice-token"
BOB = "serve-test-bob-token"


def events_of(message: str | bytes) -> list[dict[str, Any]]:
    """One live-API message: an event, or a batch of them."""
    data = json.loads(message)
    return data if isinstance(data, list) else [data]


class Served:
    def __init__(self, proc: subprocess.Popen[str], http_port: int, sip_port: int) -> None:
        self.proc, self.http_port, self.sip_port = proc, http_port, sip_port
        self.lines: list[str] = []

    def get(self, path: str, token: str = TOKEN) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def drain(self) -> None:
        """Read its stderr (and its workers') into :attr:`lines` until it closes: a pipe left
        unread fills up and blocks every process that logs to it."""
        assert self.proc.stderr is not None
        self._drain = threading.Thread(
            target=lambda: self.lines.extend(self.proc.stderr or ()), daemon=True
        )
        self._drain.start()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._drain.join(timeout=10)
        return code


@pytest.fixture
def served(vllm_server: VllmServer, tmp_path: Path) -> Iterator[Served]:
    """``bridge serve`` with SIP on, on free ports, ASR = the session's vLLM server."""
    http_port, sip_port, rtp = free_port(), free_port(), free_port_block(100)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    environ.update(
        BRIDGE_PORT=str(http_port),
        BRIDGE_API_TOKENS=f"{TOKEN}:supervisor,{ALICE}:agent:alice,{BOB}:agent:bob",
        BRIDGE_SIP_AGENTS="bridge=alice",  # sipp dials sip:bridge@...: alice's extension
        BRIDGE_SIP_ENABLED="1",
        BRIDGE_SIP_PORT=str(sip_port),
        BRIDGE_SIP_RTP_PORT_MIN=str(rtp),
        BRIDGE_SIP_RTP_PORT_MAX=str(rtp + 99),
    )
    command = [sys.executable, "-m", "bridge", "serve", "--db", str(tmp_path / "c.db")]
    command += ["--asr-url", vllm_server.url, "--model", vllm_server.model]
    command += ["--api-key", str(vllm_server.api_key)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environ)
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "dashboards and API at" in line:
                break
        assert any(f"SIP on 127.0.0.1:{sip_port}" in line for line in lines), lines
        served = Served(proc, http_port, sip_port)
        served.lines += lines
        served.drain()
        yield served
    finally:
        proc.kill()
        proc.wait()


async def test_a_sip_call_is_pushed_live_and_listed(served: Served, tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    t = np.arange(3 * 8000) / 8000
    pcm = (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    work = tmp_path / "sipp"
    work.mkdir()
    (work / "audio.raw").write_bytes(encode_ulaw(pcm))
    url = f"ws://127.0.0.1:{served.http_port}/api/v1/live?token={ALICE}"
    async with connect(url) as ws:  # alice's own calls only
        call = asyncio.create_task(
            asyncio.to_thread(
                run_scenario,
                work,
                "uac_stream",
                f"127.0.0.1:{served.sip_port}",
                fill={"FILE": "audio.raw", "PT": "0", "CODEC": "PCMU"},
                extra=["-d", "3000"],
            )
        )
        async with asyncio.timeout(90):
            while not any(e["type"] == "call.ended" for e in events):
                events += events_of(await ws.recv())
        result = await call
    assert result.returncode == 0, result.output + result.errors
    kinds = [e["type"] for e in events]
    assert kinds[0] == "call.started" and "leg.started" in kinds
    finals = [e["segment"]["text"] for e in events if e["type"] == "segment.final"]
    assert finals[:1] == ["hello world."]
    assert "segment.partial" in kinds  # the text grew live before it was final
    listed = await asyncio.to_thread(served.get, "/api/v1/calls")
    [stored] = listed["calls"]
    assert (stored["source"], stored["end_cause"]) == ("sip", "bye-remote")
    assert stored["agent"] == "alice"  # mapped from the dialed extension
    assert (await asyncio.to_thread(served.get, "/api/v1/calls", BOB))["calls"] == []
    assert await asyncio.to_thread(served.terminate) == 0


def worker_pids(parent: int) -> list[int]:
    """The bridge's SIP worker processes (``python -m bridge.sip.worker``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and b"bridge.sip.worker" in command:
            found.append(int(entry.name))
    return found


def http_status(served: Served, path: str) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{served.http_port}{path}")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_a_crash_looping_worker_makes_ready_503_with_a_metric_and_an_error_line(
    served: Served,
) -> None:
    """Issue 12 §1: a worker that keeps dying must be visible, not silently restarted."""
    for _ in range(300):  # /ready waits for the SIP worker to listen
        if http_status(served, "/ready")[0] == 200:
            break
        await asyncio.sleep(0.1)
    assert http_status(served, "/ready")[0] == 200
    for _ in range(3):
        [pid] = await until_one(lambda: worker_pids(served.proc.pid), served)
        os.kill(pid, signal.SIGABRT)  # what a pjsua assertion does
        await until_one(
            lambda gone=pid: [p for p in worker_pids(served.proc.pid) if p != gone], served
        )
    status, body = http_status(served, "/ready")
    assert status == 503, body
    problem = json.loads(body)
    assert "crashed 3 times" in problem["detail"] and "SIGABRT" in problem["detail"], problem
    _, metrics = http_status(served, "/metrics")
    assert 'bridge_process_crashes_total{cause="killed by SIGABRT' in metrics, metrics
    assert "bridge_ready 0.0" in metrics
    assert served.terminate() == 0
    errors = [line for line in served.log.splitlines() if "SIP worker 0 (pid" in line]
    assert any("killed by SIGABRT" in line for line in errors), served.log[-3000:]


async def until_one(find: Any, served: Served, timeout_s: float = 30.0) -> list[int]:
    """``find()`` once it returns exactly one item."""
    for _ in range(int(timeout_s / 0.1)):
        found = find()
        if len(found) == 1:
            return list(found)
        await asyncio.sleep(0.1)
    raise AssertionError(f"not one within {timeout_s} s: {find()}; log: {served.log[-3000:]}")
