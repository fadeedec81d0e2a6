#!/usr/bin/env bash
# Everything the test suite needs on a fresh Debian machine: system packages, the project
# venv with test extras, and the separate venv of the real vLLM CPU server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[setup] %s\n' "$*"; }

. .ci/apt.sh
apt_install sox flite espeak-ng chromium  # chromium: the dashboard and WebRTC tests (Playwright
# drives it); espeak-ng: Spanish, French and German speech for the redaction tests
bash scripts/install.sh test   # with the embedded engine's Whisper weights
bash .ci/setup-sip.sh          # sipp, baresip, pjsua2 for the SIP tests
bash .ci/setup-vllm.sh
