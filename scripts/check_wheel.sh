#!/usr/bin/env bash
# CI: build the wheel, install it into a fresh virtual environment outside the checkout, and
# run the README's main job from there with the default converter of both directions.
# A package or data file missing from the wheel fails here, and so does a dependency that
# only the editable install had. Usage: bash scripts/check_wheel.sh [runtime extra, default cpu]
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
runtime="${1:-cpu}"
py="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/voxflip-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }   # this machine's pip config warns per package

echo "check_wheel: building the wheel" >&2
quiet_pip "$py" -m pip --disable-pip-version-check -q wheel --no-deps -c constraints.txt -w "$work/dist" . >/dev/null
wheel="$(ls "$work"/dist/voxflip-*.whl)"

echo "check_wheel: every module of the source tree is in $(basename "$wheel")" >&2
"$py" scripts/wheel_contents.py "$wheel"

echo "check_wheel: installing it with [$runtime] into a fresh venv in $work" >&2
"$py" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip --disable-pip-version-check -q)
quiet_pip "${pip[@]}" install -c "$repo/constraints.txt" "$wheel[$runtime]"
"${pip[@]}" check

cd "$work"   # nothing of the checkout is importable from here
"$work/venv/bin/python" -c "import voxflip, sys; assert '$repo' not in voxflip.__file__, voxflip.__file__"
"$work/venv/bin/voxflip" demo --out "$work/demo"
for f in arctic_a0007_sung.wav arctic_a0007_sung_spoken.wav; do
  test -s "$work/demo/$f" || { echo "check_wheel: the demo wrote no $f" >&2; exit 1; }
done
# the shipped model through the [cpu] runtime, from the installed package data
"$work/venv/bin/voxflip" render "$work/demo/arctic_a0007_sung.wav" -o "$work/demo/flow.wav" --to speech --method flow -q
test -s "$work/demo/flow.wav" || { echo "check_wheel: the flow converter wrote nothing" >&2; exit 1; }
"$work/venv/bin/voxflip" render "$work/demo/arctic_a0007_sung.wav" -o "$work/demo/flow_hn.wav" --to speech --method flow \
    --vocoder hn -q
test -s "$work/demo/flow_hn.wav" || { echo "check_wheel: the flow converter with the shipped hn vocoder wrote nothing" >&2; exit 1; }
# alignsts (the whisper extra goes with the cpu runtime): without the extra one line says what to install;
# with it, the shipped AlignSTS model sings
if [ "$runtime" = cpu ]; then
  if "$work/venv/bin/voxflip" render "$repo/voxflip/data/arctic_a0007.wav" -o "$work/demo/alignsts.wav" --to singing \
      --method alignsts --melody "$repo/voxflip/data/tune.mid" -q 2> "$work/err.txt"; then
    echo "check_wheel: alignsts ran without the whisper extra" >&2; exit 1
  fi
  grep -q 'voxflip\[whisper\]' "$work/err.txt" || { echo "check_wheel: alignsts did not name the whisper extra:" >&2; cat "$work/err.txt" >&2; exit 1; }
  quiet_pip "${pip[@]}" install -c "$repo/constraints.txt" "$wheel[$runtime,whisper]"
  "${pip[@]}" check
  "$work/venv/bin/voxflip" render "$repo/voxflip/data/arctic_a0007.wav" -o "$work/demo/alignsts.wav" --to singing \
      --method alignsts --melody "$repo/voxflip/data/tune.mid" -q
  test -s "$work/demo/alignsts.wav" || { echo "check_wheel: the alignsts converter wrote nothing" >&2; exit 1; }
fi
echo "check_wheel: OK: the wheel renders both directions with their default converters, and with the shipped models" >&2
