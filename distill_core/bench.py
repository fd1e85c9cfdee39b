"""CPU inference benchmarking: latency and throughput of sequence classifiers at fp32, bf16 and dynamic int8,
through PyTorch or ONNX Runtime (``ort-fp32``, ``ort-int8``: timed exactly like the PyTorch precisions, same inputs,
warm-up, repeats, interleaving and thread count; the ONNX export happens before the warm-up, outside the timing).

Method (after nanoGPT's ``bench.py``): synthetic inputs of exactly ``batch x seq_len`` tokens, the models in eval
mode under ``torch.inference_mode``, ``warmup`` untimed forward passes (first-call allocations, oneDNN kernel
selection and quantized-weight packing all land there), then timed passes with ``time.perf_counter``, the
models of a comparison taking turns in rounds (see :func:`benchmark_models`: the load of a shared machine
changes within seconds, and models timed one after the other were seen 4x apart from what physics allows). We
report the median (p50), quartiles and p95 rather than the mean because on a shared machine the distribution
has a long right tail; throughput is ``batch_size / p50``; ``bench_stats`` turns the rounds into paired
speed-ups and flags wide spreads and a busy machine.

The thread count is part of every result: CPU latency depends on it more than on anything else, so it is set
for the duration of a benchmark, recorded in each row, and restored afterwards. Do not ask for more threads
than are idle: with the cores oversubscribed (e.g. beside a training run) OpenMP workers wait on each other
and a 2-thread MiniLM forward was measured 13x slower than on the idle machine, while 1 thread degraded
gracefully.

Precisions (see ``precision.prepare_for_precision``) change the numbers the model computes, so a speed-up is only worth
having if accuracy holds: measure accuracy on the validation/test split for every precision you intend to
ship, with the model returned by ``prepare_for_precision`` (the exact object that was timed here).
"""
from __future__ import annotations

import contextlib
import inspect
import io
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from distill_core import bench_stats
from distill_core.errors import UserError
from distill_core.hardware import machine_info
from distill_core.precision import PRECISIONS, ContextFactory, prepare_for_precision

__all__ = [
    "BenchSettings",
    "benchmark_model",
    "benchmark_models",
    "forward_flops",
    "matmul_peak_gflops",
]

