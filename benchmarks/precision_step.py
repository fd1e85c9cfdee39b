"""Is bf16 autocast faster than fp32 for the student's training step on this CPU? Step by step, interleaved.

    python benchmarks/precision_step.py          # -> benchmarks/results/precision_step.json (~5 min on 2 cores)

`--mixed-precision auto` chooses the training precision from the CPU's flags (distill_core/hardware.py); this
measures whether that choice is the faster one here. The student is the peers' (`truncate:3` of the bundled
MiniLM-L6, 3 layers x 384, 4-class head, hidden dropout 0.3 and attention dropout 0 as `distill` builds it).
A training step = forward, cross-entropy, backward, fused AdamW, with the forward under
`torch.autocast("cpu", dtype=torch.bfloat16)` for bf16 (what Accelerate's `mixed_precision="bf16"` does on a CPU)
or plain fp32; an evaluation pass = forward under `no_grad` at the evaluation batch (64). Each shape runs the two
precisions interleaved (A B A B) after warm-up, so a change of load hits both alike; medians and minima per shape,
the load average and the CPU's bf16 flags recorded. A 1024 x 1024 matmul's GFLOP/s in both precisions says
whether oneDNN runs bf16 in hardware here at all.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

from _common import header, write_result

PRECISIONS = ("fp32", "bf16")


def build(seed: int):
    import torch
    from transformers import AutoModelForSequenceClassification

    from distill_core.specs import bundled_path

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        bundled_path(), num_labels=4, num_hidden_layers=3, hidden_dropout_prob=0.3,
        attention_probs_dropout_prob=0.0, use_safetensors=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    return model, optimizer


def autocast(precision: str):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def train_step(model, optimizer, batch, precision: str) -> None:
    import torch

    model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast(precision):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"])
    loss.backward()
    optimizer.step()


def eval_pass(model, batch, precision: str) -> None:
    import torch

    model.eval()
    with torch.no_grad(), autocast(precision):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()


def make_batch(rows: int, tokens: int, seed: int) -> dict:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(1000, 30000, (rows, tokens), generator=generator),
            "attention_mask": torch.ones(rows, tokens, dtype=torch.long),
            "labels": torch.randint(0, 4, (rows,), generator=generator)}


def matmul_gflops(precision: str, n: int = 1024, repeats: int = 20) -> float:
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def time_interleaved(run, repeats: int, warmup: int) -> dict[str, list[float]]:
    """``run(precision)`` for each precision in turn, ``warmup`` untimed rounds then ``repeats`` timed ones."""
    for _ in range(warmup):
        for precision in PRECISIONS:
            run(precision)
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(repeats):
        for precision in PRECISIONS:
            start = time.perf_counter()
            run(precision)
            times[precision].append(time.perf_counter() - start)
    return times


def summarise(times: dict[str, list[float]]) -> dict:
    found = {p: {"median_ms": 1e3 * statistics.median(v), "min_ms": 1e3 * min(v), "n": len(v)}
             for p, v in times.items()}
    found["bf16_speedup_median"] = found["fp32"]["median_ms"] / found["bf16"]["median_ms"]
    found["bf16_speedup_min"] = found["fp32"]["min_ms"] / found["bf16"]["min_ms"]
    return found


def main() -> int:
    import torch

    from distill_core.hardware import detect

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--repeats", type=int, default=8, help="timed steps per precision and shape")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--name", default="precision_step")
    args = parser.parse_args()
    result = header("precision_step")
    hardware = detect()
    rates = {p: matmul_gflops(p) for p in PRECISIONS}
    print(f"[precision] matmul 1024: fp32 {rates['fp32']:.0f}, bf16 {rates['bf16']:.0f} GFLOP/s", file=sys.stderr)
    # One model per precision, same initial weights: each keeps its own optimiser state across its steps.
    models = {p: build(0) for p in PRECISIONS}
    train, evaluate = {}, {}
    for tokens in args.tokens:
        batch, eval_batch = make_batch(args.batch, tokens, tokens), make_batch(args.eval_batch, tokens, tokens + 1)
        train[str(tokens)] = summarise(time_interleaved(
            lambda p, b=batch: train_step(*models[p], b, p), args.repeats, args.warmup))
        evaluate[str(tokens)] = summarise(time_interleaved(
            lambda p, b=eval_batch: eval_pass(models[p][0], b, p), args.repeats, args.warmup))
        print(f"[precision] {tokens} tokens: train bf16/fp32 speed-up {train[str(tokens)]['bf16_speedup_median']:.2f}x,"
              f" eval {evaluate[str(tokens)]['bf16_speedup_median']:.2f}x", file=sys.stderr)
    result.update({"settings": vars(args), "threads": torch.get_num_threads(), "matmul_gflops_n1024": rates,
                   "native_cpu_bf16": hardware.native_cpu_bf16, "cpu_capability": hardware.cpu_capability,
                   "mkldnn_bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
                   "train_step": train, "eval_pass": evaluate})
    write_result(args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
