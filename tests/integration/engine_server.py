"""``bridge asr-server`` (the embedded CPU engine) as a separate process for the tests.

Like :class:`vllm_server.VllmServer`: a free port on 127.0.0.1, its own process group, ready
when ``GET /health`` answers 200, stopped by PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


class EngineServerError(RuntimeError):
    pass


class EngineServer:
    """One ``bridge asr-server`` process with the faster-whisper base model."""

    script: str | None = None  # real recognition, no scripted transcript

    def __init__(self, *, work_dir: Path, api_key: str | None = None, language: str = "en"):
        self.work_dir = work_dir
        self.api_key = api_key
        self.language = language
        self.model = "whisper-base"
        self.port = _free_port()
        self.log_path = work_dir / "asr-server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        command = [sys.executable, "-m", "bridge", "asr-server", "--port", str(self.port)]
        command += ["--model", "base", "--language", self.language]
        if self.api_key:
            command += ["--api-key", self.api_key]
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EngineServerError(f"asr-server exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.http_url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise EngineServerError(f"asr-server not healthy after {timeout_s} s: {self.log_tail()}")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
