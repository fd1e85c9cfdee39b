"""The Runs page in a real browser (`streamlit run` + headless Chromium via Playwright) on a store of real tiny runs:
select rows in the table by clicking their boxes, then delete (with its confirmation), rename, resume a stopped
run in the background until it is done, and clone a run's settings into Train's form; and Train's live panel says
so when the address names no run. A screenshot of the page is saved to $KD_SCREENSHOT_DIR."""
from __future__ import annotations

import shutil
import time

import pytest
from browser_support import CHROMIUM, browser_tab, dashboard_server, settle, visible_text
from runs_support import make_run, tiny_config, trained_run

from distill_core import runs, storage
from distill_core.app import runs_table

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
pytest.importorskip("playwright.sync_api")

WAIT_S = 600
ROW_HEIGHT_PX = 35  # st.dataframe's default row (and header) height


@pytest.fixture
def store(tmp_path, monkeypatch, tiny_data_dir, tiny_teacher_dir, one_torch_thread):
    """Real tiny runs: one finished, one stopped after its first epoch (resumable), and an old one to delete."""
    root = (tmp_path / "runs").resolve()
    env = {"KD_RUNS_DIR": str(root), "KD_CACHE_DIR": str(tmp_path / "cache"), "KD_DATA_DIR": str(tmp_path / "data"),
           "KD_UPLOADS_DIR": str(tmp_path / "uploads"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    shutil.copytree(tiny_data_dir, tmp_path / "data" / "tiny")
    for key, value in env.items():  # the runs below are made in this process, with the server's settings
        monkeypatch.setenv(key, value)
    config = tiny_config(tmp_path / "data" / "tiny", tiny_teacher_dir)
    trained_run(root, "finished", config)
    trained_run(root, "stopped", config, stop_after_first_epoch=True)
    make_run(root, "old")
    with dashboard_server(env, monkeypatch, tmp_path / "server.log") as url:
        yield root, url


@pytest.fixture
def page():
    with browser_tab() as tab:
        yield tab
        if getattr(tab, "failed", False):
            tab.screenshot(path=str(tab.shots / "runs-failure.png"), full_page=True)


def click_row(tab, root, name: str) -> None:
    """Tick the box at the left of ``name``'s row, as a user does (the table is a canvas: rows are found by
    position, in the page's order, newest first)."""
    row = [r["name"] for r in runs_table.load_rows(root)].index(name)
    box = tab.locator('[data-testid="stDataFrame"]').bounding_box()
    tab.mouse.click(box["x"] + 16, box["y"] + ROW_HEIGHT_PX * (row + 1) + ROW_HEIGHT_PX / 2)
    settle(tab)


def select_only(tab, root, name: str) -> None:
    tab.reload()
    tab.get_by_role("heading", name="Runs", exact=True).wait_for()
    settle(tab)
    click_row(tab, root, name)
    tab.get_by_text(f"Selected: {name}", exact=True).wait_for()


def press(tab, label: str) -> None:
    tab.get_by_role("button", name=label, exact=True).click()
    settle(tab)


def test_runs_table_actions_in_a_real_browser(store, page):
    root, url = store
    page.failed = True
    page.goto(f"{url}/runs")
    page.get_by_role("heading", name="Runs", exact=True).wait_for()
    settle(page)
    assert [r["name"] for r in runs_table.load_rows(root)] == ["old", "stopped", "finished"]
    assert "3 of 3 runs shown" in visible_text(page)  # the table itself is a canvas: its text is not in the page

    # Delete asks first.
    select_only(page, root, "old")
    press(page, "Delete")
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Delete old and all their files", exact=False).wait_for()
    assert (root / "old").is_dir()
    dialog.get_by_role("button", name="Delete 1 run(s)").click()
    page.get_by_text("Deleted old.").wait_for()
    assert not (root / "old").exists()

    # Rename, with the form's words for a bad name.
    select_only(page, root, "finished")
    press(page, "Rename")
    dialog = page.get_by_role("dialog")
    name_box = dialog.get_by_label("New name", exact=True)
    name_box.fill("has space")
    name_box.press("Enter")
    settle(page)
    dialog.get_by_role("button", name="Rename", exact=True).click()
    dialog.get_by_text("New name: invalid run name 'has space'", exact=False).wait_for()
    name_box.fill("finished-2")
    name_box.press("Enter")
    settle(page)
    dialog.get_by_role("button", name="Rename", exact=True).click()
    page.get_by_text("Renamed finished to finished-2.").wait_for()
    assert (root / "finished-2").is_dir() and not (root / "finished").exists()

    # Resume the stopped run: a background worker continues it to done.
    select_only(page, root, "stopped")
    press(page, "Resume")
    page.get_by_text("Resumed stopped:", exact=False).wait_for()
    deadline = time.monotonic() + WAIT_S
    while runs.read_status(root / "stopped")["state"] != "done" and time.monotonic() < deadline:
        assert runs.read_status(root / "stopped")["state"] in ("queued", "running"), \
            runs.log_path(root / "stopped").read_text()[-2000:]
        time.sleep(0.5)
    assert storage.read_json(root / "stopped" / runs.EVAL_FILE)["student"]["accuracy"] is not None
    page.screenshot(path=str(page.shots / "runs-table.png"), full_page=True)

    # Clone the renamed run's settings into Train's form.
    select_only(page, root, "finished-2")
    press(page, "Clone settings")
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    page.get_by_text("Settings copied from run finished-2.").wait_for()

    # An address naming no run says so on Train.
    page.goto(f"{url}/?run=nothing-here")
    page.get_by_text("No run named 'nothing-here'", exact=False).wait_for()
    page.failed = False
