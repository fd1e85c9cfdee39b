"""A first visit in a real browser: an empty store offers the showcase, one click builds it in the background (the
smoke recipe, through KD_SHOWCASE_RECIPE, which the server passes on to the build process), the page shows its
progress, and when it is done Compare shows the showcase's runs, the stakeholder report downloads from Compare with
the headlines Compare shows, and the Playground classifies a typed sentence with its teacher and students.
Screenshots go to $KD_SCREENSHOT_DIR (default /tmp/kd-e2e-screens).
"""
from __future__ import annotations

import contextlib
import html
import os
import signal

import pytest
from browser_support import CHROMIUM, browser_tab, open_page, predict, settle, streamlit_server

from distill_core import processes, showcase, storage

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
PlaywrightTimeout = pytest.importorskip("playwright.sync_api").TimeoutError
BUILD_TIMEOUT_MS = 600_000  # the smoke build: about a minute on 2 idle cores, several when they are busy


@pytest.fixture
def server(tmp_path):
    """A dashboard on an empty private store; the showcase button builds the smoke recipe."""
    env = {"KD_RUNS_DIR": str(tmp_path / "runs"), "KD_CACHE_DIR": str(tmp_path / "cache"),
           "KD_UPLOADS_DIR": str(tmp_path / "uploads"), "HF_HUB_OFFLINE": "1",
           showcase.RECIPE_ENV: "smoke", "KD_HOSTED": ""}
    try:
        with streamlit_server(env, tmp_path / "server.log") as url:
            yield url
    finally:
        saved = storage.read_json(tmp_path / "runs" / showcase.PROGRESS_FILE, {}) or {}
        if saved.get("state") == "running" and processes.pid_alive(saved.get("pid")):
            os.killpg(saved["pid"], signal.SIGTERM)  # never leave a build behind (it leads its own group)


@pytest.fixture
def page():
    with browser_tab() as tab:
        yield tab


def test_first_visit_builds_the_showcase_then_compare_and_playground_show_it(server, page, tmp_path):
    page.goto(server)
    settle(page)
    button = page.get_by_role("button", name="Build the showcase")
    button.wait_for()
    page.screenshot(path=str(page.shots / "showcase-offer.png"), full_page=True)
    button.click()

    page.get_by_text("Building the showcase: stage").first.wait_for(timeout=120_000)
    assert page.locator('[data-testid="stProgress"]').count()
    page.screenshot(path=str(page.shots / "showcase-progress.png"), full_page=True)
    page.get_by_role("button", name="Build the showcase").wait_for(state="detached")
    page.get_by_text("Building the showcase: stage").first.wait_for(state="detached", timeout=BUILD_TIMEOUT_MS)
    assert showcase.is_complete(tmp_path / "runs")

    open_page(page, "Compare")
    for name, _ in showcase.STUDENTS:  # the table's cells (a canvas grid: its text cells are hidden, but there)
        page.get_by_text(f"Run {name}").first.wait_for(state="attached")
    page.get_by_text("run showcase-teacher").first.wait_for(state="attached")  # the teacher: a run, listed once
    assert page.get_by_role("button", name="Build the showcase").count() == 0
    page.screenshot(path=str(page.shots / "showcase-compare.png"), full_page=True)

    # ---- the stakeholder report: downloaded from Compare, its headlines are the ones Compare shows
    # An alert's text starts with its icon's name ("insights"); the sentence is its last line.
    alerts = page.locator('[data-testid="stAlertContentSuccess"]').all_inner_texts()
    shown = [text.strip().splitlines()[-1] for text in alerts]
    assert any("faster at batch 1" in t for t in shown), shown
    with page.expect_download() as download:
        page.get_by_role("button", name="Download report (HTML)").click()
    report_file = tmp_path / "report.html"
    download.value.save_as(report_file)
    report_html = report_file.read_text(encoding="utf-8")
    assert report_html.count("plotly.js v") == 1  # plotly.js inlined once for the whole page
    missing = [sentence for sentence in shown if html.escape(sentence) not in report_html]
    assert not missing, (missing, report_html[:3000])

    # ---- Benchmark before any benchmark ran here: the build's own measurements, not an empty page
    open_page(page, "Benchmark")
    page.get_by_text("Measured when these models were built").wait_for()
    assert page.get_by_text("Measured on ").count()
    page.screenshot(path=str(page.shots / "showcase-benchmark.png"), full_page=True)

    open_page(page, "Playground")
    page.locator('[data-testid="stMetric"]').nth(2).wait_for()
    predict(page, "The team won the championship match after a late goal")
    settle(page)  # until the rerun ends, the previous prediction's metrics stay on the page beside the new ones
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stMetric\"]').length === 3",
                               timeout=30_000)
    predictions = page.locator('[data-testid="stMetric"]').all_inner_texts()
    assert len(predictions) == 3 and all("Prediction" in p for p in predictions), predictions
    page.screenshot(path=str(page.shots / "showcase-playground.png"), full_page=True)
