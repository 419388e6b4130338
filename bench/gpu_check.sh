#!/usr/bin/env bash
# One-GPU readiness check of pasta_lens (bench/gpu_check.py): steering parity vs the additive reference in fp32 and
# bf16, cached == uncached generation, the fast engine (fp32) / refused (bf16), one attribution profile on a few
# examples, a small evaluation, peak memory; one verdict line, exit 0 only on PASS.
#
#   bench/gpu_check.sh                                   one GPU, SmolLM2-135M-Instruct (offline wheel), < 5 minutes
#   bench/gpu_check.sh --device cpu --model DIR --fast   the same checks on the CPU (tests/test_gpu_check.py)
#
# PYTHON picks the interpreter (default .venv/bin/python); GPU_CHECK_TIMEOUT the hard limit in seconds (default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONUNBUFFERED=1
exec timeout --foreground "${GPU_CHECK_TIMEOUT:-300}" "$PY" bench/gpu_check.py "$@"
