"""A pool of two REAL vLLM servers on CPU (issue 16 item 1), asserted on what lands in SQLite
and on the pool's own counts:

* legs are spread by free budget, and admission counts the pool's budget;
* one server SIGKILLed mid-call: its legs go on on the other at once, every sample transcribed
  once (the generations cover the audio exactly, no gap), the finals stored before the kill
  kept; the killed server is unhealthy with the reason, and once it is back its probe makes it
  healthy and it takes the next leg.
"""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from bridge_cli import bridge
from test_cli_serve import Serving
from test_pipeline import LegRun, finals, run_leg, tone
from vllm_server import VllmServer

from bridge.asr.client import AsrEndpoint
from bridge.asr.pool import AsrPool
from bridge.leg import capacity_problem
from tests.http.served import ALICE, serve_bridge
from tests.sip.sipp import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def second_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """Another real vLLM server beside the session's (no API key: each backend has its own)."""
    server = VllmServer(work_dir=tmp_path_factory.mktemp("vllm-second"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pool_of(a: VllmServer, a_legs: int, b: VllmServer, b_legs: int) -> AsrPool:
    endpoints = [
        AsrEndpoint(url=s.url, model=s.model, api_key=s.api_key, max_legs=n, stall_timeout_s=10)
        for s, n in ((a, a_legs), (b, b_legs))
    ]
    return AsrPool(endpoints, ["a", "b"])


async def run_legs(
    pool: AsrPool,
    n: int,
    audio: np.ndarray,
    tmp_path: Path,
    at_second: dict[int, Callable[[], Awaitable[None]]],
) -> list[LegRun]:
    """``n`` legs at once in real time, each its own database ``k.db``; the first runs the
    hooks."""
    return await asyncio.gather(
        *(
            run_leg(
                tmp_path / f"{k}.db",
                audio,
                realtime=True,
                endpoint=pool,
                at_second=at_second if k == 0 else None,
            )
            for k in range(n)
        )
    )


def kinds(run: LegRun, kind: str) -> list[str]:
    return [e.detail for e in run.transcript.events if e.kind == kind]


def covered(run: LegRun) -> int:
    """Samples the generations transcribed (a killed generation counts what got steps)."""
    return sum(int(g["samples"]) for g in run.generations())


async def test_legs_are_spread_by_free_budget(
    vllm_server: VllmServer, second_server: VllmServer, tmp_path: Path
) -> None:
    pool = pool_of(second_server, 2, vllm_server, 1)
    seen: dict[str, object] = {}

    async def look() -> None:
        seen["legs"] = [b.legs for b in pool.backends]
        seen["admission"] = capacity_problem(pool)

    audio = tone(2.0)
    runs = await run_legs(pool, 3, audio, tmp_path, at_second={1: look})
    # a (2 free) first, then a tie at 1 free each: the one with fewer legs (b), then a.
    assert seen == {
        "legs": [2, 1],
        "admission": "transcription capacity is full (3 legs on 2 of 2 ASR servers that are "
        "healthy and keeping up)",
    }
    assert [b.legs for b in pool.backends] == [0, 0] and capacity_problem(pool) is None
    for run in runs:
        assert run.result.failure is None and run.transcript.gaps == ()
        assert len(kinds(run, "asr.session")) == 1 and covered(run) == len(audio)
        assert "hello" in " ".join(s.text for s in finals(run))


async def test_a_killed_server_hands_its_legs_to_the_other(
    vllm_server: VllmServer, second_server: VllmServer, tmp_path: Path
) -> None:
    pool = pool_of(second_server, 4, vllm_server, 2)  # both legs start on a (more budget)
    stop = asyncio.Event()
    probes = asyncio.create_task(pool.watch(stop, interval_s=0.5))
    finals_at_kill: list[str] = []
    placed: list[list[int]] = []

    async def kill() -> None:
        placed.append([b.legs for b in pool.backends])
        await asyncio.sleep(0.5)  # a final committed 1 s ago is durable
        with sqlite3.connect(tmp_path / "0.db") as conn:
            finals_at_kill.extend(
                r[0] for r in conn.execute("SELECT text FROM segments WHERE final")
            )
        await asyncio.to_thread(second_server.kill)

    audio = tone(6.0)
    try:
        runs = await run_legs(pool, 2, audio, tmp_path, at_second={3: kill})
        a, b = pool.backends
        assert placed == [[2, 0]]
        assert not a.healthy and a.failures == 1 and a.problem
        assert [a.legs, b.legs] == [0, 0]
        for run in runs:
            # Moved at once, with the audio no step had covered sent again to b.
            [move] = kinds(run, "asr.failover")
            match = re.fullmatch(r"from=a to=b replay_ms=(\d+)", move)
            assert match and 0 <= int(match.group(1)) <= 2000, move
            assert len(kinds(run, "asr.session")) == 2
            # Nothing lost, nothing twice: the generations cover the audio exactly, no gap.
            assert run.transcript.gaps == () and run.result.failure is None
            assert covered(run) == len(audio)
            assert run.generations()[0]["solicited"] == "False"  # the one the kill ended
        assert finals_at_kill, "no final was stored before the kill"
        assert [s.text for s in finals(runs[0])][: len(finals_at_kill)] == finals_at_kill
        # What a supervisor and Prometheus see of it.
        async with (
            serve_bridge(tmp_path / "api.db", endpoint=pool) as served,
            httpx.AsyncClient(base_url=served.base, headers=served.auth()) as client,
        ):
            shown = (await client.get("/api/v1/asr/backends")).json()["backends"]
            metrics = (await client.get("/metrics")).text
            refused = await client.get("/api/v1/asr/backends", headers=served.auth(ALICE))
        assert [(x["name"], x["healthy"], x["legs"], x["max_legs"]) for x in shown] == [
            ("a", False, 0, 4),
            ("b", True, 0, 2),
        ]
        assert shown[0]["problem"] == a.problem and shown[0]["failures"] == 1
        assert refused.status_code == 403  # agents do not see the servers
        assert 'bridge_asr_backend_healthy{backend="a"} 0.0' in metrics
        assert 'bridge_asr_backend_healthy{backend="b"} 1.0' in metrics
        assert 'bridge_asr_backend_failures_total{backend="a"} 1.0' in metrics
        assert 'bridge_asr_backend_max_legs{backend="b"} 2.0' in metrics
        assert f'bridge_asr_backend_problem{{backend="a",problem="{a.problem}"}} 1.0' in metrics

        # a comes back: its probe makes it healthy, and it takes the next leg (more budget).
        await asyncio.to_thread(second_server.restart)
        for _ in range(150):  # 30 s: the probe runs every 0.5 s
            if a.healthy:
                break
            await asyncio.sleep(0.2)
        assert a.healthy and a.problem is None

        async def look() -> None:
            placed.append([x.legs for x in pool.backends])

        run = await run_leg(
            tmp_path / "after.db", tone(1.0), realtime=True, endpoint=pool, at_second={1: look}
        )
        assert placed[-1] == [1, 0] and run.result.failure is None
        assert covered(run) == 16000 and kinds(run, "asr.failover") == []
    finally:
        stop.set()
        await probes
        if not second_server.running:
            second_server.restart()


def test_bridge_check_checks_every_backend(
    vllm_server: VllmServer, second_server: VllmServer, tmp_path: Path
) -> None:
    """One report per server, each with its own key; one down server fails the check."""
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[[asr.backends]]\nname = "a"\nurl = "{vllm_server.url}"\nmodel = "{vllm_server.model}"\n'
        'api_key_env = "A_KEY"\nmax_legs = 4\n'
        f'[[asr.backends]]\nname = "b"\nurl = "{second_server.url}"\n'
        f'model = "{second_server.model}"\n'
        '[[asr.backends]]\nname = "down"\nurl = "ws://127.0.0.1:9/v1/realtime"\n'
        f'model = "{second_server.model}"\n'
    )
    check = bridge("-c", config, "check", env={"A_KEY": vllm_server.api_key or ""})
    assert check.returncode == 1, check.stdout + check.stderr
    out = check.stdout
    assert f"ASR server a ({vllm_server.url})\n" in out
    assert f"ASR server b ({second_server.url})\n" in out
    assert (
        "ASR server down (ws://127.0.0.1:9/v1/realtime)\n  /v1/models    FAIL cannot reach" in out
    )
    assert out.count("23 deltas for 1.04 s of audio") == 2  # a and b, each a real session


def test_serve_starts_with_every_server_checked_and_the_down_one_unhealthy(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    """``bridge serve`` with a pool: each server's report at start, the failing one named and
    taking no legs, the pool shown to supervisors, a clean stop."""
    http_port = free_port(socket.SOCK_STREAM)
    down = f"ws://127.0.0.1:{free_port(socket.SOCK_STREAM)}/v1/realtime"
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[asr]\nmodel = "{vllm_server.model}"\nmax_legs = 3\n'
        f'[[asr.backends]]\nname = "a"\nurl = "{vllm_server.url}"\napi_key_env = "A_KEY"\n'
        f'[[asr.backends]]\nname = "down"\nurl = "{down}"\n'
    )
    token = "pool-supervisor-token"
    serving = Serving(
        [
            "-c",
            config,
            "serve",
            "--db",
            tmp_path / "c.db",
            "--no-sip",
            "--http-port",
            str(http_port),
        ],
        {"A_KEY": vllm_server.api_key or "", "BRIDGE_API_TOKENS": f"{token}:supervisor"},
    )
    try:
        text = "\n".join(serving.lines)
        assert f"ASR server a ({vllm_server.url})" in text and "23 deltas for 1.04 s" in text, text
        assert f"ASR server down ({down})\n  /v1/models    FAIL cannot reach" in text, text
        assert "ASR servers that are not ready take no calls until their probe passes" in text
        shown = httpx.get(
            f"http://127.0.0.1:{http_port}/api/v1/asr/backends",
            headers={"Authorization": f"Bearer {token}"},
        ).json()["backends"]
        assert [(b["name"], b["healthy"], b["max_legs"]) for b in shown] == [
            ("a", True, 3),
            ("down", False, 3),
        ]
        # The start-up check's reason, or by now its probe's: either names what failed.
        assert "cannot reach" in shown[1]["problem"], shown
        code, err = serving.stop()
        assert code == 0, text + err
    finally:
        serving.proc.kill()
        serving.proc.wait()
