"""BENCHMARKS.md section for issue 11: bf16 autocast against fp32, one training step and one evaluation pass at a
time (results/precision_step.json from benchmarks/precision_step.py)."""
from __future__ import annotations

import statistics
from typing import Any

from report_format import f, provenance, table
from report_memory import _ab_tables, section_7_work


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


def section_bf16_accuracy(result: dict[str, Any] | None) -> str:
    """Issue 11: what bf16 autocast (the default on a bf16 CPU) costs in accuracy against fp32, seed by seed."""
    title = "### 10c. bf16 autocast against fp32: accuracy over seeds\n"
    if not result or not result.get("runs"):
        return title + "\n_Not measured yet: `python benchmarks/bf16_accuracy.py --teacher TEACHER/model`._\n"
    st = result["settings"]
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for run in result["runs"]:
        if run.get("returncode") == 0:
            by_seed.setdefault(run["seed"], {})[run["precision"]] = run
    body = []
    for seed, pair in sorted(by_seed.items()):
        fp32, bf16 = pair.get("no"), pair.get("bf16")
        cells = [f"{100 * r['test_accuracy']:.2f} ({100 * r['valid_accuracy']:.2f})" if r else None
                 for r in (fp32, bf16)]
        diff = f"{100 * (bf16['test_accuracy'] - fp32['test_accuracy']):+.2f}" if fp32 and bf16 else None
        body.append([seed, *cells, diff])
    summary = result.get("summary", {})
    diffs = (summary.get("bf16_minus_fp32_points") or {}).get("test_accuracy", [])
    mean = f"{statistics.fmean(diffs):+.2f}" if diffs else "—"
    spread = f" ± {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else ""
    return "\n".join([title, (
        f"`distill` of `{st['student']}` from the teacher, {st['train_samples']:,} train rows, {st['eval_samples']:,} "
        f"validation and test rows, {st['epochs']} epochs, batch {st['batch_size']}, lr {st['lr']:g}, T "
        f"{st['temperature']:g}, alpha {st['alpha']:g}, once per seed with `--mixed-precision no` and `bf16` (order "
        "alternated per seed; one shared teacher-logit cache, so both learn from the same targets). Padding is each "
        "run's default (auto: 16 under bf16, the longest row in fp32): what a user gets with either precision. Wall "
        "times are not compared here: the first run of the three pairs pays the shared teacher pass (sections 7c, "
        "10b compare time).\n"),
        table(["seed", "fp32 test % (valid %)", "bf16 test % (valid %)", "bf16 - fp32 test (points)"], body) + "\n",
        f"Paired over {len(diffs)} seed(s): bf16 - fp32 = {mean}{spread} points of test accuracy.\n",
        provenance(result) + "\n"])


TEACHER_PASS_NAMES = {"kd_studio_teacher_fp32": "the teacher's logit pass in fp32 (kept)",
                      "kd_studio": "the teacher's logit pass under bf16 autocast (tried, not kept)",
                      "kd_studio_teacher_fp32_glibc": "fp32 teacher pass, glibc's malloc (`KD_MALLOC=system`)",
                      "kd_studio_glibc": "bf16 teacher pass, glibc's malloc (`KD_MALLOC=system`)"}
PHASES_SHOWN = ("teacher_logits", "training", "validation", "tokenising", "saving")


def section_teacher_pass(result: dict[str, Any] | None) -> str:
    """Issue 11: the training rows' teacher pass under bf16 autocast against fp32 (two code versions,
    interleaved: benchmarks/merge_versions.py), with each run's seconds per phase when recorded."""
    title = "## 10d. The teacher's logit pass in the training precision (A/B of two versions)\n"
    if not result:
        return title + "\n_Not measured yet: see `benchmarks/merge_versions.py`._\n"
    out = [title, (
        f"{section_7_work(result)} The two versions differ only in the precision of the teacher's pass over the "
        "training rows (the KD targets, `distill_core/teacher_cache.py`); there is no switch for it, so each round ran "
        "`peers_train.py --variants kd_studio --rounds 1` from a clone of each version in turn. The test split's "
        "teacher pass (the teacher accuracy a run reports) is fp32 in both.\n"),
        *_ab_tables(result, TEACHER_PASS_NAMES, "kd_studio_teacher_fp32", "the fp32 teacher pass")]
    phases = result.get("phase_seconds")
    if phases:
        body = [[TEACHER_PASS_NAMES[name], index, *(f(run.get(phase), 1) for phase in PHASES_SHOWN),
                 f(sum(v for k, v in run.items() if k != "test_evaluation"), 1)]
                for name, runs in phases.items() for index, run in enumerate(runs, start=1)]
        out += [f"Seconds per phase (run records, `phase_end` rows), {result['phase_seconds_command']}:\n",
                table(["version", "run", *PHASES_SHOWN, "sum before test scoring"], body) + "\n"]
    if result.get("kept") is False:
        out.append("Verdict: not kept. Under bf16 autocast the teacher's pass itself takes about half the time, but "
                   "the training epochs that follow it in the same process run slower by nearly as much, so the run "
                   "to a saved model is no faster beyond the noise, while its KD targets carry bf16 rounding. The "
                   "slowdown follows on glibc's malloc too, so it is not tcmalloc's; its cause was not found. "
                   "Measured again over three rounds in 10e, the slowdown did not recur, and the bf16 pass became "
                   "the default there.\n")
    return "\n".join(out)


