#!/usr/bin/env bash
# Everything the test suite needs on a fresh Debian machine: system packages, the project
# venv with test extras, and the separate venv of the real vLLM CPU server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[setup] %s\n' "$*"; }

APT_PACKAGES=(sox flite chromium)  # chromium: the dashboard tests (Playwright drives it)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
bash scripts/install.sh test   # with the embedded engine's Whisper weights
bash .ci/setup-sip.sh          # sipp, baresip, pjsua2 for the SIP tests
bash .ci/setup-vllm.sh
