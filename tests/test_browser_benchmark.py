"""The Benchmark page in a real browser: Run benchmark starts a separate process, the page follows it by itself
(its st.fragment polls) and draws the paired speed-up when it ends, and a reload shows the result again."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from browser_support import CHROMIUM, browser_tab, dashboard_env, open_page, settle, streamlit_server, visible_text

from distill_core import bench_jobs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
pytest.importorskip("playwright.sync_api")


@pytest.fixture
def server(tmp_path, monkeypatch, tiny_data_dir, tiny_teacher_dir):
    """A dashboard whose store holds one finished distillation run (the tiny teacher's weights as student)."""
    from test_app_pages import make_finished_run

    env = dashboard_env(tmp_path, tiny_data_dir, tiny_teacher_dir, OMP_NUM_THREADS="1")
    data_root = tmp_path / "data"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    make_finished_run(SimpleNamespace(runs=tmp_path / "runs", data=data_root / "tiny", teacher=tiny_teacher_dir))
    try:
        with streamlit_server(env, tmp_path / "server.log") as url:
            yield url
    finally:
        bench_jobs.stop(tmp_path / "runs")  # never leave a benchmark process behind


def test_the_page_follows_its_benchmark_process_to_the_result_and_keeps_it(server, tmp_path):
    with browser_tab() as page:
        page.goto(server)
        open_page(page, "Benchmark")
        page.locator("button", has_text="Run benchmark").click()
        # No reload, no click: the fragment polls the process's files and redraws the page when it ends.
        page.get_by_text("as fast as").first.wait_for(timeout=240_000)
        settle(page)
        assert bench_jobs.latest(tmp_path / "runs")["state"] == "done"
        text = visible_text(page)
        assert "Last result" in text and "usable core" in text and "load average" in text
        page.screenshot(path=str(page.shots / "benchmark-result.png"), full_page=True)
        page.reload()
        page.get_by_role("heading", name="Benchmark", exact=True).wait_for()
        page.get_by_text("as fast as").first.wait_for()  # read back from the runs folder, not from the session
