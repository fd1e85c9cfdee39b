"""Malformed input through the CLI: exit status 2, exactly one stderr line `error: ...` naming the problem, and no
run folder left behind. Inputs that are odd but valid (a BOM, quoted newlines, duplicate rows) must work.

Most cases call `distill_core.cli.main` in this process (importing torch once); the cases in SUBPROCESS_CASES also
run as real `python -m distill_core` subprocesses.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import LABEL_NAMES, make_rows

from distill_core import cli

TINY = ["--epochs", "1", "--max-steps", "1", "--batch-size", "8", "--max-length", "32", "--eval-samples", "8",
        "--quiet"]
ROWS = make_rows(10, seed=21)  # 40 rows, 4 classes
GOOD_CSV = "text,label\n" + "".join(f"{text},{label}\n" for text, label in ROWS)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass
class Case:
    tmp: Path
    data_dir: Path       # tiny_data_dir (read-only)
    teacher: Path        # tiny_teacher_dir (read-only)

    @property
    def out(self) -> Path:
        return self.tmp / "runs" / "case"

    def file(self, name: str, content: str | bytes, classes: list[str] | None = None) -> Path:
        folder = self.tmp / "input"
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        if classes is not None:
            (folder / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
        return path

    def finetune(self, data: Path, *extra: str, model: str | Path | None = None) -> list[str]:
        return ["finetune", "--data", str(data), "--model", str(model or self.teacher), "--out", str(self.out),
                *TINY, *extra]

    def distill(self, data: Path, *extra: str, teacher: str | Path | None = None, student: str = "truncate:1"
                ) -> list[str]:
        return ["distill", "--data", str(data), "--teacher", str(teacher or self.teacher), "--student", student,
                "--out", str(self.out), *TINY, *extra]


def base_model_folder(case: Case) -> Path:
    """The tiny teacher's encoder without a classification head (an un-fine-tuned base model)."""
    from transformers import BertConfig, BertModel

    folder = case.tmp / "base-model"
    config = BertConfig.from_pretrained(case.teacher)
    config.architectures = ["BertModel"]
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(case.teacher / name, folder)
    return folder


def with_row(row: str) -> str:
    return GOOD_CSV + row + "\n"


