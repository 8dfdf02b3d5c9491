#!/usr/bin/env bash
# Quick start, line 2: install voxflip with its test extras into .venv and run the
# CPU test suite. Extra arguments go to pytest (e.g. -m slow, -k streamer).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh dev
exec .venv/bin/python -m pytest "$@"
