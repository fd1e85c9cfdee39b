"""BENCHMARKS.md section 4: peak resident set of a distillation run and of the app, and where a run's memory
goes (benchmarks/memory.py's results)."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from report_format import f, provenance, table, verdict

APP_TARGET_MB = 2048.0
RSS_TARGET_MB = 1536.0  # issue 11: peak RSS of a distillation of the offline pair


def _flag(words: list[str], name: str) -> str:
    """The value after `name` in a split command line, or "?" when the flag is absent."""
    return words[words.index(name) + 1] if name in words[:-1] else "?"


def _memory_stages(stages: dict[str, dict]) -> list[str]:
    """Where a distillation run's resident set goes: one column of RSS (and peak so far) per measured variant."""
    if not stages:
        return []
    labels = list(stages)
    order = [m["stage"] for m in stages[labels[0]]["marks"]]
    body = []
    for stage in order:
        row: list[Any] = [stage]
        for label in labels:
            mark = next((m for m in stages[label]["marks"] if m["stage"] == stage), None)
            row.append(None if mark is None else f"{mark['rss_mb']:,.0f} ({mark['peak_mb']:,.0f})")
        body.append(row)
    body.append(["**peak RSS**", *(f"**{stages[label]['peak_rss_mb']:,.0f}**" for label in labels)])
    first = stages[labels[0]]
    sizes, settings = first["split_sizes"], first["settings"]
    return [f"Where a distillation run's memory goes (`--parts stages`: `train.prepare` + `train.execute` in one "
            f"process, VmRSS as each stage ends, VmHWM so far in brackets, MB; teacher: {first['teacher_kind']}, "
            f"student `truncate:3`, train {sizes['train']:,} / valid {sizes['validation']:,} / test "
            f"{sizes['test']:,} rows, batch {settings['batch_size']}, {settings['epochs']} epoch, "
            f"{first['torch_threads']} torch threads):\n",
            table(["stage ends", *labels], body) + "\n"]


MEMORY_BREAKDOWN = """Where it goes (the stages table, glibc default): imports of torch, transformers, datasets and
accelerate ~345 MB; the tokenised splits ~45 MB (memory-mapped Arrow); the teacher ~140 MB and the student ~150
MB of weights and their Python objects; the teacher's pass over the train split at eval batch 128 adds ~640 MB of
transient activations; then training (activations of batch 32 with attention dropout on the math-attention path,
gradients, AdamW's two moments over the student's 17 M weights, 11.7 M of them the embedding matrix) and
validation at batch 128. Everything after the teacher pass is freed tensors that glibc's heap keeps: resident
1,020 MB after the first step becomes 1,933 MB after the first epoch, while with the mmap threshold fixed it is
797 MB. The teacher is released once its logits are cached, so from then on the teacher's size does not count.

A BERT-base-sized teacher (110 M parameters, width 768, FFN 3,072), on paper from these figures: its weights
~420 MB fp32 instead of ~90 MB, and its logits pass at batch 128 x 128 tokens about twice MiniLM's ~640 MB of
transient activations (each layer's hidden states and FFN are twice as wide; the 12 heads' attention the same),
so the peak moves to the teacher pass: 345 + 45 + ~470 + student + ~1,300 MB, about 2.2-2.4 GB with glibc's
default. The teacher is released after that pass, so training does not see it. Halving `--eval-batch-size`
halves the transient. The seed's L-10 H-256 student has ~15.9 M parameters (7.8 M of them embeddings), near
`truncate:3`'s 17 M, but ten layers keep more activations for the backward pass than three: its training phase
needs more than the table's, which was not measured (the model is not available offline).
"""


