"""Training to a saved model: KD Studio vs the Hugging Face Trainer KD recipe (fp32, bf16) vs the seed loop.

The peers a practitioner would otherwise use, run by one harness on the same work: the same teacher, the same
`truncate:3` student with identical initial weights, the same 2,000 stratified training rows and validation rows,
2 epochs, batch 32, lr 1e-4, max length 128, T 2, alpha 0.5, seed 42, 2 threads:

- `kd_studio`: `python -m distill_core distill` with its own defaults for everything not listed above (AdamW with
  warm-up, dropout 0.3, the mixed precision it picks for this CPU), from a FRESH teacher-logit cache every round,
  so its one-off teacher pass is inside its clock;
- `trainer_fp32` / `trainer_bf16`: benchmarks/trainer_recipe.py (the `Trainer` subclass with the KD loss, the
  teacher on every batch, dynamic padding, length-grouped batches, fused AdamW, same schedule), fp32 and
  `bf16=True, use_cpu=True`;
- `seed`: benchmarks/seed_loop.py (the seed article's loop: padded to max length, teacher every batch, constant
  lr Adam), here with the same epochs/batch/lr/max length as the others.

The variants run interleaved, A B C D A B C D ..., `--rounds` times, so a change of machine load hits all of them;
each result keeps min and median. *To a saved model* = from spawning the process to the student saved on disk
(imports, data, model loading, tokenisation, training, validation and saving included; KD Studio's final test
scoring, which comes after its model is saved, is excluded). Every run records the load average at its start and
end. Ratios are peer time / KD Studio time; validation accuracy is that of the model each one saved.

    python benchmarks/peers_train.py --teacher /tmp/m12runs/teacher           # ~1 h on 2 cores (2 rounds)
    python benchmarks/peers_train.py --teacher /tmp/kdE/teacher --quick        # a few minutes: the script itself
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import AG_NEWS, OFFLINE, REPO, header, offline_env, run_child, write_result

VARIANTS = ("kd_studio", "trainer_fp32", "trainer_bf16", "seed", "kd_studio_low_memory", "kd_studio_trim",
            "kd_studio_frozen_embeddings", "kd_studio_no_attention_dropout", "kd_studio_lean",
            "kd_studio_before_2026_12_03", "kd_studio_pad16", "kd_studio_fp32", "kd_studio_pad1",
            "kd_studio_tcmalloc", "kd_studio_glibc", "trainer_bf16_tcmalloc", "trainer_fp32_tcmalloc",
            "kd_studio_fp32_glibc")
# KD Studio with opt-in memory levers, for A/Bs against its defaults (distill_core/allocator.py, config.py):
# kd_studio_low_memory: glibc's mmap threshold fixed at 1 MiB; kd_studio_trim: malloc_trim every 10 steps and
# around evaluation passes; kd_studio_frozen_embeddings: --freeze-embeddings; kd_studio_no_attention_dropout:
# --attention-dropout 0 (the default since 2026-12-03); kd_studio_lean: the trim and both flags;
# kd_studio_before_2026_12_03: the defaults before that day (the teacher's attention dropout, 0.1 for MiniLM,
# batches padded to their longest row, evaluation batches of 128, no heap trim after evaluation passes);
# kd_studio_pad16: today's defaults with batch lengths rounded up to 16 tokens (what the rounding costs and saves);
# kd_studio_fp32: --mixed-precision no, on a CPU where the default (auto) picks bf16 autocast (what bf16 buys);
# kd_studio_pad1: --pad-to-multiple-of 1 (each batch to its longest row, the default before auto padding);
# kd_studio_tcmalloc: the defaults with gperftools' tcmalloc preloaded (LD_PRELOAD; apt libtcmalloc-minimal4),
# which is the default since 2026-12-03 where tcmalloc is installed (distill_core/malloc_choice.py);
# kd_studio_glibc: KD_MALLOC=system, glibc's malloc (the default before that); trainer_*_tcmalloc: the Trainer
# recipe with the same preload, so the comparison also holds with the allocator taken out of it;
# kd_studio_fp32_glibc: fp32 on glibc's malloc (what an AVX2-only CPU ran by default before that day, here on a
# bf16 CPU: against kd_studio_fp32, what tcmalloc does to fp32 training's time and peak).
VARIANT_ENV = {"kd_studio_low_memory": {"KD_MALLOC_MMAP_THRESHOLD": "1048576"},
               "kd_studio_trim": {"KD_MALLOC_TRIM_EVERY": "10"}, "kd_studio_lean": {"KD_MALLOC_TRIM_EVERY": "10"},
               "kd_studio_before_2026_12_03": {"KD_MALLOC_TRIM_AFTER_EVAL": "0"},
               "kd_studio_tcmalloc": {"LD_PRELOAD": "libtcmalloc_minimal.so.4"},
               "kd_studio_glibc": {"KD_MALLOC": "system"}, "kd_studio_fp32_glibc": {"KD_MALLOC": "system"},
               "trainer_bf16_tcmalloc": {"LD_PRELOAD": "libtcmalloc_minimal.so.4"},
               "trainer_fp32_tcmalloc": {"LD_PRELOAD": "libtcmalloc_minimal.so.4"}}
VARIANT_FLAGS = {"kd_studio_frozen_embeddings": ["--freeze-embeddings"],
                 "kd_studio_no_attention_dropout": ["--attention-dropout", "0"],
                 "kd_studio_lean": ["--freeze-embeddings", "--attention-dropout", "0"],
                 "kd_studio_before_2026_12_03": ["--attention-dropout", "0.1", "--pad-to-multiple-of", "1",
                                                 "--eval-batch-size", "128"],
                 "kd_studio_pad16": ["--pad-to-multiple-of", "16"],
                 "kd_studio_fp32": ["--mixed-precision", "no"], "kd_studio_fp32_glibc": ["--mixed-precision", "no"],
                 "kd_studio_pad1": ["--pad-to-multiple-of", "1"]}
TEST_PHASE = "evaluating the best checkpoint on the test split"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default=os.environ.get("KD_PEER_TEACHER", str(OFFLINE / "teacher-minilm")),
                        help="teacher run folder (default $KD_PEER_TEACHER or $KD_OFFLINE_RUNS/teacher-minilm)")
    parser.add_argument("--data", default=str(AG_NEWS))
    parser.add_argument("--student", default="truncate:3")
    parser.add_argument("--rows", "--train-samples", dest="train_samples", type=int, default=2000)
    parser.add_argument("--eval-samples", type=int, default=2000, help="validation (and KD Studio test) rows")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed-per-round", action="store_true",
                        help="round r trains with seed --seed + r - 1 (every variant of a round the same seed): "
                             "accuracy over seeds from the same A/B")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                        help="default: all; trainer_bf16 only where the CPU has native bf16 (see below)")
    parser.add_argument("--keep-student", type=Path, default=None,
                        help="copy the last KD Studio round's run folder here (for serving_peers.py --student)")
    parser.add_argument("--quick", action="store_true", help="128 rows, 1 epoch, 1 round: check the script")
    parser.add_argument("--name", default=None, help="results/<name>.json (default peers_train[_smoke])")
    parser.add_argument("--timeout-s", type=float, default=3600, help="per child process")
    args = parser.parse_args()
    if args.quick:
        args.train_samples, args.eval_samples, args.epochs, args.rounds = 128, 128, 1, 1
    problems = [f"--{n.replace('_', '-')} must be >= 1, got {getattr(args, n)}"
                for n in ("train_samples", "eval_samples", "epochs", "batch_size", "rounds", "threads")
                if getattr(args, n) < 1]
    teacher = Path(args.teacher)
    if not ((teacher / "model" / "config.json").is_file() or (teacher / "config.json").is_file()):
        problems.append(f"--teacher {teacher}: no trained model there (expected a run folder with model/)")
    if problems:
        parser.error("; ".join(problems))
    args.name = args.name or ("peers_train_smoke" if args.quick else "peers_train")
    args.skipped = {}
    if args.variants is None:
        args.variants = [name for name in VARIANTS  # the peers; A/Bs when named
                         if name not in VARIANT_ENV and name not in VARIANT_FLAGS]
        if not native_bf16():
            # bf16=True on a CPU without bf16 dot products (AVX2-only) makes every matmul several times slower:
            # no competent user keeps it, and one run would take hours. Name it in --variants to run it anyway.
            args.variants.remove("trainer_bf16")
            args.skipped["trainer_bf16"] = "this CPU has no native bf16 (AMX-BF16/AVX512-BF16): emulated, slower"
    return args


def native_bf16() -> bool:
    from distill_core.hardware import Hardware, read_cpu_flags

    return bool(Hardware("cpu", cpu_flags=read_cpu_flags()).native_cpu_bf16)


def _env(args: argparse.Namespace, cache: Path) -> dict[str, str]:
    env = offline_env(cache)
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["KD_ESTIMATE_PROBE"] = "0"
    return env


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _child(argv: list[str], env: dict[str, str], log: Path, timeout_s: float) -> dict[str, Any]:
    load_start = list(os.getloadavg())
    child = run_child(argv, env=env, log=log, timeout_s=timeout_s)
    child.update(load_start=load_start, load_end=list(os.getloadavg()))
    if child["returncode"] != 0:
        raise SystemExit(f"error: {argv[1]} failed ({child['returncode']}); log {log}:\n{_tail(log)}")
    return child


def run_kd_studio(args: argparse.Namespace, work: Path, tag: str, extra_env: dict[str, str],
                  extra_flags: list[str]) -> dict[str, Any]:
    run_dir, timings = work / f"{tag}-run", work / f"{tag}-timings.json"
    cli_args = ["distill", "--data", args.data, "--teacher", args.teacher, "--student", args.student,
                "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                "--max-length", str(args.max_length), "--seed", str(args.seed),
                "--train-samples", str(args.train_samples), "--eval-samples", str(args.eval_samples),
                "--temperature", "2", "--alpha", "0.5", "--out", str(run_dir), "--quiet", *extra_flags]
    argv = [sys.executable, str(REPO / "benchmarks" / "_timed_distill.py"), str(timings), *cli_args]
    env = _env(args, work / f"{tag}-cache")  # fresh cache: the teacher pass is paid inside the clock
    env.update(KD_RUNS_DIR=str(work), **extra_env)
    child = _child(argv, env, work / f"{tag}.log", args.timeout_s)
    marks = json.loads(timings.read_text(encoding="utf-8"))["marks"]
    by_kind = {m["kind"]: m for m in reversed(marks)}  # first of each kind
    test_start = next(m["t"] for m in marks if m["kind"] == "phase" and m.get("phase") == TEST_PHASE)
    after_save = by_kind["exit"]["t"] - test_start  # test scoring + exit: after the model was saved
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    phases: dict[str, float] = {}
    for row in metrics:
        if row.get("kind") == "phase_end":
            phases[row["phase"]] = round(phases.get(row["phase"], 0.0) + float(row["seconds"]), 1)
    epochs = [m for m in metrics if m.get("kind") == "epoch"]
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    valid = [m["valid_accuracy"] for m in epochs]
    tested = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))["student"]
    return {
        "wall_s": child["wall_s"], "to_saved_model_s": child["wall_s"] - after_save,
        "train_s": test_start - by_kind["fit_start"]["t"],
        "phases_s": phases,  # the run's own phase timer (phase_end rows of metrics.jsonl), summed per phase
        "valid_accuracy_per_epoch": valid, "valid_accuracy": max(valid),  # model/ holds the best epoch
        "test_accuracy": tested["accuracy"], "test_rows": tested["n_examples"],
        "allocator": json.loads((run_dir / "status.json").read_text(encoding="utf-8")).get("allocator"),
        "mixed_precision": config.get("mixed_precision"),
        "provenance_precision": {k: v for k, v in config.get("provenance", {}).items() if "precision" in k},
        "torch_threads": config.get("provenance", {}).get("torch_threads"),
        "peak_rss_mb": child["peak_rss_mb"], "load_start": child["load_start"], "load_end": child["load_end"],
    }


def run_trainer(args: argparse.Namespace, work: Path, tag: str, precision: str,
                extra_env: dict[str, str]) -> dict[str, Any]:
    out = work / f"{tag}.json"
    argv = [sys.executable, str(REPO / "benchmarks" / "trainer_recipe.py"), "--teacher", args.teacher,
            "--student", args.student, "--data", args.data, "--train-samples", str(args.train_samples),
            "--eval-samples", str(args.eval_samples), "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--max-length", str(args.max_length),
            "--seed", str(args.seed), "--threads", str(args.threads), "--precision", precision,
            "--save-dir", str(work / f"{tag}-model"), "--out", str(out)]
    child = _child(argv, {**_env(args, work / f"{tag}-cache"), **extra_env}, work / f"{tag}.log", args.timeout_s)
    recipe = json.loads(out.read_text(encoding="utf-8"))
    return {
        "wall_s": child["wall_s"], "to_saved_model_s": child["wall_s"],  # the process ends once the model is saved
        "train_s": recipe["train_seconds"], "phases_s": recipe.get("phases_s", {}),
        "valid_accuracy_per_epoch": recipe["valid_accuracy_per_epoch"],
        "valid_accuracy": recipe["valid_accuracy"], "optim": recipe["optim"],
        "train_sampling_strategy": recipe["train_sampling_strategy"], "torch_threads": recipe["torch_threads"],
        "student_initial_weight_sum": recipe["student_initial_weight_sum"],
        "peak_rss_mb": child["peak_rss_mb"], "load_start": child["load_start"], "load_end": child["load_end"],
    }


def run_seed(args: argparse.Namespace, work: Path, tag: str) -> dict[str, Any]:
    from distill_core.specs import model_folder  # a run folder keeps its model in model/

    out = work / f"{tag}.json"
    teacher = model_folder(args.teacher) or Path(args.teacher)
    argv = [sys.executable, str(REPO / "benchmarks" / "seed_loop.py"), "--teacher", str(teacher),
            "--student-init", args.student, "--train-csv", str(Path(args.data) / "train.csv"),
            "--train-samples", str(args.train_samples), "--eval-samples", str(args.eval_samples),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
            "--max-length", str(args.max_length), "--seed", str(args.seed), "--threads", str(args.threads),
            "--save-dir", str(work / f"{tag}-model"), "--out", str(out)]
    child = _child(argv, _env(args, work / f"{tag}-cache"), work / f"{tag}.log", args.timeout_s)
    seed = json.loads(out.read_text(encoding="utf-8"))
    return {
        "wall_s": child["wall_s"], "to_saved_model_s": child["wall_s"],
        "train_s": seed["end_to_end_seconds"], "phases_s": seed.get("phases_s", {}),
        "valid_accuracy_per_epoch": [e["valid_accuracy"] for e in seed["epochs"]],
        "valid_accuracy": seed["valid_accuracy"], "torch_threads": seed["machine"]["torch_threads"],
        "peak_rss_mb": child["peak_rss_mb"], "load_start": child["load_start"], "load_end": child["load_end"],
    }


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, rows in runs.items():
        if not rows:
            continue
        saved = [r["to_saved_model_s"] for r in rows]
        summary[name] = {"to_saved_model_s_min": min(saved), "to_saved_model_s_median": statistics.median(saved),
                         "train_s_min": min(r["train_s"] for r in rows),
                         "train_s_median": statistics.median(r["train_s"] for r in rows),
                         "valid_accuracy": [r["valid_accuracy"] for r in rows],
                         "peak_rss_mb": [r["peak_rss_mb"] for r in rows],
                         "load_start": [r["load_start"][0] for r in rows]}
    core = summary.get("kd_studio")
    if core:
        for name, peer in summary.items():
            if name == "kd_studio":
                continue
            peer["speedup_of_kd_studio"] = {
                "min": peer["to_saved_model_s_min"] / core["to_saved_model_s_min"],
                "median": peer["to_saved_model_s_median"] / core["to_saved_model_s_median"],
                "valid_accuracy_points": 100 * (statistics.mean(core["valid_accuracy"])
                                                - statistics.mean(peer["valid_accuracy"]))}
    return summary


def main() -> int:
    args = parse_args()
    print(f"[peers] command: {' '.join(sys.argv)}", file=sys.stderr, flush=True)
    result = header("peers_train")
    result["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                          if k not in ("name", "timeout_s", "skipped")}
    result["settings"].update(temperature=2.0, alpha=0.5)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.variants}
    with tempfile.TemporaryDirectory(prefix="kd-peers-train-", ignore_cleanup_errors=True) as scratch:
        work = Path(scratch)
        for round_index in range(1, args.rounds + 1):
            seed = args.seed + round_index - 1 if args.seed_per_round else args.seed
            round_args = argparse.Namespace(**{**vars(args), "seed": seed})
            for name in args.variants:
                tag = f"{name}-r{round_index}"
                print(f"[peers] round {round_index}/{args.rounds}: {name} (load {os.getloadavg()[0]:.1f}) ...",
                      file=sys.stderr, flush=True)
                started = time.time()
                if name.startswith("kd_studio"):
                    row = run_kd_studio(round_args, work, tag, VARIANT_ENV.get(name, {}), VARIANT_FLAGS.get(name, []))
                elif name.startswith("trainer_"):
                    row = run_trainer(round_args, work, tag, name.split("_")[1], VARIANT_ENV.get(name, {}))
                else:
                    row = run_seed(round_args, work, tag)
                row.update(round=round_index, seed=seed, started_at=started)
                runs[name].append(row)
                print(f"[peers] {name}: to saved model {row['to_saved_model_s']:.1f} s, valid accuracy "
                      f"{row['valid_accuracy']:.4f}", file=sys.stderr, flush=True)
        result["runs"] = runs
        result["summary"] = summarise(runs)
        result["skipped"] = args.skipped
        write_result(args.name, result)
        if args.keep_student and "kd_studio" in runs:
            shutil.copytree(work / f"kd_studio-r{args.rounds}-run", args.keep_student, dirs_exist_ok=True)
            print(f"[peers] kept KD Studio's student in {args.keep_student}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
