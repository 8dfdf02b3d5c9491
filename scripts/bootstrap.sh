#!/usr/bin/env bash
# Create .venv in the repository root and install voxflip into it (editable),
# with the ONNX runtime extra named by $VOXFLIP_RUNTIME (cpu, the default, or gpu:
# onnxruntime-gpu instead of onnxruntime, never both; see docs/install.md) and the
# extras named in $1 (e.g. "dev"). Debian/Ubuntu packages it needs (Python venv and
# headers, a C++ compiler for pyworld) are installed first when missing, with sudo
# when not root. Safe to run again, also to switch runtimes.
set -euo pipefail
cd "$(dirname "$0")/.."
runtime="${VOXFLIP_RUNTIME:-cpu}"
case "$runtime" in cpu|gpu) ;; *) echo "voxflip: VOXFLIP_RUNTIME=$runtime must be cpu or gpu" >&2; exit 2 ;; esac
extras="$runtime${1:+,$1}"
if [ "$runtime" = gpu ] && [[ ",${1:-}," == *,eval,* || ",${1:-}," == *,whisper,* ]]; then
  # faster-whisper (eval, whisper) requires onnxruntime for its VAD, which would sit beside onnxruntime-gpu
  echo "voxflip: the eval and whisper extras pull the CPU onnxruntime (through faster-whisper); use VOXFLIP_RUNTIME=cpu" >&2
  exit 2
fi
py="${PYTHON:-python3}"

need=()
command -v "$py" >/dev/null 2>&1 || need+=(python3)
if command -v "$py" >/dev/null 2>&1; then
  "$py" -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
  "$py" -c "import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h'))" \
    >/dev/null 2>&1 || need+=(python3-dev)
fi
command -v g++ >/dev/null 2>&1 || need+=(g++)
for pkg in ${VOXFLIP_APT_PACKAGES:-}; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "voxflip: please install these Debian/Ubuntu packages first: ${need[*]}" >&2; exit 1
  fi
  echo "voxflip: installing system packages: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "voxflip: creating .venv" >&2
  "$py" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install -c constraints.txt --upgrade pip "setuptools>=77.0.3,<81" wheel
# onnxruntime and onnxruntime-gpu share one folder: switching runtimes removes the other first
other=$([ "$runtime" = gpu ] && echo onnxruntime || echo onnxruntime-gpu)
if .venv/bin/python -m pip show -q "$other" >/dev/null 2>&1; then
  echo "voxflip: removing $other (the $runtime runtime replaces it)" >&2
  "${pip[@]}" uninstall -y onnxruntime onnxruntime-gpu >/dev/null
fi
echo "voxflip: installing voxflip[$extras] into .venv" >&2
# The editable install maps engine/ to voxflip.engine (and so on) with an import hook; static
# type checkers cannot see it: docs/development.md says how to give them a view of their own.
"${pip[@]}" install -c constraints.txt -e ".[$extras]"
.venv/bin/python scripts/ide_view.py >/dev/null