def section_memory(mem: dict | None) -> str:
    out = ["## 4. Memory (peak resident set)\n"]
    if not mem:
        return out[0] + "\n_Not measured yet: `python benchmarks/memory.py`._\n"
    body = []
    d = mem.get("distill")
    if d:
        sizes = d["split_sizes"]
        shown = d["command"].split(" --out ")[0]
        body.append([f"`python {shown}` (train {sizes['train']:,} / valid {sizes['validation']:,} / test "
                     f"{sizes['test']:,} rows)", f(d["peak_rss_mb"], 0), "`os.wait4` ru_maxrss of the child",
                     f(d["wall_s"], 0)])
    for ref in mem.get("reference_runs", []):
        words = (ref.get("command") or "").split()
        scope = "all training rows" if "--train-samples" not in words else f"{_flag(words, '--train-samples')} rows"
        body.append([f"offline reference run `{Path(ref['log']).stem}` ({scope}, {_flag(words, '--epochs')} epochs, "
                     f"batch {_flag(words, '--batch-size')}; command in `{ref['log']}`)",
                     f(ref["peak_rss_mb"], 0), "`/usr/bin/time -v` (chain log)", ref.get("wall")])
    a = mem.get("app")
    if a:
        body.append([f"the app serving teacher-minilm + student-kd at {a['precision']} ({a['mode']})",
                     f(a["peak_rss_mb"], 0), "VmHWM of the server process", f(a.get("seconds_to_both_predictions"))])
        if a.get("idle_server"):
            body.append(["the app idle, before any page was opened", f(a["idle_server"].get("VmHWM"), 0),
                         "VmHWM of the server process", None])
    out.append(table(["what", "peak RSS MB", "how", "wall s"], body) + "\n")
    out.extend(_memory_stages(mem.get("stages") or {}))
    refs = mem.get("reference_runs", [])
    if d and refs:
        out.append(f"Its peak did not grow with the data: the {sizes['train']:,}-row run at batch 64 peaked at "
                   f"{d['peak_rss_mb']:,.0f} MB, the full-data reference runs at batch 32 at "
                   f"{min(r['peak_rss_mb'] for r in refs):,.0f}-{max(r['peak_rss_mb'] for r in refs):,.0f} MB, so "
                   "batch activations and the allocator set it rather than the dataset (which `datasets` keeps "
                   "memory-mapped).\n")
    if mem.get("stages"):
        out.append(MEMORY_BREAKDOWN)
    if a:
        out.append(f"Target: app under 2 GiB with the offline pair loaded: {verdict(a['meets_target'])} — "
                   f"{a['peak_rss_mb']:.0f} MB peak ({a['peak_rss_mb'] / 1024:.2f} GiB).")
        if a.get("browser_error"):
            out.append(f" (Browser unavailable: {a['browser_error']}; measured by the fallback.)")
        out.append("\n")
    out.append(provenance(mem) + "\n")
    return "\n".join(out)


LEVER_NAMES = {"kd_studio": "defaults",
               "kd_studio_trim": "heap trim (`KD_MALLOC_TRIM_EVERY=10`)",
               "kd_studio_frozen_embeddings": "`--freeze-embeddings`",
               "kd_studio_no_attention_dropout": "`--attention-dropout 0`",
               "kd_studio_lean": "lean: `KD_MALLOC_TRIM_EVERY=10`, `--freeze-embeddings --attention-dropout 0`"}


def training_time_ratio(runs: dict[str, list[dict[str, Any]]], name: str, base: str = "kd_studio") -> float:
    """Median training time of variant ``name`` over that of ``base``, in one A/B's runs."""
    return (statistics.median(r["train_s"] for r in runs[name])
            / statistics.median(r["train_s"] for r in runs[base]))


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.2f} ± {100 * std:.2f}"


def section_memory_levers(levers: dict[str, Any] | None) -> str:
    """Issue 11: the memory levers (heap trim, frozen embeddings, no attention dropout), interleaved A/B."""
    title = "## 4c. Memory levers: heap trim, frozen word embeddings, no attention dropout (A/B)\n"
    if not levers:
        return title + ("\n_Not measured yet: `python benchmarks/peers_train.py --variants kd_studio_trim kd_studio "
                        "kd_studio_lean --rounds 2 --seed-per-round --name memory_levers`._\n")
    st = levers["settings"]
    out = [title, f"KD Studio's `distill` of section 7's work (`{st['student']}`, {st['train_samples']:,} train and "
                  f"{st['eval_samples']:,} validation and test rows, {st['epochs']} epochs, batch {st['batch_size']}, "
                  f"{st['threads']} threads, fresh teacher-logit cache each run), the variants interleaved over "
                  f"{st['rounds']} rounds; round r trains with seed {st['seed']} + r - 1, the same for every "
                  "variant of the round. Peak RSS is `os.wait4`'s ru_maxrss of the process.\n"]
    out += _ab_tables(levers, LEVER_NAMES, "kd_studio", "defaults")
    return "\n".join(out)


BEFORE = "kd_studio_before_2026_12_03"
DEFAULTS_NAMES = {"kd_studio": "today's defaults (attention dropout 0, evaluation batch 64, trim after evaluation)",
                  "kd_studio_pad16": "today's defaults + `--pad-to-multiple-of 16`",
                  BEFORE: "the defaults before 2026-12-03 (the teacher's attention dropout 0.1, evaluation batch 128, "
                          "no trim)"}


