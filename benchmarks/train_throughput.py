"""Training throughput: the seed article's loop (benchmarks/seed_loop.py) vs `python -m distill_core distill`.

Both sides get the same teacher, the same student recipe (truncate:3: the teacher's embeddings + 3 of its layers,
identical initial weights), the same stratified training rows, validation rows and test rows, the same epochs,
batch size, learning rate, seed, optimiser and thread count. What differs is the loop itself:

- seed: every row padded to 150 tokens, the teacher re-run on every batch of every epoch, an extra student forward
  per batch to score training accuracy;
- distill_core: dynamic padding with length-grouped batches, teacher logits computed once (from a FRESH cache
  folder, so that one-off teacher pass is inside its clock), accuracy from the training forward pass.

The end-to-end span is the same on both sides: from tokenisation to the end of the last epoch (every epoch's
training and validation included; model loading and the final test scoring excluded). distill_core's span also
holds its per-epoch checkpoint saves (weights + optimiser state) and the tokenisation of the test split.
The whole child process wall time (imports, loading, test scoring included) is recorded as well.

Validation and test are a stratified 2,000-row subset of each (the same rows on both sides; --eval-samples 0 for
all 2,020 / 7,600): scoring all 7,600 test rows at 150 tokens, plus distill_core's teacher on them, would add ~10
minutes of this shared 2-core machine without changing what is compared.

    python benchmarks/train_throughput.py                      # the measurement (~25 min on 2 shared cores)
    python benchmarks/train_throughput.py --smoke              # a 1-minute check of the script itself
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import AG_NEWS, REPO, header, offline_env, require_offline_models, run_child, write_result

EVALUATING_PHASE = "evaluating the best checkpoint on the test split"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-samples", type=int, default=2000, help="stratified subsample of the train split")
    parser.add_argument("--eval-samples", type=int, default=2000,
                        help="stratified subsample of validation and test, the same rows on both sides (0 = all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--optimizer", choices=["adam", "adamw"], default="adam",
                        help="distill_core's optimiser; adam = the seed's constant-rate Adam (equal settings)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--student", default="truncate:3")
    parser.add_argument("--variants", nargs="+", default=["distill_core", "seed", "distill_core_bf16"],
                        choices=["seed", "distill_core", "distill_core_bf16"],
                        help="distill_core_bf16 = distill_core with --mixed-precision bf16 (CPU autocast)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings: check the script, not the machine")
    parser.add_argument("--name", default=None, help="results/<name>.json (default train_throughput[_smoke])")
    parser.add_argument("--timeout-s", type=float, default=1800, help="per child process")
    args = parser.parse_args()
    if args.smoke:
        args.train_samples, args.eval_samples, args.epochs = 128, 128, 1
    args.eval_samples = args.eval_samples or None
    args.name = args.name or ("train_throughput_smoke" if args.smoke else "train_throughput")
    return args


def run_seed(args: argparse.Namespace, teacher: Path, work: Path) -> dict[str, Any]:
    out = work / "seed.json"
    argv = [sys.executable, str(REPO / "benchmarks" / "seed_loop.py"), "--teacher", str(teacher / "model"),
            "--student-init", args.student, "--train-csv", str(AG_NEWS / "train.csv"),
            "--test-csv", str(AG_NEWS / "test.csv"), "--train-samples", str(args.train_samples),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
            "--seed", str(args.seed), "--threads", str(args.threads), "--out", str(out)]
    if args.eval_samples:
        argv += ["--eval-samples", str(args.eval_samples)]
    env = offline_env(work / "seed-cache")
    env["OMP_NUM_THREADS"] = str(args.threads)
    child = run_child(argv, env=env, log=work / "seed.log", timeout_s=args.timeout_s)
    if child["returncode"] != 0:
        raise SystemExit(f"error: seed loop failed ({child['returncode']}); log:\n{_tail(work / 'seed.log')}")
    seed = json.loads(out.read_text(encoding="utf-8"))
    epochs = seed["epochs"]
    trained = sum(e["train_examples"] for e in epochs)
    return {
        "loop": "seed (benchmarks/seed_loop.py)",
        "optimizer": "adam (constant lr, the seed's)",
        "n_train": seed["n_train"], "n_valid": seed["n_valid"], "n_test": seed.get("n_test"),
        "epochs_run": len(epochs),
        "epoch1_seconds": epochs[0]["seconds"],
        "epoch1_train_seconds": epochs[0]["train_seconds"],
        "epoch1_samples_per_s": epochs[0]["train_examples"] / epochs[0]["seconds"],
        "epoch1_train_samples_per_s": epochs[0]["samples_per_s"],
        "teacher_seconds": None,  # inside every step: not separable without a profiler (see profile_train.py)
        "end_to_end_seconds": seed["end_to_end_seconds"],
        "end_to_end_samples_per_s": trained / seed["end_to_end_seconds"],
        "trained_examples": trained,
        "valid_accuracy_per_epoch": [e["valid_accuracy"] for e in epochs],
        "test_accuracy": seed.get("test_accuracy"),
        "test_model": "last epoch (the seed scores the model it ends with)",
        "process_wall_s": child["wall_s"], "process_peak_rss_mb": child["peak_rss_mb"],
        "torch_threads": seed["machine"]["torch_threads"],
    }


def run_distill_core(args: argparse.Namespace, teacher: Path, work: Path, *, bf16: bool) -> dict[str, Any]:
    tag = "distill_core_bf16" if bf16 else "distill_core"
    cache = work / f"{tag}-cache"  # fresh: the teacher pass and the tokenisation are paid inside the clock
    run_dir = work / f"{tag}-run"
    timings = work / f"{tag}-timings.json"
    cli_args = ["distill", "--data", str(AG_NEWS), "--teacher", str(teacher), "--student", args.student,
                "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                "--optimizer", args.optimizer, "--seed", str(args.seed), "--train-samples", str(args.train_samples),
                "--patience", "0", "--log-every", "1", "--out", str(run_dir)]
    if args.eval_samples:
        cli_args += ["--eval-samples", str(args.eval_samples)]
    if bf16:
        cli_args += ["--mixed-precision", "bf16"]
    argv = [sys.executable, str(REPO / "benchmarks" / "_timed_distill.py"), str(timings), *cli_args]
    env = offline_env(cache)
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["KD_RUNS_DIR"] = str(work)
    child = run_child(argv, env=env, log=work / f"{tag}.log", timeout_s=args.timeout_s)
    if child["returncode"] != 0:
        raise SystemExit(f"error: {tag} failed ({child['returncode']}); log:\n{_tail(work / f'{tag}.log')}")
    marks = json.loads(timings.read_text(encoding="utf-8"))["marks"]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    eval_report = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))

    def first(kind: str, phase_prefix: str | None = None) -> dict:
        for m in marks:
            if m["kind"] == kind and (phase_prefix is None or m.get("phase", "").startswith(phase_prefix)):
                return m
        raise SystemExit(f"error: {tag}: no {kind} {phase_prefix or ''} event in the timings")

    fit_start = first("fit_start")["t"]
    teacher_phase = first("phase", "teacher logits for")["t"]
    start = first("start")
    span_end = first("phase", EVALUATING_PHASE)["t"]
    epochs = [m for m in marks if m["kind"] == "epoch"]
    steps_per_epoch = start["steps_per_epoch"]
    epoch1_last_step = next(m for m in marks if m["kind"] == "step" and m["step"] == steps_per_epoch)["t"]
    n_train = start["train_examples"]
    trained = n_train * len(epochs)
    split_sizes = config["provenance"]["split_sizes"]
    return {
        "loop": "distill_core" + (" --mixed-precision bf16" if bf16 else ""),
        "optimizer": f"{args.optimizer}" + (" (constant lr, as the seed)" if args.optimizer == "adam"
                                            else " (warm-up + linear decay)"),
        "n_train": n_train, "n_valid": split_sizes["validation"], "n_test": eval_report["student"]["n_examples"],
        "epochs_run": len(epochs),
        "epoch1_seconds": epochs[0]["seconds"],
        "epoch1_train_seconds": epoch1_last_step - start["t"],
        "epoch1_samples_per_s": n_train / epochs[0]["seconds"],
        "epoch1_train_samples_per_s": n_train / (epoch1_last_step - start["t"]),
        "tokenize_seconds": teacher_phase - fit_start,
        "teacher_seconds": start["t"] - teacher_phase,
        "end_to_end_seconds": span_end - fit_start,
        "end_to_end_samples_per_s": trained / (span_end - fit_start),
        "trained_examples": trained,
        "valid_accuracy_per_epoch": [m["valid_accuracy"] for m in metrics if m["kind"] == "epoch"],
        "test_accuracy": eval_report["student"]["accuracy"],
        "teacher_test_accuracy": eval_report.get("teacher", {}).get("accuracy"),
        "test_model": "best epoch by valid_accuracy (distill_core keeps the best checkpoint)",
        "process_wall_s": child["wall_s"], "process_peak_rss_mb": child["peak_rss_mb"],
        "torch_threads": config["provenance"]["torch_threads"],
    }


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def main() -> int:
    args = parse_args()
    (teacher,) = require_offline_models("teacher-minilm")
    result = header("train_throughput")
    result["settings"] = {k: v for k, v in vars(args).items() if k not in ("name", "timeout_s")}
    result["settings"].update(teacher=str(teacher), data=str(AG_NEWS), max_length=150, temperature=2.0, alpha=0.5,
                              dropout=0.3)
    result["runs"] = {}
    with tempfile.TemporaryDirectory(prefix="kd-train-bench-", ignore_cleanup_errors=True) as scratch:
        work = Path(scratch)
        for variant in args.variants:
            print(f"[bench] {variant} ...", file=sys.stderr, flush=True)
            if variant == "seed":
                result["runs"][variant] = run_seed(args, teacher, work)
            else:
                result["runs"][variant] = run_distill_core(args, teacher, work, bf16=variant.endswith("bf16"))
            print(f"[bench] {variant}: {json.dumps(result['runs'][variant])}", file=sys.stderr, flush=True)
        seed = result["runs"].get("seed")
        if seed:
            result["ratios_vs_seed"] = {
                name: {"end_to_end": run["end_to_end_samples_per_s"] / seed["end_to_end_samples_per_s"],
                       "epoch1": run["epoch1_samples_per_s"] / seed["epoch1_samples_per_s"],
                       "epoch1_train_only": run["epoch1_train_samples_per_s"] / seed["epoch1_train_samples_per_s"],
                       "process_wall": seed["process_wall_s"] / run["process_wall_s"],
                       "test_accuracy_points": 100 * (run["test_accuracy"] - seed["test_accuracy"])}
                for name, run in result["runs"].items() if name != "seed"}
        write_result(args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
