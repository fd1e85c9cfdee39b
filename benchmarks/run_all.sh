#!/usr/bin/env bash
# Every benchmark, one after another, then BENCHMARKS.md rebuilt from benchmarks/results/*.json (~2 h, 2 cores).
#   bash benchmarks/run_all.sh            # everything
#   bash benchmarks/run_all.sh issue11    # only issue 11's set: peers (training, serving), memory, report (~1 h)
# Needs the offline reference runs (teacher-minilm, student-kd) in $KD_OFFLINE_RUNS (default /work/runs_offline);
# the peer scripts take their teacher from $KD_PEER_TEACHER (default $KD_OFFLINE_RUNS/teacher-minilm) and serve
# the student that peers_train.py distilled (kept in $KD_PEER_STUDENT).
# On a shared machine start it in its own session and raise its priority, e.g.
#   setsid nohup bash benchmarks/run_all.sh > /tmp/bench.log 2>&1 &  echo -15 > /proc/$!/autogroup
set -uo pipefail  # no -e: one failed benchmark should not stop the others
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false KD_ESTIMATE_PROBE=0 KD_CACHE_DIR="${KD_CACHE_DIR:-/work/kdcache}"
export KD_PEER_STUDENT="${KD_PEER_STUDENT:-/tmp/kd-peers-student}"
if [ "${1:-all}" != "issue11" ]; then
  python benchmarks/train_throughput.py
  python benchmarks/profile_train.py
  python benchmarks/inference.py --parts speed
  python benchmarks/inference.py --parts accuracy
fi
python benchmarks/peers_train.py --keep-student "$KD_PEER_STUDENT"   # KD Studio vs HF Trainer recipe vs seed loop
python benchmarks/serving_peers.py --student "$KD_PEER_STUDENT"      # PyTorch paths vs ONNX Runtime, idle and beside a worker
python benchmarks/memory.py
python benchmarks/report.py