@dataclass(frozen=True)
class BenchSettings:
    """What to measure. Every (precision, batch size, sequence length) combination is one cell / one row."""

    batch_sizes: tuple[int, ...] = (1, 8, 64)  # 1 = interactive latency, 64 = the seed recipe's batch
    seq_lens: tuple[int, ...] = (32, 64, 150)  # 150 = the seed recipe's max_length; AG News texts are ~40-60 tokens
    precisions: tuple[str, ...] = ("fp32",)  # any of PRECISIONS
    warmup: int = 3  # untimed passes per cell
    repeats: int = 20  # timed passes per model per cell (at least; see min_seconds): enough to know the spread
    round_passes: int = 2  # timed passes of one model per round before the next model's turn
    threads: int | None = None  # torch intra-op threads; None = torch.get_num_threads() at call time
    min_seconds: float | None = None  # keep timing past `repeats` until this much timed time per cell
    seed: int = 0  # seeds the synthetic token ids, so every precision sees the same inputs

    def validate(self) -> None:
        """Raise UserError naming the first bad field."""
        for field, values in (("batch_sizes", self.batch_sizes), ("seq_lens", self.seq_lens)):
            if not values:
                raise UserError(f"benchmark {field} is empty: give at least one positive integer")
            bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or v < 1]
            if bad:
                raise UserError(f"benchmark {field} must be positive integers, got {bad[0]!r}")
        if not self.precisions:
            raise UserError(f"benchmark precisions is empty: choose from {', '.join(PRECISIONS)}")
        for precision in self.precisions:
            if precision not in PRECISIONS:
                raise UserError(f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        if self.warmup < 0:
            raise UserError(f"benchmark warmup must be >= 0, got {self.warmup}")
        if self.repeats < 1:
            raise UserError(f"benchmark repeats must be >= 1, got {self.repeats}")
        if self.round_passes < 1:
            raise UserError(f"benchmark round_passes must be >= 1, got {self.round_passes}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"benchmark threads must be >= 1 (or unset for the torch default), got {self.threads}")
        if self.min_seconds is not None and not (self.min_seconds >= 0 and math.isfinite(self.min_seconds)):
            raise UserError(f"benchmark min_seconds must be a finite number >= 0, got {self.min_seconds}")


# ----------------------------------------------------------------------------------------------------------------
# analytic cost and machine peak


def forward_flops(config: Any, batch_size: int, seq_len: int) -> float:
    """FLOPs (2 x multiply-accumulates) of one forward pass of a BERT-style sequence classifier.

    With B = batch, L = sequence length, H = hidden size, I = FFN size, N = layers, C = labels::

        per layer:  2*B*L*(4*H^2 + 2*H*I)      Q, K, V and output projections (4 H x H) + the two FFN matmuls
                  + 4*B*L^2*H                  attention scores Q K^T and the weighted sum of V (all heads)
        head:       2*B*H^2 + 2*B*H*C          pooler (or DistilBERT's pre_classifier) on [CLS] + classifier
        total = N * per layer + head

    Embedding look-ups, biases, LayerNorm, softmax and GELU are left out: they are O(B*L*H), under 1% of the
    total for BERT shapes, and they are memory-bound anyway. Works with BERT-style configs (hidden_size,
    num_hidden_layers, intermediate_size) and DistilBERT-style ones (dim, n_layers, hidden_dim).
    """
    hidden = _config_int(config, "hidden_size", "dim")
    layers = _config_int(config, "num_hidden_layers", "n_layers")
    intermediate = _config_int(config, "intermediate_size", "hidden_dim")
    labels = int(getattr(config, "num_labels", 2))
    b, length = float(batch_size), float(seq_len)
    per_layer = 2 * b * length * (4 * hidden**2 + 2 * hidden * intermediate) + 4 * b * length**2 * hidden
    head = 2 * b * hidden**2 + 2 * b * hidden * labels
    return layers * per_layer + head


def _config_int(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise UserError(f"model config {type(config).__name__} has none of {', '.join(names)}: "
                    "FLOPs can only be counted for BERT-style encoders")


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5,
                       threads: int | None = None) -> float:
    """Measured matmul peak of this machine in GFLOP/s: the best of ``repeats`` timings of an n x n matmul.

    The roofline to compare ``gflops_per_s`` of a benchmark row against: a model far below it is limited by
    memory traffic, framework overhead or small shapes rather than by arithmetic. Use the same ``threads`` as
    the benchmark. Best-of rather than median, because a peak is a property of the machine and everything that
    lowers it (other processes, frequency ramp-up) is noise.
    """
    if n < 1 or repeats < 1:
        raise UserError(f"matmul_peak_gflops needs n >= 1 and repeats >= 1, got n={n}, repeats={repeats}")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(dtype)
    b = torch.randn(n, n, generator=generator).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    best_s = math.inf
    with _num_threads(threads), torch.inference_mode():
        torch.mm(a, b, out=out)  # warm-up: thread pool start and kernel selection
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best_s = min(best_s, time.perf_counter() - start)
    return 2.0 * n**3 / best_s / 1e9


# ----------------------------------------------------------------------------------------------------------------
# the benchmark


def benchmark_model(model: torch.nn.Module, *, name: str, settings: BenchSettings, vocab_size: int | None = None,
                    on_event: Callable[[dict], None] | None = None) -> list[dict]:
    """Time one model (see :func:`benchmark_models`); returns its rows."""
    return benchmark_models({name: model}, settings=settings, vocab_sizes={name: vocab_size},
                            on_event=on_event)["rows"]


def benchmark_models(models: Mapping[str, torch.nn.Module], *, settings: BenchSettings,
                     vocab_sizes: Mapping[str, int | None] | None = None,
                     on_event: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Time ``models`` on CPU, interleaved, for every (precision, batch size, sequence length) of ``settings``.

    Per cell every model gets ``warmup`` untimed passes, then the models take turns in rounds (A B, then B A,
    then A B ...: neither always runs second), ``round_passes`` timed passes each per round, until each has at
    least ``repeats`` passes (and ``min_seconds`` of timed time). A change of load during the cell then hits
    every model alike, and each round's medians give a paired speed-up (``bench_stats.paired_speedups``).

    Inputs are seeded random token ids of exactly ``batch x seq_len`` with a full attention mask (and zero
    ``token_type_ids`` where the model takes them), so no padding shortcut flatters a model. ``vocab_sizes``
    bounds the random ids per model (default: ``model.config.vocab_size``). The callers' models are not
    modified (train/eval mode restored; bf16 and int8 run on copies). ``on_event`` receives
    ``{"kind": "bench", "cell", "cells", **row}`` per row.

    Returns {"rows", "machine", "warnings"}. Row keys: model, precision, batch_size, seq_len, threads,
    latency_ms_p50/p25/p75/p95/min/mean/std, samples_per_s (batch_size / p50), repeats (timed passes run),
    rounds, round_ms (the model's median per round, for paired ratios), warmup, load_1m (load average as the
    cell began), parameters (of the fp32 model), size_mb (safetensors bytes for fp32/bf16, torch.save bytes
    for int8, whose packed weights safetensors cannot hold, the ONNX file for ort-*), torch_version,
    gflops_per_s (``forward_flops`` / p50; compare with ``matmul_peak_gflops``). ``machine`` is
    :func:`hardware.machine_info` plus the threads used, the load average before and after (and onnxruntime_version when
    an ort-* precision was timed); ``warnings`` lists wide spreads and a busy machine.

    Speed is only half the story: measure accuracy for every precision too (see ``prepare_for_precision``).
    """
    settings.validate()
    if not models:
        raise UserError("benchmark: give at least one model")
    vocabs = {name: _vocab_size(name, model, (vocab_sizes or {}).get(name)) for name, model in models.items()}
    for name, model in models.items():
        _check_model(name, model, settings)
    load_before = _load_average()
    threads = settings.threads or torch.get_num_threads()
    parameters = {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}
    cells = len(models) * len(settings.precisions) * len(settings.batch_sizes) * len(settings.seq_lens)
    rows: list[dict] = []
    was_training = {name: model.training for name, model in models.items()}
    try:
        with _num_threads(threads):
            for precision in settings.precisions:
                prepared = {name: prepare_for_precision(model, precision) for name, model in models.items()}
                sizes_mb = {name: _served_size_mb(served, precision) for name, (served, _) in prepared.items()}
                for batch_size in settings.batch_sizes:
                    for seq_len in settings.seq_lens:
                        load_1m = _load_average()[0]
                        timings = _time_interleaved(prepared, vocabs, batch_size, seq_len, settings)
                        for name, (latencies_s, round_ms) in timings.items():
                            row = _row(name, precision, batch_size, seq_len, threads, latencies_s, round_ms,
                                       settings, parameters[name], sizes_mb[name],
                                       getattr(models[name], "config", None), load_1m)
                            rows.append(row)
                            if on_event is not None:
                                on_event({"kind": "bench", "cell": len(rows), "cells": cells, **row})
                del prepared  # bf16/int8 copies can be as large as the models: free them before the next ones
    finally:
        for name, model in models.items():
            model.train(was_training[name])
    machine = {**machine_info(), "threads": threads, "load_before": load_before, "load_after": _load_average()}
    if any(p.startswith("ort-") for p in settings.precisions):
        import onnxruntime

        machine["onnxruntime_version"] = onnxruntime.__version__
    warnings = bench_stats.spread_warnings(rows)
    busy = bench_stats.load_warning(load_before, machine["load_after"], machine["usable_cores"], threads)
    return {"rows": rows, "machine": machine, "warnings": ([busy] if busy else []) + warnings}


def _vocab_size(name: str, model: torch.nn.Module, given: int | None) -> int:
    vocab_size = given if given is not None else getattr(getattr(model, "config", None), "vocab_size", None)
    if vocab_size is None or vocab_size < 1:
        raise UserError(f"model {name!r}: vocab_size unknown ({vocab_size!r}): pass vocab_size= for a model without "
                        "a config.vocab_size")
    return int(vocab_size)


def _check_model(name: str, model: torch.nn.Module, settings: BenchSettings) -> None:
    max_positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if max_positions is not None and max(settings.seq_lens) > max_positions:
        raise UserError(f"model {name!r} accepts at most {max_positions} tokens, but seq_lens has "
                        f"{max(settings.seq_lens)}: lower --seq-lens")
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise UserError(f"model {name!r} is on {sorted(devices)}; this benchmark measures CPU inference: move it "
                        "to the CPU first")


def _load_average() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:  # not available on this platform
        return []


def _time_interleaved(prepared: Mapping[str, tuple[torch.nn.Module, ContextFactory]], vocab_sizes: Mapping[str, int],
                      batch_size: int, seq_len: int, settings: BenchSettings
                      ) -> dict[str, tuple[list[float], list[float]]]:
    """Per model: every timed pass (s) and its median per round (ms)."""
    inputs = {name: _synthetic_inputs(batch_size, seq_len, vocab_sizes[name], settings.seed,
                                      "token_type_ids" in inspect.signature(served.forward).parameters)
              for name, (served, _) in prepared.items()}
    passes = min(settings.round_passes, settings.repeats)
    min_rounds = math.ceil(settings.repeats / passes)
    latencies: dict[str, list[float]] = {name: [] for name in prepared}
    round_ms: dict[str, list[float]] = {name: [] for name in prepared}
    names = list(prepared)
    with torch.inference_mode():
        for name, (served, context) in prepared.items():
            for _ in range(settings.warmup):
                with context():
                    served(**inputs[name])
        rounds = 0
        while rounds < min_rounds or min(sum(v) for v in latencies.values()) < (settings.min_seconds or 0.0):
            for name in (names if rounds % 2 == 0 else names[::-1]):
                served, context = prepared[name]
                this_round = []
                for _ in range(passes):
                    start = time.perf_counter()
                    with context():
                        served(**inputs[name])
                    this_round.append(time.perf_counter() - start)
                latencies[name].extend(this_round)
                round_ms[name].append(float(np.median(this_round)) * 1e3)
            rounds += 1
    return {name: (latencies[name], round_ms[name]) for name in names}


def _row(name: str, precision: str, batch_size: int, seq_len: int, threads: int, latencies_s: list[float],
         round_ms: list[float], settings: BenchSettings, parameters: int, size_mb: float, config: Any,
         load_1m: float | None) -> dict:
    summary = bench_stats.latency_summary([s * 1e3 for s in latencies_s])
    p50_ms = summary["latency_ms_p50"]
    flops = forward_flops(config, batch_size, seq_len) if config is not None else math.nan
    return {
        "model": name,
        "precision": precision,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "threads": threads,
        **summary,
        "samples_per_s": batch_size / (p50_ms / 1e3),
        "repeats": len(latencies_s),
        "rounds": len(round_ms),
        "round_ms": round_ms,
        "warmup": settings.warmup,
        "load_1m": load_1m,
        "parameters": parameters,
        "size_mb": size_mb,
        "torch_version": torch.__version__,
        "gflops_per_s": flops / (p50_ms / 1e3) / 1e9,
    }


def _synthetic_inputs(batch_size: int, seq_len: int, vocab_size: int, seed: int,
                      token_types: bool) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        "input_ids": torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
    }
    if token_types:
        inputs["token_type_ids"] = torch.zeros(batch_size, seq_len, dtype=torch.long)
    return inputs


def _served_size_mb(served: Any, precision: str) -> float:
    """Bytes of what is served: the ONNX file for ORT, the state dict for PyTorch."""
    size_mb = getattr(served, "size_mb", None)  # onnx_serving.OrtClassifier
    return float(size_mb) if size_mb is not None else _state_dict_mb(served, precision)


def _state_dict_mb(model: torch.nn.Module, precision: str) -> float:
    state = model.state_dict()
    if precision == "int8":
        # Quantized Linear weights live in packed-params objects that safetensors cannot store.
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getbuffer().nbytes / 1e6
    from safetensors.torch import save as safetensors_save

    # safetensors refuses aliased tensors (tied weights); like save_pretrained, store each storage once.
    unique: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for key, tensor in state.items():
        identity = (tensor.data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if identity in seen:
            continue
        seen.add(identity)
        unique[key] = tensor.detach().contiguous()
    return len(safetensors_save(unique)) / 1e6


@contextlib.contextmanager
def _num_threads(threads: int | None):
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
