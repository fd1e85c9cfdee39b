"""One training step's memory and time: the student's activations at batch 32 x 128 tokens, per setting.

Where a distillation's peak comes from once the teacher is released (BENCHMARKS.md section 4c): one student step.
Each setting runs in its own fresh process (so no heap is shared), builds `truncate:3` from the teacher exactly as
`distill` does (distill_core.models.build_student, hidden dropout 0.3 as the seed recipe), and times 6
forward+backward+AdamW steps on one fixed random batch, `malloc_trim` before each so the resident set starts from
what is alive. Reported per setting: the forward pass's growth of the resident set (the activations kept for the
backward pass), the process's peak RSS and the median step time. The settings run interleaved, `--rounds` times.

    python benchmarks/step_memory.py --teacher /tmp/m12runs/teacher --rounds 2
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from _common import REPO, header, write_result

SETTINGS = {"attention dropout 0.1 (default)": {"attention_dropout": 0.1, "freeze": False},
            "attention dropout 0": {"attention_dropout": 0.0, "freeze": False},
            "attention dropout 0 + frozen embeddings": {"attention_dropout": 0.0, "freeze": True}}


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(teacher: str, setting: dict, batch: int, tokens: int, steps: int) -> dict:
    import torch

    from distill_core import models

    torch.manual_seed(0)
    teacher_model, _ = models.load_classifier(teacher, ["World", "Sports", "Business", "Sci/Tech"],
                                              require_trained=True)
    student = models.build_student("truncate:3", teacher_model, ["World", "Sports", "Business", "Sci/Tech"],
                                   dropout=0.3, attention_dropout=setting["attention_dropout"])
    del teacher_model
    if setting["freeze"]:
        models.freeze_word_embeddings(student)
    student.train()
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(1000, 20000, (batch, tokens))
    labels = torch.randint(0, 4, (batch,))
    libc = ctypes.CDLL("libc.so.6")
    forward_growth, times = [], []
    for _ in range(steps):
        libc.malloc_trim(0)
        before = rss_mb()
        started = time.perf_counter()
        loss = student(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        forward_growth.append(rss_mb() - before)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
        del loss
    return {"forward_growth_mb": statistics.median(forward_growth[1:]), "step_s": statistics.median(times[1:]),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "trained_parameters": sum(p.numel() for p in student.parameters() if p.requires_grad),
            "threads": torch.get_num_threads()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True, help="a fine-tuned teacher (run folder or model folder)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6, help="per process; the first is not counted")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.teacher, SETTINGS[args.child], args.batch_size, args.tokens, args.steps)))
        return 0
    result = header("step_memory")
    result["settings"] = {"batch_size": args.batch_size, "tokens": args.tokens, "steps": args.steps,
                          "rounds": args.rounds, "student": "truncate:3", "dropout": 0.3}
    rows: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for round_index in range(1, args.rounds + 1):
        for name in SETTINGS:
            out = subprocess.run([sys.executable, __file__, "--teacher", args.teacher, "--batch-size",
                                  str(args.batch_size), "--tokens", str(args.tokens), "--steps", str(args.steps),
                                  "--child", name], capture_output=True, text=True, check=True, cwd=REPO,
                                 env={**os.environ, "HF_HUB_OFFLINE": "1"})
            row = {**json.loads(out.stdout.strip().splitlines()[-1]), "round": round_index,
                   "load": os.getloadavg()[0]}
            rows[name].append(row)
            print(f"[step] round {round_index} {name}: forward +{row['forward_growth_mb']:.0f} MB, step "
                  f"{row['step_s']:.2f} s, peak {row['peak_rss_mb']:.0f} MB", file=sys.stderr)
    result["runs"] = rows
    write_result("step_memory", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
