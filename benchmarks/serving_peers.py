"""Serving on CPU: KD Studio's PyTorch paths (fp32 / bf16 / int8) vs ONNX Runtime fp32 and dynamic int8.

What a practitioner who does not use KD Studio does to serve a distilled classifier on CPU: export it to ONNX and
run ONNX Runtime, often with dynamic int8 quantization. Every variant here serves the SAME trained student (and
teacher), with the same thread count, on the same inputs:

- `torch-fp32`, `torch-bf16`, `torch-int8`: `distill_core.precision.prepare_for_precision`, the exact objects the
  Benchmark page, the Playground, `evaluate` and `export` use (bf16 = weights cast to bfloat16; int8 = dynamic
  quantization of every Linear); `torch-bf16-autocast` (fp32 weights under `torch.autocast`) is timed too, to
  explain bf16 (see BENCHMARKS.md);
- `ort-fp32`: `torch.onnx.export` of the fp32 model, ORT_ENABLE_ALL graph optimisations, `intra_op_num_threads`
  = threads; `ort-int8`: `onnxruntime.quantization.quantize_dynamic` of that graph (int8 weights, per-tensor);
- `kd-ort-fp32` / `kd-ort-int8`: distill_core's own ONNX Runtime backend, where the installed distill_core has one.

Latency: synthetic token ids, full attention masks, batch 1 x 50 tokens (one interactive request; AG News texts
average ~54 tokens) and batch 32 x 128; warm-up passes, then the variants take turns (A B C, C B A, ...) until each
has `--passes` timed passes; p50 / p95. Accuracy: every variant on the same test rows (a stratified 2,000 of
../shared/data/ag_news/test.csv), with agreement against the model's fp32 predictions. Beside a worker: a
`python -m distill_core distill` runs in the background (started, given time to reach its training steps, then
stopped) while batch-1 latency is measured again, at the serving thread count and at 1 thread.

    python benchmarks/serving_peers.py --student RUN --teacher RUN           # ~15 min on 2 cores
    python benchmarks/serving_peers.py --student RUN --teacher RUN --quick   # ~2 min: the script itself
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from _common import AG_NEWS, OFFLINE, REPO, header, offline_env, write_result

TORCH_VARIANTS = ("torch-fp32", "torch-bf16", "torch-int8", "torch-bf16-autocast")
ORT_VARIANTS = ("ort-fp32", "ort-int8")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
Forward = Callable[[dict[str, np.ndarray]], np.ndarray]  # int64 arrays in, float32 logits out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", default=os.environ.get("KD_PEER_STUDENT", str(OFFLINE / "student-kd")),
                        help="trained student run folder (default $KD_PEER_STUDENT or $KD_OFFLINE_RUNS/student-kd)")
    parser.add_argument("--teacher", default=os.environ.get("KD_PEER_TEACHER", str(OFFLINE / "teacher-minilm")))
    parser.add_argument("--models", nargs="+", choices=["student", "teacher"], default=["student", "teacher"])
    parser.add_argument("--variants", nargs="+", default=["torch-fp32", "torch-bf16", "torch-int8", *ORT_VARIANTS,
                                                          "kd-ort-fp32", "kd-ort-int8"],
                        help="also: torch-bf16-autocast (fp32 weights under autocast; no faster than the cast here)")
    parser.add_argument("--shapes", nargs="+", default=["1x50", "32x128"], help="BATCHxTOKENS")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, default=30, help="timed passes per variant per shape (at least)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000, help="test rows for accuracy (0 = all 7,600)")
    parser.add_argument("--data", default=str(AG_NEWS))
    parser.add_argument("--beside-worker", action=argparse.BooleanOptionalAction, default=True,
                        help="also time batch 1 with a distill worker running beside it")
    parser.add_argument("--beside-threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--quick", action="store_true", help="few passes, 128 rows: check the script")
    parser.add_argument("--name", default=None, help="results/<name>.json (default serving_peers[_smoke])")
    args = parser.parse_args()
    if args.quick:
        args.passes, args.warmup, args.rows, args.shapes = 4, 1, 128, ["1x50", "8x64"]
    problems = []
    for flag, path in (("--student", args.student), ("--teacher", args.teacher)):
        if not ((Path(path) / "model" / "config.json").is_file() or (Path(path) / "config.json").is_file()):
            problems.append(f"{flag} {path}: no trained model there (expected a run folder with model/)")
    try:
        args.shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes]
    except ValueError:
        problems.append(f"--shapes must look like 1x50, got {args.shapes}")
    unknown = set(args.variants) - {*TORCH_VARIANTS, *ORT_VARIANTS, "kd-ort-fp32", "kd-ort-int8"}
    if unknown:
        problems.append(f"--variants: unknown {sorted(unknown)}")
    if args.passes < 1 or args.threads < 1:
        problems.append("--passes and --threads must be >= 1")
    if problems:
        parser.error("; ".join(problems))
    args.name = args.name or ("serving_peers_smoke" if args.quick else "serving_peers")
    return args


# ----------------------------------------------------------------------------------------------------------------
# the variants: each one is a numpy-in, numpy-out forward function


def torch_variant(model, precision: str) -> Forward:
    import torch

    from distill_core.precision import prepare_for_precision

    if precision == "bf16-autocast":
        served, context = model.eval(), (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    else:
        served, context = prepare_for_precision(model, precision)

    def forward(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode(), context():
            logits = served(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits
        return logits.float().numpy()

    return forward


def export_onnx(model, folder: Path) -> dict[str, Path]:
    """fp32 graph by torch.onnx.export (dynamic batch and length), plus its dynamic int8 quantization."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    fp32, int8 = folder / "model.onnx", folder / "model.int8.onnx"
    example = {name: torch.ones(2, 16, dtype=torch.long) for name in INPUT_NAMES}
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUT_NAMES}
    with torch.inference_mode():
        # The TorchScript exporter: it takes dynamic_axes directly and exports a BERT in seconds.
        torch.onnx.export(model.eval(), (example,), str(fp32), input_names=list(INPUT_NAMES), output_names=["logits"],
                          dynamic_axes=axes | {"logits": {0: "batch"}}, opset_version=17, dynamo=False)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return {"ort-fp32": fp32, "ort-int8": int8}


