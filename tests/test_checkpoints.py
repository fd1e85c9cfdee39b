"""The run folder's weights: the best model (model/) and the resumable checkpoint (checkpoint/), both swapped in
whole, and a failed write that leaves the previous copy and no staging folder behind.

Accelerate and transformers are stood in for by fakes that write one file: what is under test is the staging,
the swap and the names, not the libraries' own serialisation (test_train and test_faults cover that end to end).
"""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from distill_core import checkpoints, runs, storage


class FakeModel:
    def __init__(self, text: str, fail: bool = False):
        self.text, self.fail = text, fail

    def save_pretrained(self, folder: Path, safe_serialization: bool) -> None:
        assert safe_serialization
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_text(self.text)
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")


class FakeTokenizer:
    def save_pretrained(self, folder: Path) -> None:
        (Path(folder) / "tokenizer.json").write_text("{}")


class FakeAccelerator:
    def __init__(self, num_processes: int = 1, is_main_process: bool = True):
        self.num_processes, self.is_main_process = num_processes, is_main_process
        self.loaded: list[str] = []

    def unwrap_model(self, model):
        return model

    def save_state(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_text("weights")

    def load_state(self, folder: str) -> None:
        self.loaded.append(folder)


def leftovers(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name.endswith((".tmp", ".old")))


def test_save_model_replaces_model_dir_whole(tmp_path):
    accelerator = FakeAccelerator()
    checkpoints.save_model(accelerator, FakeModel("epoch 1"), FakeTokenizer(), tmp_path)
    checkpoints.save_model(accelerator, FakeModel("epoch 2"), FakeTokenizer(), tmp_path)
    model_dir = runs.model_dir(tmp_path)
    assert (model_dir / "model.safetensors").read_text() == "epoch 2"
    assert (model_dir / "tokenizer.json").is_file()
    assert leftovers(tmp_path) == []


def test_a_failed_model_save_keeps_the_previous_model_and_names_the_target(tmp_path):
    accelerator = FakeAccelerator()
    checkpoints.save_model(accelerator, FakeModel("good"), FakeTokenizer(), tmp_path)
    with pytest.raises(storage.WriteError) as raised:
        checkpoints.save_model(accelerator, FakeModel("half", fail=True), FakeTokenizer(), tmp_path)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(runs.model_dir(tmp_path))
    assert (runs.model_dir(tmp_path) / "model.safetensors").read_text() == "good"
    assert leftovers(tmp_path) == []  # the half-written staging folder is gone (it would keep a full disk full)


def test_checkpoint_round_trip_uses_the_run_store_names(tmp_path):
    accelerator = FakeAccelerator()
    assert checkpoints.read_checkpoint_state(tmp_path) is None
    assert checkpoints.restore(accelerator, tmp_path) is None and accelerator.loaded == []  # nothing to load
    state = {"epoch": 2, "global_step": 24, "best_accuracy": 0.75, "epochs_without_improvement": 1}
    checkpoints.save_checkpoint(accelerator, tmp_path, state)
    checkpoints.save_checkpoint(accelerator, tmp_path, {**state, "epoch": 3})
    folder = tmp_path / runs.CHECKPOINT_DIR
    assert folder == checkpoints.checkpoint_dir(tmp_path) and folder.name == "checkpoint"
    assert storage.read_json(folder / runs.TRAINER_STATE_FILE) == {**state, "epoch": 3}
    assert (folder / "model.safetensors").is_file()
    assert leftovers(tmp_path) == []
    assert checkpoints.restore(accelerator, tmp_path) == {**state, "epoch": 3}
    assert accelerator.loaded == [str(folder)]


def test_only_the_main_process_writes_the_trainer_state_when_several_save(tmp_path):
    state = {"epoch": 1, "global_step": 6, "best_accuracy": 0.5, "epochs_without_improvement": 0}
    checkpoints.save_checkpoint(FakeAccelerator(num_processes=2, is_main_process=False), tmp_path, state)
    assert (tmp_path / runs.CHECKPOINT_DIR / "model.safetensors").is_file()  # save_state runs on every process
    assert checkpoints.read_checkpoint_state(tmp_path) is None
    checkpoints.save_checkpoint(FakeAccelerator(num_processes=2), tmp_path, state)
    assert checkpoints.read_checkpoint_state(tmp_path) == state
