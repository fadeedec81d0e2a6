"""Fixtures for tests that talk to the REAL vLLM ``/v1/realtime`` server on CPU.

The server runs from the venv made by ``bash .ci/setup-vllm.sh``.  If that venv is
missing the fixture errors (it never skips): CI installs it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
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
