"""Sweeps: the T × α sweeps of this runs folder. Pick one, watch its heatmap fill in as cells finish (validation
accuracy, mean ± spread over seeds, the best setting outlined), stop it, and open any cell's run on Train.

The rows, the figure and the best setting come from distill_core.app.sweeps; this page reads widgets and draws.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import ui
from distill_core import sweep
from distill_core.app import sweeps

CAPTION = ("Each sweep distils one student per cell of a temperature × α grid (and seeds), one cell at a time in "
           "the background, each cell a run of its own. The heatmap shows the validation accuracy of every setting "
           "(mean over seeds, ± their spread), the best one outlined in gold.")
POLL_S = 2


def pick_sweep(names: list[str]) -> str:
    """The sweep shown: the one in the address (?sweep=NAME), else the newest; kept in the address for a reload."""
    wanted = st.query_params.get("sweep")
    if wanted in names:
        st.session_state["s_group"] = wanted
    elif st.session_state.get("s_group") not in names:
        st.session_state["s_group"] = names[0]
    chosen = st.selectbox("Sweep", names, key="s_group", help="Kept in the page address (?sweep=NAME).")
    st.query_params["sweep"] = chosen
    return chosen


def live_panel(root: Path, name: str, method: str | None, was_live: bool) -> None:
    """Progress, heatmap, best setting and Stop; a fragment that reruns every 2 s while a cell is queued or running."""
    ui.tick(root)  # a cell whose worker died without starting the next: start it
    view = sweeps.sweep_view(root, name)
    if view.live != was_live:
        st.rerun()  # the sweep ended (or was started again): a full rerun stops the polling
    st.markdown(f"**{view.progress_text()}**")
    ui.chart(view.figure(method), key="s_heatmap", table=view.table())
    (st.success if view.best else st.info)(view.best_text(), icon=":material/star:")
    if view.live and st.button("Stop sweep", key="s_stop", icon=":material/stop:",
                               help="Stops the running cell and cancels the queued ones; finished cells stay."):
        stopped = sweep.stop_group(root, name)
        st.toast(f"Stopping {len(stopped)} cell(s) of {name}…")


def open_cell(view: sweeps.SweepView) -> None:
    """Pick a cell (the best first) and open its run on Train, as the Runs page's Open does."""
    options = view.openable()
    if not options:
        return
    # The labels are coordinates only: a label that changed with the cell's state or rank would lose the selection.
    pick, go = st.columns([3, 1], vertical_alignment="bottom")
    run = pick.selectbox("Cell", options, key=f"s_cell_{view.name}",
                         format_func=lambda name: sweeps.cell_coordinates(view, name),
                         help="The best setting's best run comes first (as this page was opened).")
    if go.button("Open run", key="s_open", type="primary", icon=":material/monitoring:", width="stretch"):
        st.switch_page(ui.TRAIN_PAGE, query_params={"run": run})


def render() -> None:
    root = ui.prologue("Sweeps", CAPTION)
    names = sweeps.group_names(root)
    if not names:
        ui.nothing_yet("No sweeps yet: start one on Train (Sweep T × α) or with `python -m distill_core sweep`; "
                       "its heatmap shows here.")
    name = pick_sweep(names)
    view = sweeps.sweep_view(root, name)
    method = view.methods[0] if view.methods else None
    if len(view.methods) > 1:
        method = st.radio("Method", view.methods, horizontal=True, key=f"s_method_{name}")
    st.fragment(run_every=POLL_S if view.live else None)(live_panel)(root, name, method, view.live)
    open_cell(view)


render()
