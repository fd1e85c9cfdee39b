"""One Accelerate training loop for fine-tuning (no teacher, alpha=1) and distillation.

Design choices that differ from the seed recipe, and why:
- teacher logits are computed once per example and cached by (teacher weights, example id, max length): the seed
  re-ran the teacher on every batch of every epoch, which costs a teacher forward per student step;
- batches are padded to their own longest row and grouped by length, not padded to 150 tokens;
- training accuracy comes from the training forward pass (no extra student forward) and every metric is exact over
  all examples (sums of counts, not a mean of batch means).
Only the main process writes to the run store. Progress leaves as events (`on_event(dict)`), never prints.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import runs
from .config import TrainConfig, config_to_dict
from .data import Collator, LengthGroupedBatchSampler, LoadedData, cache_root, load_data, tokenize_splits
from .errors import UserError

EventHandler = Callable[[dict[str, Any]], None]


def _no_event(_: dict[str, Any]) -> None:
    return None


@dataclass
class Prepared:
    """Everything a run needs, loaded and checked before any run folder is created."""
    config: TrainConfig
    data: LoadedData
    student: Any
    tokenizer: Any
    teacher: Any = None
    teacher_tokenizer: Any = None
    teacher_key: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# preparation: every check that can fail on bad input happens here, before a run folder exists

def prepare(config: TrainConfig, on_event: EventHandler = _no_event) -> Prepared:
    from transformers import set_seed

    from . import models

    config.validate()
    on_event({"kind": "phase", "phase": "loading data"})
    data = load_data(config.data, config.seed)
    set_seed(config.seed)  # the classifier head of a base model is initialised here: seed it
    teacher = teacher_tokenizer = teacher_key = None
    if config.teacher:
        on_event({"kind": "phase", "phase": f"loading teacher {config.teacher}"})
        teacher, teacher_tokenizer = models.load_classifier(config.teacher, data.label_names,
                                                            require_trained=config.mode == "distill")
        models.check_max_length(teacher, config.data.max_length, config.teacher)
        teacher.eval()
        teacher_key = models.model_fingerprint(teacher, config.teacher)
    on_event({"kind": "phase", "phase": f"building student {config.student}"})
    if models.is_derived_spec(config.student):
        student = models.build_student(config.student, teacher, data.label_names, dropout=config.dropout)
        tokenizer = teacher_tokenizer
    else:
        student, tokenizer = models.load_classifier(config.student, data.label_names, dropout=config.dropout)
    models.check_max_length(student, config.data.max_length, config.student)
    if teacher_tokenizer is not None and tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        # Not an error: teacher logits are cached per example and tokenised with the teacher's own tokenizer.
        on_event({"kind": "note", "message": "student and teacher use different vocabularies"})
    notes = {"student": models.describe(student), "student_parameters": models.parameter_count(student),
             "student_size_mb": round(models.size_on_disk_mb(student), 2)}
    if teacher is not None:
        notes.update(teacher=models.describe(teacher), teacher_parameters=models.parameter_count(teacher),
                     teacher_size_mb=round(models.size_on_disk_mb(teacher), 2))
    if config.mode == "finetune":
        teacher = teacher_tokenizer = teacher_key = None  # a finetune teacher only supplies truncated layers
    return Prepared(config, data, student, tokenizer, teacher, teacher_tokenizer, teacher_key, notes)


def provenance() -> dict[str, Any]:
    import accelerate
    import datasets
    import torch
    import transformers

    from . import __version__

    return {"kd_studio": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "accelerate": accelerate.__version__,
            "torch_threads": torch.get_num_threads()}


def run_record(prepared: Prepared) -> dict[str, Any]:
    """What config.json holds: the resolved config, label names, model facts and library versions."""
    record = config_to_dict(prepared.config)
    record["provenance"] = {**provenance(), "data": prepared.data.description,
                            "label_names": prepared.data.label_names,
                            "split_sizes": {k: len(v) for k, v in prepared.data.splits.items()},
                            **prepared.notes}
    return record


# ----------------------------------------------------------------------------------------------------------------
# teacher logits, cached by example id

def _logits_cache_file(teacher_key: str, max_length: int) -> Path:
    return cache_root() / "teacher_logits" / f"{teacher_key}-len{max_length}.npz"


def teacher_logits_for(prepared: Prepared, split: str, on_event: EventHandler = _no_event) -> np.ndarray:
    """Teacher logits for every row of a split, from the cache where present, computed (once) where not."""
    from .evaluate import predict_logits

    dataset = prepared.data.splits[split]
    ids = dataset["example_id"]
    cache_file = _logits_cache_file(prepared.teacher_key, prepared.config.data.max_length)
    cached: dict[str, np.ndarray] = {}
    if prepared.config.teacher_cache and cache_file.is_file():
        with np.load(cache_file) as stored:
            cached = dict(zip(stored["ids"].tolist(), stored["logits"]))
    missing = sorted({i for i in ids if i not in cached})
    if missing:
        on_event({"kind": "phase", "phase": f"teacher logits for {len(missing)} {split} examples"})
        wanted = set(missing)
        subset = dataset.filter(lambda row: row["example_id"] in wanted)
        # Duplicated texts share an id: compute each id once.
        first_rows = list({eid: i for i, eid in reversed(list(enumerate(subset["example_id"])))}.values())
        subset = subset.select(sorted(first_rows))
        tokenized = subset.map(lambda b: prepared.teacher_tokenizer(b["text"], truncation=True,
                                                                     max_length=prepared.config.data.max_length),
                               batched=True)

        def progress(done: int, total: int) -> None:
            on_event({"kind": "teacher_progress", "split": split, "done": done, "total": total})

        logits = predict_logits(prepared.teacher, tokenized, Collator(prepared.teacher_tokenizer),
                                batch_size=prepared.config.eval_batch_size, on_progress=progress)
        cached.update(zip(tokenized["example_id"], logits))
        if prepared.config.teacher_cache:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, ids=np.array(list(cached)), logits=np.stack(list(cached.values())).astype(np.float32))
            os.replace(tmp, cache_file)
    return np.stack([cached[i] for i in ids]).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# the loop

class _Cancel:
    """Cooperative cancel: SIGTERM or a STOP file in the run folder end the run at the next step."""

    def __init__(self, run_dir: Path | None):
        self.run_dir, self.signalled = run_dir, False
        self._previous = None

    def __enter__(self) -> "_Cancel":
        try:
            self._previous = signal.signal(signal.SIGTERM, self._on_signal)
        except ValueError:  # not the main thread (e.g. tests calling fit from a thread): file-based stop only
            self._previous = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _on_signal(self, *_: Any) -> None:
        self.signalled = True

    def requested(self) -> bool:
        return self.signalled or (self.run_dir is not None and runs.stop_requested(self.run_dir))


def _optimizer_and_schedule(config: TrainConfig, model, total_steps: int):
    import torch
    from transformers import get_constant_schedule, get_linear_schedule_with_warmup

    if config.optimizer == "adam":  # the seed recipe: plain Adam at a constant rate
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        return optimizer, get_constant_schedule(optimizer)
    no_decay = ("bias", "LayerNorm.weight", "layernorm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": config.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    warmup = int(config.warmup_ratio * total_steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


@contextlib.contextmanager
def _writing(target: Path, staging: Path):
    """A failure while writing ``target`` through ``staging`` becomes a runs.WriteError naming ``target``, and the
    half-written staging folder goes: its partial files would keep a full disk full, so that not even the
    'failed' status could be written."""
    import shutil

    try:
        yield
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise runs.write_error(exc, target) from exc


def _save_model(accelerator, model, tokenizer, run_dir: Path) -> None:
    """Save to model.tmp and swap in, so a kill mid-save never leaves a half-written model/."""
    import shutil

    target = runs.model_dir(run_dir)
    staging = target.with_name("model.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    with _writing(target, staging):
        accelerator.unwrap_model(model).save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    old = target.with_name("model.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def make_accelerator(mixed_precision: str | None = None):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    import torch

    # split_batches: --batch-size is the global batch, so 1 process and N processes see the same batches.
    # cpu=True without an accelerator: Accelerate only sets up gloo across CPU processes (torchrun) when told.
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available(),
                       dataloader_config=DataLoaderConfiguration(split_batches=True))


CHECKPOINT_DIR = "checkpoint"       # last completed epoch: weights, optimiser, scheduler, RNG (for resume)
TRAINER_STATE = "trainer_state.json"


def _save_checkpoint(accelerator, run_dir: Path, state: dict[str, Any]) -> None:
    """The last completed epoch, saved beside the best model so that `resume` continues a killed run.

    Written to checkpoint.tmp and swapped in, so a kill during the save keeps the previous checkpoint.
    """
    import shutil

    target = run_dir / CHECKPOINT_DIR
    staging = run_dir / f"{CHECKPOINT_DIR}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    with _writing(target, staging):
        accelerator.save_state(str(staging))
        runs.write_json_atomic(staging / TRAINER_STATE, state)
    old = run_dir / f"{CHECKPOINT_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def _save_checkpoint_all(accelerator, run_dir: Path, state: dict[str, Any]) -> None:
    # accelerate's save_state must be called on every process (it gathers); only the main one writes files.
    if accelerator.num_processes == 1:
        _save_checkpoint(accelerator, run_dir, state)
    else:
        accelerator.save_state(str(run_dir / CHECKPOINT_DIR))
        if accelerator.is_main_process:
            runs.write_json_atomic(run_dir / CHECKPOINT_DIR / TRAINER_STATE, state)


def read_checkpoint_state(run_dir: Path) -> dict[str, Any] | None:
    return runs.read_json(run_dir / CHECKPOINT_DIR / TRAINER_STATE, default=None)


def fit(prepared: Prepared, run_dir: Path | None, *, accelerator=None, on_event: EventHandler = _no_event,
        resume: bool = False) -> dict[str, Any]:
    """Train, keep the best checkpoint by valid_accuracy, then evaluate it on the test split.

    With `resume`, continue from the run's last completed epoch (weights, optimiser, schedule, RNG and
    early-stopping state as they were). Returns {"state": "done"|"cancelled", "best_valid_accuracy",
    "epochs_done", "eval"}.
    """
    import torch
    from torch.utils.data import DataLoader
    from transformers import set_seed

    from .losses import distillation_loss

    config = prepared.config
    accelerator = accelerator or make_accelerator()
    is_main = accelerator.is_main_process

    def emit(row: dict[str, Any]) -> None:
        """Step and epoch rows go to the run store; every event goes to the caller. Main process only."""
        if not is_main:
            return
        if run_dir is not None and row["kind"] in ("step", "epoch", "resume"):
            runs.append_metric(run_dir, row)
        on_event(row)

    set_seed(config.seed)
    with accelerator.main_process_first():
        tokenized = tokenize_splits(prepared.data, prepared.tokenizer, config.data.max_length)
        train_set = tokenized["train"]
        if prepared.teacher is not None:
            train_logits = teacher_logits_for(prepared, "train", emit)
            train_set = train_set.add_column("teacher_logits", train_logits.tolist())
    collate = Collator(prepared.tokenizer)
    sampler = LengthGroupedBatchSampler([len(x) for x in train_set["input_ids"]],
                                        config.batch_size, config.seed)
    train_loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate)
    # Validation order does not change its exact sums, so batch rows of similar length (less padding).
    valid_set = tokenized["validation"]
    valid_set = valid_set.select(np.argsort([-len(ids) for ids in valid_set["input_ids"]], kind="stable"))
    valid_loader = DataLoader(valid_set, batch_size=config.eval_batch_size, collate_fn=collate)
    steps_per_epoch = len(sampler)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    model = prepared.student
    optimizer, scheduler = _optimizer_and_schedule(config, model, total_steps)
    model, optimizer, train_loader, valid_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, valid_loader, scheduler)
    alpha = config.alpha if prepared.teacher is not None else 1.0
    # Teacher logits are computed only on a cache miss, and iterating their DataLoader draws from torch's RNG:
    # seed again here, so dropout (and all that follows) is the same whether the cache was cold or warm.
    set_seed(config.seed)

    best_accuracy, epochs_without_improvement, global_step, epochs_done = -1.0, 0, 0, 0
    if resume:
        saved = read_checkpoint_state(run_dir) if run_dir is not None else None
        if saved is None:
            raise UserError(f"run {run_dir} has no checkpoint to resume from (it stopped before its first epoch "
                            "ended): start it again instead")
        accelerator.load_state(str(run_dir / CHECKPOINT_DIR))
        best_accuracy, epochs_without_improvement = saved["best_accuracy"], saved["epochs_without_improvement"]
        global_step, epochs_done = saved["global_step"], saved["epoch"]
        emit({"kind": "resume", "from_epoch": epochs_done, "step": global_step})
    state = "done"
    emit({"kind": "start", "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
          "epochs": config.epochs, "train_examples": len(train_set), "first_epoch": epochs_done + 1})
    with _Cancel(run_dir) as cancel:
        for epoch in range(epochs_done + 1, config.epochs + 1):
            if resume and config.patience and epochs_without_improvement >= config.patience:
                break
            # ---- train one epoch
            sampler.set_epoch(epoch)
            model.train()
            epoch_start = window_start = time.perf_counter()
            sums = torch.zeros(5, dtype=torch.float64)  # total, ce, kd (summed over examples), correct, count
            window = torch.zeros(4, dtype=torch.float64)  # total, ce, kd, count since the last step event
            for batch in train_loader:
                labels = batch.pop("labels")
                teacher_logits = batch.pop("teacher_logits", None)
                logits = model(**batch).logits
                parts = distillation_loss(logits.float(), labels, teacher_logits, alpha=alpha,
                                          temperature=config.temperature, kd=config.kd_loss)
                accelerator.backward(parts.total)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1
                # ---- bookkeeping from the same forward pass (no extra student forward)
                n = labels.shape[0]
                values = torch.tensor([parts.total.item(), parts.ce.item(), parts.kd.item()], dtype=torch.float64)
                correct = (logits.argmax(-1) == labels).sum().item()
                sums += torch.cat([values * n, torch.tensor([correct, n], dtype=torch.float64)])
                window += torch.cat([values * n, torch.tensor([n], dtype=torch.float64)])
                if global_step % config.log_every_steps == 0 or global_step == total_steps:
                    now = time.perf_counter()
                    if accelerator.num_processes > 1:  # log the global batch, as one process would see it
                        window = accelerator.reduce(window.to(accelerator.device), reduction="sum").cpu()
                    emit({"kind": "step", "step": global_step, "epoch": epoch - 1 + (
                        (global_step - (epoch - 1) * steps_per_epoch) / steps_per_epoch),
                          "loss": float(window[0] / window[3]), "ce_loss": float(window[1] / window[3]),
                          "kd_loss": float(window[2] / window[3]) if teacher_logits is not None else None,
                          "lr": float(scheduler.get_last_lr()[0]),
                          "samples_per_s": float(window[3] / (now - window_start)),
                          "total_steps": total_steps})
                    window.zero_()
                    window_start = now
                if cancel.requested() or (config.max_steps and global_step >= config.max_steps):
                    break
            stopped = cancel.requested()
            if stopped and sums[4] == 0:
                state = "cancelled"
                break
            # ---- validate (exact over all examples, gathered across processes)
            valid_loss, valid_accuracy = _validate(model, valid_loader, accelerator)
            sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
            epochs_done = epoch
            seconds = time.perf_counter() - epoch_start
            emit({"kind": "epoch", "epoch": epoch, "step": global_step,
                  "training_loss": float(sums[0] / sums[4]), "training_ce_loss": float(sums[1] / sums[4]),
                  "training_kd_loss": float(sums[2] / sums[4]) if prepared.teacher is not None else None,
                  "training_accuracy": float(sums[3] / sums[4]), "valid_loss": valid_loss,
                  "valid_accuracy": valid_accuracy, "seconds": seconds,
                  "samples_per_s": float(sums[4] / seconds), "partial": bool(stopped)})
            # ---- checkpoint and termination
            if valid_accuracy > best_accuracy:
                best_accuracy, epochs_without_improvement = valid_accuracy, 0
                if run_dir is not None and is_main:
                    _save_model(accelerator, model, prepared.tokenizer, run_dir)
                    emit({"kind": "checkpoint", "epoch": epoch, "valid_accuracy": valid_accuracy})
            else:
                epochs_without_improvement += 1
            if run_dir is not None and not stopped:
                accelerator.wait_for_everyone()
                _save_checkpoint_all(accelerator, run_dir, {
                    "epoch": epoch, "global_step": global_step, "best_accuracy": best_accuracy,
                    "epochs_without_improvement": epochs_without_improvement})
            accelerator.wait_for_everyone()
            if stopped:
                state = "cancelled"
                break
            if config.max_steps and global_step >= config.max_steps:
                break
            if config.patience and epochs_without_improvement >= config.patience:
                emit({"kind": "early_stop", "epoch": epoch, "best_valid_accuracy": best_accuracy})
                break

    result = {"state": state, "best_valid_accuracy": best_accuracy if best_accuracy >= 0 else None,
              "epochs_done": epochs_done, "global_step": global_step, "eval": None}
    if state == "done" and run_dir is not None and is_main:
        emit({"kind": "phase", "phase": "evaluating the best checkpoint on the test split"})
        result["eval"] = evaluate_run(prepared, run_dir, on_event=emit)
    return result


def _validate(model, loader, accelerator) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = count = 0
    with torch.inference_mode():
        for batch in loader:
            labels = batch.pop("labels")
            batch.pop("teacher_logits", None)
            logits = model(**batch).logits.float()
            logits, labels = accelerator.gather_for_metrics((logits, labels))
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").double().cpu()
            correct += int((logits.argmax(-1) == labels).sum())
            count += int(labels.numel())
    model.train()
    return float(loss_sum / max(count, 1)), correct / max(count, 1)


def evaluate_run(prepared: Prepared, run_dir: Path, on_event: EventHandler = _no_event) -> dict[str, Any]:
    """Test metrics of the saved best model, the teacher's, and their agreement -> eval.json."""
    from transformers import AutoModelForSequenceClassification

    from .evaluate import classification_metrics, predict_logits, prediction_record, softmax_np

    test = prepared.data.splits["test"]
    model = AutoModelForSequenceClassification.from_pretrained(runs.model_dir(run_dir), use_safetensors=True)
    tokenized = tokenize_splits(prepared.data, prepared.tokenizer, prepared.config.data.max_length)["test"]
    labels = np.asarray(test["label"])
    logits = predict_logits(model, tokenized, Collator(prepared.tokenizer),
                            batch_size=prepared.config.eval_batch_size,
                            on_progress=lambda d, t: on_event({"kind": "eval_progress", "done": d, "total": t}))
    preds = logits.argmax(-1)
    report: dict[str, Any] = {"split": "test", "label_names": prepared.data.label_names}
    teacher_logits = teacher_preds = None
    if prepared.teacher is not None:
        teacher_logits = teacher_logits_for(prepared, "test", on_event)
        teacher_preds = teacher_logits.argmax(-1)
        report["teacher"] = classification_metrics(labels, teacher_preds, prepared.data.label_names,
                                                   probs=softmax_np(teacher_logits))
        report["teacher"]["spec"] = prepared.config.teacher
    report["student"] = classification_metrics(labels, preds, prepared.data.label_names,
                                               probs=softmax_np(logits), reference_preds=teacher_preds)
    report["student"]["spec"] = prepared.config.student
    if teacher_preds is not None:
        report["accuracy_retained"] = report["student"]["accuracy"] / max(report["teacher"]["accuracy"], 1e-12)
    runs.write_json_atomic(run_dir / runs.PREDICTIONS_FILE, prediction_record(
        prepared.data.label_names, test["text"], labels, logits, teacher_logits))
    runs.write_json_atomic(runs.eval_path(run_dir), report)
    return report


