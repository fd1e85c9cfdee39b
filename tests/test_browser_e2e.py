"""The dashboard in a real browser: `streamlit run` on a free port, driven by headless Chromium via Playwright.

One visitor's path: start a tiny distillation on Train (tiny teacher -> truncate:1 student), watch the loss chart
gain points while it runs, wait for it to finish, find it on Compare, and classify typed sentences with teacher
and student on Playground, also while another distillation runs in the background. A screenshot of each page is
saved to $KD_SCREENSHOT_DIR (default /tmp/kd-e2e-screens), outside the repository.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from distill_core import app_support, jobs, runs
from distill_core.config import DataConfig, TrainConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN = "e2e-distill"
LOSS_POINTS_JS = """() => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    const loss = plots.find(p => (p.layout?.title?.text || '').startsWith('Training loss'));
    return loss && loss.data && loss.data.length ? loss.data[0].x.length : 0;
}"""
PROBS_JS = """() => {
    const plot = [...document.querySelectorAll('.js-plotly-plot')]
        .find(p => (p.layout?.title?.text || '').startsWith('Predicted class probabilities'));
    return plot ? JSON.stringify(plot.data.map(t => t.x)) : null;
}"""

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path, monkeypatch, tiny_data_dir, tiny_teacher_dir):
    """A dashboard with a private store, the tiny dataset as its only local data and the tiny teacher listed."""
    data_root = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data_root / "tiny")
    env = {"KD_RUNS_DIR": str(tmp_path / "runs"), "KD_CACHE_DIR": str(tmp_path / "cache"),
           "KD_DATA_DIR": str(data_root), "KD_UPLOADS_DIR": str(tmp_path / "uploads"),
           "KD_EXTRA_MODELS": str(tiny_teacher_dir), "HF_HUB_OFFLINE": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # this process shares the store with the server (background run below)
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"streamlit did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    try:
        yield url
    finally:
        for run_dir in runs.iter_run_dirs(tmp_path / "runs"):
            jobs.stop_job(run_dir)  # never leave a worker behind
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def page():
    shots = Path(os.environ.get("KD_SCREENSHOT_DIR", "/tmp/kd-e2e-screens"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1600})
        tab.set_default_timeout(60_000)
        tab.shots = shots
        yield tab
        if getattr(tab, "failed", False):
            tab.screenshot(path=str(shots / "failure.png"), full_page=True)
        browser.close()


def settle(tab) -> None:
    """Wait until Streamlit has finished the rerun a widget change started."""
    tab.wait_for_timeout(200)
    tab.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', state="attached",
                          timeout=90_000)


def visible_text(tab) -> str:
    """The page's text plus the values of its inputs (selectboxes show their choice in an input)."""
    return tab.evaluate("() => document.body.innerText + '\\n' + "
                        "[...document.querySelectorAll('input')].map(i => i.value).join('\\n')")


def set_number(tab, label: str, value: int) -> None:
    box = tab.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    settle(tab)


def open_page(tab, name: str) -> None:
    tab.locator('[data-testid="stSidebarNav"] a', has_text=name).click()
    tab.get_by_role("heading", name=name, exact=True).wait_for()
    settle(tab)


def predict(tab, text: str) -> float:
    """Type ``text`` into the Playground and return the seconds until the probability chart shows its answer."""
    before = tab.evaluate(PROBS_JS)
    box = tab.get_by_label("Text", exact=True)
    box.fill(text)
    start = time.perf_counter()
    box.press("Control+Enter")
    tab.wait_for_function(f"(before) => ({PROBS_JS})() !== before && ({PROBS_JS})() !== null", arg=before,
                          timeout=90_000)
    return time.perf_counter() - start


def test_distil_watch_compare_and_play_in_a_real_browser(server, page, tmp_path):
    page.failed = True  # cleared at the end: a failing run leaves failure.png for a look
    timings: dict[str, float] = {}
    start = time.perf_counter()
    page.goto(server)
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    settle(page)
    timings["train_first_load_s"] = time.perf_counter() - start
    assert page.get_by_text("Offline mode").is_visible()

    # ---- configure a tiny distillation: tiny teacher (listed via KD_EXTRA_MODELS) -> truncate:1 student
    page.get_by_text("Distil from a fine-tuned teacher").click()
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
    page.locator("button", has_text="Start").click()

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
    state = runs.read_status(Path(os.environ["KD_RUNS_DIR"]) / RUN)
    assert state["state"] == "done", state
    final = seen[-1]
    assert final > 1, seen
    assert any(0 < n < final for n in seen), f"the chart never showed a partial run: {seen}"
    page.screenshot(path=str(page.shots / "train-live.png"), full_page=True)

    # ---- Compare finds the finished run (its confusion matrix is titled with the run's name)
    open_page(page, "Compare")
    page.get_by_text(f"Run {RUN}").first.wait_for()
    assert page.get_by_text(f"Teacher of {RUN}").count()
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
                             student="truncate:1", teacher=os.environ["KD_EXTRA_MODELS"], epochs=200,
                             batch_size=4, patience=None, log_every_steps=1)
    run_dir = app_support.start_run(root, "e2e-background", background)
    deadline = time.monotonic() + 120
    while not any(r.get("kind") == "step" for r in runs.read_metrics(run_dir)):
        assert time.monotonic() < deadline, runs.read_status(run_dir)
        time.sleep(0.5)
    timings["playground_round_trip_during_training_s"] = predict(page, "Scientists released new software today")
    assert runs.read_status(run_dir)["state"] == "running"
    jobs.stop_job(run_dir)

    open_page(page, "Benchmark")
    page.screenshot(path=str(page.shots / "benchmark.png"), full_page=True)
    (page.shots / "timings.json").write_text(json.dumps(timings, indent=2), encoding="utf-8")
    print(json.dumps(timings, indent=2))
    page.failed = False
