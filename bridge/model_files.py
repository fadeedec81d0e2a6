"""What the served model says about itself, read through mistral-common (issue 20).

Voxtral Realtime's tokenizer file, ``tekken.json``, carries its audio settings: "sampling_rate",
"frame_rate", "transcription_delay_ms", "streaming_n_left_pad_tokens" and
"streaming_look_ahead_ms" (docs/vllm-realtime.md §2.2).  vLLM loads the same file through
mistral-common's ``MistralTokenizer`` ("Voxtral Realtime's tokenizer can only load through
mistral_common", the model's recipe), so we read it the same way rather than parse it ourselves:
the numbers the bridge works with are the ones the server works with.  ``params.json``, which
vLLM reads for the model itself, repeats the sampling and frame rates for the audio encoder; the
two must agree.

mistral-common is an optional dependency (the ``model`` extra): only ``bridge model prepare``,
``bridge check --model-dir`` and a bridge run with ``asr.model_dir`` need it.  Without a model
directory the bridge uses Voxtral Mini 4B Realtime's values (:mod:`bridge.core.step_clock`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.core.step_clock import StepClock, clock_for_model
from bridge.errors import ConfigError

MIN_MISTRAL_COMMON = (1, 9, 0)  # the recipe: "mistral-common[audio]>=1.9.0"
INSTALL_HINT = "pip install -U 'mistral-common[audio]>=1.9.0' (the bridge's extra: .[model])"


@dataclass(frozen=True, slots=True)
class ModelAudio:
    """A model directory's audio settings, as mistral-common reads them."""

    directory: Path
    sampling_rate: int
    frame_rate: float
    transcription_delay_ms: float
    left_pad_tokens: int
    look_ahead_ms: float
    streaming: bool
    reader: str  # "mistral-common 1.13.1"

    def clock(self) -> StepClock:
        """The step clock the server runs for this model.

        Raises:
            ConfigError: the bridge cannot drive this model (the reason, naming the directory).
        """
        try:
            return clock_for_model(
                sampling_rate=self.sampling_rate,
                frame_rate=self.frame_rate,
                transcription_delay_ms=self.transcription_delay_ms,
                left_pad_tokens=self.left_pad_tokens,
                look_ahead_ms=self.look_ahead_ms,
                streaming=self.streaming,
            )
        except ValueError as exc:
            raise ConfigError(f"model directory {self.directory}: {exc}") from exc

    def describe(self) -> str:
        return (
            f"{self.sampling_rate} Hz, {self.frame_rate:g} frames/s, transcription delay "
            f"{self.transcription_delay_ms:g} ms, {self.left_pad_tokens} left-pad tokens, "
            f"look-ahead {self.look_ahead_ms:g} ms (read with {self.reader})"
        )


def read_model(directory: Path) -> ModelAudio:
    """Read ``directory``'s ``tekken.json`` through mistral-common (and check ``params.json``).

    Raises:
        ConfigError: no such directory or tokenizer file, mistral-common missing or too old, a
            tokenizer it cannot load, or one without audio settings (not a Voxtral model).
    """
    tekken = directory / "tekken.json"
    if not tekken.is_file():
        raise ConfigError(
            f"model directory {directory}: no tekken.json; give the directory of the model's "
            "files (its Hugging Face snapshot, or one `bridge model prepare` made)"
        )
    MistralTokenizer, version = _mistral_common()
    try:
        tokenizer = MistralTokenizer.from_file(str(tekken))
    except Exception as exc:  # noqa: BLE001 - any loader failure is the file's problem
        raise ConfigError(
            f"{tekken}: mistral-common {version} cannot load it ({type(exc).__name__}: {exc}); "
            f"a damaged download, or a newer format than this mistral-common: {INSTALL_HINT}"
        ) from exc
    encoder = getattr(tokenizer.instruct_tokenizer, "audio_encoder", None)
    config = getattr(encoder, "audio_config", None)
    if config is None:
        raise ConfigError(
            f"{tekken}: no audio settings; not a Voxtral model (the bridge needs Voxtral "
            "Mini 4B Realtime, mistralai/Voxtral-Mini-4B-Realtime-2602)"
        )
    model = ModelAudio(
        directory=directory,
        sampling_rate=int(config.sampling_rate),
        frame_rate=float(config.frame_rate),
        transcription_delay_ms=float(config.transcription_delay_ms or 0),
        left_pad_tokens=int(config.streaming_n_left_pad_tokens or 0),
        look_ahead_ms=float(config.streaming_look_ahead_ms or 0),
        streaming=bool(config.is_streaming),
        reader=f"mistral-common {version}",
    )
    _check_params(directory / "params.json", model)
    return model


def served_model(model_dir: Path | None, delay_ms: int | None) -> ModelAudio | None:
    """The served model's files when ``asr.model_dir`` is set (else ``None``: the defaults at
    ``delay_ms``), read once and checked: the bridge can drive it, and a ``delay_ms`` set as
    well is the model's.

    Raises:
        ConfigError: the directory cannot be read or driven, or the two delays differ.
    """
    if model_dir is None:
        return None
    model = read_model(model_dir)
    clock = model.clock()
    if delay_ms is not None and delay_ms != clock.transcription_delay_ms:
        raise ConfigError(
            f"asr.delay_ms is {delay_ms} but the model in {model_dir} has "
            f"transcription_delay_ms {clock.transcription_delay_ms}: drop delay_ms (the "
            "model's is used), or point model_dir at the model the server runs"
        )
    return model


def _mistral_common() -> tuple[Any, str]:
    try:
        import mistral_common
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    except ImportError as exc:
        raise ConfigError(
            f"reading a model directory needs mistral-common ({exc.name} is missing): "
            f"{INSTALL_HINT}"
        ) from exc
    version = str(mistral_common.__version__)
    if _version(version) < MIN_MISTRAL_COMMON:
        raise ConfigError(
            f"mistral-common {version} is older than 1.9.0 and cannot read Voxtral Realtime's "
            f"audio settings: {INSTALL_HINT}"
        )
    return MistralTokenizer, version


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


def _check_params(path: Path, model: ModelAudio) -> None:
    """vLLM builds the audio encoder from ``params.json``: its rates must be the tokenizer's."""
    if not path.is_file():
        return  # a tokenizer-only directory (bridge check on the tokenizer alone)
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
        audio = params["multimodal"]["whisper_model_args"]["encoder_args"]
        audio = audio["audio_encoding_args"]
        rates = (int(audio["sampling_rate"]), float(audio["frame_rate"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: no audio encoder settings (multimodal.whisper_model_args.encoder_args."
            f"audio_encoding_args: {exc}); not a Voxtral model"
        ) from exc
    if rates != (model.sampling_rate, model.frame_rate):
        raise ConfigError(
            f"{path} gives {rates[0]} Hz at {rates[1]:g} frames/s but tekken.json "
            f"{model.sampling_rate} Hz at {model.frame_rate:g}: the files are from different "
            "models; download the snapshot again"
        )
