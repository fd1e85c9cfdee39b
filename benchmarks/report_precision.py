"""BENCHMARKS.md section for issue 11: bf16 autocast against fp32, one training step and one evaluation pass at a
time (results/precision_step.json from benchmarks/precision_step.py)."""
from __future__ import annotations

from typing import Any

from report_format import f, provenance, table


def section_precision_step(result: dict[str, Any] | None) -> str:
    title = "## 10b. bf16 autocast against fp32, step by step\n"
    if not result:
        return title + "\n_Not measured yet: `python benchmarks/precision_step.py` (on a CPU with native bf16)._\n"
    st, rates = result["settings"], result["matmul_gflops_n1024"]
    body = []
    for kind, rows, shape in (("training step", result["train_step"], st["batch"]),
                              ("evaluation pass", result["eval_pass"], st["eval_batch"])):
        for tokens, r in rows.items():
            body.append([kind, f"{shape} x {tokens}", f(r["fp32"]["median_ms"], 0), f(r["bf16"]["median_ms"], 0),
                         f"{r['bf16_speedup_median']:.2f}x", f"{r['bf16_speedup_min']:.2f}x"])
    native = ", ".join(result["native_cpu_bf16"]) or "none"
    return "\n".join([title, (
        "The peers' student (`truncate:3` of the bundled MiniLM-L6, hidden dropout 0.3, attention dropout 0), one "
        "model "
        "per precision from the same weights; a training step = forward (under `torch.autocast('cpu', bfloat16)` for "
        "bf16, as Accelerate does), cross-entropy, backward, fused AdamW; an evaluation pass = forward under "
        f"`no_grad`. Precisions interleaved, {st['warmup']} warm-up and {st['repeats']} timed repeats per shape, "
        f"{result['threads']} threads. This CPU's native bf16 flags: {native} (oneDNN bf16: "
        f"{result['mkldnn_bf16_supported']}); a 1024 x 1024 matmul: {rates['fp32']:.0f} GFLOP/s fp32, "
        f"{rates['bf16']:.0f} GFLOP/s bf16.\n"),
        table(["what", "batch x tokens", "fp32 ms (median)", "bf16 ms (median)", "bf16 faster by (median)",
               "(min)"], body) + "\n",
        "End to end the gain is smaller (section 7c): tokenising, data loading, the optimiser's fp32 update and the "
        "casts around every autocast op are not faster in bf16, and a 2-core machine's load moves single runs by "
        "about 10%.\n",
        provenance(result) + "\n"])
