"""Unlabelled transfer text (issue 12): where its rows come from, what is refused before a run exists, and a real
tiny distillation that learns from it with its teacher logits cached like the train split's."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from runs_support import tiny_config
from test_cli import cli

from distill_core import preflight, runs, teacher_cache, train
from distill_core.config import DataConfig, TrainConfig
from distill_core.data import load_data
from distill_core.errors import UserError
from distill_core.transfer import IGNORE_LABEL, load_transfer


def _texts(dataset) -> set[str]:
    return set(dataset["text"])


def test_rest_is_exactly_the_train_rows_left_out_and_holds_no_validation_or_test_text(tiny_data_dir):
    cfg = DataConfig(source=str(tiny_data_dir), train_samples=60, transfer="rest")
    data = load_data(cfg, seed=7)
    whole_train = load_data(replace(cfg, train_samples=None, transfer=None), seed=7).splits["train"]
    # The subsample and its rest partition the training rows that validation and test left.
    assert sorted([*data.splits["train"]["example_id"], *data.left_over["example_id"]]) == \
        sorted(whole_train["example_id"])

    transfer = load_transfer(cfg, 7, data)
    assert transfer is not None
    labelled = set().union(*(_texts(split) for split in data.splits.values()))
    assert _texts(transfer.rows) == _texts(data.left_over) - labelled
    assert not _texts(transfer.rows) & (_texts(data.splits["validation"]) | _texts(data.splits["test"]))
    assert len(transfer.rows) == len(set(transfer.rows["text"]))  # no text twice
    assert set(transfer.rows["label"]) == {IGNORE_LABEL}
    assert transfer.read == len(data.left_over)
    assert transfer.dropped_duplicates == transfer.read - len(transfer.rows)


def test_files_and_folders_of_text_are_read_deduplicated_and_capped(tmp_path, tiny_data_dir):
    data = load_data(DataConfig(source=str(tiny_data_dir)), seed=42)
    train_text, test_text = data.splits["train"]["text"][0], data.splits["test"]["text"][0]
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    (folder / "a.txt").write_text(f"new text one\n\n{train_text}\nnew text one\n  {test_text}  \n", encoding="utf-8")
    (folder / "b.csv").write_text("text,label\nnew text two,3\nnew text three,not-a-label\n", encoding="utf-8")

    txt = load_transfer(DataConfig(source=str(tiny_data_dir), transfer=str(folder / "a.txt")), 42, data)
    assert txt is not None and list(txt.rows["text"]) == ["new text one"]  # blank line skipped, 3 duplicates dropped
    assert (txt.read, txt.dropped_duplicates) == (4, 3)

    both = load_transfer(DataConfig(source=str(tiny_data_dir), transfer=str(folder)), 42, data)
    assert both is not None  # the csv's labels are ignored, even one that is no class id
    assert list(both.rows["text"]) == ["new text one", "new text two", "new text three"]

    capped = load_transfer(DataConfig(source=str(tiny_data_dir), transfer=str(folder), transfer_samples=2), 42, data)
    assert capped is not None and len(capped.rows) == 2 and capped.dropped_by_cap == 1
    assert set(capped.rows["text"]) < set(both.rows["text"])


@pytest.mark.parametrize(("settings", "words"), [
    ({"transfer": "rest"}, "--transfer rest needs --train-samples"),
    ({"transfer": "EMPTY"}, "--transfer empty.txt is empty"),
    ({"transfer": "NO_COLUMN"}, "--transfer no-column.csv: no column 'text'"),
    ({"transfer": "EMPTY_CSV"}, "--transfer: empty.csv is empty"),
    ({"transfer": "missing.txt"}, "--transfer 'missing.txt' does not exist"),
    ({"transfer_samples": 5}, "--transfer-samples 5 caps transfer text, but --transfer is not set"),
], ids=["rest-without-train-samples", "empty-txt", "no-text-column", "empty-csv", "missing-file", "cap-alone"])
def test_bad_transfer_settings_are_refused_before_a_run_exists(tmp_path, tiny_data_dir, tiny_teacher_dir,
                                                               settings, words):
    files = {"EMPTY": tmp_path / "empty.txt", "NO_COLUMN": tmp_path / "no-column.csv", "EMPTY_CSV": tmp_path /
             "empty.csv"}
    files["EMPTY"].write_text("", encoding="utf-8")
    files["EMPTY_CSV"].write_text("", encoding="utf-8")
    files["NO_COLUMN"].write_text("sentence\nsome words\n", encoding="utf-8")
    if settings.get("transfer") in files:
        settings = {**settings, "transfer": str(files[settings["transfer"]])}
    base = tiny_config(tiny_data_dir, tiny_teacher_dir)
    config = replace(base, data=replace(base.data, **settings))
    with pytest.raises(UserError, match=words.replace("(", r"\(")):
        preflight.check_run(config)


def test_the_cli_refuses_bad_transfer_text_in_one_line_naming_the_flag_and_creates_no_run(
        tmp_path, tiny_data_dir, tiny_teacher_dir):
    # Fine-tuning with transfer text and 'rest' without a subsample: both problems, said at once.
    proc = cli(["finetune", "--data", str(tiny_data_dir), "--model", str(tiny_teacher_dir), "--out", "runs/ft",
                "--transfer", "rest", "--quiet"], tmp_path, tmp_path)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith("error: 2 settings to fix: --transfer rest: fine-tuning has no teacher")
    assert "--transfer rest needs --train-samples" in proc.stderr and proc.stderr.strip().count("\n") == 0
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    proc = cli(["distill", "--data", str(tiny_data_dir), "--teacher", str(tiny_teacher_dir), "--student",
                "truncate:1", "--out", "runs/kd", "--transfer", str(tmp_path / "empty.txt"), "--quiet"],
               tmp_path, tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --transfer empty.txt is empty"), proc.stderr
    assert not (tmp_path / "runs").exists()


def test_training_rows_carry_their_teacher_logits_by_index_and_transfer_rows_no_label(tiny_data_dir):
    from distill_core.batching import Collator, TrainRows
    from distill_core.models import load_tokenizer
    from distill_core.specs import bundled_path

    data = load_data(DataConfig(source=str(tiny_data_dir), train_samples=40, transfer="rest"), seed=42)
    transfer = load_transfer(DataConfig(source=str(tiny_data_dir), train_samples=40, transfer="rest"), 42, data)
    assert transfer is not None
    tokenizer = load_tokenizer(str(bundled_path()))
    parts = [split.map(lambda b: tokenizer(b["text"]), batched=True)
             for split in (data.splits["train"], transfer.rows)]
    logits = np.arange((40 + len(transfer.rows)) * 4, dtype=np.float32).reshape(-1, 4)
    rows = TrainRows(parts, logits)
    assert len(rows) == 40 + len(transfer.rows) and len(rows.lengths()) == len(rows)
    batch = Collator(tokenizer)([rows[i] for i in (0, 39, 40, len(rows) - 1)])
    assert batch["teacher_logits"].tolist() == logits[[0, 39, 40, len(rows) - 1]].tolist()
    assert batch["labels"][2:].tolist() == [IGNORE_LABEL, IGNORE_LABEL] and (batch["labels"][:2] >= 0).all()


def _run(root: Path, name: str, config: TrainConfig) -> tuple[Path, list[dict]]:
    events: list[dict] = []
    prepared = train.prepare(config)
    run_dir = runs.create_run(root, name, train.run_record(prepared))
    train.execute(prepared, run_dir, on_event=events.append)
    return run_dir, events


def test_a_distillation_learns_from_transfer_text_and_caches_its_teacher_logits(tmp_path, tiny_data_dir,
                                                                                tiny_teacher_dir, one_torch_thread,
                                                                                monkeypatch):
    # Its own cache: other tests of the session may already hold the tiny teacher's logits for these rows.
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))
    base = tiny_config(tiny_data_dir, tiny_teacher_dir, epochs=1)
    config = replace(base, data=replace(base.data, train_samples=48, transfer="rest"), max_steps=6)
    run_dir, events = _run(tmp_path, "kd-transfer", config)

    assert runs.read_status(run_dir)["state"] == "done"
    facts = json.loads((run_dir / runs.CONFIG_FILE).read_text())["provenance"]
    assert facts["labelled_rows"] == 48 and facts["transfer_rows"] == facts["transfer"]["rows"] > 48
    start = next(e for e in events if e["kind"] == "start")
    assert start["train_examples"] == 48 + facts["transfer_rows"]
    phase = next(e for e in events if e.get("id") == "teacher_logits")
    assert phase["total"] == 48 + facts["transfer_rows"]  # a cold cache: every labelled and transfer row
    steps = [e for e in events if e["kind"] == "step"]
    assert steps and all(np.isfinite(e["loss"]) and np.isfinite(e["kd_loss"]) for e in steps)

    prepared = train.prepare(config)
    assert prepared.transfer is not None and prepared.teacher_key is not None
    # (in the file of the precision this machine gives the run's teacher pass: bf16 where the CPU has it natively)
    cached = teacher_cache.lookup(prepared.teacher_key, list(prepared.transfer.rows["example_id"]), 24,
                                  precision=facts["teacher_logits_precision"])
    assert cached is not None and cached.shape == (facts["transfer_rows"], 4)
    # The same rows again: every teacher logit comes from the cache, so no teacher pass runs.
    _, again = _run(tmp_path, "kd-transfer-again", config)
    assert not [e for e in again if e.get("id") == "teacher_logits"]
    assert next(e for e in again if e["kind"] == "start")["train_examples"] == start["train_examples"]
