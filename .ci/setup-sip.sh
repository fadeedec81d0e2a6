#!/usr/bin/env bash
# What the SIP tests need on top of .ci/setup.sh: sipp (Debian package `sip-tester`), baresip
# (a G.722 caller) and the pjsua2 wheel in the project venv (the SIP workers' runtime).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[setup-sip] %s\n' "$*"; }

APT_PACKAGES=(sip-tester baresip-core)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! .venv/bin/python -c "import pjsua2" 2>/dev/null; then
    log "pip install pjsua2-python==2.15.1.post1"
    .venv/bin/pip install -q "pjsua2-python==2.15.1.post1"
fi
.venv/bin/python -c 'import pjsua2'
command -v sipp >/dev/null
log "ok: $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1), pjsua2-python 2.15.1.post1"
