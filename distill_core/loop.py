"""One training epoch and the end of an epoch: the per-epoch phases of train.fit, and their bookkeeping.

train.py builds the loop (loaders, optimiser, Accelerate) and restores a checkpoint; what the phases then share is
a `Loop`: the objects Accelerate prepared and the counters a checkpoint saves. Every metric is exact over examples:
`LossTotals` sums losses and counts (not means of batch means) and validation gathers from every process. A step
scores its batch through objective.batch_loss and never waits for the device: its sums stay tensors until a step row
is logged (every log_every_steps) and at the end of the epoch.
"""
from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from . import allocator, checkpoints, objective, progress, runs
from .batching import LengthGroupedBatchSampler
from .config import TrainConfig

if TYPE_CHECKING:
    from .train import EventHandler, Prepared


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


# What LossTotals sums, in the order of its tensor: each term times the rows it averaged over, then the correct
# predictions and the labelled rows (CE and accuracy are over labelled rows; every other term over every row).
TOTAL_FIELDS = (*objective.TERMS, "correct", "labelled")


@dataclass
class LossTotals:
    """Sums over examples (a batch's mean losses times the rows they averaged over) in float64, so that epoch means
    are exact (not means of batch means) and add up across processes.

    The sums stay a tensor on the training device and are added there: reading one as a Python number waits for
    the device to finish every queued step, so that happens only when a row is logged (``values``), not per step.
    ``rows`` is known on the host without asking the device."""
    sums: Any = None  # float64 tensor [len(TOTAL_FIELDS)] on the device; None before the first batch
    rows: int = 0

    @classmethod
    def of_batch(cls, loss: objective.BatchLoss) -> LossTotals:
        import torch

        labelled = loss.labels != objective.IGNORE_LABEL
        n_labelled = labelled.sum().double()
        rows = int(loss.labels.shape[0])  # a shape: known without a device sync
        correct = ((loss.logits.argmax(-1) == loss.labels) & labelled).sum().double()
        terms = [getattr(loss, name).detach().double() * (n_labelled if name == "ce" else rows)
                 for name in objective.TERMS]
        return cls(torch.stack([*terms, correct, n_labelled]), rows)

    @property
    def count(self) -> int:
        """Rows summed (labelled or not)."""
        return self.rows

    def add(self, other: LossTotals) -> None:
        if other.sums is not None:
            self.sums = other.sums.clone() if self.sums is None else self.sums + other.sums
        self.rows += other.rows

    def reduce(self, accelerator) -> LossTotals:
        """Summed over processes (a copy with one process). Call it on every process."""
        import torch

        local = torch.zeros(len(TOTAL_FIELDS) + 1, dtype=torch.float64, device=accelerator.device)
        if self.sums is not None:
            local[:-1] = self.sums.to(accelerator.device)
        local[-1] = self.rows
        summed = accelerator.reduce(local, reduction="sum")
        return LossTotals(summed[:-1], int(summed[-1].item()))

    def values(self) -> dict[str, float]:
        """Every sum as a Python float (one device sync), by TOTAL_FIELDS name."""
        if self.sums is None:
            return dict.fromkeys(TOTAL_FIELDS, 0.0)
        return dict(zip(TOTAL_FIELDS, self.sums.cpu().tolist(), strict=True))

    def means(self) -> dict[str, float]:
        """Per-example means: CE and accuracy (``correct``) over labelled rows, the other terms over every row; NaN
        where nothing was counted (as a 0/0 division gives)."""
        sums = self.values()
        labelled = sums["labelled"]
        found = {}
        for name in (*objective.TERMS, "correct"):
            over = labelled if name in ("ce", "correct") else self.rows
            found[name] = sums[name] / over if over else math.nan
        return found


@dataclass
class EarlyStopping:
    """Stop after `patience` epochs without a better valid_accuracy (None: never). It also tracks the best accuracy,
    which decides when model/ is saved. Its state is checkpointed: a resumed run stops where a whole one would."""
    patience: int | None
    best_accuracy: float = -1.0  # below any accuracy: the first epoch always improves
    epochs_without_improvement: int = 0

    def update(self, valid_accuracy: float) -> bool:
        """Count an epoch; True if its valid_accuracy is the best so far (strictly: a tie keeps the earlier)."""
        if valid_accuracy > self.best_accuracy:
            self.best_accuracy, self.epochs_without_improvement = valid_accuracy, 0
            return True
        self.epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return bool(self.patience and self.epochs_without_improvement >= self.patience)

    def state_dict(self) -> dict[str, Any]:
        return {"best_accuracy": self.best_accuracy, "epochs_without_improvement": self.epochs_without_improvement}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_accuracy = state["best_accuracy"]
        self.epochs_without_improvement = state["epochs_without_improvement"]


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
    projection: Any = None  # student width -> teacher width for the layer terms (objective.make_projection)

    @property
    def config(self) -> TrainConfig:
        return self.prepared.config

    @property
    def has_teacher(self) -> bool:
        """False when fine-tuning: labels only (alpha=1), no KD term to log. Read from the config, not from
        prepared.teacher: a distillation that reads cached logits may free its teacher after caching them."""
        return self.config.mode == "distill"

    @property
    def max_steps_reached(self) -> bool:
        max_steps = self.config.max_steps
        return bool(max_steps and self.global_step >= max_steps)


