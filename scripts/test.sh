#!/usr/bin/env bash
# Quick start, line 2: install voxflip with its test extras into .venv and run the
# CPU test suite. Extra arguments go to pytest (e.g. -m slow, -k streamer).
# The real-time tests (-m live: PortAudio on a JACK server with the dummy backend,
# voxflip live driven over OSC) are opt-in; their Debian packages are installed
# here too, and the tests start JACK themselves: bash scripts/test.sh -m live
set -euo pipefail
cd "$(dirname "$0")/.."
VOXFLIP_APT_PACKAGES="portaudio19-dev jackd2 festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts ${VOXFLIP_APT_PACKAGES:-}" bash scripts/bootstrap.sh dev,live,train,eval,ray
exec .venv/bin/python -m pytest "$@"
