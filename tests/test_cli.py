"""The CLI end to end as real subprocesses (`python -m distill_core ...`) in a temporary folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--max-steps", "2", "--batch-size", "16", "--train-samples", "32", "--eval-samples", "16",
        "--max-length", "32"]


def cli(args: list[str], cwd: Path, env_root: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KD_CACHE_DIR": str(env_root / "kd-cache"),
           "KD_RUNS_DIR": str(env_root / "kd-runs"), "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1"}  # one torch thread: see test_train._one_torch_thread
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
