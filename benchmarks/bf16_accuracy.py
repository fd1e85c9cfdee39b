"""bf16 autocast vs fp32 training: accuracy over several seeds, and wall time, on the same distillation.

Distils `truncate:3` from a fine-tuned MiniLM teacher on AG News rows with the issue-11 settings (2,000 train rows,
2 epochs, batch 32, lr 1e-4, max length 128, T 2, alpha 0.5), once per seed and precision, the two precisions
interleaved (and their order alternated per seed) so that a change in machine load hits both alike. Teacher logits
are shared through one cache folder (computed without autocast, so both precisions learn from the same targets).
The result is rewritten after every run: a partial result is still a result.

Note the machine: on a CPU without amx_bf16 / avx512_bf16, bf16 autocast is emulated, so its wall time there says
nothing about an AMX machine; its accuracy does (the rounding is the same).

Usage: python benchmarks/bf16_accuracy.py --teacher /tmp/m12runs/teacher/model [--seeds 1 2 3] [--train-samples 2000]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import AG_NEWS, header, offline_env, run_child, write_result

PRECISIONS = ("no", "bf16")


def _distill_argv(args: argparse.Namespace, seed: int, precision: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "distill_core", "distill", "--data", str(args.data), "--teacher", str(args.teacher),
            "--student", "truncate:3", "--train-samples", str(args.train_samples), "--eval-samples",
            str(args.eval_samples), "--epochs", str(args.epochs), "--batch-size", "32", "--lr", "1e-4",
            "--max-length", "128", "--temperature", "2", "--alpha", "0.5", "--dropout", "0.1", "--patience", "0",
            "--seed", str(seed), "--mixed-precision", precision, "--out", str(out), "--quiet"]


def _read_run(run_dir: Path) -> dict[str, Any]:
    """Best validation accuracy (the saved epoch), test accuracy of the saved model, and the run's own timings."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r for r in rows if r.get("kind") == "epoch" and not r.get("partial")]
    evaluation = json.loads((run_dir / "eval.json").read_text())
    student = evaluation.get("student", evaluation)
    status = json.loads((run_dir / "status.json").read_text())
    recorded = json.loads((run_dir / "config.json").read_text())["provenance"]
    return {"valid_accuracy": max(r["valid_accuracy"] for r in epochs),
            "valid_accuracy_by_epoch": [r["valid_accuracy"] for r in epochs],
            "test_accuracy": student.get("accuracy"), "epoch_seconds": [r.get("seconds") for r in epochs],
            "run_wall_s": status.get("wall_s"), "train_samples_per_s": status.get("train_samples_per_s"),
            "recorded_precision": recorded.get("mixed_precision"),
            "recorded_padding": recorded.get("pad_to_multiple_of")}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for precision in PRECISIONS:
        done = [r for r in runs if r["precision"] == precision and r.get("returncode") == 0]
        if not done:
            continue
        out[precision] = {key: {"mean": statistics.fmean(r[key] for r in done), "min": min(r[key] for r in done),
                                "max": max(r[key] for r in done)}
                          for key in ("valid_accuracy", "test_accuracy", "wall_s")}
        out[precision]["runs"] = len(done)
    pairs = [(a, b) for a in runs for b in runs if a["seed"] == b["seed"] and a["precision"] == "no"
             and b["precision"] == "bf16" and a.get("returncode") == 0 == b.get("returncode")]
    if pairs:
        out["bf16_minus_fp32_points"] = {
            key: [round(100 * (b[key] - a[key]), 2) for a, b in pairs] for key in ("valid_accuracy", "test_accuracy")}
        out["bf16_over_fp32_wall"] = [round(b["wall_s"] / a["wall_s"], 3) for a, b in pairs]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True, help="a fine-tuned MiniLM teacher folder")
    parser.add_argument("--data", type=Path, default=AG_NEWS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--eval-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--name", default="bf16_accuracy", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    if not (args.data / "train.csv").is_file() and not any(args.data.glob("train.*")):
        sys.exit(f"error: no AG News rows at {args.data} (set KD_AG_NEWS)")

    work = Path(tempfile.mkdtemp(prefix="bf16_accuracy_"))
    env = offline_env(work / "cache")  # one teacher-logit cache for every run
    result: dict[str, Any] = {**header("bf16_accuracy"), "teacher": str(args.teacher),
                              "settings": {"train_samples": args.train_samples, "eval_samples": args.eval_samples,
                                           "epochs": args.epochs, "batch_size": 32, "lr": 1e-4, "max_length": 128,
                                           "temperature": 2.0, "alpha": 0.5, "dropout": 0.1,
                                           "student": "truncate:3"},
                              "runs": []}
    for index, seed in enumerate(args.seeds):
        order = PRECISIONS if index % 2 == 0 else PRECISIONS[::-1]
        for precision in order:
            run_dir = work / "runs" / f"seed{seed}-{precision}"
            child = run_child(_distill_argv(args, seed, precision, run_dir), env=env,
                              log=work / f"seed{seed}-{precision}.log")
            row: dict[str, Any] = {"seed": seed, "precision": precision, **child}
            row.pop("argv")
            if child["returncode"] == 0:
                row.update(_read_run(run_dir))
            result["runs"].append(row)
            result["summary"] = _summary(result["runs"])
            write_result(args.name, result)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
