#!/usr/bin/env bash
# The GPU machine check (under 10 minutes on one NVIDIA GPU): install hwnas with the GPU runtime, check the
# devices, profile mobilenet_v2 and resnet50 at batch 1 and 32 on onnxruntime CUDA (I/O bound), TensorRT (where
# onnxruntime-gpu has it) and torch CUDA, train digits briefly on the GPU, run the GPU tests, print one table.
#
# usage: bash scripts/gpu-check.sh [OUT_DIR]        (default runs/gpu-check; $OUT when set)
#   HWNAS_GPU_VENV=DIR   use this environment as it is (already has hwnas, a CUDA torch and onnxruntime-gpu)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-runs/gpu-check}}
mkdir -p "$out"
if [ -n "${HWNAS_GPU_VENV:-}" ]; then
  venv=$HWNAS_GPU_VENV
else
  venv=.venv-gpu
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # torch from the registry: on a GPU machine its default build is the CUDA one
  "$venv/bin/python" -m pip install -q torch==2.13.0 || exit 1
  "$venv/bin/python" -m pip install -q -e ".[gpu,dev]" || exit 1
  # onnxruntime and onnxruntime-gpu share the import name: keep the GPU one alone
  "$venv/bin/python" -m pip uninstall -y -q onnxruntime onnxruntime-gpu
  "$venv/bin/python" -m pip install -q onnxruntime-gpu || exit 1
fi
py="$venv/bin/python"
export HWNAS_NO_PROGRESS=1
nvidia-smi 2>&1 | head -15 | tee "$out/nvidia-smi.txt"
"$py" -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available()); print('onnxruntime', o.__version__, o.get_available_providers())" | tee "$out/runtimes.txt"
"$venv/bin/hwnas" devices --check | tee "$out/devices.txt"
"$venv/bin/hwnas" profile --device cuda --model mobilenet_v2 --batch 32 --json "$out/profile-cuda.json" | tail -5
timeout 420 "$py" bench/gpu.py --json "$out/gpu.json" | tee "$out/gpu.md"
rc=${PIPESTATUS[0]}
timeout 120 "$py" -m pytest -q -p no:cacheprovider tests/latency/test_gpu.py tests/hwnas/test_train.py \
  "tests/latency/test_contract_backends.py" -k "gpu or cuda or device or sync" 2>&1 | tail -5 | tee "$out/tests.txt"
exit "$rc"
