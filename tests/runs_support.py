"""Runs for the Runs page's tests (AppTest and browser): store-level runs in any state, and real tiny runs trained in
this process (a finished distillation, and one cancelled after its first epoch, which leaves a checkpoint)."""
from __future__ import annotations

from pathlib import Path

from distill_core import pipeline, runs
from distill_core.config import DataConfig, TrainConfig


def make_run(root: Path, name: str, state: str = "done", *, teacher: str | None = None, **status) -> Path:
    """A run as the store holds it after its worker: config.json and a status in ``state``."""
    config = {"mode": "distill" if teacher else "finetune", "student": "truncate:1", "teacher": teacher,
              "data": {"source": "tiny"}, "epochs": 2, "lr": 1e-4}
    run_dir = runs.create_run(root, name, config, **status)
    if state != "queued":
        runs.set_status(run_dir, state)
    return run_dir


def tiny_config(data_dir: Path, teacher_dir: Path, epochs: int = 2) -> TrainConfig:
    return TrainConfig(mode="distill", data=DataConfig(source=str(data_dir), max_length=24), student="truncate:1",
                       teacher=str(teacher_dir), epochs=epochs, batch_size=16, lr=1e-4, patience=None,
                       log_every_steps=2, eval_batch_size=64)


def trained_run(root: Path, name: str, config: TrainConfig, *, stop_after_first_epoch: bool = False) -> Path:
    """A real run trained in this process; with ``stop_after_first_epoch``, stopped (the STOP file, as the Stop
    button) once its first epoch is checkpointed: a cancelled run that can be resumed."""
    from distill_core import train

    prepared = train.prepare(config)
    run_dir = runs.create_run(root, name, pipeline.run_record(config))

    def on_event(event: dict) -> None:
        if stop_after_first_epoch and event.get("kind") == "epoch":
            runs.request_stop(run_dir)

    train.execute(prepared, run_dir, on_event=on_event)
    return run_dir
