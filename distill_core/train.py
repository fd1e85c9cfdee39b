"""One Accelerate training loop for fine-tuning (no teacher, alpha=1) and distillation, and the run around it.

`prepare` loads and checks everything before a run folder exists. `fit` is a skeleton of named phases: build the
loop (tokenise, teacher logits, length-grouped batches, Accelerate), restore a checkpoint (resume), then per epoch
train and end the epoch (validate, log, keep the best model, checkpoint, stop early; these two are in loop.py),
and finally the test report (run_evaluation.py). `execute` runs `fit` with the run's status kept truthful. Teacher
logits come through teacher_cache.py; checkpoints.py writes the best model and the resumable checkpoint.

Design choices that differ from the seed recipe, and why:
- teacher logits are computed once per example and cached by (teacher weights, example id, max length): the seed
  re-ran the teacher on every batch of every epoch, which costs a teacher forward per student step;
- batches are padded to their own longest row and grouped by length, not padded to 150 tokens;
- training accuracy comes from the training forward pass (no extra student forward) and every metric is exact over
  all examples (sums of counts, not a mean of batch means).
Only the main process writes to the run store. Progress leaves as events (`on_event(dict)`), never prints.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoints, hardware, loop, progress, run_evaluation, runs, teacher_cache
from .batching import (
    Collator,
    LengthGroupedBatchSampler,
    TrainRows,
    padding_for_fp32_pass,
    padding_for_run,
    tokenize_rows,
    tokenize_splits,
)
from .config import TrainConfig, config_to_dict
from .data import LoadedData, load_data
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
    transfer: Any = None        # transfer.TransferText: unlabelled rows the teacher labels (None: none asked for)

    def __post_init__(self) -> None:
        # Layer terms checked on the loaded models as well: a Hub model's shape is known only once it is loaded
        # (preflight reads local configs), and a student tokenising differently cannot be matched token by token.
        from .objective import needs_teacher_forward

        if self.teacher is not None and needs_teacher_forward(self.config):
            from .preflight import check_layer_terms_loaded

            same_vocabulary = self.tokenizer is self.teacher_tokenizer or (
                self.teacher_tokenizer is not None and self.tokenizer.get_vocab() == self.teacher_tokenizer.get_vocab())
            check_layer_terms_loaded(self.config, self.student.config, self.teacher.config,
                                     same_vocabulary=same_vocabulary)


# ----------------------------------------------------------------------------------------------------------------
# preparation: every check that can fail on bad input happens here, before a run folder exists

def prepare(config: TrainConfig, on_event: EventHandler = _no_event) -> Prepared:
    from transformers import set_seed

    from . import allocator, models
    from .preflight import check_models_fit, check_specs, check_transfer

    config.validate()
    allocator.return_freed_memory_to_os()  # before any model loads: weights and activations follow the rule
    check_specs(config)  # the same checks, and words, as before a run is created from the dashboard
    on_event(progress.phase_event("preparing", "preparing: loading data"))
    data = load_data(config.data, config.seed)
    check_models_fit(config, data.label_names)
    transfer = check_transfer(config, data)  # read now: a bad transfer file fails before any model loads
    set_seed(config.seed)  # the classifier head of a base model is initialised here: seed it
    teacher = teacher_tokenizer = teacher_key = None
    if config.teacher:
        on_event(progress.phase_event("preparing", f"preparing: loading teacher {_short(config.teacher)}"))
        teacher, teacher_tokenizer = models.load_classifier(config.teacher, data.label_names,
                                                            require_trained=config.mode == "distill")
        models.check_max_length(teacher, config.data.max_length, config.teacher)
        teacher.eval()
        teacher_key = models.model_fingerprint(teacher, config.teacher)
    what = "model" if config.mode == "finetune" else "student"
    on_event(progress.phase_event("preparing", f"preparing: loading {what} {_short(config.student)}"))
    if models.is_derived_spec(config.student):
        # check_specs refused a derived student without a teacher, so the teacher and its tokenizer are loaded.
        assert teacher_tokenizer is not None
        student = models.build_student(config.student, teacher, data.label_names, dropout=config.dropout,
                                       attention_dropout=config.attention_dropout)
        tokenizer = teacher_tokenizer
    else:
        student, tokenizer = models.load_classifier(config.student, data.label_names, dropout=config.dropout,
                                                    attention_dropout=config.attention_dropout)
    models.check_max_length(student, config.data.max_length, config.student)
    frozen = models.freeze_word_embeddings(student) if config.freeze_embeddings else 0
    if teacher_tokenizer is not None and tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        # Not an error: teacher logits are cached per example and tokenised with the teacher's own tokenizer.
        on_event({"kind": "note", "message": "student and teacher use different vocabularies"})
    parameters = models.parameter_count(student)
    notes = {"student": models.describe(student), "student_parameters": parameters,
             "student_trained_parameters": parameters - frozen,
             "student_size_mb": round(models.size_on_disk_mb(student), 2),
             "labelled_rows": len(data.splits["train"]), "transfer_rows": len(transfer.rows) if transfer else 0,
             **({"transfer": transfer.record()} if transfer else {})}
    if teacher is not None:
        notes.update(teacher=models.describe(teacher), teacher_parameters=models.parameter_count(teacher),
                     teacher_size_mb=round(models.size_on_disk_mb(teacher), 2))
    if config.mode == "finetune":
        teacher = teacher_tokenizer = teacher_key = None  # a finetune teacher only supplies truncated layers
    return Prepared(config, data, student, tokenizer, teacher, teacher_tokenizer, teacher_key, notes, transfer)


def _short(spec: str) -> str:
    """A model spec as a progress line names it: a folder by its name, not its whole path."""
    return Path(spec).name if os.sep in spec and not spec.startswith(("truncate:", "config:")) else spec


def provenance() -> dict[str, Any]:
    import accelerate
    import datasets
    import torch
    import transformers

    from . import __version__

    return {"kd_studio": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "accelerate": accelerate.__version__,
            "torch_threads": torch.get_num_threads(),
            "optimizer_update": "fused" if FUSED_UPDATE else "PyTorch's default"}


def run_record(prepared: Prepared) -> dict[str, Any]:
    """What config.json holds: the resolved config, label names, model facts and library versions."""
    record = config_to_dict(prepared.config)
    # The precision is resolved here as make_accelerator resolves it (same machine, same rule): "auto" becomes
    # bf16 or fp32 with the reason, so a run says what it trained in, not only what was asked.
    record["provenance"] = {**provenance(), "data": prepared.data.description,
                            "label_names": prepared.data.label_names,
                            "split_sizes": {k: len(v) for k, v in prepared.data.splits.items()},
                            **hardware.training_precision(prepared.config.mixed_precision).as_record(),
                            **_padding_record(prepared.config), **_teacher_pass_record(prepared),
                            **prepared.notes}
    return record


def _teacher_pass_record(prepared: Prepared) -> dict[str, Any]:
    """The precision of the teacher's pass over the training rows (the KD targets); the test split's is fp32."""
    if prepared.teacher_key is None:
        return {}
    return {"teacher_logits_precision": teacher_cache.pass_precision(prepared.config)}


def _padding_record(config: TrainConfig) -> dict[str, Any]:
    multiple, reason = padding_for_run(config)
    return {"pad_to_multiple_of": multiple, "pad_to_multiple_of_reason": reason,
            "pad_to_multiple_of_fp32_passes": padding_for_fp32_pass(config)}


def make_accelerator(mixed_precision: str = "auto"):
    """An Accelerator for a run whose config asks for ``mixed_precision`` (auto, no, bf16, fp16): "auto" becomes
    bf16 autocast where the hardware has native bf16, else fp32 (hardware.resolve_precision)."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration

    resolved = hardware.training_precision(mixed_precision).resolved
    # Accelerate keeps one process-wide state and refuses (or, given None, silently inherits) another precision.
    # One process may train several runs in turn (the showcase: bf16; a test session: fp32 then bf16), so a run
    # that asks for another precision than the last one starts from a fresh precision state. The distributed
    # setup (PartialState) is kept: it never changes within a process.
    if AcceleratorState._shared_state and str(AcceleratorState().mixed_precision) != resolved:
        AcceleratorState._reset_state(reset_partial_state=False)

    # split_batches: --batch-size is the global batch, so 1 process and N processes see the same batches.
    # cpu=True without an accelerator: Accelerate only sets up gloo across CPU processes (torchrun) when told.
    return Accelerator(mixed_precision=resolved, cpu=not torch.cuda.is_available(),
                       dataloader_config=DataLoaderConfiguration(split_batches=True))


