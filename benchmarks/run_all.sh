#!/usr/bin/env bash
# Every benchmark, one after another, then BENCHMARKS.md rebuilt from benchmarks/results/*.json (~45 min, 2 cores).
# Needs the offline reference runs (teacher-minilm, student-kd) in $KD_OFFLINE_RUNS (default /work/runs_offline).
# On a shared machine start it in its own session and raise its priority, e.g.
#   setsid nohup bash benchmarks/run_all.sh > /tmp/bench.log 2>&1 &  echo -15 > /proc/$!/autogroup
set -uo pipefail  # no -e: one failed benchmark should not stop the others
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false KD_CACHE_DIR="${KD_CACHE_DIR:-/work/kdcache}"
python benchmarks/train_throughput.py
python benchmarks/profile_train.py
python benchmarks/inference.py --parts speed
python benchmarks/inference.py --parts accuracy
python benchmarks/memory.py
python benchmarks/report.py
