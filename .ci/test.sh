#!/usr/bin/env bash
# Lint, type-check and test (needs .ci/setup.sh first; `bash .ci/run` does both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "[test] ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "[test] mypy (strict on the pure core, errors, config and storage)"
.venv/bin/mypy
echo "[test] pytest"
exec .venv/bin/python -m pytest -ra "$@"
