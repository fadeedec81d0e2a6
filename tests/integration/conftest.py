"""Fixtures for tests that talk to real realtime servers.

* ``vllm_server``: the REAL vLLM ``/v1/realtime`` server on CPU (tiny Voxtral, scripted text),
  from the venv made by ``bash .ci/setup-vllm.sh``;
* ``engine_server``: the embedded engine, ``bridge asr-server`` with faster-whisper base;
* ``realtime_server``: each of the two in turn, for the conformance suite.

A missing venv or model makes the fixtures error (they never skip): CI installs them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_server import EngineServer
from vllm_server import VllmServer

API_KEY = "bridge-test-key"


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A started :class:`VllmServer` (scripted transcript), shared by the session.

    It runs with ``--api-key`` so every test also proves the ``Authorization: Bearer`` path;
    clients take the key from ``server.api_key`` (:func:`auth`).

    Tests that ``kill()`` or ``stop()`` it must ``restart()`` it before returning.
    The model dir and ``vllm-server.log`` stay under pytest's basetemp for debugging.
    """
    server = VllmServer(work_dir=tmp_path_factory.mktemp("vllm-server"), api_key=API_KEY)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def engine_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    """One ``bridge asr-server`` process (the session's one recognizer), with ``--api-key``."""
    server = EngineServer(work_dir=tmp_path_factory.mktemp("asr-server"), api_key=API_KEY)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["vllm", "engine"])
def realtime_server(request: pytest.FixtureRequest) -> VllmServer | EngineServer:
    """The same client tests run against the real vLLM server and the embedded engine."""
    name = "vllm_server" if request.param == "vllm" else "engine_server"
    server: VllmServer | EngineServer = request.getfixturevalue(name)
    return server
