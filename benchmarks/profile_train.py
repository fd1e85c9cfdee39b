"""Where training time goes: torch.profiler over ~20 training steps of the seed loop and of distill_core's loop.

Both step bodies are the real ones, cut into phases with `record_function` labels:
- seed (benchmarks/seed_loop.py): batch padded to 150 -> teacher forward (no_grad) -> student forward -> loss ->
  backward -> Adam step -> the extra student forward that only scores training accuracy;
- distill_core (distill_core/train.py without the Accelerate wrapper, a no-op on one CPU process): a length-grouped,
  dynamically padded batch (distill_core.data's sampler and collator) with cached teacher logits -> student forward
  -> distillation_loss -> backward -> gradient clipping -> Adam step.
Same teacher, same truncate:3 student, same 2,000 stratified training rows. The teacher logits distill_core reads
from its cache are computed once per example before training; that one-off pass is timed by train_throughput.py.

The teacher pass (and validation) are inference over batches of 128 in dataset order; the script also times the
teacher pass over --sorted-rows training rows in dataset order and length-sorted, to size what sorting would save.

Padding waste is counted over a whole epoch of each loop's batches (not just the profiled steps): the share of
the token positions fed to the model that are padding.

    python benchmarks/profile_train.py            # ~4 minutes on 2 shared cores
    python benchmarks/profile_train.py --smoke
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import AG_NEWS, header, require_offline_models, write_result

PHASES_SEED = ("teacher_forward", "student_forward", "loss", "student_backward", "optimizer_step",
               "extra_accuracy_forward")
PHASES_CORE = ("student_forward", "loss", "student_backward", "clip_grad", "optimizer_step")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="profiled steps per loop")
    parser.add_argument("--warmup", type=int, default=2, help="unprofiled steps first")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=12, help="ops listed per loop")
    parser.add_argument("--sorted-rows", type=int, default=768,
                        help="rows of the teacher pass timed in dataset order and length-sorted")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.train_samples, args.sorted_rows = 2, 1, 256, 64
    args.name = args.name or ("profile_train_smoke" if args.smoke else "profile_train")
    return args


def profile_steps(step: Callable[[int], None], steps: int, warmup: int, phases: tuple[str, ...], top: int
                  ) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    for i in range(warmup):
        step(i)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for i in range(warmup, warmup + steps):
            step(i)
        wall_s = time.perf_counter() - start
    averages = prof.key_averages()
    by_key = {a.key: a for a in averages}
    phase_ms = {p: by_key[p].cpu_time_total / 1e3 if p in by_key else 0.0 for p in phases}
    ops = [a for a in averages if a.key not in phases and not a.key.startswith("ProfilerStep")]
    total_self_ms = sum(a.self_cpu_time_total for a in ops) / 1e3
    top_ops = sorted(ops, key=lambda a: a.self_cpu_time_total, reverse=True)[:top]
    return {
        "steps": steps, "wall_s": wall_s, "step_ms": 1e3 * wall_s / steps,
        "phase_ms": phase_ms,
        "phase_share": {p: ms / (1e3 * wall_s) for p, ms in phase_ms.items()},
        "total_self_cpu_ms": total_self_ms,
        "top_ops": [{"op": a.key, "self_cpu_ms": a.self_cpu_time_total / 1e3, "calls": a.count,
                     "share_of_self_cpu": a.self_cpu_time_total / 1e3 / total_self_ms} for a in top_ops],
        "torch_threads": torch.get_num_threads(),
    }


def main() -> int:
    args = parse_args()
    import numpy as np
    import torch
    from torch.profiler import record_function
    from torch.utils.data import DataLoader

    import seed_loop
    from distill_core import models
    from distill_core.batching import Collator, LengthGroupedBatchSampler, tokenize_splits
    from distill_core.config import DataConfig
    from distill_core.data import load_data
    from distill_core.evaluate import predict_logits
    from distill_core.losses import distillation_loss

    torch.set_num_threads(args.threads)
    (teacher_dir,) = require_offline_models("teacher-minilm")
    data = load_data(DataConfig(source=str(AG_NEWS), train_samples=args.train_samples), 42)
    teacher, tokenizer = models.load_classifier(str(teacher_dir), data.label_names, require_trained=True)
    teacher.eval()
    tokenized = tokenize_splits(data, tokenizer, 150)
    train_rows = tokenized["train"]
    lengths = [len(x) for x in train_rows["input_ids"]]
    result = header("profile_train")
    result["settings"] = {k: v for k, v in vars(args).items() if k != "name"}
    result["settings"].update(teacher=str(teacher_dir), student="truncate:3", max_length=150)

    # ---- padding waste over one epoch of each loop's batches
    seed_real = sum(lengths)
    seed_fed = len(lengths) * 150
    sampler = LengthGroupedBatchSampler(lengths, args.batch_size, 42)
    sampler.set_epoch(1)
    batches = list(sampler)
    core_fed = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    valid_lengths = [len(x) for x in tokenized["validation"]["input_ids"]]
    valid_fed = sum(max(valid_lengths[i:i + 128]) * len(valid_lengths[i:i + 128])
                    for i in range(0, len(valid_lengths), 128))
    sorted_valid = sorted(valid_lengths)
    sorted_valid_fed = sum(max(sorted_valid[i:i + 128]) * len(sorted_valid[i:i + 128])
                           for i in range(0, len(sorted_valid), 128))
    teacher_fed = sum(max(lengths[i:i + 128]) * len(lengths[i:i + 128]) for i in range(0, len(lengths), 128))
    result["tokens"] = {
        "train_rows": len(lengths), "mean_tokens": float(np.mean(lengths)), "p95_tokens": float(np.percentile(
            lengths, 95)), "max_tokens": int(max(lengths)), "truncated_at_150": int(sum(n >= 150 for n in lengths)),
        "seed_padding_waste": 1 - seed_real / seed_fed,
        "distill_core_padding_waste": 1 - seed_real / core_fed,
        "distill_core_valid_padding_waste": 1 - sum(valid_lengths) / valid_fed,
        "distill_core_valid_padding_waste_if_sorted": 1 - sum(valid_lengths) / sorted_valid_fed,
        "distill_core_teacher_pass_padding_waste": 1 - seed_real / teacher_fed,
        "seed_tokens_per_epoch": seed_fed, "distill_core_tokens_per_epoch": core_fed,
    }

    # ---- inference passes (teacher logits, validation): dataset order (as distill_core runs them) vs sorted
    print("[profile] teacher pass, dataset order vs length-sorted ...", file=sys.stderr, flush=True)
    subset = train_rows.select(range(min(args.sorted_rows, len(train_rows))))
    order = np.argsort([len(x) for x in subset["input_ids"]], kind="stable")
    timings = {}
    for label, rows in (("dataset_order", subset), ("length_sorted", subset.select(order.tolist()))):
        start = time.perf_counter()
        predict_logits(teacher, rows, Collator(tokenizer), batch_size=128)
        timings[label] = time.perf_counter() - start
    result["teacher_pass_experiment"] = {"rows": len(subset), "batch_size": 128, "seconds": timings,
                                         "speedup_if_sorted": timings["dataset_order"] / timings["length_sorted"]}

    # ---- the seed loop's step
    torch.manual_seed(42)
    student = models.build_student("truncate:3", teacher, data.label_names, dropout=0.3).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=2e-5)
    seed_set = seed_loop.encode(tokenizer, data.splits["train"]["text"], data.splits["train"]["label"], 150)
    seed_batches = list(DataLoader(seed_set, batch_size=args.batch_size, shuffle=True,
                                   generator=torch.Generator().manual_seed(42)))

    def seed_step(i: int) -> None:
        batch = seed_batches[i % len(seed_batches)]
        inputs, labels = seed_loop.model_inputs(batch), batch[3]
        with record_function("teacher_forward"), torch.no_grad():
            teacher_logits = teacher(**inputs).logits
        with record_function("student_forward"):
            student_logits = student(**inputs).logits
        with record_function("loss"):
            loss = seed_loop.kd_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5)
        with record_function("student_backward"):
            optimizer.zero_grad()
            loss.backward()
        with record_function("optimizer_step"):
            optimizer.step()
            loss.item()
        with record_function("extra_accuracy_forward"), torch.no_grad():
            (student(**inputs).logits.argmax(-1) == labels).sum().item()

    print("[profile] seed loop ...", file=sys.stderr, flush=True)
    result["seed"] = profile_steps(seed_step, args.steps, args.warmup, PHASES_SEED, args.top)
    result["seed"]["batch_shape"] = list(seed_batches[0][0].shape)

    # ---- distill_core's step
    torch.manual_seed(42)
    student = models.build_student("truncate:3", teacher, data.label_names, dropout=0.3).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=2e-5)
    collate = Collator(tokenizer)
    generator = torch.Generator().manual_seed(0)
    core_batches = []
    for b in batches[: args.warmup + args.steps]:
        batch = collate([train_rows[i] for i in b])
        # Values do not change speed: random logits stand in for the cached teacher logits (read from an array).
        batch["teacher_logits"] = torch.randn(len(b), len(data.label_names), generator=generator)
        core_batches.append(batch)

    def core_step(i: int) -> None:
        batch = dict(core_batches[i % len(core_batches)])
        labels, teacher_logits = batch.pop("labels"), batch.pop("teacher_logits")
        with record_function("student_forward"):
            logits = student(**batch).logits
        with record_function("loss"):
            parts = distillation_loss(logits.float(), labels, teacher_logits, alpha=0.5, temperature=2.0)
        with record_function("student_backward"):
            parts.total.backward()
        with record_function("clip_grad"):
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        with record_function("optimizer_step"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            [parts.total.item(), parts.ce.item(), parts.kd.item()]
            (logits.argmax(-1) == labels).sum().item()

    print("[profile] distill_core loop ...", file=sys.stderr, flush=True)
    result["distill_core"] = profile_steps(core_step, args.steps, args.warmup, PHASES_CORE, args.top)
    profiled = core_batches[args.warmup: args.warmup + args.steps]
    result["distill_core"]["mean_batch_seq_len"] = float(np.mean([b["input_ids"].shape[1] for b in profiled]))
    result["distill_core"]["epoch_mean_batch_seq_len"] = float(np.mean([max(lengths[i] for i in b)
                                                                        for b in batches]))
    result["step_time_ratio"] = result["seed"]["step_ms"] / result["distill_core"]["step_ms"]
    write_result(args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
