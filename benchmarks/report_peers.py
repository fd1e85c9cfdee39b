"""BENCHMARKS.md sections for issue 11: KD Studio against the peers a user would pick instead, and its targets.

Read by report.py; every number comes from results/peers_train.json, results/serving_peers.json (and, for the
target list, memory.json and quickstart.json where they exist).
"""
from __future__ import annotations

import statistics
from typing import Any

from report_format import f, provenance, table, verdict
from report_memory import RSS_TARGET_MB, training_time_ratio

TRAINER_TARGET = 4.0         # KD Studio vs the HF Trainer KD recipe, to a saved model, quiet machine
SEED_TARGET = 5.0            # KD Studio vs the seed loop
EQUAL_ACCURACY_POINTS = 0.5  # "at equal validation accuracy": KD Studio no more than this many points below
BESIDE_WORKER_TARGET = 2.0   # serving p50 beside a training worker / idle p50
QUICKSTART_TARGET_S = 300.0
KD_SERVING = ("torch-fp32", "torch-bf16", "torch-int8", "kd-ort-fp32", "kd-ort-int8")  # KD Studio's own paths
LABELS = {"kd_studio": "KD Studio (`distill_core distill`, defaults)", "trainer_fp32": "HF Trainer KD recipe, fp32",
          "trainer_bf16": "HF Trainer KD recipe, bf16 (`bf16=True, use_cpu=True`)", "seed": "seed loop",
          "kd_studio_before_2026_12_03": "KD Studio with the defaults before 2026-12-03 (section 4e)",
          "kd_studio_fp32": "KD Studio, fp32 (`--mixed-precision no`)",
          "kd_studio_glibc": "KD Studio on glibc's malloc (`KD_MALLOC=system`, the default before 2026-12-03)",
          "trainer_bf16_tcmalloc": "HF Trainer KD recipe, bf16, tcmalloc preloaded (`LD_PRELOAD`)",
          "trainer_fp32_tcmalloc": "HF Trainer KD recipe, fp32, tcmalloc preloaded (`LD_PRELOAD`)"}


def _ms(value: float | None) -> str | None:
    """Milliseconds with enough digits that two sub-10 ms latencies which differ do not print alike."""
    return None if value is None else f"{value:,.2f}" if value < 10 else f"{value:,.1f}"


