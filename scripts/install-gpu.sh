#!/usr/bin/env bash
# The ASR server for a machine with an NVIDIA GPU: vLLM serving Voxtral Mini 4B Realtime, in its
# own virtual environment (vLLM pins its own torch; never mix it into the bridge's .venv).  As
# the model's recipe installs it: vllm >= 0.20, mistral-common[audio] >= 1.9.0, Transformers v5.
# Idempotent.  Run through `bash scripts/install.sh gpu`.
#
#   VLLM_VENV=DIR   where the environment goes (default .venv-vllm, which the Procfile uses)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VLLM_VENV:-.venv-vllm}"
log() { printf '[install gpu] %s\n' "$*"; }
die() { printf '[install gpu] ERROR: %s\n' "$*" >&2; exit 1; }

# The recipe: "a single GPU with >= 16 GB VRAM (BF16 weights only)".
gpus="$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits 2>/dev/null || true)"
if [[ -z "$gpus" ]]; then
    die "no NVIDIA GPU here (nvidia-smi finds none): vLLM's Voxtral needs a CUDA GPU with 16 GB; \
without one, the bridge transcribes with its embedded CPU engine (bash scripts/install.sh, then \
.venv/bin/bridge serve)"
fi
log "GPU: ${gpus//$'\n'/; }"
largest_mib="$(cut -d, -f2 <<<"$gpus" | sort -n | tail -1 | tr -d ' ')"
if (( largest_mib < 15000 )); then
    log "WARNING: the largest GPU has ${largest_mib} MiB; the model's BF16 weights want 16 GB"
fi
if ! "$PYTHON" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null
then
    die "$PYTHON is not Python 3.10-3.13, which vLLM's wheels are built for; set PYTHON=python3.12"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi
packages=("vllm>=0.20" "mistral-common[audio]>=1.9.0" "transformers>=5")
if command -v uv >/dev/null; then
    # The recipe's own line: uv picks the torch build that matches the machine's CUDA driver.
    log "uv pip install ${packages[*]} --torch-backend=auto"
    uv pip install --python "$VENV/bin/python" -U "${packages[@]}" --torch-backend=auto
else
    log "pip install ${packages[*]} (uv would choose the torch build for this CUDA driver)"
    "$VENV/bin/pip" install --disable-pip-version-check -q -U "${packages[@]}"
fi
# The recipe: "Verify the audio extras pulled mistral_common >= 1.9.0".
"$VENV/bin/python" - <<'PY' || exit 1
import sys

import mistral_common
import vllm


def version(text: str) -> tuple[int, ...]:
    return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in text.split(".")[:3])


problems = []
if version(mistral_common.__version__) < (1, 9, 0):
    problems.append(f"mistral-common {mistral_common.__version__} < 1.9.0")
if version(vllm.__version__) < (0, 20, 0):
    problems.append(f"vllm {vllm.__version__} < 0.20 (no documented Voxtral Realtime)")
for problem in problems:
    print(f"[install gpu] ERROR: {problem}: rerun with a newer index", file=sys.stderr)
print(f"[install gpu] vllm {vllm.__version__}, mistral-common {mistral_common.__version__}")
sys.exit(1 if problems else 0)
PY
if [[ -x .venv/bin/pip ]]; then
    # `bridge model prepare` and `bridge check --model-dir` read the model through mistral-common.
    log "the bridge's model extra into .venv (mistral-common, to read the model's files)"
    .venv/bin/pip install --disable-pip-version-check -q -e ".[model]"
fi
log "done: start the server with the Procfile's vllm line, then check it: .venv/bin/bridge check \
--asr-url ws://127.0.0.1:8000/v1/realtime"
