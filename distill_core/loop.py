"""One training epoch and the end of an epoch: the per-epoch phases of train.fit, and their bookkeeping.

train.py builds the loop (loaders, optimiser, Accelerate) and restores a checkpoint; what the phases then share is
a `Loop`: the objects Accelerate prepared and the counters a checkpoint saves. Every metric is exact over examples:
`LossTotals` sums losses and counts (not means of batch means) and validation gathers from every process.
"""
from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from . import checkpoints, progress, runs
from .batching import LengthGroupedBatchSampler
from .config import TrainConfig

if TYPE_CHECKING:
    from .train import EarlyStopping, EventHandler, Prepared


class Cancel:
    """Cooperative cancel: SIGTERM or a STOP file in the run folder end the run at the next step."""

    def __init__(self, run_dir: Path | None):
        self.run_dir, self.signalled = run_dir, False
        # What signal.signal returned: the handler to restore on exit (None: nothing was installed).
        self._previous: Callable[[int, FrameType | None], Any] | int | None = None

    def __enter__(self) -> Cancel:
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


@dataclass
class LossTotals:
    """Sums over examples (a batch's mean losses times its size) in float64, so that epoch means are exact (not
    means of batch means) and add up across processes."""
    total: float = 0.0
    ce: float = 0.0
    kd: float = 0.0
    correct: float = 0.0
    count: float = 0.0

    @classmethod
    def of_batch(cls, parts, logits, labels) -> LossTotals:
        n = labels.shape[0]
        return cls(parts.total.item() * n, parts.ce.item() * n, parts.kd.item() * n,
                   (logits.argmax(-1) == labels).sum().item(), n)

    def add(self, other: LossTotals) -> None:
        self.total, self.ce, self.kd = self.total + other.total, self.ce + other.ce, self.kd + other.kd
        self.correct, self.count = self.correct + other.correct, self.count + other.count

    def reduce(self, accelerator) -> LossTotals:
        """Summed over processes (a copy with one process)."""
        import torch

        local = torch.tensor(astuple(self), dtype=torch.float64).to(accelerator.device)
        return LossTotals(*accelerator.reduce(local, reduction="sum").cpu().tolist())

    def mean(self, value: float) -> float:
        """``value`` (one of the sums) per example; NaN before any example, as a 0/0 tensor division gave."""
        return value / self.count if self.count else math.nan


@dataclass
class Loop:
    """What fit's phases share: the run, the objects Accelerate prepared and the counters a checkpoint saves."""
    prepared: Prepared
    run_dir: Path | None
    emit: EventHandler
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    train_loader: Any
    valid_loader: Any
    sampler: LengthGroupedBatchSampler
    train_examples: int
    total_steps: int
    stopper: EarlyStopping
    global_step: int = 0
    epochs_done: int = 0

    @property
    def config(self) -> TrainConfig:
        return self.prepared.config

    @property
    def has_teacher(self) -> bool:  # False when fine-tuning: labels only (alpha=1), no KD term to log
        return self.prepared.teacher is not None

    @property
    def max_steps_reached(self) -> bool:
        max_steps = self.config.max_steps
        return bool(max_steps and self.global_step >= max_steps)


def train_epoch(loop: Loop, epoch: int, cancel: Cancel) -> LossTotals:
    """One pass over the training batches, to its end, a cancel or max_steps; returns this process's totals."""
    from .losses import distillation_loss

    config, accelerator, model = loop.config, loop.accelerator, loop.model
    alpha = config.alpha if loop.has_teacher else 1.0
    loop.sampler.set_epoch(epoch)
    loop.emit(progress.phase_event("training", total=loop.total_steps, epoch=epoch, epochs=config.epochs))
    model.train()
    totals, window = LossTotals(), LossTotals()  # window: since the last step row
    window_start = time.perf_counter()
    for batch in loop.train_loader:
        labels = batch.pop("labels")
        teacher_logits = batch.pop("teacher_logits", None)
        logits = model(**batch).logits
        parts = distillation_loss(logits.float(), labels, teacher_logits, alpha=alpha,
                                  temperature=config.temperature, kd=config.kd_loss)
        accelerator.backward(parts.total)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
        loop.optimizer.step()
        loop.scheduler.step()
        loop.optimizer.zero_grad(set_to_none=True)
        loop.global_step += 1
        batch_totals = LossTotals.of_batch(parts, logits, labels)  # from the same forward pass: no extra one
        totals.add(batch_totals)
        window.add(batch_totals)
        if loop.global_step % config.log_every_steps == 0 or loop.global_step == loop.total_steps:
            window_start = _log_step(loop, epoch, window, window_start)
            window = LossTotals()
        if cancel.requested() or loop.max_steps_reached:
            break
    loop.emit({"kind": "train_progress", "done": loop.global_step, "total": loop.total_steps,
               "count": int(totals.count)})
    return totals