def _best_trainer(summary: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    trainers = [(n, s) for n, s in summary.items() if n.startswith("trainer_")]
    return min(trainers, key=lambda item: item[1]["to_saved_model_s_median"]) if trainers else None


def _training_targets(peers: dict[str, Any]) -> list[list[Any]]:
    summary = peers["summary"]
    rows = []
    best = _best_trainer(summary)
    for name, target, label in ((best[0] if best else None, TRAINER_TARGET, "the HF Trainer KD recipe (its faster "
                                 "precision)"), ("seed", SEED_TARGET, "the seed loop")):
        peer = summary.get(name) if name else None
        if not peer or "speedup_of_kd_studio" not in peer:
            rows.append([f"training to a saved model vs {label}", f"≥ {target:g}x", "not measured", None])
            continue
        s = peer["speedup_of_kd_studio"]
        ok = s["median"] >= target and s["valid_accuracy_points"] >= -EQUAL_ACCURACY_POINTS
        rows.append([f"training to a saved model vs {label}", f"≥ {target:g}x at equal validation accuracy",
                     f"{s['min']:.2f}x (min) / {s['median']:.2f}x (median), accuracy {s['valid_accuracy_points']:+.2f}"
                     f" points ({name})", verdict(ok)])
    return rows


def section_peers_train(peers: dict[str, Any] | None,
                        title: str = "## 7. Training against the peers: HF Trainer KD recipe and the seed loop") -> str:
    out = [title + "\n"]
    if not peers:
        return out[0] + "\n_Not measured yet: `python benchmarks/peers_train.py`._\n"
    st = peers["settings"]
    out.append(
        f"Same teacher (`{st['teacher']}`), same `{st['student']}` student with identical initial weights, the same "
        f"{st['train_samples']:,} stratified training rows and {st['eval_samples']:,} validation rows, {st['epochs']} "
        f"epochs, batch {st['batch_size']}, lr {st['lr']:g}, max length {st['max_length']}, T {st['temperature']:g}, "
        f"alpha {st['alpha']:g}, seed {st['seed']}, {st['threads']} threads; {st['rounds']} interleaved round(s) "
        "(every variant once per round, in turn). *To a saved model* = process start to the student on disk "
        "(imports, loading, tokenisation, teacher, training, per-epoch validation, saving; KD Studio's test scoring "
        "after the save excluded). KD Studio ran its defaults (AdamW with warm-up, dropout 0.3, its automatic mixed "
        "precision) from a fresh teacher-logit cache every round. The Trainer recipe "
        "(`benchmarks/trainer_recipe.py`): the teacher under `no_grad` on every batch, `DataCollatorWithPadding`, "
        "length-grouped batches, fused AdamW, the same warm-up and decay, validation per epoch, one save.\n")
    summary = peers["summary"]
    body = []
    for name, s in summary.items():
        runs = peers["runs"][name]
        speed = s.get("speedup_of_kd_studio")
        body.append([LABELS.get(name, name), f(s["to_saved_model_s_min"]), f(s["to_saved_model_s_median"]),
                     f(s["train_s_median"]), " / ".join(f"{v:.4f}" for v in s["valid_accuracy"]),
                     " / ".join(f"{r['load_start'][0]:.1f}-{r['load_end'][0]:.1f}" for r in runs),
                     f"{speed['min']:.2f}x / {speed['median']:.2f}x" if speed else "—",
                     f"{speed['valid_accuracy_points']:+.2f}" if speed else "—"])
    out.append(table(["loop", "to saved model s (min)", "(median)", "training span s (median)",
                      "valid accuracy per round", "load avg start-end per round",
                      "KD Studio faster by (min / median)", "KD Studio accuracy Δ (points)"], body) + "\n")
    core_runs = peers["runs"].get("kd_studio", [])
    if core_runs:
        chosen = core_runs[0].get("provenance_precision") or {}
        reason = chosen.get("mixed_precision_reason", "no reason recorded")
        out.append(f"KD Studio's mixed precision: asked `{core_runs[0].get('mixed_precision')}`, ran "
                   f"`{chosen.get('mixed_precision', '?')}` ({reason}).\n")
        malloc = core_runs[0].get("allocator") or {}
        if malloc.get("malloc_why"):  # recorded since the malloc became KD Studio's choice (malloc_choice.py)
            out.append(f"KD Studio's malloc: {malloc['malloc']} ({malloc['malloc_why']}).\n")
    if peers.get("note"):
        out.append(f"_Note: {peers['note']}._\n")
    for name, why in (peers.get("skipped") or {}).items():
        out.append(f"Not run: {LABELS.get(name, name)}: {why}.\n")
    loads = [r["load_start"][0] for runs in peers["runs"].values() for r in runs]
    cores = peers["machine"]["usable_cores"]
    if loads:
        state = ("a BUSY machine: these ratios are not quiet-machine figures"
                 if statistics.median(loads) > cores else "a quiet machine")
        out.append(f"Machine load during the runs: 1-minute load average {min(loads):.1f}-{max(loads):.1f} on "
                   f"{cores} usable cores ({state}).\n")
    out.append(table(["target", "goal", "measured", "verdict"], _training_targets(peers)) + "\n")
    out.append(provenance(peers) + "\n")
    return "\n".join(out)


def _serving_paths(model: dict[str, Any], shape: str) -> dict[str, dict[str, Any]]:
    return model["latency"].get(shape, {}).get("variants", {})


def _best_kd_path(model: dict[str, Any], shape: str) -> tuple[str, float] | None:
    """KD Studio's fastest serving path at `shape` that keeps accuracy within the budget of its fp32."""
    acc = model["accuracy"]
    base = acc.get("torch-fp32", {}).get("accuracy")
    paths = _serving_paths(model, shape)
    ok = [(n, v["p50_ms"]) for n, v in paths.items() if n in KD_SERVING and n in acc and base is not None
          and 100 * (base - acc[n]["accuracy"]) <= EQUAL_ACCURACY_POINTS]
    return min(ok, key=lambda item: item[1]) if ok else None


def section_serving(serving: dict[str, Any] | None) -> str:
    out = ["## 8. Serving against the peer: ONNX Runtime fp32 and int8\n"]
    if not serving:
        return out[0] + "\n_Not measured yet: `python benchmarks/serving_peers.py`._\n"
    st = serving["settings"]
    out.append(
        f"Synthetic token ids with full attention masks, {st['threads']} thread(s), {st['warmup']} warm-up passes, "
        f"then the variants in turn until each has {st['passes']} timed passes. `torch-*`: "
        "`distill_core.precision.prepare_for_precision` (what Benchmark, Playground, evaluate and export run; bf16 = "
        "weights cast); `torch-bf16-autocast`: fp32 weights under `torch.autocast` (for the bf16 question below); "
        "`ort-*`: what a user does without KD Studio — `torch.onnx.export` + ONNX Runtime with its default settings "
        "(thread spinning on), int8 by `onnxruntime.quantization.quantize_dynamic`; `kd-ort-*`: KD Studio's own "
        "ONNX Runtime backend (`--precision ort-fp32/ort-int8`). Accuracy: every variant on the same "
        "stratified test rows; Δ and agreement are against the same model in PyTorch fp32.\n")
    for role, model in serving["models"].items():
        out.append(f"### {role} ({model['parameters'] / 1e6:.1f}M parameters)\n")
        acc = model["accuracy"]
        base = acc.get("torch-fp32", {}).get("accuracy")
        shapes = list(model["latency"])
        body = []
        for name in model["variants"]:
            cells = []
            for shape in shapes:
                paths = _serving_paths(model, shape)
                v, ort = paths.get(name), paths.get("ort-fp32")
                cells.append(f"{_ms(v['p50_ms'])} / {_ms(v['p95_ms'])}" if v else None)
                cells.append(f"{ort['p50_ms'] / v['p50_ms']:.2f}x" if v and ort else None)
            a = acc.get(name)
            body.append([f"`{name}`", *cells, f"{a['accuracy']:.4f}" if a else None,
                         f"{100 * (a['accuracy'] - base):+.2f}" if a and base is not None else None,
                         f"{100 * a['agreement_with_torch_fp32']:.1f}%" if a and a.get("agreement_with_torch_fp32")
                         is not None else None])
        head = ["variant"]
        for shape in shapes:
            head += [f"{shape} p50 / p95 ms", f"{shape} speed vs ort-fp32"]
        rows_n = next(iter(acc.values()))["rows"] if acc else 0
        head += [f"accuracy ({rows_n:,} test rows)", "Δ points", "agreement"]
        out.append(table(head, body) + "\n")
        loads = ", ".join(f"{s}: {v['load_1m_at_start']:.1f}-{v['load_1m_at_end']:.1f}" for s, v in
                          model["latency"].items())
        out.append(f"Load average during the timing: {loads}.\n")
    out.append(_serving_target_text(serving))
    out.append(_beside_worker_text(serving))
    out.append(_bf16_text(serving))
    out.append(provenance(serving) + "\n")
    return "\n".join(out)


def _serving_target_text(serving: dict[str, Any]) -> str:
    student = serving["models"].get("student")
    if not student:
        return ""
    shape = next(iter(student["latency"]))
    best = _best_kd_path(student, shape)
    ort = _serving_paths(student, shape).get("ort-fp32")
    if not best or not ort:
        return f"Target (student {shape} p50 ≤ ORT fp32 at ≤ {EQUAL_ACCURACY_POINTS:g} points): not measured.\n"
    name, p50 = best
    return (f"Target: KD Studio's best serving path at batch 1 at least as fast as ONNX Runtime fp32 at ≤ "
            f"{EQUAL_ACCURACY_POINTS:g} points accuracy loss: {verdict(p50 <= ort['p50_ms'])} — `{name}` "
            f"{_ms(p50)} ms p50 vs ort-fp32 {_ms(ort['p50_ms'])} ms (student, {shape}).\n")


def _beside_worker_text(serving: dict[str, Any]) -> str:
    beside = serving.get("beside_worker")
    student = serving["models"].get("student")
    if not beside or not student:
        return ""
    idle = _serving_paths(student, "1x50")
    body = []
    for threads, rows in beside["threads"].items():
        for name, v in rows.get("student", {}).items():
            base = idle.get(name)
            body.append([threads, f"`{name}`", _ms(base["p50_ms"]) if base else None, _ms(v["p50_ms"]),
                         f"{v['p50_ms'] / base['p50_ms']:.2f}x" if base else None])
    text = ["### Beside a training worker\n",
            "A `python -m distill_core distill` (2,000 rows, batch 32) trains in the background while the student is "
            f"timed at 1 x 50 again (load {beside['worker']['load_at_start'][0]:.1f} when it began). The idle column "
            f"is the same variant at {serving['settings']['threads']} thread(s) from the table above.\n",
            table(["threads", "variant", "idle p50 ms", "beside a worker p50 ms", "beside / idle"], body) + "\n"]
    best = _best_kd_path(student, "1x50")
    if best:
        name = best[0]
        ratios = [rows["student"][name]["p50_ms"] / idle[name]["p50_ms"] for rows in beside["threads"].values()
                  if name in rows.get("student", {})]
        if ratios:
            text.append(f"Target: the best serving path (`{name}`) beside a worker within {BESIDE_WORKER_TARGET:g}x "
                        f"of its idle p50: {verdict(min(ratios) <= BESIDE_WORKER_TARGET)} — {min(ratios):.2f}x at "
                        "the better thread count.\n")
    return "\n".join(text)


def _bf16_text(serving: dict[str, Any]) -> str:
    d = serving.get("bf16_diagnosis")
    if not d:
        return ""
    peaks = d["matmul_peak_gflops_n512"]
    return (
        "### Why bf16 can be slower than fp32\n\n"
        f"This machine: `{serving['machine']['cpu_model']}`, torch CPU capability `{d['cpu_capability']}`, "
        f"oneDNN bf16 supported: **{d['mkldnn_bf16_supported']}**; a 512 x 512 matmul runs at "
        f"{peaks['fp32']:.1f} GFLOP/s in fp32 and {peaks['bf16']:.2f} GFLOP/s in bf16. bf16 is fast only where "
        "the CPU computes bf16 dot products in hardware (AMX-BF16 or AVX512-BF16: Intel Sapphire Rapids / Cooper "
        "Lake, AMD Zen 4+), where oneDNN's bf16 GEMM kernels run; the 2.6x bf16 speed-up this file once reported "
        "was measured on such a Xeon (AMX). On a CPU without them (e.g. an AVX2-only AMD EPYC, which this "
        "project's machines are sometimes given) a bf16 `addmm` falls back to a slow path that converts every "
        "element: the cast model is several times slower than fp32 and autocast no better, whatever the shape, "
        "thread count or load. Choose bf16 only where `hardware` reports native bf16 (training's "
        "`--mixed-precision auto` does).\n")


# Peer runs on a quiet machine; the targets table takes the newest per kind of CPU.
QUIET_PEERS = ("peers_train_quiet", "peers_train_avx512", "peers_train_tcmalloc", "peers_train_bf16_targets",
               "peers_train_phases", "peers_train_fused")
# Results whose KD Studio variant ran the defaults of its day; the newest per kind of CPU gives the defaults' peak.
DEFAULT_PEAK_SOURCES = (("peers_train", "KD Studio's process in section 7"),
                        ("peers_train_quiet", "KD Studio's process in section 7b; defaults of section 4e"),
                        ("peers_train_avx512", "KD Studio's process in section 7c"),
                        ("peers_train_tcmalloc", "KD Studio's process in section 7d"),
                        ("peers_train_bf16_targets", "KD Studio's process in section 7e"),
                        ("peers_train_phases", "KD Studio's process in section 7f"),
                        ("peers_train_fused", "KD Studio's process in section 7g"),
                        ("allocator_ab", "default allocator, section 4b"), ("memory_levers", "defaults, section 4c"),
                        ("defaults_ab", "defaults, section 4e"), ("bf16_padding_ab", "defaults, section 4f"),
                        ("tcmalloc_ab", "defaults with glibc's malloc, section 4g"))


def cpu_kind(machine: dict[str, Any]) -> str:
    """What decides a machine's default training precision, in a reader's words: distill_core's own rule
    (hardware.resolve_precision) applied to the CPU flags the result recorded."""
    from distill_core.hardware import Hardware

    native = Hardware("cpu", cpu_flags=frozenset(machine.get("cpu_flags") or [])).native_cpu_bf16
    return f"CPU with {' and '.join(f.upper().replace('_', '-') for f in native)} (bf16 default)" if native \
        else "AVX2-only CPU (fp32 default)"


def _serving_targets(serving: dict[str, Any] | None) -> list[list[Any]]:
    student = (serving or {}).get("models", {}).get("student")
    if not serving or not student:
        return [["student batch-1 p50 vs ONNX Runtime fp32", "≤ ORT fp32", "not measured", None]]
    rows = []
    shape = next(iter(student["latency"]))
    best, ort = _best_kd_path(student, shape), _serving_paths(student, shape).get("ort-fp32")
    if best and ort:
        rows.append(["student batch-1 p50 vs ONNX Runtime fp32", "≤ ORT fp32 at ≤ 0.5 points",
                     f"`{best[0]}` {_ms(best[1])} ms vs {_ms(ort['p50_ms'])} ms", verdict(best[1] <= ort["p50_ms"])])
    beside = serving.get("beside_worker")
    if best and beside:
        ratios = [t["student"][best[0]]["p50_ms"] / student["latency"]["1x50"]["variants"][best[0]]["p50_ms"]
                  for t in beside["threads"].values() if best[0] in t.get("student", {})
                  and "1x50" in student["latency"]]
        if ratios:
            rows.append(["same path beside a training worker", "p50 within 2x of idle", f"{min(ratios):.2f}x",
                         verdict(min(ratios) <= BESIDE_WORKER_TARGET)])
    return rows


def _default_peak_rows(results: dict[str, dict | None]) -> list[list[Any]]:
    """The defaults' peak RSS per kind of CPU (its default precision differs), from the newest result that ran
    them there (the defaults changed over time)."""
    newest: dict[str, tuple[str, float, str]] = {}
    memory = results.get("memory") or {}
    if (memory.get("distill") or {}).get("peak_rss_mb"):
        newest[cpu_kind(memory["machine"])] = ("", memory["distill"]["peak_rss_mb"], "memory.json")
    for name, source in DEFAULT_PEAK_SOURCES:
        result = results.get(name) or {}
        peaks = [r.get("peak_rss_mb") for r in (result.get("runs") or {}).get("kd_studio", []) if r.get("peak_rss_mb")]
        if not peaks:
            continue
        kind = cpu_kind(result["machine"])
        if result["machine"]["date"] > newest.get(kind, ("",))[0]:
            newest[kind] = (result["machine"]["date"], max(peaks), source)
    if not newest:
        return [["peak RSS of a distillation run (offline pair)", "≤ 1.5 GB", "not measured", None]]
    return [[f"peak RSS of a distillation run (offline pair), {kind}", "≤ 1.5 GB", f"{peak:,.0f} MB ({source})",
             verdict(peak <= RSS_TARGET_MB)] for kind, (_, peak, source) in sorted(newest.items())]


def _newest_per_cpu_kind(found: list[dict | None]) -> list[dict]:
    """The newest of ``found`` results for each kind of CPU (cpu_kind), in the order of their kinds."""
    newest: dict[str, dict] = {}
    for result in filter(None, found):
        kind = cpu_kind(result["machine"])
        if kind not in newest or result["machine"]["date"] > newest[kind]["machine"]["date"]:
            newest[kind] = result
    return [newest[kind] for kind in sorted(newest)]


def section_targets(results: dict[str, dict | None]) -> str:
    """Issue 11's 'done means' list, each with its measured figure (per kind of CPU where that changes it)."""
    peers = results.get("peers_train")
    rows = _training_targets(peers) if peers else [["training vs Trainer recipe / seed loop", "≥ 4x / ≥ 5x",
                                                    "not measured", None]]
    quiet_rows = []  # the targets ask for a quiet machine: a peer measured there replaces the busy run's row
    for quiet in _newest_per_cpu_kind([results.get(name) for name in QUIET_PEERS]):
        where = f", quiet machine, {cpu_kind(quiet['machine'])}"
        quiet_rows += [[r[0] + where, *r[1:]] for r in _training_targets(quiet) if r[2] != "not measured"]
    replaced = {r[0].split(", quiet machine")[0] for r in quiet_rows}
    rows = quiet_rows + [r for r in rows if r[0] not in replaced]
    rows += _serving_targets(results.get("serving_peers"))
    rows += _default_peak_rows(results) + _opt_in_peak_rows(results)
    quick = results.get("quickstart") or {}
    wall = quick.get("wall_s")
    where = f", {cpu_kind(quick['machine'])}" if wall else ""
    rows.append([f"Offline quick start wall time{where}", "< 5 min",
                 f"{wall / 60:.1f} min" if wall else "not measured",
                 verdict(wall < QUICKSTART_TARGET_S) if wall else None])
    return "## Issue 11 targets\n\n" + table(["target", "goal", "measured", "verdict"], rows) + "\n"


def _opt_in_peak_rows(results: dict[str, dict | None]) -> list[list[Any]]:
    """Peak RSS of the opt-in memory levers (AVX2-only CPU, fp32: where they were measured)."""
    rows = []
    padded = ((results.get("defaults_ab") or {}).get("runs") or {}).get("kd_studio_pad16")
    if padded:
        rows.append(["peak RSS with `--pad-to-multiple-of 16` (AVX2-only CPU, fp32: opt-in; under bf16 the default)",
                     "≤ 1.5 GB",
                     f"{max(r['peak_rss_mb'] for r in padded):,.0f} MB, training "
                     f"×{training_time_ratio(results['defaults_ab']['runs'], 'kd_studio_pad16'):.2f} (section 4e)",
                     verdict(max(r["peak_rss_mb"] for r in padded) <= RSS_TARGET_MB)])
    levers = (results.get("memory_levers") or {}).get("runs") or {}
    if levers.get("kd_studio_lean"):
        lean = max(r["peak_rss_mb"] for r in levers["kd_studio_lean"])
        rows.append(["peak RSS with `KD_MALLOC_TRIM_EVERY=10`, `--freeze-embeddings --attention-dropout 0` (opt-in)",
                     "≤ 1.5 GB", f"{lean:,.0f} MB (section 4c)", verdict(lean <= RSS_TARGET_MB)])
    tcmalloc = ((results.get("tcmalloc_ab") or {}).get("runs") or {}).get("kd_studio_tcmalloc")
    if tcmalloc:
        peak = max(r["peak_rss_mb"] for r in tcmalloc)
        where = cpu_kind(results["tcmalloc_ab"]["machine"])
        rows.append([f"peak RSS with tcmalloc preloaded by hand (before it became the default), {where}",
                     "≤ 1.5 GB", f"{peak:,.0f} MB, training "
                     f"×{training_time_ratio(results['tcmalloc_ab']['runs'], 'kd_studio_tcmalloc'):.2f} (section 4g)",
                     verdict(peak <= RSS_TARGET_MB)])
    fp32 = (results.get("tcmalloc_fp32_ab") or {}).get("runs") or {}
    if fp32.get("kd_studio_fp32"):
        peak = max(r["peak_rss_mb"] for r in fp32["kd_studio_fp32"])
        ratio = training_time_ratio(fp32, "kd_studio_fp32", "kd_studio_fp32_glibc")
        rows.append(["peak RSS in fp32 with today's default malloc (tcmalloc), fp32 forced on the AVX512-BF16 CPU: "
                     "the AVX2-only default's allocation pattern", "≤ 1.5 GB",
                     f"{peak:,.0f} MB, training ×{ratio:.2f} of fp32 on glibc (section 4h)",
                     verdict(peak <= RSS_TARGET_MB)])
    ab_runs = (results.get("allocator_ab") or {}).get("runs") or {}
    low = [r["peak_rss_mb"] for r in ab_runs.get("kd_studio_low_memory", [])]
    if low:
        rows.append(["peak RSS with `KD_MALLOC_MMAP_THRESHOLD=1048576` (opt-in)", "≤ 1.5 GB",
                     f"{max(low):,.0f} MB, training ×{_allocator_slowdown(ab_runs):.2f} slower (section 4b)",
                     verdict(max(low) <= RSS_TARGET_MB)])
    return rows


ALLOCATOR_NAMES = {"kd_studio_low_memory": "mmap threshold fixed at 1 MiB (`KD_MALLOC_MMAP_THRESHOLD=1048576`)",
                   "kd_studio": "glibc's dynamic threshold (the default)"}


def _allocator_slowdown(runs: dict[str, list[dict[str, Any]]]) -> float:
    """Median training time with the fixed threshold over the median with glibc's default."""
    return training_time_ratio(runs, "kd_studio_low_memory")


def section_allocator(ab: dict[str, Any] | None) -> str:
    """The A/B of distill_core/allocator.py: the same distillation with and without the fixed mmap threshold."""
    out = ["## 4b. Memory: the allocator change, A/B\n"]
    if not ab:
        return out[0] + ("\n_Not measured yet: `python benchmarks/peers_train.py --variants kd_studio_low_memory "
                         "kd_studio --rounds 2 --name allocator_ab`._\n")
    st, runs = ab["settings"], ab["runs"]
    out.append(f"KD Studio's `distill` of section 7's work (`{st['student']}`, {st['train_samples']:,} train and "
               f"{st['eval_samples']:,} validation rows, {st['epochs']} epochs, batch {st['batch_size']}, "
               f"{st['threads']} threads, fresh teacher-logit cache each run), the two allocator settings "
               f"interleaved over {st['rounds']} rounds (rows in the order they ran). Peak RSS is `os.wait4`'s "
               "ru_maxrss of the process.\n")
    in_run_order = sorted(((row["started_at"], name, row) for name, rows in runs.items() for row in rows),
                          key=lambda item: item[0])
    body = [[ALLOCATOR_NAMES.get(name, name), row["round"], f(row["peak_rss_mb"], 0), f(row["to_saved_model_s"]),
             f(row["train_s"]), f"{100 * row['valid_accuracy']:.2f}", f"{row['load_start'][0]:.1f}"]
            for _, name, row in in_run_order]
    out.append(table(["allocator", "round", "peak RSS MB", "to saved model s", "training s", "valid acc %",
                      "load at start"], body) + "\n")
    fixed, dynamic = runs.get("kd_studio_low_memory") or [], runs.get("kd_studio") or []
    if fixed and dynamic:
        ratio = _allocator_slowdown(runs)
        out.append(f"Peak RSS {max(r['peak_rss_mb'] for r in dynamic):,.0f} → "
                   f"{max(r['peak_rss_mb'] for r in fixed):,.0f} MB; training time ×{ratio:.2f} (median over rounds; "
                   "the load column says how busy the machine was). Validation accuracy is the same computation "
                   "either way: an allocator does not change a single float. Each fresh mapping is faulted in and "
                   "zeroed page by page on every step, which is the time cost; the default keeps glibc's rule, "
                   "so the setting is opt-in where memory is the limit.\n")
    out.append(provenance(ab) + "\n")
    return "\n".join(out)