def section_defaults_change(*results: dict[str, Any] | None) -> str:
    """Issue 11: the defaults of 2026-12-03 against the ones before: each A/B that ran both (the quiet peers run of
    section 7b, then benchmarks/peers_train.py --name defaults_ab)."""
    title = "## 4e. The defaults of 2026-12-03 against the ones before (A/B)\n"
    measured = [r for r in results if r and (r.get("runs") or {}).get("kd_studio") and r["runs"].get(BEFORE)]
    if not measured:
        return title + ("\n_Not measured yet: `python benchmarks/peers_train.py --variants kd_studio "
                        f"{BEFORE} kd_studio_pad16 --rounds 2 --seed-per-round --name defaults_ab`._\n")
    out = [title, "Section 7's work (`truncate:3` from the MiniLM teacher, 2,000 train / 2,000 validation and test "
                  "rows, 2 epochs, batch 32, 2 threads, fresh teacher-logit cache each run), variants interleaved. The "
                  "old defaults are asked for explicitly: `--attention-dropout 0.1 --eval-batch-size 128` and "
                  "`KD_MALLOC_TRIM_AFTER_EVAL=0`. Peak RSS is `os.wait4`'s ru_maxrss.\n"]
    for result in measured:
        out += _ab_tables(result, DEFAULTS_NAMES, BEFORE, "the old defaults")
    out.append("Accuracy over 3 seeds at full size for attention dropout 0: section 9b.\n")
    return "\n".join(out)


def _ab_tables(result: dict[str, Any], names: dict[str, str], base: str, base_words: str) -> list[str]:
    """An interleaved A/B of peers_train.py's KD Studio variants (those in ``names``): every run in the order it ran,
    then per setting its peak, its training time against ``base`` and its test accuracy over the rounds' seeds."""
    runs = {name: rows for name, rows in result["runs"].items() if name in names}
    in_run_order = sorted(((row["started_at"], name, row) for name, rows in runs.items() for row in rows),
                          key=lambda item: item[0])
    body = [[names[name], row.get("round"), row.get("seed", result["settings"]["seed"]), f(row["peak_rss_mb"], 0),
             f(row["to_saved_model_s"]), f(row["train_s"]), f"{100 * row['valid_accuracy']:.2f}",
             f"{100 * row['test_accuracy']:.2f}", f"{row['load_start'][0]:.1f}"] for _, name, row in in_run_order]
    summary = []
    for name, rows in runs.items():
        peak = max(r["peak_rss_mb"] for r in rows)
        speed = f"×{training_time_ratio(runs, name, base):.2f}" if base in runs else None
        summary.append([names[name], f(peak, 0), speed, _mean_std([r["test_accuracy"] for r in rows]),
                        verdict(peak <= RSS_TARGET_MB)])
    return [table(["setting", "round", "seed", "peak RSS MB", "to saved model s", "training s", "valid acc %",
                   "test acc %", "load at start"], body) + "\n",
            table(["setting", "peak RSS MB (max over rounds)", f"training time vs {base_words} (medians)",
                   f"test acc % over {result['settings']['rounds']} seeds, mean ± std", "≤ 1.5 GB"], summary) + "\n",
            *([f"_Names: {result['relabelled']}._\n"] if result.get("relabelled") else []),
            provenance(result) + "\n"]


def section_step_memory(steps: dict[str, Any] | None) -> str:
    """Issue 11: one student training step's activation memory and time per setting (benchmarks/step_memory.py)."""
    title = "### 4d. One training step: where the activation memory goes\n"
    if not steps:
        return title + "\n_Not measured yet: `python benchmarks/step_memory.py --teacher TEACHER`._\n"
    st = steps["settings"]
    body = []
    for name, rows in steps["runs"].items():
        body.append([name, f(statistics.median(r["forward_growth_mb"] for r in rows), 0),
                     f(max(r["peak_rss_mb"] for r in rows), 0), f(statistics.median(r["step_s"] for r in rows), 2),
                     f"{rows[0]['trained_parameters'] / 1e6:.1f} M"])
    return "\n".join([title, f"`{st['student']}` built from the teacher as `distill` builds it (hidden dropout "
                             f"{st['dropout']}), one fixed batch of {st['batch_size']} x {st['tokens']} tokens, "
                             f"forward + backward + AdamW, {st['steps']} steps per fresh process (the first not "
                             f"counted), settings interleaved over {st['rounds']} rounds; medians over rounds.\n",
                      table(["setting", "forward: resident set growth MB", "process peak RSS MB", "step s",
                             "trained weights"], body) + "\n", provenance(steps) + "\n"])