FP32_PASS_NAMES = {"kd_studio_pad16_passes": "before: a bf16 run padded every pass to 16; the teacher's pass in fp32",
                   "kd_studio_fp32_passes_padded": "its fp32 passes (teacher's logits, test scoring) padded as fp32",
                   "kd_studio": "and the teacher's training-rows pass under bf16 autocast (today's default)"}


def section_fp32_pass_padding(result: dict[str, Any] | None) -> str:
    """Issue 11: a bf16 run's fp32 passes padded to their longest row instead of 16, and once more the teacher's
    training-rows pass under bf16 autocast (three code versions interleaved: benchmarks/merge_versions.py)."""
    title = "## 10e. A bf16 run's fp32 passes padded as fp32, and the teacher's pass in bf16 again (A/B/C)\n"
    if not result:
        return title + "\n_Not measured yet: see `benchmarks/merge_versions.py`._\n"
    body = []
    for name, rows in result["runs"].items():
        for row in rows:
            phases = row.get("phases_s", {})
            body.append([FP32_PASS_NAMES.get(name, name), row.get("round"),
                         *(f(phases.get(phase), 1) for phase in (*PHASES_SHOWN, "test_evaluation"))])
    return "\n".join([title, (
        f"{section_7_work(result)} Three versions, run in turn from a clone of each (the order rotated per round): the "
        "version before, where a bf16 run padded its fp32 passes (the teacher's logits over the training and test "
        "rows, the saved model's test scoring) to 16 tokens like its bf16 training; the second, where those "
        "fp32 passes pad each batch to its longest row (`batching.padding_for_fp32_pass`); and that version with "
        "the teacher's training-rows pass under bf16 autocast, padded to 16 like the run's other bf16 passes "
        "(`teacher_cache.pass_precision`; tried before in 10d). The test split's teacher pass, whose logits give "
        "the teacher accuracy a run reports, is fp32 in all three.\n"),
        *_ab_tables(result, FP32_PASS_NAMES, "kd_studio_pad16_passes", "the version before"),
        "Seconds per phase (each run's `phase_end` rows):\n",
        table(["version", "round", *PHASES_SHOWN, "test_evaluation"], body) + "\n",
        *([f"Verdict: {result['verdict']}\n"] if result.get("verdict") else [])])


FUSED_NAMES = {"kd_studio_adamw_loop": "before: PyTorch's default AdamW on a CPU (a Python loop over the weights)",
               "kd_studio": "AdamW as one fused kernel (`fused=True`, today's default)"}


def section_fused_update(result: dict[str, Any] | None) -> str:
    """Issue 11: the optimiser's update as torch's fused AdamW against its default loop (two code versions,
    interleaved: benchmarks/merge_versions.py)."""
    title = "## 10f. The optimiser's update as one fused kernel (A/B of two versions)\n"
    if not result:
        return title + "\n_Not measured yet: see `benchmarks/merge_versions.py`._\n"
    runs = {name: rows for name, rows in result["runs"].items() if name in FUSED_NAMES}
    body = [[FUSED_NAMES[name], row.get("round"), *(f(row.get("phases_s", {}).get(phase), 1) for phase in
                                                   PHASES_SHOWN)]
            for name, rows in runs.items() for row in rows]
    return "\n".join([title, (
        f"{section_7_work(result)} The two versions differ only in `train._optimizer_and_schedule`: PyTorch's "
        "`AdamW` on CPU parameters defaults to a loop over the weights, about ten full passes over each per step "
        "(the 17 M weights of `truncate:3`, 11.7 M of them the word embeddings: 70 ms a step measured alone, against "
        "11 ms fused, timed alone in the closing note of stop 24); `fused=True` does one pass. The arithmetic is "
        "the same (tests/test_train.py checks three steps against the loop within 1e-5). Each round ran "
        "`peers_train.py --variants kd_studio --rounds 1` from a clone of each version in turn.\n"),
        *_ab_tables({**result, "runs": runs}, FUSED_NAMES, "kd_studio_adamw_loop", "the version before"),
        "Seconds per phase (each run's `phase_end` rows):\n",
        table(["version", "round", *PHASES_SHOWN], body) + "\n"])
