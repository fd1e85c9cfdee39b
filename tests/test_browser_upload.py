"""Train's upload in a real browser: `streamlit run` on a free port, headless Chromium via Playwright, files sent
through the st.file_uploader's own <input type=file>.

A file without a label column and a binary file renamed .csv are refused as they arrive, with all their problems
and nothing kept in the uploads folder; a file whose text is split over two columns and whose class sits in a
column of its own is accepted once its columns are picked, kept, and listed under Local dataset.
"""
from __future__ import annotations

import shutil

import pytest
from browser_support import CHROMIUM, browser_tab, settle, streamlit_server, visible_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
pytest.importorskip("playwright.sync_api")


@pytest.fixture
def server(tmp_path, tiny_data_dir):
    shutil.copytree(tiny_data_dir, tmp_path / "data" / "tiny")
    env = {"KD_RUNS_DIR": str(tmp_path / "runs"), "KD_DATA_DIR": str(tmp_path / "data"),
           "KD_UPLOADS_DIR": str(tmp_path / "uploads"), "HF_HUB_OFFLINE": "1"}
    with streamlit_server(env, tmp_path / "server.log") as url:
        yield url


READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def send(tab, name: str, content: bytes, mime: str = "text/csv") -> None:
    tab.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": content}])
    settle(tab)


def kept(tmp_path) -> list[str]:
    folder = tmp_path / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_uploads_are_judged_on_arrival_in_a_real_browser(server, tmp_path):
    with browser_tab() as tab:
        try:
            tab.goto(server)
            tab.get_by_role("heading", name="Train", exact=True).wait_for()
            # The first visit also times the default preset's models for the estimate (cold caches, a busy CI
            # machine): allow it longer than a rerun.
            tab.wait_for_selector(READY, state="attached", timeout=300_000)
            tab.get_by_role("radiogroup", name="Source").get_by_text("Upload a file", exact=True).click()
            settle(tab)

            rows = "".join(f"sentence {i},{'good' if i % 2 else 'bad'}\n" for i in range(12))
            send(tab, "reviews.csv", ("text,verdict\n" + rows).encode())
            tab.get_by_text("reviews.csv cannot be used yet").wait_for()
            text = visible_text(tab)
            assert "Label column: reviews.csv has no column named like a label" in text
            assert kept(tmp_path) == []

            send(tab, "photo.csv", bytes(range(256)) * 64, mime="application/octet-stream")
            tab.get_by_text("photo.csv is not a text file but binary data").wait_for()
            assert kept(tmp_path) == []

            rows = "".join(f"Headline {i},Story body {i},{i % 2}\n" for i in range(12))
            send(tab, "news.csv", ("headline,story,section\n" + rows).encode())
            # No usual names here: the user picks both from the file's own columns.
            tab.get_by_text("news.csv cannot be used yet").wait_for()
            tab.get_by_role("combobox", name="Label column").click()
            tab.get_by_role("option", name="section", exact=True).click()
            settle(tab)
            tab.get_by_role("combobox", name="Text columns").click()  # headline is guessed; add the story
            tab.get_by_role("option", name="story", exact=True).click()
            tab.keyboard.press("Escape")
            settle(tab)
            tab.get_by_text("news.csv is accepted: 12 rows, 2 classes").wait_for()
            tab.screenshot(path=str(tab.shots / "upload-accepted.png"), full_page=True)
            [stored] = kept(tmp_path)
            assert stored.startswith("news-")

            tab.get_by_text("Local dataset", exact=True).click()
            settle(tab)
            tab.get_by_role("combobox", name="Dataset").click()
            assert tab.get_by_role("option", name=f"news.csv (uploaded, {stored[-12:-4]})").count() == 1
        except BaseException:
            tab.screenshot(path=str(tab.shots / "upload-failure.png"), full_page=True)
            raise
