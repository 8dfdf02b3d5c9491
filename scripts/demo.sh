#!/usr/bin/env bash
# Quick start, line 1: install voxflip into .venv, then sing the bundled speech
# example on the bundled tune and speak the result again (outputs in out/demo/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/voxflip demo --out out/demo
