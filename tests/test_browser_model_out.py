"""The finished-run section in a real browser: the student's zip downloads with one click (Streamlit's deferred
download builds it on the click), and a push with a typed token shows the form's errors while the token reaches
no file: not the run store, not the server's log. Offline, as every test."""
from __future__ import annotations

import zipfile

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, screenshot_dir, settle, streamlit_server
from test_model_out import PUSH_BUTTON, RUN, TOKEN, build_finished_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def test_download_and_push_from_the_live_panel(tmp_path, monkeypatch, tiny_data_dir, tiny_teacher_dir):
    store = tmp_path / "runs"
    build_finished_run(store, tiny_data_dir, tiny_teacher_dir)
    env = {"KD_RUNS_DIR": str(store), "KD_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
           "KD_UPLOADS_DIR": str(tmp_path / "uploads")}
    log = tmp_path / "server.log"
    with streamlit_server(env, log) as url, sync_api.sync_playwright() as play:
        browser = play.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(accept_downloads=True)
        tab.goto(f"{url}/?run={RUN}")
        button = tab.get_by_role("button", name="Download the student (.zip)")
        button.wait_for(timeout=120_000)
        settle(tab)
        with tab.expect_download(timeout=120_000) as download:
            button.click()
        assert download.value.suggested_filename == f"{RUN}-fp32.zip"
        with zipfile.ZipFile(download.value.path()) as archive:
            names = set(archive.namelist())
        assert {f"{RUN}-fp32/model.safetensors", f"{RUN}-fp32/config.json", f"{RUN}-fp32/README.md"} <= names

        for typed, message in (("hf_tooshort", "that is not a Hugging Face token"),
                               (TOKEN, "cannot reach the Hugging Face Hub to push")):
            tab.get_by_role("textbox", name="Hub repo id").fill("alice/tiny-student")
            tab.get_by_role("textbox", name="Hugging Face token").fill(typed)
            tab.get_by_role("button", name=PUSH_BUTTON).click()
            tab.get_by_text(message).wait_for(timeout=60_000)
            assert tab.get_by_role("textbox", name="Hugging Face token").input_value() == ""
        tab.screenshot(path=str(screenshot_dir() / "model-out.png"), full_page=True)
        browser.close()
    files = [p for p in [*store.rglob("*"), log] if p.is_file()]
    assert all(TOKEN.encode() not in p.read_bytes() for p in files)