# id -> (argv builder, regular expression the error line must match)
BAD: dict[str, tuple[Callable[[Case], list[str]], str]] = {
    # ---- data files
    "missing-file": (lambda c: c.finetune(c.tmp / "absent.csv"), r"absent\.csv' does not exist"),
    "empty-file": (lambda c: c.finetune(c.file("train.csv", "")), r"train\.csv is empty"),
    "header-only": (lambda c: c.finetune(c.file("train.csv", "text,label\n")), r"header but no data rows"),
    "missing-text-column": (lambda c: c.finetune(c.file("train.csv", GOOD_CSV.replace("text,", "body,", 1))),
                            r"no column 'text'; columns are \['body', 'label'\]"),
    "missing-label-column": (lambda c: c.finetune(c.file("train.csv", GOOD_CSV.replace(",label", ",y", 1))),
                             r"no label column 'label'"),
    "renamed-columns": (lambda c: c.finetune(c.file("train.csv", GOOD_CSV.replace("text,label", "Sentence,Class",
                                                                                   1))),
                        r"no (label )?column '(text|label)'; columns are \['Sentence', 'Class'\]"),
    "joined-column-missing": (lambda c: c.finetune(c.file("train.csv", GOOD_CSV.replace("text,", "title,", 1)),
                                                   "--text-column", "title+body"), r"no column 'body'"),
    "non-utf8": (lambda c: c.finetune(c.file("train.csv", with_row("café crème,1").encode("latin-1"))),
                 r"not UTF-8"),
    "string-labels-without-classes": (
        lambda c: c.finetune(c.file("train.csv", "text,label\n" + "".join(f"{t},{LABEL_NAMES[label]}\n"
                                                                          for t, label in ROWS))),
        r"label '[A-Za-z/]+' in column 'label' is not an integer.*classes\.txt"),
    "label-out-of-range": (lambda c: c.finetune(c.file("train.csv", with_row("an odd one,7"), LABEL_NAMES)),
                           r"label 7 is out of range: class ids must be 0\.\.3"),
    "huge-label-id": (lambda c: c.finetune(c.file("train.csv", with_row("an odd one,1000000000"))),
                      r"label 1000000000 is out of range"),
    "negative-label": (lambda c: c.finetune(c.file("train.csv", with_row("an odd one,-1"))),
                       r"label -1 is out of range"),
    "float-label": (lambda c: c.finetune(c.file("train.csv", with_row("an odd one,1.5"))),
                    r"label 1\.5 is not an integer"),
    "empty-label": (lambda c: c.finetune(c.file("train.csv", with_row("an odd one,"))), r"empty label"),
    "duplicate-class-names": (
        lambda c: c.finetune(c.file("train.csv", GOOD_CSV, ["World", "Sports", "World", "Sci/Tech"])),
        r"names a class more than once \(World\)"),
    "single-class": (lambda c: c.finetune(c.file("train.csv", "text,label\n" + "".join(f"{t},2\n" for t, _ in ROWS))),
                     r"one class|single class"),
    "single-row": (lambda c: c.finetune(c.file("train.csv", "text,label\nonly one row here,1\n")),
                   r"one class|single class|too few rows"),
    "ten-megabyte-cell": (lambda c: c.finetune(c.file("train.csv", with_row("x" * 10_000_000 + ",1"))),
                          r"10,000,000 characters long"),
    "empty-text": (lambda c: c.finetune(c.file("train.csv", with_row(",1"))), r"empty text \(first at line 42\)"),
    "null-text-jsonl": (lambda c: c.finetune(c.file("train.jsonl", "".join(
        json.dumps({"text": t, "label": label}) + "\n" for t, label in ROWS) + '{"text": null, "label": 1}\n')),
        r"empty text"),
    "wrong-extension": (lambda c: c.finetune(c.file("train.txt", GOOD_CSV)), r"unsupported file type '\.txt'"),
    "ragged-csv": (lambda c: c.finetune(c.file("train.csv", with_row("a,b,1"))), r"not a well-formed table"),
    "broken-json": (lambda c: c.finetune(c.file("train.json", '[{"text": "a", "label": 1},')),
                    r"could not be parsed as json"),
    "json-not-records": (lambda c: c.finetune(c.file("train.json", "[1, 2, 3]")), r"expected a JSON list of objects"),
    "corrupt-parquet": (lambda c: c.finetune(c.file("train.parquet", b"PAR1 this is not parquet")),
                        r"train\.parquet could not be (read|parsed)"),
    # ---- models
    "model-path-missing": (lambda c: c.finetune(c.data_dir, model=c.tmp / "no-model"), r"does not exist"),
    "folder-not-a-model": (lambda c: c.finetune(c.data_dir, model=c.data_dir), r"not a model folder \(no config"),
    "model-without-safetensors": (
        lambda c: c.finetune(c.data_dir, model=c.file("config.json", (c.teacher / "config.json").read_text()).parent),
        r"no \.safetensors weights"),
    "teacher-with-wrong-labels": (
        lambda c: c.distill(c.file("train.csv", "text,label\n" + "".join(f"{t},{label % 3}\n" for t, label in ROWS))),
        r"predicts 4 classes but the data has 3"),
    "teacher-without-head": (lambda c: c.distill(c.data_dir, teacher=base_model_folder(c)),
                             r"no classification head"),
    "student-deeper-than-teacher": (lambda c: c.distill(c.data_dir, student="truncate:2"),
                                    r"keeps 2 layers but the teacher has 2: use truncate:1 \.\. truncate:1"),
    "malformed-student-spec": (lambda c: c.distill(c.data_dir, student="truncate:two"), r"malformed student spec"),
    "hub-unreachable": (lambda c: c.finetune(c.data_dir, model="some-org/some-model"),
                        r"cannot reach the Hugging Face Hub .*some-org/some-model"),
    "max-length-above-model-limit": (lambda c: c.finetune(c.data_dir, "--max-length", "1000"),
                                     r"max_length=1000 exceeds .*512 positions"),
    # ---- hyperparameters
    "lr-zero": (lambda c: c.finetune(c.data_dir, "--lr", "0"), r"lr=0\.0 must be > 0"),
    "lr-negative": (lambda c: c.finetune(c.data_dir, "--lr", "-0.001"), r"lr=-0\.001 must be > 0"),
    "epochs-zero": (lambda c: c.finetune(c.data_dir, "--epochs", "0"), r"epochs=0"),
    "batch-size-zero": (lambda c: c.finetune(c.data_dir, "--batch-size", "0"), r"batch_size=0"),
    "temperature-zero": (lambda c: c.distill(c.data_dir, "--temperature", "0"), r"temperature=0\.0 must be > 0"),
    "temperature-negative": (lambda c: c.distill(c.data_dir, "--temperature", "-2"), r"temperature=-2\.0"),
    "alpha-above-one": (lambda c: c.distill(c.data_dir, "--alpha", "1.5"), r"alpha=1\.5 must be within \[0, 1\]"),
    "attention-dropout-one": (lambda c: c.distill(c.data_dir, "--attention-dropout", "1"),
                              r"attention_dropout=1\.0 must be between 0 and 0\.9"),
    "pad-multiple-negative": (lambda c: c.distill(c.data_dir, "--pad-to-multiple-of", "-1"),
                              r"pad_to_multiple_of=-1 must be between 1 and 512"),
    "frozen-embeddings-of-a-fresh-student": (
        lambda c: [*c.distill(c.data_dir), "--student", "config:L1-H64", "--freeze-embeddings"],
        r"--freeze-embeddings would keep the random embeddings of config:L1-H64 .*drop the flag, or use truncate:N"),
    "train-samples-one": (lambda c: c.finetune(c.data_dir, "--train-samples", "1"), r"train_samples=1"),
    "valid-fraction-one": (lambda c: c.finetune(c.data_dir, "--valid-fraction", "1"), r"valid_fraction=1\.0"),
    "config-file-missing": (lambda c: ["distill", "--config", str(c.tmp / "nope.json")], r"does not exist"),
    # ---- options a --preset may supply (so argparse cannot require them)
    "distill-with-a-pipeline-preset": (
        lambda c: ["distill", "--preset", "Offline quick start", "--data", str(c.data_dir), "--out", str(c.out)],
        r"preset 'Offline quick start' fine-tunes its own teacher first: run `python -m distill_core pipeline "),
    "preset-without-data": (lambda c: ["pipeline", "--preset", "Offline quick start", "--out", str(c.out), *TINY],
                            r"--data is required \(preset 'Offline quick start' names no dataset\)"),
    "pipeline-without-base": (
        lambda c: ["pipeline", "--data", str(c.data_dir), "--student", "truncate:1", "--out", str(c.out), *TINY],
        r"pipeline needs --base MODEL"),
    "distill-without-student": (lambda c: [a for a in c.distill(c.data_dir) if a not in ("--student", "truncate:1")],
                                r"distill needs --student SPEC"),
    "distill-without-out": (lambda c: [a for a in c.distill(c.data_dir) if a not in ("--out", str(c.out))],
                            r"distill needs --out runs/NAME"),
    # ---- the run folder
    "bad-run-name": (lambda c: [*c.finetune(c.data_dir), "--out", str(c.tmp / "runs" / "bad name!")],
                     r"invalid run name 'bad name!'"),
}

