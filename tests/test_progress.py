"""distill_core.progress (phases, ETA over what is left, stages) and the estimate it feeds: a real tiny worker run
records its phases to the store, and the estimate before Start is calibrated from such runs or a probe."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from distill_core import pipeline, progress, runs
from distill_core.app import estimate, views
from distill_core.config import DataConfig, TrainConfig

WORKER_TIMEOUT_S = 240


class FakeClock:
    """A clock the test moves by hand: the recorder's timing without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recorder_with_log(clock: FakeClock) -> tuple[progress.Recorder, list[dict], list[dict]]:
    statuses: list[dict] = []
    rows: list[dict] = []
    recorder = progress.Recorder(lambda **fields: statuses.append(fields), rows.append, clock=clock)
    return recorder, statuses, rows


def test_phases_are_recorded_in_order_with_their_seconds_and_counts():
    clock = FakeClock()
    recorder, statuses, rows = recorder_with_log(clock)
    recorder.start("preparing")
    clock.now += 5
    recorder(progress.phase_event("preparing", "preparing: loading student"))  # same phase: no new row
    recorder(progress.phase_event("tokenising", total=100))
    clock.now += 1
    recorder({"kind": "start", "epochs": 2, "total_steps": 10})
    recorder(progress.phase_event("training", total=10, epoch=1, epochs=2))
    clock.now += 0.2
    recorder({"kind": "step", "step": 5, "total_steps": 10, "epoch": 1.0})
    clock.now += 9.8
    recorder({"kind": "train_progress", "done": 5, "total": 10, "count": 40})
    recorder(progress.phase_event("validation", total=20, epoch=1))
    recorder({"kind": "valid_progress", "done": 20, "total": 20})
    clock.now += 2
    summary = recorder.finish()
    assert [(r["phase"], r["seconds"], r["count"]) for r in rows] == [
        ("preparing", 5.0, 0), ("tokenising", 1.0, 0), ("training", 10.0, 40), ("validation", 2.0, 20)]
    assert summary == {"train_samples_per_s": 4.0}
    # every phase change was written at once; the step within 1 s of the training phase start was throttled
    phases = [s["progress"]["phase"] for s in statuses]
    assert phases[:4] == ["preparing", "preparing", "tokenising", "training"] and "validation" in phases
    assert all(s["phase"] == s["progress"]["phase"] for s in statuses)


def test_bar_text_names_the_phase_and_its_counts():
    snapshot = progress.Snapshot(phase="training", message="training", done=12, total=40, epoch=1, epochs=2)
    assert progress.bar_text(snapshot) == "training · step 12 / 40 · epoch 1 / 2"
    teacher = progress.Snapshot(phase="teacher_logits", message="teacher logits for 300 train examples", done=128,
                                total=300)
    assert progress.bar_text(teacher) == "teacher logits for 300 train examples · 128 / 300"
    assert progress.bar_text(progress.Snapshot()) == "starting"


PLAN = progress.Plan({"preparing": 10.0, "tokenising": 2.0, "teacher_logits": 0.0, "training": 40.0,
                      "validation": 8.0, "saving": 2.0, "test_evaluation": 5.0}, epochs=2)


def test_eta_before_and_during_preparing_covers_every_phase():
    assert progress.remaining_seconds(progress.Snapshot(), PLAN, now=0) == PLAN.total == 67.0
    preparing = progress.Snapshot(phase="preparing", phase_started_at=100.0)
    assert progress.remaining_seconds(preparing, PLAN, now=104.0) == pytest.approx(67.0 - 4.0)
    # preparing that overruns its plan leaves everything after it, never a negative share
    assert progress.remaining_seconds(preparing, PLAN, now=130.0) == pytest.approx(57.0)


