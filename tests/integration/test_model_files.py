"""The served model's own files, read through mistral-common (issue 20): the tiny Voxtral
Realtime the vLLM kit builds, at several delays, and the ways such a directory goes wrong.

The step clock these give is checked against the numbers vLLM itself shows (vllm-realtime.md
§2.2, §2.4): a 39-token prompt and a first step at 9000 samples at 480 ms.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from vllm_server import build_model_dir

from bridge.app import pool_from
from bridge.config import load_config
from bridge.core.step_clock import StepClock, clock_for_model
from bridge.errors import ConfigError
from bridge.model_files import read_model, served_model


@pytest.mark.parametrize("delay_ms", [80, 160, 480, 960, 1200, 2400])
def test_the_clock_comes_from_the_models_tekken_json(tmp_path: Path, delay_ms: int) -> None:
    model = read_model(build_model_dir(tmp_path / "m", delay_ms=delay_ms))
    assert (model.sampling_rate, model.frame_rate) == (16000, 12.5)
    assert (model.transcription_delay_ms, model.left_pad_tokens) == (delay_ms, 32)
    assert model.look_ahead_ms == 2.5 and model.streaming
    assert model.reader.startswith("mistral-common 1.")
    clock = model.clock()
    assert clock == StepClock(delay_ms)  # Voxtral Mini 4B Realtime's own values
    tokens = delay_ms // 80
    assert clock.prompt_tokens == 1 + 32 + tokens
    assert clock.first_step_samples == (1 + tokens) * 1280 + 40
    assert model.describe().startswith(
        f"16000 Hz, 12.5 frames/s, transcription delay {delay_ms} ms, 32 left-pad tokens, "
        "look-ahead 2.5 ms (read with mistral-common "
    )


def edit_tekken(directory: Path, **audio: object) -> None:
    path = directory / "tekken.json"
    tekken = json.loads(path.read_text())
    tekken["audio"].update(audio)
    path.write_text(json.dumps(tekken))


def test_values_the_model_changes_change_the_clock(tmp_path: Path) -> None:
    """A left pad and look-ahead other than Voxtral Mini's are taken from the file."""
    directory = build_model_dir(tmp_path / "m")
    edit_tekken(directory, streaming_n_left_pad_tokens=16, streaming_look_ahead_ms=5.0)
    clock = read_model(directory).clock()
    assert (clock.left_pad_tokens, clock.look_ahead_samples) == (16, 80)
    assert clock.prompt_tokens == 1 + 16 + 6 and clock.first_step_samples == 7 * 1280 + 80


def test_a_delay_set_as_well_must_be_the_models(tmp_path: Path) -> None:
    directory = build_model_dir(tmp_path / "m", delay_ms=960)
    assert served_model(None, 240) is None  # no directory: the defaults at delay_ms
    for delay in (None, 960):
        model = served_model(directory, delay)
        assert model is not None and model.clock() == StepClock(960)
    with pytest.raises(ConfigError) as caught:
        served_model(directory, 480)
    assert caught.value.problems == [
        f"asr.delay_ms is 480 but the model in {directory} has transcription_delay_ms 960: drop "
        "delay_ms (the model's is used), or point model_dir at the model the server runs"
    ]


def problem(directory: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        read_model(directory).clock()
    return caught.value.problems[0]


def test_directories_the_bridge_cannot_drive_say_why(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert problem(empty) == (
        f"model directory {empty}: no tekken.json; give the directory of the model's files (its "
        "Hugging Face snapshot, or one `bridge model prepare` made)"
    )
    damaged = build_model_dir(tmp_path / "damaged")
    (damaged / "tekken.json").write_text('{"config": ')
    assert problem(damaged).startswith(
        f"{damaged / 'tekken.json'}: mistral-common 1.13.1 cannot load it ("
    )
    text_only = build_model_dir(tmp_path / "text")
    tekken = json.loads((text_only / "tekken.json").read_text())
    del tekken["audio"]
    (text_only / "tekken.json").write_text(json.dumps(tekken))
    assert problem(text_only) == (
        f"{text_only / 'tekken.json'}: no audio settings; not a Voxtral model (the bridge needs "
        "Voxtral Mini 4B Realtime, mistralai/Voxtral-Mini-4B-Realtime-2602)"
    )
    other_rate = build_model_dir(tmp_path / "rate")
    edit_tekken(other_rate, sampling_rate=24000)
    assert problem(other_rate) == (
        f"{other_rate / 'params.json'} gives 16000 Hz at 12.5 frames/s but tekken.json 24000 Hz "
        "at 12.5: the files are from different models; download the snapshot again"
    )
    (other_rate / "params.json").unlink()  # the tokenizer alone: its own rates decide
    assert problem(other_rate) == (
        f"model directory {other_rate}: it takes 24000 Hz audio at 12.5 frames/s; the bridge "
        "sends 16000 Hz in 80 ms chunks, one per frame of Voxtral Realtime (12.5 frames/s)"
    )


def test_the_pure_clock_refuses_what_it_cannot_drive() -> None:
    settings = dict(
        sampling_rate=16000,
        frame_rate=12.5,
        transcription_delay_ms=480.0,
        left_pad_tokens=32,
        look_ahead_ms=2.5,
        streaming=True,
    )
    assert clock_for_model(**settings) == StepClock()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not 'streaming': not a Voxtral Realtime model"):
        clock_for_model(**{**settings, "streaming": False})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a multiple of 80 between 80 and 2400, got 500"):
        clock_for_model(**{**settings, "transcription_delay_ms": 500.0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="transcription_delay_ms 480.5 is not whole"):
        clock_for_model(**{**settings, "transcription_delay_ms": 480.5})  # type: ignore[arg-type]


def test_asr_model_dir_sets_the_legs_clock(tmp_path: Path) -> None:
    """``asr.model_dir`` (BRIDGE_ASR_MODEL_DIR) is read when the bridge builds its endpoint:
    the delay and the first step every leg's step lag is measured from come from the model."""
    directory = build_model_dir(tmp_path / "m", delay_ms=960)
    url = "ws://127.0.0.1:9/v1/realtime"
    environ = {"BRIDGE_ASR_MODEL_DIR": str(directory), "HOME": str(tmp_path), "BRIDGE_ASR_URL": url}
    endpoint = pool_from(load_config(None, environ)).first
    assert endpoint.model_files is not None and endpoint.model_files.directory == directory
    assert endpoint.delay_ms == 960 and endpoint.clock == StepClock(960)
    assert endpoint.clock.first_step_samples == (1 + 12) * 1280 + 40
    plain = pool_from(load_config(None, {"HOME": str(tmp_path), "BRIDGE_ASR_URL": url})).first
    assert plain.model_files is None and plain.clock == StepClock(480)


def test_without_mistral_common_the_fix_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = build_model_dir(tmp_path / "m")
    monkeypatch.setitem(sys.modules, "mistral_common", None)  # as if not installed
    assert problem(directory) == (
        "reading a model directory needs mistral-common (mistral_common is missing): pip install "
        "-U 'mistral-common[audio]>=1.9.0' (the bridge's extra: .[model])"
    )


def test_a_mistral_common_older_than_the_recipe_asks_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mistral_common

    directory = build_model_dir(tmp_path / "m")
    monkeypatch.setattr(mistral_common, "__version__", "1.8.5")
    assert problem(directory) == (
        "mistral-common 1.8.5 is older than 1.9.0 and cannot read Voxtral Realtime's audio "
        "settings: pip install -U 'mistral-common[audio]>=1.9.0' (the bridge's extra: .[model])"
    )
