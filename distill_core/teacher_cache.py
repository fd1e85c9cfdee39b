"""Teacher logits cached per example, so that a teacher runs once per example, not once per batch of every epoch.

One file per teacher fingerprint (models.model_fingerprint: its weights), max_length and the precision of the pass,
since all three change the logits: ``cache_root()/teacher_logits/{teacher_key}-len{max_length}[-bf16].npz`` with
arrays ``ids`` (example ids, see data.py) and ``logits`` (float32, one row per id). Training fills it
(`logits_for`); the Compare page reads it (`lookup`) rather than running the teacher over the test split again.

The pass over the training rows (the KD targets) runs in bf16 autocast where the run trains in bf16 on a CPU with
native bf16 (`pass_precision`): 12-13 s against 22-27 s in fp32 over 2,000 AG News rows here, the student's
accuracy unchanged (BENCHMARKS.md 10e). The test split's pass, whose logits give the teacher accuracy a run
reports, is fp32 in every run. How rows are batched and padded (eval batch size, pad_to_multiple_of) is not in the
key: masked padding changes a logit only by float rounding.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .batching import Collator, cache_root

if TYPE_CHECKING:
    from .config import TrainConfig
    from .train import Prepared


FP32 = "fp32"


def pass_precision(config: TrainConfig) -> str:
    """The precision of the teacher's pass over a run's training rows: "bf16" where the run trains in bf16 on a CPU
    with native bf16 (where bf16 is emulated, it would be slower than fp32; on a CUDA machine the pass runs on the
    CPU), else "fp32"."""
    from . import hardware

    machine = hardware.detect()
    trains_in = hardware.resolve_precision(config.mixed_precision, machine).resolved
    return "bf16" if trains_in == "bf16" and machine.device == "cpu" and machine.native_cpu_bf16 else FP32


def cache_file(teacher_key: str, max_length: int, precision: str = FP32) -> Path:
    suffix = "" if precision == FP32 else f"-{precision}"
    return cache_root() / "teacher_logits" / f"{teacher_key}-len{max_length}{suffix}.npz"


def load(teacher_key: str, max_length: int, precision: str = FP32) -> dict[str, np.ndarray]:
    """Every cached row of this teacher at this max_length and precision, by example id ({} without a file)."""
    path = cache_file(teacher_key, max_length, precision)
    if not path.is_file():
        return {}
    with np.load(path) as stored:
        return dict(zip(stored["ids"].tolist(), stored["logits"], strict=True))


def save(teacher_key: str, max_length: int, logits: dict[str, np.ndarray], precision: str = FP32) -> None:
    """Replace the cache file by ``logits`` (so pass what `load` gave plus the new rows).

    Written to a temporary file named by process id and renamed: runs sharing a teacher may save at once, and
    a reader sees one whole file or the other, never a torn one.
    """
    path = cache_file(teacher_key, max_length, precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, ids=np.array(list(logits)), logits=np.stack(list(logits.values())).astype(np.float32))
    os.replace(tmp, path)


def lookup(teacher_key: str, ids: Sequence[str], max_length: int, precision: str = FP32) -> np.ndarray | None:
    """The cached logits of ``ids`` in that order (float32, [len(ids), classes]), or None unless all are cached."""
    cached = load(teacher_key, max_length, precision)
    if len(ids) == 0 or not all(i in cached for i in ids):
        return None
    return np.stack([cached[i] for i in ids]).astype(np.float32)


def logits_for(prepared: Prepared, split: str, on_event: Callable[[dict[str, Any]], None] = lambda _: None,
               precision: str = FP32) -> np.ndarray:
    """Teacher logits for every row of a split: from the cache where present, computed (once) where not.

    With ``config.teacher_cache`` off the cache is neither read nor written.
    """
    return _logits_of_rows(prepared, prepared.data.splits[split], split, on_event, precision=precision)


def training_logits(prepared: Prepared, on_event: Callable[[dict[str, Any]], None] = lambda _: None) -> np.ndarray:
    """Teacher logits of the training rows: the train split's, then the transfer rows' (`Prepared.transfer`), in
    one teacher pass and one "teacher_logits" phase that counts both."""
    train = prepared.data.splits["train"]
    transfer = prepared.transfer.rows if prepared.transfer is not None else None
    precision = pass_precision(prepared.config)
    if transfer is None or len(transfer) == 0:
        return logits_for(prepared, "train", on_event, precision)
    import datasets

    # Only the columns the teacher pass reads: the two label columns differ in type (class ids vs -100).
    both = datasets.concatenate_datasets([part.select_columns(["example_id", "text"]) for part in (train, transfer)])
    return _logits_of_rows(prepared, both, "train", on_event, words="train and transfer", precision=precision)


def _logits_of_rows(prepared: Prepared, dataset, split: str, on_event: Callable[[dict[str, Any]], None],
                    words: str | None = None, precision: str = FP32) -> np.ndarray:
    ids = dataset["example_id"]
    key, max_length, use_cache = prepared.teacher_key, prepared.config.data.max_length, prepared.config.teacher_cache
    assert key is not None, "teacher logits need a teacher: prepare sets teacher_key whenever it loads one"
    cached = load(key, max_length, precision) if use_cache else {}
    missing = sorted({i for i in ids if i not in cached})
    if missing:
        # The training rows' pass is its own phase; the test split's belongs to the test evaluation.
        phase_id = {"id": "teacher_logits", "total": len(missing)} if split == "train" else {}
        on_event({"kind": "phase", **phase_id, "phase": f"teacher logits for {len(missing)} {words or split} examples"})
        cached.update(_compute(prepared, dataset, set(missing), split, on_event, precision))
        if use_cache:
            save(key, max_length, cached, precision)
    return np.stack([cached[i] for i in ids]).astype(np.float32)


def release_teacher(prepared: Prepared) -> bool:
    """Free the teacher's weights once the training rows' logits are cached, when training needs nothing else of
    it (no layer terms): the run then holds one model, not two. `teacher_for` loads it again should the test
    split's logits be missing from the cache. Returns whether it was released."""
    from .objective import needs_teacher_forward

    if prepared.teacher is None or needs_teacher_forward(prepared.config):
        return False
    import gc

    prepared.teacher = None
    gc.collect()
    return True


