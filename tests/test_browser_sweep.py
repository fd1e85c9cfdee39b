"""The Sweeps page in a real browser (`streamlit run` + headless Chromium via Playwright) over a real tiny sweep
(2 cells trained in this process): the heatmap renders with the best setting outlined and labelled, and Open run
lands on the cell's run on Train. A screenshot is saved to $KD_SCREENSHOT_DIR."""
from __future__ import annotations

import json

import pytest
from browser_support import CHROMIUM, browser_tab, dashboard_env, dashboard_server, settle

from distill_core import sweep
from distill_core.config import DataConfig, TrainConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
pytest.importorskip("playwright.sync_api")

HEATMAP_JS = """() => {
    const plot = [...document.querySelectorAll('.js-plotly-plot')].find(p =>
        (p.layout?.title?.text || '').replace(/<[^>]*>/g, '').startsWith('Validation accuracy over temperature'));
    return plot ? JSON.stringify({z: plot.data[0].z, y: plot.data[0].y,
        labels: (plot.layout.annotations || []).map(a => a.text)}) : null;
}"""


@pytest.fixture
def served(tmp_path, monkeypatch, tiny_data_dir, tiny_teacher_dir, one_torch_thread):
    env = dashboard_env(tmp_path, tiny_data_dir, tiny_teacher_dir, OMP_NUM_THREADS="1")
    for key, value in env.items():  # the sweep below runs in this process, with the server's settings
        monkeypatch.setenv(key, value)
    base = TrainConfig(mode="distill", data=DataConfig(source=str(tmp_path / "data" / "tiny"), max_length=24,
                                                       eval_samples=40),
                       student="truncate:1", teacher=str(tiny_teacher_dir), epochs=1, max_steps=2, batch_size=16)
    group = sweep.run_sweep_here(tmp_path / "runs", "grid", sweep.SweepConfig(base, (1.0, 4.0), (0.5,)))
    with dashboard_server(env, monkeypatch, tmp_path / "server.log") as url:
        yield group, url


def test_heatmap_renders_and_open_run_lands_on_the_best_cell(served):
    group, url = served
    best_run = sweep.summary(group)["best"]["run"].rsplit("/", 1)[-1]
    with browser_tab() as tab:
        try:
            tab.goto(f"{url}/sweeps")
            tab.get_by_role("heading", name="Sweeps", exact=True).wait_for()
            settle(tab)
            tab.wait_for_function(f"() => ({HEATMAP_JS})() !== null", timeout=180_000)  # plotly loads lazily
            heatmap = json.loads(tab.evaluate(HEATMAP_JS))
            assert heatmap["y"] == ["1", "4"] and all(row[0] is not None for row in heatmap["z"])
            assert "★ best" in heatmap["labels"]
            tab.get_by_text("2 of 2 cells done").wait_for()
            tab.screenshot(path=str(tab.shots / "sweeps.png"), full_page=True)

            tab.get_by_role("button", name="Open run").click()
            tab.get_by_role("heading", name="Train", exact=True).wait_for()
            settle(tab)
            assert f"run={best_run}" in tab.url
            tab.get_by_role("heading", name=best_run).wait_for()  # the live panel shows that run
        except BaseException:
            tab.screenshot(path=str(tab.shots / "sweeps-failure.png"), full_page=True)
            raise
