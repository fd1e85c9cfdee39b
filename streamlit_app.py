"""KD Studio dashboard: the router. Pages live in app_pages/ (ui.py: what they share); the engine in distill_core.

Run with:  streamlit run streamlit_app.py
The page folder is not named pages/ on purpose: that name turns on Streamlit's legacy multipage mode, which
serves a first visitor who opens /compare directly that page alone, without this router.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import ui

PAGE_DIR = Path(__file__).parent / "app_pages"


def run() -> None:
    st.set_page_config(page_title="KD Studio", page_icon=":material/school:", layout="wide")
    page = st.navigation([
        st.Page(PAGE_DIR / "train.py", title="Train", icon=":material/model_training:", default=True),
        st.Page(PAGE_DIR / "runs.py", title="Runs", icon=":material/table_rows:"),
        st.Page(PAGE_DIR / "compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page(PAGE_DIR / "sweeps.py", title="Sweeps", icon=":material/grid_on:"),
        st.Page(PAGE_DIR / "benchmark.py", title="Benchmark", icon=":material/speed:"),
        st.Page(PAGE_DIR / "playground.py", title="Playground", icon=":material/chat:"),
    ])
    root = ui.session_root()  # hosted: this visitor's folder
    ui.tick(root, st.sidebar)
    ui.render_sidebar(root)
    page.run()


if __name__ == "__main__":
    run()