# id -> argv builder; each must train to the end
WORKS: dict[str, Callable[[Case], list[str]]] = {
    "bom": lambda c: c.finetune(c.file("train.csv", "\ufeff" + GOOD_CSV)),
    "quoted-newlines": lambda c: c.finetune(c.file("train.csv", "text,label\n" + "".join(
        f'"{text},\nsecond line ""quoted""",{label}\n' for text, label in ROWS))),
    "duplicate-rows": lambda c: c.finetune(c.file("train.csv", GOOD_CSV + GOOD_CSV.split("\n", 1)[1])),
}

SUBPROCESS_CASES = ["missing-file", "non-utf8", "hub-unreachable", "lr-zero", "existing-out-folder"]


@pytest.fixture
def case(tmp_path, tiny_data_dir, tiny_teacher_dir) -> Case:
    return Case(tmp_path, tiny_data_dir, tiny_teacher_dir)


def run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_subprocess(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "distill_core", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def assert_refused(code: int, out: str, err: str, match: str) -> None:
    import re

    lines = err.strip("\n").splitlines()
    assert code == 2, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith("error: ")
    assert re.search(match, lines[0]), lines[0]
    assert out == ""


def assert_no_run_folder(case: Case) -> None:
    assert not case.out.exists()
    runs = case.tmp / "runs"
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


@pytest.mark.parametrize("name", list(BAD), ids=list(BAD))
def test_bad_input_is_one_line_and_leaves_no_run(name, case, capsys):
    build, match = BAD[name]
    argv = build(case)
    capsys.readouterr()  # what building the case printed (e.g. a model's save progress) is not the CLI's output
    assert_refused(*run_in_process(argv, capsys), match)
    assert_no_run_folder(case)


@pytest.mark.parametrize("name", list(WORKS), ids=list(WORKS))
def test_odd_but_valid_input_works(name, case, capsys):
    code, out, err = run_in_process(WORKS[name](case), capsys)
    assert code == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["state"] == "done"
    assert json.loads((case.out / "status.json").read_text())["state"] == "done"
    if name == "quoted-newlines":  # the newline stays inside the text, the row count is right
        config = json.loads((case.out / "config.json").read_text())
        assert sum(config["provenance"]["split_sizes"].values()) == 40


def existing_out_argv(case: Case) -> list[str]:
    case.out.mkdir(parents=True)
    (case.out / "notes.txt").write_text("mine", encoding="utf-8")
    return case.finetune(case.data_dir)


def test_existing_out_folder_is_refused_and_kept(case, capsys):
    argv = existing_out_argv(case)
    assert_refused(*run_in_process(argv, capsys), r"run folder .* already exists")
    assert [p.name for p in case.out.iterdir()] == ["notes.txt"]
    assert (case.out / "notes.txt").read_text() == "mine"


def test_existing_file_as_out_is_refused(case, capsys):
    target = case.tmp / "passwd"
    target.write_text("root:x:0:0\n", encoding="utf-8")
    argv = [*case.finetune(case.data_dir), "--out", str(target)]
    assert_refused(*run_in_process(argv, capsys), r"already exists")
    assert target.read_text() == "root:x:0:0\n"


def test_path_traversal_in_out_writes_nothing_outside(tmp_path, case, capsys, monkeypatch):
    """--out runs/../../../escape from tmp/work/sub would land beside tmp: refused, nothing written anywhere."""
    workdir = tmp_path / "work" / "sub"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    argv = [*case.finetune(case.data_dir), "--out", "runs/../../../../escape"]
    assert_refused(*run_in_process(argv, capsys), r"contains '\.\.'")
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
    assert not (workdir / "runs").exists()
    assert not any(tmp_path.rglob("escape"))


@pytest.mark.parametrize("name", SUBPROCESS_CASES, ids=SUBPROCESS_CASES)
def test_bad_input_as_a_real_subprocess(name, case):
    if name == "existing-out-folder":
        argv, match = existing_out_argv(case), r"already exists"
    else:
        build, match = BAD[name]
        argv = build(case)
    code, out, err = run_subprocess(argv, case.tmp)
    assert_refused(code, out, err, match)
    if name == "existing-out-folder":
        assert [p.name for p in case.out.iterdir()] == ["notes.txt"]
    else:
        assert_no_run_folder(case)
