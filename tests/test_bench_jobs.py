"""Benchmarks you can quote: the page measures in its own process with the CLI's engine, models interleaved, and
the two faces agree; a noisy measurement says so on the page and on the CLI.

Real models (a shallow and a deep tiny BERT saved with save_pretrained), real `python -m distill_core`
processes, the real page through AppTest. Never asserts a speed: only that two measurements of the same thing
agree within the spread they state, and that warnings appear when the spread is wide."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core import bench_jobs, bench_stats, storage
from distill_core.errors import UserError

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
BENCH_ARGS = ["--batch-sizes", "1", "--seq-lens", "16", "--threads", "1", "--warmup", "3", "--repeats", "40"]
WAIT_S = 300  # a bound on waiting for the benchmark process (imports torch on a busy 2-core machine), not a speed


def _save_depth(source: Path, target: Path, layers: int) -> Path:
    """The tiny teacher's shape and vocabulary with ``layers`` encoder layers, saved as a model folder."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(layers)
    config = AutoConfig.from_pretrained(source)
    config.num_hidden_layers = layers
    BertForSequenceClassification(config).save_pretrained(target, safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def two_depths(tiny_teacher_dir, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("depths")
    return (_save_depth(tiny_teacher_dir, folder / "shallow-l1", 1),
            _save_depth(tiny_teacher_dir, folder / "deep-l6", 6))


@pytest.fixture
def page_env(monkeypatch, tmp_path, two_depths) -> Path:
    runs_dir = tmp_path / "runs"
    monkeypatch.setenv("KD_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("KD_EXTRA_MODELS", os.pathsep.join(str(p) for p in two_depths))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return runs_dir


def _open_benchmark_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    at.switch_page("app_pages/benchmark.py").run()
    assert not at.exception, at.exception
    return at


def _wait_for_job(root: Path) -> dict:
    deadline = time.monotonic() + WAIT_S
    while (job := bench_jobs.latest(root)) is not None and job["state"] == "running":
        assert time.monotonic() < deadline, f"the benchmark process is still running after {WAIT_S} s: {job}"
        time.sleep(1.0)
    assert job is not None
    return job


def _overlap(a: dict, b: dict) -> bool:
    return max(a["speedup_p25"], b["speedup_p25"]) <= min(a["speedup_p75"], b["speedup_p75"])


# ---------------------------------------------------------------- (a) the page and the CLI agree
@pytest.mark.slow  # an AppTest and two benchmark processes: ~40 s idle, ~140 s with the 2 cores at load 12
def test_page_and_cli_give_the_same_paired_speedup_within_their_spread(page_env, two_depths, tmp_path):
    shallow, deep = (str(p.resolve()) for p in two_depths)
    at = _open_benchmark_page()
    at.multiselect(key="b_models").set_value([deep, shallow])
    at.multiselect(key="b_batch").set_value([1])
    at.multiselect(key="b_seq").set_value([16])
    at.number_input(key="b_threads").set_value(1)
    at.number_input(key="b_repeats").set_value(40)
    at.number_input(key="b_warmup").set_value(3).run()
    next(b for b in at.button if b.label == "Run benchmark").click().run()
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    # The CLI measures at the same time, on the other core: paired rounds make both robust to the other's load.
    cli = subprocess.Popen([sys.executable, "-m", "distill_core", "benchmark", "--model", shallow, "--model", deep,
                            *BENCH_ARGS, "--out", "cli.json"], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        _, cli_stderr = cli.communicate(timeout=WAIT_S)
    finally:
        cli.kill()
    job = _wait_for_job(page_env)
    assert job["state"] == "done", job
    at = _open_benchmark_page()  # a fresh session (a reload): the result is read back from the runs folder
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    page_speedups = at.dataframe[0].value.to_dict("records")  # the headline table, as the page shows it
    assert len(page_speedups) == 1 and page_speedups[0]["rounds"] == 20
    captions = "\n".join(c.value for c in at.caption)
    assert "usable core" in captions and "torch thread" in captions and "load average" in captions

    assert cli.returncode == 0, cli_stderr[-3000:]
    (cli_speedup,) = json.loads((tmp_path / "cli.json").read_text(encoding="utf-8"))["speedups"]
    assert cli_speedup["baseline"] == deep and cli_speedup["model"] == shallow  # the largest is the baseline
    assert f"{cli_speedup['speedup']:.2f}x as fast as" in cli_stderr  # the CLI prints the paired ratio
    page = page_speedups[0]
    assert page["speedup_p25"] <= page["speedup"] <= page["speedup_p75"]
    assert _overlap(page, cli_speedup), (page, cli_speedup)
    # A 6-layer encoder does more work than a 1-layer one: the shallow model is faster on both faces.
    assert page["speedup"] > 1 and cli_speedup["speedup"] > 1


def test_one_benchmark_at_a_time_and_stop_ends_it(page_env, two_depths):
    deep = str(two_depths[1].resolve())
    request = bench_jobs.Request(specs=[deep], batch_sizes=[1, 2, 4, 8], seq_lens=[512], precisions=["fp32"],
                                 threads=1, warmup=0, repeats=200, labels={deep: "deep"})
    bench_jobs.start(page_env, request, allowed_specs=[deep], hosted=False)
    with pytest.raises(UserError, match="already running"):
        bench_jobs.start(page_env, request, allowed_specs=[deep], hosted=False)
    assert bench_jobs.stop(page_env)
    job = _wait_for_job(page_env)
    assert job["state"] == "cancelled", job
    assert not bench_jobs.stop(page_env)
    assert bench_jobs.last_result(page_env) is None  # a stopped benchmark leaves no result to show


# ---------------------------------------------------------------- hosted caps and bad requests
def test_a_request_lists_every_problem_in_the_pages_words():
    request = bench_jobs.Request(specs=["/etc", "x"], batch_sizes=[], seq_lens=[16], precisions=["fp32"],
                                 repeats=1000, warmup=-1)
    with pytest.raises(UserError) as caught:
        bench_jobs.check_request(request, allowed_specs=["x"], hosted=False)
    message = str(caught.value)
    for words in ("Models: '/etc'", "Batch sizes: choose", "Timed repeats: 1000", "Warm-up passes: -1"):
        assert words in message


def test_hosted_mode_caps_cells_and_repeats():
    specs = [f"m{i}" for i in range(4)]
    request = bench_jobs.Request(specs=specs, batch_sizes=[1, 32], seq_lens=[16, 64], precisions=["fp32"],
                                 repeats=bench_jobs.HOSTED_MAX_REPEATS + 1)
    bench_jobs.check_request(request.__class__(**{**request.__dict__, "repeats": 20}), specs, hosted=False)
    with pytest.raises(UserError) as caught:
        bench_jobs.check_request(request, specs, hosted=True)
    assert f"limit {bench_jobs.HOSTED_MAX_CELLS}" in str(caught.value)
    assert f"outside 1-{bench_jobs.HOSTED_MAX_REPEATS}" in str(caught.value)


# ---------------------------------------------------------------- (b) a noisy measurement is flagged
def _noisy_result(model: str) -> dict:
    """A result whose timings spread as on a loaded machine: most passes ~10 ms, a third of them 3-5x slower."""
    latencies = [10.0, 10.2, 9.9, 31.0, 10.1, 48.0, 10.3, 35.0, 9.8, 52.0, 10.0, 40.0]
    row = {"model": model, "precision": "fp32", "batch_size": 1, "seq_len": 16, "threads": 1,
           **bench_stats.latency_summary(latencies), "samples_per_s": 100.0, "repeats": len(latencies),
           "parameters": 1000, "size_mb": 1.0}
    machine = {"cpu_model": "test CPU", "usable_cores": 2, "threads": 1, "torch_version": "x", "date": "today",
               "load_before": [3.5, 3.0, 2.0], "load_after": [3.9, 3.1, 2.0]}
    warnings = [w for w in [bench_stats.load_warning(machine["load_before"], machine["load_after"], 2, 1)] if w]
    return {"rows": [row], "machine": machine, "warnings": warnings + bench_stats.spread_warnings([row]),
            "labels": {model: "noisy model"}, "speedups": []}


def test_a_wide_spread_and_a_busy_machine_are_warnings():
    result = _noisy_result("m")
    kinds = [w["kind"] for w in result["warnings"]]
    assert kinds == ["busy", "spread"]
    tight = {**result["rows"][0], **bench_stats.latency_summary([10.0, 10.1, 9.9, 10.2, 10.0, 10.1])}
    assert bench_stats.spread_warnings([tight]) == []
    assert bench_stats.load_warning([0.2], [2.1], usable_cores=2, threads=2) is None  # its own threads only


def test_the_page_shows_a_noisy_results_warnings(page_env):
    job_dir = bench_jobs.jobs_dir(page_env) / "20260101-000000-abcdef"
    job_dir.mkdir(parents=True)
    request = bench_jobs.Request(specs=["m"], batch_sizes=[1], seq_lens=[16], precisions=["fp32"])
    storage.write_json_atomic(job_dir / bench_jobs.REQUEST_FILE, request.__dict__)
    storage.write_json_atomic(job_dir / bench_jobs.PROGRESS_FILE, {"state": "done", "done": 1, "total": 1})
    storage.write_json_atomic(job_dir / bench_jobs.RESULT_FILE, _noisy_result("m"))
    at = _open_benchmark_page()
    warnings = "\n".join(w.value for w in at.warning)
    assert "the machine was busy" in warnings and "Timings spread widely in 1 measurement" in warnings
    assert "noisy model at fp32, batch 1, length 16" in warnings  # named as the page names it


def test_the_cli_warns_when_cpu_burners_compete_with_the_measurement(two_depths, capsys):
    # Real noise: more busy processes than cores, against a measurement asking for every core; its OpenMP threads
    # are preempted mid-pass, so some passes take several time slices longer than others. The CLI runs in this
    # process (torch already imported) so that the burners compete with the timing, not with the imports.
    from distill_core import cli

    cores = len(os.sched_getaffinity(0))
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores + 1)]
    try:
        code = cli.main(["benchmark", "--model", str(two_depths[0]), "--batch-sizes", "1", "--seq-lens", "8",
                         "--threads", str(max(cores, 2)), "--warmup", "1", "--repeats", "20", "--quiet"])
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    result = json.loads(out)
    assert result["warnings"], result["rows"]
    assert any(line.startswith("warning: ") for line in err.splitlines())
