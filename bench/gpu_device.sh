#!/usr/bin/env bash
# Issue 18's GPU measurement as one prepared run on a lent GPU machine (one H200; docs/performance.md).
# That machine has Python 3.12 with PyTorch, Triton, aiohttp, httpx, transformers, safetensors and
# pytest, and no network: the runtime's other needs (pydantic, xgrammar) travel as wheels in .whl/.
#
#   here, once (PyPI):  bash bench/gpu_device.sh download       # .whl/, ~8 MB, git-ignored
#   on the device:      bash bench/gpu_device.sh                # carry [".whl"], timeout_s 560
#
# Everything it measures lands in $OUT: nvidia-smi.txt, versions.txt, triton-tests.log (the Triton
# kernels' test cases compiled and run on the card), gpu.json + gpu.log (bench/gpu.py with Triton
# attention and CUDA graphs), the servers' logs, and gpu-overlap.* if time is left for a second run
# with overlap scheduling. Each step has its own time limit, so a hang in one leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        typing-extensions==4.16.0 xgrammar==0.2.9 apache-tvm-ffi==0.1.15.post2)

if [ "${1:-}" = download ]; then
  exec python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
fi

OUT=${OUT:-/tmp/gpu-device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
t0=$(date +%s)
elapsed() { echo "[gpu_device $(( $(date +%s) - t0 ))s] $*"; }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl || { echo "the carried wheels did not install: run 'bash bench/gpu_device.sh download' here first"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD:$PWD/runtime-image"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c '
import sys, torch, triton, transformers, pydantic, aiohttp, xgrammar
print(sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__,
      "transformers", transformers.__version__, "pydantic", pydantic.__version__, "xgrammar", xgrammar.__version__)
print(torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory // 2**20, "MiB")
' 2>&1 | tee "$OUT/versions.txt"

elapsed "1/3 the Triton kernels on the card (tests/unit/runtime/test_triton_attention.py, compiled)"
RADIX_TRITON_TEST_DEVICE=cuda timeout 150 python3 -m pytest -q -p no:cacheprovider --noconftest \
  -o addopts="" tests/unit/runtime/test_triton_attention.py > "$OUT/triton-tests.log" 2>&1
tail -3 "$OUT/triton-tests.log"

elapsed "2/3 bench/gpu.py: Llama-3.1-8B shape, bf16, Triton attention, CUDA graphs to batch 256"
timeout 330 python3 -m bench.gpu --server-flags "--attention-backend triton --cuda-graph-max-bs 256" \
  --log-dir "$OUT/logs" --out "$OUT/gpu.json" > "$OUT/gpu.log" 2>&1
echo "bench/gpu.py exited $?"
grep -v '^\[radix_runtime\]' "$OUT/gpu.log" | tail -25

left=$(( 520 - ($(date +%s) - t0) ))
if [ "$left" -gt 150 ]; then
  elapsed "3/3 the same with overlap scheduling, no HF ($left s left)"
  timeout $(( left - 10 )) python3 -m bench.gpu --no-hf \
    --server-flags "--attention-backend triton --cuda-graph-max-bs 256 --enable-overlap-schedule" \
    --log-dir "$OUT/logs-overlap" --out "$OUT/gpu-overlap.json" > "$OUT/gpu-overlap.log" 2>&1
  echo "bench/gpu.py (overlap) exited $?"
  grep -v '^\[radix_runtime\]' "$OUT/gpu-overlap.log" | tail -14
else
  elapsed "3/3 skipped: $left s left"
fi
elapsed done