def teacher_for(prepared: Prepared):
    """The teacher, loaded again (eval mode) if `release_teacher` freed it."""
    if prepared.teacher is None:
        from . import models

        assert prepared.config.teacher, "teacher logits need a teacher"
        prepared.teacher, _ = models.load_classifier(prepared.config.teacher, prepared.data.label_names,
                                                     require_trained=True)
        prepared.teacher.eval()
    return prepared.teacher


def _compute(prepared: Prepared, dataset, wanted: set[str], split: str, on_event, precision: str
             ) -> dict[str, np.ndarray]:
    """One teacher pass over the rows whose id is in ``wanted``, tokenised with the teacher's own tokenizer, in
    ``precision`` (bf16: under CPU autocast, padded as the run's bf16 passes are)."""
    import contextlib

    import torch

    from .evaluate import predict_logits

    subset = dataset.filter(lambda row: row["example_id"] in wanted)
    # Duplicated texts share an id: compute each id once.
    first_rows = list({eid: i for i, eid in reversed(list(enumerate(subset["example_id"])))}.values())
    subset = subset.select(sorted(first_rows))
    tokenized = subset.map(lambda b: prepared.teacher_tokenizer(b["text"], truncation=True,
                                                                 max_length=prepared.config.data.max_length),
                           batched=True)

    def progress(done: int, total: int) -> None:
        on_event({"kind": "teacher_progress", "split": split, "done": done, "total": total})

    bf16 = precision == "bf16"
    collate = (Collator.for_run if bf16 else Collator.for_fp32_pass)(prepared.teacher_tokenizer, prepared.config)
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        logits = predict_logits(teacher_for(prepared), tokenized, collate,
                                batch_size=prepared.config.eval_batch_size, on_progress=progress)
    return dict(zip(tokenized["example_id"], logits, strict=True))