# ----------------------------------------------------------------------------------------------------------------
# running a whole job against the store (CLI and background worker)

def execute(prepared: Prepared, run_dir: Path, *, accelerator=None, on_event: EventHandler = _no_event,
            resume: bool = False) -> dict[str, Any]:
    """Run `fit` with the run's status kept truthful whatever happens."""
    accelerator = accelerator or make_accelerator()
    is_main = accelerator.is_main_process
    if is_main:
        runs.set_status(run_dir, "running", pid=os.getpid())
    try:
        result = fit(prepared, run_dir, accelerator=accelerator, on_event=on_event, resume=resume)
    except KeyboardInterrupt:
        if is_main:
            runs.set_status(run_dir, "cancelled", error="interrupted by the user (Ctrl-C)")
        raise
    except OSError as exc:
        if is_main:  # disk full, permissions: say so plainly; the run's metrics so far stay readable
            try:
                where = f" {exc.filename}" if exc.filename else ""
                runs.set_status(run_dir, "failed", error=f"could not write{where}: {exc.strerror or exc}")
            except OSError:
                pass
        raise
    except Exception as exc:
        if is_main:
            runs.set_status(run_dir, "failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise
    if is_main:
        summary = {"best_valid_accuracy": result["best_valid_accuracy"], "epochs_done": result["epochs_done"]}
        if result["eval"]:
            summary["test_accuracy"] = result["eval"]["student"]["accuracy"]
        runs.set_status(run_dir, result["state"], **summary)
    return result
