#!/usr/bin/env bash
# The GPU benchmark in one call: sed-s training throughput and MFU (eager and torch.compile, bf16), then
# generation latency of SED (1000 ancestral steps, DDIM 64, and the 4/2/1-step cost of a distilled student)
# against AR with its KV cache, then block sampling (B = 4 at 1/2/8 ddim steps per block, B = 16 at 1/2, with
# and without the KV cache) against AR. Writes benchmarks/results/gpu-{throughput,generation,block-speed}-sed-s.{json,md};
# with OUT set, copies them and the logs there too.
#   bash benchmarks/gpu_suite.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
LOGS=${OUT:-benchmarks/results}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$LOGS/gpu-suite-nvidia-smi.txt"
timeout "${THROUGHPUT_TIMEOUT:-260}" "$PY" benchmarks/gpu_throughput.py --device cuda --steps 20 --warmup 5 \
    2>&1 | tee "$LOGS/gpu-throughput.log"
timeout "${GENERATION_TIMEOUT:-270}" "$PY" benchmarks/gpu_generation.py --device cuda --compile off --repeats 2 \
    2>&1 | tee "$LOGS/gpu-generation.log"
timeout "${GENERATION_TIMEOUT:-270}" "$PY" benchmarks/gpu_generation.py --device cuda --compile on --repeats 2 \
    --name gpu-generation-sed-s-compiled 2>&1 | tee "$LOGS/gpu-generation-compiled.log"
timeout "${BLOCK_TIMEOUT:-400}" "$PY" benchmarks/block_speed.py --device cuda --config sed-s --steps 1,2,8 \
    --name gpu-block-speed-sed-s 2>&1 | tee "$LOGS/gpu-block-speed.log"
timeout "${BLOCK_TIMEOUT:-400}" "$PY" benchmarks/block_speed.py --device cuda --config sed-s --block-size 16 \
    --steps 1,2 --name gpu-block-speed-sed-s-b16 2>&1 | tee "$LOGS/gpu-block-speed-b16.log"
if [ -n "${OUT:-}" ]; then
    cp benchmarks/results/gpu-throughput-sed-s.* benchmarks/results/gpu-generation-sed-s*.* \
        benchmarks/results/gpu-block-speed-sed-s*.* "$OUT"/ 2>/dev/null
fi
exit 0
