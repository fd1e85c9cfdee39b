"""BASELINE -- NOT PRODUCT CODE. A faithful re-implementation of the seed article's distillation loop.

This script exists only to be measured against `python -m distill_core distill`. It reproduces what made the
article's loop slow, so the product's speed-up is measured against the real thing:

- every example padded to max_length=150 (`padding="max_length"`), whatever its length;
- the teacher re-run under no_grad on every batch of every epoch (no cached teacher logits);
- an extra student forward pass per batch, under no_grad, only to score training accuracy;
- training accuracy accumulated as a mean of per-batch means (also reported exactly, alongside);
- torch DataLoader, batch 64, shuffled; Adam at a constant lr of 2e-5; 5 epochs; T=2, alpha=0.5;
  KL with reduction="batchmean" times T^2; student dropout 0.3; validation every epoch, also padded to 150.

One defect is deliberately NOT reproduced: the article turned the CE term into a float with `.item()`, so only
the KD term ever trained the student. A loss that does not train would make any accuracy comparison
meaningless, so CE stays a tensor here; it costs the same time either way. Likewise `num_labels` is taken from
the data (the article's 20 for a 4-class task is not reproduced).

The data split and the `truncate:N` student mirror distill_core.data and distill_core.models, so both sides of
the comparison train on the same examples from the same initial weights. Validation and test accuracy are
exact (correct / examples) as well as the article's mean of batch means.

Example:
    python benchmarks/seed_loop.py --teacher runs/teacher/model --student-init truncate:3 \\
        --train-csv /work/shared/data/ag_news/train.csv --test-csv /work/shared/data/ag_news/test.csv \\
        --train-samples 2000 --epochs 5 --threads 2 --out seed_loop.json
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

TRUNCATE_SPEC = re.compile(r"^truncate:(\d+)$")


class BaselineError(Exception):
    """Bad input; printed as one line by main()."""


# ----------------------------------------------------------------------------------------------------------------
# data


def read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """Texts and integer labels of a `text,label` CSV, read the way distill_core.data reads it."""
    if not path.is_file():
        raise BaselineError(f"{path} does not exist: give a CSV with columns text,label")
    frame = pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False, dtype=str)
    missing = {"text", "label"} - set(frame.columns)
    if missing:
        raise BaselineError(f"{path}: missing column(s) {sorted(missing)}; columns are {list(frame.columns)}")
    texts = frame["text"].astype(str).str.strip().tolist()
    try:
        labels = frame["label"].astype(np.int64).to_numpy()
    except ValueError:
        raise BaselineError(f"{path}: labels must be integer class ids 0..K-1") from None
    return texts, labels


def to_dataset(texts: list[str], labels: np.ndarray, num_labels: int):
    import datasets

    # A ClassLabel column, as distill_core.data builds it: train_test_split can only stratify on one.
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=[str(i) for i in range(num_labels)])})
    return datasets.Dataset.from_dict({"text": texts, "label": labels.tolist()}, features=features)


def stratified_split(dataset, fraction: float, seed: int):
    """(train, validation) with the exact call distill_core.data makes, so both sides see identical examples."""
    try:
        parts = dataset.train_test_split(test_size=fraction, seed=seed, stratify_by_column="label")
    except ValueError:  # classes too small to stratify: distill_core falls back to a seeded plain split too
        parts = dataset.train_test_split(test_size=fraction, seed=seed)
    return parts["train"], parts["test"]


def stratified_subsample(dataset, n: int | None, seed: int):
    """`n` rows chosen as distill_core.data chooses them (train_samples / eval_samples)."""
    if n is None or n >= len(dataset):
        return dataset
    try:
        return dataset.train_test_split(train_size=n, seed=seed, stratify_by_column="label")["train"]
    except ValueError:
        return dataset.shuffle(seed=seed).select(range(n))


def encode(tokenizer, texts: list[str], labels: list[int] | np.ndarray, max_length: int) -> TensorDataset:
    # The article's tokenisation: every example padded to max_length, so every batch is [64, 150].
    encoded = tokenizer(list(texts), padding="max_length", max_length=max_length, truncation=True,
                        return_tensors="pt")
    token_type_ids = encoded.get("token_type_ids", torch.zeros_like(encoded["input_ids"]))
    return TensorDataset(encoded["input_ids"], encoded["attention_mask"], token_type_ids,
                         torch.as_tensor(np.asarray(labels), dtype=torch.long))


def model_inputs(batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    input_ids, attention_mask, token_type_ids, _ = batch
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


# ----------------------------------------------------------------------------------------------------------------
# models


def load_teacher(path: str, num_labels: int):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    if not Path(path).is_dir():
        raise BaselineError(f"--teacher {path!r} is not a folder: give a save_pretrained folder (the Hub is not used)")
    config = AutoConfig.from_pretrained(path)
    is_classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if is_classifier and config.num_labels != num_labels:
        raise BaselineError(f"teacher {path} has {config.num_labels} classes but the data has {num_labels}")
    if not is_classifier:
        print(f"note: teacher {path} has no trained classification head: fine for a smoke run only",
              file=sys.stderr)
    teacher = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    return teacher.eval(), AutoTokenizer.from_pretrained(path)


def evenly_spaced_layers(total: int, keep: int) -> list[int]:
    """Same choice as distill_core.models.evenly_spaced_layers: first and last included (6 keep 3 -> [0, 2, 5])."""
    if keep == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def truncated_student(teacher, layers: int, dropout: float):
    """The teacher's embeddings, `layers` evenly spaced encoder layers, pooler and classifier, copied.

    A local copy of what distill_core.models.build_student does for `truncate:N` (the product version), kept
    here so the baseline does not depend on product code while starting from identical weights.
    """
    from transformers import AutoModelForSequenceClassification

    total = teacher.config.num_hidden_layers
    if not 1 <= layers < total:
        raise BaselineError(f"truncate:{layers}: the teacher has {total} layers; keep between 1 and {total - 1}")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = layers
    config.hidden_dropout_prob = dropout
    student = AutoModelForSequenceClassification.from_config(config)
    keep = evenly_spaced_layers(total, layers)
    teacher_state = teacher.state_dict()
    layer_key = re.compile(r"^(.*\.layer\.)(\d+)(\..*)$")
    student_state = {}
    for key in student.state_dict():
        match = layer_key.match(key)
        source = f"{match.group(1)}{keep[int(match.group(2))]}{match.group(3)}" if match else key
        student_state[key] = teacher_state[source].clone()
    student.load_state_dict(student_state)
    return student


def load_student(init: str, teacher, num_labels: int, dropout: float):
    from transformers import AutoModelForSequenceClassification

    match = TRUNCATE_SPEC.match(init)
    if match:
        return truncated_student(teacher, int(match.group(1)), dropout)
    if not Path(init).is_dir():
        raise BaselineError(f"--student-init {init!r}: give truncate:N or a save_pretrained folder")
    student = AutoModelForSequenceClassification.from_pretrained(init, num_labels=num_labels,
                                                                 hidden_dropout_prob=dropout)
    if student.config.vocab_size != teacher.config.vocab_size:
        raise BaselineError(f"student vocabulary ({student.config.vocab_size}) differs from the teacher's "
                            f"({teacher.config.vocab_size}): the seed recipe feeds both the same token ids")
    return student


# ----------------------------------------------------------------------------------------------------------------
# the loop


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
            temperature: float, alpha: float) -> torch.Tensor:
    # alpha*CE + (1-alpha)*T^2*KL(batchmean), CE kept as a tensor (the article's .item() is the one defect fixed).
    ce = F.cross_entropy(student_logits, labels)
    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                  F.softmax(teacher_logits / temperature, dim=-1), reduction="batchmean")
    return alpha * ce + (1 - alpha) * temperature**2 * kl


def evaluate(model, loader: DataLoader) -> dict[str, float]:
    model.eval()
    correct, examples, batch_means = 0, 0, []
    start = time.perf_counter()
    with torch.no_grad():
        for batch in loader:
            predictions = model(**model_inputs(batch)).logits.argmax(dim=-1)
            hits = (predictions == batch[3]).sum().item()
            correct, examples = correct + hits, examples + len(batch[3])
            batch_means.append(hits / len(batch[3]))
    return {"accuracy": correct / examples, "accuracy_batch_mean": float(np.mean(batch_means)),
            "seconds": time.perf_counter() - start, "examples": examples}


def train(teacher, student, train_set: TensorDataset, valid_loader: DataLoader, args: argparse.Namespace
          ) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.Adam(student.parameters(), lr=args.lr)  # constant lr, no schedule (seed recipe)
    epochs: list[dict[str, Any]] = []
    step = 0
    for epoch in range(1, args.epochs + 1):
        student.train()
        running_loss, batch_accuracies, correct, examples = 0.0, [], 0, 0
        teacher_seconds = accuracy_seconds = 0.0  # timed apart for BENCHMARKS.md's phase table (CPU ops are sync)
        start = time.perf_counter()
        for batch in tqdm(train_loader, desc=f"epoch {epoch}", leave=False, file=sys.stderr):
            inputs, labels = model_inputs(batch), batch[3]
            # teacher on every batch of every epoch (seed recipe: nothing cached)
            teacher_start = time.perf_counter()
            with torch.no_grad():
                teacher_logits = teacher(**inputs).logits
            teacher_seconds += time.perf_counter() - teacher_start
            # forward backward update
            student_logits = student(**inputs).logits
            loss = kd_loss(student_logits, teacher_logits, labels, temperature=args.temperature, alpha=args.alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            # the article's extra forward pass, only to score training accuracy (student still in train mode)
            accuracy_start = time.perf_counter()
            with torch.no_grad():
                predictions = student(**inputs).logits.argmax(dim=-1)
            accuracy_seconds += time.perf_counter() - accuracy_start
            hits = (predictions == labels).sum().item()
            batch_accuracies.append(hits / len(labels))
            correct, examples = correct + hits, examples + len(labels)
            step += 1
            if args.max_steps is not None and step >= args.max_steps:
                break
        train_seconds = time.perf_counter() - start
        valid = evaluate(student, valid_loader)
        row = {
            "epoch": epoch,
            "steps": len(batch_accuracies),
            "train_examples": examples,
            "seconds": train_seconds + valid["seconds"],
            "train_seconds": train_seconds,
            "teacher_seconds": teacher_seconds,
            "accuracy_forward_seconds": accuracy_seconds,
            "valid_seconds": valid["seconds"],
            "samples_per_s": examples / train_seconds,
            "training_loss": running_loss / len(batch_accuracies),
            "training_accuracy": float(np.mean(batch_accuracies)),  # the article's mean of batch means
            "training_accuracy_exact": correct / examples,
            "valid_accuracy": valid["accuracy"],
            "valid_accuracy_batch_mean": valid["accuracy_batch_mean"],
        }
        epochs.append(row)
        print(f"epoch {epoch}: loss {row['training_loss']:.4f} train_acc {row['training_accuracy']:.4f} "
              f"valid_acc {row['valid_accuracy']:.4f} ({row['seconds']:.1f} s, {row['samples_per_s']:.1f} samples/s)",
              file=sys.stderr)
        if args.max_steps is not None and step >= args.max_steps:
            break
    return epochs


# ----------------------------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="BASELINE: the seed article's distillation loop, for comparison")
    parser.add_argument("--teacher", required=True, help="save_pretrained folder of the teacher classifier")
    parser.add_argument("--student-init", required=True, help="truncate:N (N of the teacher's layers) or a folder")
    parser.add_argument("--train-csv", required=True, type=Path, help="CSV with columns text,label")
    parser.add_argument("--test-csv", type=Path, help="CSV scored once at the end (exact accuracy)")
    parser.add_argument("--valid-fraction", type=float, default=0.2)
    parser.add_argument("--train-samples", type=int, help="stratified subsample of train after the split")
    parser.add_argument("--eval-samples", type=int, help="stratified subsample of validation and test (smoke runs)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--dropout", type=float, default=0.3, help="student hidden dropout")
    parser.add_argument("--max-length", type=int, default=150)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (smoke runs)")
    parser.add_argument("--save-dir", type=Path, help="save the trained student here (save_pretrained)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "max_length", "threads", "max_steps", "train_samples", "eval_samples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not 0 < args.valid_fraction < 1:
        parser.error(f"--valid-fraction must be between 0 and 1, got {args.valid_fraction}")
    return args


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)  # a reader never sees half a file


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import transformers

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    texts, labels = read_table(args.train_csv)
    test = read_table(args.test_csv) if args.test_csv else None
    num_labels = int(max(labels.max(), test[1].max() if test else 0)) + 1
    train_split, valid_split = stratified_split(to_dataset(texts, labels, num_labels), args.valid_fraction, args.seed)
    train_split = stratified_subsample(train_split, args.train_samples, args.seed)
    valid_split = stratified_subsample(valid_split, args.eval_samples, args.seed)

    teacher, tokenizer = load_teacher(args.teacher, num_labels)
    student = load_student(args.student_init, teacher, num_labels, args.dropout)
    for limit, model in (("teacher", teacher), ("student", student)):
        if args.max_length > model.config.max_position_embeddings:
            raise BaselineError(f"--max-length {args.max_length} exceeds the {limit}'s "
                                f"{model.config.max_position_embeddings} positions")

    # end-to-end clock: tokenisation + every epoch (train and validation); model loading and the test are outside
    start = time.perf_counter()
    train_set = encode(tokenizer, train_split["text"], train_split["label"], args.max_length)
    valid_set = encode(tokenizer, valid_split["text"], valid_split["label"], args.max_length)
    tokenising_seconds = time.perf_counter() - start
    valid_loader = DataLoader(valid_set, batch_size=args.batch_size)
    epochs = train(teacher, student, train_set, valid_loader, args)
    end_to_end_seconds = time.perf_counter() - start
    trained_examples = sum(row["train_examples"] for row in epochs)
    save_seconds = None
    if args.save_dir is not None:
        save_start = time.perf_counter()
        student.save_pretrained(args.save_dir)
        tokenizer.save_pretrained(args.save_dir)
        save_seconds = time.perf_counter() - save_start

    result: dict[str, Any] = {
        "recipe": "seed-article baseline (benchmarks/seed_loop.py): padded to max_length, teacher every batch, "
                  "extra accuracy forward, Adam constant lr; CE .item() defect NOT reproduced",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch_version": torch.__version__, "transformers_version": transformers.__version__,
                    "python_version": platform.python_version()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "num_labels": num_labels,
        "n_train": len(train_set),
        "n_valid": len(valid_set),
        "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
        "student_parameters": sum(p.numel() for p in student.parameters()),
        "student_layers": student.config.num_hidden_layers,
        "epochs": epochs,
        "end_to_end_seconds": end_to_end_seconds,
        "end_to_end_covers": "tokenisation + all epochs (training and validation); excludes model loading and test",
        "end_to_end_samples_per_s": trained_examples / end_to_end_seconds,
        "valid_accuracy": epochs[-1]["valid_accuracy"],
        "save_seconds": save_seconds,
        "phases_s": phases(epochs, tokenising_seconds, save_seconds),
    }
    if test is not None:
        test_split = stratified_subsample(to_dataset(*test, num_labels), args.eval_samples, args.seed)
        test_set = encode(tokenizer, test_split["text"], test_split["label"], args.max_length)
        scored = evaluate(student, DataLoader(test_set, batch_size=args.batch_size))
        result.update(n_test=scored["examples"], test_accuracy=scored["accuracy"],
                      test_accuracy_batch_mean=scored["accuracy_batch_mean"], test_seconds=scored["seconds"])
    return result


def phases(epochs: list[dict[str, Any]], tokenising_s: float, save_s: float | None) -> dict[str, float]:
    """Seconds per phase under KD Studio's phase names, so BENCHMARKS.md sets the loops side by side."""
    teacher = sum(e["teacher_seconds"] for e in epochs)
    accuracy = sum(e["accuracy_forward_seconds"] for e in epochs)
    spent = {"tokenising": tokenising_s, "teacher_logits": teacher,
             "training": sum(e["train_seconds"] for e in epochs) - teacher - accuracy,
             "extra_accuracy_forward": accuracy, "validation": sum(e["valid_seconds"] for e in epochs),
             "saving": save_s or 0.0}
    return {name: round(seconds, 1) for name, seconds in spent.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except BaselineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json_atomic(args.out, result)
    summary = f"end to end {result['end_to_end_seconds']:.1f} s ({result['end_to_end_samples_per_s']:.1f} samples/s)"
    if "test_accuracy" in result:
        summary += f", test accuracy {result['test_accuracy']:.4f} on {result['n_test']} examples"
    print(f"{summary}; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