def test_eta_during_training_uses_the_measured_rate_and_the_passes_to_come():
    # epoch 1, 10 of 40 steps done in 20 s: 2 s a step (the plan said 1 s), so 60 s of training are left;
    # validation and saving still have both epochs to come, then the test evaluation
    training = progress.Snapshot(phase="training", epoch=1, epochs=2, done=10, total=40, steps=10, total_steps=40,
                                 phase_started_at=100.0, spent={"preparing": 9.0, "tokenising": 1.0},
                                 passes={"preparing": 1, "tokenising": 1})
    assert progress.remaining_seconds(training, PLAN, now=120.0) == pytest.approx(60 + 8 + 2 + 5)
    # in epoch 2's validation, with epoch 1's validation measured at 6 s: half of this pass, one save, the test
    validation = progress.Snapshot(phase="validation", epoch=2, epochs=2, done=10, total=20, steps=40,
                                   total_steps=40, phase_started_at=200.0,
                                   spent={"training": 80.0, "validation": 6.0, "saving": 1.0},
                                   passes={"training": 2, "validation": 1, "saving": 1, "preparing": 1})
    assert progress.remaining_seconds(validation, PLAN, now=203.0) == pytest.approx(3 + 1 + 5)
    testing = progress.Snapshot(phase="test_evaluation", done=50, total=100, phase_started_at=300.0,
                                passes={"training": 2, "validation": 2, "saving": 2})
    assert progress.remaining_seconds(testing, PLAN, now=302.0) == pytest.approx(2.0)


def test_stages_combine_into_one_job():
    elapsed, left, fraction = progress.combined([progress.StageClock(30, 10), progress.StageClock(0, 60)])
    assert (elapsed, left) == (30, 70) and fraction == pytest.approx(0.3)
    assert progress.combined([progress.StageClock(0, 0)])[2] == 0.0


def test_partial_epochs_are_not_counted_as_done(tmp_path):
    run_dir = runs.create_run(tmp_path, "stopped", {"mode": "finetune", "epochs": 2})
    runs.append_metric(run_dir, {"kind": "epoch", "epoch": 1, "valid_accuracy": 0.4, "partial": True})
    assert views.live_view(run_dir).epochs_done == 0
    runs.append_metric(run_dir, {"kind": "epoch", "epoch": 1, "valid_accuracy": 0.5, "partial": False})
    assert views.live_view(run_dir).epochs_done == 1


# ----------------------------------------------------------------------------------------------------------------
# a real worker, calibration from its record, the probe

def tiny_config(source: Path, teacher: Path, **overrides) -> TrainConfig:
    return TrainConfig(mode="distill", data=DataConfig(source=str(source), train_samples=96, eval_samples=40),
                       student="truncate:1", teacher=str(teacher), epochs=2, batch_size=16, log_every_steps=1,
                       patience=None, **overrides)


