"""Tokenisation and batching: what turns the splits of a `LoadedData` into padded model batches.

Tokenised splits are cached on disk under ``cache_root()`` (shared with the teacher-logit cache), keyed by the
tokenizer, the max length and the rows; `Collator` pads each batch to its own longest row and
`LengthGroupedBatchSampler` groups rows of similar length so that dynamic padding wastes little.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .config import TrainConfig
    from .data import LoadedData


def cache_root() -> Path:
    return Path(os.environ.get("KD_CACHE_DIR", Path.home() / ".cache" / "kd_studio"))


def tokenizer_fingerprint(tokenizer) -> str:
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha1(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()).hexdigest()[:12]
    return f"{type(tokenizer).__name__}-{digest}-{int(getattr(tokenizer, 'do_lower_case', True))}"


def tokenize_splits(data: LoadedData, tokenizer, max_length: int):
    """Tokenise without padding (the collator pads each batch to its longest row), cached on disk."""
    import datasets

    return datasets.DatasetDict({split: tokenize_rows(dataset, tokenizer, max_length, data.label_names, split)
                                 for split, dataset in data.splits.items()})


def tokenize_rows(dataset, tokenizer, max_length: int, label_names: list[str], name: str):
    """One split (or the transfer rows) tokenised, cached on disk as an Arrow file that `datasets` memory-maps,
    so a tokenised split costs page cache, not resident memory."""
    # The cached file holds every column, labels included: key it by the labels and label names as well as the
    # texts (ids), or relabelled data with the same texts would train on the stale labels.
    rows_digest = hashlib.sha1("".join(dataset["example_id"]).encode())
    rows_digest.update(np.asarray(dataset["label"], dtype=np.int64).tobytes())
    rows_digest.update(json.dumps(label_names).encode())
    key = f"{tokenizer_fingerprint(tokenizer)}-{max_length}-{rows_digest.hexdigest()[:16]}"
    cache_file = cache_root() / "tokenized" / f"{key}.arrow"
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    return dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True, cache_file_name=str(cache_file), load_from_cache_file=True, desc=f"tokenising {name}",
        # Our key already names the result; without it `datasets` dill-pickles the whole tokenizer (its 30k
        # vocabulary) to fingerprint every call, which cost more than the tokenisation itself.
        new_fingerprint=hashlib.sha1(key.encode()).hexdigest()[:32],
    )


class TrainRows:
    """The training rows a loader draws from: tokenised labelled rows, then tokenised transfer rows (label -100),
    each row with its teacher logits (one float32 array, row i for row i) when there is a teacher.

    The logits are attached per row as the loader reads it, not stored as a dataset column: a column built with
    `add_column(logits.tolist())` held every logit as a Python float (~10x the array) plus an in-memory Arrow copy.
    """

    def __init__(self, parts: list[Any], teacher_logits: np.ndarray | None = None):
        self.parts = [part for part in parts if part is not None and len(part)]
        self.starts = np.cumsum([0, *(len(part) for part in self.parts)])
        if teacher_logits is not None and len(teacher_logits) != self.starts[-1]:
            raise ValueError(f"{len(teacher_logits)} teacher logit rows for {self.starts[-1]} training rows")
        self.teacher_logits = teacher_logits

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        part = int(np.searchsorted(self.starts, index, side="right")) - 1
        row = dict(self.parts[part][int(index - self.starts[part])])
        if self.teacher_logits is not None:
            row["teacher_logits"] = self.teacher_logits[index]
        return row

    def lengths(self) -> list[int]:
        """Tokens per row, in row order (what the length-grouped sampler batches by)."""
        return [len(ids) for part in self.parts for ids in part["input_ids"]]


def padded_length(longest: int, multiple: int, cap: int | None = None) -> int:
    """A batch's padded length: its longest row rounded up to ``multiple`` tokens, never past ``cap`` (the run's
    max length, which the model's position table holds) unless the longest row already is."""
    rounded = -(-longest // multiple) * multiple
    return max(longest, min(rounded, cap)) if cap else rounded


AUTO_PADDING_MULTIPLE = 16  # what "auto" pads to under bf16/fp16 autocast (config.pad_to_multiple_of)


def auto_padding_multiple(precision: str) -> int:
    """The multiple "auto" pads to for a run that trains in ``precision`` (Accelerate's names: no, bf16, fp16).

    Under bf16 the rounding was free in time (x0.99-1.03) and saved 300-470 MB of peak RSS (BENCHMARKS.md 4f, 4g);
    in fp32 it cost x1.14 time for 150-190 MB (4e), so fp32 pads to the longest row."""
    return AUTO_PADDING_MULTIPLE if precision in ("bf16", "fp16") else 1


def padding_for_run(config: TrainConfig) -> tuple[int, str]:
    """The multiple every batch of a run is padded to, and why (recorded in the run's provenance)."""
    if config.pad_to_multiple_of is not None:
        return config.pad_to_multiple_of, "asked for"
    from . import hardware

    precision = hardware.training_precision(config.mixed_precision).resolved
    multiple = auto_padding_multiple(precision)
    return multiple, f"auto: the run trains in {'fp32' if precision == 'no' else precision}"


def padding_for_fp32_pass(config: TrainConfig) -> int:
    """The multiple of the run's fp32 passes: the teacher's logits and the test scoring of the saved model run in
    fp32 whatever the training precision, so "auto" pads them as fp32 (rounding up to 16 made the teacher's fp32
    pass over 2,000 AG News rows ~12% slower here, 25-27 s against 22-24 s, and saves nothing there: BENCHMARKS.md
    10e); a multiple the user asked for applies to every pass."""
    if config.pad_to_multiple_of is not None:
        return config.pad_to_multiple_of
    return auto_padding_multiple("no")


class Collator:
    """Pads each batch to its longest row (rounded up to ``pad_to_multiple_of`` tokens, capped at ``max_length``)
    and carries `labels`, `example_id` and cached teacher logits.

    Why round: with every batch a different length, each step's activations have new shapes, and glibc's heap
    cannot reuse the blocks the last step freed, so the resident set grows over an epoch. With lengths in steps of
    16 the shapes repeat (see auto_padding_multiple for what it costs and saves per precision).
    The extra tokens are masked: outputs change only by float rounding.
    """

    model_input_names = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, tokenizer, pad_to_multiple_of: int = 1, max_length: int | None = None):
        self.tokenizer, self.pad_to_multiple_of, self.max_length = tokenizer, pad_to_multiple_of, max_length

    @classmethod
    def for_run(cls, tokenizer, config: TrainConfig) -> Collator:
        """The collator of a run's training and validation passes (in the training precision): its padding multiple
        and max length."""
        return cls(tokenizer, padding_for_run(config)[0], config.data.max_length)

    @classmethod
    def for_fp32_pass(cls, tokenizer, config: TrainConfig) -> Collator:
        """The collator of a run's fp32 passes: the teacher's logits and the saved model's test scoring."""
        return cls(tokenizer, padding_for_fp32_pass(config), config.data.max_length)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        inputs = [{k: row[k] for k in self.model_input_names if k in row} for row in rows]
        longest = max(len(row["input_ids"]) for row in inputs)
        length = padded_length(longest, self.pad_to_multiple_of, self.max_length)
        batch = dict(self.tokenizer.pad(inputs, padding="max_length", max_length=length, return_tensors="pt"))
        if "label" in rows[0]:  # prediction-only callers may pass model inputs alone
            batch["labels"] = torch.tensor([row["label"] for row in rows], dtype=torch.long)
        if "teacher_logits" in rows[0]:
            batch["teacher_logits"] = torch.from_numpy(
                np.stack([np.asarray(row["teacher_logits"], dtype=np.float32) for row in rows]))
        return batch


class LengthGroupedBatchSampler:
    """Shuffled batches of similar length, so dynamic padding wastes little compute.

    The idea of transformers' LengthGroupedSampler as a batch sampler: shuffle, cut into mega-batches, sort each by
    length, then shuffle the order of the batches. Seeded by (seed, epoch) so runs are reproducible; `set_epoch`
    is called by the training loop before each epoch.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, mega_batch_factor: int = 50):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.mega_batch_factor = mega_batch_factor
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        mega = self.batch_size * self.mega_batch_factor
        batches: list[list[int]] = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start:start + mega].tolist(), key=lambda i: -self.lengths[i])
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        for index in rng.permutation(len(batches)):
            yield batches[index]