def _log_step(loop: Loop, epoch: int, window: LossTotals, window_start: float) -> float:
    """Emit the step row of the steps since the last one; returns the time this window ended."""
    now = time.perf_counter()
    if loop.accelerator.num_processes > 1:  # log the global batch, as one process would see it
        window = window.reduce(loop.accelerator)
    steps_per_epoch = len(loop.sampler)
    loop.emit({"kind": "step", "step": loop.global_step,
               "epoch": epoch - 1 + ((loop.global_step - (epoch - 1) * steps_per_epoch) / steps_per_epoch),
               "loss": window.mean(window.total), "ce_loss": window.mean(window.ce),
               "kd_loss": window.mean(window.kd) if loop.has_teacher else None,
               "lr": float(loop.scheduler.get_last_lr()[0]),
               "samples_per_s": window.count / (now - window_start), "total_steps": loop.total_steps})
    return now


def end_epoch(loop: Loop, epoch: int, totals: LossTotals, epoch_start: float, stopped: bool) -> str | None:
    """Validate, log the epoch row, keep the best model, checkpoint; the run's end state if it ends here."""
    accelerator, run_dir = loop.accelerator, loop.run_dir
    valid_rows = len(loop.valid_loader.dataset)
    loop.emit(progress.phase_event("validation", total=valid_rows, epoch=epoch))
    valid_loss, valid_accuracy = validate(
        loop.model, loop.valid_loader, accelerator,
        on_progress=lambda done: loop.emit({"kind": "valid_progress", "done": min(done, valid_rows),
                                            "total": valid_rows}))
    totals = totals.reduce(accelerator)
    if not stopped:  # a partial epoch is never counted as done
        loop.epochs_done = epoch
    seconds = time.perf_counter() - epoch_start
    loop.emit({"kind": "epoch", "epoch": epoch, "step": loop.global_step,
               "training_loss": totals.mean(totals.total), "training_ce_loss": totals.mean(totals.ce),
               "training_kd_loss": totals.mean(totals.kd) if loop.has_teacher else None,
               "training_accuracy": totals.mean(totals.correct), "valid_loss": valid_loss,
               "valid_accuracy": valid_accuracy, "seconds": seconds,
               "samples_per_s": totals.count / seconds, "partial": bool(stopped)})
    loop.emit(progress.phase_event("saving", "saving the model and checkpoint", epoch=epoch))
    if loop.stopper.update(valid_accuracy) and run_dir is not None and accelerator.is_main_process:
        checkpoints.save_model(accelerator, loop.model, loop.prepared.tokenizer, run_dir)
        loop.emit({"kind": "checkpoint", "epoch": epoch, "valid_accuracy": valid_accuracy})
    if run_dir is not None and not stopped:  # a partial epoch is no resume point: the last whole one stays
        accelerator.wait_for_everyone()
        checkpoints.save_checkpoint(accelerator, run_dir, {"epoch": epoch, "global_step": loop.global_step,
                                                           **loop.stopper.state_dict()})
    accelerator.wait_for_everyone()
    if stopped:
        return "cancelled"
    if loop.max_steps_reached:
        return "done"
    if loop.stopper.should_stop:
        loop.emit({"kind": "early_stop", "epoch": epoch, "best_valid_accuracy": loop.stopper.best_accuracy})
        return "done"
    return None


def validate(model, loader, accelerator, on_progress: Callable[[int], Any] | None = None) -> tuple[float, float]:
    """(loss, accuracy) over the whole split, exact: sums over examples gathered from every process.
    ``on_progress(rows done)`` after every batch."""
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
            if on_progress is not None:
                on_progress(count)
    model.train()
    return float(loss_sum / max(count, 1)), correct / max(count, 1)