def follow(run_dir: Path, timeout_s: float = WORKER_TIMEOUT_S) -> list[str]:
    """The phases status.json shows while the worker runs (polled), until the run ends."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while runs.read_status(run_dir).get("state") in runs.LIVE_STATES:
        assert time.monotonic() < deadline, runs.read_status(run_dir)
        phase = (runs.read_status(run_dir).get("progress") or {}).get("phase")
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
        time.sleep(0.05)
    return seen


def test_a_worker_run_records_its_phases_and_calibrates_the_next_estimate(data_root, tmp_path, tiny_teacher_dir):
    root = tmp_path / "runs"
    config = tiny_config(data_root / "tiny", tiny_teacher_dir)
    sizes = (96, 40, 40)
    before = estimate.estimate_job(config, None, sizes, root, allow_probe=False)
    assert before.source == "reference" and "no past runs" in before.explanation

    run_dir = pipeline.start_run(root, "tiny", config).follow
    seen = follow(run_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "done", (status, runs.log_path(run_dir).read_text()[-2000:])
    assert seen and seen[0] == "preparing", seen
    assert len(seen) >= 3, f"status.json never showed the phases change: {seen}"
    ends = [r for r in runs.read_metrics(run_dir) if r.get("kind") == "phase_end"]
    order = [r["phase"] for r in ends]
    assert order[:3] == ["preparing", "tokenising", "teacher_logits"], order
    assert order.count("training") == order.count("validation") == 2 and order[-1] == "test_evaluation"
    assert next(r for r in ends if r["phase"] == "teacher_logits")["count"] == 96
    assert sum(r["count"] for r in ends if r["phase"] == "training") == 2 * 96
    assert status["wall_s"] > 0 and status["train_samples_per_s"] > 0
    assert status["sizes"] == {"train": 96, "validation": 40, "test": 40}
    assert status["shape"] == {"student": [1, 64], "teacher": [2, 64]}
    view = views.live_view(run_dir)
    assert view.epochs_done == 2 and view.fraction == 1.0 and view.wall_s == status["wall_s"]

    after = estimate.estimate_job(config, None, sizes, root, allow_probe=False)
    # (a busy machine adds "× N for the load other work puts on the CPUs now" before "on this machine")
    assert after.source == "past runs" and after.explanation.startswith("from 1 past run of this shape")
    assert after.explanation.endswith("on this machine")
    # calibrated on that very run, the estimate of an identical one is its wall time give or take the start-up
    assert after.seconds == pytest.approx(status["finished_at"] - status["created_at"], rel=0.3)
    # another shape is scaled from it: a student twice as deep costs about twice as much to train
    deeper = estimate.estimate_job(replace(config, student="config:L2-H64"), None, sizes, root, allow_probe=False)
    assert deeper.source == "past runs" and "scaled" in deeper.explanation
    assert deeper.phases["training"] == pytest.approx(2 * after.phases["training"], rel=0.01)


def test_the_probe_times_the_models_once_and_is_cached(tmp_path, tiny_teacher_dir, one_torch_thread):
    config = tiny_config(tmp_path, tiny_teacher_dir)
    first = estimate.estimate_job(config, None, (96, 40, 40), tmp_path / "no-runs")
    assert first.source == "probe" and "-second probe of these models on this machine" in first.explanation
    assert first.phases["training"] > 0 and first.phases["teacher_logits"] > 0
    cached = estimate.probe_costs(config, cached_only=True)
    assert cached is not None and estimate.estimate_job(config, None, (96, 40, 40), None).seconds == first.seconds


def test_the_probe_never_runs_for_a_hub_model_that_is_not_cached(tmp_path):
    config = TrainConfig(mode="finetune", data=DataConfig(source=str(tmp_path)), student="org/not-downloaded")
    assert estimate.probe_costs(config) is None
    told = estimate.estimate_job(config, None, (100, 10, 10), None)
    assert told.source == "reference" and told.explanation.endswith("probe unavailable")


def test_a_pipeline_estimate_sums_its_stages_and_warns_when_long(tmp_path, tiny_teacher_dir):
    distill = tiny_config(tmp_path, tiny_teacher_dir)
    teacher = pipeline.teacher_stage_config(distill, str(tiny_teacher_dir), epochs=1, lr=1e-4)
    told = estimate.estimate_job(distill, teacher, (96, 40, 40), None, allow_probe=False)
    assert len(told.stages) == 2 and told.seconds == pytest.approx(sum(told.stages))
    assert not told.long
    huge = estimate.estimate_job(replace(distill, epochs=400), teacher, (100_000, 1000, 1000), None,
                                 allow_probe=False)
    assert huge.long


def test_the_page_probes_in_a_background_process_once(tmp_path, tiny_teacher_dir, monkeypatch):
    """The Train page never times models in the server: a detached `probe` process fills the probe cache,
    a second ask while it runs starts nothing, and once it is done the estimate says it came from the probe."""
    from distill_core.app import probe

    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KD_ESTIMATE_PROBE", "1")
    config = tiny_config(tmp_path, tiny_teacher_dir)
    assert estimate.estimate_job(config, None, (96, 40, 40), None, allow_probe=False).source == "reference"
    assert estimate.probe_in_background([config])
    markers = list((tmp_path / "cache" / "estimate_probes").glob("*.pid"))
    assert len(markers) == 1
    first_pid = json.loads(markers[0].read_text())["pid"]
    assert estimate.probe_in_background([config])  # still running (or just done): never a second process
    deadline = time.monotonic() + 300
    while estimate.estimate_job(config, None, (96, 40, 40), None, allow_probe=False).source != "probe":
        assert time.monotonic() < deadline, (markers[0].with_suffix(".log").read_text()
                                             if markers[0].with_suffix(".log").exists() else "no log")
        time.sleep(0.5)
    assert json.loads(markers[0].read_text())["pid"] == first_pid
    assert not probe.pending([j for j in probe.jobs_for(config) if j is not None])
    assert not estimate.probe_in_background([config])  # all cached: nothing to start


def test_background_probes_are_off_when_the_switch_says_so(tmp_path, tiny_teacher_dir, monkeypatch):
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KD_ESTIMATE_PROBE", "0")
    assert not estimate.probe_in_background([tiny_config(tmp_path, tiny_teacher_dir)])
    assert not (tmp_path / "cache" / "estimate_probes").exists()


def test_calibration_divides_out_the_load_a_past_run_met(tmp_path):
    """A phase measured while other work crowded the CPUs (load 8 on 2 cores: 4x slower) counts as a quarter
    of its seconds; the estimate then multiplies by the crowding it meets now."""
    assert estimate.contention(8.0, 2) == 4.0
    assert estimate.contention(1.0, 2) == 1.0 and estimate.contention(None, 2) == 1.0
    run_dir = runs.create_run(tmp_path, "crowded", {"mode": "finetune", "student": "x"})
    for load in (8.0 * progress.usable_cores() / 2, None):
        runs.append_metric(run_dir, {"kind": "phase_end", "phase": "training", "seconds": 40.0, "count": 10,
                                     "load_1m": load})
    runs.set_status(run_dir, "done")
    past = estimate.past_run(run_dir)
    assert past is not None
    assert past.per_unit["train_s_per_example"] == pytest.approx((40.0 / 4 + 40.0) / 20)


def test_the_probe_times_each_pass_in_the_precision_the_run_gives_it(tmp_path, tiny_teacher_dir, one_torch_thread,
                                                                     monkeypatch):
    """On a CPU with native bf16 (simulated: the flags decide, the arithmetic runs on any CPU) a bf16 run's
    student steps, validation and teacher pass over the training rows are timed under bf16 autocast, cached apart
    from fp32; its test scoring (the saved student, the teacher's test pass) is timed in fp32."""
    from distill_core import hardware
    from distill_core.app import probe

    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(hardware, "detect", lambda: hardware.Hardware(
        "cpu", cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16"}), cpu_capability="AVX512"))
    fp32_jobs = probe.jobs_for(tiny_config(tmp_path, tiny_teacher_dir, mixed_precision="no"))
    bf16_jobs = probe.jobs_for(tiny_config(tmp_path, tiny_teacher_dir, mixed_precision="bf16"))
    assert fp32_jobs is not None and bf16_jobs is not None
    assert [job.precision for job in fp32_jobs if job] == ["no"] * 5
    assert [job.precision for job in bf16_jobs if job] == ["bf16", "bf16", "no", "bf16", "no"]
    assert bf16_jobs.test == fp32_jobs.infer and bf16_jobs.teacher_test == fp32_jobs.teacher  # shared timings
    step = probe.timed(bf16_jobs.train)
    assert step is not None and step.per_example > 0 and step.per_step > 0  # the AdamW update, timed apart
    assert probe.pending([fp32_jobs.train]) == [fp32_jobs.train]  # a bf16 timing never answers for fp32
    assert probe.timed(bf16_jobs.train, cached_only=True) == step
    costs, _ = estimate.probe_costs(tiny_config(tmp_path, tiny_teacher_dir, mixed_precision="bf16"))
    timed = {name: probe.timed(job, cached_only=True) for name, job in bf16_jobs._asdict().items()}
    assert costs.teacher_s_per_example == timed["teacher"].per_example
    assert costs.test_s_per_example == timed["test"].per_example + timed["teacher_test"].per_example
