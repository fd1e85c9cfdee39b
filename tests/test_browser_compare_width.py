"""Compare at a stakeholder's 1440 x 900 screen, in a real browser: the comparison table shows every column, the
latency column included, without a horizontal scroll, and every chart carries its accessible name. The store holds
a teacher run and two students named as the showcase names them (real run folders with the tiny teacher's
weights, measured speeds in bench.json). A screenshot goes to $KD_SCREENSHOT_DIR."""
from __future__ import annotations

import contextlib

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, screenshot_dir, settle, streamlit_server
from test_charts_words import finished_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
pytest.importorskip("playwright.sync_api")

WIDTH, HEIGHT = 1440, 900
TABLE_JS = """() => {
    const frame = document.querySelector('[data-testid="stDataFrame"]');
    const scroller = frame.querySelector('.dvn-scroller');
    const headers = [...frame.querySelectorAll('th, [role=columnheader]')].map(h => h.textContent.trim());
    const box = frame.getBoundingClientRect();
    return {left: box.left, right: box.right, scrollWidth: scroller.scrollWidth, clientWidth: scroller.clientWidth,
            headers};
}"""


@pytest.fixture
def server(tmp_path, tiny_teacher_dir):
    root = tmp_path / "runs"
    teacher = finished_run(root, "showcase-teacher", tiny_teacher_dir, bench_ms=131.0)
    for name, ms in (("showcase-student-l3", 46.1), ("showcase-student-l2", 180.0)):
        finished_run(root, name, tiny_teacher_dir, teacher=str(teacher), bench_ms=ms)
    env = {"KD_RUNS_DIR": str(root), "KD_CACHE_DIR": str(tmp_path / "cache"), "KD_UPLOADS_DIR": str(tmp_path / "up"),
           "KD_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "KD_HOSTED": ""}
    with streamlit_server(env, tmp_path / "server.log") as url:
        yield url


def test_compare_table_fits_at_1440_px_with_its_latency_column(server):
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            tab.set_default_timeout(120_000)
            tab.goto(f"{server}/compare?runs=showcase-student-l2,showcase-student-l3,showcase-teacher")
            settle(tab)
            tab.locator('[data-testid="stDataFrame"]').first.wait_for()
            tab.locator('[data-testid="stPlotlyChart"]').last.wait_for()
            settle(tab)
            # The grid draws on a canvas and adds its header cells to the DOM a moment later (seconds on a busy
            # machine): wait for them, then measure; a table that never gets them fails the assertion below.
            with contextlib.suppress(sync_api.TimeoutError):
                tab.wait_for_function(f"() => ({TABLE_JS})().headers.length > 0", timeout=60_000)
            tab.screenshot(path=str(screenshot_dir() / "compare-1440.png"))
            table = tab.evaluate(TABLE_JS)
            names = [tab.locator('[data-testid="stPlotlyChart"]').nth(i).get_attribute("aria-label")
                     for i in range(tab.locator('[data-testid="stPlotlyChart"]').count())]
        finally:
            browser.close()
    assert "Latency (ms)" in table["headers"], table
    assert table["left"] >= 0 and table["right"] <= WIDTH, table  # the table itself is on screen
    assert table["scrollWidth"] <= table["clientWidth"], table  # and no column hides behind a horizontal scroll
    # accuracy vs throughput, three confusion matrices, F1 per class, the validation curves
    assert len(names) == 6 and all(name and name.startswith("Chart: ") for name in names), names
