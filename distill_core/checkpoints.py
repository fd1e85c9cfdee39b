"""What a run folder keeps of a training run's weights: the best model and the last completed epoch.

- ``model/`` (runs.MODEL_DIR): the student at its best valid_accuracy so far, as save_pretrained writes it;
- ``checkpoint/`` (runs.CHECKPOINT_DIR): Accelerate's save_state of the last completed epoch (weights, optimiser,
  scheduler, RNG) plus ``trainer_state.json`` (epoch, step, early-stopping state), what `resume` continues from;
- ``projection.safetensors`` (PROJECTION_FILE): the learned student -> teacher projection of a run with layer
  terms between different widths, at the last completed epoch (also inside checkpoint/, which resume reads).

Both are written to a staging folder and swapped in by rename, so a kill during a save keeps the previous copy
whole, and a failed write (a full disk) removes its staging folder and raises storage.WriteError naming the target.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import runs, storage

# The learned projection of a run with layer terms between different widths (objective.make_projection).
PROJECTION_FILE = "projection.safetensors"


@contextlib.contextmanager
def _writing(target: Path, staging: Path) -> Iterator[None]:
    """A failure while writing ``target`` through ``staging`` becomes a storage.WriteError naming ``target``, and the
    half-written staging folder goes: its partial files would keep a full disk full, so that not even the
    'failed' status could be written."""
    try:
        yield
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise storage.write_error(exc, target) from exc


def _staging(target: Path) -> Path:
    """``model.tmp`` for ``model``: a fresh staging folder beside ``target`` (a killed save may have left one)."""
    staging = target.with_name(f"{target.name}{runs.STAGING_SUFFIXES[0]}")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging``; the old copy is moved aside first, so one whole copy exists at every
    instant (``model.old`` is what a kill between the two renames leaves)."""
    old = target.with_name(f"{target.name}{runs.STAGING_SUFFIXES[1]}")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def save_model(accelerator, model, tokenizer, run_dir: Path) -> None:
    """Save the (unwrapped) model and its tokenizer as the run's model/ (main process only)."""
    target = runs.model_dir(run_dir)
    staging = _staging(target)
    with _writing(target, staging):
        accelerator.unwrap_model(model).save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    _swap_in(staging, target)


def projection_path(run_dir: Path) -> Path:
    return Path(run_dir) / PROJECTION_FILE


def save_projection(accelerator, projection, run_dir: Path) -> None:
    """Write the learned student -> teacher projection of the last completed epoch as ``projection.safetensors``
    (main process only), beside model/ and never inside it: model/ stays a plain classifier. Resume restores the
    projection with the rest of the checkpoint (Accelerate saves every model it prepared); this file is the copy a
    person or a later run can read without Accelerate."""
    from safetensors.torch import save_file

    target = projection_path(run_dir)
    staging = target.with_name(f"{target.name}{runs.STAGING_SUFFIXES[0]}")
    state = {name: tensor.detach().cpu().contiguous()
             for name, tensor in accelerator.unwrap_model(projection).state_dict().items()}
    try:
        save_file(state, str(staging))
        os.replace(staging, target)
    except Exception as exc:
        staging.unlink(missing_ok=True)
        raise storage.write_error(exc, target) from exc


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / runs.CHECKPOINT_DIR


def save_checkpoint(accelerator, run_dir: Path, state: dict[str, Any]) -> None:
    """Save the last completed epoch and ``state`` (its trainer_state.json). Call it on every process: accelerate's
    save_state gathers across processes; only the main one writes trainer_state.json."""
    target = checkpoint_dir(run_dir)
    if accelerator.num_processes > 1:
        # Every process writes its own RNG file into the folder, so no one process could rename a finished
        # staging folder in without waiting on the others: several processes write in place.
        accelerator.save_state(str(target))
        if accelerator.is_main_process:
            storage.write_json_atomic(target / runs.TRAINER_STATE_FILE, state)
        return
    staging = _staging(target)
    with _writing(target, staging):
        accelerator.save_state(str(staging))
        storage.write_json_atomic(staging / runs.TRAINER_STATE_FILE, state)
    _swap_in(staging, target)


def read_checkpoint_state(run_dir: Path) -> dict[str, Any] | None:
    """The trainer state of the run's checkpoint, or None when it has none (stopped before an epoch ended)."""
    return storage.read_json(checkpoint_dir(run_dir) / runs.TRAINER_STATE_FILE, default=None)


def restore(accelerator, run_dir: Path) -> dict[str, Any] | None:
    """Load the run's checkpoint into the objects ``accelerator`` prepared (and the RNG); its trainer state, or
    None (and nothing loaded) when there is no checkpoint."""
    state = read_checkpoint_state(run_dir)
    if state is not None:
        accelerator.load_state(str(checkpoint_dir(run_dir)))
    return state
