"""KD Studio dashboard: the router. Pages live in pages/; the engine in distill_core.

Run with:  streamlit run streamlit_app.py
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from distill_core import app_support, hosting, hub, runs
from distill_core.errors import UserError

HERE = Path(__file__).parent
ROUTED = "kd_routed"  # set on every run of this router; pages check it (see below)


def render_sidebar(root: Path) -> None:
    """Where runs are kept, whether the Hub answers, and what works offline: the same on every page."""
    with st.sidebar:
        st.markdown("**KD Studio** · distil big text classifiers into small, fast ones")
        st.caption("Runs folder")
        st.code(root.name if app_support.is_hosted() else str(root), language=None, wrap_lines=True)
        if hub.hub_reachable():
            st.markdown(":green[:material/cloud_done:] Hugging Face Hub reachable")
        else:
            st.markdown(":orange[:material/cloud_off:] **Offline mode**: the Hub cannot be reached; "
                        "use local data and bundled or trained models.")
        datasets = app_support.local_datasets(app_support.uploads_for(root))
        bundled = app_support.bundled_specs()
        extra = app_support.extra_model_specs()
        with st.expander(f"Available offline: {len(datasets)} datasets, {len(bundled) + len(extra)} models"):
            st.markdown("**Local data**")
            st.markdown("\n".join(f"- {d.label}" for d in datasets) or "_none: upload a file on Train_")
            st.markdown("**Models**")
            st.markdown("\n".join(f"- `{s}`" for s in bundled)
                        + "".join(f"\n- `{Path(s).name}` (local)" for s in extra) or "_none_")
        live = [r for r in runs.list_runs(root) if r["state"] in runs.LIVE_STATES]
        if live:
            st.caption(f"{len(live)} run(s) queued or running: {', '.join(r['id'] for r in live[:3])}")


st.set_page_config(page_title="KD Studio", page_icon=":material/school:", layout="wide")
pages = {
    "train": st.Page(HERE / "pages" / "train.py", title="Train", icon=":material/model_training:", default=True),
    "compare": st.Page(HERE / "pages" / "compare.py", title="Compare", icon=":material/compare_arrows:"),
    "benchmark": st.Page(HERE / "pages" / "benchmark.py", title="Benchmark", icon=":material/speed:"),
    "playground": st.Page(HERE / "pages" / "playground.py", title="Playground", icon=":material/chat:"),
}
page = st.navigation(list(pages.values()))
# Until this script has run once, Streamlit serves a first visitor who opens /compare directly in its legacy
# pages/ mode (that page alone, no router). Such a page sends the visitor here with ?page=NAME (see ROUTED).
st.session_state[ROUTED] = True
if (wanted := st.query_params.get("page")) is not None:
    del st.query_params["page"]
    if wanted in pages:
        st.switch_page(pages[wanted])
runs_root = hosting.session_root(st.session_state, st.query_params)  # hosted: this visitor's folder
try:
    app_support.poll(runs_root)  # each visit also starts waiting runs and next pipeline stages
except UserError as exc:
    st.sidebar.error(str(exc))
render_sidebar(runs_root)
page.run()
