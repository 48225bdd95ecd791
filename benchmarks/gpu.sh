#!/usr/bin/env bash
# GPU benchmark (seed-architecture encoder throughput, then a 20k-passage ingest, then the same
# ingest through Ray with one worker per GPU: passages/s per GPU and in total); no network.
#   benchmarks/gpu.sh [OUT_DIR] [bench_gpu.py options]    OUT_DIR default: $OUT, else bench-results/gpu
# Needs torch and transformers (PYTHON, else .venv/bin/python, else python3). Exit status:
# 0 done, 69 no CUDA device (prints exactly "no CUDA device"), anything else a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
out="${1:-${OUT:-bench-results/gpu}}"
shift || true
export HF_HUB_OFFLINE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/bench_gpu.py --out "$out" "$@"
