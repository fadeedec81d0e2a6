#!/usr/bin/env bash
# What the SIP tests need on top of .ci/setup.sh: sipp (Debian package `sip-tester`), baresip
# (a G.722 caller), kamailio (the dispatcher in front of several SIP workers,
# bridge/sip/dispatcher.py) and the pjsua2 wheel in the project venv (the SIP workers' runtime).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[setup-sip] %s\n' "$*"; }

. .ci/apt.sh
APT_NO_RECOMMENDS=1 apt_install sip-tester baresip-core kamailio
if ! .venv/bin/python -c "import pjsua2" 2>/dev/null; then
    log "pip install pjsua2-python==2.15.1.post1"
    .venv/bin/pip install -q "pjsua2-python==2.15.1.post1"
fi
.venv/bin/python -c 'import pjsua2'
command -v sipp >/dev/null
kamailio=$(command -v kamailio || echo /usr/sbin/kamailio)  # /usr/sbin: not on every PATH
kamailio_version=$("$kamailio" -v | sed -n 1p)
sipp_version=$(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | sed -n 1p || true)  # sipp -v exits 99
log "ok: $sipp_version, ${kamailio_version#version: }, pjsua2-python 2.15.1.post1"
