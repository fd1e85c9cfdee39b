"""Serving through ONNX Runtime: export a sequence classifier to ONNX once, run it at fp32 or dynamic int8.

Why a second runtime: at batch 1 a PyTorch eager forward of a small BERT spends most of its time in framework
overhead (Python dispatch, one kernel launch per op), which ONNX Runtime removes by running a fused, pre-planned
graph: issue 11 measured 6.6-8.2 ms vs 17 ms p50 for a 3-layer MiniLM student at batch 1 x 50 tokens (2 threads,
quiet 2-core machine), and ORT kept its latency beside a training worker where PyTorch's OpenMP threads collapsed.

How it plugs in: `precision.prepare_for_precision(model, "ort-fp32" | "ort-int8")` returns an
:class:`OrtClassifier`, a callable that takes the same keyword inputs as the PyTorch model and returns an object
with ``.logits`` (a float32 torch tensor), so the benchmark, `evaluate`, the Playground and `export` use it
exactly as they use the PyTorch precisions.

Export path: ``torch.onnx.export(..., dynamo=False)``, the TorchScript tracer. Optimum was the first choice, but
its ONNX exporter now lives in ``optimum-onnx``, whose every release requires ``transformers<4.58`` (the project
pins 5.24), so it cannot be installed without changing the pins. Of torch's two exporters, the torch.export-based
one (``dynamo=True``) exported the tiny 2-layer test BERT in 71 s against 12 s for the tracer on this (busy)
machine, with the same logits (max difference 1e-8) on batches of other shapes and with padding; a BERT
classifier has no data-dependent control flow, which is the one thing a tracer cannot capture. The tracer is
deprecated in torch 2.9+, so its DeprecationWarning is silenced around the call only.
"""
from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ORT_PRECISIONS", "OnnxFiles", "OrtClassifier", "ensure_onnx", "load_onnx", "prepare_ort"]

ORT_PRECISIONS: tuple[str, ...] = ("ort-fp32", "ort-int8")
OPSET = 17  # the first opset with a LayerNormalization op; ORT 1.31 runs up to 23
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
# Dynamic int8 settings (onnxruntime.quantization.quantize_dynamic):
# - per_channel=True: one scale per output column of each weight matrix. Per-tensor scales let a few large
#   columns crush the resolution of all the others; BERT's FFN weights have such outliers.
# - reduce_range=False: 7-bit weights only help CPUs without VNNI (AVX2-only), where the u8 x s8 multiply-add can
#   saturate; the machines this runs on have AVX512-VNNI/AMX, and 7 bits cost accuracy everywhere.
# - weight_type QInt8: ORT's default for dynamic quantization; activations are quantized to uint8 per batch.
# - MatMul and Gather only: the Linear layers (as torch's dynamic int8 does) and the embedding tables (which
#   quarters their size and costs little: a lookup, not a matmul). Attention-score matmuls between two
#   activations are left in fp32 by quantize_dynamic.
INT8_OPTIONS: dict[str, Any] = {"per_channel": True, "reduce_range": False,
                                "op_types_to_quantize": ["MatMul", "Gather"]}
# ORT's intra-op pool spins while waiting for work by default: the lowest latency on an idle machine, but beside
# training processes the spinning threads take the cores they need (and they theirs). Measured beside five training
# and benchmark processes (load 26-28, 2 cores), one MiniLM-L6 prediction p50: 153 ms off vs 173 ms on (1 thread),
# 328 vs 362 ms (2 threads).
ALLOW_SPINNING = False


@dataclass(frozen=True)
class OnnxFiles:
    """The cached ONNX files of one model and what producing them cost in this call."""
    folder: Path
    fp32: Path
    int8: Path | None
    export_s: float  # seconds spent exporting/quantising now; 0.0 when everything came from the cache


def cache_folder(model: Any, fingerprint: str) -> Path:
    """Where the ONNX files of ``model`` live: under the KD cache, keyed by the weights' fingerprint and by
    everything else that changes the exported graph (model class, torch version, opset)."""
    import torch

    from .batching import cache_root

    key = f"{fingerprint}|{type(model).__name__}|torch-{torch.__version__}|opset-{OPSET}"
    return cache_root() / "onnx" / hashlib.sha256(key.encode()).hexdigest()[:24]


def ensure_onnx(model: Any, *, fingerprint: str | None = None, int8: bool = False) -> OnnxFiles:
    """Export ``model`` (a transformers sequence classifier) to ONNX unless the cache already holds it, and
    quantize it to dynamic int8 when ``int8``. ``fingerprint`` identifies the weights (``models.model_fingerprint``;
    default: a hash of the state dict)."""
    from . import models

    started = time.perf_counter()
    folder = cache_folder(model, fingerprint or models.model_fingerprint(model, ""))
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / FP32_FILE
    spent = False
    if not fp32.is_file():
        _atomic(fp32, lambda tmp: export_onnx(model, tmp))
        spent = True
    int8_path = folder / INT8_FILE if int8 else None
    if int8_path is not None and not int8_path.is_file():
        _atomic(int8_path, lambda tmp: quantize_int8(fp32, tmp))
        spent = True
    return OnnxFiles(folder, fp32, int8_path, time.perf_counter() - started if spent else 0.0)