def train_epoch(loop: Loop, epoch: int, cancel: Cancel) -> LossTotals:
    """One pass over the training batches, to its end, a cancel or max_steps; returns this process's totals."""
    config, accelerator, model = loop.config, loop.accelerator, loop.model
    teacher = loop.prepared.teacher if objective.needs_teacher_forward(config) else None
    # Accelerate's loader sets its batch sampler's epoch from its own counter (0, 1, ... per pass, reset by a new
    # process) when it can reach the sampler (one process), and cannot through BatchSamplerShard (several): set
    # both to this epoch, so 1 and N processes, and a resumed run, draw the same batches.
    loop.sampler.set_epoch(epoch)
    if hasattr(loop.train_loader, "set_epoch"):
        loop.train_loader.set_epoch(epoch)
    loop.emit(progress.phase_event("training", total=loop.total_steps, epoch=epoch, epochs=config.epochs))
    model.train()
    if loop.projection is not None:
        loop.projection.train()
    totals, window = LossTotals(), LossTotals()  # window: since the last step row
    window_start = time.perf_counter()
    for batch in loop.train_loader:
        # forward backward update
        loss = objective.batch_loss(model, batch, teacher, loop.projection, config, autocast=accelerator.autocast)
        accelerator.backward(loss.total)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(_trained_parameters(loop), 1.0)
        loop.optimizer.step()
        loop.scheduler.step()
        loop.optimizer.zero_grad(set_to_none=True)
        loop.global_step += 1
        if allocator.trim_due(loop.global_step):  # this step's freed activations leave the process
            allocator.release_free_heap()
        # bookkeeping: on-device sums from the same forward pass (no extra one, no host sync)
        batch_totals = LossTotals.of_batch(loss)
        totals.add(batch_totals)
        window.add(batch_totals)
        # logging: the only place a step turns its sums into numbers
        if loop.global_step % config.log_every_steps == 0 or loop.global_step == loop.total_steps:
            window_start = _log_step(loop, epoch, window, window_start)
            window = LossTotals()
        if cancel.requested() or loop.max_steps_reached:
            break
    loop.emit({"kind": "train_progress", "done": loop.global_step, "total": loop.total_steps,
               "count": totals.count})
    return totals


def _trained_parameters(loop: Loop) -> list[Any]:
    """What the gradient norm is clipped over: the student and, when there is one, the projection it trains."""
    parameters = [p for p in loop.model.parameters() if p.requires_grad]
    if loop.projection is not None:
        parameters += list(loop.projection.parameters())
    return parameters


def _term_means(loop: Loop, totals: LossTotals, prefix: str = "") -> dict[str, float | None]:
    """The logged loss terms of ``totals`` per example: total, CE, KD (None without a teacher) and each layer term
    the run trains on (absent when its weight is 0), named ``loss``/``{term}_loss`` with ``prefix``."""
    means = totals.means()
    row: dict[str, float | None] = {f"{prefix}loss": means["total"], f"{prefix}ce_loss": means["ce"],
                                    f"{prefix}kd_loss": means["kd"] if loop.has_teacher else None}
    for term in objective.active_layer_terms(loop.config):
        row[f"{prefix}{term}_loss"] = means[term]
    return row


def _log_step(loop: Loop, epoch: int, window: LossTotals, window_start: float) -> float:
    """Emit the step row of the steps since the last one; returns the time this window ended."""
    if loop.accelerator.num_processes > 1:  # log the global batch, as one process would see it
        window = window.reduce(loop.accelerator)
    terms = _term_means(loop, window)  # waits for the device: the time is taken after it
    now = time.perf_counter()
    steps_per_epoch = len(loop.sampler)
    loop.emit({"kind": "step", "step": loop.global_step,
               "epoch": epoch - 1 + ((loop.global_step - (epoch - 1) * steps_per_epoch) / steps_per_epoch),
               **terms, "lr": float(loop.scheduler.get_last_lr()[0]),
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
    loop.emit({"kind": "epoch", "epoch": epoch, "step": loop.global_step, **_term_means(loop, totals, "training_"),
               "training_accuracy": totals.means()["correct"], "valid_loss": valid_loss,
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
        if loop.projection is not None and accelerator.is_main_process:
            checkpoints.save_projection(accelerator, loop.projection, run_dir)
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
    allocator.release_free_heap()  # the pass below reuses no training-sized gaps: start from the live set
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
    allocator.release_free_heap()  # its batches are 4x training's: do not keep their pages for the next epoch
    return float(loss_sum / max(count, 1)), correct / max(count, 1)
