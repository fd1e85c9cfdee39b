"""Helpers shared by the real-browser tests: `streamlit run` on a free port, and Playwright steps on its pages.

The browser is Debian's chromium (/usr/bin/chromium) driven by the playwright package; tests skip when either is
missing. Screenshots go to $KD_SCREENSHOT_DIR (default /tmp/kd-e2e-screens), outside the repository.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Streamlit draws chart titles in bold ("<b><b>Title</b></b>" in the layout): compare them without the tags.
LOSS_POINTS_JS = """() => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    const loss = plots.find(p => (p.layout?.title?.text || '').replace(/<[^>]*>/g, '').startsWith('Training loss'));
    return loss && loss.data && loss.data.length ? loss.data[0].x.length : 0;
}"""
PROBS_JS = """() => {
    const plot = [...document.querySelectorAll('.js-plotly-plot')]
        .find(p => (p.layout?.title?.text || '').replace(/<[^>]*>/g, '').startsWith('Predicted class probabilities'));
    return plot ? JSON.stringify(plot.data.map(t => t.x)) : null;
}"""


def screenshot_dir() -> Path:
    shots = Path(os.environ.get("KD_SCREENSHOT_DIR", "/tmp/kd-e2e-screens"))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dashboard_env(tmp_path: Path, tiny_data_dir: Path, tiny_teacher_dir: Path, **extra: str) -> dict[str, str]:
    """A private store, cache and uploads folder under ``tmp_path``, the tiny dataset as the only local data and
    the tiny teacher listed: the environment of a test's dashboard (and of the test process, which shares it)."""
    import shutil

    data_root = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data_root / "tiny")
    return {"KD_RUNS_DIR": str(tmp_path / "runs"), "KD_CACHE_DIR": str(tmp_path / "cache"),
            "KD_DATA_DIR": str(data_root), "KD_UPLOADS_DIR": str(tmp_path / "uploads"),
            "KD_EXTRA_MODELS": str(tiny_teacher_dir), "HF_HUB_OFFLINE": "1", **extra}


@contextlib.contextmanager
def streamlit_server(env: Mapping[str, str], log_path: Path, start_timeout_s: float = 120) -> Iterator[str]:
    """`streamlit run streamlit_app.py` with ``env`` added to this process's environment; yields its URL."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                    break
                except OSError as exc:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"streamlit did not start: {Path(log_path).read_text()[-2000:]}") from exc
                    time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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


@contextlib.contextmanager
def dashboard_server(env: Mapping[str, str], monkeypatch, log_path: Path) -> Iterator[str]:
    """A dashboard on ``env`` that this test process shares (``env`` is set here too, so the test reads the same
    store); yields its URL, and stops every run of its store at the end: never a worker left behind."""
    from distill_core import pipeline, runs

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        with streamlit_server(env, log_path) as url:
            yield url
    finally:
        for run_dir in runs.iter_run_dirs(Path(env["KD_RUNS_DIR"])):
            pipeline.stop_run(run_dir)


@contextlib.contextmanager
def browser_tab(timeout_ms: int = 60_000) -> Iterator:
    """A Chromium tab (1400 x 1600) with a default timeout, and ``tab.shots``: the screenshot folder."""
    from playwright import sync_api

    shots = screenshot_dir()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1600})
        tab.set_default_timeout(timeout_ms)
        tab.shots = shots
        try:
            yield tab
        finally:
            browser.close()
