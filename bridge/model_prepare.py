"""``bridge model prepare``: a local Voxtral Realtime model directory with another delay.

The delay is a tokenizer setting, not a request option: "change the ``transcription_delay_ms``:
480 parameter in the tekken.json file to any multiple of 80ms between 80 and 1200, as well as
2400" (model card, vllm-realtime.md §2.2).  vLLM reads it once at start-up.  So we make a new
directory: every file of the snapshot linked (the weights are not copied), ``tekken.json``
rewritten with the chosen delay.  Both directories are read through mistral-common
(:mod:`bridge.model_files`), as vLLM reads them: the source must be a Voxtral Realtime model, and
the copy must read back with the new delay.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from bridge.config import DEFAULT_MODEL, VALID_DELAYS_MS
from bridge.errors import ConfigError
from bridge.model_files import ModelAudio, read_model


def check_delay(delay_ms: int) -> None:
    if delay_ms not in VALID_DELAYS_MS:
        raise ConfigError(
            f"--delay-ms {delay_ms}: Voxtral Realtime supports multiples of 80 from 80 to 1200, "
            "or 2400 (e.g. 480, the default; lower is faster text, higher is more accurate)"
        )


def find_snapshot(environ: Mapping[str, str], model: str = DEFAULT_MODEL) -> Path:
    """The newest local Hugging Face snapshot of ``model`` (no download)."""
    hub = Path(
        environ.get("HF_HUB_CACHE")
        or Path(environ.get("HF_HOME") or Path(environ.get("HOME", "~")) / ".cache/huggingface")
        / "hub"
    ).expanduser()
    snapshots = hub / ("models--" + model.replace("/", "--")) / "snapshots"
    candidates = sorted(
        (p for p in snapshots.glob("*") if (p / "tekken.json").is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    if not candidates:
        raise ConfigError(
            f"no local snapshot of {model} in {hub}: download it on a machine with internet "
            f"(`hf download {model}`, from huggingface_hub) or pass --from DIR"
        )
    return candidates[-1]


def prepare_model(source: Path, out: Path, delay_ms: int) -> ModelAudio:
    """Make ``out`` a copy of ``source`` whose tokenizer carries ``delay_ms``.

    Returns the copy as mistral-common reads it back.

    Raises:
        ConfigError: bad delay, missing/invalid snapshot, or ``out`` not usable.
    """
    check_delay(delay_ms)
    tekken_path = source / "tekken.json"
    if not tekken_path.is_file():
        raise ConfigError(f"{source}: no tekken.json here; is it a Voxtral Realtime snapshot?")
    read_model(source).clock()  # mistral-common loads it, and it is a streaming model
    try:
        tekken = json.loads(tekken_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{tekken_path}: cannot read it as JSON: {exc}") from exc
    audio = tekken.get("audio") if isinstance(tekken, dict) else None
    if not isinstance(audio, dict) or "transcription_delay_ms" not in audio:
        raise ConfigError(
            f"{tekken_path}: no audio.transcription_delay_ms; this is not a Voxtral Realtime "
            "tokenizer"
        )
    if out.resolve() == source.resolve():
        raise ConfigError("--out must differ from the snapshot directory")
    if out.exists() and any(out.iterdir()) and not (out / ".bridge-prepared").exists():
        raise ConfigError(f"{out} exists and is not empty; choose a new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name == "tekken.json":
            continue
        link = out / item.name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(item.resolve(), link)
    audio["transcription_delay_ms"] = delay_ms
    new_tekken = out / "tekken.json"
    if new_tekken.is_symlink():
        new_tekken.unlink()
    new_tekken.write_text(json.dumps(tekken, ensure_ascii=False), encoding="utf-8")
    (out / ".bridge-prepared").write_text(f"source={source.resolve()}\ndelay_ms={delay_ms}\n")
    copy = read_model(out)
    if copy.clock().transcription_delay_ms != delay_ms:
        raise ConfigError(f"{new_tekken}: mistral-common does not read back the delay written")
    return copy


def serve_hint(out: Path, delay_ms: int, model: str = DEFAULT_MODEL) -> str:
    return (
        f"Serve it with:\n  VLLM_DISABLE_COMPILE_CACHE=1 vllm serve {out} --served-model-name "
        f"{model} --tokenizer-mode mistral --config-format mistral --load-format mistral "
        '--compilation_config \'{"cudagraph_mode": "PIECEWISE"}\'\n'
        f"and run the bridge with --delay-ms {delay_ms} (or BRIDGE_ASR_DELAY_MS={delay_ms})."
    )