def ort_variant(path: Path, threads: int) -> Forward:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}

    def forward(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["logits"], {k: v for k, v in feeds.items() if k in wanted})[0]

    return forward


def kd_ort_variant(model, precision: str) -> Forward | None:
    """distill_core's own ONNX Runtime backend, if this checkout has one (prepare_for_precision('ort-...'))."""
    import torch

    from distill_core import precision as kd_precision

    if precision not in kd_precision.PRECISIONS:
        return None
    served, context = kd_precision.prepare_for_precision(model, precision)

    def forward(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode(), context():
            logits = served(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits
        return np.asarray(logits.float() if hasattr(logits, "float") else logits, dtype=np.float32)

    return forward


def build_variants(model, names: list[str], threads: int, work: Path) -> tuple[dict[str, Forward], dict[str, Any]]:
    variants: dict[str, Forward] = {}
    notes: dict[str, Any] = {}
    onnx_paths: dict[str, Path] = {}
    if any(n in ORT_VARIANTS for n in names):
        start = time.perf_counter()
        onnx_paths = export_onnx(model, work)
        notes["onnx_export_s"] = time.perf_counter() - start
        notes["onnx_mb"] = {k: p.stat().st_size / 1e6 for k, p in onnx_paths.items()}
    for name in names:
        if name in TORCH_VARIANTS:
            variants[name] = torch_variant(model, name.removeprefix("torch-"))
        elif name in ORT_VARIANTS:
            variants[name] = ort_variant(onnx_paths[name], threads)
        else:
            forward = kd_ort_variant(model, name.removeprefix("kd-"))
            if forward is None:
                notes.setdefault("skipped", []).append(f"{name}: this distill_core has no {name[3:]} precision")
            else:
                variants[name] = forward
    return variants, notes


# ----------------------------------------------------------------------------------------------------------------
# latency and accuracy


def synthetic_feeds(batch: int, tokens: int, vocab_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"input_ids": rng.integers(0, vocab_size, (batch, tokens), dtype=np.int64),
            "attention_mask": np.ones((batch, tokens), dtype=np.int64),
            "token_type_ids": np.zeros((batch, tokens), dtype=np.int64)}


def time_interleaved(variants: dict[str, Forward], feeds: dict[str, np.ndarray], passes: int, warmup: int
                     ) -> dict[str, dict[str, Any]]:
    for forward in variants.values():
        for _ in range(warmup):
            forward(feeds)
    latencies: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    round_index = 0
    while min(len(v) for v in latencies.values()) < passes:
        for name in names if round_index % 2 == 0 else names[::-1]:
            for _ in range(2):
                start = time.perf_counter()
                variants[name](feeds)
                latencies[name].append((time.perf_counter() - start) * 1e3)
        round_index += 1
    return {name: {"p50_ms": float(np.percentile(v, 50)), "p95_ms": float(np.percentile(v, 95)),
                   "min_ms": float(np.min(v)), "passes": len(v)} for name, v in latencies.items()}


def test_rows(data: str, rows: int, tokenizer, max_length: int = 128) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """The stratified test subset distill_core evaluates, tokenised and batched by length (64 rows a batch)."""
    from distill_core.config import DataConfig
    from distill_core.data import load_data

    loaded = load_data(DataConfig(source=data, eval_samples=rows or None, max_length=max_length), seed=42)
    test = loaded.splits["test"]
    encoded = tokenizer(list(test["text"]), truncation=True, max_length=max_length)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    batches = []
    for start in range(0, len(order), 64):
        chunk = order[start:start + 64]
        width = max(len(encoded["input_ids"][i]) for i in chunk)
        feeds = {name: np.zeros((len(chunk), width), dtype=np.int64) for name in INPUT_NAMES}
        for row, i in enumerate(chunk):
            n = len(encoded["input_ids"][i])
            feeds["input_ids"][row, :n] = encoded["input_ids"][i]
            feeds["attention_mask"][row, :n] = 1
        batches.append((chunk, feeds))
    labels = np.asarray(test["label"])
    return [{"rows": chunk, **feeds} for chunk, feeds in batches], labels


def predictions(forward: Forward, batches: list[dict[str, np.ndarray]], n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.int64)
    for batch in batches:
        feeds = {k: v for k, v in batch.items() if k != "rows"}
        out[batch["rows"]] = forward(feeds).argmax(axis=-1)
    return out


# ----------------------------------------------------------------------------------------------------------------
# a training worker beside the serving path


@contextlib.contextmanager
def training_worker(teacher: str, data: str, work: Path):
    """A `distill_core distill` (2,000 rows, batch 32: a real training step load) for the duration of the block."""
    run_dir = work / "beside-run"
    argv = [sys.executable, "-m", "distill_core", "distill", "--data", data, "--teacher", teacher,
            "--student", "truncate:3", "--train-samples", "2000", "--eval-samples", "200", "--epochs", "50",
            "--batch-size", "32", "--lr", "1e-4", "--max-length", "128", "--patience", "0", "--out", str(run_dir),
            "--quiet"]
    env = offline_env(work / "beside-cache")
    env["KD_RUNS_DIR"] = str(work)
    with open(work / "beside.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                   start_new_session=True)
        try:
            deadline = time.time() + 300  # past loading, tokenising and the teacher pass: its steps are what competes
            while time.time() < deadline and process.poll() is None:
                metrics = run_dir / "metrics.jsonl"
                if metrics.is_file() and '"kind": "step"' in metrics.read_text(encoding="utf-8", errors="replace"):
                    break
                time.sleep(1)
            if process.poll() is not None:
                raise SystemExit(f"error: the beside-a-worker training run ended early ({process.returncode}); "
                                 f"see {work / 'beside.log'}")
            yield {"pid": process.pid, "load_at_start": list(os.getloadavg())}
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# ----------------------------------------------------------------------------------------------------------------
# main


def load_model(path: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from distill_core.specs import model_folder

    folder = model_folder(path)
    if folder is None:
        raise SystemExit(f"error: {path}: no save_pretrained folder with safetensors weights")
    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def measure_model(args: argparse.Namespace, role: str, path: str, work: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(path)
    variants, notes = build_variants(model, args.variants, args.threads, work / role)
    result: dict[str, Any] = {"path": path, "parameters": sum(p.numel() for p in model.parameters()),
                              "variants": list(variants), **notes, "latency": {}}
    for batch, tokens in args.shapes:
        key = f"{batch}x{tokens}"
        load = os.getloadavg()[0]
        print(f"[serving] {role} {key} (load {load:.1f}) ...", file=sys.stderr, flush=True)
        timed = time_interleaved(variants, synthetic_feeds(batch, tokens, model.config.vocab_size), args.passes,
                                 args.warmup)
        result["latency"][key] = {"load_1m_at_start": load, "load_1m_at_end": os.getloadavg()[0], "variants": timed}
        print(f"[serving] {role} {key}: " + ", ".join(f"{n} {v['p50_ms']:.1f}" for n, v in timed.items()),
              file=sys.stderr, flush=True)
    batches, labels = test_rows(args.data, args.rows, tokenizer)
    reference = predictions(variants["torch-fp32"], batches, len(labels)) if "torch-fp32" in variants else None
    result["accuracy"] = {}
    for name, forward in variants.items():
        start = time.perf_counter()
        predicted = reference if name == "torch-fp32" and reference is not None else predictions(forward, batches,
                                                                                                 len(labels))
        result["accuracy"][name] = {
            "accuracy": float((predicted == labels).mean()), "rows": len(labels),
            "agreement_with_torch_fp32": None if reference is None else float((predicted == reference).mean()),
            "seconds": time.perf_counter() - start}
    result["variant_objects"] = variants  # dropped before writing; reused beside the worker
    result["vocab_size"] = model.config.vocab_size
    return result


def beside_worker(args: argparse.Namespace, measured: dict[str, dict], work: Path) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"shape": "1x50", "threads": {}}
    with training_worker(args.teacher, args.data, work) as worker:
        out["worker"] = worker
        for threads in args.beside_threads:
            torch.set_num_threads(threads)
            rows: dict[str, Any] = {}
            for role, result in measured.items():
                variants = result["variant_objects"]
                if threads != args.threads:  # a peer ORT session keeps its thread pool: build it again
                    model = load_model(args.student if role == "student" else args.teacher)[0]
                    rebuilt, _ = build_variants(model, [n for n in variants if n in ORT_VARIANTS], threads,
                                                work / f"{role}-t{threads}")
                    variants = {**variants, **rebuilt}
                rows[role] = time_interleaved(variants, synthetic_feeds(1, 50, result["vocab_size"]), args.passes,
                                              args.warmup)
                print(f"[serving] beside a worker, {threads} thread(s), {role}: "
                      + ", ".join(f"{n} {v['p50_ms']:.1f}" for n, v in rows[role].items()), file=sys.stderr,
                      flush=True)
            out["threads"][str(threads)] = {"load_1m": os.getloadavg()[0], **rows}
        out["worker"]["load_at_end"] = list(os.getloadavg())
    torch.set_num_threads(args.threads)
    return out


def bf16_diagnosis(threads: int) -> dict[str, Any]:
    """Whether this CPU runs bf16 matmuls natively: the condition under which bf16 serving beats fp32.

    oneDNN has bf16 kernels only for AVX512-BF16 / AMX-BF16 CPUs (`_is_mkldnn_bf16_supported`); elsewhere a bf16
    addmm takes a slow non-vectorised path, so a bf16-cast model is several times SLOWER than fp32 (measured on an
    AVX2-only AMD EPYC: 3.2x at 1 x 50 tokens, the matmul peak ~40x lower).
    """
    import torch

    from distill_core.bench import matmul_peak_gflops

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn_bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            # n=512: enough to tell native from emulated bf16 (40x apart), and seconds, not minutes, when emulated
            "matmul_peak_gflops_n512": {
                "fp32": matmul_peak_gflops(torch.float32, n=512, repeats=3, threads=threads),
                "bf16": matmul_peak_gflops(torch.bfloat16, n=512, repeats=3, threads=threads)}}


def main() -> int:
    args = parse_args()
    print(f"[serving] command: {' '.join(sys.argv)}", file=sys.stderr, flush=True)
    result = header("serving_peers")
    result["settings"] = {k: v for k, v in vars(args).items() if k != "name"}
    result["bf16_diagnosis"] = bf16_diagnosis(args.threads)
    with tempfile.TemporaryDirectory(prefix="kd-serving-peers-", ignore_cleanup_errors=True) as scratch:
        work = Path(scratch)
        paths = {"student": args.student, "teacher": args.teacher}
        measured = {role: measure_model(args, role, paths[role], work) for role in args.models}
        if args.beside_worker:
            result["beside_worker"] = beside_worker(args, measured, work)
        for role in measured.values():
            role.pop("variant_objects")
        result["models"] = measured
        write_result(args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
