"""Using trained models: load once for inference, predict texts, evaluate a spec on data, benchmark specs.

The Playground, `evaluate` and `benchmark` share these functions, and every precision goes through
`precision.prepare_for_precision`, so the precision that was measured is exactly the one that is served and scored.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import DataConfig
from .errors import UserError

EventHandler = Callable[[dict[str, Any]], None]


@dataclass
class InferenceModel:
    spec: str
    precision: str
    model: Any                  # eval mode, never trained in place (shared by every visitor of the app); for
                                # ort-* an onnx_serving.OrtClassifier, called the same way
    tokenizer: Any
    context: Any                # context-manager factory of the precision
    label_names: list[str]
    parameters: int
    size_mb: float
    max_length: int = 150


def load_for_inference(spec: str, precision: str = "fp32", label_names: list[str] | None = None
                       ) -> InferenceModel:
    """A trained classifier ready to serve. Derived specs (truncate:/config:) are recipes, not models."""
    from transformers import AutoConfig

    from . import models
    from .precision import prepare_for_precision
    from .specs import parse_spec

    parsed = parse_spec(spec)
    if parsed.kind in ("truncate", "config"):
        raise UserError(f"{spec!r} is a student recipe: train it first and use its run folder (runs/NAME)")
    config = AutoConfig.from_pretrained(models._source(parsed), trust_remote_code=False)
    if not models.is_classifier(config):
        raise UserError(f"{spec!r} has no trained classification head: fine-tune or distil it first")
    names = label_names or [str(config.id2label[i]) for i in range(config.num_labels)]
    model, tokenizer = models.load_classifier(spec, names, require_trained=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    # ORT caches its export by the weights' fingerprint: the safetensors files' hash, cheaper than the state dict's.
    fingerprint = models.model_fingerprint(model, spec) if precision.startswith("ort-") else None
    served, context = prepare_for_precision(model, precision, fingerprint=fingerprint)
    return InferenceModel(spec=spec, precision=precision, model=served, tokenizer=tokenizer, context=context,
                          label_names=names, parameters=models.parameter_count(model),
                          size_mb=models.size_on_disk_mb(model))


def predict_texts(loaded: InferenceModel, texts: Sequence[str]) -> dict[str, Any]:
    """Logits for a few texts and the wall time of the forward pass (tokenisation included)."""
    import torch

    texts = [str(t) for t in texts]
    if not texts or any(not t.strip() for t in texts):
        raise UserError("enter some text to classify")
    start = time.perf_counter()
    encoded = loaded.tokenizer(texts, truncation=True, max_length=loaded.max_length, padding=True,
                               return_tensors="pt")
    with torch.inference_mode(), loaded.context():
        logits = loaded.model(**encoded).logits.float().numpy()
    return {"logits": logits, "latency_ms": (time.perf_counter() - start) * 1000.0,
            "label_names": loaded.label_names}


def evaluate_spec(spec: str, data_cfg: DataConfig, *, split: str = "test", reference: str | None = None,
                  seed: int = 42, precision: str = "fp32", batch_size: int = 128,
                  on_event: EventHandler | None = None) -> dict[str, Any]:
    """Metrics of a trained model on a split of a data source (and agreement with a reference model)."""
    from .batching import Collator, tokenize_splits
    from .data import load_data
    from .evaluate import classification_metrics, predict_logits, softmax_np

    on_event = on_event or (lambda _: None)
    data = load_data(data_cfg, seed)
    labels = np.asarray(data.splits[split]["label"])

    def logits_of(model_spec: str) -> np.ndarray:
        loaded = load_for_inference(model_spec, precision, label_names=data.label_names)
        loaded.max_length = data_cfg.max_length
        tokenized = tokenize_splits(data, loaded.tokenizer, data_cfg.max_length)[split]
        on_event({"kind": "phase", "phase": f"predicting {len(tokenized)} {split} rows with {model_spec}"})
        with loaded.context():
            return predict_logits(loaded.model, tokenized, Collator(loaded.tokenizer), batch_size=batch_size,
                                  on_progress=lambda d, t: on_event({"kind": "predict_progress", "done": d,
                                                                     "total": t}))

    start = time.perf_counter()
    logits = logits_of(spec)
    seconds = time.perf_counter() - start
    reference_preds = logits_of(reference).argmax(-1) if reference else None
    report = classification_metrics(labels, logits.argmax(-1), data.label_names, probs=softmax_np(logits),
                                    reference_preds=reference_preds)
    report.update(spec=spec, reference=reference, split=split, precision=precision, data=data.description,
                  seconds=round(seconds, 2), samples_per_s=round(len(labels) / seconds, 1))
    return report


def benchmark_specs(specs: Sequence[str], *, batch_sizes: Sequence[int], seq_lens: Sequence[int],
                    precisions: Sequence[str], threads: int | None = None, warmup: int = 3, repeats: int = 20,
                    on_event: EventHandler | None = None) -> list[dict[str, Any]]:
    """Latency/throughput rows for each model spec (see :func:`measure_specs`)."""
    return measure_specs(specs, batch_sizes=batch_sizes, seq_lens=seq_lens, precisions=precisions,
                         threads=threads, warmup=warmup, repeats=repeats, on_event=on_event)["rows"]


def measure_specs(specs: Sequence[str], *, batch_sizes: Sequence[int], seq_lens: Sequence[int],
                  precisions: Sequence[str], threads: int | None = None, warmup: int = 3, repeats: int = 20,
                  baseline: str | None = None, on_event: EventHandler | None = None) -> dict[str, Any]:
    """The benchmark of the CLI and the Benchmark page: every model loaded first, then timed interleaved.

    Weights do not change speed, so untrained heads are fine. Returns ``bench.benchmark_models``' result
    (rows, machine, warnings) plus ``baseline`` (default: the largest model) and ``speedups`` over it
    (``bench_stats.paired_speedups``) and the ``settings`` measured.
    """
    from transformers import AutoModelForSequenceClassification

    from . import bench_stats, models
    from .bench import BenchSettings, benchmark_models
    from .specs import parse_spec  # imported by name: `specs` is this function's list of model specs

    settings = BenchSettings(batch_sizes=tuple(batch_sizes), seq_lens=tuple(seq_lens),
                             precisions=tuple(precisions), warmup=warmup, repeats=repeats, threads=threads)
    settings.validate()
    specs = list(dict.fromkeys(specs))  # a model named twice is measured once
    if baseline is not None and baseline not in specs:
        raise UserError(f"the baseline {baseline!r} is not one of the models measured: add it or choose another")
    loaded = {}
    for spec in specs:  # all models first: no load of one falls inside the timing of another
        parsed = parse_spec(spec)
        if parsed.kind in ("truncate", "config"):
            raise UserError(f"{spec!r} needs a teacher to be built: benchmark a trained run folder instead")
        model = models._from_pretrained(AutoModelForSequenceClassification, models._source(parsed), spec,
                                        use_safetensors=True)
        for seq_len in seq_lens:
            models.check_max_length(model, seq_len, spec)
        loaded[spec] = model
    total_cells = len(specs) * len(batch_sizes) * len(seq_lens) * len(precisions)

    def relay(event: dict[str, Any]) -> None:
        if on_event:
            on_event({**event, "total_cells": total_cells})

    result = benchmark_models(loaded, settings=settings, on_event=relay)
    baseline = baseline or bench_stats.default_baseline(result["rows"])
    return {**result, "baseline": baseline, "speedups": bench_stats.paired_speedups(result["rows"], baseline),
            "settings": {"batch_sizes": list(batch_sizes), "seq_lens": list(seq_lens),
                         "precisions": list(precisions), "threads": threads, "warmup": warmup,
                         "repeats": repeats}}
