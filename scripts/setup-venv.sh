#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install hwnas into it.
# usage: scripts/setup-venv.sh VENV_DIR [EXTRAS]      e.g. scripts/setup-venv.sh .venv-test dev,tflite,ray
# torch is installed first and pinned to the local CPU build: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
venv=${1:?usage: setup-venv.sh VENV_DIR [EXTRAS]}
extras=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q torch==2.13.0
if [ -n "$extras" ]; then
  "$venv/bin/python" -m pip install -q -e "$root[$extras]"
else
  "$venv/bin/python" -m pip install -q -e "$root"
fi
