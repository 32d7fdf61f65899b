#!/usr/bin/env bash
# Set up .venv-demo and run the demo on the embedded default device (cpu: onnxruntime, 1 thread)
# with the digits data that scikit-learn ships. Nothing is downloaded but the Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh .venv-demo
exec .venv-demo/bin/hwnas demo "$@"