# ----------------------------------------------------------------------------------------------------------------
# the loop (the phases of an epoch are in loop.py)

def fit(prepared: Prepared, run_dir: Path | None, *, accelerator=None, on_event: EventHandler = _no_event,
        resume: bool = False) -> dict[str, Any]:
    """Train, keep the best checkpoint by valid_accuracy, then evaluate it on the test split.

    With `resume`, continue from the run's last completed epoch (weights, optimiser, schedule, RNG and
    early-stopping state as they were). Returns {"state": "done"|"cancelled", "best_valid_accuracy",
    "epochs_done", "global_step", "eval"}.
    """
    from transformers import set_seed

    config = prepared.config
    accelerator = accelerator or make_accelerator(config.mixed_precision)
    emit = _emitter(run_dir, on_event, accelerator.is_main_process)
    set_seed(config.seed)
    run = _build(prepared, run_dir, emit, accelerator)
    # Without layer terms training reads cached logits only: free the teacher's weights for the rest of the run.
    teacher_cache.release_teacher(prepared)
    # Teacher logits are computed only on a cache miss, and iterating their DataLoader draws from torch's RNG:
    # seed again here, so dropout (and all that follows) is the same whether the cache was cold or warm.
    set_seed(config.seed)
    if resume:
        _restore(run)
    emit({"kind": "start", "steps_per_epoch": len(run.sampler), "total_steps": run.total_steps,
          "epochs": config.epochs, "train_examples": run.train_examples, "first_epoch": run.epochs_done + 1})
    state = "done"
    with loop.Cancel(run_dir) as cancel:
        for epoch in range(run.epochs_done + 1, config.epochs + 1):
            if run.stopper.should_stop:  # resumed from the checkpoint of the epoch that stopped the run early
                break
            epoch_start = time.perf_counter()
            totals = loop.train_epoch(run, epoch, cancel)
            stopped = cancel.requested()
            if stopped and totals.count == 0:  # nothing trained in this epoch: nothing to validate or log
                state = "cancelled"
                break
            end_state = loop.end_epoch(run, epoch, totals, epoch_start, stopped)
            if end_state is not None:
                state = end_state
                break
    best = run.stopper.best_accuracy
    result: dict[str, Any] = {"state": state, "best_valid_accuracy": best if best >= 0 else None,
              "epochs_done": run.epochs_done, "global_step": run.global_step, "eval": None}
    if state == "done" and run_dir is not None and accelerator.is_main_process:
        emit(progress.phase_event("test_evaluation", "evaluating the best checkpoint on the test split",
                                  total=len(prepared.data.splits["test"])))
        result["eval"] = run_evaluation.evaluate_run(prepared, run_dir, on_event=emit)
    return result


