"""CPU inference: latency p50/p95 and samples/s at fp32/bf16/int8, the machine's matmul peak, and test accuracy.

Models:
- the seed pair, built from configs with random weights (speed does not depend on the values, and the Hub is not
  reachable here): BERT-base (bert-base-uncased: 12 layers x 768, 12 heads, FFN 3072) as the teacher and
  google/bert_uncased_L-10_H-256_A-4 (10 layers x 256, 4 heads, FFN 1024) as the student;
- the offline pair trained on this machine: teacher-minilm (MiniLM-L6 fine-tuned on AG News) and student-kd
  (truncate:3 of it, distilled), loaded from their run folders.

Every cell goes through `distill_core.bench.benchmark_model` (synthetic full-length inputs, warm-up, timed
repeats, p50/p95) and so through `prepare_for_precision`, the function the Playground, `evaluate` and export use.
The matmul peak (`bench.matmul_peak_gflops`, fp32 and bf16, same thread count) is measured before and after the
cells and the higher value kept; `gflops_per_s` of a row divided by it is the share of the machine's peak a forward
pass achieves. Accuracy of every precision of the offline pair comes from `inference.evaluate_spec(precision=...)`
on the AG News test split.

    python benchmarks/inference.py                      # speed + accuracy (~12 min on 2 cores)
    python benchmarks/inference.py --parts speed        # or only one part (results/inference_<part>.json)
    python benchmarks/inference.py --smoke
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from _common import AG_NEWS, header, require_offline_models, write_result

SEED_TEACHER = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=512)  # bert-base-uncased's config values
SEED_STUDENT = dict(vocab_size=30522, hidden_size=256, num_hidden_layers=10, num_attention_heads=4,
                    intermediate_size=1024, max_position_embeddings=512)  # google/bert_uncased_L-10_H-256_A-4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=["speed", "accuracy"], default=["speed", "accuracy"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[32, 64, 150])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--models", nargs="+", default=["seed-teacher", "seed-student", "teacher-minilm",
                                                        "student-kd"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.5,
                        help="fast cells keep repeating until this much timed time (more samples, same cost)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-samples", type=int, default=2000,
                        help="stratified subset of the test split for accuracy, the same rows for every model and "
                             "precision (0 = all 7,600 rows)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.batch_sizes, args.seq_lens, args.repeats, args.warmup, args.min_seconds = [1, 8], [32], 2, 1, 0.0
        args.eval_samples = 64
    args.eval_samples = args.eval_samples or None
    return args


def seed_model(shape: dict[str, int]):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(**shape, num_labels=4, architectures=["BertForSequenceClassification"])
    return BertForSequenceClassification(config).eval()


def offline_model(name: str):
    from transformers import AutoModelForSequenceClassification

    (run_dir,) = require_offline_models(name)
    return AutoModelForSequenceClassification.from_pretrained(run_dir / "model", use_safetensors=True).eval()


def describe(model) -> dict[str, Any]:
    c = model.config
    return {"layers": c.num_hidden_layers, "hidden": c.hidden_size, "heads": c.num_attention_heads,
            "ffn": c.intermediate_size, "parameters": sum(p.numel() for p in model.parameters())}


def measure_peaks(threads: int) -> dict[str, float]:
    import torch

    from distill_core.bench import matmul_peak_gflops

    # Best of 10: a peak is a property of the machine, and on a shared one a few timings can all be interrupted.
    return {"fp32": matmul_peak_gflops(torch.float32, repeats=10, threads=threads),
            "bf16": matmul_peak_gflops(torch.bfloat16, repeats=10, threads=threads)}


def speed(args: argparse.Namespace) -> dict[str, Any]:
    from distill_core.bench import BenchSettings, benchmark_model

    settings = BenchSettings(batch_sizes=tuple(args.batch_sizes), seq_lens=tuple(args.seq_lens),
                             precisions=tuple(args.precisions), warmup=args.warmup, repeats=args.repeats,
                             threads=args.threads, min_seconds=args.min_seconds)
    result = header("inference_speed")
    result["settings"] = {k: v for k, v in vars(args).items() if k != "smoke"} | {"smoke": args.smoke}
    peaks_before = measure_peaks(args.threads)
    rows, models = [], {}
    for name in args.models:
        start = time.perf_counter()
        if name == "seed-teacher":
            model, source = seed_model(SEED_TEACHER), "config of bert-base-uncased, random weights"
        elif name == "seed-student":
            model, source = seed_model(SEED_STUDENT), "config of google/bert_uncased_L-10_H-256_A-4, random weights"
        else:
            model, source = offline_model(name), f"{name}/model (trained offline on AG News)"
        models[name] = {**describe(model), "source": source}

        def progress(event: dict, name: str = name) -> None:  # bind this iteration's model name
            print(f"[inference] {name} {event['cell']}/{event['cells']} {event['precision']} "
                  f"{event['batch_size']}x{event['seq_len']}: p50 {event['latency_ms_p50']:.1f} ms",
                  file=sys.stderr, flush=True)

        rows += benchmark_model(model, name=name, settings=settings, on_event=progress)
        models[name]["seconds"] = time.perf_counter() - start
        del model
    peaks_after = measure_peaks(args.threads)
    result["matmul_peak_gflops"] = {k: max(peaks_before[k], peaks_after[k]) for k in peaks_before}
    result["matmul_peak_gflops_before_after"] = {"before": peaks_before, "after": peaks_after}
    result["models"], result["rows"] = models, rows
    return result


def accuracy(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from distill_core.config import DataConfig
    from distill_core.inference import evaluate_spec

    torch.set_num_threads(args.threads)
    result = header("inference_accuracy")
    result["settings"] = {"precisions": args.precisions, "eval_samples": args.eval_samples, "split": "test",
                          "data": str(AG_NEWS), "threads": args.threads}
    reports = []
    for name in ("teacher-minilm", "student-kd"):
        (run_dir,) = require_offline_models(name)
        for precision in args.precisions:
            report = evaluate_spec(str(run_dir), DataConfig(source=str(AG_NEWS), eval_samples=args.eval_samples),
                                   split="test", precision=precision)
            keep = {k: report[k] for k in ("accuracy", "macro_f1", "ece", "n_examples", "seconds", "samples_per_s")
                    if k in report}
            reports.append({"model": name, "precision": precision, **keep})
            print(f"[inference] accuracy {name} {precision}: {keep}", file=sys.stderr, flush=True)
    result["rows"] = reports
    return result


def main() -> int:
    args = parse_args()
    suffix = "_smoke" if args.smoke else ""
    if "speed" in args.parts:
        write_result(f"inference_speed{suffix}", speed(args))
    if "accuracy" in args.parts:
        write_result(f"inference_accuracy{suffix}", accuracy(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
