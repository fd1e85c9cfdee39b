"""The CLI end to end as real subprocesses (`python -m distill_core ...`) in a temporary folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--epochs", "1", "--max-steps", "2", "--batch-size", "16", "--train-samples", "32", "--eval-samples", "16",
        "--max-length", "32"]


def cli(args: list[str], cwd: Path, env_root: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KD_CACHE_DIR": str(env_root / "kd-cache"),
           "KD_RUNS_DIR": str(env_root / "kd-runs"),
           "OMP_NUM_THREADS": "1"}  # one torch thread: see conftest.one_torch_thread
    return subprocess.run([sys.executable, "-m", "distill_core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def ok_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # stdout holds the JSON result and nothing else


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def finetuned(workdir, tiny_data_dir, tiny_teacher_dir) -> tuple[Path, dict]:
    # Without --quiet: progress bars and messages go to stderr, stdout must still hold only the JSON.
    proc = cli(["finetune", "--data", str(tiny_data_dir), "--model", str(tiny_teacher_dir), "--out", "runs/ft",
                *TINY], workdir, workdir)
    return workdir / "runs" / "ft", ok_json(proc)


@pytest.fixture(scope="module")
def distilled(workdir, tiny_data_dir, finetuned) -> tuple[Path, dict]:
    proc = cli(["distill", "--data", str(tiny_data_dir), "--teacher", "runs/ft", "--student", "truncate:1",
                "--out", "runs/kd", "--temperature", "2", "--alpha", "0.5", *TINY, "--quiet"], workdir, workdir)
    return workdir / "runs" / "kd", ok_json(proc)


def test_finetune_prints_a_json_summary_and_fills_the_run(finetuned):
    run_dir, summary = finetuned
    assert summary["state"] == "done" and summary["run"] == "runs/ft"
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert (run_dir / "model" / "model.safetensors").is_file()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "done"
    kinds = [json.loads(line)["kind"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "step" in kinds and "epoch" in kinds


def test_distill_reports_teacher_and_agreement(distilled):
    run_dir, summary = distilled
    assert summary["state"] == "done"
    assert {"test_accuracy", "teacher_test_accuracy", "agreement"} <= summary.keys()
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["student"]["agreement"] == summary["agreement"]
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["mode"], config["student"], config["teacher"]) == ("distill", "truncate:1", "runs/ft")
    assert (config["temperature"], config["alpha"], config["dropout"]) == (2.0, 0.5, 0.3)


def test_evaluate_writes_metrics(workdir, tiny_data_dir, distilled):
    proc = cli(["evaluate", "--data", str(tiny_data_dir), "--model", "runs/kd", "--reference", "runs/ft",
                "--max-length", "32", "--out", "kd-eval.json", "--quiet"], workdir, workdir)
    report = ok_json(proc)
    assert report["n_examples"] == 80 and report["split"] == "test"
    assert 0.0 <= report["agreement"] <= 1.0
    assert len(report["confusion_matrix"]) == 4
    assert json.loads((workdir / "kd-eval.json").read_text())["accuracy"] == report["accuracy"]
    # The distillation run scored the same model on the same test split.
    assert report["accuracy"] == pytest.approx(json.loads((distilled[0] / "eval.json").read_text())
                                               ["student"]["accuracy"])


def test_list_shows_both_runs(workdir, finetuned, distilled):
    listing = ok_json(cli(["list", "--runs-dir", "runs"], workdir, workdir))
    by_id = {run["id"]: run for run in listing["runs"]}
    assert {"ft", "kd"} <= by_id.keys()
    assert by_id["kd"]["mode"] == "distill" and by_id["kd"]["state"] == "done"


def test_benchmark_writes_rows(workdir, tiny_teacher_dir):
    out = workdir / "bench.json"
    proc = cli(["benchmark", "--model", str(tiny_teacher_dir), "--batch-sizes", "1", "--seq-lens", "8",
                "--repeats", "2", "--warmup", "1", "--out", str(out), "--quiet"], workdir, workdir)
    result = ok_json(proc)
    saved = json.loads(out.read_text())
    assert saved["rows"] and len(saved["rows"]) == len(result["rows"]) == 1
    row = saved["rows"][0]
    assert row["batch_size"] == 1 and row["seq_len"] == 8


# ---------------------------------------------------------------- help and presets (argument building only)
def subparsers() -> dict:
    import argparse

    from distill_core.cli_args import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_option_of_every_command_has_help():
    commands = subparsers()
    assert set(commands) == {"finetune", "distill", "pipeline", "evaluate", "benchmark", "push", "resume", "export",
                             "worker", "list", "report", "showcase", "estimate", "delete", "rename", "probe",
                             "bench-job", "sweep"}
    for command, parser in commands.items():
        for action in parser._actions:
            assert action.help and action.help.strip(), f"{command} {'/'.join(action.option_strings)} has no help"
        parser.format_help()  # a stray '%' in a help text would raise here


def test_config_field_flags_use_the_field_help_and_show_the_default():
    from distill_core.cli_args import DATA_FIELDS, FIELD_OF_DEST
    from distill_core.config import config_field, help_for

    checked = set()
    for command in ("finetune", "distill", "pipeline", "evaluate"):
        for action in subparsers()[command]._actions:
            name = FIELD_OF_DEST.get(action.dest)
            if name is None or (command == "evaluate" and name not in DATA_FIELDS):  # evaluate's own --model etc.
                continue
            text = action.help.replace("%%", "%")
            assert text.startswith(help_for(name)), (command, action.dest)
            default = config_field(name).default
            # an empty default (layer_map: "" = evenly spaced) is said by the help itself, not as "Default: ."
            model_own = command == "finetune" and name in ("dropout", "attention_dropout")
            if isinstance(default, (int, float, str)) and default != "" and not model_own:
                assert text.endswith(f" Default: {default}."), (command, action.dest, text)
            checked.add(name)
    assert {"source", "text_column", "lr", "kd_loss", "log_every_steps", "teacher_cache", "student",
            "teacher"} <= checked
    for dest in ("dropout", "attention_dropout"):
        finetune_dropout = next(a for a in subparsers()["finetune"]._actions if a.dest == dest)
        assert finetune_dropout.help.endswith("Default: the model's own.")


def config_of(*argv: str):
    from distill_core.cli_args import build_parser, config_from_args

    return config_from_args(build_parser().parse_args(list(argv)))


def test_a_preset_fills_what_the_command_line_leaves_out():
    from distill_core.presets import PRESETS

    seed = PRESETS["Seed recipe"]
    config = config_of("distill", "--preset", "Seed recipe", "--out", "runs/x")
    assert (config.data.source, config.teacher, config.student) == (seed.data_source, seed.teacher, seed.student)
    assert (config.optimizer, config.epochs, config.lr, config.patience) == ("adam", 5, 2e-5, None)
    assert config.extra == {"preset": "Seed recipe"}
    config.validate()


def test_explicit_flags_win_over_the_preset_even_at_the_default_value():
    config = config_of("distill", "--preset", "Seed recipe", "--out", "runs/x", "--data", "my/data", "--teacher",
                       "runs/t", "--optimizer", "adamw", "--epochs", "1", "--patience", "2", "--max-length", "64")
    # adamw and patience 2 are the config defaults, yet given on the command line: the preset must not undo them.
    assert (config.optimizer, config.epochs, config.patience) == ("adamw", 1, 2)
    assert (config.data.source, config.teacher, config.data.max_length) == ("my/data", "runs/t", 64)


def test_a_pipeline_preset_supplies_the_teacher_stage():
    from distill_core.cli_args import build_parser, teacher_stage_from_args
    from distill_core.presets import PRESETS

    quick = PRESETS["Offline quick start"]
    argv = ["pipeline", "--preset", quick.name, "--data", "data/ag", "--out", "runs/p", "--teacher-lr", "3e-4"]
    args = build_parser().parse_args(argv)
    stage = teacher_stage_from_args(args)
    assert (stage.base, stage.epochs, stage.lr) == (quick.teacher_stage.base, quick.teacher_stage.epochs, 3e-4)
    config = config_of(*argv)
    assert (config.student, config.teacher, config.dropout) == (quick.student, quick.teacher_stage.base, 0.1)
    assert (config.data.train_samples, config.data.eval_samples, config.data.max_length) == (400, 200, 128)
    assert config.extra == {"preset": quick.name}


def test_without_a_preset_the_config_defaults_apply():
    from distill_core.config import DataConfig, TrainConfig

    config = config_of("distill", "--data", "d", "--teacher", "t", "--student", "s", "--out", "runs/x")
    assert config == TrainConfig(mode="distill", data=DataConfig(source="d"), student="s", teacher="t")
    finetune = config_of("finetune", "--data", "d", "--model", "m", "--out", "runs/x", "--train-samples", "0",
                         "--max-steps", "0", "--patience", "0", "--no-teacher-cache", "--pad-to-multiple-of", "0")
    # 0 means "unset" on the command line, as in the dashboard; a fine-tune keeps the model's own dropout.
    assert (finetune.data.train_samples, finetune.max_steps, finetune.patience) == (None, None, None)
    assert (finetune.dropout, finetune.teacher_cache, finetune.extra) == (None, False, {})
    assert finetune.attention_dropout is None
    assert finetune.pad_to_multiple_of is None  # 0: auto (16 when training in bf16, else 1)
    assert config_of("distill", "--data", "d", "--teacher", "t", "--student", "s", "--out", "runs/x",
                     "--attention-dropout", "0").attention_dropout == 0.0


def test_distill_with_a_pipeline_preset_is_refused_in_one_line(tmp_path):
    proc = cli(["distill", "--preset", "Offline quick start", "--data", "d", "--out", "runs/x"], tmp_path, tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("error: preset 'Offline quick start' fine-tunes its own teacher first")
    assert "pipeline --preset 'Offline quick start'" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_help_prints_the_field_help(tmp_path):
    from distill_core.config import help_for

    proc = cli(["distill", "--help"], tmp_path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    flat = " ".join(proc.stdout.split())  # argparse wraps the lines
    assert help_for("teacher") in flat and "--preset NAME" in flat and "Default: 2e-05." in flat
