"""Does `torch.compile` speed up the student's training step here? Eager vs compiled, same model, same batches.

    python benchmarks/compile_step.py            # -> benchmarks/results/compile_step.json

The student is the offline one (`truncate:2` of the bundled MiniLM-L6: 2 layers x 384) with a 4-class head;
one step = forward, cross-entropy, backward, fused AdamW step, on batch 32 x 64 tokens (AG News rows average
about 50 tokens). The compile time (first compiled step) is recorded apart; then eager and compiled steps are
timed interleaved (A B A B) after warm-up, so load drifts hit both alike. Dropout stays on, as in training.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from _common import header, write_result


def build(seed: int):
    import torch
    from transformers import AutoModelForSequenceClassification

    from distill_core.specs import bundled_path

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(bundled_path(), num_labels=4, num_hidden_layers=2,
                                                               use_safetensors=True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    return model, optimizer


def step_fn(model, optimizer):
    import torch

    def step(batch) -> float:
        optimizer.zero_grad(set_to_none=True)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--name", default="compile_step")
    args = parser.parse_args()
    result = header("compile_step")
    generator = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 30000, (args.batch, args.tokens), generator=generator),
             "attention_mask": torch.ones(args.batch, args.tokens, dtype=torch.long),
             "labels": torch.randint(0, 4, (args.batch,), generator=generator)}
    eager_model, eager_opt = build(0)
    compiled_model, compiled_opt = build(0)
    eager = step_fn(eager_model, eager_opt)
    start = time.perf_counter()
    compiled = step_fn(torch.compile(compiled_model), compiled_opt)
    compiled(batch)  # the first call compiles forward and backward
    compile_s = time.perf_counter() - start
    print(f"[compile] first compiled step (compilation) {compile_s:.1f} s", file=sys.stderr)
    for _ in range(args.warmup):
        eager(batch)
        compiled(batch)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.repeats):
        for name, fn in (("eager", eager), ("compiled", compiled)):
            t0 = time.perf_counter()
            fn(batch)
            times[name].append(time.perf_counter() - t0)
    summary = {name: {"median_s": statistics.median(v), "min_s": min(v), "steps": len(v)} for name, v in times.items()}
    summary["speedup_median"] = summary["eager"]["median_s"] / summary["compiled"]["median_s"]
    print(f"[compile] eager {summary['eager']['median_s'] * 1e3:.0f} ms, compiled "
          f"{summary['compiled']['median_s'] * 1e3:.0f} ms per step: {summary['speedup_median']:.2f}x", file=sys.stderr)
    result.update({"settings": vars(args), "compile_s": compile_s, "summary": summary, "times_s": times,
                   "threads": torch.get_num_threads()})
    write_result(args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
