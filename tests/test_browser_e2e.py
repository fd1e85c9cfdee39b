"""The dashboard in a real browser: `streamlit run` on a free port, driven by headless Chromium via Playwright.

One visitor's path: start a tiny distillation on Train (tiny teacher -> truncate:1 student), watch the loss chart
gain points while it runs, wait for it to finish, find it on Compare, and classify typed sentences with teacher
and student on Playground, also while another distillation runs in the background. A second visitor starts a
pipeline and the live panel follows it from its teacher stage into the distillation. A screenshot of each page is
saved to $KD_SCREENSHOT_DIR (default /tmp/kd-e2e-screens), outside the repository.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from browser_support import (
    CHROMIUM,
    LOSS_POINTS_JS,
    browser_tab,
    dashboard_env,
    dashboard_server,
    open_page,
    predict,
    set_number,
    settle,
    visible_text,
)

from distill_core import pipeline, runs
from distill_core.config import DataConfig, TrainConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUN = "e2e-distill"
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
pytest.importorskip("playwright.sync_api")


@pytest.fixture
def server(tmp_path, monkeypatch, tiny_data_dir, tiny_teacher_dir):
    """A dashboard with a private store, the tiny dataset as its only local data and the tiny teacher listed."""
    env = dashboard_env(tmp_path, tiny_data_dir, tiny_teacher_dir)
    # this process shares the store with the server (the background run below)
    with dashboard_server(env, monkeypatch, tmp_path / "server.log") as url:
        yield url


@pytest.fixture
def page():
    with browser_tab() as tab:
        yield tab
        if getattr(tab, "failed", False):
            tab.screenshot(path=str(tab.shots / "failure.png"), full_page=True)


def test_distil_watch_compare_and_play_in_a_real_browser(server, page, tmp_path):
    page.failed = True  # cleared at the end: a failing run leaves failure.png for a look
    timings: dict[str, float] = {}
    # A first visitor who opens a page's address directly on a fresh server gets the router's app (page files
    # live in app_pages/, not pages/, so Streamlit's legacy mode never serves a page alone).
    page.goto(f"{server}/compare")
    page.get_by_role("heading", name="Compare", exact=True).wait_for()
    assert page.locator('[data-testid="stSidebarNav"] a', has_text="Playground").count() == 1
    start = time.perf_counter()
    page.goto(server)
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    settle(page)
    timings["train_first_load_s"] = time.perf_counter() - start
    assert page.get_by_text("Offline mode").is_visible()

    # ---- configure a tiny distillation: tiny teacher (listed via KD_EXTRA_MODELS) -> truncate:1 student
    page.get_by_text("Distil from a fine-tuned teacher", exact=True).click()
    settle(page)
    assert "tiny-teacher0 (local model)" in visible_text(page)  # the tiny teacher is the default pick
    set_number(page, "Layers kept (N)", 1)
    set_number(page, "Epochs", 8)
    set_number(page, "Batch size", 8)
    name = page.get_by_label("Run name", exact=True)
    name.fill(RUN)
    name.press("Enter")
    settle(page)
    page.screenshot(path=str(page.shots / "train-form.png"), full_page=True)
    page.get_by_role("button", name="Start", exact=True).click()
    started = time.perf_counter()

    # ---- the live panel follows the run; its loss chart gains points while it runs
    page.get_by_role("heading", name=RUN).wait_for(timeout=120_000)
    assert f"run={RUN}" in page.url
    seen: list[int] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        seen.append(page.evaluate(LOSS_POINTS_JS))
        if page.get_by_text("Test accuracy").count():
            break
        page.wait_for_timeout(500)
    timings["distillation_start_to_done_s"] = time.perf_counter() - started
    state = runs.read_status(Path(os.environ["KD_RUNS_DIR"]) / RUN)
    assert state["state"] == "done", state
    final = seen[-1]
    assert final > 1, seen
    assert any(0 < n < final for n in seen), f"the chart never showed a partial run: {seen}"
    page.screenshot(path=str(page.shots / "train-live.png"), full_page=True)

    # ---- Compare finds the finished run (its confusion matrix is titled with the run's name)
    open_page(page, "Compare")
    # (the table's own cells are canvas-drawn, with a hidden copy for screen readers: look for the chart title)
    page.get_by_text(f"Confusion matrix: run {RUN}").first.wait_for()
    assert page.get_by_text(f"Confusion matrix: teacher of {RUN}").count()
    page.screenshot(path=str(page.shots / "compare.png"), full_page=True)

    # ---- Playground: both models answer a typed sentence
    start = time.perf_counter()
    open_page(page, "Playground")
    page.locator('[data-testid="stMetric"]').nth(1).wait_for()
    timings["playground_first_load_s"] = time.perf_counter() - start
    predict(page, "The team won the championship match after a late goal")
    predictions = page.locator('[data-testid="stMetric"]').all_inner_texts()
    assert len(predictions) == 2 and all("Prediction" in p for p in predictions), predictions
    timings["playground_round_trip_s"] = min(predict(page, f"Shares of the bank fell {n} percent on the market")
                                             for n in range(3))
    page.screenshot(path=str(page.shots / "playground.png"), full_page=True)

    # ---- ... and still answers while another distillation trains in its own process
    root = Path(os.environ["KD_RUNS_DIR"])
    background = TrainConfig(mode="distill", data=DataConfig(source=str(tmp_path / "data" / "tiny")),
                             student="truncate:1", teacher=os.environ["KD_EXTRA_MODELS"], epochs=100,
                             batch_size=4, patience=None, log_every_steps=1)
    started = time.perf_counter()
    run_dir = pipeline.start_run(root, "e2e-background", background).follow
    deadline = time.monotonic() + 120
    while not any(r.get("kind") == "step" for r in runs.read_metrics(run_dir)):
        assert time.monotonic() < deadline, runs.read_status(run_dir)
        time.sleep(0.5)
    timings["background_start_to_first_step_s"] = time.perf_counter() - started
    timings["playground_round_trip_during_training_s"] = predict(page, "Scientists released new software today")
    assert runs.read_status(run_dir)["state"] == "running"
    pipeline.stop_run(run_dir)

    open_page(page, "Benchmark")
    page.screenshot(path=str(page.shots / "benchmark.png"), full_page=True)
    (page.shots / "timings.json").write_text(json.dumps(timings, indent=2), encoding="utf-8")
    print(json.dumps(timings, indent=2))
    page.failed = False


def test_the_live_panel_follows_a_pipeline_from_its_teacher_stage_into_the_distillation(server, page):
    # A pipeline is two runs: the panel shows the one started first (Started.follow), then, when it is done, the
    # stage that waited on it (pipeline.next_stage), and keeps that run in the address.
    page.failed = True
    page.goto(server)
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    settle(page)
    page.get_by_role("combobox", name="Teacher base model (fine-tuned first)").click()
    page.get_by_role("option", name="tiny-teacher0 (local model)").click()  # quicker to fine-tune than MiniLM
    settle(page)
    for label, value in (("Teacher epochs", 1), ("Layers kept (N)", 1), ("Epochs", 1)):
        set_number(page, label, value)
    page.get_by_text("More settings: data sizes, schedule, runtime").click()
    for label in ("Train samples", "Eval samples"):
        set_number(page, label, 0)  # all of the tiny dataset
    name = page.get_by_label("Run name", exact=True)
    name.fill("e2e-pipe")
    name.press("Enter")
    settle(page)
    page.get_by_role("button", name="Start", exact=True).click()
    page.get_by_role("heading", name="e2e-pipe-teacher").wait_for(timeout=120_000)
    assert "run=e2e-pipe-teacher" in page.url
    page.get_by_role("heading", name=re.compile(r"^e2e-pipe\s")).wait_for(timeout=300_000)
    assert page.url.endswith("run=e2e-pipe") or "run=e2e-pipe&" in page.url, page.url
    root = Path(os.environ["KD_RUNS_DIR"])
    deadline = time.monotonic() + 300
    while runs.read_status(root / "e2e-pipe")["state"] in runs.LIVE_STATES:
        assert time.monotonic() < deadline, runs.read_status(root / "e2e-pipe")
        page.wait_for_timeout(1000)
    assert runs.read_status(root / "e2e-pipe")["state"] == "done"
    page.get_by_text("Teacher test accuracy").wait_for(timeout=60_000)
    page.screenshot(path=str(page.shots / "train-pipeline.png"), full_page=True)
    page.failed = False