def _atomic(path: Path, write: Any) -> None:
    """Write through a temp file renamed into place: a second process exporting the same model at the same time
    writes the same bytes, and a reader never sees half a file."""
    tmp = path.with_name(f".{path.stem}-{os.getpid()}.tmp.onnx")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(model: Any, path: Path) -> None:
    """Trace ``model`` into an ONNX graph with dynamic batch and sequence axes, inputs as the model takes them."""
    import inspect

    import torch

    names = [n for n in INPUT_NAMES if n == "input_ids" or n in inspect.signature(model.forward).parameters]

    class LogitsOnly(torch.nn.Module):  # named inputs in a fixed order, one output: the logits
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True))).logits

    # One row padded: with an all-ones mask transformers may drop the mask from the traced graph.
    dummy = {"input_ids": torch.arange(16).reshape(2, 8) % int(model.config.vocab_size),
             "attention_mask": torch.tensor([[1] * 8, [1] * 5 + [0] * 3]),
             "token_type_ids": torch.zeros(2, 8, dtype=torch.long)}
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # the tracer's deprecation (see above)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # sdpa's shape checks, constant here
            warnings.filterwarnings("ignore", message=r".*aten::index.*")  # indices here are never negative
            torch.onnx.export(LogitsOnly(), tuple(dummy[n] for n in names), str(path), dynamo=False,
                              input_names=names, output_names=["logits"], opset_version=OPSET,
                              dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names},
                                            "logits": {0: "batch"}})
    finally:
        model.train(was_training)


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of an fp32 ONNX file (see INT8_OPTIONS for the settings and why)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs "consider pre-processing" on the root logger on every call; that step (symbolic shape
    # inference) matters for static quantization of convolution nets, not for the MatMul/Gather of a BERT.
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, **INT8_OPTIONS)
    finally:
        logging.disable(logging.NOTSET)


def session_options(threads: int) -> Any:
    """ORT settings: ``threads`` intra-op threads (the calling thread counts as one), one inter-op thread (a
    classifier's graph is a chain), every graph optimization (fusions of attention, LayerNorm and GELU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if ALLOW_SPINNING else "0")
    options.log_severity_level = 3  # errors only: ORT warns about initializers it folded, which is no news
    return options


class OrtClassifier:
    """An ONNX Runtime session that stands in for a transformers sequence classifier.

    ``model(input_ids=..., attention_mask=..., token_type_ids=...)`` (torch tensors or numpy arrays) returns an
    object with ``.logits``, a float32 torch tensor. The thread count follows ``torch.get_num_threads()`` at call
    time, as a PyTorch forward does, so the benchmark's and the Playground's thread settings apply to both
    runtimes alike; one session is kept per thread count (creating one takes a fraction of a second, and the
    benchmark's warm-up passes absorb it). ``eval``/``train``/``training`` exist for the callers that restore a
    model's mode."""

    training = False
    device = "cpu"

    def __init__(self, path: Path, config: Any, *, precision: str, export_s: float = 0.0) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.config = config
        self.precision = precision
        self.export_s = export_s
        self.size_mb = self.path.stat().st_size / 1e6
        self._sessions: dict[int, Any] = {}
        self._ort = ort
        self.input_names = [i.name for i in self._session(1).get_inputs()]

    def _session(self, threads: int) -> Any:
        if threads not in self._sessions:
            self._sessions[threads] = self._ort.InferenceSession(
                str(self.path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])
        return self._sessions[threads]

    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> Any:
        """Logits of one batch; ``token_type_ids`` is ignored by graphs that do not take it (DistilBERT)."""
        import torch
        from transformers.modeling_outputs import SequenceClassifierOutput

        ids = _int64(input_ids)
        given = {"input_ids": ids,
                 "attention_mask": _int64(attention_mask) if attention_mask is not None else np.ones_like(ids),
                 "token_type_ids": _int64(token_type_ids) if token_type_ids is not None else np.zeros_like(ids)}
        feed = {name: given[name] for name in self.input_names}
        (logits,) = self._session(torch.get_num_threads()).run(["logits"], feed)
        return SequenceClassifierOutput(logits=torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)))

    __call__ = forward

    def eval(self) -> OrtClassifier:
        return self

    def train(self, mode: bool = True) -> OrtClassifier:
        return self  # an inference graph has no training mode

    def parameters(self) -> Any:
        return iter(())  # weights live in the ONNX file, not in torch


def _int64(values: Any) -> np.ndarray:
    array = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    return array.astype(np.int64, copy=False)


def prepare_ort(model: Any, precision: str, *, fingerprint: str | None = None) -> OrtClassifier:
    """``model`` exported (or taken from the cache) and served by ONNX Runtime at ``precision``."""
    files = ensure_onnx(model, fingerprint=fingerprint, int8=precision == "ort-int8")
    path = files.int8 if precision == "ort-int8" and files.int8 is not None else files.fp32
    return OrtClassifier(path, model.config, precision=precision, export_s=files.export_s)


def load_onnx(folder: str | Path, precision: str = "ort-fp32") -> OrtClassifier:
    """The ``model.onnx`` of an exported folder (`export --precision ort-*`), with its ``config.json``."""
    from transformers import AutoConfig

    folder = Path(folder)
    return OrtClassifier(folder / FP32_FILE, AutoConfig.from_pretrained(folder, trust_remote_code=False),
                         precision=precision)