def section_7_work(result: dict[str, Any]) -> str:
    """The work every A/B of section 7's distillation ran, and how its rounds were seeded."""
    return ("Section 7's work (`truncate:3` from the MiniLM teacher, 2,000 train / 2,000 validation and test rows, "
            "2 epochs, batch 32, 2 threads, fresh teacher-logit cache each run), variants interleaved over "
            f"{result['settings']['rounds']} rounds, round r with seed 42 + r - 1. Peak RSS is `os.wait4`'s "
            "ru_maxrss.")
PADDING_NAMES = {"kd_studio": "bf16 (auto), batches padded to a multiple of 16 (auto under bf16: today's default)",
                 "kd_studio_pad1": "bf16 (auto), each batch to its longest row (`--pad-to-multiple-of 1`)",
                 "kd_studio_fp32": "fp32 (`--mixed-precision no`; auto padding is then 1)"}
TCMALLOC_NAMES = {"kd_studio_tcmalloc": "defaults + tcmalloc (`LD_PRELOAD=libtcmalloc_minimal.so.4`)",
                  "kd_studio": "defaults (glibc's malloc)",
                  "kd_studio_pad1": "defaults with `--pad-to-multiple-of 1` (glibc's malloc)"}


def _ab_section(title: str, result: dict[str, Any] | None, variants: dict[str, str], base: str, base_words: str,
                why: str) -> str:
    """A section for one interleaved A/B of KD Studio variants (``variants``: name -> words), ratios against
    ``base``; when not measured, the command that measures it."""
    if not result:
        return title + (f"\n_Not measured yet: `python benchmarks/peers_train.py --variants {' '.join(variants)} "
                        f"--rounds 2 --seed-per-round --name NAME`._\n")
    return "\n".join([title, f"{section_7_work(result)} {why}\n", *_ab_tables(result, variants, base, base_words)])


def section_bf16_padding(result: dict[str, Any] | None) -> str:
    """Issue 11: under bf16 autocast, padding to 16 tokens against padding to the longest row (and fp32)."""
    return _ab_section(
        "## 4f. Padding under bf16 autocast: 16 tokens by default (A/B, a CPU with AVX512-BF16)\n", result,
        PADDING_NAMES, "kd_studio_pad1", "bf16 padded to the longest row",
        "On this CPU `--mixed-precision auto` trains in bf16. Rounding batch lengths up to 16 tokens makes shapes "
        "repeat, so the heap reuses the blocks each step frees; under bf16 the extra (masked) tokens cost no "
        "measurable time, while in fp32 on an AVX2 CPU they cost x1.14 (section 4e). Hence `pad_to_multiple_of` "
        "auto: 16 under bf16, 1 in fp32.")


def section_tcmalloc(result: dict[str, Any] | None) -> str:
    """Issue 11: gperftools' tcmalloc preloaded instead of glibc's malloc, with today's defaults."""
    return _ab_section(
        "## 4g. tcmalloc instead of glibc's malloc (A/B)\n", result, TCMALLOC_NAMES, "kd_studio",
        "the defaults with glibc",
        "tcmalloc (Debian/Ubuntu `libtcmalloc-minimal4`) keeps per-size free lists and returns spans to the OS, "
        "instead of glibc's heap that fragments under activations of changing shapes (distill_core/allocator.py). "
        "It is loaded with `LD_PRELOAD`, so it must be chosen before the process starts. These runs predate two "
        "changes: a run now names the malloc that served it and why (`allocator.malloc`, `allocator.malloc_why` in "
        "status.json), and training commands choose tcmalloc themselves where it is installed "
        "(`distill_core/malloc_choice.py`; sections 4h and 7d measure that default).")


TCMALLOC_FP32_NAMES = {"kd_studio_fp32": "fp32 (`--mixed-precision no`), tcmalloc (today's default malloc)",
                       "kd_studio_fp32_glibc": "fp32 (`--mixed-precision no`), glibc's malloc (`KD_MALLOC=system`)"}


def section_tcmalloc_fp32(result: dict[str, Any] | None) -> str:
    """Issue 11: tcmalloc against glibc's malloc for fp32 training (what AVX2-only CPUs run by default)."""
    return _ab_section(
        "## 4h. tcmalloc in fp32 training (A/B, fp32 forced on the AVX512-BF16 CPU)\n", result, TCMALLOC_FP32_NAMES,
        "kd_studio_fp32_glibc", "fp32 on glibc's malloc",
        "An AVX2-only CPU trains in fp32 by default (batches padded to their longest row); no such CPU was lent "
        "when this was measured, so fp32 was forced on the AVX512-BF16 CPU. The matmul kernels differ from an "
        "AVX2 CPU's, so read the time ratio as this CPU's; the allocation pattern (fp32 activations of changing "
        "shapes) is the same.")
