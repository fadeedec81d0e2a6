"""vLLM v1 logits processor that makes the dummy-weight tiny Voxtral "say" a script.

Runs INSIDE the vLLM server process (the vLLM venv, where torch is available);
nothing in the project imports it.  Load it with::

    PYTHONPATH=tests/vllm_kit TINY_VOXTRAL_SCRIPT='|| hello||' \\
        python -m vllm.entrypoints.openai.api_server ... \\
        --logits-processors scripted_transcript:ScriptedTranscript

vLLM resolves ``module:QualName`` with ``importlib.import_module`` (see
``vllm/v1/sample/logits_processor/__init__.py``, ``_load_logitsprocs_by_fqcns``).

Why: with ``--load-format dummy`` the greedy token is some fixed special token,
so every ``transcription.delta`` is ``""``.  This processor forces the k-th
generated token of every request to the k-th token of a script, so the real
server, detokenizer and protocol emit deterministic, non-empty text.  The realtime
path samples greedily (``connection.py``: ``SamplingParams(temperature=0.0, ...)``),
so masking every logit but one to ``-inf`` fully determines the token.

Script syntax (env ``TINY_VOXTRAL_SCRIPT``, default :data:`DEFAULT_SCRIPT`):

* ``|`` is one ``[STREAMING_PAD]`` token: an empty delta (special tokens are
  skipped by the mistral detokenizer);
* every other character is its UTF-8 bytes, one byte token each (token id =
  number of special tokens + byte value, see ``build_tiny_voxtral.py``); a
  multi-byte character yields ``""`` for its incomplete bytes, then the character;
* the script repeats forever.

The step index (vLLM behaviour this relies on):

``BatchUpdate`` docs (``vllm/v1/sample/logits_processor/interface.py``): "the
``output_tok_ids`` list ... is a reference to the request's running output
tokens list; via this reference, the logits processors always see the latest
list of generated output tokens", and "Operations should be processed in the
following order: removed, added, moved".

A realtime (streaming-input) request, however, is re-added to the batch at every
80 ms step: ``GPUModelRunner._update_streaming_request`` (also used by the CPU
runner) calls ``self.input_batch.remove_request(req_id)``, replaces
``prompt_token_ids`` ("NOTE: prompt_token_ids includes intermediate output
tokens - tokens previously generated but now are input context") and does
``req_state.output_token_ids.clear()`` ("previous output tokens are now part of
``prompt_token_ids``").  So each step arrives as an ``added`` entry whose prompt
has grown by one token (39, 40, 41, ... with a 480 ms delay) and whose output list
is empty.  Hence::

    step = len(prompt_at_add) - streaming_prefix + len(output_tok_ids)

where ``streaming_prefix`` = BOS + ``streaming_n_left_pad_tokens`` + delay tokens
(``transcription_delay_ms / 80``) = 39 for the default tokenizer; the
``len(output_tok_ids)`` term keeps ordinary (non-streaming) requests advancing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

if TYPE_CHECKING:
    from vllm.config import VllmConfig

#: Script used when ``TINY_VOXTRAL_SCRIPT`` is unset or empty.
DEFAULT_SCRIPT = "||| hello|| world.||"

#: Script character that stands for one ``[STREAMING_PAD]`` token.
PAD_CHAR = "|"

#: Environment variable holding the script.
SCRIPT_ENV = "TINY_VOXTRAL_SCRIPT"


def script_token_ids(script: str, *, pad_id: int, num_special: int) -> list[int]:
    """Translate ``script`` into token ids (``|`` -> ``pad_id``, others -> UTF-8 byte tokens)."""
    ids: list[int] = []
    for ch in script:
        if ch == PAD_CHAR:
            ids.append(pad_id)
        else:
            ids.extend(num_special + b for b in ch.encode("utf-8"))
    return ids or [pad_id]


class ScriptedTranscript(LogitsProcessor):
    """Force every request's k-th generated token to ``script[k % len(script)]``."""

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        """Read ``tekken.json`` from the tokenizer dir to learn token ids and the prefix length."""
        tok_dir = Path(vllm_config.model_config.tokenizer)
        tekken = json.loads((tok_dir / "tekken.json").read_text(encoding="utf-8"))
        num_special = int(tekken["config"]["default_num_special_tokens"])
        pad_id = next(
            int(t["rank"]) for t in tekken["special_tokens"] if t["token_str"] == "[STREAMING_PAD]"
        )
        script = os.environ.get(SCRIPT_ENV) or DEFAULT_SCRIPT
        self.script: list[int] = script_token_ids(script, pad_id=pad_id, num_special=num_special)
        audio = tekken["audio"]
        frame_ms = 1000.0 / float(audio["frame_rate"])
        delay_tokens = int(round(float(audio["transcription_delay_ms"]) / frame_ms))
        self.prefix: int = 1 + int(audio["streaming_n_left_pad_tokens"]) + delay_tokens
        # batch row -> (prompt length when added, live reference to its output ids)
        self.rows: dict[int, tuple[int, list[int]]] = {}

    def is_argmax_invariant(self) -> bool:
        """It changes the argmax, so vLLM must apply it even for greedy sampling."""
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Track batch rows; process removed, then added, then moved (as vLLM documents)."""
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.rows.pop(index, None)
        for index, _params, prompt_ids, output_ids in batch_update.added:
            self.rows[index] = (len(prompt_ids) if prompt_ids is not None else 0, output_ids)
        for src, dst, direction in batch_update.moved:
            src_row = self.rows.pop(src, None)
            dst_row = self.rows.pop(dst, None)
            if src_row is not None:
                self.rows[dst] = src_row
            if direction == MoveDirectionality.SWAP and dst_row is not None:
                self.rows[src] = dst_row

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Mask each tracked row to the single scripted token (in place)."""
        n_rows = logits.shape[0]
        for row, (prompt_len, output_ids) in self.rows.items():
            if row >= n_rows:
                continue
            step = max(0, prompt_len - self.prefix) + len(output_ids)
            token = self.script[step % len(self.script)]
            logits[row].fill_(float("-inf"))
            logits[row, token] = 0.0
        return logits
