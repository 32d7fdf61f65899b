#!/usr/bin/env bash
# Set up .venv-test (with the dev, tflite and ray extras) and run the whole test suite, slow tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh .venv-test dev,tflite,ray
exec .venv-test/bin/python -m pytest -ra -q "$@"