def _emitter(run_dir: Path | None, on_event: EventHandler, is_main: bool) -> EventHandler:
    def emit(row: dict[str, Any]) -> None:
        """Step, epoch and resume rows go to the run store; every event goes to the caller. Main process only."""
        if not is_main:
            return
        if run_dir is not None and row["kind"] in ("step", "epoch", "resume"):
            runs.append_metric(run_dir, row)
        on_event(row)
    return emit


def _build(prepared: Prepared, run_dir: Path | None, emit: EventHandler, accelerator) -> loop.Loop:
    """Tokenise, add teacher logits, batch training rows by length and validation rows sorted by length; hand
    model, optimiser, loaders and schedule to Accelerate."""
    from torch.utils.data import DataLoader

    config = prepared.config
    with accelerator.main_process_first():  # the others then find its tokenised rows and teacher logits cached
        transfer = prepared.transfer.rows if prepared.transfer is not None else None
        emit(progress.phase_event("tokenising", total=sum(len(split) for split in prepared.data.splits.values())
                                  + (len(transfer) if transfer is not None else 0)))
        tokenized = tokenize_splits(prepared.data, prepared.tokenizer, config.data.max_length)
        transfer_tokenized = None if transfer is None else tokenize_rows(
            transfer, prepared.tokenizer, config.data.max_length, prepared.data.label_names, "transfer")
        # Labelled rows, then transfer rows (label -100: CE skips them, KD does not), each with its teacher logits.
        train_logits = teacher_cache.training_logits(prepared, emit) if prepared.teacher is not None else None
        train_set = TrainRows([tokenized["train"], transfer_tokenized], train_logits)
    collate = Collator.for_run(prepared.tokenizer, config)
    sampler = LengthGroupedBatchSampler(train_set.lengths(), config.batch_size, config.seed)
    # TrainRows is a map-style dataset (__getitem__/__len__) without torch's Dataset base class.
    train_loader: DataLoader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate)  # type: ignore[arg-type]
    # Validation order does not change its exact sums, so batch rows of similar length (less padding).
    valid_set = tokenized["validation"]
    valid_set = valid_set.select(np.argsort([-len(ids) for ids in valid_set["input_ids"]], kind="stable"))
    valid_loader = DataLoader(valid_set, batch_size=config.eval_batch_size, collate_fn=collate)
    total_steps = len(sampler) * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    # Layer terms (issue 12): the teacher runs beside the student on the training device, and a learned projection
    # (widths differ) trains with the student: prepared after it, so a checkpoint saves and restores it too.
    from . import objective

    objective.ready_for_layer_terms(config, prepared.student, prepared.teacher)
    if objective.needs_teacher_forward(config):
        prepared.teacher.to(accelerator.device)
    projection = objective.make_projection(config, prepared.student, prepared.teacher)
    optimizer, scheduler = _optimizer_and_schedule(config, prepared.student, total_steps, projection)
    model, *prepared_projection, optimizer, train_loader, valid_loader, scheduler = accelerator.prepare(
        prepared.student, *([projection] if projection is not None else []), optimizer, train_loader, valid_loader,
        scheduler)
    return loop.Loop(prepared, run_dir, emit, accelerator, model, optimizer, scheduler, train_loader, valid_loader,
                     sampler, len(train_set), total_steps, loop.EarlyStopping(config.patience),
                     projection=prepared_projection[0] if prepared_projection else None)


