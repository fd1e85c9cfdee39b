"""Two visitors at once on one `streamlit run` server (hosted mode, as on the public demo), in two browser
contexts of headless Chromium.

Visitor A starts a tiny distillation from Train and uses the Playground while it trains; visitor B meanwhile uses
the Playground and Compare on a gallery run. Both get their answers while A's worker trains; A's run finishes;
neither sees the other's runs; and the model every session is served from the shared cache never changes: the
same text gets bit-identical probabilities for both visitors, before, during and after the training (a model
trained in place, or left in training mode with dropout, would answer differently).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PROBS_JS,
    open_page,
    predict,
    screenshot_dir,
    set_number,
    settle,
    streamlit_server,
)
from test_hosted import finished_run

from distill_core import hosting, pipeline, runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

RUN = "visitor-a-run"
PROBE = "The team won the championship match after a late goal"


@pytest.fixture
def hosted_server(tmp_path, monkeypatch, tiny_data_dir, tiny_teacher_dir):
    """The hosted demo with the tiny dataset, the tiny teacher listed by the operator and one gallery run."""
    data_root = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data_root / "tiny")
    env = {"KD_HOSTED": "1", "KD_RUNS_DIR": str(tmp_path / "runs"), "KD_CACHE_DIR": str(tmp_path / "cache"),
           "KD_DATA_DIR": str(data_root), "KD_UPLOADS_DIR": str(tmp_path / "uploads"),
           "KD_EXTRA_MODELS": str(tiny_teacher_dir), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    finished_run(hosting.gallery_root(), "gallery-demo", tiny_teacher_dir, data_root / "tiny")
    try:
        with streamlit_server(env, tmp_path / "server.log") as url:
            yield url
    finally:
        for run_dir in (tmp_path / "runs").rglob("status.json"):
            pipeline.stop_run(run_dir.parent)  # never leave a worker behind


def visitor_of(tab) -> str:
    return parse_qs(urlparse(tab.url).query)[hosting.VISITOR_KEY][0]


def probabilities(tab, text: str) -> str:
    """Classify ``text`` on the Playground; returns the shared model's probabilities (JSON, full precision).

    The shared (operator's) model is the chart's first row: a visitor whose own run has finished also gets
    their student as a second row, which depends on how fast that run went, not on isolation."""
    # The chart of the page's first answer (a sample text) is drawn after the script run ends: wait for it, or
    # predict() would take its arrival for the answer to ``text``.
    tab.wait_for_function(f"() => ({PROBS_JS})() !== null", timeout=90_000)
    if tab.get_by_label("Text", exact=True).input_value() == text:
        predict(tab, text + " again")  # the chart only redraws on a change
    predict(tab, text)
    return json.dumps(json.loads(tab.evaluate(PROBS_JS))[0])


def test_two_visitors_train_and_play_at_once_without_touching_each_other_or_the_served_model(hosted_server):
    shots = screenshot_dir()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        a = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
        b = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
        for tab in (a, b):
            tab.set_default_timeout(90_000)
        try:
            # ---- both visitors arrive; each gets a visitor id of their own
            a.goto(hosted_server)
            b.goto(hosted_server + "/playground")
            for tab in (a, b):
                tab.wait_for_url(lambda url: hosting.VISITOR_KEY in url)
                settle(tab)
            assert visitor_of(a) != visitor_of(b)
            run_dir = Path(runs.runs_root()) / hosting.VISITORS_DIR / visitor_of(a) / RUN

            # ---- B classifies with the shared model before anything trains
            b.get_by_role("heading", name="Playground", exact=True).wait_for()
            before = probabilities(b, PROBE)

            # ---- A starts a tiny distillation: tiny teacher (operator's model) -> truncate:1
            a.get_by_text("Distil from a fine-tuned teacher", exact=True).click()
            settle(a)
            set_number(a, "Layers kept (N)", 1)
            set_number(a, "Epochs", 12)
            set_number(a, "Batch size", 8)
            name = a.get_by_label("Run name", exact=True)
            name.fill(RUN)
            name.press("Enter")
            settle(a)
            a.get_by_role("button", name="Start", exact=True).click()
            a.get_by_role("heading", name=RUN).wait_for(timeout=120_000)
            deadline = time.monotonic() + 300
            while not any(r.get("kind") == "step" for r in runs.read_metrics(run_dir)):
                assert time.monotonic() < deadline, runs.read_status(run_dir)
                time.sleep(0.2)

            # ---- while A's worker trains: B predicts and compares, A predicts too
            window_start = time.time()
            during_b = probabilities(b, PROBE)
            open_page(b, "Compare")
            b.get_by_text("Gallery", exact=True).click()  # a visitor with no runs of their own starts there anyway
            settle(b)
            # The table is a canvas grid: its text cells exist for accessibility but are hidden.
            b.get_by_text("Run gallery-demo").first.wait_for(state="attached")
            open_page(a, "Playground")
            during_a = probabilities(a, PROBE)
            window_end = time.time()
            status = runs.read_status(run_dir)
            assert status["started_at"] < window_end, status
            assert status.get("finished_at") is None or status["finished_at"] > window_start, \
                "A's run ended before B's visit began: no overlap was tested"
            b.screenshot(path=str(shots / "concurrent-b-compare.png"), full_page=True)

            # ---- A's run finishes; the answers never changed; neither visitor sees the other's runs
            deadline = time.monotonic() + 600
            while runs.read_status(run_dir)["state"] in runs.LIVE_STATES:
                assert time.monotonic() < deadline, runs.read_status(run_dir)
                time.sleep(0.5)
            assert runs.read_status(run_dir)["state"] == "done", runs.read_status(run_dir)
            open_page(b, "Playground")
            after = probabilities(b, PROBE)
            assert before is not None and before == during_b == during_a == after
            a.goto(f"{hosted_server}/?{hosting.VISITOR_KEY}={visitor_of(a)}&run={RUN}")
            a.get_by_role("heading", name=RUN).wait_for()
            a.screenshot(path=str(shots / "concurrent-a-train.png"), full_page=True)
            b.goto(f"{hosted_server}/?{hosting.VISITOR_KEY}={visitor_of(b)}&run={RUN}")  # B asks for A's run
            b.get_by_role("heading", name="Train", exact=True).wait_for()
            settle(b)
            assert b.get_by_text("No runs yet").count() and not b.get_by_role("heading", name=RUN).count()
            log = (Path(runs.runs_root()).parent / "server.log")
            assert "Traceback" not in (log.read_text(errors="replace") if log.exists() else "")
        except BaseException:
            for label, tab in (("a", a), ("b", b)):
                tab.screenshot(path=str(shots / f"concurrent-failure-{label}.png"), full_page=True)
            raise
        finally:
            browser.close()
    print(json.dumps({"visitor_a_run": str(run_dir)}))
