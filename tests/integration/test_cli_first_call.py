"""A newcomer's first SIP call, exactly as the README tells it (issue 13 §4).

README command 1 (``.venv/bin/bridge serve``, no config: the embedded CPU engine, SIP on
loopback), then the lines of the README's "A first SIP call" block, read from the README here so
it cannot go stale: flite speaks a sentence, sox makes it G.711, sipp calls the bridge.  The call
shows in ``/`` (headless Chromium, logged in with the token ``serve`` printed), then in
``bridge calls`` and ``bridge show``.  Only the ports differ from the README's (free ones, so
parallel runs don't collide); the database goes to ``$XDG_DATA_HOME``, the default location.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from browser import ARGS, CHROMIUM
from playwright.async_api import async_playwright

from tests.sip.sipp import free_port, free_port_block

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme_commands() -> tuple[str, list[str]]:
    """``serve`` from README command 1, and the lines of the first-call block."""
    text = README.read_text(encoding="utf-8")
    first = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first is not None
    top = first.group(1).splitlines()[0]
    serve = top.split("&&", 1)[1].split("#", 1)[0].strip()
    section = text[text.index("### A first SIP call") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    lines = [line.strip() for line in block.group(1).splitlines()]
    return serve, [line for line in lines if line and not line.startswith("#")]


def test_readme_first_call_is_heard_listed_and_shown(tmp_path: Path) -> None:
    serve, recipe = readme_commands()
    assert serve == ".venv/bin/bridge serve"
    assert any(line.startswith("sipp 127.0.0.1:5080 ") for line in recipe), recipe
    # The README's commands run in a checkout: the venv and the scenarios where they expect.
    work = tmp_path / "checkout"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "tests").symlink_to(ROOT / "tests")
    sip_port, http_port = free_port(), free_port(socket.SOCK_STREAM)
    rtp, media = free_port_block(40), free_port_block(4)
    recipe = [
        line.replace("127.0.0.1:5080", f"127.0.0.1:{sip_port}").replace("-mp 16000", f"-mp {media}")
        for line in recipe
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(
        XDG_DATA_HOME=str(tmp_path / "data"),
        BRIDGE_PORT=str(http_port),
        BRIDGE_SIP_PORT=str(sip_port),
        BRIDGE_SIP_RTP_PORT_MIN=str(rtp),
        BRIDGE_SIP_RTP_PORT_MAX=str(rtp + 39),
    )
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {serve}"], cwd=work, env=env, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "dashboards and API at" in line or "bridge: error" in line:
                break
        log = "".join(lines)
        assert f"SIP on 127.0.0.1:{sip_port} (udp)" in log, log
        assert "embedded CPU engine" in log, log
        token = re.search(r"this run's supervisor token: (\S+)", log)
        assert token is not None, log
        asyncio.run(call_and_watch(recipe, work, env, http_port, token.group(1)))
        calls, show = recipe[-2], recipe[-1]
        assert calls == ".venv/bin/bridge calls" and show.startswith(".venv/bin/bridge show ")
        listed = run(calls, work, env)
        for _ in range(60):  # the leg's last words are transcribed after the BYE
            if "bye-remote" in listed:
                break
            time.sleep(1)
            listed = run(calls, work, env)
        assert "bye-remote" in listed, listed
        shown = run(show, work, env)
        said = " ".join(re.findall(r"^\[[\d:.]+\] caller: (.*)$", shown, re.M)).lower()
        assert "hello" in said and "test call" in said, shown  # flite's sentence, transcribed
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, log + err
    finally:
        proc.kill()
        proc.wait()


def run(line: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (line, result.stdout, result.stderr)
    return result.stdout


async def call_and_watch(
    recipe: list[str], work: Path, env: dict[str, str], http_port: int, token: str
) -> None:
    """Log in to ``/``, run the recipe up to its sipp call and see the call listed live."""
    base = f"http://127.0.0.1:{http_port}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page()
            await page.goto(base + "/")
            await page.wait_for_url("**/login?next=*")
            await page.fill("#token", token)
            await page.press("#token", "Enter")
            await page.wait_for_url(base + "/")
            await page.wait_for_selector("#status.live")
            sipp = next(i for i, line in enumerate(recipe) if line.startswith("sipp "))
            for line in recipe[:sipp]:  # flite, sox, sed
                await asyncio.to_thread(run, line, work, env)
            call = asyncio.create_task(asyncio.to_thread(run, recipe[sipp], work, env))
            row = page.locator("tr.call-row", has_text="Test Caller")  # sipp's From
            await row.wait_for(timeout=20_000)
            await row.filter(has_text="hello").wait_for(timeout=20_000)  # its live text
            await call
        finally:
            await browser.close()