def _restore(run: loop.Loop) -> None:
    """Continue from the last completed epoch: weights, optimiser, schedule, RNG, counters and early stopping."""
    saved = checkpoints.restore(run.accelerator, run.run_dir) if run.run_dir is not None else None
    if saved is None:
        raise UserError(f"run {run.run_dir} has no checkpoint to resume from (it stopped before its first epoch "
                        "ended): start it again instead")
    run.stopper.load_state_dict(saved)
    run.global_step, run.epochs_done = saved["global_step"], saved["epoch"]
    run.emit({"kind": "resume", "from_epoch": run.epochs_done, "step": run.global_step})


# The optimiser's update as one fused kernel per step (torch >= 2.4 on CPU and CUDA; the parameters are on the CPU
# when the optimiser is built, which torch checks). PyTorch's default on CPU is a Python loop over the weights,
# about ten full passes over each: on the offline pair's 17 M weights 70 ms a step against 11 ms fused, ~7 s of a
# 2-epoch run (BENCHMARKS.md 10f: x0.90 to a saved model). The same arithmetic; floats may differ in the last bit.
FUSED_UPDATE = True


def _optimizer_and_schedule(config: TrainConfig, model, total_steps: int, projection=None):
    """The optimiser over the model's parameters and, for layer terms between different widths, the learned
    projection's (objective.make_projection), with its learning-rate schedule."""
    import torch
    from transformers import get_constant_schedule, get_linear_schedule_with_warmup

    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]  # not a frozen embedding
    if projection is not None:
        named += [(f"projection.{name}", p) for name, p in projection.named_parameters()]
    if config.optimizer == "adam":  # the seed recipe: plain Adam at a constant rate
        optimizer = torch.optim.Adam([p for _, p in named], lr=config.lr, fused=FUSED_UPDATE)
        return optimizer, get_constant_schedule(optimizer)
    no_decay = ("bias", "LayerNorm.weight", "layernorm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": config.weight_decay},
        {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, fused=FUSED_UPDATE)
    warmup = int(config.warmup_ratio * total_steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


# ----------------------------------------------------------------------------------------------------------------
# running a whole job against the store (CLI and background worker)

def execute(prepared: Prepared, run_dir: Path, *, accelerator=None, on_event: EventHandler = _no_event,
            resume: bool = False, recorder: progress.Recorder | None = None) -> dict[str, Any]:
    """Run `fit` with the run's status kept truthful whatever happens, its progress recorded by phase
    (``recorder``: one that already saw the run's preparing phase; else a new one on the run folder), and its
    wall time and average training throughput in the status at the end."""
    accelerator = accelerator or make_accelerator(prepared.config.mixed_precision)
    is_main = accelerator.is_main_process
    if is_main:
        from . import allocator

        runs.set_status(run_dir, "running", pid=os.getpid(), allocator=allocator.applied(), **run_shape(prepared))
        recorder = recorder or progress.store_recorder(run_dir)

    def emit(event: dict[str, Any]) -> None:
        if recorder is not None:
            recorder(event)
        on_event(event)

    try:
        result = fit(prepared, run_dir, accelerator=accelerator, on_event=emit, resume=resume)
    except KeyboardInterrupt:
        if is_main:
            runs.set_status(run_dir, "cancelled", error="interrupted by the user (Ctrl-C)", **_summary(recorder))
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
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            runs.set_status(run_dir, "failed", error=f"{type(exc).__name__}: {first_line}", **_summary(recorder))
        raise
    if is_main:
        summary = {"best_valid_accuracy": result["best_valid_accuracy"], "epochs_done": result["epochs_done"],
                   **_summary(recorder)}
        if result["eval"]:
            summary["test_accuracy"] = result["eval"]["student"]["accuracy"]
        started_at = runs.read_status(run_dir).get("started_at")
        if isinstance(started_at, (int, float)):
            summary["wall_s"] = round(time.time() - started_at, 3)
        runs.set_status(run_dir, result["state"], **summary)
    return result


def _summary(recorder: progress.Recorder | None) -> dict[str, Any]:
    return recorder.finish() if recorder is not None else {}


def run_shape(prepared: Prepared) -> dict[str, Any]:
    """What calibration needs to know of a run besides its config: split sizes and the models' shapes."""
    def shape(model) -> list[int] | None:
        config = getattr(model, "config", None)
        layers, hidden = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
        return [layers, hidden] if isinstance(layers, int) and isinstance(hidden, int) else None

    return {"sizes": {k: len(v) for k, v in prepared.data.splits.items()},
            "shape": {"student": shape(prepared.student), "teacher": shape(prepared.teacher)}}
