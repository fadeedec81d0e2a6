"""``bridge check`` against the real vLLM CPU server started the wrong ways the model's recipe
lists under troubleshooting (issue 20), where this machine can produce them:

* without ``--tokenizer-mode mistral``: vLLM stops at start ("This model requires
  `--tokenizer-mode mistral`"), so nothing answers, and the check's line names that flag;
* an engine that takes a session but never steps (stuck or overloaded): the session server's
  EngineCore process is stopped (SIGSTOP) while its API process keeps answering, then resumed.

(No route ``/v1/realtime`` — vLLM < 0.16 or a model without the realtime task — cannot be
produced with the one vLLM installed here; ``tests/asr/test_probe.py`` checks that line against
an HTTP server that answers ``/v1/models`` only.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bridge_cli import bridge
from vllm_server import VllmServer, VllmServerError, engine_stopped

pytestmark = pytest.mark.integration

KEY = "bridge-test-key"  # the session server's --api-key (conftest.py)


def test_a_vllm_without_the_mistral_tokenizer_mode_is_named(tmp_path: Path) -> None:
    server = VllmServer(work_dir=tmp_path, extra_args=("--tokenizer-mode", "auto"))
    try:
        with pytest.raises(VllmServerError) as failed:
            server.start()
        assert "This model requires `--tokenizer-mode mistral`" in str(failed.value)
        check = bridge("check", "--asr-url", server.url, "--model", server.model)
    finally:
        server.close()
    assert check.returncode == 1
    assert check.stdout.rstrip().endswith(
        "(is the ASR server running? start it with the Procfile's vllm line, or pass --asr-url; "
        "a vLLM that stops at start over its tokenizer lacks --tokenizer-mode mistral)"
    )


def test_a_server_that_takes_audio_but_never_steps_is_called_stuck(
    vllm_server: VllmServer,
) -> None:
    asr = ["--asr-url", vllm_server.url, "--model", vllm_server.model, "--api-key", KEY]
    with engine_stopped(vllm_server):
        stuck = bridge("check", *asr, "--timeout", "6")
    assert stuck.returncode == 1
    assert "  model         OK   tiny-voxtral\n" in stuck.stdout  # the API process answers
    lines = [line for line in stuck.stdout.splitlines() if "/v1/realtime  " in line]
    assert len(lines) == 1 and lines[0].startswith("  /v1/realtime  FAIL the session took ")
    assert lines[0].endswith(
        "s of audio but ran no step in 6 s: the engine is stuck (restart it) or overloaded (a "
        "busy GPU: fewer sessions per server, asr.max_legs)"
    )
    resumed = bridge("check", *asr)  # and the shared server steps again for the other tests
    assert resumed.returncode == 0, resumed.stdout
    assert "23 deltas for 1.04 s of audio" in resumed.stdout


def test_a_timeout_that_is_not_positive_is_a_usage_error() -> None:
    bad = bridge("check", "--asr-url", "ws://127.0.0.1:9/v1/realtime", "--timeout", "0")
    assert bad.returncode == 2
    assert bad.stderr == "bridge: error: --timeout 0: give the seconds to wait, more than 0\n"
